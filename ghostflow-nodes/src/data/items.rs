//! Nodes over lists of items: [`Sort`], [`Limit`], [`Deduplicate`],
//! [`Aggregate`] and [`SplitOut`].

use std::cmp::Ordering;
use std::collections::HashSet;

use ghostflow::prelude::*;
use indexmap::IndexMap;
use serde_json::Value;

use super::list_input;
use super::order::{canonical, compare};
use super::path::FieldPath;

/// A list of items.
#[derive(Ports, Debug)]
pub struct Items {
    /// The items (a list).
    pub items: Value,
}

// -------------------------------------------------------------------- sort

/// Ascending or descending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    /// Smallest first.
    #[default]
    Asc,
    /// Largest first.
    Desc,
}

/// Where missing and `null` values go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NullsAt {
    /// Before every other value, whatever the order.
    First,
    /// After every other value, whatever the order.
    #[default]
    Last,
}

/// One sort key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SortKey {
    /// The field to sort by.
    pub field: FieldPath,
    /// `asc` (default) or `desc`.
    #[serde(default)]
    pub order: SortOrder,
    /// Where items whose field is missing or `null` go: `last` (default)
    /// or `first`.
    #[serde(default)]
    pub nulls: NullsAt,
}

/// Sorts a list by one or more fields, keeping the order of items that
/// compare equal.
///
/// Each key names a field, an order (`asc` or `desc`) and where missing
/// and `null` values go (`last` by default, in either order). Values of
/// different kinds are ordered `false` < `true` < numbers < strings <
/// lists < objects; numbers compare by value (`2` < `10`, `1` = `1.0`),
/// strings by Unicode code points (so `Z` < `a` < `é`). Without keys the
/// items themselves are compared.
///
/// ```yaml
/// - id: by_total
///   type: sort
///   config:
///     by:
///       - { field: total, order: desc }
///       - { field: customer.name }
/// ```
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = Items, output = Items, category = "data")]
#[serde(deny_unknown_fields)]
pub struct Sort {
    /// The keys, most significant first; none to compare whole items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by: Vec<SortKey>,
}

impl Sort {
    fn compare(&self, a: &Value, b: &Value) -> Ordering {
        if self.by.is_empty() {
            return compare(a, b);
        }
        for key in &self.by {
            let value = |item| match key.field.get(item) {
                None | Some(Value::Null) => None,
                Some(v) => Some(v),
            };
            let ordering = match (value(a), value(b)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => match key.nulls {
                    NullsAt::First => Ordering::Less,
                    NullsAt::Last => Ordering::Greater,
                },
                (Some(_), None) => match key.nulls {
                    NullsAt::First => Ordering::Greater,
                    NullsAt::Last => Ordering::Less,
                },
                (Some(x), Some(y)) => match key.order {
                    SortOrder::Asc => compare(x, y),
                    SortOrder::Desc => compare(y, x),
                },
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    }
}

impl Run for Sort {
    async fn run(&self, input: Items, _ctx: &Context) -> Result<Items, NodeError> {
        let mut items = list_input("items", input.items)?;
        items.sort_by(|a, b| self.compare(a, b));
        Ok(Items {
            items: Value::Array(items),
        })
    }
}

// ------------------------------------------------------------------- limit

/// Which end of a list [`Limit`] counts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitFrom {
    /// The first items.
    #[default]
    Start,
    /// The last items (still in their order).
    End,
}

/// Keeps at most `count` items of a list, after skipping `offset`, from
/// its start or its end.
///
/// From the end, `count: 3` keeps the last three items and `offset: 1`
/// skips the very last one first; the items keep their order either way.
/// A list shorter than asked gives what there is.
///
/// ```yaml
/// - id: page_two
///   type: limit
///   config: { count: 20, offset: 20 }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Items, output = Items, category = "data")]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// The most items to keep.
    pub count: u64,
    /// Items to skip first.
    #[serde(default)]
    pub offset: u64,
    /// `start` (default) or `end`.
    #[serde(default)]
    pub from: LimitFrom,
}

