//! CSV text in and out: [`CsvParse`] and [`CsvWrite`].

use std::collections::HashMap;

use ghostflow::prelude::*;
use indexmap::IndexSet;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserializer, Serializer};
use serde_json::Value;

use super::json::Text;
use super::list_input;

/// One ASCII character of CSV syntax (a delimiter or a quote), written as a
/// one-character string (`","`, `";"`, `"\t"`, `"|"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsvChar(pub u8);

impl CsvChar {
    /// Checks `text` is one ASCII character other than a line break.
    ///
    /// # Errors
    /// What is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.as_bytes() {
            [b'\n' | b'\r'] => Err("a line break cannot separate or quote fields".into()),
            [b] if b.is_ascii() => Ok(CsvChar(*b)),
            _ => Err(format!(
                "`{text}` is not one ASCII character (such as `,`, `;`, `|` or a tab)"
            )),
        }
    }
}

impl Serialize for CsvChar {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&char::from(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for CsvChar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        CsvChar::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for CsvChar {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CsvChar".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 1,
            "description": "One ASCII character, such as `,`, `;`, `|` or a tab.",
        })
    }
}

fn comma() -> CsvChar {
    CsvChar(b',')
}

fn double_quote() -> CsvChar {
    CsvChar(b'"')
}

/// Which fields [`CsvParse`] trims of white space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CsvTrim {
    /// None.
    #[default]
    None,
    /// The header's names only.
    Headers,
    /// The values only.
    Fields,
    /// Names and values.
    All,
}

/// The items of a [`CsvParse`].
#[derive(Ports, Debug)]
pub struct CsvRows {
    /// One object per row (with a header) or one list per row (without).
    pub items: Value,
}

/// Parses CSV text into a list of objects named by the header row, or of
/// lists without one.
///
/// The delimiter and the quote are one ASCII character each (`,` and `"`
/// by default; `"\t"` for tab-separated text); a quote inside a quoted
/// field is doubled. `trim` removes white space around names and/or
/// values. With `infer_types`, `true`/`false` (in any case) become
/// booleans and numbers written plainly (`-12`, `3.5`; not `007`, `1e5` or
/// integers beyond 64 bits) become numbers; with `empty_as_null`, empty
/// fields become `null`; everything else stays text. A row with more or
/// fewer fields than the header fails the node, naming its line, unless
/// `flexible` is set: then missing fields are `null` and extra ones are
/// named `column_<n>`. Empty header names are `column_<n>` too; a name
/// given twice fails the node.
///
/// ```yaml
/// - id: orders
///   type: csv_parse
///   config:
///     delimiter: ";"
///     infer_types: true
///     empty_as_null: true
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Text, output = CsvRows, category = "data")]
#[serde(deny_unknown_fields)]
pub struct CsvParse {
    /// Whether the first row names the columns.
    #[serde(default = "crate::yes")]
    pub header: bool,
    /// The field separator.
    #[serde(default = "comma")]
    pub delimiter: CsvChar,
    /// The quote character.
    #[serde(default = "double_quote")]
    pub quote: CsvChar,
    /// What to trim of white space: `none`, `headers`, `fields` or `all`.
    #[serde(default)]
    pub trim: CsvTrim,
    /// Whether to read booleans and plainly written numbers as such.
    #[serde(default)]
    pub infer_types: bool,
    /// Whether empty fields are `null` rather than `""`.
    #[serde(default)]
    pub empty_as_null: bool,
    /// Whether rows may have more or fewer fields than the header.
    #[serde(default)]
    pub flexible: bool,
}

impl Default for CsvParse {
    fn default() -> Self {
        CsvParse {
            header: true,
            delimiter: comma(),
            quote: double_quote(),
            trim: CsvTrim::None,
            infer_types: false,
            empty_as_null: false,
            flexible: false,
        }
    }
}

