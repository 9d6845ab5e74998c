//! The README's example, kept compiling and passing.

use std::time::Duration;

use ghostflow::prelude::*;

/// Counts the words in a text.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Text, output = WordCount)]
pub(crate) struct CountWords {
    pub(crate) min_len: usize,
}

#[derive(Ports, Debug)]
pub(crate) struct Text {
    pub(crate) text: String,
}
#[derive(Ports, Debug)]
pub(crate) struct WordCount {
    pub(crate) words: u64,
}

impl Run for CountWords {
    async fn run(&self, input: Text, _ctx: &Context) -> Result<WordCount, NodeError> {
        let n = input
            .text
            .split_whitespace()
            .filter(|w| w.len() >= self.min_len)
            .count();
        Ok(WordCount { words: n as u64 })
    }
}

#[tokio::test]
async fn the_readme_example_runs() -> Result<(), ghostflow::Error> {
    let mut b = Flow::builder("count");
    let text = b.input::<String>("text");
    let count = b.add("count", CountWords { min_len: 2 });
    b.connect(text, count.inp().text);
    b.output("words", count.out().words);
    b.policy(&count)
        .retry(RetryPolicy::attempts(3))
        .timeout(Duration::from_secs(5));
    let flow = b.build()?;
    let outcome = Engine::new()
        .run(
            &flow,
            Inputs::new().set("text", "hello brave new world".to_string()),
        )
        .await?;
    assert_eq!(outcome.output::<u64>("words")?, 4);
    Ok(())
}
