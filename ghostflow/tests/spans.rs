//! Tracing: each execution and each node runs in a span carrying its ids.
//!
//! A test binary of its own: `tracing` caches per call site whether anyone
//! listens, process-wide, so a test that installs a subscriber must not share
//! its process with tests that run flows without one at the same time.

use std::io::Write;
use std::sync::Arc;

use ghostflow::prelude::*;
use parking_lot::Mutex;

/// A number.
#[derive(Ports, Debug)]
pub struct Num {
    /// The number.
    pub n: u64,
}

/// Emits a constant.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(output = Num)]
pub struct Const {
    /// The constant.
    pub value: u64,
}

impl Run for Const {
    async fn run(&self, _: (), _: &Context) -> Result<Num, NodeError> {
        Ok(Num { n: self.value })
    }
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs one line from inside the node.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Num, output = Num)]
pub struct Noisy {}

impl Run for Noisy {
    async fn run(&self, input: Num, _: &Context) -> Result<Num, NodeError> {
        tracing::info!(n = input.n, "inside the node");
        Ok(input)
    }
}

#[test]
fn node_logs_carry_the_run_and_node_ids() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let mut b = Flow::builder("traced");
    let c = b.add("c", Const { value: 3 });
    let noisy = b.add("noisy", Noisy {});
    b.connect(c.out().n, noisy.inp().n);
    let flow = b.build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let run_id = tracing::subscriber::with_default(subscriber, || {
        rt.block_on(Engine::new().run(&flow, Inputs::new()))
            .unwrap()
            .run_id()
    });
    let text = String::from_utf8(buffer.0.lock().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("inside the node"))
        .unwrap_or_else(|| panic!("no log line in {text:?}"));
    assert!(
        line.contains(&format!("run{{run_id={run_id} flow=traced}}")),
        "{line}"
    );
    assert!(line.contains("node{node=noisy index=1}"), "{line}");
}
