use ghostflow::prelude::*;

/// Counts words.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Text)]
pub struct CountWords {}

/// A text, without `#[derive(Ports)]`.
pub struct Text {
    /// The text.
    pub text: String,
}

impl Run for CountWords {
    async fn run(&self, _input: Text, _ctx: &Context) -> Result<(), NodeError> {
        Ok(())
    }
}

fn main() {}
