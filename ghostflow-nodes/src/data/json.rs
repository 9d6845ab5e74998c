//! JSON text in and out: [`JsonParse`] and [`JsonStringify`].

use ghostflow::prelude::*;
use serde_json::Value;

/// A text.
#[derive(Ports, Debug)]
pub struct Text {
    /// The text.
    pub text: String,
}

/// A JSON value.
#[derive(Ports, Debug)]
pub struct JsonValue {
    /// The value.
    pub value: Value,
}

fn default_max_bytes() -> usize {
    16 * 1024 * 1024
}

/// Parses JSON text into a value; a mistake is reported with its line and
/// column.
///
/// The text must hold exactly one JSON value (white space around it and a
/// leading byte order mark are fine). Texts over `max_bytes` are refused
/// before parsing, and values may nest 128 levels deep.
///
/// ```yaml
/// - id: payload
///   type: json_parse
///   config: { max_bytes: 1048576 }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Text, output = JsonValue, category = "data")]
#[serde(deny_unknown_fields)]
pub struct JsonParse {
    /// The longest text accepted, in bytes (default 16 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

impl Default for JsonParse {
    fn default() -> Self {
        JsonParse {
            max_bytes: default_max_bytes(),
        }
    }
}

impl Run for JsonParse {
    async fn run(&self, input: Text, _ctx: &Context) -> Result<JsonValue, NodeError> {
        let text = input.text.strip_prefix('\u{feff}').unwrap_or(&input.text);
        if text.len() > self.max_bytes {
            return Err(NodeError::permanent(format!(
                "input `text`: {} bytes is more than {} (config.max_bytes)",
                text.len(),
                self.max_bytes
            )));
        }
        if text.trim().is_empty() {
            return Err(NodeError::permanent(
                "input `text`: the text is empty, not JSON",
            ));
        }
        let value = serde_json::from_str(text)
            .map_err(|e| NodeError::permanent(format!("input `text`: not valid JSON: {e}")))?;
        Ok(JsonValue { value })
    }
}

/// Writes a value as JSON text, compact or indented, with keys in their
/// order or sorted.
///
/// Keys keep the order the value has unless `sort_keys` is set (then
/// every object's keys are sorted by Unicode code points, at every level).
/// `pretty` indents with two spaces.
///
/// ```yaml
/// - id: body_text
///   type: json_stringify
///   config: { pretty: true, sort_keys: true }
/// ```
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = JsonValue, output = Text, category = "data")]
#[serde(deny_unknown_fields)]
pub struct JsonStringify {
    /// Whether to indent (two spaces) and break lines.
    #[serde(default)]
    pub pretty: bool,
    /// Whether to sort the keys of every object.
    #[serde(default)]
    pub sort_keys: bool,
}

/// `value` with every object's keys sorted.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

impl Run for JsonStringify {
    async fn run(&self, input: JsonValue, _ctx: &Context) -> Result<Text, NodeError> {
        let value = if self.sort_keys {
            sorted(input.value)
        } else {
            input.value
        };
        let text = if self.pretty {
            serde_json::to_string_pretty(&value)
        } else {
            serde_json::to_string(&value)
        }
        .map_err(|e| {
            NodeError::permanent(format!("input `value`: cannot write it as JSON: {e}"))
        })?;
        Ok(Text { text })
    }
}
