use ghostflow::prelude::*;

/// Greets.
#[derive(Node, Clone, Debug, Serialize, JsonSchema)]
pub struct Greet<'a> {
    /// The greeting.
    pub greeting: &'a str,
}

fn main() {}
