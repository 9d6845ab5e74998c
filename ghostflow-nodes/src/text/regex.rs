//! The regular-expression nodes: [`RegexMatch`], [`RegexExtract`] and
//! [`RegexReplace`], and what they share (compiling a pattern with its
//! flags, under a size limit).

use std::sync::{Arc, OnceLock};

use ghostflow::prelude::*;
use regex::{Captures, Regex, RegexBuilder};
use serde::Deserializer;

/// The largest compiled form a pattern may take, in bytes (1 MiB).
///
/// Matching time is linear in the size of the text (the `regex` crate
/// guarantees it: no backtracking), so a pattern cannot make a node hang;
/// this limit bounds the memory and the time a pattern itself takes to
/// compile. Counted repetitions are what makes patterns big: `\w{1000}` is
/// refused, `\w+` is tiny.
pub const MAX_COMPILED_PATTERN_BYTES: usize = 1 << 20;

/// The flags of a pattern, as the three regex nodes spell them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Flags {
    case_insensitive: bool,
    multiline: bool,
    dot_all: bool,
}

/// Compiles `pattern` with `flags` under [`MAX_COMPILED_PATTERN_BYTES`].
fn compile(pattern: &str, flags: Flags) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(flags.case_insensitive)
        .multi_line(flags.multiline)
        .dot_matches_new_line(flags.dot_all)
        .size_limit(MAX_COMPILED_PATTERN_BYTES)
        .build()
}

/// Accepts a string that compiles as a pattern (without flags: they only
/// change what a valid pattern matches). The regex crate's message names
/// what is wrong and where.
fn pattern_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    compile(&text, Flags::default()).map_err(serde::de::Error::custom)?;
    Ok(text)
}

/// A pattern compiled once per node, on its first run.
struct Compiled<T>(OnceLock<Result<Arc<T>, String>>);

impl<T> Default for Compiled<T> {
    fn default() -> Self {
        Compiled(OnceLock::new())
    }
}

impl<T> Clone for Compiled<T> {
    fn clone(&self) -> Self {
        Compiled(self.0.clone())
    }
}

impl<T> std::fmt::Debug for Compiled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0.get() {
            None => "Compiled(not yet)",
            Some(Ok(_)) => "Compiled(ok)",
            Some(Err(_)) => "Compiled(error)",
        })
    }
}

impl<T> Compiled<T> {
    /// The compiled value, made by `make` the first time; its error is
    /// permanent (a config does not get better by retrying).
    fn get(&self, make: impl FnOnce() -> Result<T, String>) -> Result<Arc<T>, NodeError> {
        self.0
            .get_or_init(|| make().map(Arc::new))
            .clone()
            .map_err(NodeError::permanent)
    }
}

/// The pattern with the node's flags, or the error at `config.pattern`.
fn compile_config(pattern: &str, flags: Flags) -> Result<Regex, String> {
    compile(pattern, flags).map_err(|e| format!("config.pattern: {e}"))
}

/// The numbered groups of a match (0 is the whole match); `None` for a
/// group that took no part in it.
fn numbered(caps: &Captures<'_>) -> Vec<Option<String>> {
    caps.iter()
        .map(|group| group.map(|m| m.as_str().to_owned()))
        .collect()
}

/// The named groups of a match, in the order the pattern names them;
/// `null` for a group that took no part in it.
fn named(regex: &Regex, caps: &Captures<'_>) -> serde_json::Map<String, serde_json::Value> {
    regex
        .capture_names()
        .flatten()
        .map(|name| {
            let value = caps
                .name(name)
                .map_or(serde_json::Value::Null, |m| m.as_str().into());
            (name.to_owned(), value)
        })
        .collect()
}

/// The group names of a pattern, for messages.
fn describe_groups(regex: &Regex) -> String {
    let names: Vec<String> = regex
        .capture_names()
        .flatten()
        .map(|n| format!("`{n}`"))
        .collect();
    let numbers = format!("groups 0 to {}", regex.captures_len() - 1);
    if names.is_empty() {
        format!("{numbers}, none named")
    } else {
        format!("{numbers}; named {}", names.join(", "))
    }
}

/// The text to match.
#[derive(Ports, Debug)]
pub struct RegexText {
    /// The text.
    pub text: String,
}

// ------------------------------------------------------------ regex_match

