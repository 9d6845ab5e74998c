//! [`DocumentLoad`]: plain text, Markdown, HTML or PDF content as plain
//! text with metadata (title, headings, pages).

use std::panic::{AssertUnwindSafe, catch_unwind};

use base64::Engine as _;
use ghostflow::prelude::*;
use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde_json::{Map, Value, json};

/// What a document is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentFormat {
    /// Found from the content type, then the name's extension, then the
    /// content (`%PDF-` is a PDF, a text starting with an HTML tag is
    /// HTML, other UTF-8 is plain text).
    #[default]
    Auto,
    /// Plain UTF-8 text, as it is.
    Text,
    /// Markdown (CommonMark with GitHub tables, task lists, footnotes and
    /// strikethrough, and YAML front matter).
    Markdown,
    /// HTML.
    Html,
    /// PDF with a text layer.
    Pdf,
}

impl DocumentFormat {
    fn name(self) -> &'static str {
        match self {
            DocumentFormat::Auto => "auto",
            DocumentFormat::Text => "text",
            DocumentFormat::Markdown => "markdown",
            DocumentFormat::Html => "html",
            DocumentFormat::Pdf => "pdf",
        }
    }
}

/// The content to load: `text` or `bytes`, exactly one.
#[derive(Ports, Debug)]
pub struct DocumentLoadInput {
    /// The content as text (from `file_read` with `format: text`, an
    /// `http_request` text body, a flow input).
    pub text: Option<String>,
    /// The content as standard base64 (from `file_read` with
    /// `format: bytes`, or `http_request` with `response: bytes`); needed
    /// for PDFs.
    pub bytes: Option<String>,
    /// The content's media type (such as an HTTP `Content-Type` header),
    /// for `format: auto`.
    pub content_type: Option<String>,
    /// The document's name or path (such as `file_read`'s `path`), for
    /// `format: auto` (by its extension) and for the `source` metadata.
    pub name: Option<String>,
}

/// The document as text.
#[derive(Ports, Debug)]
pub struct DocumentLoadOutput {
    /// The document's text.
    pub text: String,
    /// The text of each page for a PDF (pages separated in `text` by a
    /// form feed); one item, the whole text, for other formats.
    pub pages: Vec<String>,
    /// What is known of the document: `format`, `source` (the `name`
    /// input, when given), `title` (when the format has one), `pages` (a
    /// PDF's page count), `headings` (Markdown: `{level, text, start}`,
    /// where `start` is the heading's byte offset in `text`).
    pub metadata: Map<String, Value>,
}

/// Turns a document (plain text, Markdown, HTML or PDF) into plain text,
/// with its title and structure as metadata.
///
/// The content comes as `text` or as base64 `bytes` (exactly one); PDFs
/// need `bytes`. With `format: auto` (the default) the format is found
/// from the `content_type` input, then the extension of the `name` input,
/// then the content itself. Markdown becomes its text without markup
/// (headings on their own lines, list items as `- ` lines, code blocks
/// verbatim), with the headings listed in the metadata and the front
/// matter's `title` (or the first level-1 heading) as the title. HTML
/// becomes readable text: scripts, styles and other hidden parts are
/// dropped, link texts are kept (with their targets as numbered
/// references at the end when `html_link_references` is true), and
/// `<title>` is the title. A PDF gives the text of its pages, its page
/// count and its `Title`; a PDF without a text layer (a scan) fails, as
/// text extraction needs OCR.
///
/// Content that is not what its format says (bytes that are not UTF-8, a
/// broken or encrypted PDF), or over `max_bytes`, `max_pages` or
/// `max_expanded_bytes`, fails the node permanently with a message saying
/// what is wrong.
///
/// ```yaml
/// - id: load_manual
///   type: document_load
///   config:
///     format: auto
///     max_bytes: 20971520
///     max_pages: 500
///     max_expanded_bytes: 268435456
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = DocumentLoadInput, output = DocumentLoadOutput, category = "ai")]
#[serde(deny_unknown_fields)]
pub struct DocumentLoad {
    /// `auto` (the default), `text`, `markdown`, `html` or `pdf`.
    #[serde(default)]
    pub format: DocumentFormat,
    /// The largest document accepted, in bytes (default 20 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// The most pages of a PDF (default 1000); a longer one fails.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// The most bytes a PDF's compressed streams may expand to, all
    /// together (default 256 MiB): a small file can hold a stream that
    /// inflates to gigabytes, and the parser would inflate it whole. Checked
    /// before parsing.
    #[serde(default = "default_max_expanded_bytes")]
    pub max_expanded_bytes: u64,
    /// For HTML: list the links' targets as numbered references
    /// (`[1]: https://...`) after the text, and mark each link text with
    /// its number (default false: link texts only).
    #[serde(default)]
    pub html_link_references: bool,
}

