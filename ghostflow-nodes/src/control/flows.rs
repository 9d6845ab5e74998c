//! Nodes that run other flows: [`Subflow`] once, [`ForEach`] per item.
//!
//! The flow is a document (a path, read relative to the document that names
//! it, or the document inline), loaded with the engine's node registry
//! ([`EngineBuilder::registry`](ghostflow::EngineBuilder::registry)) and the
//! [`LoadOptions`] the application gave the engine as a resource, if any; or
//! a [`Flow`] built in Rust ([`Subflow::new`], [`ForEach::new`]). Loaded
//! documents are kept per engine and read again when their file changes.
//!
//! A sub-flow runs on the same engine as its parent: the same secrets,
//! store, resources, retry and concurrency settings. Cancelling the parent
//! cancels the sub-flows it is running. While it waits for its sub-flows the
//! node holds no slot of the engine-wide concurrency limit (see
//! [`Run::RUNS_FLOWS`]), so a limit of one cannot deadlock it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use futures::StreamExt;
use ghostflow::document::{FlowRef, LoadOptions};
use ghostflow::prelude::*;
use ghostflow::{Inputs, Outcome};

/// When a document file was last changed, and its size: a loaded flow is
/// used again while both stay the same. `None` for inline documents.
type Stamp = Option<(SystemTime, u64)>;

/// Sub-flows loaded by an engine's nodes, by source.
#[derive(Debug, Default)]
struct LoadedFlows {
    flows: std::sync::Mutex<HashMap<String, (Stamp, Arc<Flow>)>>,
}

/// How many loaded sub-flows an engine keeps.
const MAX_LOADED_FLOWS: usize = 256;

/// Where a node's flow comes from.
#[derive(Clone, Debug)]
enum Source {
    /// A document, loaded on first use.
    Document(FlowRef),
    /// A flow built in Rust.
    Built(Arc<Flow>),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Document(flow) => flow.describe(),
            Source::Built(flow) => format!("`{}`", flow.name()),
        }
    }

    /// The flow to run.
    fn flow(&self, ctx: &Context) -> Result<Arc<Flow>, NodeError> {
        let reference = match self {
            Source::Built(flow) => return Ok(flow.clone()),
            Source::Document(reference) => reference,
        };
        let (key, stamp) = match reference {
            FlowRef::Path(path) => {
                let meta = std::fs::metadata(path).map_err(|e| {
                    NodeError::permanent(format!("config.flow: cannot read `{path}`: {e}"))
                })?;
                (path.clone(), meta.modified().ok().map(|m| (m, meta.len())))
            }
            FlowRef::Inline(document) => (
                serde_json::to_string(document).map_err(|e| {
                    NodeError::permanent(format!("config.flow: the inline flow: {e}"))
                })?,
                None,
            ),
        };
        let cache = ctx.shared(LoadedFlows::default);
        if let Some((seen, flow)) = cache
            .flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && *seen == stamp
        {
            return Ok(flow.clone());
        }
        let registry = ctx.registry().ok_or_else(|| {
            NodeError::permanent(
                "config.flow: this engine has no node registry to load the sub-flow with; \
                 build the engine with `EngineBuilder::registry`",
            )
        })?;
        let options = ctx
            .resource::<LoadOptions>()
            .map(|o| (*o).clone())
            .unwrap_or_default();
        let flow = reference.load(&registry, options).map_err(|e| {
            NodeError::permanent(format!(
                "config.flow: the sub-flow {} does not load:\n{e}",
                reference.describe()
            ))
        })?;
        let flow = Arc::new(flow);
        let mut flows = cache.flows.lock().unwrap_or_else(|e| e.into_inner());
        if flows.len() >= MAX_LOADED_FLOWS {
            flows.clear();
        }
        flows.insert(key, (stamp, flow.clone()));
        Ok(flow)
    }
}

/// The config field and the loaded flow of a node built in Rust.
fn built(flow: Flow) -> (FlowRef, Source) {
    let reference = FlowRef::from_flow(&flow).unwrap_or_else(|e| {
        // Only what is written out (a document of the parent) sees this.
        FlowRef::Path(format!("<flow `{}` built in Rust: {e}>", flow.name()))
    });
    (reference, Source::Built(Arc::new(flow)))
}

