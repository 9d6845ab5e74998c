use ghostflow::prelude::*;

/// Counts words.
#[derive(Node, Clone, Debug, Serialize, Deserialize)]
pub struct CountWords {
    /// Ignore shorter words.
    pub min_len: usize,
}

impl Run for CountWords {
    async fn run(&self, _input: (), _ctx: &Context) -> Result<(), NodeError> {
        Ok(())
    }
}

fn main() {}
