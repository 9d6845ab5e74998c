//! Text splitting, document loading and the vector store: the nodes run
//! in flows (YAML documents and the typed builder) against real files in
//! a temporary file root per test; PDFs are written by the tests
//! themselves; the store is checked against a brute-force reference on
//! random data.
#![cfg(feature = "ai")]

mod common;
use common::{load, load_error};

use std::path::PathBuf;

use base64::Engine as _;
use ghostflow::{Engine, Error, Flow, Inputs, NodeFailure, NodeStatus, Outcome};
use ghostflow_nodes::ai::vector::{
    Filter, Match, Metric, Query, Record, Selection, SqliteStore, VectorStore,
};
use ghostflow_nodes::ai::{DocumentFormat, DocumentLoad, TextSplit, Tokenizer, VectorSearch};
use ghostflow_nodes::file::FileRoot;
use serde_json::{Map, Value, json};

// ------------------------------------------------------------------ helpers

/// A temporary directory holding the file root.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        Sandbox { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn engine(&self) -> Engine {
        Engine::builder()
            .resource(FileRoot::new(self.root()))
            .build()
    }
}

/// A flow of one node `n`; each input given to a run goes to the port of
/// the same name (inputs not given stay unconnected), each output comes
/// from one.
#[derive(Clone)]
struct OneNode {
    node_type: String,
    config: Value,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

fn one_node(node_type: &str, config: Value, inputs: &[&str], outputs: &[&str]) -> OneNode {
    let spec = OneNode {
        node_type: node_type.into(),
        config,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
    };
    // Every port named exists: the flow with all of them loads.
    spec.flow(None);
    spec
}

impl OneNode {
    fn flow(&self, given: Option<&Value>) -> Flow {
        let inputs: Vec<&String> = self
            .inputs
            .iter()
            .filter(|i| given.is_none_or(|g| g.get(i.as_str()).is_some()))
            .collect();
        let declared: String = inputs.iter().map(|i| format!("  {i}: {{}}\n")).collect();
        let edges: String = inputs
            .iter()
            .map(|i| format!("  - {{ from: input.{i}, to: n.{i} }}\n"))
            .collect();
        let outs: String = self
            .outputs
            .iter()
            .map(|o| format!("  {o}: n.{o}\n"))
            .collect();
        let (declared, edges) = if inputs.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("inputs:\n{declared}"), format!("edges:\n{edges}"))
        };
        load(&format!(
            "version: 1\nname: one\n{declared}nodes:\n  - id: n\n    type: {}\n    config: {}\n{edges}outputs:\n{outs}",
            self.node_type, self.config
        ))
    }
}

/// What a test runs: a flow, or one node.
trait Runnable {
    fn flow_for(&self, inputs: &Value) -> Flow;
}

impl Runnable for Flow {
    fn flow_for(&self, _: &Value) -> Flow {
        self.clone()
    }
}

impl Runnable for OneNode {
    fn flow_for(&self, inputs: &Value) -> Flow {
        self.flow(Some(inputs))
    }
}

async fn run(engine: &Engine, flow: &impl Runnable, inputs: Value) -> Result<Outcome, Error> {
    let flow = flow.flow_for(&inputs);
    let inputs = Inputs::from_json(inputs.as_object().cloned().unwrap_or_default());
    engine.run(&flow, inputs).await
}

async fn outputs(engine: &Engine, flow: &impl Runnable, inputs: Value) -> Value {
    let outcome = run(engine, flow, inputs)
        .await
        .unwrap_or_else(|e| panic!("the run failed: {e}"));
    Value::Object(outcome.outputs_json().unwrap())
}

/// The message and kind of the node failure of a run that must fail.
async fn failure(engine: &Engine, flow: &impl Runnable, inputs: Value) -> (String, bool) {
    match run(engine, flow, inputs).await {
        Err(Error::NodeFailed { error, .. }) => (error.message().to_owned(), error.is_retryable()),
        Err(other) => panic!("expected a node failure, got {other}"),
        Ok(outcome) => panic!("expected a node failure, got {:?}", outcome.outputs_json()),
    }
}

fn split_flow(config: Value) -> OneNode {
    one_node(
        "text_split",
        config,
        &["text", "metadata"],
        &["chunks", "texts", "metadata", "count"],
    )
}

