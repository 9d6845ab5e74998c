//! Metadata filters: a small language over the metadata objects of vector
//! records, checked when a flow loads.
//!
//! A filter is a JSON (or YAML) object; every entry must hold:
//!
//! ```yaml
//! filter:
//!   source: guide.md                 # equality with a string, number, boolean or null
//!   lang: { in: [en, fr] }           # one of
//!   year: { gte: 2020, lt: 2025 }    # ranges, on numbers only
//!   draft: { ne: true }              # not equal (also true when the field is missing)
//!   author.name: Ada                 # a dotted name reads nested objects
//!   or:                              # any of
//!     - { tags: ops }                #   a list field matches when one of its items does
//!     - { priority: { gt: 3 } }
//!   not: { status: archived }        # negation
//! ```
//!
//! - Operators of a field: `eq`, `ne` (scalars), `in`, `not_in` (lists of
//!   scalars), `gt`, `gte`, `lt`, `lte` (numbers), `exists` (a boolean).
//!   Several in one object must all hold.
//! - Logic: `and` (a list of filters), `or` (a non-empty list), `not` (a
//!   filter). `{}` matches every record. The names `and`, `or` and `not`
//!   are therefore not usable as field names.
//! - Comparisons do not convert: `"2020"` is not `2020`; numbers compare
//!   by value (`1` is `1.0`). A missing field equals nothing, is in no
//!   list and in no range; `ne` and `not_in` hold for it, and
//!   `exists: false` tests for it.
//! - Bounds: filters nest at most [`MAX_DEPTH`] levels and have at most
//!   [`MAX_CONDITIONS`] conditions.
//!
//! The parsed form ([`FilterExpr`]) is public so that a store over a
//! database can translate it into its own query language.

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The deepest a filter nests.
pub const MAX_DEPTH: usize = 32;

/// The most conditions in one filter.
pub const MAX_CONDITIONS: usize = 1000;

const OPERATORS: &str = "eq, ne, in, not_in, gt, gte, lt, lte, exists";

/// A checked metadata filter; see the [module documentation](self) for
/// the language.
#[derive(Clone, PartialEq)]
pub struct Filter {
    expr: FilterExpr,
    source: Value,
}

/// The parsed form of a [`Filter`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FilterExpr {
    /// Every one holds (true when empty).
    And(Vec<FilterExpr>),
    /// At least one holds (never empty).
    Or(Vec<FilterExpr>),
    /// It does not hold.
    Not(Box<FilterExpr>),
    /// A condition on one field.
    Field {
        /// The path of keys from the metadata object to the field.
        path: Vec<String>,
        /// The condition.
        condition: Condition,
    },
}

/// A condition on one metadata field.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Condition {
    /// Equal to a scalar (a list field: one of its items is).
    Eq(Value),
    /// Not equal (true when missing).
    Ne(Value),
    /// Equal to one of the scalars.
    In(Vec<Value>),
    /// Equal to none of them (true when missing).
    NotIn(Vec<Value>),
    /// A number greater than this.
    Gt(f64),
    /// A number greater than or equal to this.
    Gte(f64),
    /// A number less than this.
    Lt(f64),
    /// A number less than or equal to this.
    Lte(f64),
    /// Present (`true`) or missing (`false`); a present `null` is present.
    Exists(bool),
}

impl Filter {
    /// Parses and checks a filter.
    ///
    /// # Errors
    /// What is wrong and where, such as
    /// `filter.year.gte: expected a number, got a string`.
    pub fn parse(value: &Value) -> Result<Filter, String> {
        let mut budget = MAX_CONDITIONS;
        let expr = parse_object(value, "filter", 0, &mut budget)?;
        Ok(Filter {
            expr,
            source: value.clone(),
        })
    }

    /// The filter that matches every record.
    pub fn all() -> Filter {
        Filter {
            expr: FilterExpr::And(Vec::new()),
            source: Value::Object(Map::new()),
        }
    }

    /// Both filters.
    #[must_use]
    pub fn and(self, other: Filter) -> Filter {
        Filter {
            expr: FilterExpr::And(vec![self.expr, other.expr]),
            source: serde_json::json!({"and": [self.source, other.source]}),
        }
    }

    /// The parsed form.
    pub fn expr(&self) -> &FilterExpr {
        &self.expr
    }

    /// The filter as it was written.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Whether `metadata` passes.
    pub fn matches(&self, metadata: &Map<String, Value>) -> bool {
        self.expr.matches(metadata)
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Filter({})", self.source)
    }
}

impl FilterExpr {
    /// Whether `metadata` passes.
    pub fn matches(&self, metadata: &Map<String, Value>) -> bool {
        match self {
            FilterExpr::And(all) => all.iter().all(|e| e.matches(metadata)),
            FilterExpr::Or(any) => any.iter().any(|e| e.matches(metadata)),
            FilterExpr::Not(e) => !e.matches(metadata),
            FilterExpr::Field { path, condition } => condition.holds(lookup(metadata, path)),
        }
    }
}