fn default_max_bytes() -> u64 {
    20 * 1024 * 1024
}

fn default_max_pages() -> u32 {
    1000
}

fn default_max_expanded_bytes() -> u64 {
    256 * 1024 * 1024
}

impl Default for DocumentLoad {
    fn default() -> Self {
        DocumentLoad {
            format: DocumentFormat::Auto,
            max_bytes: default_max_bytes(),
            max_pages: default_max_pages(),
            max_expanded_bytes: default_max_expanded_bytes(),
            html_link_references: false,
        }
    }
}

/// Content as it arrived.
enum Content {
    Text(String),
    Bytes(Vec<u8>),
}

impl Content {
    fn bytes(&self) -> &[u8] {
        match self {
            Content::Text(t) => t.as_bytes(),
            Content::Bytes(b) => b,
        }
    }

    fn into_text(self) -> Result<String, NodeError> {
        match self {
            Content::Text(t) => Ok(t),
            Content::Bytes(b) => {
                let body = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&b);
                std::str::from_utf8(body).map(str::to_owned).map_err(|e| {
                    let at = e.valid_up_to();
                    NodeError::permanent(format!(
                        "input `bytes`: not UTF-8 text: the byte 0x{:02x} at offset {at} starts no valid character (only UTF-8 text, Markdown and HTML are read)",
                        body[at]
                    ))
                })
            }
        }
    }
}

/// What a loaded document gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The text.
    pub text: String,
    /// The pages' texts (one item for formats without pages).
    pub pages: Vec<String>,
    /// The metadata.
    pub metadata: Map<String, Value>,
}

impl DocumentLoad {
    /// A loader finding the format by itself, with the default limits.
    pub fn new() -> Self {
        DocumentLoad::default()
    }

    /// A loader of `format`.
    pub fn of(format: DocumentFormat) -> Self {
        DocumentLoad {
            format,
            ..DocumentLoad::default()
        }
    }

    /// Loads text content.
    ///
    /// # Errors
    /// As the node: content that is not of its format, or over a limit.
    pub fn load_text(
        &self,
        text: String,
        content_type: Option<&str>,
        name: Option<&str>,
    ) -> Result<Loaded, NodeError> {
        self.load(Content::Text(text), content_type, name)
    }

    /// Loads bytes.
    ///
    /// # Errors
    /// As the node: content that is not of its format, or over a limit.
    pub fn load_bytes(
        &self,
        bytes: Vec<u8>,
        content_type: Option<&str>,
        name: Option<&str>,
    ) -> Result<Loaded, NodeError> {
        self.load(Content::Bytes(bytes), content_type, name)
    }