/// Runs `flow` with `inputs` on the node's engine; a failure names the
/// flow.
async fn run_flow(
    ctx: &Context,
    source: &Source,
    flow: &Flow,
    inputs: serde_json::Map<String, serde_json::Value>,
) -> Result<Outcome, NodeError> {
    ctx.engine()
        .run(flow, Inputs::from_json(inputs))
        .await
        .map_err(|e| NodeError::permanent(format!("sub-flow {}: {e}", source.describe())))
}

/// Merges the object on an input port (if any) with a config object; the
/// config's fields win.
fn merge_objects(
    port: Option<serde_json::Value>,
    port_name: &str,
    config: &serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>, NodeError> {
    let mut out = match port {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(map)) => map,
        Some(other) => {
            return Err(NodeError::permanent(format!(
                "input `{port_name}` must be an object of flow inputs, got {}",
                crate::kind(&other)
            )));
        }
    };
    for (key, value) in config {
        out.insert(key.clone(), value.clone());
    }
    Ok(out)
}

/// Input of a [`Subflow`].
#[derive(Ports, Debug)]
pub struct SubflowIn {
    /// The sub-flow's inputs, as an object by input name; merged under the
    /// config's `inputs`.
    pub inputs: Option<serde_json::Value>,
}

/// Output of a [`Subflow`].
#[derive(Ports, Debug)]
pub struct SubflowOut {
    /// The sub-flow's outputs, as an object by output name (`null` for an
    /// output whose branch was not taken).
    pub outputs: serde_json::Value,
}

/// Runs another flow with inputs and returns its outputs.
///
/// The flow is a document: a path (relative to the document that names it)
/// or the document itself, inline; it is checked when the parent loads.
/// Its inputs are the `inputs` input port's object with the config's
/// `inputs` on top (expressions allowed there). The sub-flow runs on the
/// same engine, with the same secrets and policies; if it fails, this node
/// fails with the sub-flow's error.
///
/// ```yaml
/// - id: enrich
///   type: subflow
///   config:
///     flow: enrich-customer.yaml
///     inputs:
///       customer_id: "{{ nodes.order.value.customer }}"
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = SubflowIn, output = SubflowOut, category = "control")]
#[serde(deny_unknown_fields)]
pub struct Subflow {
    /// The flow to run: a document's path, or a document inline.
    #[schemars(extend("x-flow" = true))]
    pub flow: FlowRef,
    /// Inputs of the sub-flow, by name (expressions allowed); they win over
    /// the `inputs` port's fields.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub inputs: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    #[schemars(skip)]
    source: Option<Source>,
}

impl Subflow {
    /// A node that runs `flow`, built in Rust.
    pub fn new(flow: Flow) -> Self {
        let (reference, source) = built(flow);
        Subflow {
            flow: reference,
            inputs: serde_json::Map::new(),
            source: Some(source),
        }
    }

    /// Sets sub-flow input `name` to `value` (over the `inputs` port).
    #[must_use]
    pub fn input(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        self.inputs.insert(name.into(), value);
        self
    }

    fn source(&self) -> Source {
        self.source
            .clone()
            .unwrap_or_else(|| Source::Document(self.flow.clone()))
    }
}

impl Run for Subflow {
    async fn run(&self, input: SubflowIn, ctx: &Context) -> Result<SubflowOut, NodeError> {
        let source = self.source();
        let flow = source.flow(ctx)?;
        let inputs = merge_objects(input.inputs, "inputs", &self.inputs)?;
        let outcome = run_flow(ctx, &source, &flow, inputs).await?;
        let outputs = outcome
            .outputs_json()
            .map_err(|e| NodeError::permanent(format!("sub-flow {}: {e}", source.describe())))?;
        Ok(SubflowOut {
            outputs: serde_json::Value::Object(outputs),
        })
    }

    const RUNS_FLOWS: bool = true;
}

