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
//!   quoted scalars, comments and block scalars. This matters for time, not
//!   the stack: inside a flow collection the YAML scanner reads ahead to the
//!   collection's end before it emits anything, and its work per token grows
//!   with the flow depth (it refuses 255 levels itself), so a deep 10 MiB
//!   document would take seconds before any event could be checked.
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
            loop {
                self.skip_whitespace();
                let Some(b) = self.peek() else {
                    return Err(Stop::Syntax);
                };
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
        if let Err(at) = FlowDepth::new(text).check(limits.max_depth) {
            return Err(nesting_error(location_of_byte(text, at), limits));
        }
        let mut builder = Builder {
            text,
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

    fn location(text: &str, mark: Marker) -> Location {
        let at = Location::new(mark.line(), mark.col() + 1);
        // At the end of the input the parser may point one line past it.
        let lines = 1 + text.bytes().filter(|&b| b == b'\n').count();
        if at.line > lines { end_of(text) } else { at }
    }

    fn location_of_byte(text: &str, at: usize) -> Location {
        end_of(&text[..at.min(text.len())])
    }

    fn scan_error(text: &str, error: &ScanError) -> SourceError {
        SourceError::at(
            location(text, *error.marker()),
            format!("invalid YAML: {}", error.info()),
        )
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
        /// Block context: the innermost block column when the current plain
        /// scalar started; its continuation lines are indented past it.
        plain_owner: isize,
        /// Block context: a plain scalar ran to the end of the line, and may
        /// go on on lines indented past this column.
        continues_past: Option<isize>,
        /// Block context: inside a block scalar (`|`, `>`), whose content
        /// lines are indented past this column.
        block_scalar_past: Option<isize>,
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
                plain_owner: -1,
                continues_past: None,
                block_scalar_past: None,
            }
        }

        /// `Err(byte)` at the first bracket past `max` levels.
        fn check(mut self, max: usize) -> Result<(), usize> {
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

        fn after_blank(&self) -> bool {
            self.at == self.line_start || matches!(self.bytes[self.at - 1], b' ' | b'\t')
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
            loop {
                let rest = &self.bytes[self.at..];
                let spaces = rest.iter().take_while(|&&b| b == b' ').count() as isize;
                let blanks = rest
                    .iter()
                    .take_while(|&&b| b == b' ' || b == b'\t')
                    .count();
                let first = rest.get(blanks);
                let blank_line = matches!(first, None | Some(b'\n' | b'\r'));
                if let Some(past) = self.block_scalar_past {
                    if blank_line || spaces > past {
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
                if (rest.starts_with(b"---") || rest.starts_with(b"...")) && is_blank(rest.get(3)) {
                    self.indents.truncate(1);
                    self.continues_past = None;
                    self.mode = Mode::Token;
                    self.at += 3;
                    return;
                }
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

        fn open(&mut self, max: usize) -> Result<(), usize> {
            self.depth += 1;
            if self.depth > max {
                return Err(self.at);
            }
            self.at += 1;
            self.mode = Mode::Token;
            Ok(())
        }

        /// One byte (not blank, not a line break) in block context.
        fn block(&mut self, c: u8, max: usize) -> Result<(), usize> {
            let column = self.column();
            let blank_next = is_blank(self.next());
            if c == b'#' && self.after_blank() {
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
                Mode::Plain | Mode::AfterNode => self.at += 1,
                Mode::Token => match c {
                    b'-' | b'?' if blank_next => {
                        self.push_indent(column);
                        self.at += 1;
                    }
                    b':' if blank_next => self.at += 1,
                    b'\'' | b'"' => {
                        self.node_column = column;
                        self.skip_quoted();
                        self.mode = Mode::AfterNode;
                    }
                    b'[' | b'{' => {
                        self.node_column = column;
                        self.open(max)?;
                    }
                    b']' | b'}' | b',' => self.at += 1,
                    b'|' | b'>' => {
                        self.block_scalar_past = Some(self.top());
                        self.skip_to_line_end();
                    }
                    b'&' | b'!' => self.skip_name(),
                    b'*' => {
                        self.node_column = column;
                        self.skip_name();
                        self.mode = Mode::AfterNode;
                    }
                    b'%' if column == 0 => self.skip_to_line_end(),
                    _ => {
                        self.node_column = column;
                        self.plain_owner = self.top();
                        self.mode = Mode::Plain;
                        self.at += 1;
                    }
                },
            }
            Ok(())
        }

        /// One byte (not blank, not a line break) inside a flow collection.
        fn flow(&mut self, c: u8, max: usize) -> Result<(), usize> {
            let next = self.next();
            let ends_value = is_blank(next) || is_flow_indicator(next);
            if c == b'#' && self.after_blank() {
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
            let at = location(self.text, span.start);
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
        if tag.handle == "!" && tag.suffix.is_empty() {
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
