//! Reading document bytes: YAML or JSON to a JSON value, with the line and
//! column of every value, and limits on size and nesting.
//!
//! This is the layer below the flow document model. [`parse`] turns the bytes
//! of a file into a [`serde_json::Value`] and a [`SourceMap`], so that any
//! later problem found at a [`DocPath`] (`nodes[2].config.url`) can be reported
//! compiler-style, as `file:line:col: message`.
//!
//! ```
//! use ghostflow::document::source::{parse, DocPath, Format, Limits};
//!
//! let text = b"name: fetch\nnodes:\n  - id: get\n    config:\n      url: https://example.com\n";
//! let (value, map) = parse(text, Format::Yaml, &Limits::default()).unwrap();
//! assert_eq!(value["nodes"][0]["id"], "get");
//!
//! let url = DocPath::root().with_key("nodes").with_index(0).with_key("config").with_key("url");
//! assert_eq!(url.to_string(), "nodes[0].config.url");
//! assert_eq!(map.locate(&url).unwrap().to_string(), "5:12");
//! // A missing field points at the nearest value that exists: here `config`.
//! let missing = url.parent().unwrap().with_key("timeout");
//! assert_eq!(map.locate(&missing).unwrap().to_string(), "5:7");
//! ```
//!
//! # What is accepted
//!
//! Both formats must be UTF-8 (a leading byte order mark is skipped), hold
//! exactly one non-empty document, use only string mapping keys, each at most
//! once per mapping, and stay within [`Limits`]. YAML scalars are read with
//! the YAML 1.2 core schema: `true`/`false`, `null`/`~`/empty, integers
//! (decimal, `0o` octal, `0x` hex), floats; quoted scalars are always strings.
//! Integers beyond 64 bits become floats, as `serde_json` does for JSON;
//! `.inf` and `.nan` are refused since JSON cannot hold them. YAML anchors are
//! ignored and aliases refused, so no document can expand beyond its own size
//! ("billion laughs"). Custom tags (`!foo`) are refused; the core tags
//! (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!map`, `!!seq`) work.
//!
//! # Why `saphyr-parser`
//!
//! YAML is read with the event parser of the `saphyr` project
//! (`saphyr-parser`): a maintained, pure-Rust YAML 1.2 parser whose events
//! carry a start and end mark (line and character column). Reading events
//! rather than `saphyr`'s `MarkedYaml` tree lets this module build the JSON
//! value and the source map in one pass, see quoted versus plain scalars and
//! tags, refuse an alias the moment it appears, and report duplicate keys at
//! the second key with the first one's position, without an intermediate
//! tree. `serde_yaml` is deprecated; `marked-yaml` sits on `yaml-rust2` and
//! offers less control over scalars and aliases.
//!
//! # Nesting and stack safety
//!
//! Neither parser here recurses on the input's structure: the YAML parser is
//! a state machine with an explicit stack, the JSON indexer below is
//! iterative, and `serde_json` stops at 128 levels. The nesting limit is
//! still checked before any parser sees a deep document:
//!
//! - JSON: the position indexer runs first and stops at the first bracket
//!   past [`Limits::max_depth`]; `serde_json` only ever sees documents that
//!   passed it.
//! - YAML flow collections (`[`, `{`): a linear pre-scan counts them outside
//!   quoted scalars, comments and block scalars, the way the YAML scanner
//!   reads them (a differential property test checks that it never sees less
//!   nesting than the scanner). This matters for time, not the stack: inside
//!   a flow collection the YAML scanner reads ahead to the collection's end
//!   before it emits anything, and its work per token grows with the flow
//!   depth, so a deep 10 MiB document would take seconds before any event
//!   could be checked. For the same reason the pre-scan also bounds the total
//!   (tokens times flow depth): millions of values 60 levels deep are refused
//!   though each level is within the limit.
//! - YAML block nesting (indentation, `- - -`) is checked on the events, as
//!   they stream: the scanner reads at most a line ahead in block context, so
//!   a deep document is refused after reading about `max_depth` lines.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Span, Tag};
use serde_json::{Map, Number, Value};

/// The syntax of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// YAML 1.2 (a superset of JSON, read with the core schema).
    Yaml,
    /// JSON (RFC 8259).
    Json,
}

impl Format {
    /// The format for a file name: `.json` (any case) is JSON, anything else
    /// (`.yaml`, `.yml`, no extension) is YAML.
    pub fn from_path(path: &Path) -> Format {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Hard limits on a document. Documents are configuration, not data: the
/// defaults are generous for a flow and refuse anything that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest document accepted, in bytes (checked before anything else).
    pub max_bytes: usize,
    /// The deepest nesting of mappings and sequences accepted; the root
    /// collection is level 1.
    pub max_depth: usize,
}

impl Limits {
    /// The default size limit: 10 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 10 * 1024 * 1024;
    /// The default nesting limit: 64 levels.
    pub const DEFAULT_MAX_DEPTH: usize = 64;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_depth: Self::DEFAULT_MAX_DEPTH,
        }
    }
}

/// A position in a document: 1-based line, and 1-based column counted in
/// characters (not bytes). Displayed as `line:col`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The line, from 1.
    pub line: usize,
    /// The column in characters, from 1.
    pub column: usize,
}

impl Location {
    /// A location from a 1-based line and column.
    pub fn new(line: usize, column: usize) -> Self {
        Location { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a document could not be read: one message per cause, and where in the
/// document it lies when there is such a place.
///
/// Displayed as `line:col: message` (or just `message`), so that
/// `format!("{file}:{err}")` reads like a compiler diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// What is wrong, in words, without the location.
    pub message: String,
    /// Where it is wrong, when the cause has a place in the document.
    pub location: Option<Location>,
}

impl SourceError {
    fn at(location: Location, message: impl Into<String>) -> Self {
        SourceError {
            message: message.into(),
            location: Some(location),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        SourceError {
            message: message.into(),
            location: None,
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for SourceError {}

/// One step of a [`DocPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index, from 0.
    Index(usize),
}

/// A path to a value inside a document, such as `nodes[2].config.url`.
///
/// Build one with [`DocPath::root`] and [`with_key`](DocPath::with_key) /
/// [`with_index`](DocPath::with_index) (or [`push_key`](DocPath::push_key) /
/// [`push_index`](DocPath::push_index) while walking), or from the JSON
/// pointers that JSON Schema validators report
/// ([`from_json_pointer`](DocPath::from_json_pointer)).
///
/// Keys that are plain identifiers display after a dot; other keys display
/// quoted in brackets (`headers["Content-Type"]`); the root displays as
/// `(root)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DocPath {
    segments: Vec<Segment>,
}

impl DocPath {
    /// The path of the whole document.
    pub fn root() -> Self {
        DocPath::default()
    }

    /// Whether this is the path of the whole document.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The steps from the root, in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The last step, if any.
    pub fn last(&self) -> Option<&Segment> {
        self.segments.last()
    }

    /// This path, one mapping key further.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.push_key(key);
        self
    }

    /// This path, one sequence index further.
    #[must_use]
    pub fn with_index(mut self, index: usize) -> Self {
        self.push_index(index);
        self
    }

    /// Goes one mapping key further.
    pub fn push_key(&mut self, key: impl Into<String>) {
        self.segments.push(Segment::Key(key.into()));
    }

    /// Goes one sequence index further.
    pub fn push_index(&mut self, index: usize) {
        self.segments.push(Segment::Index(index));
    }

    /// Goes one step back, returning the step removed.
    pub fn pop(&mut self) -> Option<Segment> {
        self.segments.pop()
    }

    /// This path followed by `rest`.
    #[must_use]
    pub fn join(mut self, rest: &DocPath) -> Self {
        self.segments.extend(rest.segments.iter().cloned());
        self
    }

    /// This path followed by a relative path written the way this type
    /// displays one (`headers.Accept`, `items[2].name`, `["a b"]`), as node
    /// config errors and expressions report them. An empty text adds nothing.
    #[must_use]
    pub fn join_dotted(mut self, rest: &str) -> Self {
        self.segments.extend(parse_dotted(rest));
        self
    }

    /// The path one step up, or `None` for the root.
    pub fn parent(&self) -> Option<DocPath> {
        let (_, up) = self.segments.split_last()?;
        Some(DocPath {
            segments: up.to_vec(),
        })
    }

    /// Reads an RFC 6901 JSON pointer (`/nodes/2/config/url`, `""` for the
    /// root).
    ///
    /// A pointer does not say whether `2` is an index or a key. Steps written
    /// as a plain non-negative integer (`0`, `17`, not `007`) become
    /// [`Segment::Index`], the others [`Segment::Key`]. [`SourceMap`] accepts
    /// either spelling at either kind of value, so locating works regardless.
    ///
    /// # Errors
    /// When the pointer is neither empty nor starts with `/`, or uses a `~`
    /// escape other than `~0` (`~`) and `~1` (`/`).
    pub fn from_json_pointer(pointer: &str) -> Result<DocPath, InvalidPointer> {
        if pointer.is_empty() {
            return Ok(DocPath::root());
        }
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(InvalidPointer {
                pointer: pointer.to_owned(),
                reason: "it must be empty or start with `/`",
            });
        };
        let mut path = DocPath::root();
        for raw in rest.split('/') {
            let step = unescape_pointer_step(raw).ok_or_else(|| InvalidPointer {
                pointer: pointer.to_owned(),
                reason: "`~` must be followed by `0` or `1`",
            })?;
            match canonical_index(&step) {
                Some(index) => path.push_index(index),
                None => path.push_key(step),
            }
        }
        Ok(path)
    }

    /// Writes this path as an RFC 6901 JSON pointer (`/nodes/2/config/url`).
    pub fn to_json_pointer(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Key(key) => {
                    for c in key.chars() {
                        match c {
                            '~' => out.push_str("~0"),
                            '/' => out.push_str("~1"),
                            c => out.push(c),
                        }
                    }
                }
                Segment::Index(index) => out.push_str(&index.to_string()),
            }
        }
        out
    }
}

/// The segments of a relative path written as `a.b[2]["c d"]`. Text that
/// does not follow the grammar becomes one key, so nothing is lost.
fn parse_dotted(text: &str) -> Vec<Segment> {
    let text = text.trim();
    let mut segments = Vec::new();
    if text.is_empty() || text == "." {
        return segments;
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'.' => i += 1,
            b'[' => {
                let Some(close) = text[i..].find(']').map(|c| i + c) else {
                    segments.push(Segment::Key(text[i..].to_owned()));
                    break;
                };
                let inner = &text[i + 1..close];
                if let Ok(index) = inner.parse::<usize>() {
                    segments.push(Segment::Index(index));
                    i = close + 1;
                } else if inner.starts_with('"') {
                    // A quoted key may contain `]`: read it as a JSON string.
                    let mut stream =
                        serde_json::Deserializer::from_str(&text[i + 1..]).into_iter::<String>();
                    match stream.next() {
                        Some(Ok(key)) => {
                            let end = i + 1 + stream.byte_offset();
                            segments.push(Segment::Key(key));
                            i = text[end..].find(']').map_or(text.len(), |c| end + c + 1);
                        }
                        _ => {
                            segments.push(Segment::Key(inner.to_owned()));
                            i = close + 1;
                        }
                    }
                } else {
                    segments.push(Segment::Key(inner.to_owned()));
                    i = close + 1;
                }
            }
            _ => {
                let end = text[i..].find(['.', '[']).map_or(text.len(), |e| i + e);
                segments.push(Segment::Key(text[i..end].to_owned()));
                i = end;
            }
        }
    }
    segments
}

impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("(root)");
        }
        for (n, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) if is_identifier(key) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => {
                    // A JSON string literal: quotes and escapes done right.
                    let quoted = serde_json::to_string(key).map_err(|_| fmt::Error)?;
                    write!(f, "[{quoted}]")?;
                }
            }
        }
        Ok(())
    }
}

impl FromIterator<Segment> for DocPath {
    fn from_iter<I: IntoIterator<Item = Segment>>(iter: I) -> Self {
        DocPath {
            segments: iter.into_iter().collect(),
        }
    }
}

impl From<Vec<Segment>> for DocPath {
    fn from(segments: Vec<Segment>) -> Self {
        DocPath { segments }
    }
}

/// A JSON pointer that [`DocPath::from_json_pointer`] could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPointer {
    pointer: String,
    reason: &'static str,
}

impl fmt::Display for InvalidPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid JSON pointer `{}`: {}",
            self.pointer, self.reason
        )
    }
}

impl std::error::Error for InvalidPointer {}

fn unescape_pointer_step(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// `Some(n)` when `step` is how `n` is written: digits, no leading zero.
fn canonical_index(step: &str) -> Option<usize> {
    let canonical = step == "0"
        || (!step.is_empty() && !step.starts_with('0') && step.bytes().all(|b| b.is_ascii_digit()));
    if canonical { step.parse().ok() } else { None }
}

fn is_identifier(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Where each value of a document starts, and where each mapping key is.
///
/// Made by [`parse`] alongside the value; look places up by [`DocPath`].
/// A map made with [`Default`] knows no places (for values that came from
/// code rather than a file).
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Location,
    key: Option<Location>,
    children: Children,
}

#[derive(Debug, Clone)]
enum Children {
    None,
    Items(Vec<usize>),
    Fields(HashMap<String, usize>),
}

/// What kind of value an entry is, for [`SourceMap`] building.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scalar,
    Sequence,
    Mapping,
}

impl SourceMap {
    /// Where the value at `path` starts. When nothing is at `path` (a missing
    /// field, an index past the end), where its nearest existing ancestor
    /// starts, so an error about something missing points at the mapping or
    /// sequence that lacks it. `None` only for a map that knows no places.
    pub fn locate(&self, path: &DocPath) -> Option<Location> {
        let (entry, _) = self.walk(path)?;
        Some(self.entries[entry].value)
    }

    /// Where the value at exactly `path` starts, with no fallback.
    pub fn locate_exact(&self, path: &DocPath) -> Option<Location> {
        match self.walk(path)? {
            (entry, true) => Some(self.entries[entry].value),
            (_, false) => None,
        }
    }

    /// Where the key of the mapping entry at `path` is, for messages about
    /// the key itself ("unknown field `tiemout`"). For a sequence element or
    /// the root it is where the value starts; for a missing path, as in
    /// [`locate`](SourceMap::locate), where the nearest ancestor starts.
    pub fn locate_key(&self, path: &DocPath) -> Option<Location> {
        let (entry, exact) = self.walk(path)?;
        let entry = &self.entries[entry];
        match (exact, path.last(), entry.key) {
            (true, Some(Segment::Key(_)), Some(key)) => Some(key),
            _ => Some(entry.value),
        }
    }

    /// The deepest entry along `path`, and whether it is the whole path.
    fn walk(&self, path: &DocPath) -> Option<(usize, bool)> {
        if self.entries.is_empty() {
            return None;
        }
        let mut at = 0;
        for segment in path.segments() {
            match self.child(at, segment) {
                Some(next) => at = next,
                None => return Some((at, false)),
            }
        }
        Some((at, true))
    }

    fn child(&self, entry: usize, segment: &Segment) -> Option<usize> {
        match (&self.entries[entry].children, segment) {
            (Children::Items(items), Segment::Index(index)) => items.get(*index).copied(),
            (Children::Items(items), Segment::Key(key)) => {
                items.get(canonical_index(key)?).copied()
            }
            (Children::Fields(fields), Segment::Key(key)) => fields.get(key).copied(),
            (Children::Fields(fields), Segment::Index(index)) => {
                fields.get(&index.to_string()).copied()
            }
            (Children::None, _) => None,
        }
    }

    fn new_entry(&mut self, value: Location, key: Option<Location>, kind: Kind) -> usize {
        let children = match kind {
            Kind::Scalar => Children::None,
            Kind::Sequence => Children::Items(Vec::new()),
            Kind::Mapping => Children::Fields(HashMap::new()),
        };
        self.entries.push(Entry {
            value,
            key,
            children,
        });
        self.entries.len() - 1
    }

    /// Records the root value; must come first.
    fn add_root(&mut self, at: Location, kind: Kind) -> usize {
        debug_assert!(self.entries.is_empty(), "the root comes first");
        self.new_entry(at, None, kind)
    }

    /// Records the next element of the sequence `parent`.
    fn add_item(&mut self, parent: usize, at: Location, kind: Kind) -> usize {
        let id = self.new_entry(at, None, kind);
        if let Children::Items(items) = &mut self.entries[parent].children {
            items.push(id);
        }
        id
    }

    /// Where `key` already is in the mapping `parent`, if it is there.
    fn existing_key(&self, parent: usize, key: &str) -> Option<Location> {
        match &self.entries[parent].children {
            Children::Fields(fields) => {
                let entry = &self.entries[*fields.get(key)?];
                Some(entry.key.unwrap_or(entry.value))
            }
            _ => None,
        }
    }

    /// Records the value of `key` in the mapping `parent`.
    fn add_field(
        &mut self,
        parent: usize,
        key: String,
        key_at: Location,
        at: Location,
        kind: Kind,
    ) -> usize {
        let id = self.new_entry(at, Some(key_at), kind);
        if let Children::Fields(fields) = &mut self.entries[parent].children {
            fields.insert(key, id);
        }
        id
    }
}

/// Reads a document: checks its size, encoding and nesting, parses it as
/// `format`, and returns its value with the position of every value and key.
///
/// # Errors
/// A [`SourceError`] for the first problem found, in this order: size, UTF-8,
/// emptiness, nesting and syntax (as the parser meets them), then each
/// semantic refusal (duplicate key, non-string key, alias, unsupported tag,
/// second YAML document, number JSON cannot hold) where it occurs.
pub fn parse(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<(Value, SourceMap), SourceError> {
    if bytes.len() > limits.max_bytes {
        return Err(SourceError::whole(format!(
            "the document is {} bytes; the limit is {}",
            group_digits(bytes.len()),
            group_digits(limits.max_bytes)
        )));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let valid = &bytes[..error.valid_up_to()];
            // The prefix is valid UTF-8 by definition.
            let valid = std::str::from_utf8(valid).unwrap_or_default();
            let bad = bytes[error.valid_up_to()];
            return Err(SourceError::at(
                end_of(valid),
                format!("the document is not UTF-8: invalid byte 0x{bad:02X}"),
            ));
        }
    };
    match format {
        Format::Json => json::parse(text, limits),
        Format::Yaml => yaml::parse(text, limits),
    }
}

/// The location just after `text`.
fn end_of(text: &str) -> Location {
    let line_start = text.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: 1 + text.bytes().filter(|&b| b == b'\n').count(),
        column: 1 + text[line_start..].chars().count(),
    }
}

fn nesting_error(at: Location, limits: &Limits) -> SourceError {
    SourceError::at(
        at,
        format!("nesting deeper than {} levels", limits.max_depth),
    )
}

fn empty_error() -> SourceError {
    SourceError::whole("the document is empty")
}

fn duplicate_key_error(key: &str, at: Location, first: Location) -> SourceError {
    SourceError::at(
        at,
        format!("duplicate key `{key}` (first defined at {first})"),
    )
}

