//! [`TextSplit`]: a text cut into chunks of a bounded size, by characters
//! or by tokens, with overlap, plain or Markdown-aware.

use ghostflow::prelude::*;
use serde_json::{Map, Value};
use text_splitter::{ChunkCharIndex, ChunkConfig, ChunkSizer, MarkdownSplitter, TextSplitter};
use tiktoken_rs::CoreBPE;

/// What a chunk size counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SplitUnit {
    /// Unicode characters (scalar values).
    #[default]
    Characters,
    /// Tokens of `tokenizer`, as a model counts them.
    Tokens,
}

/// A tokenizer whose data ships inside the program (nothing is
/// downloaded): OpenAI's byte-pair encodings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tokenizer {
    /// `cl100k_base`: GPT-4, GPT-3.5, `text-embedding-3-*` and
    /// `text-embedding-ada-002`; a fair estimate for other models.
    #[default]
    Cl100kBase,
    /// `o200k_base`: GPT-4o, GPT-4.1, the `o` series.
    O200kBase,
    /// `p50k_base`: Codex and `text-davinci-002/003`.
    P50kBase,
    /// `r50k_base` (`gpt2`): GPT-3.
    R50kBase,
}

impl Tokenizer {
    /// The encoding, built once per process on first use.
    pub fn bpe(self) -> &'static CoreBPE {
        match self {
            Tokenizer::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            Tokenizer::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Tokenizer::P50kBase => tiktoken_rs::p50k_base_singleton(),
            Tokenizer::R50kBase => tiktoken_rs::r50k_base_singleton(),
        }
    }
}

/// How a text is read for its structure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SplitFormat {
    /// Plain text: cut at paragraphs (blank lines), then lines,
    /// sentences, words, and characters only when nothing larger fits.
    #[default]
    Plain,
    /// Markdown (CommonMark with GitHub extensions): cut at headings
    /// first (a section stays whole when it fits), then thematic breaks,
    /// blocks (paragraphs, code blocks, lists, list items, tables, block
    /// quotes), inline elements, and the plain-text levels.
    Markdown,
}

/// One piece of a text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Chunk {
    /// Its position in the list, from 0.
    pub index: u64,
    /// The text of the chunk, a slice of the input.
    pub text: String,
    /// Where it starts in the input, in bytes of UTF-8.
    pub start: u64,
    /// Where it ends (exclusive), in bytes.
    pub end: u64,
    /// Where it starts, in characters (Unicode scalar values).
    pub char_start: u64,
    /// Where it ends (exclusive), in characters.
    pub char_end: u64,
    /// The input `metadata` with `chunk` (this chunk's index) added, so
    /// that a stored chunk knows its source and place; absent when no
    /// metadata was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// The text to split.
#[derive(Ports, Debug)]
pub struct TextSplitInput {
    /// The text.
    pub text: String,
    /// An object carried onto every chunk (such as
    /// `{"source": "guide.md"}`), with the chunk's index added as `chunk`.
    pub metadata: Option<Map<String, Value>>,
}

/// The chunks.
#[derive(Ports, Debug)]
pub struct TextSplitOutput {
    /// The chunks in order, with offsets and metadata.
    pub chunks: Vec<Chunk>,
    /// The chunks' texts alone, in order (for an embeddings node).
    pub texts: Vec<String>,
    /// Each chunk's metadata, in order (for `vector_upsert`); empty
    /// objects with only `chunk` when no metadata was given.
    pub metadata: Vec<Map<String, Value>>,
    /// How many chunks.
    pub count: u64,
}

