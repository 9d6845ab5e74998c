//! `ghostflow run`: load a document, run it with live progress, print the
//! outcome.

use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use ghostflow::{Engine, EnvSecrets, Error, EventKind, Inputs, RunId};
use ghostflow_nodes::file::FileRoot;
use serde_json::{Map, Value, json};

use crate::cli::RunArgs;
use crate::failure::{Failure, print_stdout};
use crate::progress::Progress;

/// How often the live view redraws its timers.
const TICK: Duration = Duration::from_millis(100);

/// The directory the file nodes may touch: `--file-root`, or the current
/// directory.
fn file_root(args: &RunArgs) -> Result<FileRoot, Failure> {
    let dir = match &args.file_root {
        Some(dir) if !dir.is_dir() => {
            return Err(Failure::Usage(format!(
                "--file-root {}: not a directory",
                dir.display()
            )));
        }
        Some(dir) => dir.clone(),
        None => std::env::current_dir().map_err(|e| {
            Failure::Usage(format!(
                "the current directory cannot be read ({e}); give --file-root DIR"
            ))
        })?,
    };
    let root = FileRoot::new(dir);
    Ok(if args.read_only_files {
        root.read_only()
    } else {
        root
    })
}

/// Runs the flow of `args`.
///
/// # Errors
/// [`Failure::Usage`] or [`Failure::Load`] before anything runs,
/// [`Failure::Failed`] when the flow fails, [`Failure::Interrupted`] after
/// Ctrl-C.
pub(crate) async fn run(args: RunArgs) -> Result<(), Failure> {
    let flow = crate::load::load(&args.flow, &args.allow_env, true)
        .map_err(Failure::Load)?
        .flow;
    let file_root = file_root(&args)?;
    let inputs = crate::inputs::collect(&flow, args.input_json, &args.inputs)?;
    // The registry and load options let sub-flow nodes load their documents.
    let engine = Engine::builder()
        .secrets(EnvSecrets::default())
        .registry(std::sync::Arc::new(ghostflow_nodes::registry()))
        .resource(crate::load::options(&args.allow_env, true))
        .resource(file_root)
        .build();
    // Missing required inputs and values of the wrong type are refused here,
    // before anything runs.
    let execution = engine
        .start(&flow, Inputs::from_json(inputs))
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let run_id = execution.run_id();

    let mut progress = Progress::for_stderr(&flow, args.quiet);
    let mut events = execution.events();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ctrl_c = pin!(tokio::signal::ctrl_c());
    let mut signals = true;
    let mut interrupted = false;
    let mut finished_at = None;
    loop {
        tokio::select! {
            // Ctrl-C first: its handler is installed when it is first
            // polled, which must not wait behind a burst of events.
            biased;
            caught = &mut ctrl_c, if signals => {
                if caught.is_err() {
                    // No handler could be installed: Ctrl-C keeps its
                    // default effect, ending the process.
                    signals = false;
                    continue;
                }
                if interrupted {
                    progress.note("interrupted again: quitting without waiting");
                    progress.finish();
                    return Err(Failure::Interrupted(
                        "interrupted: quit before the execution had stopped".to_owned(),
                    ));
                }
                interrupted = true;
                progress.note("interrupted: cancelling the execution (Ctrl-C again to quit at once)");
                execution.cancel();
                ctrl_c.set(tokio::signal::ctrl_c());
            }
            // Before events, so that a steady stream of them cannot hold
            // the live view's redraws back.
            _ = ticker.tick(), if progress.is_live() => progress.tick(),
            event = events.next() => {
                let Some(event) = event else { break };
                if let EventKind::RunFinished { .. } = event.kind {
                    finished_at = Some(event.elapsed);
                }
                progress.event(&event);
            }
        }
    }
    let result = execution.wait().await;
    progress.finish();

    let report = Report {
        engine: &engine,
        run_id,
        json: args.json,
    };
    match result {
        Ok(outcome) => {
            let outputs = outcome.outputs_json().map_err(|e| {
                report.failed(finished_at, &e);
                Failure::Failed(Some(e.to_string()))
            })?;
            if args.json {
                report.print("succeeded", Some(outcome.duration()), outputs, None)
            } else {
                print_stdout(&pretty(&Value::Object(outputs)))
            }
        }
        Err(Error::Cancelled) if interrupted => {
            let error = json!({ "node": null, "message": "interrupted: execution cancelled" });
            report.print("cancelled", finished_at, Map::new(), Some(error))?;
            Err(Failure::Interrupted(
                "interrupted: the execution was cancelled".to_owned(),
            ))
        }
        Err(error) => {
            report.failed(finished_at, &error);
            Err(Failure::Failed(Some(error.to_string())))
        }
    }
}

/// Writes the `--json` outcome object.
struct Report<'a> {
    engine: &'a Engine,
    run_id: RunId,
    json: bool,
}

impl Report<'_> {
    /// The outcome of a run that did not succeed (nothing without `--json`).
    fn failed(&self, duration: Option<Duration>, error: &Error) {
        let (status, node, message) = match error {
            Error::NodeFailed { node, error, .. } => {
                ("failed", Value::String(node.clone()), error.to_string())
            }
            Error::Cancelled => ("cancelled", Value::Null, error.to_string()),
            other => ("failed", Value::Null, other.to_string()),
        };
        let mut detail = json!({ "node": node, "message": message });
        if let Error::NodeFailed { attempts, .. } = error {
            detail["attempts"] = json!(attempts);
        }
        // The error is also on stderr; stdout must get its object even if
        // writing it fails for a reason worth reporting.
        let _ = self.print(status, duration, Map::new(), Some(detail));
    }

    /// Prints `{"status", "run_id", "duration_ms", "outputs", "nodes",
    /// "error"?}` when `--json` asked for it.
    fn print(
        &self,
        status: &str,
        duration: Option<Duration>,
        outputs: Map<String, Value>,
        error: Option<Value>,
    ) -> Result<(), Failure> {
        if !self.json {
            return Ok(());
        }
        let mut object = json!({
            "status": status,
            "run_id": self.run_id.to_string(),
            "duration_ms": duration.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
            "outputs": outputs,
            "nodes": self.nodes(),
        });
        if let Some(error) = error {
            object["error"] = error;
        }
        print_stdout(&pretty(&object))
    }

    /// What each node did, from the engine's store (which has it also when
    /// the run failed and there is no `Outcome`).
    fn nodes(&self) -> Value {
        let Some(state) = self.engine.store().load(self.run_id) else {
            return Value::Array(Vec::new());
        };
        state
            .node_ids
            .iter()
            .zip(&state.nodes)
            .map(|(id, record)| {
                json!({
                    "id": &**id,
                    "status": record.status,
                    "attempts": record.attempts,
                    "busy_us": u64::try_from(record.busy.as_micros()).unwrap_or(u64::MAX),
                })
            })
            .collect()
    }
}

fn pretty(value: &Value) -> String {
    // A `Value` always encodes.
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