/// What a [`ForEach`] does when an item's run fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemErrorPolicy {
    /// The node fails with the first failure (in item order); the runs
    /// still going are cancelled.
    #[default]
    Fail,
    /// The failed items are left out of `results`.
    Skip,
    /// The failed items are left out of `results` and listed in `errors`.
    Collect,
}

/// Inputs of a [`ForEach`].
#[derive(Ports, Debug)]
pub struct ForEachIn {
    /// The list to run the flow for, one run per element.
    pub items: serde_json::Value,
    /// Inputs given to every run, as an object by input name; merged under
    /// the config's `with`.
    pub with: Option<serde_json::Value>,
}

/// Outputs of a [`ForEach`].
#[derive(Ports, Debug)]
pub struct ForEachOut {
    /// One result per item that succeeded, in the order of `items`.
    pub results: Vec<serde_json::Value>,
    /// With `on_item_error: collect`, one `{index, item, error}` per item
    /// that failed, in item order; otherwise empty.
    pub errors: Vec<serde_json::Value>,
}

fn default_item_input() -> String {
    "item".to_owned()
}

fn default_concurrency() -> NonZeroU32 {
    NonZeroU32::new(4).unwrap_or(NonZeroU32::MIN)
}

/// Runs a flow once for each element of a list, a few at a time, and
/// collects the results in the list's order.
///
/// Each run gets the element as flow input `item` (`item_input`), its
/// position as `index_input` if set, and the inputs of `with` (config,
/// expressions allowed) over those of the `with` port. Its result is the
/// sub-flow output named by `output`; without it, the flow's only output,
/// or an object of all its outputs when it has several. At most
/// `concurrency` runs go at once. A failed run fails the node
/// (`on_item_error: fail`), is left out (`skip`), or is left out and listed
/// in `errors` (`collect`). Progress events report `done`, `failed` and
/// `total` as runs finish.
///
/// ```yaml
/// - id: fetch_each
///   type: for_each
///   config:
///     flow: fetch-one.yaml
///     concurrency: 8
///     on_item_error: collect
///     with:
///       api: "{{ input.api_base }}"
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(name = "for_each", input = ForEachIn, output = ForEachOut, category = "control")]
#[serde(deny_unknown_fields)]
pub struct ForEach {
    /// The flow to run per item: a document's path, or a document inline.
    #[schemars(extend("x-flow" = true))]
    pub flow: FlowRef,
    /// The flow input that receives the item.
    #[serde(default = "default_item_input")]
    pub item_input: String,
    /// The flow input that receives the item's position (from 0), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_input: Option<String>,
    /// How many runs go at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: NonZeroU32,
    /// What a failed run does: `fail`, `skip` or `collect`.
    #[serde(default)]
    pub on_item_error: ItemErrorPolicy,
    /// The sub-flow output that is an item's result; by default the only
    /// output, or an object of all outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Inputs given to every run, by name (expressions allowed); they win
    /// over the `with` port's fields.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub with: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    #[schemars(skip)]
    source: Option<Source>,
}

impl ForEach {
    /// A node that runs `flow`, built in Rust, for each item.
    pub fn new(flow: Flow) -> Self {
        let (reference, source) = built(flow);
        ForEach {
            flow: reference,
            item_input: default_item_input(),
            index_input: None,
            concurrency: default_concurrency(),
            on_item_error: ItemErrorPolicy::default(),
            output: None,
            with: serde_json::Map::new(),
            source: Some(source),
        }
    }