    fn load(
        &self,
        content: Content,
        content_type: Option<&str>,
        name: Option<&str>,
    ) -> Result<Loaded, NodeError> {
        let size = content.bytes().len() as u64;
        if size > self.max_bytes {
            return Err(NodeError::permanent(format!(
                "the document is {size} bytes, more than config.max_bytes ({})",
                self.max_bytes
            )));
        }
        let format = match self.format {
            DocumentFormat::Auto => detect(content.bytes(), content_type, name),
            known => known,
        };
        let mut loaded = match format {
            DocumentFormat::Pdf => match content {
                Content::Bytes(bytes) => pdf(&bytes, self.max_pages, self.max_expanded_bytes)?,
                Content::Text(_) => {
                    return Err(NodeError::permanent(
                        "input `text`: a PDF is binary: give it as base64 on the `bytes` input (`file_read` with `format: bytes`, `http_request` with `response: bytes`)",
                    ));
                }
            },
            DocumentFormat::Html => html(&content.into_text()?, self.html_link_references)?,
            DocumentFormat::Markdown => markdown(&content.into_text()?),
            DocumentFormat::Text | DocumentFormat::Auto => {
                let text = content.into_text()?;
                Loaded {
                    pages: vec![text.clone()],
                    text,
                    metadata: Map::new(),
                }
            }
        };
        let mut metadata = Map::new();
        metadata.insert("format".into(), json!(format.name()));
        if let Some(name) = name {
            metadata.insert("source".into(), json!(name));
        }
        metadata.append(&mut loaded.metadata);
        loaded.metadata = metadata;
        Ok(loaded)
    }
}

impl Run for DocumentLoad {
    async fn run(
        &self,
        input: DocumentLoadInput,
        _ctx: &Context,
    ) -> Result<DocumentLoadOutput, NodeError> {
        let content = match (input.text, input.bytes) {
            (Some(text), None) => Content::Text(text),
            (None, Some(bytes)) => {
                // Base64 is 4/3 of the bytes: refuse early what cannot fit.
                if bytes.len() as u64 / 4 * 3 > self.max_bytes.saturating_add(3) {
                    return Err(NodeError::permanent(format!(
                        "input `bytes`: the document is more than config.max_bytes ({}) bytes",
                        self.max_bytes
                    )));
                }
                let compact: String = bytes.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                Content::Bytes(
                    base64::engine::general_purpose::STANDARD
                        .decode(compact.as_bytes())
                        .map_err(|e| {
                            NodeError::permanent(format!(
                                "input `bytes`: not valid standard base64: {e}"
                            ))
                        })?,
                )
            }
            (Some(_), Some(_)) => {
                return Err(NodeError::permanent(
                    "inputs `text` and `bytes`: connect one of them, not both",
                ));
            }
            (None, None) => {
                return Err(NodeError::permanent(
                    "inputs `text` and `bytes`: neither is given; connect the document's text or its base64 bytes",
                ));
            }
        };
        let node = self.clone();
        let (content_type, name) = (input.content_type, input.name);
        // PDF parsing and HTML rendering are CPU work: off the async threads.
        let loaded = tokio::task::spawn_blocking(move || {
            node.load(content, content_type.as_deref(), name.as_deref())
        })
        .await
        .map_err(|e| NodeError::retryable(format!("the loading task failed: {e}")))??;
        Ok(DocumentLoadOutput {
            text: loaded.text,
            pages: loaded.pages,
            metadata: loaded.metadata,
        })
    }
}