/// Tells whether a text matches a regular expression, with the groups of
/// the first match.
///
/// The pattern uses the syntax of the Rust `regex` crate (named groups are
/// `(?P<name>...)` or `(?<name>...)`); it compiles when the flow loads, and
/// a syntax error is reported there. Matching takes time linear in the
/// text: there is no backtracking, so no pattern can make it hang (and
/// look-around and back-references do not exist). The `groups` and `named`
/// outputs stay empty when the text does not match, so nodes that read
/// them are skipped: a branch on "it matched". Use `matched` to decide
/// otherwise.
///
/// ```yaml
/// - id: parse_subject
///   type: regex_match
///   config:
///     pattern: '^\[(?P<project>[A-Z]+)-(?P<number>\d+)\]'
///     case_insensitive: true
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = RegexText, output = RegexMatchOutput, category = "text")]
#[serde(deny_unknown_fields)]
pub struct RegexMatch {
    /// The regular expression (Rust `regex` syntax).
    #[serde(deserialize_with = "pattern_text")]
    pub pattern: String,
    /// Letters match regardless of case (`(?i)`).
    #[serde(default)]
    pub case_insensitive: bool,
    /// `^` and `$` match at the start and end of every line, not only of
    /// the text (`(?m)`).
    #[serde(default)]
    pub multiline: bool,
    /// `.` matches a line break too (`(?s)`).
    #[serde(default)]
    pub dot_all: bool,
    #[serde(skip)]
    #[schemars(skip)]
    compiled: Compiled<Regex>,
}

/// What [`RegexMatch`] found.
#[derive(Ports, Debug)]
pub struct RegexMatchOutput {
    /// Whether the text matches.
    pub matched: bool,
    /// The numbered groups of the first match: item 0 is the whole match,
    /// item `n` group `n` (`null` when it took no part). Empty when the
    /// text does not match.
    pub groups: Option<Vec<Option<String>>>,
    /// The named groups of the first match by name (`null` when one took
    /// no part). Empty when the text does not match.
    pub named: Option<serde_json::Map<String, serde_json::Value>>,
}

impl RegexMatch {
    /// A node matching `pattern`, without flags.
    ///
    /// # Errors
    /// The pattern does not compile.
    pub fn new(pattern: impl Into<String>) -> Result<Self, regex::Error> {
        let pattern = pattern.into();
        compile(&pattern, Flags::default())?;
        Ok(RegexMatch {
            pattern,
            case_insensitive: false,
            multiline: false,
            dot_all: false,
            compiled: Compiled::default(),
        })
    }

    fn flags(&self) -> Flags {
        Flags {
            case_insensitive: self.case_insensitive,
            multiline: self.multiline,
            dot_all: self.dot_all,
        }
    }
}

impl Run for RegexMatch {
    async fn run(&self, input: RegexText, _ctx: &Context) -> Result<RegexMatchOutput, NodeError> {
        let regex = self
            .compiled
            .get(|| compile_config(&self.pattern, self.flags()))?;
        Ok(match regex.captures(&input.text) {
            Some(caps) => RegexMatchOutput {
                matched: true,
                groups: Some(numbered(&caps)),
                named: Some(named(&regex, &caps)),
            },
            None => RegexMatchOutput {
                matched: false,
                groups: None,
                named: None,
            },
        })
    }
}

// ---------------------------------------------------------- regex_extract

/// One match found by [`RegexExtract`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TextMatch {
    /// The matched text.
    pub text: String,
    /// Where the match starts, in bytes of UTF-8 from the start of the text.
    pub start: usize,
    /// Where the match ends (exclusive), in bytes.
    pub end: usize,
    /// Where the match starts, in characters (Unicode scalar values).
    pub char_start: usize,
    /// Where the match ends (exclusive), in characters.
    pub char_end: usize,
    /// The numbered groups: item 0 is the whole match, item `n` group `n`
    /// (`null` when it took no part).
    pub groups: Vec<Option<String>>,
    /// The named groups by name (`null` when one took no part).
    pub named: serde_json::Map<String, serde_json::Value>,
}

/// A capture group, by number or by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum GroupRef {
    /// Group number `n` (0 is the whole match).
    Number(usize),
    /// The group named so.
    Name(String),
}

impl Default for GroupRef {
    fn default() -> Self {
        GroupRef::Number(0)
    }
}

impl<'de> Deserialize<'de> for GroupRef {
    /// A number, or a name; a string of digits (what an expression renders)
    /// is a number, since group names do not start with a digit.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(GroupRef::Number)
                .ok_or_else(|| serde::de::Error::custom(format!("`{n}` is not a group number"))),
            serde_json::Value::String(s) => Ok(match s.parse::<usize>() {
                Ok(n) => GroupRef::Number(n),
                Err(_) => GroupRef::Name(s),
            }),
            other => Err(serde::de::Error::custom(format!(
                "expected a group number or name, got {}",
                crate::kind(&other)
            ))),
        }
    }
}

