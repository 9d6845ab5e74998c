//! Field paths, the one way the data family names a place in an item:
//! `customer.name`, `lines[0].sku`, `lines[-1]`, `["first name"]`,
//! `meta["a.b"]`.

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An object's field.
    Key(String),
    /// A list's item; negative counts from the end (`-1` is the last).
    Index(i64),
}

/// A place in a JSON value: names separated by dots, list indexes in
/// brackets, and names with dots, brackets or quotes written as JSON
/// strings in brackets.
///
/// `customer.name`, `lines[0].sku`, `lines[-1]`, `["first name"]`,
/// `meta["a.b"]`. Names are taken as written (spaces included, so CSV
/// headers such as `Order Date` work); a path is checked when the config is
/// read. Reading a path that is not there gives nothing (treated as
/// `null`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

impl FieldPath {
    /// Parses a path.
    ///
    /// # Errors
    /// What is wrong and where (`customer..name`: an empty name after the
    /// first dot).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |at: usize, what: &str| {
            format!(
                "`{text}` is not a field path: {what} at character {}",
                at + 1
            )
        };
        if text.is_empty() {
            return Err("a field path cannot be empty".into());
        }
        if text.trim() != text {
            return Err(format!(
                "`{text}` is not a field path: it starts or ends with white space (write such a name as `[\" name\"]`)"
            ));
        }
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut segments = Vec::new();
        let mut i = 0;
        let mut expect_name = true;
        while i < chars.len() {
            let (at, c) = chars[i];
            match c {
                '[' => {
                    let close = chars[i..]
                        .iter()
                        .position(|(_, c)| *c == ']')
                        .map(|p| p + i);
                    let inner_start = at + 1;
                    if let Some('"') = chars.get(i + 1).map(|(_, c)| *c) {
                        // A quoted name: a JSON string, then `]`.
                        let rest = &text[inner_start..];
                        let mut stream =
                            serde_json::Deserializer::from_str(rest).into_iter::<String>();
                        let name = match stream.next() {
                            Some(Ok(name)) => name,
                            _ => return Err(bad(at, "an unfinished quoted name")),
                        };
                        let end = inner_start + stream.byte_offset();
                        if !text[end..].starts_with(']') {
                            return Err(bad(end, "`]` expected after a quoted name"));
                        }
                        segments.push(Segment::Key(name));
                        i = chars
                            .iter()
                            .position(|(p, _)| *p == end)
                            .unwrap_or(chars.len())
                            + 1;
                    } else {
                        let Some(close) = close else {
                            return Err(bad(at, "a `[` without `]`"));
                        };
                        let inner = &text[inner_start..chars[close].0];
                        let index = inner.parse::<i64>().map_err(|_| {
                            bad(
                                at,
                                &format!(
                                    "`[{inner}]` is neither an index nor a quoted name (write names as `[\"{inner}\"]`)"
                                ),
                            )
                        })?;
                        segments.push(Segment::Index(index));
                        i = close + 1;
                    }
                    expect_name = false;
                }
                '.' => {
                    if expect_name {
                        return Err(bad(at, "an empty name"));
                    }
                    expect_name = true;
                    i += 1;
                    if i == chars.len() {
                        return Err(bad(at, "an empty name after the last dot"));
                    }
                }
                ']' | '"' => return Err(bad(at, &format!("a stray `{c}`"))),
                _ => {
                    if !expect_name {
                        return Err(bad(at, "a name must follow a dot"));
                    }
                    let end = chars[i..]
                        .iter()
                        .position(|(_, c)| matches!(c, '.' | '[' | ']' | '"'))
                        .map_or(chars.len(), |p| p + i);
                    let name: String = chars[i..end].iter().map(|(_, c)| c).collect();
                    segments.push(Segment::Key(name));
                    i = end;
                    expect_name = false;
                }
            }
        }
        Ok(FieldPath { segments })
    }

    /// The path's steps.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The value at this path, if there is one.
    pub fn get<'v>(&self, value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        let mut current = value;
        for segment in &self.segments {
            current = match (segment, current) {
                (Segment::Key(k), serde_json::Value::Object(map)) => map.get(k)?,
                (Segment::Index(i), serde_json::Value::Array(items)) => {
                    let index = if *i < 0 {
                        items
                            .len()
                            .checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
                    } else {
                        usize::try_from(*i).ok()?
                    };
                    items.get(index)?
                }
                _ => return None,
            };
        }
        Some(current)
    }

    /// The value at this path, `null` when it is missing.
    pub fn get_or_null<'v>(&self, value: &'v serde_json::Value) -> &'v serde_json::Value {
        static NULL: serde_json::Value = serde_json::Value::Null;
        self.get(value).unwrap_or(&NULL)
    }

    /// Whether the path can name a place to write (no negative index).
    pub fn check_writable(&self) -> Result<(), String> {
        if self
            .segments
            .iter()
            .any(|s| matches!(s, Segment::Index(i) if *i < 0))
        {
            return Err(format!(
                "`{self}` has a negative index, which cannot name a place to write"
            ));
        }
        Ok(())
    }

    /// Sets `value` at this path in `object`, making objects for names and
    /// lists (padded with `null`) for indexes on the way; a value in the way
    /// that is neither is replaced.
    pub fn set(
        &self,
        object: &mut serde_json::Map<String, serde_json::Value>,
        value: serde_json::Value,
    ) {
        let Some((Segment::Key(first), rest)) = self.segments.split_first() else {
            // A path starting with an index has no place in an object: keep
            // the value under the path's text.
            object.insert(self.to_string(), value);
            return;
        };
        let mut slot = object
            .entry(first.clone())
            .or_insert(serde_json::Value::Null);
        for segment in rest {
            slot = match segment {
                Segment::Key(k) => {
                    if !slot.is_object() {
                        *slot = serde_json::Value::Object(serde_json::Map::new());
                    }
                    match slot {
                        serde_json::Value::Object(map) => {
                            map.entry(k.clone()).or_insert(serde_json::Value::Null)
                        }
                        _ => unreachable!("made an object above"),
                    }
                }
                Segment::Index(i) => {
                    let index = usize::try_from(*i).unwrap_or(0);
                    if !slot.is_array() {
                        *slot = serde_json::Value::Array(Vec::new());
                    }
                    match slot {
                        serde_json::Value::Array(items) => {
                            if items.len() <= index {
                                items.resize(index + 1, serde_json::Value::Null);
                            }
                            &mut items[index]
                        }
                        _ => unreachable!("made a list above"),
                    }
                }
            };
        }
        *slot = value;
    }

    /// The last name of the path (`sku` for `lines[0].sku`).
    pub fn last_name(&self) -> Option<&str> {
        self.segments.iter().rev().find_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(k) => {
                    let plain = !k.is_empty() && k.trim() == k && !k.contains(['.', '[', ']', '"']);
                    if plain {
                        if i > 0 {
                            f.write_str(".")?;
                        }
                        f.write_str(k)?;
                    } else {
                        let quoted = serde_json::to_string(k).map_err(|_| fmt::Error)?;
                        write!(f, "[{quoted}]")?;
                    }
                }
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for FieldPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FieldPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        FieldPath::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for FieldPath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FieldPath".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "description": "A field path: `customer.name`, `lines[0].sku`, `lines[-1]`, `[\"first name\"]`.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_parse_read_and_print() {
        let value = json!({
            "customer": {"name": "Ada", "first name": "A"},
            "lines": [{"sku": "x"}, {"sku": "y"}],
            "a.b": 1,
            "Order Date": "2024-01-01",
            "0": "zero"
        });
        for (text, expected, shown) in [
            ("customer.name", Some(json!("Ada")), "customer.name"),
            (
                "customer[\"first name\"]",
                Some(json!("A")),
                "customer.first name",
            ),
            ("lines[0].sku", Some(json!("x")), "lines[0].sku"),
            ("lines[-1].sku", Some(json!("y")), "lines[-1].sku"),
            ("lines[-3]", None, "lines[-3]"),
            ("lines[5]", None, "lines[5]"),
            ("[\"a.b\"]", Some(json!(1)), "[\"a.b\"]"),
            ("Order Date", Some(json!("2024-01-01")), "Order Date"),
            ("0", Some(json!("zero")), "0"),
            ("customer.name.first", None, "customer.name.first"),
            ("nope", None, "nope"),
            ("ünïcode.名前", None, "ünïcode.名前"),
        ] {
            let path = FieldPath::parse(text).unwrap();
            assert_eq!(path.get(&value).cloned(), expected, "{text}");
            assert_eq!(path.to_string(), shown, "{text}");
            assert_eq!(FieldPath::parse(&path.to_string()).unwrap(), path);
        }
    }

    #[test]
    fn bad_paths_say_what_and_where() {
        for (text, expected) in [
            ("", "cannot be empty"),
            ("a..b", "an empty name at character 3"),
            (".a", "an empty name at character 1"),
            ("a.", "an empty name after the last dot"),
            ("a[", "a `[` without `]`"),
            ("a[x]", "`[x]` is neither an index nor a quoted name"),
            ("a[\"x]", "an unfinished quoted name"),
            ("a[\"x\"", "`]` expected"),
            ("a]", "a stray `]`"),
            ("a[0]b", "a name must follow a dot"),
            (" a", "white space"),
        ] {
            let err = FieldPath::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn paths_write_nested_values() {
        let mut out = serde_json::Map::new();
        FieldPath::parse("customer.name")
            .unwrap()
            .set(&mut out, json!("Ada"));
        FieldPath::parse("customer.id")
            .unwrap()
            .set(&mut out, json!(7));
        FieldPath::parse("lines[2].sku")
            .unwrap()
            .set(&mut out, json!("z"));
        assert_eq!(
            serde_json::Value::Object(out),
            json!({"customer": {"name": "Ada", "id": 7}, "lines": [null, null, {"sku": "z"}]})
        );
        assert!(FieldPath::parse("a[-1]").unwrap().check_writable().is_err());
    }
}
