//! The nodes that run jq filters: [`Transform`] and [`Filter`].

use std::sync::Arc;

use ghostflow::prelude::*;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserializer, Serializer};

use super::jq::{JqLimits, Program, RunError, Take, Taken};
use super::list_input;

/// A jq filter, checked and compiled when the config is read: a syntax
/// error or an unknown builtin fails the flow's loading, at the field.
#[derive(Clone)]
pub struct JqFilter {
    source: String,
    program: Arc<Program>,
}

impl JqFilter {
    /// Compiles `source`.
    ///
    /// # Errors
    /// jaq's message, with the line and column, or the sandbox's refusal.
    pub fn new(source: impl Into<String>) -> Result<Self, String> {
        let source = source.into();
        let program = Arc::new(Program::compile(&source)?);
        Ok(JqFilter { source, program })
    }

    /// The filter's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The values of the filter's variables, from the `vars` input over the
    /// configured `vars`. `$vars` is all of them, as an object.
    fn globals(
        &self,
        configured: &serde_json::Map<String, serde_json::Value>,
        input: Option<serde_json::Value>,
        what: &str,
    ) -> Result<Vec<serde_json::Value>, NodeError> {
        let mut all = configured.clone();
        match input {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(given)) => all.extend(given),
            Some(other) => {
                return Err(NodeError::permanent(format!(
                    "input `vars`: expected an object of variables, got {}",
                    crate::kind(&other)
                )));
            }
        }
        self.program
            .globals()
            .iter()
            .map(|name| match all.get(name) {
                Some(value) => Ok(value.clone()),
                None if name == "vars" => Ok(serde_json::Value::Object(all.clone())),
                None => Err(NodeError::permanent(format!(
                    "{what} `{}` reads `${name}`, which neither `vars` in the config nor the `vars` input sets",
                    self.source
                ))),
            })
            .collect()
    }
}

impl std::fmt::Debug for JqFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JqFilter").field(&self.source).finish()
    }
}

impl PartialEq for JqFilter {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for JqFilter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for JqFilter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        JqFilter::new(source).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for JqFilter {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JqFilter".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "description": "A jq filter (jaq dialect), such as `.items | map(.price) | add`.",
        })
    }
}

/// What a [`Transform`] outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JqOutput {
    /// The filter's first output; a filter with no output fails the node.
    #[default]
    First,
    /// The filter's first output, or `null` when it has none.
    FirstOrNull,
    /// All of the filter's outputs, as a list (`[]` for none).
    All,
}

/// The input of a [`Transform`].
#[derive(Ports, Debug)]
pub struct TransformIn {
    /// The value the filter reads as `.`. Required, so that a transform on
    /// a branch not taken is skipped with it.
    pub value: serde_json::Value,
    /// Variables, set over the configured `vars` (an object).
    pub vars: Option<serde_json::Value>,
}

/// A JSON value.
#[derive(Ports, Debug)]
pub struct TransformOut {
    /// The filter's output (see `output`).
    pub value: serde_json::Value,
}

/// Reshapes a JSON value with a jq filter, in a sandbox that reads nothing
/// but the input and its variables and stops runaway filters.
///
/// The filter is jq as jaq implements it (`.items[] | select(.qty > 0)`,
/// `map({sku, total: .qty * .price})`, `group_by(.kind)`, `@base64`,
/// `test("re")`, `strftime(...)`); it is compiled when the flow loads, so a
/// syntax error or an unknown builtin is reported there, with its line and
/// column. Variables (`$rate`) come from the `vars` input over the
/// configured `vars`; `$vars` is all of them. A filter that reads a
/// variable neither sets fails when it runs.
///
/// `output` chooses what comes out: the first output (`first`, the
/// default; no output fails the node), the first or `null`
/// (`first_or_null`), or every output as a list (`all`). `limits` bounds
/// each run: `timeout` (default 10s), `max_steps` (100 million),
/// `max_outputs` (100 000) and `max_bytes` (16 MiB for any string the
/// filter builds and for the output). The sandbox has no `env`, `$ENV`,
/// `input`, `inputs`, `debug`, `stderr`, `halt`, local time zone or
/// modules.
///
/// ```yaml
/// - id: totals
///   type: transform
///   config:
///     filter: |
///       .lines | map({sku, total: (.qty * .price * $rate)}) | sort_by(-.total)
///     vars: { rate: 1.2 }
///     limits: { timeout: 2s }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = TransformIn, output = TransformOut, category = "data")]
#[serde(deny_unknown_fields)]
pub struct Transform {
    /// The jq filter. It reads the input as `.`; the node renders no
    /// expressions in it.
    #[schemars(extend("x-template" = true))]
    pub filter: JqFilter,
    /// Which outputs to take: `first`, `first_or_null` or `all`.
    #[serde(default)]
    pub output: JqOutput,
    /// Variables the filter reads as `$name`.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Bounds for each run.
    #[serde(default)]
    pub limits: JqLimits,
}