impl Run for Limit {
    async fn run(&self, input: Items, _ctx: &Context) -> Result<Items, NodeError> {
        let mut items = list_input("items", input.items)?;
        let len = items.len();
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX).min(len);
        let count = usize::try_from(self.count).unwrap_or(usize::MAX);
        let (start, end) = match self.from {
            LimitFrom::Start => (offset, offset.saturating_add(count).min(len)),
            LimitFrom::End => {
                let end = len - offset;
                (end.saturating_sub(count), end)
            }
        };
        items.truncate(end);
        items.drain(..start);
        Ok(Items {
            items: Value::Array(items),
        })
    }
}

// ------------------------------------------------------------- deduplicate

/// Which of equal items [`Deduplicate`] keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The first of each.
    #[default]
    First,
    /// The last of each.
    Last,
}

/// The items of a [`Deduplicate`].
#[derive(Ports, Debug)]
pub struct Deduplicated {
    /// The items kept, in their order.
    pub items: Value,
    /// The items removed as duplicates, in their order.
    pub duplicates: Value,
}

/// Removes duplicate items from a list, comparing whole items or chosen
/// fields, and keeping the first or the last of each.
///
/// Items are equal when their values (or the values at all `by` fields)
/// are equal as JSON: object keys in any order, `1` equal to `1.0`; a
/// missing field counts as `null`. The kept items stay in their order; the
/// removed ones come out on `duplicates`.
///
/// ```yaml
/// - id: one_per_email
///   type: deduplicate
///   config:
///     by: [email]
///     keep: last
/// ```
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = Items, output = Deduplicated, category = "data")]
#[serde(deny_unknown_fields)]
pub struct Deduplicate {
    /// The fields that make items equal; none to compare whole items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by: Vec<FieldPath>,
    /// `first` (default) or `last`.
    #[serde(default)]
    pub keep: Keep,
}

impl Run for Deduplicate {
    async fn run(&self, input: Items, _ctx: &Context) -> Result<Deduplicated, NodeError> {
        let items = list_input("items", input.items)?;
        let key = |item: &Value| {
            if self.by.is_empty() {
                canonical(item)
            } else {
                let values: Vec<Value> = self
                    .by
                    .iter()
                    .map(|p| p.get_or_null(item).clone())
                    .collect();
                canonical(&Value::Array(values))
            }
        };
        // For each key, the index of the item kept.
        let mut chosen: IndexMap<String, usize> = IndexMap::new();
        for (i, item) in items.iter().enumerate() {
            match self.keep {
                Keep::First => {
                    chosen.entry(key(item)).or_insert(i);
                }
                Keep::Last => {
                    chosen.insert(key(item), i);
                }
            }
        }
        let kept: HashSet<usize> = chosen.into_values().collect();
        let (mut out, mut duplicates) = (Vec::new(), Vec::new());
        for (i, item) in items.into_iter().enumerate() {
            if kept.contains(&i) {
                out.push(item);
            } else {
                duplicates.push(item);
            }
        }
        Ok(Deduplicated {
            items: Value::Array(out),
            duplicates: Value::Array(duplicates),
        })
    }
}

// --------------------------------------------------------------- aggregate

/// What an aggregation computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggregateOp {
    /// The number of items (with `field`: of items where it is set).
    Count,
    /// The sum of the numbers (0 for none).
    Sum,
    /// Their mean (`null` for none).
    Avg,
    /// The smallest value, in the family's order.
    Min,
    /// The largest value, in the family's order.
    Max,
    /// The first value.
    First,
    /// The last value.
    Last,
    /// All values, as a list.
    List,
    /// The number of different values.
    CountDistinct,
}

impl AggregateOp {
    fn name(self) -> &'static str {
        match self {
            AggregateOp::Count => "count",
            AggregateOp::Sum => "sum",
            AggregateOp::Avg => "avg",
            AggregateOp::Min => "min",
            AggregateOp::Max => "max",
            AggregateOp::First => "first",
            AggregateOp::Last => "last",
            AggregateOp::List => "list",
            AggregateOp::CountDistinct => "count_distinct",
        }
    }
}

/// One named aggregation: an operation over a field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "AggregationConfig")]
pub struct Aggregation {
    /// `count`, `sum`, `avg`, `min`, `max`, `first`, `last`, `list` or
    /// `count_distinct`.
    pub op: AggregateOp,
    /// The field it reads; only `count` may go without (then it counts
    /// items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<FieldPath>,
}

