//! Control-flow nodes: wait, stop, pass values through.

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