/// The format of content whose format was not given.
fn detect(bytes: &[u8], content_type: Option<&str>, name: Option<&str>) -> DocumentFormat {
    if let Some(content_type) = content_type {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/pdf" | "application/x-pdf" => return DocumentFormat::Pdf,
            "text/html" | "application/xhtml+xml" => return DocumentFormat::Html,
            "text/markdown" | "text/x-markdown" => return DocumentFormat::Markdown,
            "text/plain" => return DocumentFormat::Text,
            _ => {}
        }
    }
    if let Some(name) = name {
        let name = name.to_ascii_lowercase();
        let extension = name.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
        match extension {
            "pdf" => return DocumentFormat::Pdf,
            "html" | "htm" | "xhtml" => return DocumentFormat::Html,
            "md" | "markdown" | "mdown" | "mkd" => return DocumentFormat::Markdown,
            "txt" | "text" => return DocumentFormat::Text,
            _ => {}
        }
    }
    // A PDF header may follow up to 1024 bytes of junk.
    if bytes[..bytes.len().min(1024)]
        .windows(5)
        .any(|w| w == b"%PDF-")
    {
        return DocumentFormat::Pdf;
    }
    let start = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let start = &start[start
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(start.len())..];
    let head: Vec<u8> = start[..start.len().min(16)].to_ascii_lowercase();
    let html_starts: [&[u8]; 6] = [
        b"<!doctype html",
        b"<html",
        b"<head",
        b"<body",
        b"<!--",
        b"<meta",
    ];
    if html_starts.iter().any(|s| head.starts_with(s)) {
        return DocumentFormat::Html;
    }
    DocumentFormat::Text
}

// ------------------------------------------------------------------ Markdown

/// Markdown as its text, with headings as metadata.
fn markdown(source: &str) -> Loaded {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS;
    let mut out = String::new();
    let mut headings = Vec::new();
    let mut heading: Option<(HeadingLevel, usize)> = None;
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut in_metadata = false;
    let mut front_matter = String::new();
    let mut cell = 0usize;
    let block_end = |out: &mut String| {
        while out.ends_with(' ') {
            out.pop();
        }
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
        }
    };
    let line_end = |out: &mut String| {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
    };
    for event in Parser::new_ext(source, options) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Heading { level, .. } => {
                    block_end(&mut out);
                    heading = Some((level, out.len()));
                }
                Tag::Paragraph | Tag::CodeBlock(_) | Tag::Table(_) | Tag::BlockQuote(_) => {
                    if lists.is_empty() {
                        block_end(&mut out);
                    } else {
                        line_end(&mut out);
                    }
                }
                Tag::List(start) => {
                    line_end(&mut out);
                    lists.push(start);
                }
                Tag::Item => {
                    line_end(&mut out);
                    out.push_str(&"  ".repeat(lists.len().saturating_sub(1)));
                    match lists.last_mut() {
                        Some(Some(n)) => {
                            out.push_str(&format!("{n}. "));
                            *n += 1;
                        }
                        _ => out.push_str("- "),
                    }
                }
                Tag::TableRow | Tag::TableHead => {
                    line_end(&mut out);
                    cell = 0;
                }
                Tag::TableCell => {
                    if cell > 0 {
                        out.push_str(" | ");
                    }
                    cell += 1;
                }
                Tag::MetadataBlock(_) => in_metadata = true,
                Tag::FootnoteDefinition(label) => {
                    block_end(&mut out);
                    out.push_str(&format!("[{label}]: "));
                }
                _ => {}
            },
            Event::End(end) => match end {
                TagEnd::Heading(_) => {
                    if let Some((level, start)) = heading.take() {
                        let text = out[start..].trim().to_owned();
                        headings.push(json!({
                            "level": level as u8,
                            "text": text,
                            "start": start,
                        }));
                    }
                    block_end(&mut out);
                }
                TagEnd::Paragraph | TagEnd::CodeBlock | TagEnd::Table | TagEnd::BlockQuote(_) => {
                    if lists.is_empty() {
                        block_end(&mut out);
                    } else {
                        line_end(&mut out);
                    }
                }
                TagEnd::List(_) => {
                    lists.pop();
                    if lists.is_empty() {
                        block_end(&mut out);
                    }
                }
                TagEnd::Item | TagEnd::TableHead | TagEnd::TableRow => line_end(&mut out),
                TagEnd::MetadataBlock(_) => in_metadata = false,
                _ => {}
            },
            Event::Text(text) if in_metadata => front_matter.push_str(&text),
            Event::Text(text)
            | Event::Code(text)
            | Event::InlineMath(text)
            | Event::DisplayMath(text) => {
                out.push_str(&text);
            }
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            Event::Rule => block_end(&mut out),
            Event::TaskListMarker(done) => out.push_str(if done { "[x] " } else { "[ ] " }),
            Event::FootnoteReference(label) => out.push_str(&format!("[{label}]")),
            Event::Html(_) | Event::InlineHtml(_) => {}
        }
    }
    let text = out.trim_end().to_owned();
    let mut metadata = Map::new();
    let title = front_matter_title(&front_matter).or_else(|| {
        headings
            .iter()
            .find(|h| h["level"] == json!(1))
            .and_then(|h| h["text"].as_str().map(str::to_owned))
    });
    if let Some(title) = title {
        metadata.insert("title".into(), json!(title));
    }
    metadata.insert("headings".into(), Value::Array(headings));
    Loaded {
        pages: vec![text.clone()],
        text,
        metadata,
    }
}

