//! Control-flow nodes: branch, join, wait, stop, pass values through.

use std::time::Duration;

use ghostflow::prelude::*;

/// Any JSON value, passed through unchanged.
#[derive(Ports, Debug)]
pub struct Json {
    /// The value.
    pub value: serde_json::Value,
}

/// Waits for a fixed time, then passes its input on. Cancellation ends the
/// wait at once.
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

/// Stops the execution with a message when it receives a value. Place it on
/// a branch to turn "this should not happen" into a failed run.
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
/// otherwise; the branch not taken, and everything that needs it, is
/// skipped. In documents the condition is usually an expression, such as
/// `"{{ input.amount > 100 }}"`.
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
    /// The first input that has a value (`a`, then `b`): the join after an
    /// if/else. Empty when neither has one.
    #[default]
    First,
    /// A list of the values present, in input order.
    List,
    /// An object `{ "a": ..., "b": ... }` with the values present.
    Object,
}

/// Joins two branches: runs once both inputs have resolved (arrived, or
/// their branch was not taken) and combines what arrived.
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = Pair, output = MaybeOut, category = "control")]
pub struct Merge {
    /// How to combine the inputs.
    #[serde(default)]
    pub mode: MergeMode,
}

impl Run for Merge {
    async fn run(&self, input: Pair, _ctx: &Context) -> Result<MaybeOut, NodeError> {
        let value = match self.mode {
            MergeMode::First => input.a.or(input.b),
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
        };
        Ok(MaybeOut { value })
    }
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
        let join = b.add("join", Merge { mode });
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