impl std::fmt::Display for GroupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupRef::Number(n) => write!(f, "{n}"),
            GroupRef::Name(name) => write!(f, "`{name}`"),
        }
    }
}

/// Finds every match of a regular expression in a text, with its groups
/// and its offsets in bytes and in characters.
///
/// Matches do not overlap and come in order; at most `max_matches` are
/// returned, and `truncated` says whether there were more. The `values`
/// output lists the text of group `group` (by default the whole match) of
/// every match, for a flow that only wants the strings. Same pattern
/// syntax and flags as `regex_match`; matching takes time linear in the
/// text.
///
/// ```yaml
/// - id: find_emails
///   type: regex_extract
///   config:
///     pattern: '(?P<user>[\w.+-]+)@(?P<domain>[\w-]+(?:\.[\w-]+)+)'
///     group: domain
///     max_matches: 100
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = RegexText, output = RegexExtractOutput, category = "text")]
#[serde(deny_unknown_fields)]
pub struct RegexExtract {
    /// The regular expression (Rust `regex` syntax).
    #[serde(deserialize_with = "pattern_text")]
    pub pattern: String,
    /// Letters match regardless of case (`(?i)`).
    #[serde(default)]
    pub case_insensitive: bool,
    /// `^` and `$` match at the start and end of every line (`(?m)`).
    #[serde(default)]
    pub multiline: bool,
    /// `.` matches a line break too (`(?s)`).
    #[serde(default)]
    pub dot_all: bool,
    /// The group whose text the `values` output lists: a number (0, the
    /// default, is the whole match) or a name.
    #[serde(default)]
    pub group: GroupRef,
    /// The most matches returned; `truncated` says when there were more.
    #[serde(default = "default_max_matches")]
    pub max_matches: usize,
    #[serde(skip)]
    #[schemars(skip)]
    compiled: Compiled<(Regex, usize)>,
}

fn default_max_matches() -> usize {
    1000
}

/// What [`RegexExtract`] found.
#[derive(Ports, Debug)]
pub struct RegexExtractOutput {
    /// The matches, in order, at most `max_matches`.
    pub matches: Vec<TextMatch>,
    /// The text of the configured `group` of each match (`null` where it
    /// took no part), in the same order.
    pub values: Vec<Option<String>>,
    /// How many matches are returned.
    pub count: usize,
    /// Whether the text has more matches than `max_matches`.
    pub truncated: bool,
}

impl RegexExtract {
    /// A node finding every match of `pattern` (up to 1000), without flags.
    ///
    /// # Errors
    /// The pattern does not compile.
    pub fn new(pattern: impl Into<String>) -> Result<Self, regex::Error> {
        let pattern = pattern.into();
        compile(&pattern, Flags::default())?;
        Ok(RegexExtract {
            pattern,
            case_insensitive: false,
            multiline: false,
            dot_all: false,
            group: GroupRef::default(),
            max_matches: default_max_matches(),
            compiled: Compiled::default(),
        })
    }

    /// The pattern and the index of the `values` group.
    fn prepare(&self) -> Result<(Regex, usize), String> {
        let regex = compile_config(
            &self.pattern,
            Flags {
                case_insensitive: self.case_insensitive,
                multiline: self.multiline,
                dot_all: self.dot_all,
            },
        )?;
        let index = match &self.group {
            GroupRef::Number(n) if *n < regex.captures_len() => Some(*n),
            GroupRef::Number(_) => None,
            GroupRef::Name(name) => regex.capture_names().position(|n| n == Some(name)),
        };
        let index = index.ok_or_else(|| {
            format!(
                "config.group: the pattern has no group {} ({})",
                self.group,
                describe_groups(&regex)
            )
        })?;
        Ok((regex, index))
    }
}

impl Run for RegexExtract {
    async fn run(&self, input: RegexText, _ctx: &Context) -> Result<RegexExtractOutput, NodeError> {
        let prepared = self.compiled.get(|| self.prepare())?;
        let (regex, group) = &*prepared;
        let text = input.text.as_str();
        let mut matches = Vec::new();
        let mut values = Vec::new();
        let mut truncated = false;
        // Character offsets, counted once over the text: matches come in order.
        let mut chars = CharCounter::default();
        for caps in regex.captures_iter(text) {
            if matches.len() == self.max_matches {
                truncated = true;
                break;
            }
            let whole = caps.get(0).map_or(0..0, |m| m.range());
            let char_start = chars.at(text, whole.start);
            let char_end = chars.at(text, whole.end);
            values.push(caps.get(*group).map(|m| m.as_str().to_owned()));
            matches.push(TextMatch {
                text: text[whole.clone()].to_owned(),
                start: whole.start,
                end: whole.end,
                char_start,
                char_end,
                groups: numbered(&caps),
                named: named(regex, &caps),
            });
        }
        Ok(RegexExtractOutput {
            count: matches.len(),
            matches,
            values,
            truncated,
        })
    }
}