/// The `title:` of YAML front matter, when it is a plain one-line value.
fn front_matter_title(front_matter: &str) -> Option<String> {
    front_matter.lines().find_map(|line| {
        let value = line.strip_prefix("title:")?.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        (!value.is_empty()).then(|| value.to_owned())
    })
}

// ---------------------------------------------------------------------- HTML

/// HTML as readable text, with its `<title>`.
fn html(source: &str, references: bool) -> Result<Loaded, NodeError> {
    let config = html2text::config::plain_no_decorate()
        .no_table_borders()
        .link_footnotes(references);
    // Wide enough that paragraphs are not wrapped: lines are the
    // document's own.
    let text = config
        .string_from_read(source.as_bytes(), 100_000)
        .map_err(|e| NodeError::permanent(format!("the HTML cannot be read: {e}")))?;
    let text: String = text
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    let text = squeeze_blank_lines(text.trim());
    let mut metadata = Map::new();
    if let Some(title) = html_title(source) {
        metadata.insert("title".into(), json!(title));
    }
    Ok(Loaded {
        pages: vec![text.clone()],
        text,
        metadata,
    })
}

/// At most one blank line in a row.
fn squeeze_blank_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.split('\n') {
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// The text of the first `<title>` element, entities decoded.
fn html_title(source: &str) -> Option<String> {
    let lower = source.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let content = open + lower[open..].find('>')? + 1;
    let close = content + lower[content..].find("</title")?;
    // The title's text through the same parser: entities decoded.
    let inner = &source[content..close];
    let text = html2text::config::plain_no_decorate()
        .string_from_read(format!("<p>{inner}</p>").as_bytes(), 100_000)
        .ok()?;
    let title = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty()).then_some(title)
}

// ----------------------------------------------------------------------- PDF

