//! [`FileWrite`]: write a file atomically (or append to it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use ghostflow::prelude::*;

use super::error::FileError;
use super::{blocking, choose_path, confine, file_root};

/// What [`FileWrite`] does when the file exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IfExists {
    /// Replace it, atomically (the default).
    #[default]
    Overwrite,
    /// Fail, leaving it as it is; atomic too (a file that appears during
    /// the write is not replaced either).
    Fail,
    /// Append to it (or create it). Not atomic: a failure can leave part of
    /// the data appended.
    Append,
}

/// How [`FileWrite`] turns the `content` input into bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteFormat {
    /// A string, written as UTF-8 (the default).
    #[default]
    Text,
    /// Any value, written as JSON followed by a line break (with `append`,
    /// one value per line: JSON Lines).
    Json,
    /// A string of standard base64 (padding optional), written as the bytes
    /// it encodes.
    Bytes,
}

/// What to write, and where.
#[derive(Ports, Debug)]
pub struct FileWriteInput {
    /// The content: a string for `text` and `bytes`, any value for `json`.
    pub content: serde_json::Value,
    /// The path relative to the file root, in place of the configured one.
    pub path: Option<String>,
}

/// What [`FileWrite`] wrote.
#[derive(Ports, Debug)]
pub struct FileWriteOutput {
    /// The path written, relative to the file root.
    pub path: String,
    /// How many bytes were written (appended, with `append`).
    pub bytes: u64,
    /// Whether the file did not exist before.
    pub created: bool,
}

/// Writes a file under the engine's file root, atomically: a temporary
/// file in the same directory, synced, then renamed over the target.
///
/// The `content` input is written as text, as JSON (`pretty` to indent it)
/// or as the bytes of a base64 string. `if_exists` says what to do with an
/// existing file: `overwrite` (the default), `fail`, or `append` (which is
/// not atomic). A failed or cancelled write leaves the old file intact and
/// no temporary file behind; a replaced file keeps its permissions. Missing
/// parent directories fail the node unless `create_dirs: true`. A
/// read-only file root refuses every write. The path follows the `file`
/// family's rules (relative to the root, nothing outside it).
///
/// ```yaml
/// - id: save_report
///   type: file_write
///   config:
///     path: "reports/{{ input.day }}.json"
///     format: json
///     pretty: true
///     create_dirs: true
///     if_exists: overwrite
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = FileWriteInput, output = FileWriteOutput, category = "file")]
#[serde(deny_unknown_fields)]
pub struct FileWrite {
    /// The file, relative to the file root; the `path` input replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `text` (the default), `json` or `bytes` (base64).
    #[serde(default)]
    pub format: WriteFormat,
    /// With `format: json`, indent the JSON.
    #[serde(default)]
    pub pretty: bool,
    /// `overwrite` (the default), `fail` or `append`.
    #[serde(default)]
    pub if_exists: IfExists,
    /// Create missing parent directories.
    #[serde(default)]
    pub create_dirs: bool,
}

impl FileWrite {
    /// Writes text to `path`, replacing the file if it exists.
    pub fn new(path: impl Into<String>) -> Self {
        FileWrite {
            path: Some(path.into()),
            format: WriteFormat::Text,
            pretty: false,
            if_exists: IfExists::Overwrite,
            create_dirs: false,
        }
    }

