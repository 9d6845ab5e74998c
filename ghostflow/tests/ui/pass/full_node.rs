//! A documented node with optional and renamed ports, wired and run.

use ghostflow::prelude::*;

/// Counts the words in a text.
///
/// Words are separated by whitespace.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Text, output = WordCount, name = "count_words", version = "3", category = "text")]
pub struct CountWords {
    /// Ignore words shorter than this.
    #[serde(default)]
    pub min_len: usize,
}

/// Input of [`CountWords`].
#[derive(Ports)]
#[ports(handles = TextHandles)]
pub struct Text {
    /// The text to count.
    pub text: String,
    /// Extra text, counted too when connected.
    pub extra: Option<String>,
}

/// Output of [`CountWords`].
#[derive(Ports)]
pub struct WordCount {
    /// Number of words.
    #[port(name = "count")]
    pub words: u64,
    /// The longest word, if any.
    pub longest: std::option::Option<String>,
}

impl Run for CountWords {
    async fn run(&self, input: Text, _ctx: &Context) -> Result<WordCount, NodeError> {
        let text = format!("{} {}", input.text, input.extra.unwrap_or_default());
        let words: Vec<&str> = text
            .split_whitespace()
            .filter(|w| w.len() >= self.min_len)
            .collect();
        let longest = words.iter().max_by_key(|w| w.len()).map(|w| w.to_string());
        Ok(WordCount {
            words: words.len() as u64,
            longest,
        })
    }
}

fn main() {
    let spec = CountWords::spec();
    assert_eq!(spec.type_name, "count_words");
    assert_eq!(spec.version, "3");
    assert_eq!(spec.category, "text");
    assert_eq!(
        spec.description,
        "Counts the words in a text.\n\nWords are separated by whitespace."
    );
    assert_eq!(spec.outputs[0].name, "count");
    assert!(!spec.inputs[1].required);

    let mut b = Flow::builder("count");
    let text = b.input::<String>("text");
    let count = b.add("count", CountWords { min_len: 0 });
    let handles: TextHandles<ghostflow::In> = count.inp();
    let copy = handles;
    b.connect(text, copy.text);
    b.output("count", count.out().words);
    assert!(format!("{handles:?}").starts_with("TextHandles"));
    b.build().unwrap();
}
