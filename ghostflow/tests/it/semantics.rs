//! Execution semantics: order, concurrency, skipping, policies, cancellation.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ghostflow::prelude::*;
use ghostflow::{EventKind, NodeFailure, NodeStatus, RunStatus};

use crate::common::*;

#[tokio::test]
async fn nodes_run_in_topological_order() {
    let log = Log::default();
    let mut b = Flow::builder("chain");
    let c = b.add("c", Const { value: 1 });
    let add = || Add { log: log.clone() };
    // Added in reverse order: the plan, not insertion, decides.
    let z = b.add("z", add());
    let y = b.add("y", add());
    let x = b.add("x", add());
    b.connect(c.out().n, x.inp().a);
    b.connect(x.out().n, y.inp().a);
    b.connect(c.out().n, y.inp().b);
    b.connect(y.out().n, z.inp().a);
    b.connect(x.out().n, z.inp().b);
    b.output("n", z.out().n);
    let flow = b.build().unwrap();
    let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(*log.lock(), ["x", "y", "z"]);
    assert_eq!(outcome.output::<u64>("n").unwrap(), 3);
    let order: Vec<_> = flow
        .topological_order()
        .map(|i| flow.nodes()[i.index()].id.to_string())
        .collect();
    assert_eq!(order, ["c", "x", "y", "z"]);
}

#[tokio::test(start_paused = true)]
async fn independent_branches_overlap_in_time() {
    let timeline = Arc::new(Timeline::default());
    let mut b = Flow::builder("parallel");
    let c = b.add("c", Const { value: 1 });
    let left = b.add(
        "left",
        Sleep {
            ms: 100,
            timeline: timeline.clone(),
        },
    );
    let right = b.add(
        "right",
        Sleep {
            ms: 100,
            timeline: timeline.clone(),
        },
    );
    let join = b.add("join", Add::default());
    b.connect(c.out().n, left.inp().n);
    b.connect(c.out().n, right.inp().n);
    b.connect(left.out().n, join.inp().a);
    b.connect(right.out().n, join.inp().b);
    b.output("n", join.out().n);
    let flow = b.build().unwrap();

    let begin = tokio::time::Instant::now();
    let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(outcome.output::<u64>("n").unwrap(), 2);
    // Run one after the other, the two sleeps would take 200 ms.
    assert_eq!(begin.elapsed(), Duration::from_millis(100));
    let spans = timeline.spans.lock();
    assert_eq!(spans.len(), 2);
    let (_, start_a, end_a) = spans[0];
    let (_, start_b, end_b) = spans[1];
    assert!(
        start_a < end_b && start_b < end_a,
        "the sleeps did not overlap"
    );
    assert_eq!(timeline.max_running.load(Ordering::SeqCst), 2);
}

/// `c -> branch -> (then: t1 -> t2) / (else: e1 -> e2) -> merge`, plus a
/// node that needs both branches.
fn if_else_flow(value: u64) -> Flow {
    let mut b = Flow::builder("if-else");
    let c = b.add("c", Const { value });
    let branch = b.add("branch", Branch { threshold: 10 });
    let t1 = b.add("t1", Add::default());
    let t2 = b.add("t2", Add::default());
    let e1 = b.add("e1", Add::default());
    let e2 = b.add("e2", Add::default());
    let merge = b.add("merge", Merge {});
    let both = b.add("both", Add::default());
    b.connect(c.out().n, branch.inp().n);
    b.connect(branch.out().then, t1.inp().a);
    b.connect(t1.out().n, t2.inp().a);
    b.connect(branch.out().otherwise, e1.inp().a);
    b.connect(e1.out().n, e2.inp().a);
    b.connect(t2.out().n, merge.inp().a);
    b.connect(e2.out().n, merge.inp().b);
    b.connect(t2.out().n, both.inp().a);
    b.connect(e2.out().n, both.inp().b);
    b.output("merged", merge.out().n);
    b.output("both", both.out().n);
    b.build().unwrap()
}