fn chunk_texts(out: &Value) -> Vec<String> {
    serde_json::from_value(out["texts"].clone()).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// -------------------------------------------------------------- splitting

#[tokio::test]
async fn plain_text_splits_at_sentences_with_exact_overlaps() {
    let e = Engine::new();
    let text = "One two three. Four five six.\n\nSeven eight nine ten eleven.";
    let out = outputs(
        &e,
        &split_flow(json!({"chunk_size": 20})),
        json!({"text": text}),
    )
    .await;
    assert_eq!(
        chunk_texts(&out),
        [
            "One two three.",
            "Four five six.",
            "Seven eight nine ten",
            "eleven."
        ]
    );
    assert_eq!(out["count"], json!(4));
    assert_eq!(
        out["chunks"][2],
        json!({"index": 2, "text": "Seven eight nine ten", "start": 31, "end": 51, "char_start": 31, "char_end": 51})
    );
    // With overlap, a chunk repeats the end of the one before, where it
    // fits: the last one starts with the previous one's `nine ten`.
    let out = outputs(
        &e,
        &split_flow(json!({"chunk_size": 20, "overlap": 8})),
        json!({"text": text}),
    )
    .await;
    let chunks: Vec<(String, u64, u64)> = out["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["text"].as_str().unwrap().to_owned(),
                c["start"].as_u64().unwrap(),
                c["end"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        chunks,
        [
            ("One two three.".to_owned(), 0, 14),
            ("Four five six.".to_owned(), 15, 29),
            ("Seven eight nine ten".to_owned(), 31, 51),
            ("nine ten eleven.".to_owned(), 43, 59),
        ]
    );
    for (t, start, end) in &chunks {
        assert_eq!(&text[*start as usize..*end as usize], t);
    }
}

#[tokio::test]
async fn markdown_keeps_sections_lists_and_code_blocks_whole() {
    let e = Engine::new();
    let md = "# Guide\n\nIntro paragraph here.\n\n## Install\n\n- step one\n- step two\n\n```sh\ncargo add x\ncargo build\n```\n\n## Use\n\nCall it.\n";
    let out = outputs(
        &e,
        &split_flow(json!({"chunk_size": 40, "format": "markdown"})),
        json!({"text": md}),
    )
    .await;
    assert_eq!(
        chunk_texts(&out),
        [
            "# Guide\n\nIntro paragraph here.",
            "## Install\n\n- step one\n- step two",
            "```sh\ncargo add x\ncargo build\n```",
            "## Use\n\nCall it."
        ]
    );
    // A larger size keeps whole sections together.
    let out = outputs(
        &e,
        &split_flow(json!({"chunk_size": 70, "format": "markdown"})),
        json!({"text": md}),
    )
    .await;
    for chunk in chunk_texts(&out) {
        assert!(chunk.len() <= 70);
        // The code block is never cut.
        assert_eq!(chunk.matches("```").count() % 2, 0, "{chunk:?}");
    }
    assert!(
        chunk_texts(&out)
            .iter()
            .any(|c| c.contains("```sh\ncargo add x\ncargo build\n```"))
    );
}

#[tokio::test]
async fn token_chunks_fit_the_tokenizer() {
    let e = Engine::new();
    let text = "One two three. Four five six.\n\nSeven eight nine ten eleven.";
    let out = outputs(
        &e,
        &split_flow(json!({"unit": "tokens", "chunk_size": 5})),
        json!({"text": text}),
    )
    .await;
    assert_eq!(
        chunk_texts(&out),
        [
            "One two three.",
            "Four five six.",
            "Seven eight nine ten eleven",
            "."
        ]
    );
    let long = "Retrieval works best when chunks hold whole ideas. ".repeat(40);
    for tokenizer in [Tokenizer::Cl100kBase, Tokenizer::O200kBase] {
        let chunks = TextSplit::tokens(32, tokenizer)
            .with_overlap(4)
            .split(&long, None)
            .unwrap();
        assert!(chunks.len() > 5);
        for c in &chunks {
            let tokens = tokenizer.bpe().encode_ordinary(&c.text).len();
            assert!(tokens <= 32, "{tokens} tokens in {:?}", c.text);
        }
    }
}

#[tokio::test]
async fn offsets_count_bytes_and_characters_in_non_ascii_text() {
    let e = Engine::new();
    let text = "Grüße aus Köln! Ça va très bien. 東京は今日晴れです。 Ünïcödé ümlauts.";
    let out = outputs(
        &e,
        &split_flow(json!({"chunk_size": 12})),
        json!({"text": text}),
    )
    .await;
    let chars: Vec<char> = text.chars().collect();
    let chunks = out["chunks"].as_array().unwrap();
    assert!(chunks.len() > 3);
    let mut differ = false;
    for c in chunks {
        let t = c["text"].as_str().unwrap();
        let (start, end) = (
            c["start"].as_u64().unwrap() as usize,
            c["end"].as_u64().unwrap() as usize,
        );
        let (cs, ce) = (
            c["char_start"].as_u64().unwrap() as usize,
            c["char_end"].as_u64().unwrap() as usize,
        );
        assert_eq!(&text[start..end], t);
        assert_eq!(chars[cs..ce].iter().collect::<String>(), t);
        assert!(t.chars().count() <= 12);
        differ |= start != cs;
    }
    assert!(differ, "byte and character offsets should differ after `ü`");
    assert_eq!(chunks[0]["text"], json!("Grüße aus"));
    assert_eq!(chunks[1]["start"], json!(12));
    assert_eq!(chunks[1]["char_start"], json!(10));
}

#[tokio::test]
async fn metadata_is_carried_onto_every_chunk() {
    let e = Engine::new();
    let out = outputs(
        &e,
        &split_flow(json!({"chunk_size": 16})),
        json!({"text": "First sentence. Second sentence.", "metadata": {"source": "notes.txt", "lang": "en"}}),
    )
    .await;
    assert_eq!(
        out["metadata"],
        json!([
            {"source": "notes.txt", "lang": "en", "chunk": 0},
            {"source": "notes.txt", "lang": "en", "chunk": 1}
        ])
    );
    assert_eq!(out["chunks"][1]["metadata"], out["metadata"][1]);
    // Without metadata: only the index.
    let out = outputs(
        &e,
        &one_node(
            "text_split",
            json!({"chunk_size": 16}),
            &["text"],
            &["metadata", "chunks"],
        ),
        json!({"text": "First sentence. Second sentence."}),
    )
    .await;
    assert_eq!(out["metadata"], json!([{"chunk": 0}, {"chunk": 1}]));
    assert_eq!(out["chunks"][0].get("metadata"), None);
}

#[tokio::test]
async fn splitter_configs_and_limits_are_checked() {
    let problems = load_error(
        "version: 1\nname: bad\nnodes:\n  - id: s\n    type: text_split\n    config: { overlap: 2 }\n",
    );
    assert!(problems.contains("nodes[0].config"), "{problems}");
    assert!(problems.contains("chunk_size"), "{problems}");
    let problems = load_error(
        "version: 1\nname: bad\nnodes:\n  - id: s\n    type: text_split\n    config: { chunk_size: 0 }\n",
    );
    assert!(
        problems.contains("nodes[0].config.chunk_size: must be at least 1"),
        "{problems}"
    );
    let problems = load_error(
        "version: 1\nname: bad\nnodes:\n  - id: s\n    type: text_split\n    config: { chunk_size: 10, tokenizer: gpt5 }\n",
    );
    assert!(problems.contains("nodes[0].config.tokenizer"), "{problems}");
    let problems = load_error(
        "version: 1\nname: bad\nnodes:\n  - id: s\n    type: text_split\n    config: { chunk_size: ten }\n",
    );
    assert!(
        problems.contains("nodes[0].config.chunk_size"),
        "{problems}"
    );

    let e = Engine::new();
    let (message, retryable) = failure(
        &e,
        &split_flow(json!({"chunk_size": 10, "overlap": 10})),
        json!({"text": "x"}),
    )
    .await;
    assert_eq!(
        message,
        "config.overlap: 10 must be smaller than config.chunk_size (10)"
    );
    assert!(!retryable);
    let (message, _) = failure(
        &e,
        &split_flow(json!({"chunk_size": 3, "max_chunks": 2})),
        json!({"text": "aaa bbb ccc"}),
    )
    .await;
    assert_eq!(
        message,
        "the text gives more than config.max_chunks (2) chunks of 3 characters; raise max_chunks or chunk_size"
    );
    let (message, _) = failure(
        &e,
        &split_flow(json!({"chunk_size": 3, "max_input_bytes": 5})),
        json!({"text": "ünïcö"}),
    )
    .await;
    assert_eq!(
        message,
        "input `text`: 8 bytes is more than config.max_input_bytes (5)"
    );
}

// ---------------------------------------------------------------- loading

/// A PDF with one page per item of `pages`, each line a text object in
/// Helvetica (WinAnsi: `\xe9` is `é`); a page with no lines draws a
/// rectangle and has no text, like a scan.
fn pdf(pages: &[&[&[u8]]], title: Option<&str>) -> Vec<u8> {
    pdf_with(pages, title, 0, 0)
}

/// As [`pdf`], each page's content stream followed by `padding` spaces
/// and compressed `layers` times with zlib (`/FlateDecode` as often).
fn pdf_with(pages: &[&[&[u8]]], title: Option<&str>, padding: usize, layers: u32) -> Vec<u8> {
    pdf_encoded(
        pages,
        title,
        padding,
        &vec![PdfFilter::Flate; layers as usize],
        "\n",
    )
}

/// A stream filter, as a test PDF writes it.
#[derive(Clone, Copy, Debug)]
enum PdfFilter {
    /// `/FlateDecode`, zlib.
    Flate,
    /// `/FlateDecode`, written as raw deflate after two junk bytes (the
    /// parser falls back to that).
    RawFlate,
    /// `/ASCIIHexDecode`.
    Hex,
    /// `/ASCII85Decode`.
    Ascii85,
}

impl PdfFilter {
    fn name(self) -> &'static str {
        match self {
            PdfFilter::Flate | PdfFilter::RawFlate => "/FlateDecode",
            PdfFilter::Hex => "/ASCIIHexDecode",
            PdfFilter::Ascii85 => "/ASCII85Decode",
        }
    }

    fn encode(self, data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        match self {
            PdfFilter::Flate => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            PdfFilter::RawFlate => {
                let mut e =
                    flate2::write::DeflateEncoder::new(b"!!".to_vec(), flate2::Compression::best());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            PdfFilter::Hex => {
                let mut out: Vec<u8> = data
                    .iter()
                    .flat_map(|b| format!("{b:02x}").into_bytes())
                    .collect();
                out.push(b'>');
                out
            }
            PdfFilter::Ascii85 => {
                let mut out = Vec::new();
                for chunk in data.chunks(4) {
                    let mut word = [0u8; 4];
                    word[..chunk.len()].copy_from_slice(chunk);
                    let mut n = u32::from_be_bytes(word);
                    let mut digits = [0u8; 5];
                    for d in digits.iter_mut().rev() {
                        *d = (n % 85) as u8 + b'!';
                        n /= 85;
                    }
                    out.extend_from_slice(&digits[..chunk.len() + 1]);
                }
                out.extend_from_slice(b"~>");
                out
            }
        }
    }
}

/// As [`pdf`], each page's content stream followed by `padding` spaces,
/// encoded with `filters` (in `/Filter` order: the first is decoded
/// first), with `gap` between the `stream` keyword and the data.
fn pdf_encoded(
    pages: &[&[&[u8]]],
    title: Option<&str>,
    padding: usize,
    filters: &[PdfFilter],
    gap: &str,
) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = Vec::new();
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", 4 + 2 * i))
        .collect();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    objects.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        )
        .into_bytes(),
    );
    objects.push(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    );
    for (i, lines) in pages.iter().enumerate() {
        let mut content = Vec::new();
        if lines.is_empty() {
            content.extend_from_slice(b"0.5 g 72 72 468 648 re f");
        } else {
            content.extend_from_slice(b"BT /F1 12 Tf 72 720 Td 16 TL\n");
            for line in *lines {
                content.push(b'(');
                for &b in *line {
                    if matches!(b, b'(' | b')' | b'\\') {
                        content.push(b'\\');
                    }
                    content.push(b);
                }
                content.extend_from_slice(b") Tj T*\n");
            }
            content.extend_from_slice(b"ET");
        }
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * i
            )
            .into_bytes(),
        );
        content.resize(content.len() + padding, b' ');
        for filter in filters.iter().rev() {
            content = filter.encode(&content);
        }
        let filter = match filters {
            [] => String::new(),
            _ => format!(
                " /Filter [{}]",
                filters
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        };
        let mut stream =
            format!("<< /Length {}{filter} >>\nstream{gap}", content.len()).into_bytes();
        stream.extend_from_slice(&content);
        stream.extend_from_slice(b"\nendstream");
        objects.push(stream);
    }
    let info = title.map(|t| {
        objects.push(format!("<< /Title ({t}) /Producer (ghostflow tests) >>").into_bytes());
        objects.len()
    });
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(object);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    let info = info.map(|n| format!(" /Info {n} 0 R")).unwrap_or_default();
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn load_flow(config: Value) -> OneNode {
    one_node(
        "document_load",
        config,
        &["text", "bytes", "content_type", "name"],
        &["text", "pages", "metadata"],
    )
}

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Release notes &amp; upgrade guide</title>
  <style>body { font-family: sans-serif } .ad { display: none }</style>
  <script>window.track = function () { return "tracking code"; };</script>