fn lookup<'m>(metadata: &'m Map<String, Value>, path: &[String]) -> Option<&'m Value> {
    let (first, rest) = path.split_first()?;
    let mut value = metadata.get(first)?;
    for key in rest {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

/// Scalar equality without conversions; numbers by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        _ => a == b,
    }
}

/// Whether the field's value (or one of its items) equals `wanted`.
fn equals(value: &Value, wanted: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| same(item, wanted)),
        _ => same(value, wanted),
    }
}

impl Condition {
    fn holds(&self, value: Option<&Value>) -> bool {
        let number = || value.and_then(Value::as_f64);
        match self {
            Condition::Eq(wanted) => value.is_some_and(|v| equals(v, wanted)),
            Condition::Ne(wanted) => !value.is_some_and(|v| equals(v, wanted)),
            Condition::In(list) => value.is_some_and(|v| list.iter().any(|w| equals(v, w))),
            Condition::NotIn(list) => !value.is_some_and(|v| list.iter().any(|w| equals(v, w))),
            Condition::Gt(bound) => number().is_some_and(|n| n > *bound),
            Condition::Gte(bound) => number().is_some_and(|n| n >= *bound),
            Condition::Lt(bound) => number().is_some_and(|n| n < *bound),
            Condition::Lte(bound) => number().is_some_and(|n| n <= *bound),
            Condition::Exists(wanted) => value.is_some() == *wanted,
        }
    }
}

fn kind(value: &Value) -> &'static str {
    crate::kind(value)
}

fn parse_object(
    value: &Value,
    at: &str,
    depth: usize,
    budget: &mut usize,
) -> Result<FilterExpr, String> {
    if depth > MAX_DEPTH {
        return Err(format!("{at}: filters nest more than {MAX_DEPTH} levels"));
    }
    let Value::Object(entries) = value else {
        return Err(format!("{at}: expected an object, got {}", kind(value)));
    };
    let mut all = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let here = format!("{at}.{key}");
        match key.as_str() {
            "and" | "or" => {
                let Value::Array(items) = value else {
                    return Err(format!(
                        "{here}: expected a list of filters, got {}",
                        kind(value)
                    ));
                };
                if key == "or" && items.is_empty() {
                    return Err(format!(
                        "{here}: an empty `or` matches nothing; give at least one filter"
                    ));
                }
                let parsed = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| parse_object(item, &format!("{here}[{i}]"), depth + 1, budget))
                    .collect::<Result<Vec<_>, _>>()?;
                all.push(if key == "and" {
                    FilterExpr::And(parsed)
                } else {
                    FilterExpr::Or(parsed)
                });
            }
            "not" => all.push(FilterExpr::Not(Box::new(parse_object(
                value,
                &here,
                depth + 1,
                budget,
            )?))),
            field => {
                let path: Vec<String> = field.split('.').map(str::to_owned).collect();
                if path.iter().any(String::is_empty) {
                    return Err(format!("{here}: a field name has an empty part"));
                }
                for condition in parse_conditions(value, &here)? {
                    if *budget == 0 {
                        return Err(format!("{at}: more than {MAX_CONDITIONS} conditions"));
                    }
                    *budget -= 1;
                    all.push(FilterExpr::Field {
                        path: path.clone(),
                        condition,
                    });
                }
            }
        }
    }
    Ok(if all.len() == 1 {
        all.pop().unwrap_or(FilterExpr::And(Vec::new()))
    } else {
        FilterExpr::And(all)
    })
}

fn scalar(value: &Value, at: &str) -> Result<Value, String> {
    match value {
        Value::Array(_) | Value::Object(_) => Err(format!(
            "{at}: expected a string, number, boolean or null, got {}",
            kind(value)
        )),
        scalar => Ok(scalar.clone()),
    }
}

fn scalars(value: &Value, at: &str) -> Result<Vec<Value>, String> {
    let Value::Array(items) = value else {
        return Err(format!("{at}: expected a list, got {}", kind(value)));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| scalar(item, &format!("{at}[{i}]")))
        .collect()
}

fn number(value: &Value, at: &str) -> Result<f64, String> {
    value.as_f64().ok_or_else(|| {
        format!(
            "{at}: expected a number, got {} (ranges compare numbers only)",
            kind(value)
        )
    })
}