/// Splits a text into chunks of at most `chunk_size` characters or tokens,
/// keeping the largest units that fit (sections, paragraphs, sentences),
/// with optional overlap between neighbours.
///
/// The size counts `unit`: `characters` (the default) or `tokens` of
/// `tokenizer` (an OpenAI byte-pair encoding whose data ships with the
/// program: nothing is downloaded). `format: markdown` reads the text as
/// Markdown, so that a heading's section, a code block, a list or a table
/// stays in one chunk when it fits, and a chunk boundary falls between
/// elements rather than inside one. No chunk is larger than `chunk_size`
/// (a single word longer than that is cut between characters). With
/// `overlap`, each chunk repeats up to that many characters or tokens of
/// the end of the one before, which helps retrieval of passages cut by a
/// boundary. Whitespace around chunks is trimmed unless `trim: false`.
///
/// Each chunk comes with its index and its offsets in the input, in bytes
/// and in characters, and with the input `metadata` object (if any) plus
/// the chunk's index as `chunk`. A text over `max_input_bytes`, or one that
/// would give more than `max_chunks` chunks, fails the node permanently
/// (nothing is dropped silently).
///
/// ```yaml
/// - id: chunk_guide
///   type: text_split
///   config:
///     unit: tokens
///     tokenizer: cl100k_base
///     format: markdown
///     chunk_size: 400
///     overlap: 40
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = TextSplitInput, output = TextSplitOutput, category = "ai")]
#[serde(deny_unknown_fields)]
pub struct TextSplit {
    /// What sizes count: `characters` (the default) or `tokens`.
    #[serde(default)]
    pub unit: SplitUnit,
    /// With `unit: tokens`, the encoding that counts them: `cl100k_base`
    /// (the default), `o200k_base`, `p50k_base` or `r50k_base`.
    #[serde(default)]
    pub tokenizer: Tokenizer,
    /// `plain` (the default) or `markdown`.
    #[serde(default)]
    pub format: SplitFormat,
    /// The largest chunk, in `unit`s (at least 1).
    #[serde(deserialize_with = "positive")]
    pub chunk_size: usize,
    /// How much of the end of a chunk the next one repeats, in `unit`s;
    /// smaller than `chunk_size` (default 0).
    #[serde(default)]
    pub overlap: usize,
    /// Whether to trim whitespace around each chunk (default true).
    #[serde(default = "crate::yes")]
    pub trim: bool,
    /// The most chunks; a text that gives more fails the node (default
    /// 10000).
    #[serde(default = "default_max_chunks")]
    pub max_chunks: usize,
    /// The largest text accepted, in bytes (default 10 MiB).
    #[serde(default = "default_max_input_bytes")]
    pub max_input_bytes: usize,
}

fn default_max_chunks() -> usize {
    10_000
}

fn default_max_input_bytes() -> usize {
    10 * 1024 * 1024
}

fn positive<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let size = usize::deserialize(deserializer)?;
    if size == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(size)
}

impl TextSplit {
    /// Chunks of at most `chunk_size` characters of plain text, without
    /// overlap.
    pub fn characters(chunk_size: usize) -> Self {
        TextSplit {
            unit: SplitUnit::Characters,
            tokenizer: Tokenizer::default(),
            format: SplitFormat::Plain,
            chunk_size,
            overlap: 0,
            trim: true,
            max_chunks: default_max_chunks(),
            max_input_bytes: default_max_input_bytes(),
        }
    }

    /// Chunks of at most `chunk_size` tokens of `tokenizer`.
    pub fn tokens(chunk_size: usize, tokenizer: Tokenizer) -> Self {
        TextSplit {
            unit: SplitUnit::Tokens,
            tokenizer,
            ..TextSplit::characters(chunk_size)
        }
    }

    /// Reads the text as Markdown.
    #[must_use]
    pub fn markdown(mut self) -> Self {
        self.format = SplitFormat::Markdown;
        self
    }

    /// Repeats up to `overlap` units of each chunk's end in the next.
    #[must_use]
    pub fn with_overlap(mut self, overlap: usize) -> Self {
        self.overlap = overlap;
        self
    }

    /// Checks what the field types cannot say.
    fn check(&self) -> Result<(), NodeError> {
        if self.chunk_size == 0 {
            return Err(NodeError::permanent(
                "config.chunk_size: must be at least 1",
            ));
        }
        if self.overlap >= self.chunk_size {
            return Err(NodeError::permanent(format!(
                "config.overlap: {} must be smaller than config.chunk_size ({})",
                self.overlap, self.chunk_size
            )));
        }
        Ok(())
    }

    /// The chunks of `text`, or what is wrong.
    ///
    /// # Errors
    /// A bad config (overlap not smaller than the chunk size), a text over
    /// `max_input_bytes`, or more than `max_chunks` chunks.
    pub fn split(
        &self,
        text: &str,
        metadata: Option<&Map<String, Value>>,
    ) -> Result<Vec<Chunk>, NodeError> {
        self.check()?;
        if text.len() > self.max_input_bytes {
            return Err(NodeError::permanent(format!(
                "input `text`: {} bytes is more than config.max_input_bytes ({})",
                text.len(),
                self.max_input_bytes
            )));
        }
        let pieces = match self.unit {
            SplitUnit::Characters => self.pieces(text, text_splitter::Characters)?,
            SplitUnit::Tokens => self.pieces(text, self.tokenizer.bpe())?,
        };
        Ok(pieces
            .into_iter()
            .enumerate()
            .map(|(index, piece)| {
                let chars = piece.chunk.chars().count();
                Chunk {
                    index: index as u64,
                    text: piece.chunk.to_owned(),
                    start: piece.byte_offset as u64,
                    end: (piece.byte_offset + piece.chunk.len()) as u64,
                    char_start: piece.char_offset as u64,
                    char_end: (piece.char_offset + chars) as u64,
                    metadata: metadata.map(|m| {
                        let mut m = m.clone();
                        m.insert("chunk".into(), Value::from(index));
                        m
                    }),
                }
            })
            .collect())
    }