</head>
<body>
  <h1>Version 2.0</h1>
  <p>Read the <a href="https://example.com/guide">upgrade guide</a> before you start.</p>
  <ul>
    <li>Faster start-up</li>
    <li>Binaries smaller than 5&nbsp;MB</li>
  </ul>
  <h2>Breaking changes</h2>
  <p>The <code>--legacy</code> flag is gone.</p>
  <script type="module">console.log("also hidden")</script>
</body>
</html>"#;

#[tokio::test]
async fn html_becomes_readable_text_without_scripts_or_styles() {
    let e = Engine::new();
    let out = outputs(&e, &load_flow(json!({})), json!({"text": PAGE})).await;
    assert_eq!(
        out["text"],
        json!(
            "# Version 2.0\n\nRead the [upgrade guide] before you start.\n* Faster start-up\n* Binaries smaller than 5\u{a0}MB\n\n## Breaking changes\n\nThe --legacy flag is gone."
        )
    );
    assert_eq!(
        out["metadata"],
        json!({"format": "html", "title": "Release notes & upgrade guide"})
    );
    // Link targets as references, on request; by content type too.
    let out = outputs(
        &e,
        &load_flow(json!({"html_link_references": true})),
        json!({"bytes": b64(PAGE.as_bytes()), "content_type": "text/html; charset=utf-8", "name": "notes"}),
    )
    .await;
    let text = out["text"].as_str().unwrap();
    assert!(
        text.contains("Read the [upgrade guide][1] before you start."),
        "{text}"
    );
    assert!(text.ends_with("[1]: https://example.com/guide"), "{text}");
    assert!(
        !text.contains("tracking") && !text.contains("font-family") && !text.contains("hidden")
    );
    assert_eq!(out["metadata"]["source"], json!("notes"));
}

#[tokio::test]
async fn markdown_becomes_text_with_its_headings() {
    let e = Engine::new();
    let md = "---\ntitle: \"The Handbook\"\nauthor: Ada\n---\n# Welcome\n\nThis is **important** and `code`.\n\n## Lists\n\n1. first\n2. second\n   - nested [link](https://x.test)\n\n```rust\nfn main() {}\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
    let out = outputs(
        &e,
        &load_flow(json!({})),
        json!({"text": md, "name": "docs/handbook.md"}),
    )
    .await;
    assert_eq!(
        out["text"],
        json!(
            "Welcome\n\nThis is important and code.\n\nLists\n\n1. first\n2. second\n  - nested link\n\nfn main() {}\n\na | b\n1 | 2"
        )
    );
    assert_eq!(
        out["metadata"],
        json!({
            "format": "markdown",
            "source": "docs/handbook.md",
            "title": "The Handbook",
            "headings": [
                {"level": 1, "text": "Welcome", "start": 0},
                {"level": 2, "text": "Lists", "start": 38}
            ]
        })
    );
    let text = out["text"].as_str().unwrap();
    assert_eq!(&text[38..43], "Lists");
    assert_eq!(out["pages"], json!([text]));
    // Plain text stays as it is; without a name, Markdown is plain text.
    let out = outputs(
        &e,
        &load_flow(json!({})),
        json!({"text": "# not a heading\n"}),
    )
    .await;
    assert_eq!(out["text"], json!("# not a heading\n"));
    assert_eq!(out["metadata"], json!({"format": "text"}));
}

#[tokio::test]
async fn pdf_text_pages_and_title_are_read() {
    let e = Engine::new();
    let doc = pdf(
        &[
            &[b"Quarterly report", b"Revenue grew by 12 percent."],
            &[b"Caf\xe9 sales (Paris) rose."],
        ],
        Some("Q3 Report"),
    );
    let out = outputs(&e, &load_flow(json!({})), json!({"bytes": b64(&doc)})).await;
    assert_eq!(
        out["pages"],
        json!([
            "Quarterly report\nRevenue grew by 12 percent.",
            "Café sales (Paris) rose."
        ])
    );
    assert_eq!(
        out["text"],
        json!("Quarterly report\nRevenue grew by 12 percent.\n\u{c}\nCafé sales (Paris) rose.")
    );
    assert_eq!(
        out["metadata"],
        json!({"format": "pdf", "title": "Q3 Report", "pages": 2})
    );
}