impl Transform {
    /// A transform taking the first output of `filter`, with default limits.
    ///
    /// # Errors
    /// The filter does not compile (jaq's message with its position).
    pub fn new(filter: &str) -> Result<Self, String> {
        Ok(Transform {
            filter: JqFilter::new(filter)?,
            output: JqOutput::First,
            vars: serde_json::Map::new(),
            limits: JqLimits::default(),
        })
    }
}

impl Run for Transform {
    async fn run(&self, input: TransformIn, _ctx: &Context) -> Result<TransformOut, NodeError> {
        let globals = self.filter.globals(&self.vars, input.vars, "filter")?;
        let take = match self.output {
            JqOutput::First | JqOutput::FirstOrNull => Take::First,
            JqOutput::All => Take::All,
        };
        let value = input.value;
        let fail = |e: RunError| e.into_node_error("filter", &self.filter.source, false);
        let (taken, _) = self
            .filter
            .program
            .run(vec![value], globals, take, &self.limits)
            .await
            .map_err(fail)?;
        let outputs = match taken.into_iter().next() {
            Some(Taken::Values(values)) => values,
            _ => Vec::new(),
        };
        let value = match self.output {
            JqOutput::All => serde_json::Value::Array(outputs),
            JqOutput::FirstOrNull => outputs.into_iter().next().unwrap_or_default(),
            JqOutput::First => outputs.into_iter().next().ok_or_else(|| {
                NodeError::permanent(format!(
                    "filter `{}` gave no output (with `output: first_or_null` it gives null, with `output: all` a list)",
                    self.filter.source
                ))
            })?,
        };
        Ok(TransformOut { value })
    }
}

/// The input of a [`Filter`].
#[derive(Ports, Debug)]
pub struct FilterIn {
    /// The list to filter.
    pub items: serde_json::Value,
    /// Variables, set over the configured `vars` (an object).
    pub vars: Option<serde_json::Value>,
}

/// The items of a [`Filter`], split by the condition.
#[derive(Ports, Debug)]
pub struct FilterOut {
    /// The items that satisfy the condition, in their order.
    pub kept: serde_json::Value,
    /// The other items, in their order.
    pub discarded: serde_json::Value,
}

/// Keeps the items of a list that satisfy a jq condition, and passes the
/// others on separately.
///
/// The condition is a jq filter run on each item (as `.`) in the same
/// sandbox as [`Transform`]'s: an item is kept when the condition's first
/// output is neither `false` nor `null`, and discarded when it is, or when
/// the condition gives no output. A missing field reads as `null`
/// (`.qty > 0` is false for an item without `qty`); an error (such as
/// comparing with a string method on a number) fails the node and names
/// the item. jq conditions were chosen over structured `{field, op,
/// value}` rules because they say everything such rules say (`and`, `or`,
/// `any`, `test("regex")`, `startswith`, nested paths, arithmetic) in one
/// language shared with `transform`, checked when the flow loads. The
/// `limits` are shared by all items of a run.
///
/// ```yaml
/// - id: paid_orders
///   type: filter
///   config:
///     condition: '.status == "paid" and .total >= $minimum'
///     vars: { minimum: 10 }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = FilterIn, output = FilterOut, category = "data")]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// The condition, a jq filter run on each item; the node renders no
    /// expressions in it.
    #[schemars(extend("x-template" = true))]
    pub condition: JqFilter,
    /// Variables the condition reads as `$name`.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Bounds for each run (all items together).
    #[serde(default)]
    pub limits: JqLimits,
}

impl Filter {
    /// A filter keeping the items for which `condition` holds.
    ///
    /// # Errors
    /// The condition does not compile.
    pub fn new(condition: &str) -> Result<Self, String> {
        Ok(Filter {
            condition: JqFilter::new(condition)?,
            vars: serde_json::Map::new(),
            limits: JqLimits::default(),
        })
    }
}

impl Run for Filter {
    async fn run(&self, input: FilterIn, _ctx: &Context) -> Result<FilterOut, NodeError> {
        let items = list_input("items", input.items)?;
        let globals = self
            .condition
            .globals(&self.vars, input.vars, "condition")?;
        let fail = |e: RunError| e.into_node_error("condition", &self.condition.source, true);
        let (verdicts, items) = self
            .condition
            .program
            .run(items, globals, Take::Truthy, &self.limits)
            .await
            .map_err(fail)?;
        let (mut kept, mut discarded) = (Vec::new(), Vec::new());
        for (item, verdict) in items.into_iter().zip(verdicts) {
            if matches!(verdict, Taken::Truthy(true)) {
                kept.push(item);
            } else {
                discarded.push(item);
            }
        }
        Ok(FilterOut {
            kept: serde_json::Value::Array(kept),
            discarded: serde_json::Value::Array(discarded),
        })
    }
}