/// `1234567` as `1,234,567`.
fn group_digits(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// JSON: positions from a small iterative scanner of our own (which also
/// enforces the nesting limit and refuses duplicate keys), the value from
/// `serde_json`, and syntax errors in `serde_json`'s words.
mod json {
    use super::{
        Kind, Limits, Location, SourceError, SourceMap, Value, duplicate_key_error, empty_error,
        nesting_error,
    };

    pub(super) fn parse(text: &str, limits: &Limits) -> Result<(Value, SourceMap), SourceError> {
        if text.trim_matches([' ', '\t', '\n', '\r']).is_empty() {
            return Err(empty_error());
        }
        let mut scanner = Scanner::new(text);
        let map = match scanner.index(limits) {
            Ok(map) => map,
            Err(Stop::Refused(error)) => return Err(error),
            Err(Stop::Syntax) => {
                // Our scanner found bad syntax at `scanner.location()`;
                // serde_json words it better, and should agree on where.
                let error = match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                    Err(error) => syntax_error(text, &error),
                    Ok(_) => SourceError::at(scanner.location(), "invalid JSON"),
                };
                return Err(error);
            }
        };
        let value = serde_json::from_str::<Value>(text).map_err(|e| syntax_error(text, &e))?;
        Ok((value, map))
    }

    /// A `serde_json` error, its position turned into a character column.
    fn syntax_error(text: &str, error: &serde_json::Error) -> SourceError {
        let full = error.to_string();
        let message = match full.rfind(" at line ") {
            Some(cut) if error.line() > 0 => &full[..cut],
            _ => &full,
        };
        let message = format!("invalid JSON: {message}");
        if error.line() == 0 {
            return SourceError::whole(message);
        }
        // serde_json counts bytes: the offending byte is the `column`-th of
        // its line (0 when the input ended at the start of a line).
        let line_text = text.split('\n').nth(error.line() - 1).unwrap_or("");
        let column = line_text
            .char_indices()
            .take_while(|&(at, _)| at < error.column())
            .count()
            .max(1);
        SourceError::at(Location::new(error.line(), column), message)
    }

    enum Stop {
        /// Bad syntax: left to serde_json to describe.
        Syntax,
        /// A document we refuse though it is valid JSON.
        Refused(SourceError),
    }

    /// What the scanner expects next.
    #[derive(Clone, Copy)]
    enum Expect {
        /// A value (at the root, after `,` in an array, after `:`).
        Value,
        /// A value or `]`, just after `[`.
        FirstItem,
        /// `,` or `]`.
        ItemEnd,
        /// A key or `}`, just after `{`.
        FirstKey,
        /// A key, after `,` in an object.
        Key,
        /// `:` after a key.
        Colon,
        /// `,` or `}`.
        FieldEnd,
    }

    struct Frame {
        entry: usize,
        object: bool,
        len: usize,
        /// In an object, the key read and where it is, until its value.
        key: Option<(String, Location)>,
    }

    struct Scanner<'a> {
        bytes: &'a [u8],
        at: usize,
        line: usize,
        /// A byte index on the current line and its column, so columns are
        /// counted in characters once, not once per lookup.
        counted_to: usize,
        counted_column: usize,
    }

    impl<'a> Scanner<'a> {
        fn new(text: &'a str) -> Self {
            Scanner {
                bytes: text.as_bytes(),
                at: 0,
                line: 1,
                counted_to: 0,
                counted_column: 1,
            }
        }

        fn location(&mut self) -> Location {
            let at = self.at.min(self.bytes.len());
            for &b in &self.bytes[self.counted_to..at] {
                // Count characters: every byte but UTF-8 continuation bytes.
                if b & 0xC0 != 0x80 {
                    self.counted_column += 1;
                }
            }
            self.counted_to = at;
            Location::new(self.line, self.counted_column)
        }

        fn peek(&self) -> Option<u8> {
            self.bytes.get(self.at).copied()
        }

        fn skip_whitespace(&mut self) {
            while let Some(b) = self.peek() {
                match b {
                    b' ' | b'\t' | b'\r' => self.at += 1,
                    b'\n' => {
                        self.at += 1;
                        self.line += 1;
                        self.counted_to = self.at;
                        self.counted_column = 1;
                    }
                    _ => break,
                }
            }
        }

        /// Indexes the whole document; the text is known not to be blank.
        fn index(&mut self, limits: &Limits) -> Result<SourceMap, Stop> {
            let mut map = SourceMap::default();
            let mut stack: Vec<Frame> = Vec::new();
            let mut expect = Expect::Value;
            // Where the last `,` was, to name a trailing comma.
            let mut comma = None;
            loop {
                let after_comma = comma.take();
                self.skip_whitespace();
                let Some(b) = self.peek() else {
                    return Err(Stop::Syntax);
                };
                if let Some(at) = after_comma
                    && matches!(b, b']' | b'}')
                {
                    return Err(Stop::Refused(SourceError::at(
                        at,
                        "invalid JSON: trailing comma (JSON allows no `,` before a closing bracket)",
                    )));
                }
                let mut closed = false;
                match expect {
                    Expect::FirstItem if b == b']' => closed = true,
                    Expect::FirstKey if b == b'}' => closed = true,
                    Expect::Value | Expect::FirstItem => {
                        let at = self.location();
                        let kind = match b {
                            b'[' => Kind::Sequence,
                            b'{' => Kind::Mapping,
                            _ => Kind::Scalar,
                        };
                        if kind != Kind::Scalar && stack.len() >= limits.max_depth {
                            return Err(Stop::Refused(nesting_error(at, limits)));
                        }
                        let entry = match stack.last_mut() {
                            None => map.add_root(at, kind),
                            Some(frame) if frame.object => {
                                let (key, key_at) = frame.key.take().ok_or(Stop::Syntax)?;
                                map.add_field(frame.entry, key, key_at, at, kind)
                            }
                            Some(frame) => {
                                frame.len += 1;
                                map.add_item(frame.entry, at, kind)
                            }
                        };
                        match b {
                            b'[' | b'{' => {
                                self.at += 1;
                                let object = b == b'{';
                                stack.push(Frame {
                                    entry,
                                    object,
                                    len: 0,
                                    key: None,
                                });
                                expect = if object {
                                    Expect::FirstKey
                                } else {
                                    Expect::FirstItem
                                };
                                continue;
                            }
                            b'"' => self.skip_string()?,
                            b'-' | b'0'..=b'9' => self.skip_number(),
                            b't' => self.literal(b"true")?,
                            b'f' => self.literal(b"false")?,
                            b'n' => self.literal(b"null")?,
                            _ => return Err(Stop::Syntax),
                        }
                    }
                    Expect::FirstKey | Expect::Key => {
                        if b != b'"' {
                            return Err(Stop::Syntax);
                        }
                        let key_at = self.location();
                        let key = self.read_string()?;
                        let frame = stack.last_mut().ok_or(Stop::Syntax)?;
                        if let Some(first) = map.existing_key(frame.entry, &key) {
                            return Err(Stop::Refused(duplicate_key_error(&key, key_at, first)));
                        }
                        frame.key = Some((key, key_at));
                        expect = Expect::Colon;
                        continue;
                    }
                    Expect::Colon => {
                        if b != b':' {
                            return Err(Stop::Syntax);
                        }
                        self.at += 1;
                        expect = Expect::Value;
                        continue;
                    }
                    Expect::ItemEnd | Expect::FieldEnd => {
                        let close = if matches!(expect, Expect::ItemEnd) {
                            b']'
                        } else {
                            b'}'
                        };
                        if b == close {
                            closed = true;
                        } else if b == b',' {
                            comma = Some(self.location());
                            self.at += 1;
                            expect = if matches!(expect, Expect::ItemEnd) {
                                Expect::Value
                            } else {
                                Expect::Key
                            };
                            continue;
                        } else {
                            return Err(Stop::Syntax);
                        }
                    }
                }
                if closed {
                    self.at += 1;
                    stack.pop();
                }
                // A value is complete: what may follow depends on where it was.
                expect = match stack.last() {
                    None => {
                        self.skip_whitespace();
                        return if self.peek().is_none() {
                            Ok(map)
                        } else {
                            Err(Stop::Syntax)
                        };
                    }
                    Some(frame) if frame.object => Expect::FieldEnd,
                    Some(_) => Expect::ItemEnd,
                };
            }
        }

        fn literal(&mut self, word: &[u8]) -> Result<(), Stop> {
            if self.bytes[self.at..].starts_with(word) {
                self.at += word.len();
                Ok(())
            } else {
                Err(Stop::Syntax)
            }
        }

        /// Skips a number loosely; serde_json checks its exact form later.
        fn skip_number(&mut self) {
            while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
                self.at += 1;
            }
        }

        /// Skips a string, from its opening quote.
        fn skip_string(&mut self) -> Result<(), Stop> {
            self.at += 1;
            loop {
                match self.peek() {
                    None => return Err(Stop::Syntax),
                    Some(b'"') => {
                        self.at += 1;
                        return Ok(());
                    }
                    Some(b'\\') => self.at += 2,
                    Some(0..0x20) => return Err(Stop::Syntax),
                    Some(_) => self.at += 1,
                }
            }
        }

        /// Reads and decodes a string, from its opening quote.
        fn read_string(&mut self) -> Result<String, Stop> {
            self.at += 1;
            let mut out = String::new();
            loop {
                // Copy the run up to the next quote, escape or control byte.
                let run = self.bytes[self.at..]
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                    .ok_or(Stop::Syntax)?;
                let chunk = &self.bytes[self.at..self.at + run];
                // The text is UTF-8 and the run ends at an ASCII byte.
                out.push_str(std::str::from_utf8(chunk).map_err(|_| Stop::Syntax)?);
                self.at += run;
                match self.peek() {
                    Some(b'"') => {
                        self.at += 1;
                        return Ok(out);
                    }
                    Some(b'\\') => {
                        let escape = self.bytes.get(self.at + 1).copied();
                        self.at += 2;
                        let c = match escape {
                            Some(b'"') => '"',
                            Some(b'\\') => '\\',
                            Some(b'/') => '/',
                            Some(b'b') => '\u{8}',
                            Some(b'f') => '\u{c}',
                            Some(b'n') => '\n',
                            Some(b'r') => '\r',
                            Some(b't') => '\t',
                            Some(b'u') => self.unicode_escape()?,
                            _ => return Err(Stop::Syntax),
                        };
                        out.push(c);
                    }
                    _ => return Err(Stop::Syntax),
                }
            }
        }

        /// The character of a `\uXXXX` escape (and its low surrogate), just
        /// after the `u`.
        fn unicode_escape(&mut self) -> Result<char, Stop> {
            let high = self.hex4()?;
            if !(0xD800..0xDC00).contains(&high) {
                return char::from_u32(high).ok_or(Stop::Syntax);
            }
            if !self.bytes[self.at..].starts_with(b"\\u") {
                return Err(Stop::Syntax);
            }
            self.at += 2;
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(Stop::Syntax);
            }
            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)).ok_or(Stop::Syntax)
        }

        fn hex4(&mut self) -> Result<u32, Stop> {
            let digits = self.bytes.get(self.at..self.at + 4).ok_or(Stop::Syntax)?;
            let digits = std::str::from_utf8(digits).map_err(|_| Stop::Syntax)?;
            if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Stop::Syntax);
            }
            self.at += 4;
            u32::from_str_radix(digits, 16).map_err(|_| Stop::Syntax)
        }
    }
}

/// YAML: a flow-depth pre-scan, then the `saphyr-parser` event stream turned
/// into a JSON value and a source map in one pass.
mod yaml {
    use super::{
        Event, Kind, Limits, Location, Map, Marker, Number, Parser, ScalarStyle, ScanError,
        SourceError, SourceMap, Span, Tag, Value, duplicate_key_error, empty_error, end_of,
        nesting_error,
    };

