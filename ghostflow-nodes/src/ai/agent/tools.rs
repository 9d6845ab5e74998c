//! An agent's tools: how they are declared (a node, or a flow), made ready
//! for a run (the node made, the flow loaded, the parameters schema
//! written and compiled), and called.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ghostflow::document::{FlowRef, LoadOptions, Loader};
use ghostflow::prelude::*;
use ghostflow::{Endpoint, ErasedNode, FlowBuilder, Registry};
use serde::Deserializer;
use serde_json::{Map, Value, json};

use crate::ai::model::ToolSpec;

/// A node a tool runs, as a document declares it: `{ type, config }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolNode {
    /// The node type, as in a document (`http_request`, `sql_query@1`).
    #[serde(rename = "type")]
    pub node_type: String,
    /// Its config, as in a document (fixed: no expressions).
    #[serde(default = "empty_object", skip_serializing_if = "is_empty_object")]
    pub config: Value,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn is_empty_object(value: &Value) -> bool {
    value.as_object().is_some_and(Map::is_empty)
}

/// A tool the agent's model may call: a node, or a flow.
///
/// With `node`, the tool's parameters are the node's input ports (one
/// property each, the required ports required) and its result is all of
/// its outputs; with `flow`, the parameters are the flow's inputs (those
/// without a default required) and the result its outputs.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentTool {
    /// The name the model calls it by: letters, digits, `_` and `-`, at
    /// most 64, unique among the agent's tools.
    #[serde(deserialize_with = "tool_name")]
    pub name: String,
    /// What it does, for the model; by default the node type's
    /// description (its first paragraph) or the flow document's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The node to run: `{ type, config }`, checked when the flow loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-node" = true))]
    pub node: Option<ToolNode>,
    /// The flow to run: a document's path (relative to the document that
    /// names it), or a document inline; checked when the flow loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-flow" = true))]
    pub flow: Option<FlowRef>,
    /// A node or flow made in Rust.
    #[serde(skip)]
    #[schemars(skip)]
    built: Option<Built>,
}

/// What a tool made in Rust runs.
#[derive(Clone)]
enum Built {
    Node(Arc<dyn ErasedNode>),
    Flow(Arc<Flow>),
}

impl fmt::Debug for AgentTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentTool")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("node", &self.node)
            .field("flow", &self.flow.as_ref().map(FlowRef::describe))
            .finish_non_exhaustive()
    }
}

fn tool_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let name = String::deserialize(deserializer)?;
    check_tool_name(&name).map_err(serde::de::Error::custom)?;
    Ok(name)
}

/// Checks a tool name: what every provider accepts.
pub(crate) fn check_tool_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "`{name}` is not a tool name: use 1 to 64 letters, digits, `_` or `-`"
        ));
    }
    Ok(())
}

/// Checks a list of tools: each a node or a flow, names unique.
pub(crate) fn check_tools(tools: &[AgentTool]) -> Result<(), String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, tool) in tools.iter().enumerate() {
        check_tool_name(&tool.name).map_err(|e| format!("tools[{i}].name: {e}"))?;
        match (&tool.node, &tool.flow, &tool.built) {
            (Some(_), Some(_), _) => {
                return Err(format!(
                    "tools[{i}] (`{}`): give `node` or `flow`, not both",
                    tool.name
                ));
            }
            (None, None, None) => {
                return Err(format!(
                    "tools[{i}] (`{}`): give the `node` (`{{ type, config }}`) or the `flow` it runs",
                    tool.name
                ));
            }
            _ => {}
        }
        if let Some(first) = seen.insert(&tool.name, i) {
            return Err(format!(
                "tools[{i}]: the name `{}` is taken by tools[{first}]; tool names must be unique",
                tool.name
            ));
        }
    }
    Ok(())
}

/// Deserializes and checks a list of tools.
pub(crate) fn tools<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<AgentTool>, D::Error> {
    let tools = Vec::<AgentTool>::deserialize(deserializer)?;
    check_tools(&tools).map_err(serde::de::Error::custom)?;
    Ok(tools)
}

