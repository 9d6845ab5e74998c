//! Data nodes: build, reshape, filter, sort, summarize, parse and write
//! JSON values, CSV and dates.
//!
//! | node | does |
//! |------|------|
//! | [`Set`] | builds an object from named fields |
//! | [`Transform`] | reshapes a value with a jq filter |
//! | [`Filter`] | keeps the items of a list that satisfy a jq condition |
//! | [`Sort`] | sorts a list by fields |
//! | [`Limit`] | keeps a slice of a list, from its start or end |
//! | [`Deduplicate`] | removes duplicate items |
//! | [`Aggregate`] | groups items and computes counts, sums, averages, ... |
//! | [`SplitOut`] | turns a list inside an object into items |
//! | [`JsonParse`], [`JsonStringify`] | JSON text in and out |
//! | [`CsvParse`], [`CsvWrite`] | CSV text in and out |
//! | [`DatetimeParse`], [`DatetimeFormat`], [`DatetimeAdd`], [`DatetimeDiff`], [`DatetimeStartOf`] | dates and times |
//!
//! Rules shared by the family:
//!
//! - **Lists.** A node that works on a list takes it on its `items` input;
//!   anything else fails the node permanently (`input `items`: expected a
//!   list, got an object`).
//! - **Field paths.** Every field is named with one syntax, checked when
//!   the flow loads ([`FieldPath`]): `customer.name`, `lines[0].sku`,
//!   `lines[-1]`, `["first name"]`. A missing field reads as `null`.
//! - **One order of values** ([`Sort`], `min`/`max` in [`Aggregate`]):
//!   `null` < `false` < `true` < numbers < strings < lists < objects;
//!   numbers by value, strings by Unicode code points. Equality (for
//!   [`Deduplicate`], groups, `count_distinct`) is JSON equality: keys in
//!   any order, `1` equal to `1.0`.
//! - **jq in a sandbox.** [`Transform`] and [`Filter`] compile their filter
//!   when the flow loads (errors give jaq's message with line and column)
//!   and run it on a thread of their own under `limits` (time, steps,
//!   outputs, bytes), without builtins that read the host or have effects.
//!   What the limits cover, and what they cannot, is described on
//!   [`JqLimits`].
//! - **Dates.** The datetime nodes use jiff with its bundled time zone
//!   database (no files are read) and pass date-times as RFC 3339 text.
//!   One node per operation, so that each has just the settings it needs.
//! - **Errors** are permanent (retrying cannot change data) and name the
//!   input, item or config field; bad patterns, zones, spans, paths and
//!   filters are refused when the flow loads, at their config path.
//!
//! No node of the family reads secrets or makes connections.

mod csv;
mod datetime;
mod items;
mod jq;
mod json;
mod order;
mod path;
mod transform;

use ghostflow::Registry;
use ghostflow::prelude::*;

pub use self::csv::{CsvChar, CsvParse, CsvRows, CsvTrim, CsvWrite, LineEnding};
pub use self::datetime::{
    DatetimeAdd, DatetimeDiff, DatetimeDiffIn, DatetimeFormat, DatetimeIn, DatetimeOut,
    DatetimeParse, DatetimeParseIn, DatetimeParseOut, DatetimeStartOf, DayOfWeek, DiffOut,
    DisplayFormat, FormattedOut, ParseFormat, Pattern, SpanText, StartUnit, TimeUnit, TimeZoneName,
};
pub use self::items::{
    Aggregate, AggregateOp, AggregateOut, Aggregation, Deduplicate, Deduplicated, Items, Keep,
    Limit, LimitFrom, NullsAt, Sort, SortKey, SortOrder, SplitOut, SplitOutIn,
};
pub use self::jq::JqLimits;
pub use self::json::{JsonParse, JsonStringify, JsonValue, Text};
pub use self::path::{FieldPath, Segment};
pub use self::transform::{
    Filter, FilterIn, FilterOut, JqFilter, JqOutput, Transform, TransformIn, TransformOut,
};

/// Registers the data nodes.
pub(crate) fn register(registry: &mut Registry) {
    registry
        .register::<Set>()
        .register::<Transform>()
        .register::<Filter>()
        .register::<Sort>()
        .register::<Limit>()
        .register::<Deduplicate>()
        .register::<Aggregate>()
        .register::<SplitOut>()
        .register::<JsonParse>()
        .register::<JsonStringify>()
        .register::<CsvParse>()
        .register::<CsvWrite>()
        .register::<DatetimeParse>()
        .register::<DatetimeFormat>()
        .register::<DatetimeAdd>()
        .register::<DatetimeDiff>()
        .register::<DatetimeStartOf>();
}

/// The list on input `port`, or a permanent error saying what came instead.
pub(crate) fn list_input(
    port: &str,
    value: serde_json::Value,
) -> Result<Vec<serde_json::Value>, NodeError> {
    match value {
        serde_json::Value::Array(items) => Ok(items),
        other => Err(NodeError::permanent(format!(
            "input `{port}`: expected a list, got {}",
            crate::kind(&other)
        ))),
    }
}

/// An object to extend; absent to start from an empty one.
#[derive(Ports, Debug)]
pub struct Base {
    /// Fields already there; `fields` are set over them. Must be an object
    /// when given.
    pub base: Option<serde_json::Value>,
}

/// A JSON value.
#[derive(Ports, Debug)]
pub struct JsonOut {
    /// The value.
    pub value: serde_json::Value,
}

/// Builds an object from named fields, set over the `base` input when it is
/// connected.
///
/// In documents, field values are usually expressions.
///
/// ```yaml
/// - id: customer
///   type: set
///   config:
///     fields:
///       full_name: "{{ input.first }} {{ input.last }}"
///       total: "{{ nodes.cart.value.price * 2 }}"
///       source: web
/// ```
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = Base, output = JsonOut, category = "data")]
pub struct Set {
    /// The fields to set, in order.
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Run for Set {
    async fn run(&self, input: Base, _ctx: &Context) -> Result<JsonOut, NodeError> {
        let mut object = match input.base {
            None | Some(serde_json::Value::Null) => serde_json::Map::new(),
            Some(serde_json::Value::Object(map)) => map,
            Some(other) => {
                return Err(NodeError::permanent(format!(
                    "input `base` must be an object, got {}",
                    crate::kind(&other)
                )));
            }
        };
        for (key, value) in &self.fields {
            object.insert(key.clone(), value.clone());
        }
        Ok(JsonOut {
            value: serde_json::Value::Object(object),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghostflow::Inputs;

    #[tokio::test]
    async fn set_builds_over_the_base_and_refuses_a_non_object() {
        let mut b = Flow::builder("set");
        let base = b.input::<serde_json::Value>("base");
        let set = b.add(
            "set",
            Set {
                fields: serde_json::json!({"b": 2, "a": 9})
                    .as_object()
                    .cloned()
                    .unwrap(),
            },
        );
        b.connect(base, set.inp().base);
        b.output("value", set.out().value);
        let flow = b.build().unwrap();
        let outcome = Engine::new()
            .run(
                &flow,
                Inputs::new().set("base", serde_json::json!({"a": 1, "c": 3})),
            )
            .await
            .unwrap();
        let value: serde_json::Value = outcome.output("value").unwrap();
        assert_eq!(value, serde_json::json!({"a": 9, "c": 3, "b": 2}));
        assert_eq!(
            value.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["a", "c", "b"]
        );
        let err = Engine::new()
            .run(&flow, Inputs::new().set("base", serde_json::json!([1])))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("input `base` must be an object, got an array"),
            "{err}"
        );
    }
}