#[tokio::test]
async fn broken_pdfs_are_clear_errors_never_panics() {
    let doc = pdf(
        &[&[b"Some text on a page", b"and a second line"]],
        Some("T"),
    );
    let loader = DocumentLoad::of(DocumentFormat::Pdf);
    assert!(loader.load_bytes(doc.clone(), None, None).is_ok());
    // Every truncation, and corruptions at many places: an error or a
    // result, never a panic escaping.
    let mut outcomes = (0, 0);
    for cut in (0..doc.len()).step_by(7) {
        match loader.load_bytes(doc[..cut].to_vec(), None, None) {
            Ok(_) => outcomes.0 += 1,
            Err(e) => {
                assert!(!e.is_retryable());
                assert!(
                    e.message().starts_with("the PDF ") || e.message().starts_with("not a PDF"),
                    "{}",
                    e.message()
                );
                outcomes.1 += 1;
            }
        }
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut broken = doc.clone();
        for _ in 0..3 {
            let at = (next() % broken.len() as u64) as usize;
            broken[at] = (next() & 0xff) as u8;
        }
        if let Err(e) = loader.load_bytes(broken, None, None) {
            assert!(!e.is_retryable());
        }
    }
    assert!(outcomes.1 > 10, "{outcomes:?}");

    let e = Engine::new();
    let flow = load_flow(json!({}));
    let (message, retryable) =
        failure(&e, &flow, json!({"bytes": b64(b"%PDF-1.7\ngarbage")})).await;
    assert!(message.starts_with("the PDF cannot be read: "), "{message}");
    assert!(!retryable);
    let scanned = pdf(&[&[], &[]], None);
    let (message, _) = failure(&e, &flow, json!({"bytes": b64(&scanned)})).await;
    assert_eq!(
        message,
        "the PDF has 2 pages but no text layer (a scanned document?); reading it needs OCR, which this node does not do"
    );
    let (message, _) = failure(
        &e,
        &load_flow(json!({"format": "pdf"})),
        json!({"bytes": b64(b"just text")}),
    )
    .await;
    assert_eq!(message, "not a PDF: the content has no `%PDF-` header");
    let (message, _) = failure(
        &e,
        &load_flow(json!({"format": "pdf"})),
        json!({"text": "x"}),
    )
    .await;
    assert!(
        message.starts_with("input `text`: a PDF is binary"),
        "{message}"
    );
    let long = pdf(&[&[b"a"], &[b"b"], &[b"c"]], None);
    let (message, _) = failure(
        &e,
        &load_flow(json!({"max_pages": 2})),
        json!({"bytes": b64(&long)}),
    )
    .await;
    assert_eq!(
        message,
        "the PDF has 3 pages, more than config.max_pages (2)"
    );
}

/// Compressed content streams are read; streams that expand past
/// `max_expanded_bytes` (a small file can hold gigabytes) fail before the
/// parser inflates them, also when compressed twice.
#[tokio::test]
async fn compressed_pdfs_are_read_and_compression_bombs_refused() {
    let e = Engine::new();
    let lines: &[&[u8]] = &[b"Compressed text", b"on one page."];
    for layers in [1, 2] {
        let doc = pdf_with(&[lines], None, 0, layers);
        let out = outputs(&e, &load_flow(json!({})), json!({"bytes": b64(&doc)})).await;
        assert_eq!(
            out["text"],
            json!("Compressed text\non one page."),
            "{layers}"
        );
    }

    // Two MiB of spaces: a few kilobytes on disk.
    let padded = |layers| pdf_with(&[lines], None, 2 << 20, layers);
    assert!(padded(1).len() < 16 * 1024, "{}", padded(1).len());
    let out = outputs(&e, &load_flow(json!({})), json!({"bytes": b64(&padded(1))})).await;
    assert_eq!(out["text"], json!("Compressed text\non one page."));
    for layers in [1, 2, 3] {
        let (message, retryable) = failure(
            &e,
            &load_flow(json!({"max_expanded_bytes": 1 << 20})),
            json!({"bytes": b64(&padded(layers))}),
        )
        .await;
        assert!(!retryable);
        assert_eq!(
            message,
            "the PDF's compressed streams expand to more than config.max_expanded_bytes (1048576 bytes); raise it if the file is trusted",
            "{layers}"
        );
    }
    // Compressed five times over: refused, however small.
    let (message, _) = failure(
        &e,
        &load_flow(json!({})),
        json!({"bytes": b64(&pdf_with(&[lines], None, 0, 5))}),
    )
    .await;
    assert_eq!(
        message,
        "the PDF has a stream compressed more than 4 times over (a compression bomb?)"
    );
    // Exactly four layers are read.
    let doc = pdf_with(&[lines], None, 0, 4);
    let out = outputs(&e, &load_flow(json!({})), json!({"bytes": b64(&doc)})).await;
    assert_eq!(out["text"], json!("Compressed text\non one page."));
    // The shapes the parser also decodes: spaces before the end of line,
    // raw deflate, a leading ASCII layer, two layers the second of which
    // is raw; and text that starts like a zlib header (`x^`).
    use PdfFilter::{Ascii85, Flate, Hex, RawFlate};
    let x_caret: &[&[u8]] = &[b"x^ looks like zlib"];
    for (filters, gap, page) in [
        (&[Flate][..], " \t\r\n", lines),
        (&[RawFlate][..], "\n", lines),
        (&[Hex, Flate][..], "\n", lines),
        (&[Ascii85, Flate][..], "\r\n", lines),
        (&[Flate, RawFlate][..], "\n", lines),
        (&[Flate][..], "\n", x_caret),
    ] {
        let doc = pdf_encoded(&[page], None, 2 << 20, filters, gap);
        let (message, _) = failure(
            &e,
            &load_flow(json!({"max_expanded_bytes": 1 << 20})),
            json!({"bytes": b64(&doc)}),
        )
        .await;
        assert!(
            message.starts_with("the PDF's compressed streams expand to more than"),
            "{filters:?} {gap:?}: {message}"
        );
        // Under the default limit the same files are read.
        // (The parser cannot read ASCII hex: that file fails, but only later.)
        if !matches!(filters, [Hex, Flate]) {
            let out = outputs(&e, &load_flow(json!({})), json!({"bytes": b64(&doc)})).await;
            let expected = if page == x_caret {
                "x^ looks like zlib"
            } else {
                "Compressed text\non one page."
            };
            assert_eq!(out["text"], json!(expected), "{filters:?}");
        }
    }
    // The limit is on all the streams together.
    let two_pages = pdf_with(&[lines, lines], None, 600 << 10, 1);
    let (message, _) = failure(
        &e,
        &load_flow(json!({"max_expanded_bytes": 1 << 20})),
        json!({"bytes": b64(&two_pages)}),
    )
    .await;
    assert!(
        message.starts_with("the PDF's compressed streams expand to more than"),
        "{message}"
    );
}

