use ghostflow::prelude::*;

/// Counts words.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(name = "count_words", category = "text", name = "word_count")]
pub struct CountWords {}

impl Run for CountWords {
    async fn run(&self, _input: (), _ctx: &Context) -> Result<(), NodeError> {
        Ok(())
    }
}

fn main() {}