    /// At most `n` runs at once (at least one).
    #[must_use]
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        self
    }

    /// What a failed run does.
    #[must_use]
    pub fn on_item_error(mut self, policy: ItemErrorPolicy) -> Self {
        self.on_item_error = policy;
        self
    }

    /// Takes sub-flow output `name` as each item's result.
    #[must_use]
    pub fn output(mut self, name: impl Into<String>) -> Self {
        self.output = Some(name.into());
        self
    }

    fn source(&self) -> Source {
        self.source
            .clone()
            .unwrap_or_else(|| Source::Document(self.flow.clone()))
    }

    /// Checks the flow's inputs and outputs against the config.
    fn check(&self, flow: &Flow, source: &Source) -> Result<(), NodeError> {
        let inputs: Vec<&str> = flow.inputs().iter().map(|p| p.name.as_str()).collect();
        let names = |list: &[&str]| {
            if list.is_empty() {
                "none".to_owned()
            } else {
                list.iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let fields = [
            ("item_input", Some(&self.item_input)),
            ("index_input", self.index_input.as_ref()),
        ];
        for (field, name) in fields {
            if let Some(name) = name
                && !inputs.contains(&name.as_str())
            {
                return Err(NodeError::permanent(format!(
                    "config.{field}: the sub-flow {} has no input `{name}` (inputs: {})",
                    source.describe(),
                    names(&inputs)
                )));
            }
        }
        if let Some(output) = &self.output
            && !flow.outputs().iter().any(|p| p.name == *output)
        {
            let outputs: Vec<&str> = flow.outputs().iter().map(|p| p.name.as_str()).collect();
            return Err(NodeError::permanent(format!(
                "config.output: the sub-flow {} has no output `{output}` (outputs: {})",
                source.describe(),
                names(&outputs)
            )));
        }
        Ok(())
    }

    /// An item's result from its run's outcome.
    fn result(&self, outcome: &Outcome) -> Result<serde_json::Value, ghostflow::Error> {
        let name = match &self.output {
            Some(name) => Some(name.as_str()),
            None if outcome.outputs().len() == 1 => outcome.outputs().next().map(|(n, _)| n),
            None => None,
        };
        match name {
            Some(name) => outcome
                .output_value(name)
                .map_or(Ok(serde_json::Value::Null), |v| {
                    v.to_json().map_err(|e| ghostflow::Error::Output {
                        name: name.to_owned(),
                        reason: e.to_string(),
                    })
                }),
            None => outcome.outputs_json().map(serde_json::Value::Object),
        }
    }
}

impl Run for ForEach {
    async fn run(&self, input: ForEachIn, ctx: &Context) -> Result<ForEachOut, NodeError> {
        let items = match input.items {
            serde_json::Value::Array(items) => items,
            other => {
                return Err(NodeError::permanent(format!(
                    "input `items` must be a list, got {}",
                    crate::kind(&other)
                )));
            }
        };
        let source = self.source();
        let flow = source.flow(ctx)?;
        self.check(&flow, &source)?;
        let shared = merge_objects(input.with, "with", &self.with)?;
        let total = items.len();
        let done = AtomicUsize::new(0);
        let failed = AtomicUsize::new(0);
        let (flow, source, shared, done, failed) = (&*flow, &source, &shared, &done, &failed);

        let runs = futures::stream::iter(items.into_iter().enumerate().map(|(index, item)| {
            let mut inputs = shared.clone();
            inputs.insert(self.item_input.clone(), item.clone());
            if let Some(name) = &self.index_input {
                inputs.insert(name.clone(), serde_json::Value::from(index));
            }
            async move {
                let result = match ctx.engine().run(flow, Inputs::from_json(inputs)).await {
                    Ok(outcome) => self.result(&outcome).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                let failures = if result.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed) + 1
                } else {
                    failed.load(Ordering::Relaxed)
                };
                ctx.progress(serde_json::json!({
                    "done": finished,
                    "failed": failures,
                    "total": total,
                }));
                (index, item, result)
            }
        }))
        .buffered(self.concurrency.get() as usize);
        let mut runs = std::pin::pin!(runs);

        let mut results = Vec::with_capacity(total);
        let mut errors = Vec::new();
        while let Some((index, item, result)) = runs.next().await {
            match result {
                Ok(value) => results.push(value),
                Err(error) => match self.on_item_error {
                    ItemErrorPolicy::Fail => {
                        return Err(NodeError::permanent(format!(
                            "item {index} of {total}: sub-flow {}: {error}",
                            source.describe()
                        )));
                    }
                    ItemErrorPolicy::Skip => {}
                    ItemErrorPolicy::Collect => errors.push(serde_json::json!({
                        "index": index,
                        "item": item,
                        "error": error,
                    })),
                },
            }
        }
        Ok(ForEachOut { results, errors })
    }

    const RUNS_FLOWS: bool = true;
}