/// An [`Aggregation`] as written.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AggregationConfig {
    /// `count`, `sum`, `avg`, `min`, `max`, `first`, `last`, `list` or
    /// `count_distinct`.
    op: AggregateOp,
    /// The field it reads; only `count` may go without (then it counts
    /// items).
    #[serde(default)]
    field: Option<FieldPath>,
}

impl TryFrom<AggregationConfig> for Aggregation {
    type Error = String;

    fn try_from(config: AggregationConfig) -> Result<Self, String> {
        if config.field.is_none() && config.op != AggregateOp::Count {
            return Err(format!("`{}` needs a `field`", config.op.name()));
        }
        Ok(Aggregation {
            op: config.op,
            field: config.field,
        })
    }
}

/// Summarizes a list: groups items by fields and computes named
/// aggregations (count, sum, avg, min, max, first, last, list,
/// count_distinct) over a field of each group.
///
/// With `group_by`, the output is a list with one object per group, in the
/// order the groups first appear; each object holds the group's values at
/// their paths (`customer.name` gives `{"customer": {"name": ...}}`) and
/// one field per aggregation. Without `group_by` it is a single object over
/// all items (`count` 0, `sum` 0 and the others `null` for an empty list).
/// Missing and `null` values are skipped by every aggregation but a `count`
/// without field; `sum` and `avg` need numbers and fail on anything else,
/// naming the item; `min` and `max` use the family's order of values
/// (see `sort`). Sums of integers stay integers.
///
/// ```yaml
/// - id: per_customer
///   type: aggregate
///   config:
///     group_by: [customer.id]
///     aggregations:
///       orders: { op: count }
///       revenue: { op: sum, field: total }
///       average: { op: avg, field: total }
///       products: { op: count_distinct, field: sku }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Items, output = AggregateOut, category = "data")]
#[serde(try_from = "AggregateConfig")]
pub struct Aggregate {
    /// The fields whose values make a group; none for one summary of all
    /// items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<FieldPath>,
    /// The aggregations, by the name of the output field they fill.
    pub aggregations: IndexMap<String, Aggregation>,
}

/// An [`Aggregate`] as written.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AggregateConfig {
    /// The fields whose values make a group; none for one summary of all
    /// items.
    #[serde(default)]
    group_by: Vec<FieldPath>,
    /// The aggregations, by the name of the output field they fill.
    aggregations: IndexMap<String, Aggregation>,
}

impl TryFrom<AggregateConfig> for Aggregate {
    type Error = String;

    fn try_from(config: AggregateConfig) -> Result<Self, String> {
        for path in &config.group_by {
            path.check_writable()
                .map_err(|e| format!("group_by: {e}"))?;
        }
        for name in config.aggregations.keys() {
            if let Some(path) = config.group_by.iter().find(
                |p| matches!(p.segments().first(), Some(super::path::Segment::Key(k)) if k == name),
            ) {
                return Err(format!(
                    "the aggregation `{name}` would overwrite the group field `{path}`; give it another name"
                ));
            }
        }
        Ok(Aggregate {
            group_by: config.group_by,
            aggregations: config.aggregations,
        })
    }
}

/// The output of an [`Aggregate`].
#[derive(Ports, Debug)]
pub struct AggregateOut {
    /// One object per group (a list), or one object without `group_by`.
    pub value: Value,
}