impl AgentTool {
    /// A tool that runs a node of the engine's registry, `node_type` with
    /// `config`.
    pub fn node_type(
        name: impl Into<String>,
        description: impl Into<String>,
        node_type: impl Into<String>,
        config: Value,
    ) -> Self {
        AgentTool {
            name: name.into(),
            description: Some(description.into()),
            node: Some(ToolNode {
                node_type: node_type.into(),
                config,
            }),
            flow: None,
            built: None,
        }
    }

    /// A tool that runs `node`, made in Rust (no registry needed).
    pub fn node<N: Run>(name: impl Into<String>, description: impl Into<String>, node: N) -> Self {
        let name = name.into();
        // A builder erases the node; it is taken out before any build.
        let mut builder = FlowBuilder::new(name.clone());
        builder.add("tool", node);
        let erased = builder.nodes()[0].node.clone();
        let spec = erased.spec();
        let declared = ToolNode {
            node_type: spec.type_name.clone(),
            config: erased.config_json().unwrap_or_else(|_| empty_object()),
        };
        AgentTool {
            name,
            description: Some(description.into()),
            node: Some(declared),
            flow: None,
            built: Some(Built::Node(erased)),
        }
    }

    /// A tool that runs `flow`, built in Rust; its inputs are the
    /// parameters.
    pub fn flow(name: impl Into<String>, description: impl Into<String>, flow: Flow) -> Self {
        let reference = FlowRef::from_flow(&flow).ok();
        AgentTool {
            name: name.into(),
            description: Some(description.into()),
            node: None,
            flow: reference,
            built: Some(Built::Flow(Arc::new(flow))),
        }
    }

    /// A tool that runs the flow document at `path`.
    pub fn flow_file(
        name: impl Into<String>,
        description: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        AgentTool {
            name: name.into(),
            description: Some(description.into()),
            node: None,
            flow: Some(FlowRef::Path(path.into())),
            built: None,
        }
    }
}

/// What a tool runs, ready.
#[derive(Debug)]
enum Target {
    /// A node, run as a one-node flow.
    Node(Arc<dyn ErasedNode>),
    /// A flow.
    Flow(Arc<Flow>),
}

/// A tool ready for a run: what it runs, its spec for the model, and the
/// compiled parameters schema.
pub(crate) struct ReadyTool {
    pub(crate) spec: ToolSpec,
    target: Target,
    validator: jsonschema::Validator,
}

impl fmt::Debug for ReadyTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadyTool")
            .field("name", &self.spec.name)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// When a document file was last changed, and its size. `None` inline.
type Stamp = Option<(SystemTime, u64)>;

/// A loaded tool flow: the stamp it was loaded at, the flow, and its
/// document's description.
type LoadedFlow = (Stamp, Arc<Flow>, Option<String>);

/// Tool flows loaded by an engine's agents, by source.
#[derive(Debug, Default)]
struct ToolFlows {
    flows: Mutex<HashMap<String, LoadedFlow>>,
}

/// How many loaded tool flows an engine keeps.
const MAX_LOADED_FLOWS: usize = 256;

/// The first paragraph of a description.
fn first_paragraph(text: &str) -> String {
    text.split("\n\n")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The registry of the engine, or why a tool cannot be made without it.
fn registry(ctx: &Context, at: &str) -> Result<Arc<Registry>, NodeError> {
    ctx.registry().ok_or_else(|| {
        NodeError::permanent(format!(
            "config.{at}: this engine has no node registry to make the tool with; \
             build the engine with `EngineBuilder::registry`"
        ))
    })
}

/// The flow of `reference` (cached per engine, read again when its file
/// changes), and its document's description.
fn load_flow(
    ctx: &Context,
    reference: &FlowRef,
    at: &str,
) -> Result<(Arc<Flow>, Option<String>), NodeError> {
    let (key, stamp) = match reference {
        FlowRef::Path(path) => {
            let meta = std::fs::metadata(path).map_err(|e| {
                NodeError::permanent(format!("config.{at}: cannot read `{path}`: {e}"))
            })?;
            (path.clone(), meta.modified().ok().map(|m| (m, meta.len())))
        }
        FlowRef::Inline(document) => (
            serde_json::to_string(document)
                .map_err(|e| NodeError::permanent(format!("config.{at}: the inline flow: {e}")))?,
            None,
        ),
    };
    let cache = ctx.shared(ToolFlows::default);
    if let Some((seen, flow, description)) = cache
        .flows
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        && *seen == stamp
    {
        return Ok((flow.clone(), description.clone()));
    }
    let registry = registry(ctx, at)?;
    let options = ctx
        .resource::<LoadOptions>()
        .map(|o| (*o).clone())
        .unwrap_or_default();
    let loader = Loader::with_options(&registry, options);
    let loaded = match reference {
        FlowRef::Path(path) => loader.load_path(std::path::Path::new(path)),
        FlowRef::Inline(document) => loader.load_document((**document).clone()),
    }
    .map_err(|e| {
        NodeError::permanent(format!(
            "config.{at}: the flow {} does not load:\n{e}",
            reference.describe()
        ))
    })?;
    let flow = Arc::new(loaded.flow);
    let description = loaded.document.description;
    let mut flows = cache.flows.lock().unwrap_or_else(|e| e.into_inner());
    if flows.len() >= MAX_LOADED_FLOWS {
        flows.clear();
    }
    flows.insert(key, (stamp, flow.clone(), description.clone()));
    Ok((flow, description))
}

/// One parameter of a tool: a node input port or a flow input.
struct Parameter<'a> {
    name: &'a str,
    schema: &'a Value,
    description: Option<&'a str>,
    required: bool,
}