impl CsvParse {
    /// A field's value.
    fn value(&self, field: &str) -> Value {
        if field.is_empty() && self.empty_as_null {
            return Value::Null;
        }
        if self.infer_types
            && let Some(v) = infer(field)
        {
            return v;
        }
        Value::String(field.to_owned())
    }
}

/// A boolean or plainly written number, if `field` is one.
fn infer(field: &str) -> Option<Value> {
    if field.eq_ignore_ascii_case("true") {
        return Some(Value::Bool(true));
    }
    if field.eq_ignore_ascii_case("false") {
        return Some(Value::Bool(false));
    }
    let digits = field.strip_prefix('-').unwrap_or(field);
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !plain(whole) || (whole.len() > 1 && whole.starts_with('0')) {
        return None;
    }
    match fraction {
        None => field.parse::<i64>().ok().map(Value::from),
        Some(f) if plain(f) => field
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        Some(_) => None,
    }
}

impl Run for CsvParse {
    async fn run(&self, input: Text, _ctx: &Context) -> Result<CsvRows, NodeError> {
        let text = input.text.strip_prefix('\u{feff}').unwrap_or(&input.text);
        let trim = match self.trim {
            CsvTrim::None => csv::Trim::None,
            CsvTrim::Headers => csv::Trim::Headers,
            CsvTrim::Fields => csv::Trim::Fields,
            CsvTrim::All => csv::Trim::All,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(self.header)
            .delimiter(self.delimiter.0)
            .quote(self.quote.0)
            .trim(trim)
            .flexible(true)
            .from_reader(text.as_bytes());
        let bad = |e: csv::Error| {
            let line = e
                .position()
                .map(|p| format!(" at line {}", p.line()))
                .unwrap_or_default();
            NodeError::permanent(format!(
                "input `text`: not valid CSV{line}: {}",
                e.kind_text()
            ))
        };
        let names: Option<Vec<String>> = if self.header {
            let header = reader.headers().map_err(bad)?.clone();
            let mut names = Vec::with_capacity(header.len());
            let mut seen: HashMap<String, usize> = HashMap::new();
            for (i, name) in header.iter().enumerate() {
                let name = if name.is_empty() {
                    format!("column_{}", i + 1)
                } else {
                    name.to_owned()
                };
                if let Some(first) = seen.insert(name.clone(), i + 1) {
                    return Err(NodeError::permanent(format!(
                        "input `text`: the header names `{name}` twice (columns {first} and {})",
                        i + 1
                    )));
                }
                names.push(name);
            }
            Some(names)
        } else {
            None
        };
        let mut items = Vec::new();
        let mut width = names.as_ref().map(Vec::len);
        for record in reader.records() {
            let record = record.map_err(bad)?;
            let line = record.position().map_or(0, csv::Position::line);
            let expected = *width.get_or_insert(record.len());
            if record.len() != expected && !self.flexible {
                let what = if names.is_some() {
                    "the header"
                } else {
                    "the first row"
                };
                return Err(NodeError::permanent(format!(
                    "input `text`: line {line} has {} field(s) where {what} has {expected} (set `flexible: true` to accept ragged rows)",
                    record.len()
                )));
            }
            match &names {
                Some(names) => {
                    let mut object = serde_json::Map::with_capacity(names.len());
                    for (i, name) in names.iter().enumerate() {
                        let value = record.get(i).map_or(Value::Null, |f| self.value(f));
                        object.insert(name.clone(), value);
                    }
                    for (i, field) in record.iter().enumerate().skip(names.len()) {
                        object.insert(format!("column_{}", i + 1), self.value(field));
                    }
                    items.push(Value::Object(object));
                }
                None => items.push(Value::Array(record.iter().map(|f| self.value(f)).collect())),
            }
        }
        Ok(CsvRows {
            items: Value::Array(items),
        })
    }
}

/// The text of a CSV error, without the crate's prefix.
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for csv::Error {
    fn kind_text(&self) -> String {
        let text = self.to_string();
        text.strip_prefix("CSV error: ").unwrap_or(&text).to_owned()
    }
}

/// How [`CsvWrite`] ends lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineEnding {
    /// `\n`.
    #[default]
    Lf,
    /// `\r\n` (as RFC 4180 and spreadsheets on Windows expect).
    Crlf,
}