    fn pieces<'t, S: ChunkSizer>(
        &self,
        text: &'t str,
        sizer: S,
    ) -> Result<Vec<ChunkCharIndex<'t>>, NodeError> {
        let config = ChunkConfig::new(self.chunk_size)
            .with_sizer(sizer)
            .with_trim(self.trim)
            .with_overlap(self.overlap)
            .map_err(|e| NodeError::permanent(format!("config.overlap: {e}")))?;
        let too_many = || {
            NodeError::permanent(format!(
                "the text gives more than config.max_chunks ({}) chunks of {} {}; raise max_chunks or chunk_size",
                self.max_chunks,
                self.chunk_size,
                match self.unit {
                    SplitUnit::Characters => "characters",
                    SplitUnit::Tokens => "tokens",
                }
            ))
        };
        let mut out = Vec::new();
        let mut push = |piece: ChunkCharIndex<'t>| {
            if out.len() == self.max_chunks {
                return Err(too_many());
            }
            out.push(piece);
            Ok(())
        };
        match self.format {
            SplitFormat::Plain => {
                for piece in TextSplitter::new(config).chunk_char_indices(text) {
                    push(piece)?;
                }
            }
            SplitFormat::Markdown => {
                for piece in MarkdownSplitter::new(config).chunk_char_indices(text) {
                    push(piece)?;
                }
            }
        }
        Ok(out)
    }
}

impl Run for TextSplit {
    async fn run(
        &self,
        input: TextSplitInput,
        _ctx: &Context,
    ) -> Result<TextSplitOutput, NodeError> {
        self.check()?;
        let node = self.clone();
        let TextSplitInput { text, metadata } = input;
        // Token counting of a long text takes a while: off the async threads.
        let chunks = tokio::task::spawn_blocking(move || node.split(&text, metadata.as_ref()))
            .await
            .map_err(|e| NodeError::retryable(format!("the splitting task failed: {e}")))??;
        let texts = chunks.iter().map(|c| c.text.clone()).collect();
        let metadata = chunks
            .iter()
            .map(|c| {
                c.metadata.clone().unwrap_or_else(|| {
                    let mut m = Map::new();
                    m.insert("chunk".into(), Value::from(c.index));
                    m
                })
            })
            .collect();
        Ok(TextSplitOutput {
            count: chunks.len() as u64,
            chunks,
            texts,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(chunks: &[Chunk]) -> Vec<&str> {
        chunks.iter().map(|c| c.text.as_str()).collect()
    }

    #[test]
    fn offsets_slice_the_input_in_bytes_and_characters() {
        let text = "Grüße aus Köln. Ça va très bien. 東京は晴れです。";
        let chunks = TextSplit::characters(16).split(text, None).unwrap();
        assert!(chunks.len() > 1);
        let chars: Vec<char> = text.chars().collect();
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.index, i as u64);
            assert_eq!(&text[c.start as usize..c.end as usize], c.text);
            let by_chars: String = chars[c.char_start as usize..c.char_end as usize]
                .iter()
                .collect();
            assert_eq!(by_chars, c.text);
            assert!(c.text.chars().count() <= 16);
        }
    }

    #[test]
    fn overlap_must_be_smaller_than_the_chunk() {
        let e = TextSplit::characters(10)
            .with_overlap(10)
            .split("some text", None)
            .unwrap_err();
        assert_eq!(
            e.message(),
            "config.overlap: 10 must be smaller than config.chunk_size (10)"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn limits_fail_instead_of_dropping() {
        let mut node = TextSplit::characters(5);
        node.max_chunks = 2;
        let e = node.split("one two three four", None).unwrap_err();
        assert_eq!(
            e.message(),
            "the text gives more than config.max_chunks (2) chunks of 5 characters; raise max_chunks or chunk_size"
        );
        node.max_chunks = 100;
        node.max_input_bytes = 4;
        let e = node.split("12345", None).unwrap_err();
        assert_eq!(
            e.message(),
            "input `text`: 5 bytes is more than config.max_input_bytes (4)"
        );
        assert_eq!(texts(&node.split("1234", None).unwrap()), ["1234"]);
    }
}