impl Aggregate {
    /// The aggregations over the items `members` of `items`, into `out`.
    fn summarize(
        &self,
        items: &[Value],
        members: &[usize],
        out: &mut serde_json::Map<String, Value>,
    ) -> Result<(), NodeError> {
        for (name, aggregation) in &self.aggregations {
            let Some(field) = &aggregation.field else {
                out.insert(name.clone(), Value::from(members.len()));
                continue;
            };
            let values = members.iter().filter_map(|&i| match field.get(&items[i]) {
                None | Some(Value::Null) => None,
                Some(v) => Some((i, v)),
            });
            let value = match aggregation.op {
                AggregateOp::Count => Value::from(values.count()),
                AggregateOp::Sum | AggregateOp::Avg => {
                    let mut sum = Sum::default();
                    for (i, v) in values {
                        let Value::Number(n) = v else {
                            return Err(NodeError::permanent(format!(
                                "aggregations.{name}: item {i} has {} at `{field}`; `{}` needs numbers",
                                crate::kind(v),
                                aggregation.op.name()
                            )));
                        };
                        sum.add(n);
                    }
                    if aggregation.op == AggregateOp::Sum {
                        sum.value()
                    } else {
                        sum.mean()
                    }
                }
                AggregateOp::Min => values
                    .map(|(_, v)| v)
                    .min_by(|a, b| compare(a, b))
                    .cloned()
                    .unwrap_or(Value::Null),
                AggregateOp::Max => values
                    .map(|(_, v)| v)
                    // The first of equal largest values, like `min`.
                    .fold(None::<&Value>, |best, v| match best {
                        Some(b) if compare(v, b) != Ordering::Greater => Some(b),
                        _ => Some(v),
                    })
                    .cloned()
                    .unwrap_or(Value::Null),
                AggregateOp::First => values
                    .map(|(_, v)| v)
                    .next()
                    .cloned()
                    .unwrap_or(Value::Null),
                AggregateOp::Last => values
                    .map(|(_, v)| v)
                    .next_back()
                    .cloned()
                    .unwrap_or(Value::Null),
                AggregateOp::List => Value::Array(values.map(|(_, v)| v.clone()).collect()),
                AggregateOp::CountDistinct => {
                    let distinct: HashSet<String> = values.map(|(_, v)| canonical(v)).collect();
                    Value::from(distinct.len())
                }
            };
            out.insert(name.clone(), value);
        }
        Ok(())
    }
}

/// A running sum: exact while every number is an integer.
#[derive(Default)]
struct Sum {
    int: i128,
    float: f64,
    floats: bool,
    count: usize,
}

impl Sum {
    fn add(&mut self, n: &serde_json::Number) {
        self.count += 1;
        let int = n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from));
        match int {
            Some(i) if !self.floats => match self.int.checked_add(i) {
                Some(sum) => self.int = sum,
                None => {
                    self.floats = true;
                    self.float = self.int as f64 + i as f64;
                }
            },
            _ => {
                if !self.floats {
                    self.floats = true;
                    self.float = self.int as f64;
                }
                self.float += n.as_f64().unwrap_or(0.0);
            }
        }
    }

    fn total(&self) -> f64 {
        if self.floats {
            self.float
        } else {
            self.int as f64
        }
    }

    fn value(&self) -> Value {
        if !self.floats {
            if let Ok(i) = i64::try_from(self.int) {
                return Value::from(i);
            }
            if let Ok(u) = u64::try_from(self.int) {
                return Value::from(u);
            }
        }
        float(self.total())
    }

    fn mean(&self) -> Value {
        if self.count == 0 {
            Value::Null
        } else {
            float(self.total() / self.count as f64)
        }
    }
}

/// A float as JSON (`null` when not finite).
fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

impl Run for Aggregate {
    async fn run(&self, input: Items, _ctx: &Context) -> Result<AggregateOut, NodeError> {
        let items = list_input("items", input.items)?;
        if self.group_by.is_empty() {
            let all: Vec<usize> = (0..items.len()).collect();
            let mut out = serde_json::Map::new();
            self.summarize(&items, &all, &mut out)?;
            return Ok(AggregateOut {
                value: Value::Object(out),
            });
        }
        let mut groups: IndexMap<String, Vec<usize>> = IndexMap::new();
        for (i, item) in items.iter().enumerate() {
            let values: Vec<Value> = self
                .group_by
                .iter()
                .map(|p| p.get_or_null(item).clone())
                .collect();
            groups
                .entry(canonical(&Value::Array(values)))
                .or_default()
                .push(i);
        }
        let mut out = Vec::with_capacity(groups.len());
        for members in groups.values() {
            let mut object = serde_json::Map::new();
            for path in &self.group_by {
                path.set(&mut object, path.get_or_null(&items[members[0]]).clone());
            }
            self.summarize(&items, members, &mut object)?;
            out.push(Value::Object(object));
        }
        Ok(AggregateOut {
            value: Value::Array(out),
        })
    }
}

// --------------------------------------------------------------- split out

