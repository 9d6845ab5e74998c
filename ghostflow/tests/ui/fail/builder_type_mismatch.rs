use ghostflow::prelude::*;

/// Produces a text.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(output = Text)]
pub struct A {}

/// Consumes a number.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Number)]
pub struct C {}

/// A text.
#[derive(Ports)]
pub struct Text {
    /// The text.
    pub text: String,
}

/// A number.
#[derive(Ports)]
pub struct Number {
    /// The number.
    pub n: u64,
}

impl Run for A {
    async fn run(&self, _input: (), _ctx: &Context) -> Result<Text, NodeError> {
        Ok(Text {
            text: "forty-two".into(),
        })
    }
}

impl Run for C {
    async fn run(&self, _input: Number, _ctx: &Context) -> Result<(), NodeError> {
        Ok(())
    }
}

fn main() {
    let mut b = ghostflow::Flow::builder("f");
    let a = b.add("a", A {});
    let c = b.add("c", C {});
    b.connect(a.out().text, c.inp().n);
}
