//! Control-flow nodes: branch, join, wait, stop, pass values through.

use std::time::Duration;

use ghostflow::prelude::*;

mod flows;
mod switch;

pub use flows::{ForEach, ForEachIn, ForEachOut, ItemErrorPolicy, Subflow, SubflowIn, SubflowOut};
pub use switch::{Switch, SwitchCase, SwitchConfig, SwitchMode};

/// Any JSON value, passed through unchanged.
#[derive(Ports, Debug)]
pub struct Json {
    /// The value.
    pub value: serde_json::Value,
}

/// Waits for a fixed time, then passes its input on.
///
/// Cancellation ends the wait at once. For waits in a retry or rate limit,
/// use the node policies instead.
///
/// ```yaml
/// - id: cool_down
///   type: delay
///   config: { ms: 1500 }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Json, output = Json, category = "control")]
pub struct Delay {
    /// How long to wait, in milliseconds.
    pub ms: u64,
}

impl Run for Delay {
    async fn run(&self, input: Json, _ctx: &Context) -> Result<Json, NodeError> {
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(input)
    }
}

/// Stops the execution with a message when it receives a value.
///
/// Place it on a branch to turn "this should not happen" into a failed run;
/// the value that arrived is part of the message. It never retries.
///
/// ```yaml
/// - id: reject
///   type: fail
///   config: { message: "the order has no customer" }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Json, output = (), category = "control")]
pub struct Fail {
    /// The error message.
    pub message: String,
}

impl Run for Fail {
    async fn run(&self, input: Json, _ctx: &Context) -> Result<(), NodeError> {
        Err(NodeError::permanent(format!(
            "{} (value: {})",
            self.message, input.value
        )))
    }
}

/// Passes its input on unchanged: a join point, or a named place in a flow.
///
/// ```yaml
/// - id: checkpoint
///   type: passthrough
/// ```
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = Json, output = Json, category = "control")]
pub struct Passthrough {}

impl Run for Passthrough {
    async fn run(&self, input: Json, _ctx: &Context) -> Result<Json, NodeError> {
        Ok(input)
    }
}

/// A value that may be absent.
#[derive(Ports, Debug)]
pub struct MaybeJson {
    /// The value; `null` goes down the branch when nothing is connected.
    pub value: Option<serde_json::Value>,
}

/// The two ways out of [`If`]: exactly one carries the value.
#[derive(Ports, Debug)]
pub struct Branches {
    /// Taken when the condition holds.
    pub then: Option<serde_json::Value>,
    /// Taken when it does not.
    #[port(name = "else")]
    pub otherwise: Option<serde_json::Value>,
}

/// Sends its input down `then` when `condition` is true and down `else`
/// otherwise.
///
/// The branch not taken, and everything that needs it, is skipped. In
/// documents the condition is usually an expression.
///
/// ```yaml
/// - id: is_large
///   type: if
///   config:
///     condition: "{{ input.amount > 100 }}"
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = MaybeJson, output = Branches, name = "if", category = "control")]
pub struct If {
    /// Which way to go.
    pub condition: bool,
}

impl Run for If {
    async fn run(&self, input: MaybeJson, _ctx: &Context) -> Result<Branches, NodeError> {
        let value = input.value.unwrap_or(serde_json::Value::Null);
        Ok(if self.condition {
            Branches {
                then: Some(value),
                otherwise: None,
            }
        } else {
            Branches {
                then: None,
                otherwise: Some(value),
            }
        })
    }
}

/// Two values that may each be absent (a branch not taken).
#[derive(Ports, Debug)]
pub struct Pair {
    /// The first value.
    pub a: Option<serde_json::Value>,
    /// The second value.
    pub b: Option<serde_json::Value>,
}

/// A value that may stay empty.
#[derive(Ports, Debug)]
pub struct MaybeOut {
    /// The value; empty when there is nothing to give (its consumers are
    /// skipped).
    pub value: Option<serde_json::Value>,
}

/// How [`Merge`] combines its inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// Waits for both inputs to resolve, then gives the first that has a
    /// value (`a`, then `b`): the join after an if/else. Empty when neither
    /// has one.
    #[default]
    First,
    /// Runs as soon as either input arrives and gives that value; what
    /// arrives later is ignored (a race: the fastest of two services).
    FirstArrived,
    /// Waits for both; a list of the values present, in input order.
    List,
    /// Waits for both; an object `{ "a": ..., "b": ... }` with the values present.
    Object,
    /// Waits for both lists of objects and joins them on `key`, as `join`
    /// says (inner, left or outer): matching items are merged, `b`'s fields
    /// over `a`'s.
    Join,
}