/// The input of a [`SplitOut`].
#[derive(Ports, Debug)]
pub struct SplitOutIn {
    /// An object holding the list, or a list of such objects.
    pub value: Value,
}

/// Turns a list held in a field of an object into a list of items,
/// optionally copying chosen fields of the object into each.
///
/// Each element of the list at `field` becomes an item: an object element
/// as it is, any other value as `{<name>: value}`, where the name is
/// `destination` or the last name of `field`. With `destination`, every
/// element goes under that name. `keep` copies fields of the parent (at
/// their paths) into each item, `keep_all` copies all of them but the
/// list; an element's own fields win over copied ones. The input may also
/// be a list of objects: each is split, in order. A missing or `null`
/// field gives no items; any other value that is not a list fails the node.
///
/// ```yaml
/// - id: order_lines
///   type: split_out
///   config:
///     field: lines
///     keep: [id, customer.name]
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = SplitOutIn, output = Items, category = "data")]
#[serde(deny_unknown_fields)]
pub struct SplitOut {
    /// The field holding the list.
    pub field: FieldPath,
    /// Fields of the parent copied into every item.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "writable_paths"
    )]
    pub keep: Vec<FieldPath>,
    /// Whether to copy every field of the parent but the list.
    #[serde(default)]
    pub keep_all: bool,
    /// The name to put every element under, instead of merging object
    /// elements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// Paths that can name a place to write.
fn writable_paths<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<FieldPath>, D::Error> {
    let paths = Vec::<FieldPath>::deserialize(deserializer)?;
    for path in &paths {
        path.check_writable().map_err(serde::de::Error::custom)?;
    }
    Ok(paths)
}

impl SplitOut {
    fn split(&self, parent: &Value, at: &str, out: &mut Vec<Value>) -> Result<(), NodeError> {
        let Value::Object(fields) = parent else {
            return Err(NodeError::permanent(format!(
                "input `value`{at}: expected an object holding `{}`, got {}",
                self.field,
                crate::kind(parent)
            )));
        };
        let list = match self.field.get(parent) {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Array(list)) => list,
            Some(other) => {
                return Err(NodeError::permanent(format!(
                    "input `value`{at}: `{}` is {}, not a list",
                    self.field,
                    crate::kind(other)
                )));
            }
        };
        let mut copied = serde_json::Map::new();
        if self.keep_all {
            copied = fields.clone();
            remove_at(&mut copied, &self.field);
        }
        for path in &self.keep {
            if let Some(v) = path.get(parent) {
                path.set(&mut copied, v.clone());
            }
        }
        let name = self
            .destination
            .as_deref()
            .or_else(|| self.field.last_name())
            .unwrap_or("value");
        for element in list {
            let mut item = match (element, &self.destination) {
                (Value::Object(map), None) => map.clone(),
                (other, _) => {
                    let mut map = serde_json::Map::new();
                    map.insert(name.to_owned(), other.clone());
                    map
                }
            };
            for (k, v) in &copied {
                item.entry(k.clone()).or_insert_with(|| v.clone());
            }
            out.push(Value::Object(item));
        }
        Ok(())
    }
}

/// Removes the value at `path` from `object` (when its last step is a name).
fn remove_at(object: &mut serde_json::Map<String, Value>, path: &FieldPath) {
    use super::path::Segment;
    let Some((Segment::Key(last), parents)) = path.segments().split_last() else {
        return;
    };
    let mut current = object;
    for segment in parents {
        let next = match segment {
            Segment::Key(k) => current.get_mut(k),
            Segment::Index(_) => None,
        };
        match next {
            Some(Value::Object(map)) => current = map,
            _ => return,
        }
    }
    current.shift_remove(last);
}

impl Run for SplitOut {
    async fn run(&self, input: SplitOutIn, _ctx: &Context) -> Result<Items, NodeError> {
        let mut out = Vec::new();
        match &input.value {
            Value::Array(parents) => {
                for (i, parent) in parents.iter().enumerate() {
                    self.split(parent, &format!("[{i}]"), &mut out)?;
                }
            }
            parent => self.split(parent, "", &mut out)?,
        }
        Ok(Items {
            items: Value::Array(out),
        })
    }
}
