//! [`FileList`]: the entries under the file root that match a glob.

use ghostflow::prelude::*;
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserializer;

use super::error::FileError;
use super::{blocking, confine, file_root};

/// What an entry is. Symbolic links are never followed by a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (listed as itself, not followed).
    Symlink,
    /// A FIFO, a socket or a device.
    Other,
}

/// Which kinds of entries [`FileList`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindFilter {
    /// Every entry that matches (the default).
    #[default]
    Any,
    /// Regular files only.
    File,
    /// Directories only.
    Dir,
    /// Symbolic links only.
    Symlink,
}

impl KindFilter {
    fn accepts(self, kind: FileKind) -> bool {
        match self {
            KindFilter::Any => true,
            KindFilter::File => kind == FileKind::File,
            KindFilter::Dir => kind == FileKind::Dir,
            KindFilter::Symlink => kind == FileKind::Symlink,
        }
    }
}

/// One entry found by [`FileList`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileEntry {
    /// The path relative to the file root, `/`-separated.
    pub path: String,
    /// The last component of the path.
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: FileKind,
    /// The size in bytes (of the link itself, for a symbolic link).
    pub size: u64,
    /// The time of the last modification, RFC 3339 in UTC to the second
    /// (`2024-05-01T12:00:00Z`).
    pub modified: String,
}

/// What [`FileList`] found.
#[derive(Ports, Debug)]
pub struct FileListOutput {
    /// The entries, sorted by path (component by component: a directory's
    /// entries follow it), at most `max_entries`.
    pub entries: Vec<FileEntry>,
    /// Their paths, in the same order (to feed a `for_each`).
    pub paths: Vec<String>,
    /// Whether more entries matched than `max_entries`.
    pub truncated: bool,
}

/// Lists the files and directories under the engine's file root whose
/// path matches a glob pattern, such as `reports/**/*.csv`.
///
/// Patterns are relative to the root: `*` and `?` stay within one path
/// component, `**` spans any number of them, `[abc]` and `{csv,tsv}` work
/// as in shells. The walk starts at the pattern's literal prefix
/// (`reports/`) and goes no deeper than the pattern can match; it never
/// follows a symbolic link (links are listed with kind `symlink`), so it
/// cannot leave the root. Entries come sorted by path; at most
/// `max_entries` are returned (`truncated` says when more matched), and a
/// walk that looks at more than `max_scanned` entries fails. A prefix that
/// does not exist lists nothing. Names that are not UTF-8 are left out.
///
/// ```yaml
/// - id: find_reports
///   type: file_list
///   config:
///     pattern: "reports/**/*.{csv,tsv}"
///     kind: file
///     max_entries: 500
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = (), output = FileListOutput, category = "file")]
#[serde(deny_unknown_fields)]
pub struct FileList {
    /// The glob pattern, relative to the file root.
    #[serde(deserialize_with = "glob_pattern")]
    pub pattern: String,
    /// Which entries: `any` (the default), `file`, `dir` or `symlink`.
    #[serde(default)]
    pub kind: KindFilter,
    /// The most entries returned; `truncated` says when more matched.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    /// The most directory entries the walk looks at (matching or not)
    /// before it fails.
    #[serde(default = "default_max_scanned")]
    pub max_scanned: u64,
}

fn default_max_entries() -> usize {
    1000
}

fn default_max_scanned() -> u64 {
    100_000
}

/// A pattern, checked and split into where the walk starts and how deep
/// it goes.
#[derive(Debug)]
struct Pattern {
    matcher: GlobMatcher,
    /// The literal leading components, `/`-joined (empty: the root).
    base: String,
    /// How many levels below `base` can match; `None` with `**`.
    depth: Option<usize>,
}

/// Whether a component holds glob syntax.
fn is_glob(component: &str) -> bool {
    component.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("the pattern is empty".into());
        }
        if text.starts_with('/') {
            return Err(format!(
                "`{text}`: the pattern is relative to the file root; remove the leading `/`"
            ));
        }
        let components: Vec<&str> = text.split('/').collect();
        if components
            .iter()
            .any(|c| c.is_empty() || *c == "." || *c == "..")
        {
            return Err(format!(
                "`{text}`: a pattern has no empty, `.` or `..` components"
            ));
        }
        let glob = GlobBuilder::new(text)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("`{text}`: {}", e.kind()))?;
        // The last component is always matched, never walked into.
        let literal = components[..components.len() - 1]
            .iter()
            .take_while(|c| !is_glob(c))
            .count();
        let depth =
            (!components.iter().any(|c| c.contains("**"))).then_some(components.len() - literal);
        Ok(Pattern {
            matcher: glob.compile_matcher(),
            base: components[..literal].join("/"),
            depth,
        })
    }
}

/// Accepts a pattern that [`Pattern::parse`] accepts.
fn glob_pattern<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    Pattern::parse(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

impl FileList {
    /// Lists what matches `pattern`, of any kind, up to 1000 entries.
    ///
    /// # Errors
    /// The pattern is not a valid glob relative to the root.
    pub fn new(pattern: impl Into<String>) -> Result<Self, String> {
        let pattern = pattern.into();
        Pattern::parse(&pattern)?;
        Ok(FileList {
            pattern,
            kind: KindFilter::Any,
            max_entries: default_max_entries(),
            max_scanned: default_max_scanned(),
        })
    }
}

impl Run for FileList {
    async fn run(&self, _input: (), ctx: &Context) -> Result<FileListOutput, NodeError> {
        let root = file_root(ctx)?;
        let pattern = Pattern::parse(&self.pattern).map_err(|reason| {
            FileError::Config {
                field: "pattern",
                reason,
            }
            .into_node_error()
        })?;
        let limits = confine::ListLimits {
            max_depth: pattern.depth,
            max_entries: self.max_entries,
            max_scanned: self.max_scanned,
        };
        let kind = self.kind;
        let listing = blocking(move || {
            confine::list(&root, &pattern.base, limits, &|path, found| {
                kind.accepts(found) && pattern.matcher.is_match(path)
            })
        })
        .await?;
        let entries: Vec<FileEntry> = listing
            .entries
            .into_iter()
            .map(|e| FileEntry {
                path: e.path,
                name: e.name,
                kind: e.kind,
                size: e.size,
                modified: rfc3339(e.modified_secs),
            })
            .collect();
        Ok(FileListOutput {
            paths: entries.iter().map(|e| e.path.clone()).collect(),
            entries,
            truncated: listing.truncated,
        })
    }
}

/// Seconds since 1970 as RFC 3339 in UTC, `1970-01-01T00:00:00Z`.
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn patterns_start_the_walk_at_their_literal_prefix() {
        let p = Pattern::parse("reports/2024/*.csv").unwrap();
        assert_eq!((p.base.as_str(), p.depth), ("reports/2024", Some(1)));
        let p = Pattern::parse("reports/**/*.csv").unwrap();
        assert_eq!((p.base.as_str(), p.depth), ("reports", None));
        let p = Pattern::parse("*/x.txt").unwrap();
        assert_eq!((p.base.as_str(), p.depth), ("", Some(2)));
        let p = Pattern::parse("a.txt").unwrap();
        assert_eq!((p.base.as_str(), p.depth), ("", Some(1)));
        assert!(p.matcher.is_match("a.txt"));
        let p = Pattern::parse("*.txt").unwrap();
        assert!(
            !p.matcher.is_match("sub/a.txt"),
            "`*` stays in one component"
        );
        for bad in ["", "/etc/*", "../x", "a/./b", "a//b", "a/[b"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }
}