/// Which items a `join` keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    /// Only items of `a` with a match in `b`.
    #[default]
    Inner,
    /// Every item of `a`, merged with its matches in `b` when there are any.
    Left,
    /// Every item of both; items of `b` without a match come last.
    Outer,
}

/// Joins two branches and combines what arrived: the first value (after an
/// if/else), the first to arrive (a race), both as a list or an object, or
/// two lists of objects joined by a key.
///
/// By default it runs once both inputs have resolved (arrived, or their
/// branch was not taken); with `mode: first_arrived` it runs on the first
/// value and ignores the other.
///
/// ```yaml
/// - id: users_with_orders
///   type: merge
///   config:
///     mode: join
///     key: user_id
///     join: left
/// ```
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "MergeFields")]
#[node(input = Pair, output = MaybeOut, category = "control")]
pub struct Merge {
    /// How to combine the inputs.
    #[serde(default)]
    pub mode: MergeMode,
    /// For `join`: the field both lists are joined on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// For `join`: which items to keep.
    #[serde(default)]
    pub join: JoinKind,
}

/// [`Merge`]'s fields as written, checked together when read (this is
/// also the config schema documents see).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MergeFields {
    /// How to combine the inputs.
    #[serde(default)]
    mode: MergeMode,
    /// For `join`: the field both lists are joined on.
    #[serde(default)]
    key: Option<String>,
    /// For `join`: which items to keep.
    #[serde(default)]
    join: JoinKind,
}

impl TryFrom<MergeFields> for Merge {
    type Error = String;

    fn try_from(f: MergeFields) -> Result<Self, String> {
        match (f.mode, &f.key) {
            (MergeMode::Join, None) => Err("mode `join` needs `key`: the field to join on".into()),
            (MergeMode::Join, Some(key)) if key.is_empty() => Err("`key` must name a field".into()),
            (mode, Some(_)) if mode != MergeMode::Join => {
                Err("`key` is only used with mode `join`".into())
            }
            _ => Ok(Merge {
                mode: f.mode,
                key: f.key,
                join: f.join,
            }),
        }
    }
}

impl Run for Merge {
    async fn run(&self, input: Pair, _ctx: &Context) -> Result<MaybeOut, NodeError> {
        let value = match self.mode {
            MergeMode::First | MergeMode::FirstArrived => input.a.or(input.b),
            MergeMode::List => Some(serde_json::Value::Array(
                input.a.into_iter().chain(input.b).collect(),
            )),
            MergeMode::Object => {
                let mut object = serde_json::Map::new();
                if let Some(a) = input.a {
                    object.insert("a".into(), a);
                }
                if let Some(b) = input.b {
                    object.insert("b".into(), b);
                }
                Some(serde_json::Value::Object(object))
            }
            MergeMode::Join => {
                let key = self.key.as_deref().unwrap_or_default();
                Some(join(key, self.join, input.a, input.b)?)
            }
        };
        Ok(MaybeOut { value })
    }

    fn eager(&self) -> bool {
        self.mode == MergeMode::FirstArrived
    }
}