fn parse_conditions(value: &Value, at: &str) -> Result<Vec<Condition>, String> {
    let Value::Object(ops) = value else {
        return Ok(vec![Condition::Eq(scalar(value, at)?)]);
    };
    if ops.is_empty() {
        return Err(format!("{at}: no operator (one of {OPERATORS})"));
    }
    ops.iter()
        .map(|(op, operand)| {
            let here = format!("{at}.{op}");
            Ok(match op.as_str() {
                "eq" => Condition::Eq(scalar(operand, &here)?),
                "ne" => Condition::Ne(scalar(operand, &here)?),
                "in" => Condition::In(scalars(operand, &here)?),
                "not_in" => Condition::NotIn(scalars(operand, &here)?),
                "gt" => Condition::Gt(number(operand, &here)?),
                "gte" => Condition::Gte(number(operand, &here)?),
                "lt" => Condition::Lt(number(operand, &here)?),
                "lte" => Condition::Lte(number(operand, &here)?),
                "exists" => Condition::Exists(operand.as_bool().ok_or_else(|| {
                    format!("{here}: expected true or false, got {}", kind(operand))
                })?),
                other => {
                    return Err(format!(
                        "{at}: unknown operator `{other}` (one of {OPERATORS})"
                    ));
                }
            })
        })
        .collect()
}

impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Filter::parse(&value).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Filter {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MetadataFilter".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "A metadata filter: `field: value` for equality, `field: {in: [..]}`, `field: {gte: 1, lt: 5}` (numbers), `ne`, `not_in`, `exists`; `and`/`or` (lists of filters), `not` (a filter); a dotted name reads nested objects. `{}` matches everything."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn check(filter: Value, metadata: Value) -> bool {
        Filter::parse(&filter).unwrap().matches(&meta(metadata))
    }

    #[test]
    fn the_language_holds_as_documented() {
        let doc = json!({"source": "a.md", "year": 2021, "tags": ["ops", "db"], "author": {"name": "Ada"}, "draft": null});
        assert!(check(json!({}), doc.clone()));
        assert!(check(json!({"source": "a.md"}), doc.clone()));
        assert!(!check(json!({"source": "b.md"}), doc.clone()));
        assert!(check(json!({"year": 2021.0}), doc.clone()));
        assert!(!check(json!({"year": "2021"}), doc.clone()));
        assert!(check(
            json!({"year": {"gte": 2020, "lt": 2022}}),
            doc.clone()
        ));
        assert!(!check(json!({"year": {"gt": 2021}}), doc.clone()));
        assert!(check(json!({"tags": "db"}), doc.clone()));
        assert!(check(json!({"tags": {"in": ["x", "ops"]}}), doc.clone()));
        assert!(!check(json!({"tags": {"not_in": ["ops"]}}), doc.clone()));
        assert!(check(json!({"author.name": "Ada"}), doc.clone()));
        assert!(check(json!({"missing": {"ne": 1}}), doc.clone()));
        assert!(check(json!({"missing": {"not_in": [1]}}), doc.clone()));
        assert!(!check(json!({"missing": {"in": [1]}}), doc.clone()));
        assert!(check(json!({"missing": {"exists": false}}), doc.clone()));
        assert!(check(json!({"draft": {"exists": true}}), doc.clone()));
        assert!(check(json!({"draft": null}), doc.clone()));
        assert!(check(
            json!({"or": [{"source": "x"}, {"year": 2021}]}),
            doc.clone()
        ));
        assert!(!check(
            json!({"and": [{"source": "a.md"}, {"year": 1}]}),
            doc.clone()
        ));
        assert!(check(json!({"not": {"source": "x"}}), doc.clone()));
        assert!(!check(json!({"source": {"gt": 1}}), doc));
    }

    #[test]
    fn mistakes_are_reported_where_they_are() {
        let error = |v: Value| Filter::parse(&v).unwrap_err();
        assert_eq!(
            error(json!({"year": {"gte": "2020"}})),
            "filter.year.gte: expected a number, got a string (ranges compare numbers only)"
        );
        assert_eq!(
            error(json!({"year": {"gtee": 1}})),
            "filter.year: unknown operator `gtee` (one of eq, ne, in, not_in, gt, gte, lt, lte, exists)"
        );
        assert_eq!(
            error(json!({"or": []})),
            "filter.or: an empty `or` matches nothing; give at least one filter"
        );
        assert_eq!(
            error(json!({"or": [{"a": [1]}]})),
            "filter.or[0].a: expected a string, number, boolean or null, got an array"
        );
        assert_eq!(
            error(json!({"a": {"in": [1, {}]}})),
            "filter.a.in[1]: expected a string, number, boolean or null, got an object"
        );
        assert_eq!(
            error(json!([1])),
            "filter: expected an object, got an array"
        );
        assert_eq!(
            error(json!({"a..b": 1})),
            "filter.a..b: a field name has an empty part"
        );
        let mut deep = json!({"a": 1});
        for _ in 0..40 {
            deep = json!({ "not": deep });
        }
        assert!(error(deep).ends_with("filters nest more than 32 levels"));
    }
}