/// A PDF's text, page by page. The parser can panic on malformed files:
/// a panic is caught and reported as a broken PDF.
fn pdf(bytes: &[u8], max_pages: u32, max_expanded: u64) -> Result<Loaded, NodeError> {
    if !bytes[..bytes.len().min(1024)]
        .windows(5)
        .any(|w| w == b"%PDF-")
    {
        return Err(NodeError::permanent(
            "not a PDF: the content has no `%PDF-` header",
        ));
    }
    check_expansion(bytes, max_expanded)?;
    let broken = |what: &str| NodeError::permanent(format!("the PDF cannot be read: {what}"));
    let parsed = catch_unwind(AssertUnwindSafe(|| pdf_extract::Document::load_mem(bytes)));
    let mut doc = match parsed {
        Ok(Ok(doc)) => doc,
        Ok(Err(e)) => return Err(broken(&e.to_string())),
        Err(_) => return Err(broken("the file is malformed (the parser gave up)")),
    };
    if doc.is_encrypted() {
        // Many PDFs are encrypted with an empty user password, only to
        // restrict editing: those can be read.
        let decrypted = catch_unwind(AssertUnwindSafe(|| doc.decrypt("")));
        if !matches!(decrypted, Ok(Ok(()))) {
            return Err(NodeError::permanent(
                "the PDF is encrypted with a password; it cannot be read",
            ));
        }
    }
    let page_ids = doc.get_pages();
    let count = page_ids.len();
    if count > max_pages as usize {
        return Err(NodeError::permanent(format!(
            "the PDF has {count} pages, more than config.max_pages ({max_pages})"
        )));
    }
    let mut pages = Vec::with_capacity(count);
    for &number in page_ids.keys() {
        let mut text = String::new();
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut output = pdf_extract::PlainTextOutput::new(&mut text);
            pdf_extract::output_doc_page(&doc, &mut output, number)
        }));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(broken(&format!("page {number}: {e}"))),
            Err(_) => {
                return Err(broken(&format!(
                    "page {number} is malformed (the parser gave up)"
                )));
            }
        }
        pages.push(tidy_page(&text));
    }
    if count > 0 && pages.iter().all(|p| p.trim().is_empty()) {
        return Err(NodeError::permanent(format!(
            "the PDF has {count} page{} but no text layer (a scanned document?); reading it needs OCR, which this node does not do",
            if count == 1 { "" } else { "s" }
        )));
    }
    let mut metadata = Map::new();
    if let Some(title) = pdf_title(&doc) {
        metadata.insert("title".into(), json!(title));
    }
    metadata.insert("pages".into(), json!(count));
    Ok(Loaded {
        text: pages.join("\n\u{c}\n"),
        pages,
        metadata,
    })
}

/// Inflates every compressed stream of the file, without keeping what
/// comes out, and fails once all of them together pass `limit` bytes.
/// The parser inflates object streams as it loads and content streams
/// page by page, each whole in memory: this bounds both before it starts.
///
/// A stream is found as the parser finds it (`stream`, spaces or tabs, an
/// end of line) and measured as the parser decodes it: each Flate layer
/// its dictionary names (more than [`MAX_ZLIB_LAYERS`] are refused) as
/// zlib or, when that gives nothing, raw deflate after two bytes, each
/// layer's output counted; a leading ASCII hex or ASCII85 layer decoded
/// first; zlib found inside the last named layer (or in a stream whose
/// dictionary was not read) measured too. LZW streams are not measured.
fn check_expansion(bytes: &[u8], limit: u64) -> Result<(), NodeError> {
    let mut total: u64 = 0;
    let mut from = 0;
    while let Some(found) = find(&bytes[from..], b"stream") {
        let keyword = from + found;
        let dictionary_start = from;
        from = keyword + b"stream".len();
        if bytes[..keyword].ends_with(b"end") {
            continue;
        }
        let mut at = from;
        while matches!(bytes.get(at), Some(b' ' | b'\t')) {
            at += 1;
        }
        let body = match &bytes[at..] {
            [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] | [b'\r', rest @ ..] => rest,
            _ => continue,
        };
        // The stream's dictionary lies between the previous stream (or the
        // start) and the keyword, after its object's `obj`.
        let dictionary = &bytes[dictionary_start..keyword];
        let dictionary = rfind(dictionary, b"obj").map_or(dictionary, |at| &dictionary[at..]);
        let filters = filters(dictionary);
        let ascii = filters.first().and_then(|first| ascii_decoded(first, body));
        let flate = filters
            .iter()
            .filter(|f| matches!(**f, b"/FlateDecode" | b"/Fl"))
            .count();
        let too_many = || {
            NodeError::permanent(format!(
                "the PDF has a stream compressed more than {MAX_ZLIB_LAYERS} times over (a compression bomb?)"
            ))
        };
        if flate > MAX_ZLIB_LAYERS {
            return Err(too_many());
        }
        let data = ascii.as_deref().unwrap_or(body);
        let size = inflated_size(data, flate, limit - total).ok_or_else(too_many)?;
        total = total.saturating_add(size);
        if total > limit {
            return Err(NodeError::permanent(format!(
                "the PDF's compressed streams expand to more than config.max_expanded_bytes ({limit} bytes); raise it if the file is trusted"
            )));
        }
    }
    Ok(())
}