#[tokio::test]
async fn untaken_branches_are_skipped_through_to_the_join() {
    for (value, taken, skipped) in [
        (50, ["t1", "t2"], ["e1", "e2"]),
        (3, ["e1", "e2"], ["t1", "t2"]),
    ] {
        let flow = if_else_flow(value);
        let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
        for id in taken {
            assert_eq!(
                outcome.node(id).unwrap().status,
                NodeStatus::Succeeded,
                "{id}"
            );
        }
        for id in skipped {
            let node = outcome.node(id).unwrap();
            assert_eq!(node.status, NodeStatus::Skipped, "{id}");
            assert_eq!(node.attempts, 0, "{id} must not run");
        }
        // Optional inputs: merge runs with whichever branch arrived.
        assert_eq!(outcome.node("merge").unwrap().status, NodeStatus::Succeeded);
        assert_eq!(outcome.output::<u64>("merged").unwrap(), value);
        // `both.a` is required: when the then-branch is skipped, so is `both`.
        if value >= 10 {
            assert_eq!(outcome.output::<u64>("both").unwrap(), value);
        } else {
            assert_eq!(outcome.node("both").unwrap().status, NodeStatus::Skipped);
            let err = outcome.output::<u64>("both").unwrap_err();
            assert!(err.to_string().contains("not taken"), "{err}");
        }
    }
}

/// `c -> flaky -> after`, and `c -> slow` on a side branch.
fn failing_flow(on_error: OnError, timeline: Arc<Timeline>) -> Flow {
    let mut b = Flow::builder("failing");
    let c = b.add("c", Const { value: 7 });
    let flaky = b.add(
        "flaky",
        Flaky {
            failures: 100,
            permanent: true,
            ..Flaky::default()
        },
    );
    let after = b.add("after", Add::default());
    let handler = b.add("handler", Report {});
    let slow = b.add(
        "slow",
        Sleep {
            ms: 60_000,
            timeline,
        },
    );
    b.connect(c.out().n, flaky.inp().n);
    b.connect(flaky.out().n, after.inp().a);
    b.connect(flaky.error(), handler.inp().failure);
    b.connect(c.out().n, slow.inp().n);
    b.output("after", after.out().n);
    b.output("report", handler.out().text);
    b.policy(&flaky).on_error(on_error);
    b.build().unwrap()
}

/// A failure report.
#[derive(Ports, Debug)]
pub(crate) struct FailureIn {
    /// The failure.
    pub(crate) failure: NodeFailure,
}

/// A text.
#[derive(Ports, Debug)]
pub(crate) struct Text {
    /// The text.
    pub(crate) text: String,
}

/// Turns a failure into a sentence.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = FailureIn, output = Text)]
pub(crate) struct Report {}

