//! Nodes without inputs, without outputs, and with an empty ports struct.

use ghostflow::prelude::*;

/// Produces a greeting.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(output = Greeting)]
pub struct Hello {}

/// Discards its input.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Greeting, output = Nothing)]
pub struct Sink;

/// A greeting.
#[derive(Ports)]
pub struct Greeting {
    /// The greeting.
    pub text: String,
}

/// No ports, as a struct.
#[derive(Ports)]
pub struct Nothing {}

impl Run for Hello {
    async fn run(&self, _input: (), _ctx: &Context) -> Result<Greeting, NodeError> {
        Ok(Greeting {
            text: "hello".into(),
        })
    }
}

impl Run for Sink {
    async fn run(&self, _input: Greeting, _ctx: &Context) -> Result<Nothing, NodeError> {
        Ok(Nothing {})
    }
}

fn main() {
    assert!(Hello::spec().inputs.is_empty());
    assert!(Sink::spec().outputs.is_empty());
    assert_eq!(<Nothing as Ports>::LEN, 0);

    let mut b = Flow::builder("greet");
    let hello = b.add("hello", Hello {});
    let sink = b.add("sink", Sink);
    b.connect(hello.out().text, sink.inp().text);
    let _: NothingPorts<ghostflow::Out> = sink.out();
    b.build().unwrap();
}