/// The most zlib layers one PDF stream may have (`/Filter` given as
/// often); real files have one, rarely two.
const MAX_ZLIB_LAYERS: usize = 4;

/// The filter names of a stream dictionary's `/Filter`: one name, or an
/// array of them.
fn filters(dictionary: &[u8]) -> Vec<&[u8]> {
    let Some(at) = find(dictionary, b"/Filter") else {
        return Vec::new();
    };
    let value = dictionary[at + b"/Filter".len()..].trim_ascii_start();
    let (list, one) = match value.strip_prefix(b"[") {
        Some(rest) => (rest.split(|&b| b == b']').next().unwrap_or_default(), false),
        None => (value, true),
    };
    // Names run from one `/` to the next delimiter.
    let mut out: Vec<&[u8]> = Vec::new();
    let mut rest = list;
    while let Some(slash) = rest.iter().position(|&b| b == b'/') {
        let name = &rest[slash..];
        let end = name[1..]
            .iter()
            .position(|&b| b.is_ascii_whitespace() || b"/[]<>()".contains(&b))
            .map_or(name.len(), |e| e + 1);
        out.push(&name[..end]);
        rest = &name[end..];
        if one {
            break;
        }
    }
    out
}

/// `body` decoded from ASCII hex or ASCII85 when `filter` is one of them;
/// what comes out is never longer than what goes in.
fn ascii_decoded(filter: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    match filter {
        b"/ASCIIHexDecode" | b"/AHx" => {
            let digits: Vec<u8> = body
                .iter()
                .take_while(|&&b| b != b'>')
                .filter_map(|&b| char::from(b).to_digit(16).map(|d| d as u8))
                .collect();
            Some(
                digits
                    .chunks(2)
                    .map(|pair| pair[0] << 4 | pair.get(1).copied().unwrap_or(0))
                    .collect(),
            )
        }
        b"/ASCII85Decode" | b"/A85" => {
            let word = |group: &[u8]| group.iter().fold(0u64, |n, &d| n * 85 + u64::from(d)) as u32;
            let mut out = Vec::with_capacity(body.len());
            let mut group = Vec::with_capacity(5);
            for &b in body.iter().take_while(|&&b| b != b'~') {
                match b {
                    b'z' if group.is_empty() => out.extend_from_slice(&[0; 4]),
                    b'!'..=b'u' => {
                        group.push(b - b'!');
                        if group.len() == 5 {
                            out.extend_from_slice(&word(&group).to_be_bytes());
                            group.clear();
                        }
                    }
                    _ => {}
                }
            }
            if group.len() > 1 {
                let kept = group.len() - 1;
                group.resize(5, 84);
                out.extend_from_slice(&word(&group).to_be_bytes()[..kept]);
            }
            Some(out)
        }
        _ => None,
    }
}

