//! Quickstart: a custom node, a six-node flow with a fan-out and a branch,
//! its outcome and its event timeline.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example quickstart
//! cargo run --example quickstart -- "my text to triage"
//! ```

use std::time::Duration;

use futures::StreamExt;
use ghostflow::prelude::*;
use ghostflow::{Event, EventKind};

/// A text.
#[derive(Ports, Debug)]
pub struct Text {
    /// The text.
    pub text: String,
}

/// Lower-cases a text and collapses its whitespace.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Text, output = Text, category = "text")]
pub struct Normalize {}

impl Run for Normalize {
    async fn run(&self, input: Text, _ctx: &Context) -> Result<Text, NodeError> {
        let words: Vec<_> = input.text.split_whitespace().collect();
        Ok(Text {
            text: words.join(" ").to_lowercase(),
        })
    }
}

/// A word count.
#[derive(Ports, Debug)]
pub struct WordCount {
    /// Number of words.
    pub words: u64,
}

/// Counts the words in a text.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Text, output = WordCount, category = "text")]
pub struct CountWords {
    /// Ignore words shorter than this.
    #[serde(default)]
    pub min_len: usize,
}

impl Run for CountWords {
    async fn run(&self, input: Text, _ctx: &Context) -> Result<WordCount, NodeError> {
        let words = input
            .text
            .split_whitespace()
            .filter(|w| w.len() >= self.min_len)
            .count();
        Ok(WordCount {
            words: words as u64,
        })
    }
}

/// The two ways out of [`Triage`]; exactly one carries the text.
#[derive(Ports, Debug)]
pub struct Route {
    /// Taken when the text mentions an urgent word.
    pub urgent: Option<String>,
    /// Taken otherwise.
    pub routine: Option<String>,
}

/// Sends a text down the `urgent` branch when it contains one of the
/// configured words, down `routine` otherwise.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Text, output = Route, category = "control")]
pub struct Triage {
    /// Words that make a text urgent.
    pub urgent_words: Vec<String>,
}

impl Run for Triage {
    async fn run(&self, input: Text, _ctx: &Context) -> Result<Route, NodeError> {
        let urgent = self.urgent_words.iter().any(|w| {
            input
                .text
                .split_whitespace()
                .any(|t| t.trim_matches(|c: char| !c.is_alphanumeric()) == w)
        });
        Ok(if urgent {
            Route {
                urgent: Some(input.text),
                routine: None,
            }
        } else {
            Route {
                urgent: None,
                routine: Some(input.text),
            }
        })
    }
}

/// A reply.
#[derive(Ports, Debug)]
pub struct Reply {
    /// The reply text.
    pub reply: String,
}

/// Writes a reply from a template; `{}` stands for the text. Takes a little
/// while, like a real call to a ticketing system would.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Text, output = Reply, category = "text")]
pub struct Respond {
    /// The reply template.
    pub template: String,
    /// Simulated latency in milliseconds.
    pub latency_ms: u64,
}

impl Run for Respond {
    async fn run(&self, input: Text, ctx: &Context) -> Result<Reply, NodeError> {
        ctx.progress(format!("drafting reply to {} chars", input.text.len()));
        tokio::time::sleep(Duration::from_millis(self.latency_ms)).await;
        Ok(Reply {
            reply: self.template.replace("{}", &input.text),
        })
    }
}

/// Inputs of [`Summarize`]: a word count and whichever reply was written.
#[derive(Ports, Debug)]
pub struct SummaryIn {
    /// Number of words.
    pub words: u64,
    /// The urgent reply, if that branch ran.
    pub urgent: Option<String>,
    /// The routine reply, if that branch ran.
    pub routine: Option<String>,
}

/// Puts the word count and the reply together.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = SummaryIn, output = Reply, category = "text")]
pub struct Summarize {}

impl Run for Summarize {
    async fn run(&self, input: SummaryIn, _ctx: &Context) -> Result<Reply, NodeError> {
        let (kind, reply) = match (input.urgent, input.routine) {
            (Some(r), _) => ("URGENT", r),
            (None, Some(r)) => ("routine", r),
            (None, None) => return Err(NodeError::permanent("no branch produced a reply")),
        };
        Ok(Reply {
            reply: format!("[{kind}, {} words] {reply}", input.words),
        })
    }
}

fn triage_flow() -> Result<Flow, ghostflow::Error> {
    let mut b = Flow::builder("triage");
    let text = b.input::<String>("text");
    let normalize = b.add("normalize", Normalize {});
    let count = b.add("count", CountWords { min_len: 2 });
    let triage = b.add(
        "triage",
        Triage {
            urgent_words: vec!["down".into(), "outage".into(), "urgent".into()],
        },
    );
    let escalate = b.add(
        "escalate",
        Respond {
            template: "Paging the on-call engineer about: {}".into(),
            latency_ms: 30,
        },
    );
    let acknowledge = b.add(
        "acknowledge",
        Respond {
            template: "Thanks, we will look at: {}".into(),
            latency_ms: 10,
        },
    );
    let summary = b.add("summary", Summarize {});

    b.connect(text, normalize.inp().text);
    // Fan-out: both nodes read the normalized text, and run concurrently.
    b.connect(normalize.out().text, count.inp().text);
    b.connect(normalize.out().text, triage.inp().text);
    // Branch: only one of these runs; the other is skipped.
    b.connect(triage.out().urgent, escalate.inp().text);
    b.connect(triage.out().routine, acknowledge.inp().text);
    b.connect(count.out().words, summary.inp().words);
    b.connect(escalate.out().reply, summary.inp().urgent);
    b.connect(acknowledge.out().reply, summary.inp().routine);
    b.output("summary", summary.out().reply);
    // A slow paging system gets two more tries and a time limit.
    b.policy(&escalate)
        .retry(RetryPolicy::attempts(3))
        .timeout(Duration::from_secs(2));
    b.build()
}

fn describe(event: &Event) -> String {
    match &event.kind {
        EventKind::RunStarted { flow, nodes } => format!("run started: {flow} ({nodes} nodes)"),
        EventKind::NodeStarted { node, attempt, .. } => {
            format!("{node} started (attempt {attempt})")
        }
        EventKind::NodeSucceeded { node, duration, .. } => {
            format!("{node} succeeded in {duration:.1?}")
        }
        EventKind::NodeFailed { node, error, .. } => format!("{node} failed: {error}"),
        EventKind::NodeSkipped { node, .. } => format!("{node} skipped (branch not taken)"),
        EventKind::NodeProgress { node, data, .. } => format!("{node} progress: {data}"),
        EventKind::RunFinished { status, .. } => format!("run finished: {status:?}"),
        other => format!("{other:?}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "The  checkout page is DOWN since this morning".to_owned());
    let flow = triage_flow()?;
    let engine = Engine::new();

    let execution = engine.start(&flow, Inputs::new().set("text", text))?;
    let events = execution.events();
    let outcome = execution.wait().await?;

    println!("summary: {}", outcome.output::<String>("summary")?);
    println!();
    println!("timeline:");
    let timeline: Vec<Event> = events.collect().await;
    for event in &timeline {
        println!("  {:>9.3?}  {}", event.elapsed, describe(event));
    }
    println!();
    println!("nodes:");
    for node in outcome.nodes() {
        println!(
            "  {:<12} {:<10} attempts: {}",
            node.id,
            format!("{:?}", node.status),
            node.attempts
        );
    }
    Ok(())
}
