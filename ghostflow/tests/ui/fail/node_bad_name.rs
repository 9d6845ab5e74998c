use ghostflow::prelude::*;

/// Counts words.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(name = "Count Words")]
pub struct CountWords {}

impl Run for CountWords {
    async fn run(&self, _input: (), _ctx: &Context) -> Result<(), NodeError> {
        Ok(())
    }
}

fn main() {}