/// Writes a list of objects as CSV text, one row per item under a header
/// of the column names.
///
/// The columns are `columns` in that order, or every key of the items in
/// the order they first appear. Strings are written as they are, numbers
/// and booleans as JSON writes them, missing fields and `null` as empty
/// fields, and lists and objects as JSON text; fields are quoted when they
/// need to be. Items that are lists are written as rows as they are.
/// `header: false` leaves out the header row.
///
/// ```yaml
/// - id: report
///   type: csv_write
///   config:
///     columns: [id, customer, total]
///     delimiter: ";"
///     line_ending: crlf
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = CsvRows, output = Text, category = "data")]
#[serde(deny_unknown_fields)]
pub struct CsvWrite {
    /// The columns, in order; by default every key, in first-seen order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// Whether to write the header row.
    #[serde(default = "crate::yes")]
    pub header: bool,
    /// The field separator.
    #[serde(default = "comma")]
    pub delimiter: CsvChar,
    /// The quote character.
    #[serde(default = "double_quote")]
    pub quote: CsvChar,
    /// `lf` (default) or `crlf`.
    #[serde(default)]
    pub line_ending: LineEnding,
}

impl Default for CsvWrite {
    fn default() -> Self {
        CsvWrite {
            columns: None,
            header: true,
            delimiter: comma(),
            quote: double_quote(),
            line_ending: LineEnding::Lf,
        }
    }
}

/// A value as a CSV field.
fn field(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Run for CsvWrite {
    async fn run(&self, input: CsvRows, _ctx: &Context) -> Result<Text, NodeError> {
        let items = list_input("items", input.items)?;
        for (i, item) in items.iter().enumerate() {
            if !matches!(item, Value::Object(_) | Value::Array(_)) {
                return Err(NodeError::permanent(format!(
                    "input `items`: item {i} is {}; rows are objects (or lists)",
                    crate::kind(item)
                )));
            }
        }
        let columns: Vec<String> = match &self.columns {
            Some(columns) => columns.clone(),
            None => {
                let mut seen = IndexSet::new();
                for item in &items {
                    if let Value::Object(map) = item {
                        for key in map.keys() {
                            if !seen.contains(key) {
                                seen.insert(key.clone());
                            }
                        }
                    }
                }
                seen.into_iter().collect()
            }
        };
        let terminator = match self.line_ending {
            LineEnding::Lf => csv::Terminator::Any(b'\n'),
            LineEnding::Crlf => csv::Terminator::CRLF,
        };
        let mut writer = csv::WriterBuilder::new()
            .delimiter(self.delimiter.0)
            .quote(self.quote.0)
            .terminator(terminator)
            .flexible(true)
            .from_writer(Vec::new());
        let failed = |e: csv::Error| NodeError::permanent(format!("cannot write CSV: {e}"));
        if self.header && !columns.is_empty() {
            writer.write_record(&columns).map_err(failed)?;
        }
        for item in &items {
            match item {
                Value::Object(map) => writer
                    .write_record(
                        columns
                            .iter()
                            .map(|c| map.get(c).map(field).unwrap_or_default()),
                    )
                    .map_err(failed)?,
                Value::Array(row) => writer.write_record(row.iter().map(field)).map_err(failed)?,
                _ => {}
            }
        }
        let bytes = writer
            .into_inner()
            .map_err(|e| NodeError::permanent(format!("cannot write CSV: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| NodeError::permanent(format!("cannot write CSV: {e}")))?;
        Ok(Text { text })
    }
}