/// Joins two lists of objects on `key`.
fn join(
    key: &str,
    kind: JoinKind,
    a: Option<serde_json::Value>,
    b: Option<serde_json::Value>,
) -> Result<serde_json::Value, NodeError> {
    let list = |port: &str,
                value: Option<serde_json::Value>|
     -> Result<Vec<serde_json::Map<String, serde_json::Value>>, NodeError> {
        let items = match value {
            None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) => items,
            Some(other) => {
                return Err(NodeError::permanent(format!(
                    "input `{port}` must be a list of objects to join, got {}",
                    crate::kind(&other)
                )));
            }
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                serde_json::Value::Object(map) => Ok(map),
                other => Err(NodeError::permanent(format!(
                    "input `{port}`[{i}] must be an object to join, got {}",
                    crate::kind(&other)
                ))),
            })
            .collect()
    };
    let left = list("a", a)?;
    let right = list("b", b)?;
    let mut matched = vec![false; right.len()];
    let mut out = Vec::new();
    for item in left {
        let mut found = false;
        if let Some(k) = item.get(key).filter(|k| !k.is_null()) {
            for (j, other) in right.iter().enumerate() {
                if other.get(key) == Some(k) {
                    found = true;
                    matched[j] = true;
                    let mut merged = item.clone();
                    for (field, value) in other {
                        merged.insert(field.clone(), value.clone());
                    }
                    out.push(serde_json::Value::Object(merged));
                }
            }
        }
        if !found && kind != JoinKind::Inner {
            out.push(serde_json::Value::Object(item));
        }
    }
    if kind == JoinKind::Outer {
        out.extend(
            right
                .into_iter()
                .zip(matched)
                .filter(|(_, m)| !m)
                .map(|(item, _)| serde_json::Value::Object(item)),
        );
    }
    Ok(serde_json::Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghostflow::{Error, Inputs, NodeStatus};

    fn flow(fail: bool, delay_ms: u64) -> Flow {
        let mut b = Flow::builder("control");
        let input = b.input::<serde_json::Value>("value");
        let delay = b.add("delay", Delay { ms: delay_ms });
        let pass = b.add("pass", Passthrough {});
        b.connect(input, delay.inp().value);
        b.connect(delay.out().value, pass.inp().value);
        b.output("value", pass.out().value);
        if fail {
            let stop = b.add(
                "stop",
                Fail {
                    message: "stopped on purpose".into(),
                },
            );
            b.connect(pass.out().value, stop.inp().value);
        }
        b.build().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn delay_waits_and_passthrough_keeps_the_value() {
        let begin = tokio::time::Instant::now();
        let outcome = Engine::new()
            .run(
                &flow(false, 1500),
                Inputs::new().set("value", serde_json::json!({"a": [1, 2]})),
            )
            .await
            .unwrap();
        assert_eq!(begin.elapsed(), Duration::from_millis(1500));
        assert_eq!(
            outcome.output::<serde_json::Value>("value").unwrap(),
            serde_json::json!({"a": [1, 2]})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fail_stops_the_run_with_its_message() {
        let err = Engine::new()
            .run(
                &flow(true, 0),
                Inputs::new().set("value", serde_json::json!(3)),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "node `stop` failed after 1 attempt(s): stopped on purpose (value: 3)"
        );
        assert!(matches!(err, Error::NodeFailed { .. }));
    }

    fn branchy(condition: bool, mode: MergeMode) -> Flow {
        let mut b = Flow::builder("branchy");
        let input = b.input::<serde_json::Value>("value");
        let branch = b.add("branch", If { condition });
        let yes = b.add("yes", Passthrough {});
        let no = b.add("no", Passthrough {});
        let join = b.add(
            "join",
            Merge {
                mode,
                ..Merge::default()
            },
        );
        b.connect(input, branch.inp().value);
        b.connect(branch.out().then, yes.inp().value);
        b.connect(branch.out().otherwise, no.inp().value);
        b.connect(yes.out().value, join.inp().a);
        b.connect(no.out().value, join.inp().b);
        b.output("merged", join.out().value);
        b.build().unwrap()
    }

    #[tokio::test]
    async fn if_takes_one_branch_and_merge_joins_whichever_ran() {
        for condition in [true, false] {
            let outcome = Engine::new()
                .run(
                    &branchy(condition, MergeMode::First),
                    Inputs::new().set("value", serde_json::json!("v")),
                )
                .await
                .unwrap();
            let (ran, skipped) = if condition {
                ("yes", "no")
            } else {
                ("no", "yes")
            };
            assert_eq!(outcome.node(ran).unwrap().status, NodeStatus::Succeeded);
            assert_eq!(outcome.node(skipped).unwrap().status, NodeStatus::Skipped);
            assert_eq!(
                outcome.output::<serde_json::Value>("merged").unwrap(),
                serde_json::json!("v")
            );
        }
        let outcome = Engine::new()
            .run(
                &branchy(true, MergeMode::Object),
                Inputs::new().set("value", serde_json::json!(1)),
            )
            .await
            .unwrap();
        assert_eq!(
            outcome.output::<serde_json::Value>("merged").unwrap(),
            serde_json::json!({"a": 1})
        );
        let outcome = Engine::new()
            .run(
                &branchy(false, MergeMode::List),
                Inputs::new().set("value", serde_json::json!(2)),
            )
            .await
            .unwrap();
        assert_eq!(
            outcome.output::<serde_json::Value>("merged").unwrap(),
            serde_json::json!([2])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn first_arrived_takes_the_faster_branch_without_waiting_for_the_other() {
        let mut b = Flow::builder("race");
        let input = b.input::<serde_json::Value>("value");
        let fast = b.add("fast", Delay { ms: 100 });
        let slow = b.add("slow", Delay { ms: 300 });
        let tag_fast = b.add("tag_fast", Passthrough {});
        let race = b.add(
            "race",
            Merge {
                mode: MergeMode::FirstArrived,
                ..Merge::default()
            },
        );
        let after = b.add("after", Delay { ms: 0 });
        b.connect(input, fast.inp().value);
        b.connect(input, slow.inp().value);
        b.connect(fast.out().value, tag_fast.inp().value);
        b.connect(tag_fast.out().value, race.inp().a);
        b.connect(slow.out().value, race.inp().b);
        b.connect(race.out().value, after.inp().value);
        b.output("winner", race.out().value);
        let flow = b.build().unwrap();
        let execution = Engine::new()
            .start(&flow, Inputs::new().set("value", serde_json::json!("v")))
            .unwrap();
        let events = execution.events();
        let outcome = execution.wait().await.unwrap();
        assert_eq!(outcome.output::<serde_json::Value>("winner").unwrap(), "v");
        let order: Vec<String> = futures::StreamExt::collect::<Vec<_>>(events)
            .await
            .into_iter()
            .filter_map(|e| match e.kind {
                ghostflow::EventKind::NodeSucceeded { node, .. } => Some(node.to_string()),
                _ => None,
            })
            .collect();
        let at = |id: &str| order.iter().position(|n| n == id).unwrap();
        // The race and what follows it finished before the slow branch.
        assert!(at("race") < at("slow"), "{order:?}");
        assert!(at("after") < at("slow"), "{order:?}");
        // The merge ran once.
        assert_eq!(order.iter().filter(|n| *n == "race").count(), 1);
    }

    #[tokio::test]
    async fn join_merges_lists_of_objects_by_key() {
        let users = serde_json::json!([{"id": 1, "name": "ada"}, {"id": 2, "name": "bob"}, {"id": 3, "name": "cy"}]);
        let orders = serde_json::json!([{"id": 2, "total": 5}, {"id": 1, "total": 7}, {"id": 1, "total": 9}, {"id": 4, "total": 1}]);
        let run = |kind: JoinKind| {
            let (users, orders) = (users.clone(), orders.clone());
            async move {
                let mut b = Flow::builder("join");
                let u = b.input::<serde_json::Value>("users");
                let o = b.input::<serde_json::Value>("orders");
                let j = b.add(
                    "j",
                    Merge {
                        mode: MergeMode::Join,
                        key: Some("id".into()),
                        join: kind,
                    },
                );
                b.connect(u, j.inp().a);
                b.connect(o, j.inp().b);
                b.output("joined", j.out().value);
                let flow = b.build().unwrap();
                Engine::new()
                    .run(
                        &flow,
                        Inputs::new().set("users", users).set("orders", orders),
                    )
                    .await
                    .unwrap()
                    .output::<serde_json::Value>("joined")
                    .unwrap()
            }
        };
        assert_eq!(
            run(JoinKind::Inner).await,
            serde_json::json!([
                {"id": 1, "name": "ada", "total": 7},
                {"id": 1, "name": "ada", "total": 9},
                {"id": 2, "name": "bob", "total": 5}
            ])
        );
        assert_eq!(run(JoinKind::Left).await.as_array().unwrap().len(), 4);
        let outer = run(JoinKind::Outer).await;
        assert_eq!(outer.as_array().unwrap().len(), 5);
        assert_eq!(outer[4], serde_json::json!({"id": 4, "total": 1}));
    }

    #[test]
    fn a_join_without_a_key_is_refused_when_read() {
        let err = serde_json::from_value::<Merge>(serde_json::json!({"mode": "join"})).unwrap_err();
        assert!(err.to_string().contains("mode `join` needs `key`"), "{err}");
        let err = serde_json::from_value::<Merge>(serde_json::json!({"mode": "list", "key": "id"}))
            .unwrap_err();
        assert!(
            err.to_string().contains("only used with mode `join`"),
            "{err}"
        );
        let err = serde_json::from_value::<Merge>(serde_json::json!({"mode": "zip"})).unwrap_err();
        assert!(err.to_string().contains("unknown variant `zip`"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn fail_with_on_error_continue_reports_on_its_error_port() {
        let mut b = Flow::builder("guard");
        let input = b.input::<serde_json::Value>("value");
        let stop = b.add(
            "stop",
            Fail {
                message: "bad".into(),
            },
        );
        b.connect(input, stop.inp().value);
        b.output("failure", stop.error());
        b.policy(&stop).on_error(OnError::Continue);
        let flow = b.build().unwrap();
        let outcome = Engine::new()
            .run(&flow, Inputs::new().set("value", serde_json::json!("x")))
            .await
            .unwrap();
        let failure: ghostflow::NodeFailure = outcome.output("failure").unwrap();
        assert_eq!(failure.node, "stop");
        assert_eq!(failure.message, r#"bad (value: "x")"#);
        assert!(!failure.retryable);
        assert_eq!(outcome.node("stop").unwrap().status, NodeStatus::Failed);
    }
}