/// Turns increasing byte offsets into character offsets, counting each
/// character once.
#[derive(Debug, Default)]
struct CharCounter {
    byte: usize,
    chars: usize,
}

impl CharCounter {
    /// The character offset of byte offset `at` (a char boundary, not
    /// before the previous one asked for).
    fn at(&mut self, text: &str, at: usize) -> usize {
        if at >= self.byte {
            self.chars += text.get(self.byte..at).map_or(0, |s| s.chars().count());
            self.byte = at;
            self.chars
        } else {
            text.get(..at).map_or(0, |s| s.chars().count())
        }
    }
}

// ---------------------------------------------------------- regex_replace

/// A replacement, parsed: text and references to groups.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
}

/// Parses `replacement` for `regex`: `$name` and `${name}` (a number or a
/// group name; the name is the longest run of letters, digits and `_`)
/// insert a group, `$$` a `$`; a `$` followed by anything else is itself.
/// A reference to a group the pattern does not have is an error (the regex
/// crate would insert nothing, which hides typos such as `$1st`).
fn parse_replacement(regex: &Regex, replacement: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = replacement;
    while let Some(at) = rest.find('$') {
        text.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            text.push('$');
            rest = after;
            continue;
        }
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => {
                    return Err(format!(
                        "config.replacement: `${{` without a closing `}}` in `{replacement}`; write `$$` for a `$`"
                    ));
                }
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                text.push('$');
                continue;
            }
            (&rest[..end], &rest[end..])
        };
        let index = match name.parse::<usize>() {
            Ok(n) if n < regex.captures_len() => Some(n),
            Ok(_) => None,
            Err(_) => regex.capture_names().position(|n| n == Some(name)),
        };
        let Some(index) = index else {
            return Err(format!(
                "config.replacement: `${name}` refers to no group of the pattern ({}); write `${{1}}x` to follow group 1 with letters, `$$` for a `$`",
                describe_groups(regex)
            ));
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Group(index));
        rest = after;
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Replaces the matches of a regular expression in a text: all of them, or
/// the first `limit`.
///
/// In `replacement`, `$name` or `${name}` inserts a group (by number, 0 for
/// the whole match, or by name), and `$$` a `$`; with `literal: true` the
/// replacement is inserted as it is. A reference to a group the pattern
/// does not have fails the node (write `${1}st`, not `$1st`). The result
/// may not exceed `max_bytes`. Same pattern syntax and flags as
/// `regex_match`; matching takes time linear in the text.
///
/// ```yaml
/// - id: mask_cards
///   type: regex_replace
///   config:
///     pattern: '\b(\d{4})[ -]?\d{4}[ -]?\d{4}[ -]?(?P<last>\d{4})\b'
///     replacement: '$1 **** **** ${last}'
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = RegexText, output = RegexReplaceOutput, category = "text")]
#[serde(deny_unknown_fields)]
pub struct RegexReplace {
    /// The regular expression (Rust `regex` syntax).
    #[serde(deserialize_with = "pattern_text")]
    pub pattern: String,
    /// What each match becomes; `$1`, `${name}` insert groups, `$$` a `$`.
    pub replacement: String,
    /// Insert `replacement` as it is, without reading `$` references.
    #[serde(default)]
    pub literal: bool,
    /// Replace only the first `limit` matches; 0 (the default) replaces all.
    #[serde(default)]
    pub limit: usize,
    /// Letters match regardless of case (`(?i)`).
    #[serde(default)]
    pub case_insensitive: bool,
    /// `^` and `$` match at the start and end of every line (`(?m)`).
    #[serde(default)]
    pub multiline: bool,
    /// `.` matches a line break too (`(?s)`).
    #[serde(default)]
    pub dot_all: bool,
    /// The longest result accepted, in bytes (default 16 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    #[serde(skip)]
    #[schemars(skip)]
    compiled: Compiled<(Regex, Vec<Piece>)>,
}

fn default_max_bytes() -> usize {
    16 * 1024 * 1024
}

/// The text with its matches replaced.
#[derive(Ports, Debug)]
pub struct RegexReplaceOutput {
    /// The resulting text.
    pub text: String,
    /// How many matches were replaced.
    pub replaced: usize,
}