    /// The bytes to write.
    fn bytes(&self, content: serde_json::Value) -> Result<Vec<u8>, FileError> {
        let bad = |reason: String| FileError::Input {
            port: "content",
            reason,
        };
        match (self.format, content) {
            (WriteFormat::Text, serde_json::Value::String(text)) => Ok(text.into_bytes()),
            (WriteFormat::Text, other) => Err(bad(format!(
                "`format: text` writes a string, got {} (`format: json` writes any value)",
                crate::kind(&other)
            ))),
            (WriteFormat::Json, value) => {
                let mut bytes = if self.pretty {
                    serde_json::to_vec_pretty(&value)
                } else {
                    serde_json::to_vec(&value)
                }
                .map_err(|e| bad(e.to_string()))?;
                bytes.push(b'\n');
                Ok(bytes)
            }
            (WriteFormat::Bytes, serde_json::Value::String(text)) => {
                let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                let engine = GeneralPurpose::new(
                    &base64::alphabet::STANDARD,
                    GeneralPurposeConfig::new()
                        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
                );
                engine
                    .decode(compact)
                    .map_err(|e| bad(format!("`format: bytes` writes base64: {e}")))
            }
            (WriteFormat::Bytes, other) => Err(bad(format!(
                "`format: bytes` writes a base64 string, got {}",
                crate::kind(&other)
            ))),
        }
    }
}

/// Tells the blocking write that the node's future was dropped.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Run for FileWrite {
    async fn run(
        &self,
        input: FileWriteInput,
        ctx: &Context,
    ) -> Result<FileWriteOutput, NodeError> {
        let root = file_root(ctx)?;
        let path = choose_path(self.path.as_ref(), input.path)?;
        let bytes = self
            .bytes(input.content)
            .map_err(FileError::into_node_error)?;
        let (if_exists, create_dirs) = (self.if_exists, self.create_dirs);
        // The write runs on the blocking pool and is not stopped by
        // dropping this future: it checks the flag between chunks and
        // before the rename, and gives up (removing its temporary file).
        let abandoned = Arc::new(AtomicBool::new(false));
        let _guard = AbandonOnDrop(abandoned.clone());
        blocking(move || {
            let mut check = |shown: &str| {
                if abandoned.load(Ordering::SeqCst) {
                    Err(FileError::Cancelled {
                        path: shown.to_owned(),
                    })
                } else {
                    Ok(())
                }
            };
            let written = confine::write(&root, &path, if_exists, create_dirs, &bytes, &mut check)?;
            Ok(FileWriteOutput {
                path: written.path,
                bytes: bytes.len() as u64,
                created: written.created,
            })
        })
        .await
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::file::FileRoot;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_write_that_fails_midway_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "old").unwrap();
        let root = FileRoot::new(dir.path());
        let big = vec![b'x'; 3 * (1 << 20) + 5];
        for if_exists in [IfExists::Overwrite, IfExists::Fail] {
            // The second check (after one chunk was written) fails, as a
            // full disk would.
            let mut calls = 0;
            let mut check = |shown: &str| {
                calls += 1;
                if calls == 2 {
                    Err(FileError::Io {
                        path: shown.to_owned(),
                        action: "writing",
                        source: std::io::Error::other("no space left (simulated)"),
                    })
                } else {
                    Ok(())
                }
            };
            let target = if if_exists == IfExists::Fail {
                "new.txt"
            } else {
                "a.txt"
            };
            let err =
                confine::write(&root, target, if_exists, false, &big, &mut check).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("`{target}`: writing: no space left (simulated)")
            );
            assert_eq!(
                std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
                "old"
            );
            assert_eq!(names(dir.path()), ["a.txt"]);
        }
    }

    #[test]
    fn a_cancelled_write_gives_up_before_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "old").unwrap();
        let root = FileRoot::new(dir.path());
        // Cancelled once everything is written and synced: the last check.
        let mut calls = 0;
        let mut check = |shown: &str| {
            calls += 1;
            if calls > 1 {
                Err(FileError::Cancelled {
                    path: shown.to_owned(),
                })
            } else {
                Ok(())
            }
        };
        let err = confine::write(
            &root,
            "a.txt",
            IfExists::Overwrite,
            false,
            b"new",
            &mut check,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the write of `a.txt` was cancelled; the file is unchanged"
        );
        assert_eq!(calls, 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "old"
        );
        assert_eq!(names(dir.path()), ["a.txt"]);
    }
}