/// The parameters schema of a tool: an object with one property per
/// parameter (the required ones required, no others allowed), the
/// definitions of the parameters' schemas gathered at its top.
fn parameters_schema<'a>(parameters: impl IntoIterator<Item = Parameter<'a>>) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut defs = Map::new();
    for parameter in parameters {
        let mut schema = match parameter.schema {
            Value::Object(_) => parameter.schema.clone(),
            // `true` (anything) and the like.
            _ => json!({}),
        };
        if let Some(object) = schema.as_object_mut() {
            object.remove("$schema");
            object.remove("title");
        }
        let mut schema = hoist_definitions(schema, &mut defs, parameter.name);
        if let (Some(object), Some(description)) = (schema.as_object_mut(), parameter.description)
            && !object.contains_key("description")
            && !description.is_empty()
        {
            object.insert("description".into(), json!(description));
        }
        properties.insert(parameter.name.to_owned(), schema);
        if parameter.required {
            required.push(json!(parameter.name));
        }
    }
    let mut out = Map::new();
    out.insert("type".into(), json!("object"));
    out.insert("properties".into(), Value::Object(properties));
    out.insert("required".into(), Value::Array(required));
    out.insert("additionalProperties".into(), json!(false));
    if !defs.is_empty() {
        out.insert("$defs".into(), Value::Object(defs));
    }
    Value::Object(out)
}

/// Moves the `$defs` of one parameter's schema into `defs`, renaming those
/// whose name another parameter already uses for something else (and the
/// references to them).
fn hoist_definitions(mut schema: Value, defs: &mut Map<String, Value>, parameter: &str) -> Value {
    let Some(own) = schema
        .as_object_mut()
        .and_then(|o| o.remove("$defs"))
        .and_then(|d| match d {
            Value::Object(map) => Some(map),
            _ => None,
        })
    else {
        return schema;
    };
    let mut renames = Vec::new();
    for (name, definition) in &own {
        if defs.get(name).is_some_and(|seen| seen != definition) {
            let mut renamed = format!("{parameter}_{name}");
            while defs.contains_key(&renamed) {
                renamed.push('_');
            }
            renames.push((name.clone(), renamed));
        }
    }
    let rewrite = |value: &mut Value| {
        for (old, new) in &renames {
            rename_refs(value, &format!("#/$defs/{old}"), &format!("#/$defs/{new}"));
        }
    };
    rewrite(&mut schema);
    for (name, mut definition) in own {
        rewrite(&mut definition);
        let name = renames
            .iter()
            .find(|(old, _)| *old == name)
            .map_or(name, |(_, new)| new.clone());
        defs.entry(name).or_insert(definition);
    }
    schema
}

