use ghostflow::prelude::*;

/// Counts words.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Text)]
pub struct CountWords {}

/// A text.
#[derive(Ports)]
pub struct Text {
    /// The text.
    pub text: String,
}

fn main() {}
