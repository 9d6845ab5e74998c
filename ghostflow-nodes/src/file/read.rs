//! [`FileRead`]: a file's content as text, JSON, base64 bytes or lines.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ghostflow::prelude::*;

use super::error::FileError;
use super::{blocking, choose_path, confine, file_root};

/// How [`FileRead`] gives a file's content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadFormat {
    /// A string; the file must be UTF-8.
    #[default]
    Text,
    /// Parsed as JSON (a UTF-8 byte order mark is skipped).
    Json,
    /// The bytes in standard base64, for any file.
    Bytes,
    /// A list of strings, one per line, without their `\n` or `\r\n`; a
    /// last line without a line break counts too.
    Lines,
}

/// A path that completes the config at run time.
#[derive(Ports, Debug)]
pub struct PathInput {
    /// The path relative to the file root, in place of the configured one.
    pub path: Option<String>,
}

/// What [`FileRead`] read.
#[derive(Ports, Debug)]
pub struct FileReadOutput {
    /// The content, as `format` says.
    pub content: serde_json::Value,
    /// The path read, relative to the file root.
    pub path: String,
    /// The file's size in bytes.
    pub bytes: u64,
}

/// Reads a file under the engine's file root, as text, JSON, base64 bytes
/// or lines.
///
/// The path is relative to the file root (see the `file` family's rules:
/// nothing outside the root can be read, whatever links or `..` the path
/// holds); it comes from the config, where a document may compute it with
/// an expression, or from the `path` input. A missing file, a directory, or
/// a file over `max_bytes` fails the node permanently, naming the path. A
/// file that is not what `format` says (not UTF-8, not JSON) fails too,
/// saying where.
///
/// ```yaml
/// - id: load_settings
///   type: file_read
///   config:
///     path: "config/{{ input.env }}.json"
///     format: json
///     max_bytes: 1048576
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = PathInput, output = FileReadOutput, category = "file")]
#[serde(deny_unknown_fields)]
pub struct FileRead {
    /// The file, relative to the file root; the `path` input replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `text` (the default), `json`, `bytes` (base64) or `lines`.
    #[serde(default)]
    pub format: ReadFormat,
    /// The largest file read, in bytes (default 10 MiB); a larger one
    /// fails the node.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
}

fn default_max_bytes() -> u64 {
    10 * 1024 * 1024
}

impl FileRead {
    /// Reads `path` as text.
    pub fn new(path: impl Into<String>) -> Self {
        FileRead {
            path: Some(path.into()),
            format: ReadFormat::Text,
            max_bytes: default_max_bytes(),
        }
    }
}

impl Run for FileRead {
    async fn run(&self, input: PathInput, ctx: &Context) -> Result<FileReadOutput, NodeError> {
        let root = file_root(ctx)?;
        let path = choose_path(self.path.as_ref(), input.path)?;
        let (format, max_bytes) = (self.format, self.max_bytes);
        blocking(move || {
            let (path, bytes) = confine::read(&root, &path, max_bytes)?;
            let size = bytes.len() as u64;
            let content = decode(format, bytes).map_err(|reason| FileError::Decode {
                path: path.clone(),
                reason,
            })?;
            Ok(FileReadOutput {
                content,
                path,
                bytes: size,
            })
        })
        .await
    }
}

/// The content of a file as `format` says, or what is wrong with it.
fn decode(format: ReadFormat, bytes: Vec<u8>) -> Result<serde_json::Value, String> {
    let text = |bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            format!(
                "not UTF-8 text: the byte 0x{:02x} at offset {at} (line {line}) starts no valid character; `format: bytes` reads any file as base64",
                e.as_bytes()[at]
            )
        })
    };
    Ok(match format {
        ReadFormat::Text => serde_json::Value::String(text(bytes)?),
        ReadFormat::Bytes => serde_json::Value::String(BASE64.encode(&bytes)),
        ReadFormat::Json => {
            let body = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
            serde_json::from_slice(body)
                .map_err(|e| format!("not valid JSON: {e}; `format: text` reads it as text"))?
        }
        ReadFormat::Lines => {
            let text = text(bytes)?;
            let body = text.strip_suffix('\n').unwrap_or(&text);
            if text.is_empty() {
                serde_json::Value::Array(Vec::new())
            } else {
                body.split('\n')
                    .map(|line| serde_json::Value::from(line.strip_suffix('\r').unwrap_or(line)))
                    .collect()
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contents_decode_as_told() {
        assert_eq!(
            decode(ReadFormat::Lines, b"a\r\nb\n\nc".to_vec()),
            Ok(json!(["a", "b", "", "c"]))
        );
        assert_eq!(decode(ReadFormat::Lines, b"a\n".to_vec()), Ok(json!(["a"])));
        assert_eq!(decode(ReadFormat::Lines, b"\n".to_vec()), Ok(json!([""])));
        assert_eq!(decode(ReadFormat::Lines, Vec::new()), Ok(json!([])));
        assert_eq!(
            decode(ReadFormat::Json, b"\xef\xbb\xbf{\"a\": 1}".to_vec()),
            Ok(json!({"a": 1}))
        );
        assert_eq!(
            decode(ReadFormat::Text, b"ok\nthen \xff".to_vec()).unwrap_err(),
            "not UTF-8 text: the byte 0xff at offset 8 (line 2) starts no valid character; `format: bytes` reads any file as base64"
        );
        assert_eq!(decode(ReadFormat::Bytes, vec![0, 255]), Ok(json!("AP8=")));
    }
}