    pub(super) fn parse(text: &str, limits: &Limits) -> Result<(Value, SourceMap), SourceError> {
        match FlowDepth::new(text).check(limits.max_depth) {
            Ok(()) => {}
            Err(Refusal::TooDeep(at)) => {
                return Err(nesting_error(location_of_byte(text, at), limits));
            }
            Err(Refusal::TooMuchWork(at)) => {
                return Err(SourceError::at(
                    location_of_byte(text, at),
                    "flow collections (`[...]`, `{...}`) nest too deeply for a document \
                     this large; write the outer levels in block style",
                ));
            }
        }
        let mut builder = Builder {
            text,
            lines: count_lines(text),
            limits,
            map: SourceMap::default(),
            stack: Vec::new(),
            root: None,
            root_is_empty: false,
            documents: 0,
        };
        let mut parser = Parser::new_from_str(text);
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|error| scan_error(text, &error))?;
            if builder.event(event, span)? {
                break;
            }
        }
        builder.finish()
    }

    /// A parser mark as a location. At the end of the input the parser may
    /// point one line past it (`lines` is the number of lines): that becomes
    /// the end of the text.
    fn location(text: &str, lines: usize, mark: Marker) -> Location {
        let at = Location::new(mark.line(), mark.col() + 1);
        if at.line > lines { end_of(text) } else { at }
    }

    fn count_lines(text: &str) -> usize {
        1 + text.bytes().filter(|&b| b == b'\n').count()
    }

    fn location_of_byte(text: &str, at: usize) -> Location {
        end_of(&text[..at.min(text.len())])
    }

    fn scan_error(text: &str, error: &ScanError) -> SourceError {
        SourceError::at(
            location(text, count_lines(text), *error.marker()),
            format!("invalid YAML: {}", error.info()),
        )
    }

    /// The deepest flow nesting the pre-scan sees (up to `cap`), and the
    /// deepest the YAML scanner reaches on the tokens the parser takes before
    /// it stops (brackets opened minus brackets closed, whatever their kind,
    /// as the scanner counts them), for the differential test.
    #[cfg(test)]
    pub(super) fn flow_depths(text: &str, cap: usize) -> (usize, usize) {
        let scanned = (0..cap)
            .find(|&max| !matches!(FlowDepth::new(text).check(max), Err(Refusal::TooDeep(_))))
            .unwrap_or(cap);
        let chars: Vec<char> = text.chars().collect();
        let (mut level, mut deepest) = (0usize, 0);
        for next in Parser::new_from_str(text) {
            let Ok((event, span)) = next else { break };
            let spanned = chars
                .get(span.start.index()..span.end.index())
                .unwrap_or_default();
            match event {
                Event::SequenceStart(..) | Event::MappingStart(..) => {
                    // A flow collection's span runs from its properties, if
                    // any, to its bracket.
                    if let Some(('[' | '{', properties)) = spanned.split_last()
                        && properties
                            .iter()
                            .collect::<String>()
                            .split_whitespace()
                            .all(|word| word.starts_with(['!', '&']))
                    {
                        level += 1;
                        deepest = deepest.max(level);
                    }
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    // The span of a bracket token runs on over blanks and a
                    // comment; an implicit mapping's end spans nothing.
                    if matches!(spanned.first(), Some(']' | '}')) {
                        level = level.saturating_sub(1);
                    }
                }
                Event::StreamEnd => break,
                _ => {}
            }
        }
        (scanned, deepest)
    }

    /// The most work the YAML scanner may be given inside flow collections,
    /// counted as tokens times the flow depth they sit at: for each token it
    /// walks one saved key per open flow level. This is about 0.3 s in a
    /// release build, and far beyond any configuration file: a 10 MiB flow
    /// document 5 levels deep is about 15 million.
    const FLOW_WORK_BUDGET: usize = 50_000_000;

    /// Why the pre-scan refuses a document, and at which byte.
    #[derive(Debug)]
    enum Refusal {
        /// A flow collection past the nesting limit.
        TooDeep(usize),
        /// More flow work than [`FLOW_WORK_BUDGET`].
        TooMuchWork(usize),
    }

    /// Where a token may be, as far as the pre-scan needs to know.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        /// Between tokens: a node may start here.
        Token,
        /// Inside a plain (unquoted) scalar.
        Plain,
        /// Just after a quoted scalar, flow collection or alias, which may
        /// turn out to be a key.
        AfterNode,
    }

    /// A linear scan that finds the first flow collection (`[`, `{`) nested
    /// deeper than the limit, skipping quoted scalars, comments and block
    /// scalars the way the YAML scanner does. In block context it follows
    /// the columns of the open block collections, as the scanner does, to
    /// know where block scalars and multi-line plain scalars end.
    struct FlowDepth<'a> {
        bytes: &'a [u8],
        at: usize,
        line_start: usize,
        depth: usize,
        mode: Mode,
        /// Columns of the open block collections, innermost last; -1 is the
        /// document itself.
        indents: Vec<isize>,
        /// Block context: where the current node starts (a key, if `:` follows).
        node_column: isize,
        /// Block context: where the anchor or tag of the coming node starts,
        /// if it has one on this line; the node (as a key) starts there.
        properties_at: Option<isize>,
        /// Block context: the innermost block column when the current plain
        /// scalar started; its continuation lines are indented past it.
        plain_owner: isize,
        /// Block context: a plain scalar ran to the end of the line, and may
        /// go on on lines indented past this column.
        continues_past: Option<isize>,
        /// Block context: inside a block scalar (`|`, `>`), whose content
        /// lines are indented past this column.
        block_scalar_past: Option<isize>,
        /// The scanner's work so far inside flow collections.
        work: usize,
    }

    fn is_blank(b: Option<&u8>) -> bool {
        matches!(b, None | Some(b' ' | b'\t' | b'\n' | b'\r'))
    }

    fn is_flow_indicator(b: Option<&u8>) -> bool {
        matches!(b, Some(b',' | b'[' | b']' | b'{' | b'}'))
    }

    impl<'a> FlowDepth<'a> {
        fn new(text: &'a str) -> Self {
            FlowDepth {
                bytes: text.as_bytes(),
                at: 0,
                line_start: 0,
                depth: 0,
                mode: Mode::Token,
                indents: vec![-1],
                node_column: 0,
                properties_at: None,
                plain_owner: -1,
                continues_past: None,
                block_scalar_past: None,
                work: 0,
            }
        }

        /// Refuses at the first bracket past `max` levels, or where the flow
        /// work runs over its budget.
        fn check(mut self, max: usize) -> Result<(), Refusal> {
            self.start_line();
            while let Some(&c) = self.bytes.get(self.at) {
                match c {
                    b'\n' | b'\r' => self.newline(),
                    b' ' | b'\t' => self.at += 1,
                    _ if self.depth == 0 => self.block(c, max)?,
                    _ => self.flow(c, max)?,
                }
            }
            Ok(())
        }

        fn column(&self) -> isize {
            (self.at - self.line_start) as isize
        }

        fn top(&self) -> isize {
            self.indents.last().copied().unwrap_or(-1)
        }

        fn push_indent(&mut self, column: isize) {
            if column > self.top() {
                self.indents.push(column);
            }
        }

        fn next(&self) -> Option<&u8> {
            self.bytes.get(self.at + 1)
        }

        /// Whether a `#` here starts a comment: after a blank, as YAML says,
        /// and also wherever a token may start, as the YAML scanner treats it
        /// (`[a,#b]`); inside a plain scalar, `a#b` is text.
        fn starts_comment(&self) -> bool {
            self.mode != Mode::Plain
                || self.at == self.line_start
                || matches!(self.bytes[self.at - 1], b' ' | b'\t')
        }

        /// Consumes one line break, without any block-context bookkeeping.
        fn line_break(&mut self) {
            if self.bytes[self.at] == b'\r' && self.next() == Some(&b'\n') {
                self.at += 1;
            }
            self.at += 1;
            self.line_start = self.at;
        }

        fn newline(&mut self) {
            if self.depth == 0 {
                self.continues_past = (self.mode == Mode::Plain).then_some(self.plain_owner);
            }
            self.line_break();
            if self.depth == 0 {
                self.start_line();
            }
        }

        fn skip_to_line_end(&mut self) {
            while let Some(&c) = self.bytes.get(self.at) {
                if c == b'\n' || c == b'\r' {
                    break;
                }
                self.at += 1;
            }
        }

        /// Block context, at the start of a line: skips block scalar content,
        /// decides whether a plain scalar continues, and closes the block
        /// collections this line is not indented into.
        fn start_line(&mut self) {
            self.properties_at = None;
            loop {
                let rest = &self.bytes[self.at..];
                let spaces = rest.iter().take_while(|&&b| b == b' ').count() as isize;
                let blanks = rest
                    .iter()
                    .take_while(|&&b| b == b' ' || b == b'\t')
                    .count();
                let first = rest.get(blanks);
                let blank_line = matches!(first, None | Some(b'\n' | b'\r'));
                // `---` and `...` end whatever is open, even a top-level
                // block scalar.
                let marker =
                    (rest.starts_with(b"---") || rest.starts_with(b"...")) && is_blank(rest.get(3));
                if let Some(past) = self.block_scalar_past {
                    if !marker && (blank_line || spaces > past) {
                        self.skip_to_line_end();
                        if self.at < self.bytes.len() {
                            self.line_break();
                            continue;
                        }
                        return;
                    }
                    self.block_scalar_past = None;
                }
                if blank_line {
                    // Blank lines neither end nor continue anything.
                    return;
                }
                let first_column = blanks as isize;
                if marker {
                    self.indents.truncate(1);
                    self.continues_past = None;
                    self.mode = Mode::Token;
                    self.at += 3;
                    return;
                }
                self.at += blanks;
                if let Some(past) = self.continues_past.take()
                    && first_column > past
                    && first != Some(&b'#')
                {
                    self.mode = Mode::Plain;
                    return;
                }
                while self.top() > first_column {
                    self.indents.pop();
                }
                self.mode = Mode::Token;
                return;
            }
        }

        /// Skips a quoted scalar, from its opening quote.
        fn skip_quoted(&mut self) {
            let quote = self.bytes[self.at];
            self.at += 1;
            while let Some(&c) = self.bytes.get(self.at) {
                match c {
                    b'\'' if quote == b'\'' && self.next() == Some(&b'\'') => self.at += 2,
                    _ if c == quote => {
                        self.at += 1;
                        return;
                    }
                    b'\\' if quote == b'"' => {
                        if matches!(self.next(), Some(b'\n' | b'\r')) {
                            self.at += 1;
                        } else {
                            self.at += 2;
                        }
                    }
                    b'\n' | b'\r' => self.line_break(),
                    _ => self.at += 1,
                }
            }
        }

        /// Skips an anchor, tag or alias name.
        fn skip_name(&mut self) {
            self.at += 1;
            while let Some(c) = self.bytes.get(self.at) {
                if is_blank(Some(c)) || (self.depth > 0 && is_flow_indicator(Some(c))) {
                    break;
                }
                self.at += 1;
            }
        }

        fn open(&mut self, max: usize) -> Result<(), Refusal> {
            self.depth += 1;
            if self.depth > max {
                return Err(Refusal::TooDeep(self.at));
            }
            self.at += 1;
            self.mode = Mode::Token;
            Ok(())
        }

        /// One byte (not blank, not a line break) in block context.
        fn block(&mut self, c: u8, max: usize) -> Result<(), Refusal> {
            let column = self.column();
            let blank_next = is_blank(self.next());
            if c == b'#' && self.starts_comment() {
                // A comment ends a plain scalar for good.
                self.skip_to_line_end();
                self.mode = Mode::Token;
                return Ok(());
            }
            match self.mode {
                Mode::Plain | Mode::AfterNode if c == b':' && blank_next => {
                    // What came before was a key: it opens or joins a mapping.
                    self.push_indent(self.node_column);
                    self.mode = Mode::Token;
                    self.at += 1;
                }
                Mode::Plain => self.at += 1,
                // Anything else after a node is a new token to the scanner
                // (and an error to the parser, but the scanner may read far
                // ahead before the parser sees it).
                Mode::Token | Mode::AfterNode => match c {
                    // Entry, explicit key, value without a key: each opens
                    // a block collection at its column if none is open there.
                    b'-' | b'?' | b':' if blank_next => {
                        // `&a : x`: the key is an empty node that starts at
                        // its anchor.
                        let start = match c {
                            b':' => self.properties_at.unwrap_or(column),
                            _ => column,
                        };
                        self.push_indent(start);
                        self.properties_at = None;
                        self.at += 1;
                    }
                    b'\'' | b'"' => {
                        self.node_column = self.properties_at.take().unwrap_or(column);
                        self.skip_quoted();
                        self.mode = Mode::AfterNode;
                    }
                    b'[' | b'{' => {
                        self.node_column = self.properties_at.take().unwrap_or(column);
                        self.open(max)?;
                    }
                    b']' | b'}' | b',' => self.at += 1,
                    b'|' | b'>' => {
                        self.properties_at = None;
                        self.block_scalar_past = Some(self.top());
                        self.skip_to_line_end();
                    }
                    b'&' | b'!' => {
                        self.properties_at.get_or_insert(column);
                        self.skip_name();
                    }
                    b'*' => {
                        self.node_column = self.properties_at.take().unwrap_or(column);
                        self.skip_name();
                        self.mode = Mode::AfterNode;
                    }
                    b'%' if column == 0 => self.skip_to_line_end(),
                    _ => {
                        self.node_column = self.properties_at.take().unwrap_or(column);
                        self.plain_owner = self.top();
                        self.mode = Mode::Plain;
                        self.at += 1;
                    }
                },
            }
            Ok(())
        }

        /// One byte (not blank, not a line break) inside a flow collection.
        fn flow(&mut self, c: u8, max: usize) -> Result<(), Refusal> {
            if self.mode != Mode::Plain || matches!(c, b'[' | b']' | b'{' | b'}' | b',' | b':') {
                // Roughly one token starts here.
                self.work += self.depth;
                if self.work > FLOW_WORK_BUDGET {
                    return Err(Refusal::TooMuchWork(self.at));
                }
            }
            let next = self.next();
            let ends_value = is_blank(next) || is_flow_indicator(next);
            if c == b'#' && self.starts_comment() {
                self.skip_to_line_end();
                if self.mode == Mode::Plain {
                    self.mode = Mode::AfterNode;
                }
                return Ok(());
            }
            match c {
                b'[' | b'{' => self.open(max)?,
                b']' | b'}' => {
                    self.depth -= 1;
                    self.at += 1;
                    self.mode = Mode::AfterNode;
                }
                b',' => {
                    self.at += 1;
                    self.mode = Mode::Token;
                }
                b':' if self.mode == Mode::Plain => {
                    if ends_value {
                        self.mode = Mode::Token;
                    }
                    self.at += 1;
                }
                _ if self.mode == Mode::Plain => self.at += 1,
                b':' => {
                    self.mode = if ends_value || self.mode == Mode::AfterNode {
                        Mode::Token
                    } else {
                        Mode::Plain
                    };
                    self.at += 1;
                }
                b'\'' | b'"' => {
                    self.skip_quoted();
                    self.mode = Mode::AfterNode;
                }
                b'?' | b'-' if is_blank(next) => {
                    self.at += 1;
                    self.mode = Mode::Token;
                }
                b'&' | b'!' => {
                    self.skip_name();
                    self.mode = Mode::Token;
                }
                b'*' => {
                    self.skip_name();
                    self.mode = Mode::AfterNode;
                }
                _ => {
                    self.mode = Mode::Plain;
                    self.at += 1;
                }
            }
            Ok(())
        }
    }

    enum Container {
        Sequence(Vec<Value>),
        Mapping(Map<String, Value>),
    }

    struct Frame {
        entry: usize,
        container: Container,
        /// In a mapping, the key read and where it is, until its value ends.
        key: Option<(String, Location)>,
    }

    /// Builds the value and the source map from parser events.
    struct Builder<'a> {
        text: &'a str,
        /// The number of lines of `text`.
        lines: usize,
        limits: &'a Limits,
        map: SourceMap,
        stack: Vec<Frame>,
        root: Option<Value>,
        /// The root is an untagged empty plain scalar: nothing was written.
        root_is_empty: bool,
        documents: usize,
    }

    impl Builder<'_> {
        /// Takes one event; `Ok(true)` at the end of the stream.
        fn event(&mut self, event: Event<'_>, span: Span) -> Result<bool, SourceError> {
            let at = location(self.text, self.lines, span.start);
            match event {
                Event::StreamEnd => return Ok(true),
                Event::StreamStart | Event::Nothing | Event::DocumentEnd => {}
                Event::DocumentStart(_) => {
                    if self.documents > 0 {
                        return Err(SourceError::at(
                            at,
                            "a second YAML document starts here; a flow file holds one document",
                        ));
                    }
                    self.documents += 1;
                }
                Event::Alias(_) => {
                    let name: String = self
                        .text
                        .chars()
                        .skip(span.start.index())
                        .take(span.len())
                        .collect();
                    return Err(SourceError::at(
                        at,
                        format!(
                            "YAML aliases are not supported (`{name}`); write the value out in full"
                        ),
                    ));
                }
                Event::Scalar(text, style, _anchor, tag) => {
                    let tag = tag.as_deref();
                    let value = resolve(&text, style, tag).map_err(|m| SourceError::at(at, m))?;
                    if self.expects_key() {
                        self.key(value, &text, at)?;
                    } else {
                        let empty = text.is_empty() && style == ScalarStyle::Plain && tag.is_none();
                        self.slot(at, Kind::Scalar);
                        self.attach(value, empty);
                    }
                }
                Event::SequenceStart(_anchor, tag) => {
                    self.open(at, Kind::Sequence, tag.as_deref())?;
                }
                Event::MappingStart(_anchor, tag) => {
                    self.open(at, Kind::Mapping, tag.as_deref())?;
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let Some(frame) = self.stack.pop() else {
                        return Err(SourceError::at(at, "invalid YAML: unbalanced collection"));
                    };
                    let value = match frame.container {
                        Container::Sequence(items) => Value::Array(items),
                        Container::Mapping(fields) => Value::Object(fields),
                    };
                    self.attach(value, false);
                }
            }
            Ok(false)
        }

        fn finish(self) -> Result<(Value, SourceMap), SourceError> {
            match self.root {
                Some(root) if self.stack.is_empty() && !self.root_is_empty => Ok((root, self.map)),
                _ => Err(empty_error()),
            }
        }

        fn expects_key(&self) -> bool {
            matches!(
                self.stack.last(),
                Some(Frame {
                    container: Container::Mapping(_),
                    key: None,
                    ..
                })
            )
        }

        fn open(&mut self, at: Location, kind: Kind, tag: Option<&Tag>) -> Result<(), SourceError> {
            let (what, core) = match kind {
                Kind::Mapping => ("a mapping", "map"),
                _ => ("a sequence", "seq"),
            };
            if self.expects_key() {
                return Err(SourceError::at(
                    at,
                    format!("mapping keys must be strings, and this key is {what}"),
                ));
            }
            if let Some(tag) = tag
                && !(tag.is_yaml_core_schema() && tag.suffix == core)
            {
                return Err(SourceError::at(
                    at,
                    format!("unsupported YAML tag `{}` on {what}", tag_name(tag)),
                ));
            }
            if self.stack.len() >= self.limits.max_depth {
                return Err(nesting_error(at, self.limits));
            }
            let entry = self.slot(at, kind);
            let container = match kind {
                Kind::Mapping => Container::Mapping(Map::new()),
                _ => Container::Sequence(Vec::new()),
            };
            self.stack.push(Frame {
                entry,
                container,
                key: None,
            });
            Ok(())
        }

        /// Records a key of the innermost mapping.
        fn key(&mut self, key: Value, text: &str, at: Location) -> Result<(), SourceError> {
            let key = match key {
                Value::String(key) => key,
                Value::Null if text.is_empty() => {
                    return Err(SourceError::at(
                        at,
                        "a mapping key is empty; mapping keys must be strings",
                    ));
                }
                other => {
                    let what = match other {
                        Value::Bool(_) => "a boolean",
                        Value::Number(_) => "a number",
                        _ => "null",
                    };
                    return Err(SourceError::at(
                        at,
                        format!(
                            "mapping keys must be strings, and `{text}` is {what}; \
                             quote it to use it as a key"
                        ),
                    ));
                }
            };
            let Some(frame) = self.stack.last_mut() else {
                return Ok(());
            };
            if let Some(first) = self.map.existing_key(frame.entry, &key) {
                return Err(duplicate_key_error(&key, at, first));
            }
            frame.key = Some((key, at));
            Ok(())
        }

        /// Records where the next value starts, in the source map.
        fn slot(&mut self, at: Location, kind: Kind) -> usize {
            match self.stack.last() {
                None => self.map.add_root(at, kind),
                Some(Frame {
                    entry,
                    container: Container::Sequence(_),
                    ..
                }) => self.map.add_item(*entry, at, kind),
                Some(Frame {
                    entry,
                    key: Some((key, key_at)),
                    ..
                }) => self.map.add_field(*entry, key.clone(), *key_at, at, kind),
                // A mapping without a pending key: `expects_key` routes
                // scalars and collections away from here.
                Some(Frame { entry, .. }) => *entry,
            }
        }

        /// Puts a finished value in its place.
        fn attach(&mut self, value: Value, empty: bool) {
            match self.stack.last_mut() {
                None => {
                    self.root = Some(value);
                    self.root_is_empty = empty;
                }
                Some(frame) => match &mut frame.container {
                    Container::Sequence(items) => items.push(value),
                    Container::Mapping(fields) => {
                        if let Some((key, _)) = frame.key.take() {
                            fields.insert(key, value);
                        }
                    }
                },
            }
        }
    }

    fn tag_name(tag: &Tag) -> String {
        if tag.is_yaml_core_schema() {
            format!("!!{}", tag.suffix)
        } else {
            format!("{}{}", tag.handle, tag.suffix)
        }
    }

    /// A scalar's JSON value: the YAML 1.2 core schema for plain scalars, a
    /// string for quoted and block scalars, or what a core tag asks for.
    fn resolve(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
        let Some(tag) = tag else {
            return if style == ScalarStyle::Plain {
                plain(text)
            } else {
                Ok(Value::String(text.to_owned()))
            };
        };
        // `! value`: the non-specific tag, a plain string.
        if format!("{}{}", tag.handle, tag.suffix) == "!" {
            return Ok(Value::String(text.to_owned()));
        }
        let suffix = if tag.is_yaml_core_schema() {
            tag.suffix.as_str()
        } else {
            ""
        };
        let not = |what: &str| format!("`{text}` is not {what} (tagged `{}`)", tag_name(tag));
        match suffix {
            "str" => Ok(Value::String(text.to_owned())),
            "null" if is_null(text) => Ok(Value::Null),
            "null" => Err(not("null")),
            "bool" => boolean(text)
                .map(Value::Bool)
                .ok_or_else(|| not("a boolean")),
            "int" => integer(text).ok_or_else(|| not("an integer"))?,
            "float" => match float(text).or_else(|| integer(text)) {
                Some(Ok(Value::Number(n))) => finite(text, n.as_f64().unwrap_or(f64::NAN)),
                Some(other) => other,
                None => Err(not("a float")),
            },
            _ => Err(format!("unsupported YAML tag `{}`", tag_name(tag))),
        }
    }

    fn plain(text: &str) -> Result<Value, String> {
        if is_null(text) {
            return Ok(Value::Null);
        }
        if let Some(b) = boolean(text) {
            return Ok(Value::Bool(b));
        }
        integer(text)
            .or_else(|| float(text))
            .unwrap_or_else(|| Ok(Value::String(text.to_owned())))
    }

    fn is_null(text: &str) -> bool {
        matches!(text, "" | "~" | "null" | "Null" | "NULL")
    }

    fn boolean(text: &str) -> Option<bool> {
        match text {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    fn digits(text: &str, radix: u32) -> bool {
        !text.is_empty() && text.chars().all(|c| c.is_digit(radix))
    }

    /// `None` when `text` is not written as a core-schema integer.
    fn integer(text: &str) -> Option<Result<Value, String>> {
        for (prefix, radix) in [("0o", 8), ("0x", 16)] {
            if let Some(rest) = text.strip_prefix(prefix)
                && digits(rest, radix)
            {
                return Some(
                    u64::from_str_radix(rest, radix)
                        .map(|n| Value::Number(n.into()))
                        .map_err(|_| format!("`{text}` does not fit in 64 bits")),
                );
            }
        }
        let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
        if !digits(unsigned, 10) {
            return None;
        }
        let text = text.strip_prefix('+').unwrap_or(text);
        if let Ok(n) = text.parse::<i64>() {
            return Some(Ok(Value::Number(n.into())));
        }
        if let Ok(n) = text.parse::<u64>() {
            return Some(Ok(Value::Number(n.into())));
        }
        // Beyond 64 bits: a float, as serde_json reads such JSON numbers.
        Some(finite(text, text.parse::<f64>().unwrap_or(f64::INFINITY)))
    }

    /// `None` when `text` is not written as a core-schema float.
    fn float(text: &str) -> Option<Result<Value, String>> {
        let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
        if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN")
        {
            return Some(Err(format!(
                "`{text}` has no JSON equivalent: JSON numbers are finite"
            )));
        }
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(e) => (&unsigned[..e], Some(&unsigned[e + 1..])),
            None => (unsigned, None),
        };
        let mantissa_ok = match mantissa.split_once('.') {
            Some((whole, fraction)) => {
                (whole.is_empty() && digits(fraction, 10))
                    || (digits(whole, 10) && (fraction.is_empty() || digits(fraction, 10)))
            }
            None => digits(mantissa, 10),
        };
        let exponent_ok =
            exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e), 10));
        if !(mantissa_ok && exponent_ok) {
            return None;
        }
        let text = text.strip_prefix('+').unwrap_or(text);
        Some(finite(text, text.parse::<f64>().unwrap_or(f64::INFINITY)))
    }

    fn finite(text: &str, n: f64) -> Result<Value, String> {
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| format!("`{text}` is out of range for a JSON number"))
    }
}