/// Replaces the references to `old` (and below it) with `new`.
fn rename_refs(value: &mut Value, old: &str, new: &str) {
    match value {
        Value::Object(object) => {
            for (key, item) in object.iter_mut() {
                if key == "$ref"
                    && let Value::String(target) = item
                    && (target == old || target.starts_with(&format!("{old}/")))
                {
                    *target = format!("{new}{}", &target[old.len()..]);
                } else {
                    rename_refs(item, old, new);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_refs(v, old, new)),
        _ => {}
    }
}

/// Makes every tool ready: nodes made, flows loaded, schemas compiled.
pub(crate) fn prepare(tools: &[AgentTool], ctx: &Context) -> Result<Vec<ReadyTool>, NodeError> {
    check_tools(tools).map_err(|e| NodeError::permanent(format!("config.{e}")))?;
    let mut ready = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let (target, default_description) = match (&tool.built, &tool.node, &tool.flow) {
            (Some(Built::Node(node)), _, _) => (
                Target::Node(node.clone()),
                first_paragraph(&node.spec().description),
            ),
            (Some(Built::Flow(flow)), _, _) => (
                Target::Flow(flow.clone()),
                format!("Runs the flow `{}`.", flow.name()),
            ),
            (None, Some(declared), _) => {
                let at = format!("tools[{i}].node");
                let registry = registry(ctx, &at)?;
                let node_type = registry
                    .get(&declared.node_type)
                    .map_err(|e| NodeError::permanent(format!("config.{at}.type: {e}")))?;
                let node = node_type.create(&declared.config).map_err(|e| {
                    NodeError::permanent(if e.path.is_empty() {
                        format!("config.{at}.config: {}", e.message)
                    } else {
                        format!("config.{at}.config.{}: {}", e.path, e.message)
                    })
                })?;
                let description = first_paragraph(&node.spec().description);
                (Target::Node(node), description)
            }
            (None, None, Some(reference)) => {
                let (flow, description) = load_flow(ctx, reference, &format!("tools[{i}].flow"))?;
                let description =
                    description.unwrap_or_else(|| format!("Runs the flow `{}`.", flow.name()));
                (Target::Flow(flow), description)
            }
            (None, None, None) => unreachable!("check_tools refuses a tool with nothing to run"),
        };
        let parameters = match &target {
            Target::Node(node) => {
                let spec = node.spec();
                parameters_schema(spec.inputs.iter().filter(|p| !p.name.starts_with('$')).map(
                    |p| Parameter {
                        name: &p.name,
                        schema: &p.schema,
                        description: p.description.as_deref(),
                        required: p.required,
                    },
                ))
            }
            Target::Flow(flow) => parameters_schema(flow.inputs().iter().map(|p| Parameter {
                name: &p.name,
                schema: &p.schema,
                description: p.description.as_deref(),
                required: p.default.is_none(),
            })),
        };
        let validator = jsonschema::validator_for(&parameters).map_err(|e| {
            NodeError::permanent(format!(
                "config.tools[{i}]: the parameters schema of `{}` does not compile: {e}",
                tool.name
            ))
        })?;
        ready.push(ReadyTool {
            spec: ToolSpec {
                name: tool.name.clone(),
                description: tool.description.clone().unwrap_or(default_description),
                parameters,
            },
            target,
            validator,
        });
    }
    Ok(ready)
}

impl ReadyTool {
    /// The problems of `arguments` against the parameters schema, worded
    /// for the model; empty when they fit.
    pub(crate) fn check_arguments(&self, arguments: &Value) -> Vec<String> {
        self.validator
            .iter_errors(arguments)
            .take(12)
            .map(|error| {
                let at = error.instance_path().as_str();
                if at.is_empty() {
                    error.to_string()
                } else {
                    format!("at `{at}`: {error}")
                }
            })
            .collect()
    }

    /// Runs the tool with `arguments` (checked, an object) on the node's
    /// engine; the outputs as an object, or the run's error.
    pub(crate) async fn call(
        &self,
        ctx: &Context,
        arguments: Map<String, Value>,
    ) -> Result<Value, String> {
        let flow = match &self.target {
            Target::Flow(flow) => flow.clone(),
            Target::Node(node) => Arc::new(one_node_flow(&self.spec.name, node, &arguments)?),
        };
        let outcome = ctx
            .engine()
            .run(&flow, Inputs::from_json(arguments))
            .await
            .map_err(|e| e.to_string())?;
        outcome
            .outputs_json()
            .map(Value::Object)
            .map_err(|e| e.to_string())
    }
}

/// A flow of `node` alone, with one flow input per argument given
/// (connected to the input port of that name) and one output per output
/// port.
fn one_node_flow(
    name: &str,
    node: &Arc<dyn ErasedNode>,
    arguments: &Map<String, Value>,
) -> Result<Flow, String> {
    let spec = node.spec();
    let mut builder = Flow::builder(format!("tool {name}"));
    let index = builder.add_erased(name, node.clone());
    for (position, port) in spec.inputs.iter().enumerate() {
        if arguments.contains_key(&port.name) {
            let input = builder.input_json(port.name.clone(), port.schema.clone(), None, None);
            builder.connect_erased(
                input,
                Endpoint {
                    node: index,
                    port: position as u16,
                },
            );
        }
    }
    for (position, port) in spec.outputs.iter().enumerate() {
        builder.output_erased(
            port.name.clone(),
            Endpoint {
                node: index,
                port: position as u16,
            },
        );
    }
    builder
        .build()
        .map_err(|e| format!("the tool's node cannot run alone: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_lists_are_checked() {
        let parse = |value: Value| {
            serde_path_to_error::deserialize::<_, Wrapper>(value)
                .map(|_| ())
                .map_err(|e| format!("{}: {}", e.path(), e.inner()))
        };
        #[derive(Deserialize)]
        struct Wrapper {
            #[serde(deserialize_with = "tools")]
            #[expect(dead_code, reason = "only deserialized")]
            tools: Vec<AgentTool>,
        }
        assert_eq!(
            parse(
                json!({"tools": [{"name": "a", "node": {"type": "x"}}, {"name": "b", "flow": "f.yaml"}]})
            ),
            Ok(())
        );
        for (tools, expected) in [
            (
                json!([{"name": "a b", "node": {"type": "x"}}]),
                "tools[0].name: `a b` is not a tool name",
            ),
            (
                json!([{"name": "a", "node": {"type": "x"}}, {"name": "a", "flow": "f.yaml"}]),
                "tools: tools[1]: the name `a` is taken by tools[0]",
            ),
            (
                json!([{"name": "a"}]),
                "tools: tools[0] (`a`): give the `node`",
            ),
            (
                json!([{"name": "a", "node": {"type": "x"}, "flow": "f.yaml"}]),
                "tools: tools[0] (`a`): give `node` or `flow`, not both",
            ),
            (
                json!([{"name": "a", "node": {"type": "x", "cfg": {}}}]),
                "tools[0].node.cfg: unknown field `cfg`",
            ),
        ] {
            let err = parse(json!({ "tools": tools })).unwrap_err();
            assert!(
                err.starts_with(expected),
                "`{err}` should start with `{expected}`"
            );
        }
    }

    #[test]
    fn parameters_gather_definitions_and_rename_clashes() {
        let a = json!({"$schema": "x", "title": "A", "$ref": "#/$defs/Item",
            "$defs": {"Item": {"type": "string"}, "Same": {"type": "null"}}});
        let b = json!({"type": "array", "items": {"$ref": "#/$defs/Item"},
            "$defs": {"Item": {"type": "integer"}, "Same": {"type": "null"}}});
        let schema = parameters_schema([
            Parameter {
                name: "a",
                schema: &a,
                description: Some("The a."),
                required: true,
            },
            Parameter {
                name: "b",
                schema: &b,
                description: None,
                required: false,
            },
            Parameter {
                name: "c",
                schema: &json!(true),
                description: Some("Anything."),
                required: false,
            },
        ]);
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "a": {"$ref": "#/$defs/Item", "description": "The a."},
                    "b": {"type": "array", "items": {"$ref": "#/$defs/b_Item"}},
                    "c": {"description": "Anything."}
                },
                "required": ["a"],
                "additionalProperties": false,
                "$defs": {
                    "Item": {"type": "string"},
                    "Same": {"type": "null"},
                    "b_Item": {"type": "integer"}
                }
            })
        );
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(validator.is_valid(&json!({"a": "x", "b": [1, 2]})));
        assert!(!validator.is_valid(&json!({"a": "x", "b": ["no"]})));
        assert!(!validator.is_valid(&json!({"b": [1]})));
        assert!(!validator.is_valid(&json!({"a": "x", "d": 1})));
    }
}