/// What the Flate layers at the start of `data` inflate to, each layer's
/// output counted (each no further than just past `budget`) and added up:
/// `named` layers as the parser decodes them (zlib, else raw deflate after
/// two bytes), then more while the output is zlib again. `None` past
/// [`MAX_ZLIB_LAYERS`] layers.
fn inflated_size(data: &[u8], named: usize, budget: u64) -> Option<u64> {
    use std::io::{Read, Write};

    /// A sink counting what is written to it, and keeping its first bytes.
    #[derive(Default)]
    struct Counting {
        count: u64,
        head: Vec<u8>,
    }
    impl Write for Counting {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.head.len() < 2 {
                let more = buf.len().min(2 - self.head.len());
                self.head.extend_from_slice(&buf[..more]);
            }
            self.count += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    /// The last of `layers` (`true`: raw deflate after two bytes), counted;
    /// an error ends it, and what came out before counts.
    fn measure(data: &[u8], layers: &[bool], budget: u64) -> Counting {
        let mut read: Box<dyn Read + '_> = Box::new(data);
        for &raw in layers {
            read = if raw {
                let mut header = [0u8; 2];
                let _ = read.read_exact(&mut header);
                Box::new(flate2::read::DeflateDecoder::new(read))
            } else {
                Box::new(flate2::read::ZlibDecoder::new(read))
            };
        }
        let mut sink = Counting::default();
        let _ = std::io::copy(&mut read.take(budget.saturating_add(1)), &mut sink);
        sink
    }
    fn is_zlib(head: &[u8]) -> bool {
        head.len() == 2
            && head[0] & 0x0f == 8
            && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0
    }

    let mut total: u64 = 0;
    let mut layers: Vec<bool> = Vec::new();
    let mut head = data.get(..2).unwrap_or_default().to_vec();
    while layers.len() < named || is_zlib(&head) {
        if layers.len() == MAX_ZLIB_LAYERS {
            return None;
        }
        let named_layer = layers.len() < named;
        layers.push(false);
        let mut out = measure(data, &layers, budget - total);
        if out.count == 0 && named_layer {
            layers.pop();
            layers.push(true);
            out = measure(data, &layers, budget - total);
        }
        total = total.saturating_add(out.count);
        if out.count == 0 || total > budget {
            break;
        }
        head = out.head;
    }
    Some(total)
}

/// Where `needle` last occurs in `haystack`.
fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A page's text without trailing spaces and runs of blank lines.
fn tidy_page(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    squeeze_blank_lines(lines.join("\n").trim_matches('\n'))
}

/// The `Title` of the document information dictionary.
fn pdf_title(doc: &pdf_extract::Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let info = match info {
        pdf_extract::Object::Reference(id) => doc.get_object(*id).ok()?,
        other => other,
    };
    let title = info.as_dict().ok()?.get(b"Title").ok()?;
    let title = match title {
        pdf_extract::Object::Reference(id) => doc.get_object(*id).ok()?,
        other => other,
    };
    let pdf_extract::Object::String(bytes, _) = title else {
        return None;
    };
    let text = pdf_text_string(bytes);
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A PDF text string: UTF-16BE with a byte order mark, UTF-8 with one
/// (PDF 2.0), or else PDFDocEncoding (read as Latin-1, which it matches
/// for letters).
fn pdf_text_string(bytes: &[u8]) -> String {
    if let Some(utf16) = bytes.strip_prefix(b"\xfe\xff") {
        let units: Vec<u16> = utf16
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    if let Some(utf8) = bytes.strip_prefix(b"\xef\xbb\xbf") {
        return String::from_utf8_lossy(utf8).into_owned();
    }
    bytes.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected() {
        assert_eq!(detect(b"%PDF-1.4", None, None), DocumentFormat::Pdf);
        assert_eq!(
            detect(b"  <!DOCTYPE html><p>x", None, None),
            DocumentFormat::Html
        );
        assert_eq!(detect(b"# Title", None, None), DocumentFormat::Text);
        assert_eq!(
            detect(b"# Title", None, Some("docs/guide.md")),
            DocumentFormat::Markdown
        );
        assert_eq!(
            detect(b"x", Some("text/html; charset=utf-8"), Some("a.md")),
            DocumentFormat::Html
        );
        assert_eq!(
            detect(b"%PDF-1.7", Some("application/octet-stream"), None),
            DocumentFormat::Pdf
        );
    }

    #[test]
    fn pdf_strings_decode() {
        assert_eq!(pdf_text_string(b"\xfe\xff\x00H\x00\xe9"), "Hé");
        assert_eq!(pdf_text_string(b"Caf\xe9"), "Café");
    }
}