#[cfg(test)]
mod tests {

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// A realistic flow, with brackets and quotes in places (a block scalar,
    /// comments, plain and quoted scalars) where they are not structure.
    const FLOW_YAML: &str = r#"# A flow that fetches a page and summarizes it [v1]
version: 1
name: fetch-and-summarize
inputs:
  topic:
    type: string
    default: "rust"
nodes:
  - id: fetch
    type: http.get
    config:
      url: https://example.com/search?q=[topic]
      headers:
        Content-Type: application/json
        X-Note: it's {fine}   # not a flow mapping
      timeout: 30
  - id: summarize
    type: llm.complete
    config:
      url: "https://api.example.com/v1/complete"
      prompt: |
        Summarize the following, in [[three]] lines:
        {{ fetch.body }}
      temperature: 0.2
      stream: false
      stop: ~
      tags: [news, "daily digest", 3]
edges:
  - from: fetch.out
    to: summarize.in
outputs:
  summary: summarize.out
"#;

    const FLOW_JSON: &str = r#"{
  "version": 1,
  "name": "fetch-and-summarize",
  "inputs": {"topic": {"type": "string", "default": "rust"}},
  "nodes": [
    {
      "id": "fetch",
      "type": "http.get",
      "config": {
        "url": "https://example.com/search?q=[topic]",
        "headers": {"Content-Type": "application/json", "X-Note": "it's {fine}"},
        "timeout": 30
      }
    },
    {
      "id": "summarize",
      "type": "llm.complete",
      "config": {
        "url": "https://api.example.com/v1/complete",
        "prompt": "Summarize the following, in [[three]] lines:\n{{ fetch.body }}\n",
        "temperature": 0.2,
        "stream": false,
        "stop": null,
        "tags": ["news", "daily digest", 3]
      }
    }
  ],
  "edges": [{"from": "fetch.out", "to": "summarize.in"}],
  "outputs": {"summary": "summarize.out"}
}"#;

    fn yaml(text: &str) -> Result<(Value, SourceMap), SourceError> {
        parse(text.as_bytes(), Format::Yaml, &Limits::default())
    }

    fn json(text: &str) -> Result<(Value, SourceMap), SourceError> {
        parse(text.as_bytes(), Format::Json, &Limits::default())
    }

    /// The error of a document that must be refused.
    #[track_caller]
    fn refused(result: Result<(Value, SourceMap), SourceError>) -> SourceError {
        match result {
            Ok((value, _)) => panic!("expected an error, got {value}"),
            Err(error) => error,
        }
    }

    /// Where the first occurrence of `needle` in `text` starts.
    #[track_caller]
    fn find(text: &str, needle: &str) -> Location {
        let at = text.find(needle).expect("needle in text");
        end_of(&text[..at])
    }

    fn path(pointer: &str) -> DocPath {
        DocPath::from_json_pointer(pointer).expect("valid pointer")
    }

    #[test]
    fn yaml_and_json_flows_give_the_same_value() {
        let (from_yaml, _) = yaml(FLOW_YAML).unwrap();
        let (from_json, _) = json(FLOW_JSON).unwrap();
        assert_eq!(from_yaml, from_json);
        assert_eq!(from_yaml["nodes"][1]["config"]["tags"][2], json!(3));
        assert_eq!(from_yaml["nodes"][1]["config"]["stop"], Value::Null);
        assert_eq!(from_yaml["nodes"][1]["config"]["temperature"], json!(0.2));
    }

    #[test]
    fn locates_values_keys_elements_and_ancestors_in_yaml() {
        let (_, map) = yaml(FLOW_YAML).unwrap();
        let url = path("/nodes/1/config/url");
        assert_eq!(map.locate(&url), Some(Location::new(20, 12)));
        assert_eq!(map.locate_key(&url), Some(Location::new(20, 7)));
        assert_eq!(map.locate_exact(&url), Some(Location::new(20, 12)));
        // An element of a flow sequence, and one of a block sequence.
        let tag = path("/nodes/1/config/tags/1");
        assert_eq!(map.locate(&tag), Some(find(FLOW_YAML, "\"daily digest\"")));
        assert_eq!(map.locate_key(&tag), map.locate(&tag));
        assert_eq!(
            map.locate(&path("/nodes/1")),
            Some(find(FLOW_YAML, "id: summarize"))
        );
        // A key that needs quoting, and the block scalar (its first line).
        let content_type = path("/nodes/0/config/headers/Content-Type");
        assert_eq!(
            map.locate_key(&content_type),
            Some(find(FLOW_YAML, "Content-Type"))
        );
        let prompt = path("/nodes/1/config/prompt");
        assert_eq!(map.locate(&prompt), Some(find(FLOW_YAML, "Summarize")));
        // Missing paths fall back to the nearest ancestor that exists.
        let missing = path("/nodes/1/config/retries");
        assert_eq!(map.locate(&missing), Some(find(FLOW_YAML, "url: \"https")));
        assert_eq!(map.locate_key(&missing), map.locate(&missing));
        assert_eq!(map.locate_exact(&missing), None);
        assert_eq!(
            map.locate(&path("/nodes/7/id")),
            Some(find(FLOW_YAML, "- id: fetch"))
        );
        assert_eq!(
            map.locate(&path("/version/deeper")),
            Some(Location::new(2, 10))
        );
        assert_eq!(map.locate(&DocPath::root()), Some(Location::new(2, 1)));
    }

    #[test]
    fn locates_values_keys_elements_and_ancestors_in_json() {
        let (_, map) = json(FLOW_JSON).unwrap();
        let url = path("/nodes/1/config/url");
        assert_eq!(map.locate(&url), Some(Location::new(19, 16)));
        assert_eq!(map.locate_key(&url), Some(Location::new(19, 9)));
        let tag = path("/nodes/1/config/tags/1");
        assert_eq!(map.locate(&tag), Some(find(FLOW_JSON, "\"daily digest\"")));
        let missing = path("/nodes/1/config/retries");
        assert_eq!(map.locate(&missing), Some(Location::new(18, 17)));
        assert_eq!(map.locate_exact(&missing), None);
        assert_eq!(map.locate(&DocPath::root()), Some(Location::new(1, 1)));
        // Columns count characters, not bytes.
        let (_, map) = json("{\"é\": \"ü\", \"k\": [1, \"✓\", 3]}").unwrap();
        assert_eq!(map.locate(&path("/k/2")), Some(Location::new(1, 26)));
        assert_eq!(map.locate_key(&path("/k")), Some(Location::new(1, 12)));
    }

    #[test]
    fn an_empty_source_map_knows_no_places() {
        assert_eq!(SourceMap::default().locate(&DocPath::root()), None);
        assert_eq!(SourceMap::default().locate_key(&path("/a")), None);
    }

    #[test]
    fn doc_paths_display_like_code() {
        let url = DocPath::root()
            .with_key("nodes")
            .with_index(2)
            .with_key("config")
            .with_key("url");
        assert_eq!(url.to_string(), "nodes[2].config.url");
        let header = DocPath::root().with_key("headers").with_key("Content-Type");
        assert_eq!(header.to_string(), "headers[\"Content-Type\"]");
        let odd = DocPath::root()
            .with_index(0)
            .with_key("say \"hi\"")
            .with_key("");
        assert_eq!(odd.to_string(), "[0][\"say \\\"hi\\\"\"][\"\"]");
        assert_eq!(DocPath::root().to_string(), "(root)");
        assert_eq!(DocPath::root().with_key("_x1").to_string(), "_x1");
        assert_eq!(DocPath::root().with_key("1x").to_string(), "[\"1x\"]");

        let mut walking = DocPath::root();
        walking.push_key("nodes");
        walking.push_index(2);
        assert_eq!(walking.parent(), Some(DocPath::root().with_key("nodes")));
        assert_eq!(walking.pop(), Some(Segment::Index(2)));
        assert_eq!(walking.last(), Some(&Segment::Key("nodes".into())));
        assert!(DocPath::root().is_root() && DocPath::root().parent().is_none());
    }

    #[test]
    fn json_pointers_round_trip() {
        let url = path("/nodes/2/config/url");
        assert_eq!(url.to_string(), "nodes[2].config.url");
        assert_eq!(url.to_json_pointer(), "/nodes/2/config/url");
        let escaped = DocPath::root()
            .with_key("a/b")
            .with_key("m~n")
            .with_key("007");
        assert_eq!(escaped.to_json_pointer(), "/a~1b/m~0n/007");
        assert_eq!(path(&escaped.to_json_pointer()), escaped);
        assert_eq!(path(""), DocPath::root());
        assert_eq!(path("/"), DocPath::root().with_key(""));
        let error = DocPath::from_json_pointer("nodes/0").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid JSON pointer `nodes/0`: it must be empty or start with `/`"
        );
        assert!(DocPath::from_json_pointer("/a~2").is_err());
        // A numeric step reaches a mapping key too, and a key step an index.
        let (_, map) =
            yaml("codes:\n  200: ok\n").unwrap_or_else(|_| yaml("codes:\n  '200': ok\n").unwrap());
        assert_eq!(
            map.locate_exact(&path("/codes/200")),
            Some(Location::new(2, 10))
        );
        let (_, map) = yaml("- a\n- b\n").unwrap();
        let key_step = DocPath::root().with_key("1");
        assert_eq!(map.locate_exact(&key_step), Some(Location::new(2, 3)));
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(Format::from_path(Path::new("flow.json")), Format::Json);
        assert_eq!(Format::from_path(Path::new("FLOW.JSON")), Format::Json);
        assert_eq!(Format::from_path(Path::new("flow.yaml")), Format::Yaml);
        assert_eq!(Format::from_path(Path::new("flow.yml")), Format::Yaml);
        assert_eq!(Format::from_path(Path::new("flow")), Format::Yaml);
    }

    #[test]
    fn yaml_scalars_follow_the_core_schema() {
        let text = "a: true\nb: ~\nc: 0x1F\nd: 0o17\ne: .5\nf: '123'\ng: \"true\"\nh: yes\n\
                    i: 1_000\nj: !!str 12\nk: !!float 1\nl: -12\nm: +7\nn: 1e3\no: Null\n\
                    p: 12345678901234567890\nq: -1.5E-2\nr: ! 12\ns: !!int \"42\"\nt: FALSE\n";
        let (value, _) = yaml(text).unwrap();
        assert_eq!(
            value,
            json!({
                "a": true, "b": null, "c": 31, "d": 15, "e": 0.5, "f": "123", "g": "true",
                "h": "yes", "i": "1_000", "j": "12", "k": 1.0, "l": -12, "m": 7, "n": 1000.0,
                "o": null, "p": 12345678901234567890u64, "q": -0.015, "r": "12", "s": 42,
                "t": false
            })
        );
    }

    #[test]
    fn big_integers_become_floats_in_both_formats() {
        let big = "123456789012345678901234567890";
        let (from_yaml, _) = yaml(&format!("n: {big}\nm: -{big}\n")).unwrap();
        let (from_json, _) = json(&format!("{{\"n\": {big}, \"m\": -{big}}}")).unwrap();
        assert_eq!(from_yaml, from_json);
        assert_eq!(from_yaml["n"].as_f64(), Some(1.2345678901234568e29));

        let error = refused(yaml("n: 0xFFFFFFFFFFFFFFFFFF\n"));
        assert_eq!(
            error.to_string(),
            "1:4: `0xFFFFFFFFFFFFFFFFFF` does not fit in 64 bits"
        );
        let error = refused(yaml(&format!("n: 1{}\n", "0".repeat(400))));
        assert!(
            error.message.ends_with("is out of range for a JSON number"),
            "{error}"
        );
        let error = refused(yaml("n: 1e400\n"));
        assert_eq!(
            error.to_string(),
            "1:4: `1e400` is out of range for a JSON number"
        );
        let error = refused(json("[1, 1e400]"));
        assert_eq!(error.to_string(), "1:9: invalid JSON: number out of range");
        let error = refused(yaml("n: -.inf\n"));
        assert_eq!(
            error.to_string(),
            "1:4: `-.inf` has no JSON equivalent: JSON numbers are finite"
        );
        let error = refused(yaml("n: !!int twelve\n"));
        assert_eq!(
            error.to_string(),
            "1:4: `twelve` is not an integer (tagged `!!int`)"
        );
    }

    #[test]
    fn malformed_yaml_is_reported_where_it_breaks() {
        let error = refused(yaml("a:\n  b: 1\n c: 2\n"));
        assert_eq!(
            error.to_string(),
            "3:2: invalid YAML: while parsing a block mapping, did not find expected key"
        );
        let error = refused(yaml("a: \"unclosed\nb: 2\n"));
        assert_eq!(error.location, Some(Location::new(1, 4)));
        assert!(error.message.starts_with("invalid YAML: "), "{error}");
        let error = refused(yaml("a: 'unclosed\n"));
        assert_eq!(error.location, Some(Location::new(1, 4)));
        // An unclosed flow sequence: the parser's position is kept within
        // the text even at the end of the input.
        let error = refused(yaml("[1, 2"));
        assert_eq!(error.location, Some(Location::new(1, 6)));
        assert_eq!(
            error.message,
            "invalid YAML: while parsing a flow sequence, expected ',' or ']'"
        );
    }

    #[test]
    fn tabs_in_yaml_indentation_are_refused() {
        let error = refused(yaml("a:\n\tb: 1\n"));
        assert_eq!(
            error.to_string(),
            "2:2: invalid YAML: tabs disallowed within this context (block indentation)"
        );
        // A tab that only separates is fine.
        assert_eq!(yaml("a: b\t# c\n").unwrap().0, json!({"a": "b"}));
    }

    #[test]
    fn malformed_json_is_reported_where_it_breaks() {
        let error = refused(json("{\"a\": [1, 2,]}"));
        assert_eq!(
            error.to_string(),
            "1:12: invalid JSON: trailing comma (JSON allows no `,` before a closing bracket)"
        );
        let error = refused(json("{\"a\": 1,\n \"b\": 2,\n}"));
        assert_eq!(error.location, Some(Location::new(2, 8)));
        let error = refused(json("{\"a\": 1,\n \"b\": 2"));
        assert_eq!(
            error.to_string(),
            "2:7: invalid JSON: EOF while parsing an object"
        );
        let error = refused(json("{\"é\": 1 2}"));
        assert_eq!(error.to_string(), "1:9: invalid JSON: expected `,` or `}`");
        let error = refused(json("[1] [2]"));
        assert_eq!(error.to_string(), "1:5: invalid JSON: trailing characters");
        let error = refused(json("{\"a\": tru}"));
        assert_eq!(error.location.map(|at| at.line), Some(1));
        assert!(error.message.starts_with("invalid JSON: "), "{error}");
    }

    #[test]
    fn oversized_documents_are_refused_before_parsing() {
        // 50 MiB of a valid-looking document: refused by its size alone.
        let mut big = b"{\"a\": \"".to_vec();
        big.resize(50 * 1024 * 1024 - 2, b'x');
        big.extend_from_slice(b"\"}");
        for format in [Format::Json, Format::Yaml] {
            let error = refused(parse(&big, format, &Limits::default()));
            assert_eq!(
                error.to_string(),
                "the document is 52,428,800 bytes; the limit is 10,485,760"
            );
            assert_eq!(error.location, None);
        }
        let limits = Limits {
            max_bytes: 4,
            ..Limits::default()
        };
        assert!(parse(b"[1]", Format::Json, &limits).is_ok());
        assert!(parse(b"[1, 2]", Format::Json, &limits).is_err());
    }

    #[test]
    fn deep_json_is_refused_at_the_first_level_too_many() {
        for opener in ["[", "{\"a\":"] {
            let deep = opener.repeat(10_000);
            let error = refused(json(&deep));
            let column = 1 + 64 * opener.chars().count();
            assert_eq!(
                error.to_string(),
                format!("1:{column}: nesting deeper than 64 levels")
            );
        }
        // Exactly at the limit is fine, and closes properly.
        let at_limit = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(json(&at_limit).is_ok());
    }

    #[test]
    fn deep_yaml_flow_collections_are_refused_before_parsing() {
        for opener in ["[", "{a: ", "[{a: "] {
            let deep = format!("key: {}", opener.repeat(10_000));
            let error = refused(yaml(&deep));
            assert_eq!(error.message, "nesting deeper than 64 levels");
            assert_eq!(error.location.map(|at| at.line), Some(1));
        }
        // Even a whole 10 MiB of brackets is one quick scan.
        let error = refused(yaml(&"[".repeat(Limits::DEFAULT_MAX_BYTES)));
        assert_eq!(error.to_string(), "1:65: nesting deeper than 64 levels");
        // Block and flow nesting add up; the parser events enforce the sum.
        let mixed = format!("a:\n  b:\n    - {}", "[".repeat(63));
        let error = refused(yaml(&mixed));
        assert_eq!(error.to_string(), "3:68: nesting deeper than 64 levels");
        let at_limit = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(yaml(&at_limit).is_ok());
    }

    #[test]
    fn wide_deep_yaml_flow_collections_are_refused_before_parsing() {
        // Within the nesting limit, but millions of tokens deep inside flow
        // collections would cost the YAML scanner seconds.
        let wide = format!(
            "{}{}{}",
            "[".repeat(60),
            "1,".repeat(4_000_000),
            "]".repeat(60)
        );
        let error = refused(yaml(&wide));
        assert_eq!(error.location.map(|at| at.line), Some(1));
        assert_eq!(
            error.message,
            "flow collections (`[...]`, `{...}`) nest too deeply for a document this large; \
             write the outer levels in block style"
        );
        // The same data, shallow, is fine.
        let shallow = format!("[{}1]", "1,".repeat(400_000));
        assert_eq!(
            yaml(&shallow).unwrap().0.as_array().map(Vec::len),
            Some(400_001)
        );
    }

    #[test]
    fn deep_yaml_block_collections_are_refused_as_they_stream() {
        // Compact nested sequences: 10,000 levels on one line.
        let error = refused(yaml(&"- ".repeat(10_000)));
        assert_eq!(error.to_string(), "1:129: nesting deeper than 64 levels");

        // Indented mappings: 10,000 levels take 50 MB at one space per level,
        // so raise the size limit to see the depth limit at work.
        let mut deep = String::new();
        for level in 0..10_000 {
            deep.push_str(&" ".repeat(level));
            deep.push_str("a:\n");
        }
        let limits = Limits {
            max_bytes: deep.len(),
            ..Limits::default()
        };
        let error = refused(parse(deep.as_bytes(), Format::Yaml, &limits));
        // Generous: the flow pre-scan reads all 50 MB, in a debug build.
        assert_eq!(error.to_string(), "65:65: nesting deeper than 64 levels");
    }

    #[test]
    fn the_flow_pre_scan_skips_what_is_not_structure() {
        let deep = "[".repeat(100);
        let fine = format!(
            "script: |\n  {deep}\n  echo \"it's\n\
             comment: x # {deep}\n\
             plain: a {deep}\n\
             quoted: \"{deep}\\\"\"\n\
             single: 'it''s {deep}'\n\
             multi: this is\n  {deep} continued\n\
             key{deep}: a#{deep}\n\
             folded: >-\n    {deep}\n\n    more\n\
             last: [1, \"]]]\", '[[[']\n"
        );
        let (value, _) = yaml(&fine).unwrap();
        assert_eq!(value["script"], json!(format!("{deep}\necho \"it's\n")));
        assert_eq!(value["multi"], json!(format!("this is {deep} continued")));
        assert_eq!(value["last"], json!([1, "]]]", "[[["]));

        // Real nesting after each of those is still found.
        let tricky = [
            format!("a: 'it''s'\nb: {deep}"),
            format!("a: |\n  text\nb: {deep}"),
            format!("- k: |\n    text\n  b: {deep}"),
            format!("a: plain\n  continued\nb: {deep}"),
            format!("a: x # '\nb: {deep}"),
            format!("\"k #\": {deep}"),
            format!("a: [\"]\", '[', {deep}"),
        ];
        for text in tricky {
            let error = refused(yaml(&text));
            assert_eq!(error.message, "nesting deeper than 64 levels", "{text}");
        }
    }

    #[test]
    fn non_utf8_is_refused_and_a_bom_is_accepted() {
        for format in [Format::Yaml, Format::Json] {
            let error = refused(parse(
                b"{\"a\": 1,\n \"b\": \"\xff\"}",
                format,
                &Limits::default(),
            ));
            assert_eq!(
                error.to_string(),
                "2:8: the document is not UTF-8: invalid byte 0xFF"
            );
        }
        let (value, map) = parse(b"\xEF\xBB\xBFa: 1\n", Format::Yaml, &Limits::default()).unwrap();
        assert_eq!(value, json!({"a": 1}));
        assert_eq!(map.locate_key(&path("/a")), Some(Location::new(1, 1)));
        let (value, map) =
            parse(b"\xEF\xBB\xBF{\"a\": 1}", Format::Json, &Limits::default()).unwrap();
        assert_eq!(value, json!({"a": 1}));
        assert_eq!(map.locate(&path("/a")), Some(Location::new(1, 7)));
    }

    #[test]
    fn duplicate_keys_are_refused_in_both_formats() {
        let error = refused(yaml("id: a\ntype: t\nid: b\n"));
        assert_eq!(
            error.to_string(),
            "3:1: duplicate key `id` (first defined at 1:1)"
        );
        let error = refused(yaml("n:\n  - {x: 1, 'x': 2}\n"));
        assert_eq!(
            error.to_string(),
            "2:12: duplicate key `x` (first defined at 2:6)"
        );
        let error = refused(json("{\"id\": 1,\n \"id\": 2}"));
        assert_eq!(
            error.to_string(),
            "2:2: duplicate key `id` (first defined at 1:2)"
        );
        // Escapes are decoded before keys are compared.
        let error = refused(json("{\"id\": 1, \"\\u0069d\": 2}"));
        assert_eq!(error.message, "duplicate key `id` (first defined at 1:2)");
        // The same key in different mappings is fine.
        assert!(json("[{\"id\": 1}, {\"id\": 2}]").is_ok());
        assert!(yaml("- id: 1\n- id: 2\n").is_ok());
    }

    #[test]
    fn non_string_yaml_keys_are_refused() {
        let error = refused(yaml("200: ok\n"));
        assert_eq!(
            error.to_string(),
            "1:1: mapping keys must be strings, and `200` is a number; quote it to use it as a key"
        );
        assert_eq!(yaml("'200': ok\n").unwrap().0, json!({"200": "ok"}));
        let error = refused(yaml("true: x\n"));
        assert!(error.message.contains("is a boolean"), "{error}");
        let error = refused(yaml("? [a, b]\n: c\n"));
        assert_eq!(
            error.to_string(),
            "1:3: mapping keys must be strings, and this key is a sequence"
        );
        let error = refused(yaml("{{a: 1}: b}"));
        assert!(error.message.ends_with("this key is a mapping"), "{error}");
        let error = refused(yaml(": orphan\n"));
        assert_eq!(
            error.message,
            "a mapping key is empty; mapping keys must be strings"
        );
    }

    #[test]
    fn yaml_aliases_are_refused_so_no_bomb_can_expand() {
        let bomb = "a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n\
                    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
                    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n\
                    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
                    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n\
                    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n\
                    i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
        let error = refused(yaml(bomb));
        assert_eq!(
            error.to_string(),
            "2:8: YAML aliases are not supported (`*a`); write the value out in full"
        );
        // Merge keys are aliases too.
        let error = refused(yaml("base: &base {x: 1}\nnode:\n  <<: *base\n"));
        assert_eq!(error.location, Some(Location::new(3, 7)));
        // An anchor alone is harmless and ignored.
        assert_eq!(yaml("a: &x 1\n").unwrap().0, json!({"a": 1}));
    }

    #[test]
    fn unsupported_yaml_tags_are_refused() {
        let error = refused(yaml("a: !secret x\n"));
        assert_eq!(error.to_string(), "1:4: unsupported YAML tag `!secret`");
        let error = refused(yaml("a: !!binary aGk=\n"));
        assert_eq!(error.to_string(), "1:4: unsupported YAML tag `!!binary`");
        let error = refused(yaml("a: !!set {x}\n"));
        assert_eq!(error.message, "unsupported YAML tag `!!set` on a mapping");
        assert_eq!(yaml("a: !!seq [1]\n").unwrap().0, json!({"a": [1]}));
    }

    #[test]
    fn only_one_yaml_document_is_accepted() {
        let error = refused(yaml("a: 1\n---\nb: 2\n"));
        assert_eq!(
            error.to_string(),
            "2:1: a second YAML document starts here; a flow file holds one document"
        );
        let error = refused(yaml("--- a\n--- b\n"));
        assert_eq!(error.location, Some(Location::new(2, 1)));
        // Explicit start and end markers around one document are fine.
        assert_eq!(yaml("---\na: 1\n...\n").unwrap().0, json!({"a": 1}));
    }

    #[test]
    fn empty_documents_are_refused() {
        for text in [
            "",
            "  \n\n",
            "# just a comment\n",
            "---\n",
            "--- # nothing\n...\n",
        ] {
            let error = refused(yaml(text));
            assert_eq!(error.to_string(), "the document is empty", "{text:?}");
        }
        for text in ["", " \n\t\r\n"] {
            assert_eq!(refused(json(text)).to_string(), "the document is empty");
        }
        // An explicit null is a value, not an empty document.
        assert_eq!(yaml("null\n").unwrap().0, Value::Null);
        assert_eq!(yaml("''\n").unwrap().0, json!(""));
    }

    #[test]
    fn errors_display_compiler_style() {
        let error = SourceError::at(Location::new(3, 7), "unknown field `tiemout`");
        assert_eq!(
            format!("flow.yaml:{error}"),
            "flow.yaml:3:7: unknown field `tiemout`"
        );
        let error = SourceError::whole("the document is empty");
        assert_eq!(
            format!("flow.yaml: {error}"),
            "flow.yaml: the document is empty"
        );
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(10_485_760), "10,485,760");
    }

    /// Every value of `value` is in `map` at exactly its path.
    fn assert_every_path_located(value: &Value, map: &SourceMap) {
        let mut pending = vec![(DocPath::root(), value)];
        while let Some((at, value)) = pending.pop() {
            assert!(map.locate_exact(&at).is_some(), "{at} not located");
            match value {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        pending.push((at.clone().with_index(i), item));
                    }
                }
                Value::Object(fields) => {
                    for (key, item) in fields {
                        pending.push((at.clone().with_key(key.clone()), item));
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn the_differential_hook_sees_flow_depth() {
        assert_eq!(yaml::flow_depths("a: [[1], {b: [2]}]\n", 64), (3, 3));
        assert_eq!(yaml::flow_depths("- - [x]\n", 64), (1, 1));
        assert_eq!(yaml::flow_depths("a: 'x [[' # [[\n", 64), (0, 0));
    }

    #[test]
    fn every_value_of_the_example_flows_is_located() {
        for (text, format) in [(FLOW_YAML, Format::Yaml), (FLOW_JSON, Format::Json)] {
            let (value, map) = parse(text.as_bytes(), format, &Limits::default()).unwrap();
            assert_every_path_located(&value, &map);
        }
    }

    /// Bytes that matter to YAML or JSON syntax, to mutate documents with.
    fn syntax_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            proptest::sample::select(b"[]{}:,-?'\"#|>&*!%@`~\\\n\r\t 0aeE.+".to_vec()),
            any::<u8>(),
        ]
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Insert(usize, u8),
        Remove(usize, usize),
        Replace(usize, u8),
        Repeat(usize, usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), syntax_byte()).prop_map(|(at, b)| Mutation::Insert(at, b)),
            (any::<usize>(), 1..8usize).prop_map(|(at, n)| Mutation::Remove(at, n)),
            (any::<usize>(), syntax_byte()).prop_map(|(at, b)| Mutation::Replace(at, b)),
            (any::<usize>(), 1..16usize, 1..100usize)
                .prop_map(|(at, n, times)| Mutation::Repeat(at, n, times)),
        ]
    }

    fn mutate(text: &str, mutations: &[Mutation]) -> Vec<u8> {
        let mut bytes = text.as_bytes().to_vec();
        for mutation in mutations {
            let len = bytes.len();
            match *mutation {
                Mutation::Insert(at, b) => bytes.insert(at % (len + 1), b),
                Mutation::Remove(at, n) if len > 0 => {
                    let at = at % len;
                    bytes.drain(at..(at + n).min(len));
                }
                Mutation::Replace(at, b) if len > 0 => bytes[at % len] = b,
                Mutation::Repeat(at, n, times) if len > 0 => {
                    let at = at % len;
                    let piece = bytes[at..(at + n).min(len)].to_vec();
                    for _ in 0..times {
                        bytes.splice(at..at, piece.iter().copied());
                    }
                }
                _ => {}
            }
        }
        bytes
    }

    /// Parses in both formats: no panic, and a success is fully located.
    fn parse_both(bytes: &[u8]) {
        for format in [Format::Yaml, Format::Json] {
            if let Ok((value, map)) = parse(bytes, format, &Limits::default()) {
                assert_every_path_located(&value, &map);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            parse_both(&bytes);
        }

        #[test]
        fn random_syntax_never_panics(bytes in proptest::collection::vec(syntax_byte(), 0..256)) {
            parse_both(&bytes);
        }

        #[test]
        fn mutated_yaml_never_panics(mutations in proptest::collection::vec(mutation(), 1..6)) {
            parse_both(&mutate(FLOW_YAML, &mutations));
        }

        #[test]
        fn mutated_json_never_panics(mutations in proptest::collection::vec(mutation(), 1..6)) {
            parse_both(&mutate(FLOW_JSON, &mutations));
        }

        /// The flow pre-scan must never see less nesting than the parser
        /// opens, or a deep document could reach the parser's slow path.
        #[test]
        fn the_flow_pre_scan_never_undercounts(pieces in proptest::collection::vec(
            proptest::sample::select(vec![
                "[", "]", "{", "}", ", ", ",", ": ", ":", "- ", "-", "? ", "'", "\"", "''",
                "\\", "#", " #", "|", ">", "|-\n", "\n", "\r\n", "  ", " ", "\t", "a", "k: ",
                "&x ", "!t ", "!!str ", "*x", "---\n", "...\n", "%YAML 1.2\n", "é",
                "\n  ", "\n    ", "\n- ", "\n  - ", "k:\n", "k: |\n", "- |2\n", ">+\n",
                "  k: ", "key: [", "a b", "\"\\\"", "x#", "\n#", "\n   ", "- - ", "k: >\n", "  |\n",
                "\n? ", "\n: ", "'a'", "\"a\"",
            ]),
            0..64,
        )) {
            let text: String = pieces.concat();
            let (scanned, parsed) = yaml::flow_depths(&text, 64);
            prop_assert!(scanned >= parsed, "pre-scan {} < parser {} in {:?}", scanned, parsed, text);
        }

        #[test]
        fn pointers_round_trip(steps in proptest::collection::vec(
            prop_oneof![
                (0..1000usize).prop_map(Segment::Index),
                "[a-zA-Z_/~ .-][a-zA-Z0-9_/~ .-]{0,8}".prop_map(Segment::Key),
            ],
            0..6,
        )) {
            let original: DocPath = steps.into_iter().collect();
            let back = DocPath::from_json_pointer(&original.to_json_pointer()).unwrap();
            prop_assert_eq!(back, original);
        }
    }
}