impl Run for Report {
    async fn run(&self, input: FailureIn, _: &Context) -> Result<Text, NodeError> {
        let f = input.failure;
        Ok(Text {
            text: format!("{} failed after {}: {}", f.node, f.attempts, f.message),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn on_error_fail_stops_the_run_and_names_the_node() {
    let timeline = Arc::new(Timeline::default());
    let flow = failing_flow(OnError::Fail, timeline.clone());
    let begin = tokio::time::Instant::now();
    let err = Engine::new().run(&flow, Inputs::new()).await.unwrap_err();
    match &err {
        ghostflow::Error::NodeFailed {
            node,
            attempts,
            error,
        } => {
            assert_eq!(node, "flaky");
            assert_eq!(*attempts, 1);
            assert_eq!(error.message(), "attempt 1 failed");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("node `flaky` failed"), "{err}");
    // The one-minute side branch was cancelled, not waited for.
    assert!(begin.elapsed() < Duration::from_secs(1));
    assert!(timeline.spans.lock().is_empty());
}

#[tokio::test(start_paused = true)]
async fn on_error_continue_routes_the_failure_to_the_error_port() {
    let flow = failing_flow(OnError::Continue, Arc::default());
    let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(
        outcome.output::<String>("report").unwrap(),
        "flaky failed after 1: attempt 1 failed"
    );
    assert_eq!(outcome.node("flaky").unwrap().status, NodeStatus::Failed);
    assert_eq!(outcome.node("after").unwrap().status, NodeStatus::Skipped);
    assert_eq!(outcome.node("slow").unwrap().status, NodeStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn on_error_skip_skips_downstream_including_the_error_port() {
    let flow = failing_flow(OnError::Skip, Arc::default());
    let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    for id in ["flaky", "after", "handler"] {
        assert_eq!(
            outcome.node(id).unwrap().status,
            NodeStatus::Skipped,
            "{id}"
        );
    }
    assert_eq!(outcome.node("slow").unwrap().status, NodeStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn error_port_stays_empty_when_the_node_succeeds() {
    let mut b = Flow::builder("ok");
    let c = b.add("c", Const { value: 1 });
    let ok = b.add("ok", Flaky::default());
    let handler = b.add("handler", Report {});
    b.connect(c.out().n, ok.inp().n);
    b.connect(ok.error(), handler.inp().failure);
    b.policy(&ok).on_error(OnError::Continue);
    let flow = b.build().unwrap();
    let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(outcome.node("handler").unwrap().status, NodeStatus::Skipped);
}

fn flaky_flow(flaky: Flaky, retry: RetryPolicy) -> Flow {
    let mut b = Flow::builder("retry");
    let c = b.add("c", Const { value: 1 });
    let f = b.add("flaky", flaky);
    b.connect(c.out().n, f.inp().n);
    b.output("n", f.out().n);
    b.policy(&f).retry(retry);
    b.build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially() {
    let flaky = Flaky {
        failures: 3,
        ..Flaky::default()
    };
    let attempts = flaky.attempts.clone();
    let retry = RetryPolicy::attempts(5)
        .backoff(Duration::from_millis(100))
        .multiplier(2.0)
        .jitter(0.0);
    let flow = flaky_flow(flaky, retry);
    let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(outcome.node("flaky").unwrap().attempts, 4);
    let times = attempts.lock();
    let gaps: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        [100, 200, 400].map(Duration::from_millis),
        "backoff must double"
    );
}

#[tokio::test(start_paused = true)]
async fn jittered_backoff_stays_within_bounds() {
    let flaky = Flaky {
        failures: 4,
        ..Flaky::default()
    };
    let attempts = flaky.attempts.clone();
    let retry = RetryPolicy::attempts(5)
        .backoff(Duration::from_millis(1000))
        .jitter(0.5);
    let flow = flaky_flow(flaky, retry);
    Engine::new().run(&flow, Inputs::new()).await.unwrap();
    let times = attempts.lock();
    for (i, gap) in times.windows(2).map(|w| w[1] - w[0]).enumerate() {
        let full = Duration::from_millis(1000 << i);
        assert!(
            gap <= full && gap >= full / 2,
            "gap {i}: {gap:?} vs {full:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_fail_with_the_attempt_count() {
    let flow = flaky_flow(
        Flaky {
            failures: 10,
            ..Flaky::default()
        },
        RetryPolicy::attempts(3).jitter(0.0),
    );
    let err = Engine::new().run(&flow, Inputs::new()).await.unwrap_err();
    assert!(
        matches!(&err, ghostflow::Error::NodeFailed { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("attempt 3 failed"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let flaky = Flaky {
        failures: 1,
        permanent: true,
        ..Flaky::default()
    };
    let attempts = flaky.attempts.clone();
    let flow = flaky_flow(flaky, RetryPolicy::attempts(5));
    let err = Engine::new().run(&flow, Inputs::new()).await.unwrap_err();
    assert!(matches!(
        err,
        ghostflow::Error::NodeFailed { attempts: 1, .. }
    ));
    assert_eq!(attempts.lock().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn engine_default_retry_applies_when_the_node_sets_none() {
    let mut b = Flow::builder("defaults");
    let c = b.add("c", Const { value: 1 });
    let f = b.add(
        "flaky",
        Flaky {
            failures: 2,
            ..Flaky::default()
        },
    );
    b.connect(c.out().n, f.inp().n);
    let flow = b.build().unwrap();
    let engine = Engine::builder().retry(RetryPolicy::attempts(3)).build();
    let outcome = engine.run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(outcome.node("flaky").unwrap().attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn timeouts_fail_an_attempt_and_can_be_retried() {
    let timeline = Arc::new(Timeline::default());
    let mut b = Flow::builder("timeout");
    let c = b.add("c", Const { value: 1 });
    let s = b.add(
        "slow",
        Sleep {
            ms: 10_000,
            timeline: timeline.clone(),
        },
    );
    b.connect(c.out().n, s.inp().n);
    b.policy(&s).timeout(Duration::from_secs(1)).retry(
        RetryPolicy::attempts(2)
            .backoff(Duration::from_millis(10))
            .jitter(0.0),
    );
    let flow = b.build().unwrap();
    let begin = tokio::time::Instant::now();
    let err = Engine::new().run(&flow, Inputs::new()).await.unwrap_err();
    assert!(err.to_string().contains("timed out after 1s"), "{err}");
    assert!(matches!(
        err,
        ghostflow::Error::NodeFailed { attempts: 2, .. }
    ));
    assert_eq!(begin.elapsed(), Duration::from_millis(2010));
    // The timed-out futures were dropped before their sleep ended.
    assert!(timeline.spans.lock().is_empty());
    assert_eq!(timeline.running.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_execution_stops_its_running_nodes() {
    let forever = Forever::default();
    let (started, dropped) = (forever.started.clone(), forever.dropped.clone());
    let mut b = Flow::builder("cancel");
    let c = b.add("c", Const { value: 1 });
    let f = b.add("forever", forever);
    let after = b.add("after", Add::default());
    b.connect(c.out().n, f.inp().n);
    b.connect(f.out().n, after.inp().a);
    let flow = b.build().unwrap();
    let engine = Engine::new();
    let execution = engine.start(&flow, Inputs::new()).unwrap();
    let run_id = execution.run_id();
    let mut events = execution.events();
    // Wait until the node is running.
    loop {
        let event = events.next_event().await.unwrap();
        if matches!(&event.kind, EventKind::NodeStarted { node, .. } if &**node == "forever") {
            break;
        }
    }
    // The event comes just before the node's future is first polled.
    for _ in 0..400 {
        if started.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(started.load(Ordering::SeqCst), 1);
    execution.cancel();
    let err = execution.wait().await.unwrap_err();
    assert!(matches!(err, ghostflow::Error::Cancelled), "{err:?}");
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the node's future was dropped"
    );
    let state = engine.store().load(run_id).unwrap();
    assert_eq!(state.status, RunStatus::Cancelled);
    assert_eq!(state.node("forever").unwrap().status, NodeStatus::Cancelled);
    assert_eq!(state.node("after").unwrap().status, NodeStatus::NotRun);
    let mut rest = Vec::new();
    while let Some(event) = events.next_event().await {
        rest.push(event.kind);
    }
    assert!(matches!(
        rest.last(),
        Some(EventKind::RunFinished {
            status: RunStatus::Cancelled,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_run_future_cancels_the_execution() {
    let forever = Forever::default();
    let (started, dropped) = (forever.started.clone(), forever.dropped.clone());
    let mut b = Flow::builder("drop");
    let c = b.add("c", Const { value: 1 });
    // Two nodes: one runs on the caller's task, one on a spawned task.
    let f1 = b.add("f1", forever.clone());
    let f2 = b.add("f2", forever);
    b.connect(c.out().n, f1.inp().n);
    b.connect(c.out().n, f2.inp().n);
    let flow = b.build().unwrap();
    let engine = Engine::new();
    let run = engine.run(&flow, Inputs::new());
    let timed_out = tokio::time::timeout(Duration::from_millis(200), run).await;
    assert!(timed_out.is_err());
    assert_eq!(started.load(Ordering::SeqCst), 2);
    // The spawned node sees the cancellation asynchronously.
    for _ in 0..200 {
        if dropped.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn per_type_concurrency_limits_hold_under_load() {
    let timeline = Arc::new(Timeline::default());
    let mut b = Flow::builder("limited");
    let c = b.add("c", Const { value: 1 });
    for i in 0..40 {
        let s = b.add(
            format!("s{i}"),
            Sleep {
                ms: 10 + (i % 7),
                timeline: timeline.clone(),
            },
        );
        b.connect(c.out().n, s.inp().n);
    }
    let flow = b.build().unwrap();
    let engine = Engine::builder().limit("sleep", 3).build();
    let outcome = engine.run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(outcome.nodes().len(), 41);
    assert_eq!(timeline.spans.lock().len(), 40);
    assert_eq!(timeline.max_running.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_wide_limit_spans_concurrent_executions() {
    let timeline = Arc::new(Timeline::default());
    let mut b = Flow::builder("wide");
    let c = b.add("c", Const { value: 1 });
    for i in 0..6 {
        let s = b.add(
            format!("s{i}"),
            Sleep {
                ms: 20,
                timeline: timeline.clone(),
            },
        );
        b.connect(c.out().n, s.inp().n);
    }
    let flow = b.build().unwrap();
    let engine = Engine::builder().concurrency_limit(2).build();
    let runs = (0..3).map(|_| engine.run(&flow, Inputs::new()));
    for result in futures::future::join_all(runs).await {
        result.unwrap();
    }
    assert_eq!(timeline.spans.lock().len(), 18);
    assert!(timeline.max_running.load(Ordering::SeqCst) <= 2);
}

#[tokio::test]
async fn concurrency_key_overrides_the_type_name() {
    let timeline = Arc::new(Timeline::default());
    let mut b = Flow::builder("keyed");
    let c = b.add("c", Const { value: 1 });
    for i in 0..8 {
        let s = b.add(
            format!("s{i}"),
            Sleep {
                ms: 5,
                timeline: timeline.clone(),
            },
        );
        b.connect(c.out().n, s.inp().n);
        b.policy(&s).concurrency_key("slow-api");
    }
    let flow = b.build().unwrap();
    let engine = Engine::builder().limit("slow-api", 1).build();
    engine.run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(timeline.max_running.load(Ordering::SeqCst), 1);
}

/// Blocks its thread for a while, as CPU-heavy work does, and notes which
/// thread ran it.
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = Num, output = Num)]
pub(crate) struct Busy {
    /// Threads that ran a `Busy` node.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) threads: Arc<parking_lot::Mutex<std::collections::HashSet<std::thread::ThreadId>>>,
}

impl Run for Busy {
    async fn run(&self, input: Num, _: &Context) -> Result<Num, NodeError> {
        std::thread::sleep(Duration::from_millis(2));
        self.threads.lock().insert(std::thread::current().id());
        Ok(input)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_fan_out_of_busy_nodes_uses_every_worker_thread() {
    let busy = Busy::default();
    let threads = busy.threads.clone();
    let mut b = Flow::builder("busy");
    let c = b.add("c", Const { value: 1 });
    for i in 0..64 {
        let n = b.add(format!("b{i}"), busy.clone());
        b.connect(c.out().n, n.inp().n);
    }
    let flow = b.build().unwrap();
    // Run from a task, as a server would: the first worker is a runtime thread.
    let outcome = tokio::spawn(async move { Engine::new().run(&flow, Inputs::new()).await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.nodes().len(), 65);
    assert!(
        threads.lock().len() >= 2,
        "64 ready nodes ran on one thread of two"
    );
}

#[tokio::test(start_paused = true)]
async fn every_waiting_node_of_a_wide_fan_out_waits_at_the_same_time() {
    let timeline = Arc::new(Timeline::default());
    let mut b = Flow::builder("waiting");
    let c = b.add("c", Const { value: 1 });
    // Fewer than the queue's help threshold, and more: both must overlap.
    for (i, ms) in (0..100).map(|i| (i, 50 + i % 3)) {
        let s = b.add(
            format!("s{i}"),
            Sleep {
                ms,
                timeline: timeline.clone(),
            },
        );
        b.connect(c.out().n, s.inp().n);
    }
    let flow = b.build().unwrap();
    let begin = tokio::time::Instant::now();
    Engine::new().run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(timeline.max_running.load(Ordering::SeqCst), 100);
    assert_eq!(begin.elapsed(), Duration::from_millis(52));
}

#[tokio::test(start_paused = true)]
async fn three_waiting_branches_overlap_without_a_long_queue() {
    let timeline = Arc::new(Timeline::default());
    let mut b = Flow::builder("three");
    let c = b.add("c", Const { value: 1 });
    for i in 0..3 {
        let s = b.add(
            format!("s{i}"),
            Sleep {
                ms: 100,
                timeline: timeline.clone(),
            },
        );
        b.connect(c.out().n, s.inp().n);
    }
    let flow = b.build().unwrap();
    let begin = tokio::time::Instant::now();
    Engine::new().run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(timeline.max_running.load(Ordering::SeqCst), 3);
    assert_eq!(begin.elapsed(), Duration::from_millis(100));
}

#[tokio::test]
async fn a_node_whose_connected_inputs_all_stayed_empty_is_skipped() {
    // c -> branch; `inner` listens only to the `then` branch (optional
    // input), `join` to both: with the `else` branch taken, `inner` is
    // skipped although its input is optional, and `join` runs.
    let mut b = Flow::builder("optional");
    let c = b.add("c", Const { value: 3 });
    let branch = b.add("branch", Branch { threshold: 10 });
    let inner = b.add("inner", Merge {});
    let join = b.add("join", Merge {});
    let neither = b.add("neither", Merge {});
    b.connect(c.out().n, branch.inp().n);
    b.connect(branch.out().then, inner.inp().a);
    b.connect(branch.out().then, join.inp().a);
    b.connect(branch.out().otherwise, join.inp().b);
    b.connect(inner.out().n, neither.inp().a);
    b.output("joined", join.out().n);
    let flow = b.build().unwrap();
    let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(outcome.node("inner").unwrap().status, NodeStatus::Skipped);
    assert_eq!(outcome.node("neither").unwrap().status, NodeStatus::Skipped);
    assert_eq!(outcome.node("join").unwrap().status, NodeStatus::Succeeded);
    assert_eq!(outcome.output::<u64>("joined").unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_paces_attempts_across_nodes_of_a_type() {
    let flaky = Flaky::default();
    let attempts = flaky.attempts.clone();
    let mut b = Flow::builder("paced");
    let c = b.add("c", Const { value: 1 });
    for i in 0..6 {
        let f = b.add(format!("f{i}"), flaky.clone());
        b.connect(c.out().n, f.inp().n);
        b.policy(&f)
            .rate_limit(RateLimit::new(2, Duration::from_secs(1)));
    }
    let flow = b.build().unwrap();
    let begin = tokio::time::Instant::now();
    Engine::new().run(&flow, Inputs::new()).await.unwrap();
    let mut offsets: Vec<u128> = attempts
        .lock()
        .iter()
        .map(|t| (*t - begin).as_millis())
        .collect();
    offsets.sort_unstable();
    // A burst of two, then one every half second.
    assert_eq!(offsets, [0, 0, 500, 1000, 1500, 2000]);
}

#[tokio::test(start_paused = true)]
async fn a_circuit_breaker_stops_calling_what_keeps_failing() {
    let flaky = Flaky {
        failures: 100,
        ..Flaky::default()
    };
    let attempts = flaky.attempts.clone();
    let mut b = Flow::builder("breaker");
    let c = b.add("c", Const { value: 1 });
    for i in 0..5 {
        let f = b.add(format!("f{i}"), flaky.clone());
        b.connect(c.out().n, f.inp().n);
        b.policy(&f)
            .on_error(OnError::Continue)
            .circuit_breaker(CircuitBreaker::new(2, Duration::from_secs(30)).key("api"));
        let report = b.add(format!("r{i}"), Report {});
        b.connect(f.error(), report.inp().failure);
        b.output(format!("report{i}"), report.out().text);
    }
    let flow = b.build().unwrap();
    let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    // Two real failures open the breaker; the other three never run.
    assert_eq!(attempts.lock().len(), 2);
    let reports: Vec<String> = (0..5)
        .map(|i| outcome.output::<String>(&format!("report{i}")).unwrap())
        .collect();
    let refused = reports
        .iter()
        .filter(|r| r.contains("circuit `api` is open after 2 consecutive failures"))
        .count();
    assert_eq!(refused, 3, "{reports:?}");
}