impl RegexReplace {
    /// A node replacing every match of `pattern` with `replacement`.
    ///
    /// # Errors
    /// The pattern does not compile.
    pub fn new(
        pattern: impl Into<String>,
        replacement: impl Into<String>,
    ) -> Result<Self, regex::Error> {
        let pattern = pattern.into();
        compile(&pattern, Flags::default())?;
        Ok(RegexReplace {
            pattern,
            replacement: replacement.into(),
            literal: false,
            limit: 0,
            case_insensitive: false,
            multiline: false,
            dot_all: false,
            max_bytes: default_max_bytes(),
            compiled: Compiled::default(),
        })
    }

    fn prepare(&self) -> Result<(Regex, Vec<Piece>), String> {
        let regex = compile_config(
            &self.pattern,
            Flags {
                case_insensitive: self.case_insensitive,
                multiline: self.multiline,
                dot_all: self.dot_all,
            },
        )?;
        let pieces = if self.literal {
            vec![Piece::Text(self.replacement.clone())]
        } else {
            parse_replacement(&regex, &self.replacement)?
        };
        Ok((regex, pieces))
    }
}

impl Run for RegexReplace {
    async fn run(&self, input: RegexText, _ctx: &Context) -> Result<RegexReplaceOutput, NodeError> {
        let prepared = self.compiled.get(|| self.prepare())?;
        let (regex, pieces) = &*prepared;
        let text = input.text.as_str();
        let too_long = || {
            NodeError::permanent(format!(
                "the result would be longer than {} bytes (config.max_bytes)",
                self.max_bytes
            ))
        };
        let mut out = String::with_capacity(text.len().min(self.max_bytes));
        let mut last = 0;
        let mut replaced = 0;
        for caps in regex.captures_iter(text) {
            if self.limit != 0 && replaced == self.limit {
                break;
            }
            let whole = caps.get(0).map_or(0..0, |m| m.range());
            out.push_str(&text[last..whole.start]);
            for piece in pieces {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Group(i) => out.push_str(caps.get(*i).map_or("", |m| m.as_str())),
                }
            }
            if out.len() > self.max_bytes {
                return Err(too_long());
            }
            last = whole.end;
            replaced += 1;
        }
        out.push_str(&text[last..]);
        if out.len() > self.max_bytes {
            return Err(too_long());
        }
        Ok(RegexReplaceOutput {
            text: out,
            replaced,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_parse_like_the_regex_crate_but_refuse_unknown_groups() {
        let regex = Regex::new(r"(?P<user>\w+)@(\w+)").unwrap();
        assert_eq!(
            parse_replacement(&regex, "${user} at $2, $$5 $ ok").unwrap(),
            vec![
                Piece::Group(1),
                Piece::Text(" at ".into()),
                Piece::Group(2),
                Piece::Text(", $5 $ ok".into()),
            ]
        );
        assert_eq!(
            parse_replacement(&regex, "$0").unwrap(),
            vec![Piece::Group(0)]
        );
        let err = parse_replacement(&regex, "$2nd").unwrap_err();
        assert_eq!(
            err,
            "config.replacement: `$2nd` refers to no group of the pattern (groups 0 to 2; named `user`); write `${1}x` to follow group 1 with letters, `$$` for a `$`"
        );
        assert!(
            parse_replacement(&regex, "${user")
                .unwrap_err()
                .contains("without a closing `}`")
        );
        assert!(
            parse_replacement(&Regex::new("a").unwrap(), "$1")
                .unwrap_err()
                .contains("(groups 0 to 0, none named)")
        );
    }

    #[test]
    fn char_offsets_count_scalar_values() {
        let text = "héllo wörld";
        let mut counter = CharCounter::default();
        assert_eq!(counter.at(text, 0), 0);
        assert_eq!(counter.at(text, 3), 2);
        assert_eq!(counter.at(text, 7), 6);
        assert_eq!(counter.at(text, text.len()), 11);
        // Asked out of order, it still answers.
        assert_eq!(counter.at(text, 3), 2);
    }

    #[test]
    fn patterns_are_checked_when_they_deserialize() {
        let err = serde_json::from_value::<RegexMatch>(serde_json::json!({"pattern": "(abc"}))
            .unwrap_err();
        assert!(err.to_string().contains("unclosed group"), "{err}");
        let err = serde_json::from_value::<RegexMatch>(serde_json::json!({"pattern": r"\w{5000}"}))
            .unwrap_err();
        assert!(err.to_string().contains("exceeds size limit"), "{err}");
        assert!(RegexMatch::new(r"\w+@\w+").is_ok());
    }
}