#[tokio::test]
async fn bad_content_and_inputs_are_clear_errors() {
    let e = Engine::new();
    let flow = load_flow(json!({"max_bytes": 64}));
    let (message, retryable) = failure(&e, &flow, json!({"bytes": b64(b"caf\xe9 au lait")})).await;
    assert_eq!(
        message,
        "input `bytes`: not UTF-8 text: the byte 0xe9 at offset 3 starts no valid character (only UTF-8 text, Markdown and HTML are read)"
    );
    assert!(!retryable);
    let (message, _) = failure(&e, &flow, json!({"text": "x".repeat(65)})).await;
    assert_eq!(
        message,
        "the document is 65 bytes, more than config.max_bytes (64)"
    );
    let (message, _) = failure(&e, &flow, json!({"bytes": "not base64!"})).await;
    assert!(
        message.starts_with("input `bytes`: not valid standard base64"),
        "{message}"
    );
    let (message, _) = failure(&e, &flow, json!({"text": "a", "bytes": "YQ=="})).await;
    assert_eq!(
        message,
        "inputs `text` and `bytes`: connect one of them, not both"
    );
    let (message, _) = failure(&e, &flow, json!({})).await;
    assert!(message.starts_with("inputs `text` and `bytes`: neither is given"));
    let problems = load_error(
        "version: 1\nname: bad\nnodes:\n  - id: d\n    type: document_load\n    config: { format: docx }\n",
    );
    assert!(problems.contains("nodes[0].config.format"), "{problems}");
}

// ------------------------------------------------------------ vector store

fn record(id: &str, vector: Vec<f32>, text: &str, metadata: Value) -> Record {
    Record {
        id: id.into(),
        vector,
        text: text.into(),
        metadata: metadata.as_object().cloned().unwrap_or_default(),
    }
}

/// The brute-force answer: every record scored in f64, best first, ties
/// by id.
fn reference(
    records: &std::collections::BTreeMap<String, Record>,
    query: &Query,
) -> Vec<(String, f64)> {
    let mut scored: Vec<(String, f64)> = records
        .values()
        .filter(|r| query.filter.as_ref().is_none_or(|f| f.matches(&r.metadata)))
        .map(|r| {
            let dot: f64 = r
                .vector
                .iter()
                .zip(&query.vector)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let score = match query.metric {
                Metric::Dot => dot,
                Metric::Cosine => {
                    let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
                    let l = n(&r.vector) * n(&query.vector);
                    if l == 0.0 { 0.0 } else { dot / l }
                }
            };
            (r.id.clone(), score)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    scored.truncate(query.top_k);
    scored
}

/// The found matches agree with the reference: same scores in the same
/// order, each id scored as the reference scores it (near-ties may swap).
fn agree(
    found: &[Match],
    expected: &[(String, f64)],
    all: &std::collections::BTreeMap<String, Record>,
    query: &Query,
) {
    assert_eq!(found.len(), expected.len(), "{found:?} vs {expected:?}");
    let full = reference(
        all,
        &Query {
            top_k: usize::MAX,
            ..query.clone()
        },
    );
    for (m, (_, score)) in found.iter().zip(expected) {
        assert!(
            (f64::from(m.score) - score).abs() < 1e-4,
            "{} vs {score}",
            m.score
        );
        let own = full.iter().find(|(id, _)| *id == m.id).unwrap().1;
        assert!((f64::from(m.score) - own).abs() < 1e-4);
        assert_eq!(m.text, all[&m.id].text);
        assert_eq!(m.metadata, all[&m.id].metadata);
    }
}

mod store_properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Upsert(Vec<(u8, Vec<f32>, u8)>),
        DeleteIds(Vec<u8>),
        DeleteGroup(u8),
        Search(Vec<f32>, usize, bool, Option<u8>),
        Reopen,
    }

    fn vector() -> impl Strategy<Value = Vec<f32>> {
        proptest::collection::vec(-1.0f32..1.0, 4)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::collection::vec((0u8..24, vector(), 0u8..3), 1..8).prop_map(Op::Upsert),
            1 => proptest::collection::vec(0u8..24, 1..4).prop_map(Op::DeleteIds),
            1 => (0u8..3).prop_map(Op::DeleteGroup),
            4 => (vector(), 1usize..10, any::<bool>(), proptest::option::of(0u8..3))
                .prop_map(|(v, k, dot, g)| Op::Search(v, k, dot, g)),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn the_store_answers_as_brute_force_does(ops in proptest::collection::vec(op(), 1..25)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("store.db");
                let mut store = SqliteStore::open(&path, "store.db").await.unwrap();
                let mut model: std::collections::BTreeMap<String, Record> = Default::default();
                for op in ops {
                    match op {
                        Op::Upsert(items) => {
                            let records: Vec<Record> = items
                                .iter()
                                .map(|(id, v, g)| record(&format!("r{id}"), v.clone(), &format!("text {id}"), json!({"group": g, "n": id})))
                                .collect();
                            let before = model.len();
                            for r in &records {
                                model.insert(r.id.clone(), r.clone());
                            }
                            let done = store.upsert("c", records).await.unwrap();
                            prop_assert_eq!(done.count as usize, model.len());
                            prop_assert_eq!(done.inserted as usize, model.len() - before);
                        }
                        Op::DeleteIds(ids) => {
                            let ids: Vec<String> = ids.iter().map(|i| format!("r{i}")).collect();
                            let mut unique = ids.clone();
                            unique.sort();
                            unique.dedup();
                            let expected = unique.iter().filter(|id| model.remove(*id).is_some()).count();
                            let deleted = store.delete("c", &Selection::Ids(ids)).await.unwrap();
                            prop_assert_eq!(deleted as usize, expected);
                        }
                        Op::DeleteGroup(g) => {
                            let filter = Filter::parse(&json!({"group": g})).unwrap();
                            let before = model.len();
                            model.retain(|_, r| !filter.matches(&r.metadata));
                            let deleted = store.delete("c", &Selection::Filter(filter)).await.unwrap();
                            prop_assert_eq!(deleted as usize, before - model.len());
                        }
                        Op::Search(vector, top_k, dot, group) => {
                            let query = Query {
                                vector,
                                top_k,
                                metric: if dot { Metric::Dot } else { Metric::Cosine },
                                filter: group.map(|g| Filter::parse(&json!({"or": [{"group": g}, {"n": {"lt": 4}}]})).unwrap()),
                                min_score: None,
                            };
                            if model.is_empty() {
                                prop_assert!(store.search("c", &query).await.is_err());
                                continue;
                            }
                            let found = store.search("c", &query).await.unwrap();
                            agree(&found, &reference(&model, &query), &model, &query);
                        }
                        Op::Reopen => {
                            drop(store);
                            store = SqliteStore::open(&path, "store.db").await.unwrap();
                        }
                    }
                    prop_assert_eq!(store.count("c", None).await.unwrap() as usize, model.len());
                }
                Ok(())
            })?;
        }
    }
}

#[tokio::test]
async fn filters_min_score_and_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db"), "s.db")
        .await
        .unwrap();
    store
        .upsert(
            "docs",
            vec![
                record(
                    "a",
                    vec![1.0, 0.0, 0.0],
                    "alpha",
                    json!({"lang": "en", "year": 2019}),
                ),
                record(
                    "b",
                    vec![0.0, 1.0, 0.0],
                    "beta",
                    json!({"lang": "de", "year": 2021}),
                ),
                record(
                    "c",
                    vec![0.7, 0.7, 0.0],
                    "gamma",
                    json!({"lang": "en", "year": 2023, "tags": ["x"]}),
                ),
                record("d", vec![2.0, 0.0, 0.0], "delta", json!({"lang": "fr"})),
            ],
        )
        .await
        .unwrap();
    let search = |query: Query| {
        let store = store.clone();
        async move {
            store
                .search("docs", &query)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .collect::<Vec<_>>()
        }
    };
    let q = |filter: Option<Value>, metric: Metric| Query {
        vector: vec![1.0, 0.1, 0.0],
        top_k: 10,
        metric,
        filter: filter.map(|f| Filter::parse(&f).unwrap()),
        min_score: None,
    };
    // Cosine ignores length (a and d tie, by id); dot does not.
    assert_eq!(search(q(None, Metric::Cosine)).await, ["a", "d", "c", "b"]);
    assert_eq!(search(q(None, Metric::Dot)).await, ["d", "a", "c", "b"]);
    assert_eq!(
        search(q(Some(json!({"lang": "en"})), Metric::Cosine)).await,
        ["a", "c"]
    );
    assert_eq!(
        search(q(Some(json!({"year": {"gte": 2020}})), Metric::Cosine)).await,
        ["c", "b"]
    );
    assert_eq!(
        search(q(Some(json!({"lang": {"in": ["de", "fr"]}})), Metric::Dot)).await,
        ["d", "b"]
    );
    assert_eq!(
        search(q(
            Some(json!({"or": [{"tags": "x"}, {"year": {"lt": 2020}}]})),
            Metric::Cosine
        ))
        .await,
        ["a", "c"]
    );
    assert_eq!(
        search(q(Some(json!({"not": {"lang": "en"}})), Metric::Cosine)).await,
        ["d", "b"]
    );
    let mut min = q(None, Metric::Cosine);
    min.min_score = Some(0.9);
    assert_eq!(search(min).await, ["a", "d"]);

    let e = store
        .upsert(
            "docs",
            vec![record("e", vec![1.0, 2.0], "short", json!({}))],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "collection `docs` holds vectors of 3 dimensions; record 0 (id `e`) has 2"
    );
    let e = store
        .search("docs", &Query::new(vec![1.0; 4], 1))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "collection `docs` holds vectors of 3 dimensions; the query vector has 4"
    );
    let e = store
        .search("nope", &Query::new(vec![1.0; 3], 1))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "collection `nope` does not exist (the store has: docs)"
    );
    let e = store
        .search("docs", &Query::new(vec![0.0; 3], 1))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the query vector is all zeros: its cosine with anything is undefined"
    );
    let e = store
        .upsert(
            "docs",
            vec![record("n", vec![f32::NAN, 0.0, 0.0], "nan", json!({}))],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "record 0 (id `n`): value 0 of the vector is not a finite number"
    );
    // Deleting every record removes the collection: another dimension fits.
    assert_eq!(
        store
            .delete("docs", &Selection::Filter(Filter::all()))
            .await
            .unwrap(),
        4
    );
    assert!(store.collections().await.unwrap().is_empty());
    store
        .upsert(
            "docs",
            vec![record("e", vec![1.0, 2.0], "short", json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(store.collections().await.unwrap()[0].dimension, 2);
}

fn upsert_flow() -> OneNode {
    one_node(
        "vector_upsert",
        json!({"path": "vectors/kb.db", "collection": "kb"}),
        &["vectors", "texts", "ids", "metadata"],
        &["inserted", "updated", "count", "ids"],
    )
}

fn search_flow(config: Value) -> OneNode {
    let mut config = config;
    config["path"] = json!("vectors/kb.db");
    config["collection"] = json!("kb");
    one_node(
        "vector_search",
        config,
        &["vector", "filter"],
        &["matches", "texts", "context", "count"],
    )
}

#[tokio::test]
async fn the_store_survives_a_new_engine() {
    let s = Sandbox::new();
    let engine = s.engine();
    let out = outputs(
        &engine,
        &upsert_flow(),
        json!({
            "vectors": [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]],
            "texts": ["cats purr", "dogs bark", "cats and dogs"],
            "metadata": {"source": "pets.md"}
        }),
    )
    .await;
    assert_eq!(out["inserted"], json!(3));
    assert_eq!(out["count"], json!(3));
    // Ids derived from the texts: the same text again is an update.
    let ids = out["ids"].clone();
    assert_eq!(ids[0].as_str().unwrap().len(), 32);
    let again = outputs(
        &engine,
        &upsert_flow(),
        json!({"vectors": [[1.0, 0.0]], "texts": ["cats purr"], "metadata": [{"source": "pets.md", "v": 2}]}),
    )
    .await;
    assert_eq!(
        (
            again["inserted"].clone(),
            again["updated"].clone(),
            again["count"].clone()
        ),
        (json!(0), json!(1), json!(3))
    );
    assert_eq!(again["ids"][0], ids[0]);
    let query = json!({"vector": [0.9, 0.1]});
    let before = outputs(&engine, &search_flow(json!({"top_k": 2})), query.clone()).await;
    assert_eq!(before["texts"], json!(["cats purr", "cats and dogs"]));
    assert_eq!(before["context"], json!("cats purr\n\ncats and dogs"));
    assert_eq!(
        before["matches"][0]["metadata"],
        json!({"source": "pets.md", "v": 2})
    );
    drop(engine);

    let engine = s.engine();
    let after = outputs(&engine, &search_flow(json!({"top_k": 2})), query).await;
    assert_eq!(after, before);
    assert!(s.root().join("vectors/kb.db").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_executions_upsert_and_search_one_store() {
    let s = Sandbox::new();
    let engine = s.engine();
    let upsert = upsert_flow();
    let search = search_flow(json!({"top_k": 5, "metric": "dot"}));
    let mut runs = Vec::new();
    for worker in 0..8 {
        let (engine, upsert, search) = (engine.clone(), upsert.clone(), search.clone());
        runs.push(tokio::spawn(async move {
            for batch in 0..5 {
                let n = worker * 100 + batch * 10;
                let vectors: Vec<Vec<f32>> = (0..10).map(|i| vec![1.0, (n + i) as f32]).collect();
                let texts: Vec<String> = (0..10).map(|i| format!("w{worker} r{}", n + i)).collect();
                let ids: Vec<String> = (0..10).map(|i| format!("id-{}", n + i)).collect();
                let out = outputs(
                    &engine,
                    &upsert,
                    json!({"vectors": vectors, "texts": texts, "ids": ids, "metadata": {"worker": worker}}),
                )
                .await;
                assert_eq!(out["inserted"], json!(10));
                let found = outputs(
                    &engine,
                    &search,
                    json!({"vector": [0.0, 1.0], "filter": {"worker": worker}}),
                )
                .await;
                // This worker's own records are all there, the latest first.
                assert_eq!(found["matches"][0]["id"], json!(format!("id-{}", n + 9)));
                assert_eq!(found["count"], json!(5));
            }
        }));
    }
    for r in runs {
        r.await.unwrap();
    }
    let total = outputs(
        &engine,
        &one_node(
            "vector_delete",
            json!({"path": "vectors/kb.db", "collection": "kb", "filter": {"worker": {"gte": 6}}}),
            &[],
            &["deleted", "count"],
        ),
        json!({}),
    )
    .await;
    assert_eq!(total, json!({"deleted": 100, "count": 300}));
}

#[tokio::test]
async fn vector_delete_by_ids_and_by_filter() {
    let s = Sandbox::new();
    let e = s.engine();
    outputs(
        &e,
        &upsert_flow(),
        json!({"vectors": [[1.0], [2.0], [3.0]], "texts": ["a", "b", "c"], "ids": ["a", "b", "c"], "metadata": [{"k": 1}, {"k": 2}, {"k": 3}]}),
    )
    .await;
    let by_ids = one_node(
        "vector_delete",
        json!({"path": "vectors/kb.db", "collection": "kb"}),
        &["ids"],
        &["deleted", "count"],
    );
    assert_eq!(
        outputs(&e, &by_ids, json!({"ids": ["a", "zz", "a"]})).await,
        json!({"deleted": 1, "count": 2})
    );
    let (message, _) = failure(&e, &by_ids, json!({})).await;
    assert!(message.starts_with("nothing to delete"), "{message}");
    let by_filter = one_node(
        "vector_delete",
        json!({"path": "vectors/kb.db", "collection": "kb", "filter": {"k": {"gt": 2}}}),
        &[],
        &["deleted", "count"],
    );
    assert_eq!(
        outputs(&e, &by_filter, json!({})).await,
        json!({"deleted": 1, "count": 1})
    );
}

#[tokio::test]
async fn store_failures_are_clear() {
    let s = Sandbox::new();
    let e = s.engine();
    // A damaged file, and a SQLite file of something else.
    std::fs::create_dir_all(s.root().join("vectors")).unwrap();
    std::fs::write(
        s.root().join("vectors/kb.db"),
        b"this is not a database at all, just some bytes".repeat(100),
    )
    .unwrap();
    let (message, retryable) = failure(&e, &search_flow(json!({})), json!({"vector": [1.0]})).await;
    assert_eq!(
        message,
        "the vector store `vectors/kb.db` is damaged or not a vector store: file is not a database"
    );
    assert!(!retryable);
    // A real store whose pages are overwritten in the middle.
    let s2 = Sandbox::new();
    {
        let e2 = s2.engine();
        let texts: Vec<String> = (0..200)
            .map(|i| format!("record {i} {}", "padding ".repeat(50)))
            .collect();
        let vectors: Vec<Vec<f32>> = (0..200).map(|i| vec![i as f32, 1.0]).collect();
        outputs(
            &e2,
            &upsert_flow(),
            json!({"vectors": vectors, "texts": texts}),
        )
        .await;
    }
    // Fold the journal into the file (waiting for the engine's store to
    // let go of it), so that the damage lands on the records themselves.
    let file = s2.root().join("vectors/kb.db");
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", file.display());
        let mut tries = 0;
        loop {
            let folded = async {
                let mut conn = sqlx::SqliteConnection::connect(&url).await?;
                let row: (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(&mut conn)
                    .await?;
                conn.close().await?;
                Ok::<_, sqlx::Error>(row.0 == 0)
            };
            match folded.await {
                Ok(true) => break,
                _ if tries < 250 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                other => panic!("the journal could not be folded in: {other:?}"),
            }
        }
    }
    assert!(
        std::fs::metadata(s2.root().join("vectors/kb.db-wal")).map_or(true, |m| m.len() == 0),
        "the journal is still there"
    );
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 64 * 1024, "{} bytes", bytes.len());
    let len = bytes.len();
    bytes[len / 2..len / 2 + 4096].fill(0x5a);
    std::fs::write(&file, &bytes).unwrap();
    let e2 = s2.engine();
    let (message, retryable) =
        failure(&e2, &search_flow(json!({})), json!({"vector": [1.0, 1.0]})).await;
    assert!(
        message.starts_with("the vector store `vectors/kb.db` is damaged"),
        "{message}"
    );
    assert!(!retryable);
    let s3 = Sandbox::new();
    let other = s3.root().join("app.db");
    {
        use sqlx::Connection;
        let mut conn =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", other.display()))
                .await
                .unwrap();
        sqlx::query("CREATE TABLE users (id INTEGER)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let flow = one_node(
        "vector_search",
        json!({"path": "app.db"}),
        &["vector"],
        &["count"],
    );
    let (message, _) = failure(&s3.engine(), &flow, json!({"vector": [1.0]})).await;
    assert_eq!(
        message,
        "the vector store `app.db` is damaged or not a vector store: it is a SQLite database of something else (tables: users)"
    );
}

#[tokio::test]
async fn roots_paths_and_inputs_are_checked() {
    let flow = upsert_flow();
    let input = json!({"vectors": [[1.0]], "texts": ["a"]});
    let (message, retryable) = failure(&Engine::new(), &flow, input.clone()).await;
    assert!(
        message.starts_with(
            "no file root: the vector store is a file under a directory the application chooses"
        ),
        "{message}"
    );
    assert!(!retryable);
    let s = Sandbox::new();
    let read_only = Engine::builder()
        .resource(FileRoot::new(s.root()).read_only())
        .build();
    let (message, _) = failure(&read_only, &flow, input.clone()).await;
    assert!(
        message.starts_with("the file root is read-only"),
        "{message}"
    );
    let e = s.engine();
    let escape = one_node(
        "vector_upsert",
        json!({"path": "../x.db"}),
        &["vectors", "texts"],
        &["count"],
    );
    let (message, _) = failure(&e, &escape, input.clone()).await;
    assert_eq!(
        message,
        "config.path `../x.db`: leads outside the file root"
    );
    let (message, _) = failure(
        &e,
        &flow,
        json!({"vectors": [[1.0], [2.0]], "texts": ["a"]}),
    )
    .await;
    assert_eq!(
        message,
        "inputs `vectors` (2) and `texts` (1) must have the same length"
    );
    let (message, _) = failure(
        &e,
        &flow,
        json!({"vectors": [[1.0]], "texts": ["a"], "metadata": [1]}),
    )
    .await;
    assert_eq!(
        message,
        "input `metadata`: item 0 is a number, not an object"
    );
    let (message, _) = failure(
        &e,
        &flow,
        json!({"vectors": [[1.0]], "texts": ["a"], "ids": [""]}),
    )
    .await;
    assert_eq!(message, "record 0: the id is empty");
    outputs(&e, &flow, input).await;
    let (message, _) = failure(&e, &flow, json!({"vectors": [[1.0, 2.0]], "texts": ["b"]})).await;
    assert!(
        message.starts_with("collection `kb` holds vectors of 1 dimensions; record 0 (id `"),
        "{message}"
    );
    let (message, _) = failure(
        &e,
        &search_flow(json!({})),
        json!({"vector": [1.0], "filter": {"a": {"gt": "x"}}}),
    )
    .await;
    assert_eq!(
        message,
        "input `filter`: filter.a.gt: expected a number, got a string (ranges compare numbers only)"
    );
}

#[test]
fn vector_configs_are_checked_when_the_flow_loads() {
    let node = |config: &str, ty: &str| {
        format!("version: 1\nname: bad\nnodes:\n  - id: v\n    type: {ty}\n    config: {config}\n")
    };
    let problems = load_error(&node("{ collection: kb }", "vector_search"));
    assert!(
        problems.contains("nodes[0].config") && problems.contains("path"),
        "{problems}"
    );
    let problems = load_error(&node("{ path: a.db, top_k: 0 }", "vector_search"));
    assert!(
        problems.contains("nodes[0].config.top_k: 0 is not between 1 and 1000"),
        "{problems}"
    );
    let problems = load_error(&node("{ path: a.db, metric: euclid }", "vector_search"));
    assert!(problems.contains("nodes[0].config.metric"), "{problems}");
    let problems = load_error(&node(
        "{ path: a.db, filter: { year: { gte: soon } } }",
        "vector_search",
    ));
    assert!(
        problems
            .contains("nodes[0].config.filter: filter.year.gte: expected a number, got a string"),
        "{problems}"
    );
    let problems = load_error(&node("{ path: a.db, filter: { or: [] } }", "vector_delete"));
    assert!(
        problems.contains("nodes[0].config.filter: filter.or: an empty `or` matches nothing"),
        "{problems}"
    );
    let problems = load_error(&node("{ path: a.db, collection: '' }", "vector_upsert"));
    assert!(
        problems.contains("nodes[0].config.collection: a collection name has 1 to 128 characters"),
        "{problems}"
    );
    let problems = load_error(&node("{ path: a.db, batch: 3 }", "vector_upsert"));
    assert!(
        problems.contains("nodes[0].config") && problems.contains("batch"),
        "{problems}"
    );
}

// ------------------------------------------------------------------ flows

const RAG_FLOW: &str = r#"
version: 1
name: index-and-ask
inputs:
  document: {}
  vectors: {}
  question: {}
nodes:
  - id: load
    type: document_load
  - id: split
    type: text_split
    config: { chunk_size: 60, format: markdown }
  - id: store
    type: vector_upsert
    config: { path: kb/handbook.db, collection: handbook }
  - id: search
    type: vector_search
    config: { path: kb/handbook.db, collection: handbook, top_k: 2, filter: { source: handbook.md } }
edges:
  - { from: input.document, to: load.text }
  - { from: load.metadata, to: split.metadata }
  - { from: load.text, to: split.text }
  - { from: split.texts, to: store.texts }
  - { from: split.metadata, to: store.metadata }
  - { from: input.vectors, to: store.vectors }
  - { from: input.question, to: search.vector }
  - { from: store.count, to: search.after }
outputs:
  chunks: split.texts
  stored: store.count
  context: search.context
  best: search.matches
"#;

#[tokio::test]
async fn a_document_flows_from_loading_to_search() {
    let s = Sandbox::new();
    let e = s.engine();
    let document = "<html><head><title>Handbook</title></head><body><h1>Vacation</h1><p>Ask your lead two weeks ahead.</p><h1>Expenses</h1><p>Keep every receipt for a year.</p></body></html>";
    let mut flow_text = RAG_FLOW.to_owned();
    // The loader needs the name for the source metadata.
    flow_text = flow_text.replace(
        "  - id: load\n    type: document_load\n",
        "  - id: load\n    type: document_load\n    config: { format: html }\n",
    );
    let flow = load(&flow_text.replace(
        "filter: { source: handbook.md }",
        "filter: { format: html, chunk: { lt: 10 } }",
    ));
    let first = outputs(&e, &flow, json!({"document": document, "vectors": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "question": [0.1, 0.9, 0.0]})).await;
    assert_eq!(
        first["chunks"],
        json!([
            "# Vacation\n\nAsk your lead two weeks ahead.",
            "# Expenses\n\nKeep every receipt for a year."
        ])
    );
    assert_eq!(first["stored"], json!(2));
    assert_eq!(
        first["context"],
        json!(
            "# Expenses\n\nKeep every receipt for a year.\n\n# Vacation\n\nAsk your lead two weeks ahead."
        )
    );
    assert_eq!(
        first["best"][0]["metadata"],
        json!({"format": "html", "title": "Handbook", "chunk": 1})
    );
}

#[tokio::test]
async fn a_typed_flow_splits_and_searches() {
    let s = Sandbox::new();
    let e = s.engine();
    let store = SqliteStore::open(&s.root().join("typed.db"), "typed.db")
        .await
        .unwrap();
    store
        .upsert(
            "default",
            vec![record("x", vec![0.0, 1.0], "the answer", json!({}))],
        )
        .await
        .unwrap();
    drop(store);
    let mut b = Flow::builder("typed");
    let text = b.input::<String>("text");
    let vector = b.input::<Vec<f32>>("vector");
    let split = b.add("split", TextSplit::characters(10));
    let search = b.add("search", VectorSearch::new("typed.db", "default", 1));
    b.connect(text, split.inp().text);
    b.connect(vector, search.inp().vector);
    b.output("count", split.out().count);
    b.output("context", search.out().context);
    let flow = b.build().unwrap();
    // The store file was closed above; give SQLite a moment to let go.
    let outcome = e
        .run(
            &flow,
            Inputs::new()
                .set("text", "one two three four".to_string())
                .set("vector", vec![0.0f32, 2.0]),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output::<u64>("count").unwrap(), 2);
    assert_eq!(outcome.output::<String>("context").unwrap(), "the answer");
}

#[tokio::test]
async fn on_error_continue_and_skip() {
    let s = Sandbox::new();
    let e = s.engine();
    let doc = |policy: &str, extra: &str| {
        load(&format!(
            r#"
version: 1
name: policies
inputs:
  vector: {{}}
nodes:
  - id: search
    type: vector_search
    config: {{ path: none.db }}
    on_error: {policy}
  - id: split
    type: text_split
    config: {{ chunk_size: 100 }}
edges:
  - {{ from: input.vector, to: search.vector }}
  - {{ from: search.context, to: split.text }}
outputs:
  chunks: split.count
{extra}"#
        ))
    };
    let outcome = run(
        &e,
        &doc("continue", "  failure: search.error\n"),
        json!({"vector": [1.0]}),
    )
    .await
    .unwrap();
    let error: NodeFailure = outcome.output("failure").unwrap();
    assert_eq!(error.node, "search");
    assert_eq!(
        error.message,
        "the vector store `none.db` does not exist: nothing was stored in it yet"
    );
    assert!(!error.retryable);
    assert_eq!(outcome.node("search").unwrap().status, NodeStatus::Failed);
    assert_eq!(outcome.node("split").unwrap().status, NodeStatus::Skipped);
    let outcome = run(&e, &doc("skip", ""), json!({"vector": [1.0]}))
        .await
        .unwrap();
    assert_eq!(outcome.node("search").unwrap().status, NodeStatus::Skipped);
    assert_eq!(outcome.node("split").unwrap().status, NodeStatus::Skipped);
    assert_eq!(outcome.outputs_json().unwrap()["chunks"], json!(null));
    let (message, _) = failure(&e, &doc("fail", ""), json!({"vector": [1.0]})).await;
    assert_eq!(
        message,
        "the vector store `none.db` does not exist: nothing was stored in it yet"
    );
    assert!(!s.root().join("none.db").exists());
}

#[test]
fn filters_are_public_and_checked() {
    let filter = Filter::parse(&json!({"a": 1})).unwrap();
    let mut m = Map::new();
    m.insert("a".into(), json!(1));
    assert!(filter.matches(&m));
}
