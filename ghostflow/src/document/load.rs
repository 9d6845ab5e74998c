//! Loading: a document's bytes to a runnable [`Flow`], with every problem
//! reported at its place.
//!
//! Loading goes in rounds, each reporting all it finds: the bytes (syntax,
//! size, nesting, encoding), the version, the document's shape against the
//! document JSON Schema, and then the meaning: node types and versions,
//! configs against their schemas, expressions, edges and their types, flow
//! outputs, and the graph (cycles, unconnected and doubly connected inputs).
//! A round with problems ends the load, because what follows would only
//! report their echoes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::context::Secrets;
use crate::error::{Error, NodeError, Problem};
use crate::expr::{ConfigTemplate, EnvAccess, Reference, Scope, Template};
use crate::flow::{ERROR_PORT, Endpoint, Flow, FlowBuilder};
use crate::node::{BoxFuture, ErasedNode, NodeSpec};
use crate::port::{NodeIndex, PortSpec};
use crate::registry::{NodeType, Registry, edit_distance, schema_problems};
use crate::value::Value;

use super::compat;
use super::model::{Document, NodeDecl, VERSION};
use super::source::{self, DocPath, Format, Limits, Location, Segment, SourceMap};

/// Settings of a [`Loader`].
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// Size and nesting limits of document bytes.
    pub limits: Limits,
    /// Which environment variables expressions may read (`{{ env.NAME }}`).
    pub env: EnvAccess,
    /// When set, secrets that expressions read must exist in this provider
    /// at load time (a missing one is a load problem, not a run failure).
    pub secrets: Option<Arc<dyn Secrets>>,
    /// The directory that relative paths in configs (values marked `x-path`
    /// or `x-flow` in a node's schema, at any depth, such as a sub-flow's
    /// file) are read from. [`Loader::load_path`] sets it to the document's
    /// directory.
    pub base_dir: Option<PathBuf>,
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("limits", &self.limits)
            .field("env", &self.env)
            .field("checks_secrets", &self.secrets.is_some())
            .field("base_dir", &self.base_dir)
            .finish()
    }
}

/// One problem in a document: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocProblem {
    /// The value the problem is about, such as `nodes[2].config.url`.
    pub path: DocPath,
    /// Its line and column in the source, when loaded from bytes.
    pub location: Option<Location>,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
}

/// Every problem found in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// Where the document came from (a file name), for messages.
    pub origin: Option<String>,
    /// The problems, in document order within each round.
    pub problems: Vec<DocProblem>,
}

impl fmt::Display for LoadError {
    /// One line per problem, compiler style: `file:line:col: path: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if let Some(origin) = &self.origin {
                write!(f, "{origin}:")?;
            }
            if let Some(at) = p.location {
                write!(f, "{}:{}:", at.line, at.column)?;
            }
            if self.origin.is_some() || p.location.is_some() {
                f.write_str(" ")?;
            }
            if p.path.is_root() {
                f.write_str(&p.message)?;
            } else {
                write!(f, "{}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// A flow loaded from a document.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The runnable flow.
    pub flow: Flow,
    /// The document it came from, to write back or show.
    pub document: Document,
}

/// Loads flow documents through a [`Registry`].
///
/// ```
/// use ghostflow::document::{Format, Loader};
/// use ghostflow::Registry;
///
/// let registry = Registry::new();
/// let err = Loader::new(&registry)
///     .load_bytes(b"version: 2\nname: x\nnodes: []\n", Format::Yaml, Some("flow.yaml"))
///     .unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "flow.yaml:1:10: version: unsupported document version 2; this reader takes version 1"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Loader<'r> {
    registry: &'r Registry,
    options: LoadOptions,
    /// The documents being loaded around this one (sub-flows), outermost
    /// first, to refuse a flow that includes itself.
    chain: Vec<PathBuf>,
}

/// How deeply sub-flow documents may include one another.
const MAX_SUBFLOW_DEPTH: usize = 16;

impl<'r> Loader<'r> {
    /// A loader with default options: 10 MiB documents, no environment
    /// variables, secrets checked when the flow runs.
    pub fn new(registry: &'r Registry) -> Self {
        Loader {
            registry,
            options: LoadOptions::default(),
            chain: Vec::new(),
        }
    }

    /// A loader with `options`.
    pub fn with_options(registry: &'r Registry, options: LoadOptions) -> Self {
        Loader {
            registry,
            options,
            chain: Vec::new(),
        }
    }

    /// Loads the file at `path` (`.json` as JSON, anything else as YAML).
    ///
    /// # Errors
    /// The file cannot be read, or the document has problems.
    pub fn load_path(&self, path: &Path) -> Result<Loaded, LoadError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| LoadError {
            origin: Some(origin.clone()),
            problems: vec![DocProblem {
                path: DocPath::root(),
                location: None,
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        let mut in_dir = self.clone();
        in_dir.options.base_dir = path.parent().map(Path::to_path_buf);
        if let Ok(real) = path.canonicalize() {
            in_dir.chain.push(real);
        }
        in_dir.load_bytes(&bytes, Format::from_path(path), Some(&origin))
    }

    /// Loads a document from its bytes.
    ///
    /// # Errors
    /// Every problem found, each with its path and, for YAML and JSON text,
    /// its line and column.
    pub fn load_bytes(
        &self,
        bytes: &[u8],
        format: Format,
        origin: Option<&str>,
    ) -> Result<Loaded, LoadError> {
        let fail = |problems: Vec<DocProblem>| LoadError {
            origin: origin.map(str::to_owned),
            problems,
        };
        let (value, map) = source::parse(bytes, format, &self.options.limits).map_err(|e| {
            fail(vec![DocProblem {
                path: DocPath::root(),
                location: e.location,
                message: e.message,
            }])
        })?;
        let document = read_document(&value, Some(&map)).map_err(fail)?;
        self.load_with_map(document, Some(&map)).map_err(fail)
    }

    /// Loads a document already in memory (paths, no line numbers).
    ///
    /// # Errors
    /// Every problem found, each with its path.
    pub fn load_document(&self, document: Document) -> Result<Loaded, LoadError> {
        self.load_with_map(document, None)
            .map_err(|problems| LoadError {
                origin: None,
                problems,
            })
    }

    fn load_with_map(
        &self,
        document: Document,
        map: Option<&SourceMap>,
    ) -> Result<Loaded, Vec<DocProblem>> {
        if document.version != VERSION {
            return Err(vec![problem(
                map,
                DocPath::root().with_key("version"),
                format!(
                    "unsupported document version {}; this reader takes version {VERSION}",
                    document.version
                ),
            )]);
        }
        let flow = Build::new(self, &document, map).run()?;
        Ok(Loaded { flow, document })
    }
}

/// The document JSON Schema, compiled once.
fn document_validator() -> Option<&'static jsonschema::Validator> {
    static VALIDATOR: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::validator_for(&super::json_schema()).ok())
        .as_ref()
}

/// Checks the version and the document's shape, then reads it.
fn read_document(
    value: &serde_json::Value,
    map: Option<&SourceMap>,
) -> Result<Document, Vec<DocProblem>> {
    let version_path = DocPath::root().with_key("version");
    match value.get("version") {
        None => {
            return Err(vec![problem(
                map,
                DocPath::root(),
                format!("missing `version`; this reader takes `version: {VERSION}`"),
            )]);
        }
        Some(v) if v.as_u64() != Some(u64::from(VERSION)) => {
            let shown = match v {
                serde_json::Value::String(s) => format!("`{s}`"),
                other => other.to_string(),
            };
            return Err(vec![problem(
                map,
                version_path,
                format!(
                    "unsupported document version {shown}; this reader takes version {VERSION}"
                ),
            )]);
        }
        Some(_) => {}
    }
    if let Some(validator) = document_validator() {
        let problems: Vec<DocProblem> = schema_problems(validator, &super::json_schema(), value)
            .into_iter()
            .map(|p| {
                let path = DocPath::from_json_pointer(&p.pointer).unwrap_or_default();
                match p.key {
                    // An unknown field: point at its key.
                    Some(key) => {
                        let path = path.with_key(key);
                        DocProblem {
                            location: map.and_then(|m| m.locate_key(&path)),
                            path,
                            message: p.message,
                        }
                    }
                    None => problem(map, path, p.message),
                }
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
    }
    serde_path_to_error::deserialize::<_, Document>(value).map_err(|e| {
        let path = DocPath::root().join_dotted(&e.path().to_string());
        vec![problem(map, path, e.into_inner().to_string())]
    })
}

/// A problem at `path`, located through `map` when there is one.
fn problem(map: Option<&SourceMap>, path: DocPath, message: String) -> DocProblem {
    DocProblem {
        location: map.and_then(|m| m.locate(&path)),
        path,
        message,
    }
}

/// An endpoint as written in a document: `input.<name>` or `<node>.<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EndpointRef<'a> {
    Input(&'a str),
    Port { node: &'a str, port: &'a str },
}

fn parse_endpoint(text: &str) -> Result<EndpointRef<'_>, String> {
    let Some((node, port)) = text.split_once('.') else {
        return Err(format!(
            "`{text}` is not an endpoint; write `node.port` (or `input.name` for a flow input)"
        ));
    };
    let (node, port) = (node.trim(), port.trim());
    if node.is_empty() || port.is_empty() {
        return Err(format!(
            "`{text}` is not an endpoint; write `node.port` (or `input.name` for a flow input)"
        ));
    }
    Ok(if node == "input" {
        EndpointRef::Input(port)
    } else {
        EndpointRef::Port { node, port }
    })
}

/// Names of hidden input ports that carry what a node's expressions read.
fn hidden_port_name(reference: &Reference) -> Option<String> {
    match reference {
        Reference::Input(name) => Some(format!("$input.{name}")),
        Reference::Node { node, port } => Some(format!("$nodes.{node}.{port}")),
        Reference::Secret(_) | Reference::Env(_) => None,
    }
}

/// Whether an input port was added for an expression (documents never
/// show such ports or their edges).
pub(crate) fn is_hidden_port(name: &str) -> bool {
    name.starts_with('$')
}

/// `names` as `` `a`, `b` `` for messages.
fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let all: Vec<String> = names
        .into_iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect();
    if all.is_empty() {
        "none".to_owned()
    } else {
        all.join(", ")
    }
}

/// The closest of `candidates` to `wanted`, if close enough to suggest.
fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(wanted, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or(String::new(), |s| format!("; did you mean `{s}`?"))
}

/// One document being turned into a flow.
struct Build<'a, 'r> {
    loader: &'a Loader<'r>,
    doc: &'a Document,
    map: Option<&'a SourceMap>,
    problems: Vec<DocProblem>,
    builder: FlowBuilder,
    /// Node index in the document by id (first occurrence).
    decl_index: HashMap<&'a str, usize>,
    /// The resolved spec and builder index of each document node that could
    /// be made (`None` for a node whose type or config failed).
    nodes: Vec<Option<(Arc<NodeSpec>, NodeIndex)>>,
    /// Flow input endpoints by name.
    inputs: HashMap<&'a str, Endpoint>,
    /// For each templated node: its references, in hidden-port order, and
    /// the number of its real input ports.
    hidden: Vec<(usize, Vec<Reference>, usize)>,
}

impl<'a, 'r> Build<'a, 'r> {
    fn new(loader: &'a Loader<'r>, doc: &'a Document, map: Option<&'a SourceMap>) -> Self {
        Build {
            loader,
            doc,
            map,
            problems: Vec::new(),
            builder: Flow::builder(doc.name.clone()),
            decl_index: HashMap::new(),
            nodes: Vec::new(),
            inputs: HashMap::new(),
            hidden: Vec::new(),
        }
    }

    fn report(&mut self, path: DocPath, message: impl Into<String>) {
        let p = problem(self.map, path, message.into());
        self.problems.push(p);
    }

    fn node_path(i: usize) -> DocPath {
        DocPath::root().with_key("nodes").with_index(i)
    }

    fn run(mut self) -> Result<Flow, Vec<DocProblem>> {
        self.declare_inputs();
        self.index_ids();
        for i in 0..self.doc.nodes.len() {
            let made = self.make_node(i);
            self.nodes.push(made);
        }
        self.connect_expressions();
        let mut targets_of_lost_edges = HashSet::new();
        self.connect_edges(&mut targets_of_lost_edges);
        self.declare_outputs();
        let Build {
            builder,
            mut problems,
            doc,
            map,
            decl_index,
            ..
        } = self;
        // The graph is checked even when nodes failed: cycles and
        // connections among the others are real problems too (echoes of
        // what failed are dropped).
        match builder.build() {
            Ok(flow) if problems.is_empty() => Ok(flow),
            Ok(_) => Err(problems),
            Err(Error::Invalid {
                problems: found, ..
            }) => {
                let echoes_only = problems.is_empty();
                for p in found {
                    if let Some(p) = graph_problem(doc, map, &decl_index, &targets_of_lost_edges, p)
                    {
                        problems.push(p);
                    }
                }
                if problems.is_empty() && echoes_only {
                    problems.push(problem(map, DocPath::root(), "the flow is invalid".into()));
                }
                Err(problems)
            }
            Err(other) => {
                problems.push(problem(map, DocPath::root(), other.to_string()));
                Err(problems)
            }
        }
    }

    fn declare_inputs(&mut self) {
        for (name, decl) in &self.doc.inputs {
            let path = DocPath::root().with_key("inputs").with_key(name);
            if !is_name(name) {
                self.report(
                    path.clone(),
                    format!("input name `{name}` must use letters, digits and `_` only"),
                );
            }
            let schema = decl
                .schema
                .clone()
                .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
            if let (Some(default), Ok(validator)) =
                (&decl.default, jsonschema::validator_for(&schema))
            {
                for e in validator.iter_errors(default) {
                    let inner =
                        DocPath::from_json_pointer(e.instance_path().as_str()).unwrap_or_default();
                    self.report(
                        path.clone().with_key("default").join(&inner),
                        format!("the default does not match the input's schema: {e}"),
                    );
                }
            } else if let Err(e) = jsonschema::validator_for(&schema) {
                self.report(
                    path.clone().with_key("schema"),
                    format!("not a valid JSON Schema: {e}"),
                );
            }
            let endpoint = self.builder.input_json(
                name.clone(),
                schema,
                decl.default.clone(),
                decl.description.clone(),
            );
            self.inputs.insert(name.as_str(), endpoint);
        }
    }

    fn index_ids(&mut self) {
        for (i, node) in self.doc.nodes.iter().enumerate() {
            let path = Self::node_path(i).with_key("id");
            if !crate::flow::valid_id(&node.id) {
                self.report(
                    path,
                    format!(
                        "invalid node id `{}`: use letters, digits, `_` and `-` only",
                        node.id
                    ),
                );
            } else if matches!(node.id.as_str(), "input" | "nodes" | "secrets" | "env") {
                self.report(
                    path,
                    format!(
                        "`{}` is reserved for expressions; choose another id",
                        node.id
                    ),
                );
            } else if let Some(&first) = self.decl_index.get(node.id.as_str()) {
                self.report(
                    path,
                    format!(
                        "duplicate node id `{}` (first used by nodes[{first}])",
                        node.id
                    ),
                );
            } else {
                self.decl_index.insert(&node.id, i);
            }
        }
    }

    /// Resolves, checks and adds document node `i`.
    fn make_node(&mut self, i: usize) -> Option<(Arc<NodeSpec>, NodeIndex)> {
        let decl = &self.doc.nodes[i];
        let path = Self::node_path(i);
        let node_type = match self.loader.registry.get(&decl.node_type) {
            Ok(t) => t.clone(),
            Err(e) => {
                self.report(path.with_key("type"), e.to_string());
                return None;
            }
        };
        let config_path = path.clone().with_key("config");
        // Relative paths are read from the document's directory; sub-flows
        // are loaded now, so that their problems show at load time.
        let config = self.resolve_paths(i, &decl.config, node_type.spec())?;
        // Fields the node renders itself (marked `x-template` in its config
        // schema) are not expressions for the loader.
        let (expressions, raw) = split_raw_fields(&config, node_type.spec());
        let template = match ConfigTemplate::parse(&expressions) {
            Ok(t) => t,
            Err(errors) => {
                for (at, e) in errors {
                    self.report(config_path.clone().join_dotted(&at), e.to_string());
                }
                return None;
            }
        };
        let mut ok = self.check_references(i, &template);
        // The schema check skips templated values: they are known per run.
        let templated: Vec<String> = template.paths().map(str::to_owned).collect();
        for e in node_type.validate(&config) {
            let inside_template = templated.iter().any(|t| {
                e.path == *t
                    || e.path.starts_with(&format!("{t}."))
                    || e.path.starts_with(&format!("{t}["))
            });
            if !inside_template {
                self.report(config_path.clone().join_dotted(&e.path), e.message);
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        let node: Arc<dyn ErasedNode> = if template.is_static() {
            match node_type.create(&config) {
                Ok(node) => node,
                Err(e) => {
                    self.report(config_path.join_dotted(&e.path), e.message);
                    return None;
                }
            }
        } else {
            let references: Vec<Reference> = template
                .references()
                .iter()
                .filter(|r| hidden_port_name(r).is_some())
                .cloned()
                .collect();
            let shape = match node_type.spec_for(&config) {
                Ok(spec) => spec,
                Err(e) => {
                    self.report(config_path.join_dotted(&e.path), e.message);
                    return None;
                }
            };
            let inner_inputs = shape.inputs.len();
            let templated = TemplatedNode::new(
                node_type.clone(),
                &shape,
                config.clone(),
                template,
                raw,
                &references,
                self.loader.options.env.clone(),
            );
            self.hidden.push((i, references, inner_inputs));
            Arc::new(templated)
        };
        let spec = node.spec();
        let index = self.builder.add_erased(decl.id.clone(), node);
        self.apply_policy(i, decl, index);
        Some((spec, index))
    }

    /// Node `i`'s config with its marked fields resolved (see
    /// [`resolve_config`](Self::resolve_config)); `None` when something
    /// marked has problems (they are reported).
    fn resolve_paths(
        &mut self,
        i: usize,
        config: &serde_json::Value,
        spec: &NodeSpec,
    ) -> Option<serde_json::Value> {
        self.resolve_config(Self::node_path(i).with_key("config"), config, spec)
    }

    /// A config (at `at` in the document) with the values its schema marks
    /// resolved, at any depth (a field, a field of a list's items, ...):
    /// `x-path` and `x-flow` paths read from the document's directory, the
    /// sub-flows of `x-flow` values loaded and checked, and the node
    /// declarations of `x-node` values (`{ type, config }`, such as an
    /// agent's tools) checked as nodes are: their type, their config
    /// (resolved the same way) against its schema. `None` when something
    /// marked has problems (they are reported).
    fn resolve_config(
        &mut self,
        at: DocPath,
        config: &serde_json::Value,
        spec: &NodeSpec,
    ) -> Option<serde_json::Value> {
        let mut marked = Vec::new();
        let schema = &spec.config_schema;
        marked_values(schema, schema, config, &DocPath::root(), 0, &mut marked);
        if marked.is_empty() {
            return Some(config.clone());
        }
        let mut config = config.clone();
        let mut ok = true;
        for (relative, mark) in marked {
            let Some(value) = value_at_mut(&mut config, relative.segments()) else {
                continue;
            };
            let at = at.clone().join(&relative);
            match mark {
                Mark::Path | Mark::Flow => {
                    if let serde_json::Value::String(text) = value
                        && !text.contains("{{")
                        && let Some(base) = &self.loader.options.base_dir
                        && Path::new(text.as_str()).is_relative()
                    {
                        *text = base.join(text.as_str()).display().to_string();
                    }
                    if mark == Mark::Flow {
                        ok &= self.check_subflow(at, value);
                    }
                }
                Mark::Node => ok &= self.check_nested_node(at, value),
            }
        }
        ok.then_some(config)
    }

    /// Checks the sub-flow of an `x-flow` value at `at`.
    fn check_subflow(&mut self, at: DocPath, value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(file) if file.contains("{{") => {
                self.report(
                    at,
                    "a sub-flow is fixed when the document loads; it cannot be an expression"
                        .to_owned(),
                );
                false
            }
            serde_json::Value::String(file) => self.check_subflow_file(at, Path::new(file)),
            inline @ serde_json::Value::Object(_) => self.check_inline_subflow(at, inline),
            // Anything else is the config schema's to report.
            _ => true,
        }
    }

    /// Checks the node declaration `{ type, config }` of an `x-node` value
    /// at `at` as a document node is checked, and resolves its config's
    /// own marked values in place. A value of another shape is left to the
    /// config schema.
    fn check_nested_node(&mut self, at: DocPath, value: &mut serde_json::Value) -> bool {
        let Some(object) = value.as_object_mut() else {
            return true;
        };
        let Some(serde_json::Value::String(type_name)) = object.get("type") else {
            return true;
        };
        let node_type = match self.loader.registry.get(type_name) {
            Ok(t) => t.clone(),
            Err(e) => {
                self.report(at.with_key("type"), e.to_string());
                return false;
            }
        };
        let empty = serde_json::Value::Object(serde_json::Map::new());
        let config = match object.get("config") {
            None => &empty,
            Some(config @ serde_json::Value::Object(_)) => config,
            Some(_) => return true,
        };
        let config_path = at.with_key("config");
        let Some(config) = self.resolve_config(config_path.clone(), config, node_type.spec())
        else {
            return false;
        };
        // Nothing renders a nested node's config: it is used as written.
        let (expressions, _) = split_raw_fields(&config, node_type.spec());
        match ConfigTemplate::parse(&expressions) {
            Ok(template) if template.is_static() => {}
            Ok(template) => {
                for path in template.paths() {
                    self.report(
                        config_path.clone().join_dotted(path),
                        "a nested node's config is fixed when the document loads; it cannot hold expressions",
                    );
                }
                return false;
            }
            Err(errors) => {
                for (path, e) in errors {
                    self.report(
                        config_path.clone().join_dotted(&path),
                        format!("a nested node's config is fixed when the document loads; it cannot hold expressions ({e})"),
                    );
                }
                return false;
            }
        }
        let problems = node_type.validate(&config);
        let ok = problems.is_empty();
        for e in problems {
            self.report(config_path.clone().join_dotted(&e.path), e.message);
        }
        if ok && let Err(e) = node_type.create(&config) {
            self.report(config_path.join_dotted(&e.path), e.message);
            return false;
        }
        if ok && object.contains_key("config") {
            object.insert("config".to_owned(), config);
        }
        ok
    }

    /// Loads the sub-flow at `file` and reports its problems at `at`.
    fn check_subflow_file(&mut self, at: DocPath, file: &Path) -> bool {
        let real = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
        if let Some(first) = self.loader.chain.iter().position(|p| *p == real) {
            let cycle: Vec<String> = self.loader.chain[first..]
                .iter()
                .chain([&real])
                .map(|p| p.display().to_string())
                .collect();
            self.report(
                at,
                format!("the sub-flow includes itself: {}", cycle.join(" -> ")),
            );
            return false;
        }
        if self.loader.chain.len() >= MAX_SUBFLOW_DEPTH {
            self.report(
                at,
                format!("sub-flows nest deeper than {MAX_SUBFLOW_DEPTH} documents"),
            );
            return false;
        }
        match self.loader.load_path(file) {
            Ok(_) => true,
            Err(e) => {
                for line in e.to_string().lines() {
                    self.report(at.clone(), format!("in the sub-flow: {line}"));
                }
                false
            }
        }
    }

    /// Loads an inline sub-flow document and reports its problems at their
    /// place inside this document.
    fn check_inline_subflow(&mut self, at: DocPath, inline: &serde_json::Value) -> bool {
        if self.loader.chain.len() >= MAX_SUBFLOW_DEPTH {
            self.report(
                at,
                format!("sub-flows nest deeper than {MAX_SUBFLOW_DEPTH} documents"),
            );
            return false;
        }
        let document = match read_document(inline, None) {
            Ok(d) => d,
            Err(problems) => {
                for p in problems {
                    self.report(at.clone().join(&p.path), p.message);
                }
                return false;
            }
        };
        match self.loader.load_with_map(document, None) {
            Ok(_) => true,
            Err(problems) => {
                for p in problems {
                    self.report(at.clone().join(&p.path), p.message);
                }
                false
            }
        }
    }

    fn apply_policy(&mut self, i: usize, decl: &NodeDecl, index: NodeIndex) {
        let rate_limit = match decl.rate_limit.as_ref().map(|r| r.to_policy()) {
            Some(Err(message)) => {
                self.report(Self::node_path(i).with_key("rate_limit"), message);
                None
            }
            Some(Ok(limit)) => Some(limit),
            None => None,
        };
        let policy = self.builder.policy_at(index);
        if let Some(limit) = rate_limit {
            policy.rate_limit(limit);
        }
        if let Some(breaker) = &decl.circuit_breaker {
            policy.circuit_breaker(breaker.to_policy());
        }
        if let Some(retry) = &decl.retry {
            policy.retry(retry.to_policy());
        }
        if let Some(timeout) = decl.timeout {
            policy.timeout(timeout.0);
        }
        if let Some(on_error) = decl.on_error {
            policy.on_error(on_error.into());
        }
        if let Some(key) = &decl.concurrency_key {
            policy.concurrency_key(key.clone());
        }
    }

    /// Checks what node `i`'s expressions read; reports and returns `false`
    /// on any problem.
    fn check_references(&mut self, i: usize, template: &ConfigTemplate) -> bool {
        let doc = self.doc;
        let config_path = Self::node_path(i).with_key("config");
        let mut ok = true;
        for (leaf, reference) in leaf_references(template) {
            let at = config_path.clone().join_dotted(&leaf);
            let message = match &reference {
                Reference::Input(name) if !doc.inputs.contains_key(name.as_str()) => Some(format!(
                    "the expression reads `input.{name}`, but the flow has no input `{name}` (inputs: {}){}",
                    list(doc.inputs.keys()),
                    did_you_mean(closest(name, doc.inputs.keys().map(String::as_str)))
                )),
                Reference::Node { node, port } => self.check_node_reference(i, node, port),
                Reference::Secret(name) => self.loader.options.secrets.as_ref().and_then(|s| {
                    s.get(name).is_none().then(|| {
                        format!(
                            "the expression reads `secrets.{name}`, but secret `{name}` is not set"
                        )
                    })
                }),
                Reference::Env(name) if !self.loader.options.env.allows(name) => Some(format!(
                    "the expression reads `env.{name}`, but environment variables are not allowed here; the application must allow `{name}`"
                )),
                _ => None,
            };
            if let Some(message) = message {
                self.report(at, message);
                ok = false;
            }
        }
        ok
    }

    fn check_node_reference(&self, i: usize, node: &str, port: &str) -> Option<String> {
        let doc = self.doc;
        if doc.nodes[i].id == node {
            return Some(format!(
                "the expression reads `nodes.{node}.{port}`, its own node: a node cannot read its own outputs"
            ));
        }
        let Some(&target) = self.decl_index.get(node) else {
            return Some(format!(
                "the expression reads `nodes.{node}.{port}`, but there is no node `{node}`{}",
                did_you_mean(closest(node, self.decl_index.keys().copied()))
            ));
        };
        // The target's spec is only known if its type resolves.
        let target_type = self
            .loader
            .registry
            .get(&doc.nodes[target].node_type)
            .ok()?;
        // The ports of some types depend on their configuration; a target
        // whose configuration is wrong has its problem reported on its own.
        let spec = target_type.spec_for(&doc.nodes[target].config).ok()?;
        let outputs = &spec.outputs;
        if port == ERROR_PORT || outputs.iter().any(|p| p.name == port) {
            return None;
        }
        Some(format!(
            "the expression reads `nodes.{node}.{port}`, but node `{node}` has no output `{port}` (outputs: {}){}",
            list(outputs.iter().map(|p| p.name.as_str()).chain([ERROR_PORT])),
            did_you_mean(closest(port, outputs.iter().map(|p| p.name.as_str())))
        ))
    }

    /// Connects the hidden ports of templated nodes to what they read.
    fn connect_expressions(&mut self) {
        let hidden = std::mem::take(&mut self.hidden);
        for (i, references, inner_inputs) in &hidden {
            let Some((_, to_node)) = self.nodes[*i].clone() else {
                continue;
            };
            for (k, reference) in references.iter().enumerate() {
                let to = Endpoint {
                    node: to_node,
                    port: (inner_inputs + k) as u16,
                };
                let from = match reference {
                    Reference::Input(name) => self.inputs.get(name.as_str()).copied(),
                    Reference::Node { node, port } => self.output_endpoint(node, port),
                    Reference::Secret(_) | Reference::Env(_) => None,
                };
                // Unresolved targets were reported with the reference.
                if let Some(from) = from {
                    self.builder.connect_erased(from, to);
                }
            }
        }
    }

    /// The endpoint of output `port` of document node `node`, if made.
    fn output_endpoint(&self, node: &str, port: &str) -> Option<Endpoint> {
        let &i = self.decl_index.get(node)?;
        let (spec, index) = self.nodes[i].as_ref()?;
        let position = if port == ERROR_PORT {
            spec.outputs.len()
        } else {
            spec.outputs.iter().position(|p| p.name == port)?
        };
        Some(Endpoint {
            node: *index,
            port: position as u16,
        })
    }

    fn connect_edges(&mut self, lost: &mut HashSet<(String, String)>) {
        for (j, edge) in self.doc.edges.iter().enumerate() {
            let path = DocPath::root().with_key("edges").with_index(j);
            let from = self.resolve_from(&edge.from, path.clone().with_key("from"));
            let to = self.resolve_to(&edge.to, path.clone().with_key("to"));
            match (from, to) {
                (Resolved::Found(from, from_spec), Resolved::Found(to, to_spec)) => {
                    if let Err(why) = compat::check(&from_spec, &to_spec) {
                        self.report(
                            path,
                            format!(
                                "type-incompatible edge: `{}` {why} (`{}`)",
                                edge.from, edge.to
                            ),
                        );
                    } else {
                        self.builder.connect_erased(from, to);
                    }
                }
                (_, Resolved::Found(..)) | (_, Resolved::Unmade) => {
                    // Remember the target so its "not connected" echo is dropped.
                    if let Ok(EndpointRef::Port { node, port }) = parse_endpoint(&edge.to) {
                        lost.insert((node.to_owned(), port.to_owned()));
                    }
                }
                _ => {}
            }
        }
    }

    fn resolve_from(&mut self, text: &str, path: DocPath) -> Resolved {
        match parse_endpoint(text) {
            Err(message) => {
                self.report(path, message);
                Resolved::Bad
            }
            Ok(EndpointRef::Input(name)) => match self.inputs.get(name) {
                Some(&endpoint) => {
                    let port = &self.builder_input(endpoint);
                    Resolved::Found(endpoint, port.clone())
                }
                None => {
                    let doc = self.doc;
                    self.report(
                        path,
                        format!(
                            "the flow has no input `{name}` (inputs: {}){}",
                            list(doc.inputs.keys()),
                            did_you_mean(closest(name, doc.inputs.keys().map(String::as_str)))
                        ),
                    );
                    Resolved::Bad
                }
            },
            Ok(EndpointRef::Port { node, port }) => self.resolve_port(node, port, path, true),
        }
    }

    fn resolve_to(&mut self, text: &str, path: DocPath) -> Resolved {
        match parse_endpoint(text) {
            Err(message) => {
                self.report(path, message);
                Resolved::Bad
            }
            Ok(EndpointRef::Input(name)) => {
                self.report(
                    path,
                    format!("`input.{name}` is a flow input; an edge can only end at a node's input port"),
                );
                Resolved::Bad
            }
            Ok(EndpointRef::Port { node, port }) => self.resolve_port(node, port, path, false),
        }
    }

    /// A flow input's port spec, for type checks.
    fn builder_input(&self, endpoint: Endpoint) -> PortSpec {
        let input = &self.doc.inputs[endpoint.port as usize];
        PortSpec {
            name: String::new(),
            description: None,
            schema: input
                .schema
                .clone()
                .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new())),
            required: true,
            type_name: std::any::type_name::<serde_json::Value>().to_owned(),
        }
    }

    fn resolve_port(&mut self, node: &str, port: &str, path: DocPath, output: bool) -> Resolved {
        let Some(&i) = self.decl_index.get(node) else {
            let suggestion = closest(node, self.decl_index.keys().copied()).map(str::to_owned);
            self.report(
                path,
                format!(
                    "there is no node `{node}`{}",
                    did_you_mean(suggestion.as_deref())
                ),
            );
            return Resolved::Bad;
        };
        let (spec, index) = match self.nodes[i].clone() {
            Some((spec, index)) => (spec, Some(index)),
            // The node could not be made (its problem is reported), but if
            // its type is known its ports can still be checked.
            None => match self.loader.registry.get(&self.doc.nodes[i].node_type) {
                Ok(t) => match t.spec_for(&self.doc.nodes[i].config) {
                    Ok(spec) => (spec, None),
                    Err(_) => return Resolved::Unmade,
                },
                Err(_) => return Resolved::Unmade,
            },
        };
        let ports: Vec<&PortSpec> = if output {
            spec.outputs.iter().collect()
        } else {
            spec.inputs
                .iter()
                .filter(|p| !is_hidden_port(&p.name))
                .collect()
        };
        let found = if let Some(position) = ports.iter().position(|p| p.name == port) {
            Some((position, ports[position].clone()))
        } else if output && port == ERROR_PORT {
            Some((
                spec.outputs.len(),
                PortSpec::of::<crate::flow::NodeFailure>(ERROR_PORT, None, false),
            ))
        } else {
            None
        };
        if let Some((position, port_spec)) = found {
            return match index {
                Some(node) => Resolved::Found(
                    Endpoint {
                        node,
                        port: position as u16,
                    },
                    port_spec,
                ),
                None => Resolved::Unmade,
            };
        }
        let kind = if output { "output" } else { "input" };
        let mut names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
        if output {
            names.push(ERROR_PORT);
        }
        let suggestion = closest(port, names.iter().copied()).map(str::to_owned);
        self.report(
            path,
            format!(
                "node `{node}` ({}) has no {kind} port `{port}` ({kind}s: {}){}",
                spec.type_name,
                list(&names),
                did_you_mean(suggestion.as_deref())
            ),
        );
        Resolved::Bad
    }

    fn declare_outputs(&mut self) {
        let doc = self.doc;
        for (name, source) in &doc.outputs {
            let path = DocPath::root().with_key("outputs").with_key(name);
            match self.resolve_from(source, path) {
                Resolved::Found(endpoint, _) => self.builder.output_erased(name.clone(), endpoint),
                Resolved::Bad | Resolved::Unmade => {}
            }
        }
    }
}

/// An endpoint looked up in the document.
enum Resolved {
    /// Found: where, and the port's spec.
    Found(Endpoint, PortSpec),
    /// The node exists but could not be made; its problem is reported.
    Unmade,
    /// A problem was reported.
    Bad,
}

/// Each reference of a config template with the path of the string it is
/// in, in document order, each reference once per string.
fn leaf_references(template: &ConfigTemplate) -> Vec<(String, Reference)> {
    let mut found = Vec::new();
    for path in template.paths() {
        let leaf = DocPath::root()
            .join_dotted(path)
            .segments()
            .iter()
            .try_fold(template.config(), |value, segment| match segment {
                Segment::Key(key) => value.get(key),
                Segment::Index(i) => value.get(*i),
            });
        let parsed = leaf
            .and_then(serde_json::Value::as_str)
            .and_then(|text| Template::parse(text).ok());
        // (Every templated leaf parses: the config as a whole did.)
        if let Some(t) = parsed {
            found.extend(t.references().iter().map(|r| (path.to_owned(), r.clone())));
        }
    }
    for r in template.references() {
        if !found.iter().any(|(_, seen)| seen == r) {
            found.push((String::new(), r.clone()));
        }
    }
    found
}

/// What a mark in a config schema asks of the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// `x-path`: a file path, read from the document's directory.
    Path,
    /// `x-flow`: a sub-flow, a path or an inline document, checked now.
    Flow,
    /// `x-node`: a node declaration `{ type, config }`, checked now.
    Node,
}

/// The marks, by schema keyword.
const MARKS: [(&str, Mark); 3] = [
    ("x-path", Mark::Path),
    ("x-flow", Mark::Flow),
    ("x-node", Mark::Node),
];

/// How deep the loader follows a config schema (nesting and `$ref`s).
const MAX_SCHEMA_DEPTH: usize = 64;

/// The schema `$ref` points to inside `root` (`#/$defs/Name`), if local.
fn resolve_schema_ref<'s>(
    root: &'s serde_json::Value,
    reference: &str,
) -> Option<&'s serde_json::Value> {
    root.pointer(reference.strip_prefix('#')?)
}

/// The mark of a schema, if it has one.
fn mark_of(schema: &serde_json::Value) -> Option<Mark> {
    MARKS
        .iter()
        .find(|(flag, _)| schema.get(*flag).and_then(serde_json::Value::as_bool) == Some(true))
        .map(|(_, mark)| *mark)
}

/// Appends the values of `value` (at `at`) that `schema` (inside `root`)
/// marks, walking `$ref`, `properties`, `additionalProperties`, `items`
/// and the alternatives of `allOf`, `anyOf` and `oneOf` along the value.
/// A marked value is not looked into.
fn marked_values(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    at: &DocPath,
    depth: usize,
    out: &mut Vec<(DocPath, Mark)>,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    if !at.is_root()
        && let Some(mark) = mark_of(schema)
    {
        if !out.iter().any(|(seen, _)| seen == at) {
            out.push((at.clone(), mark));
        }
        return;
    }
    if let Some(target) = schema
        .get("$ref")
        .and_then(serde_json::Value::as_str)
        .and_then(|r| resolve_schema_ref(root, r))
    {
        marked_values(root, target, value, at, depth + 1, out);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(alternatives) = schema.get(key).and_then(serde_json::Value::as_array) {
            for alternative in alternatives {
                marked_values(root, alternative, value, at, depth + 1, out);
            }
        }
    }
    match value {
        serde_json::Value::Object(object) => {
            let properties = schema
                .get("properties")
                .and_then(serde_json::Value::as_object);
            let rest = schema.get("additionalProperties").filter(|s| s.is_object());
            for (key, item) in object {
                let item_schema = properties.and_then(|p| p.get(key)).or(rest);
                if let Some(item_schema) = item_schema {
                    let at = at.clone().with_key(key.clone());
                    marked_values(root, item_schema, item, &at, depth + 1, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for (index, item) in items.iter().enumerate() {
                    let at = at.clone().with_index(index);
                    marked_values(root, item_schema, item, &at, depth + 1, out);
                }
            }
        }
        _ => {}
    }
}

/// Whether `schema` (inside `root`) marks something below itself with one
/// of `marks`, following each `$ref` once (`seen` holds those followed).
fn marks_inside(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    marks: &[Mark],
    seen: &mut Vec<String>,
    depth: usize,
) -> bool {
    if depth > MAX_SCHEMA_DEPTH {
        return false;
    }
    let mut below: Vec<&serde_json::Value> = Vec::new();
    if let Some(reference) = schema.get("$ref").and_then(serde_json::Value::as_str)
        && !seen.iter().any(|r| r == reference)
    {
        seen.push(reference.to_owned());
        below.extend(resolve_schema_ref(root, reference));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        below.extend(
            schema
                .get(key)
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten(),
        );
    }
    below.extend(
        schema
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .into_iter()
            .flat_map(|p| p.values()),
    );
    for key in ["items", "additionalProperties"] {
        below.extend(schema.get(key).filter(|s| s.is_object()));
    }
    below.into_iter().any(|s| {
        mark_of(s).is_some_and(|m| marks.contains(&m))
            || marks_inside(root, s, marks, seen, depth + 1)
    })
}

/// The value at `segments` inside `value`.
fn value_at_mut<'v>(
    value: &'v mut serde_json::Value,
    segments: &[Segment],
) -> Option<&'v mut serde_json::Value> {
    segments
        .iter()
        .try_fold(value, |value, segment| match segment {
            Segment::Key(key) => value.get_mut(key.as_str()),
            Segment::Index(i) => value.get_mut(*i),
        })
}

/// Splits a config into what the loader treats as expressions and the raw
/// fields: top-level fields whose schema says `"x-template": true`, which
/// the node renders itself with its own inputs, and fields that are or
/// hold sub-flows (`x-flow`) and node declarations (`x-node`), which have
/// expressions of their own or none.
fn split_raw_fields(
    config: &serde_json::Value,
    spec: &NodeSpec,
) -> (
    serde_json::Value,
    serde_json::Map<String, serde_json::Value>,
) {
    let mut raw = serde_json::Map::new();
    let Some(properties) = spec
        .config_schema
        .get("properties")
        .and_then(|p| p.as_object())
    else {
        return (config.clone(), raw);
    };
    let Some(object) = config.as_object() else {
        return (config.clone(), raw);
    };
    let mut rest = object.clone();
    let root = &spec.config_schema;
    for (name, schema) in properties {
        // Sub-flows (`x-flow`) are raw too: their expressions are their own;
        // so are fields holding sub-flows or node declarations (`x-node`)
        // deeper down, such as a list of tools.
        let marked = ["x-template", "x-flow", "x-node"]
            .iter()
            .any(|flag| schema.get(*flag).and_then(serde_json::Value::as_bool) == Some(true))
            || marks_inside(root, schema, &[Mark::Flow, Mark::Node], &mut Vec::new(), 0);
        if marked && let Some(value) = rest.remove(name) {
            raw.insert(name.clone(), value);
        }
    }
    (serde_json::Value::Object(rest), raw)
}

/// Flow input names: like identifiers.
fn is_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A graph problem from the builder, at its place in the document; `None`
/// for echoes of problems already reported.
fn graph_problem(
    doc: &Document,
    map: Option<&SourceMap>,
    decl_index: &HashMap<&str, usize>,
    lost: &HashSet<(String, String)>,
    found: Problem,
) -> Option<DocProblem> {
    let node_path = |id: &str| {
        decl_index.get(id).map_or_else(DocPath::root, |&i| {
            DocPath::root().with_key("nodes").with_index(i)
        })
    };
    let edge_into = |node: &str, port: &str, nth: usize| {
        doc.edges
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(parse_endpoint(&e.to), Ok(EndpointRef::Port { node: n, port: p }) if n == node && p == port))
            .nth(nth)
            .map(|(j, _)| DocPath::root().with_key("edges").with_index(j))
    };
    Some(match found {
        Problem::Cycle { nodes } => {
            let first = nodes.first().map(String::as_str).unwrap_or_default();
            problem(
                map,
                node_path(first),
                format!(
                    "cycle: {} -> {first} (a flow is a DAG; an expression that reads `nodes.<id>` counts as an edge)",
                    nodes.join(" -> ")
                ),
            )
        }
        Problem::UnconnectedInput { node, port } => {
            // A hidden port is unconnected only when what its expression
            // reads failed, which is reported.
            if is_hidden_port(&port) || lost.contains(&(node.clone(), port.clone())) {
                return None;
            }
            problem(
                map,
                node_path(&node),
                format!(
                    "node `{node}`: required input `{port}` is not connected; add an edge `to: {node}.{port}`"
                ),
            )
        }
        Problem::InputConnectedTwice {
            node,
            port,
            sources,
        } => {
            let path = edge_into(&node, &port, 1).unwrap_or_else(|| node_path(&node));
            problem(
                map,
                path,
                format!(
                    "input `{node}.{port}` is connected {} times (from {}); an input takes exactly one edge",
                    sources.len(),
                    sources.join(", ")
                ),
            )
        }
        // Ids were checked with their paths already.
        Problem::DuplicateId { .. } | Problem::InvalidId { .. } => return None,
        other => problem(map, DocPath::root(), other.to_string()),
    })
}

/// A node whose configuration holds expressions: made anew for each run
/// from its configuration, rendered with that run's values.
///
/// Its spec is its type's, plus one hidden input port per flow input or
/// node output that its expressions read (`$input.url`, `$nodes.fetch.body`),
/// so that what an expression reads arrives as an edge: the node waits for
/// it, and is skipped when its branch was not taken.
struct TemplatedNode {
    node_type: Arc<NodeType>,
    spec: Arc<NodeSpec>,
    /// The configuration as written, with its expressions.
    config: serde_json::Value,
    /// The configuration without its raw fields, to render.
    template: ConfigTemplate,
    /// Fields the node renders itself, put back after rendering.
    raw: serde_json::Map<String, serde_json::Value>,
    /// What each hidden port carries, in port order.
    references: Vec<Reference>,
    env: EnvAccess,
    /// The flags of a node made from the static part of the configuration
    /// (see [`ErasedNode::eager`] and [`ErasedNode::runs_flows`]); `false`
    /// when that part alone does not make a node, except `runs_flows` of a
    /// type that declares it ([`NodeType::runs_flows`]).
    eager: bool,
    runs_flows: bool,
}

impl fmt::Debug for TemplatedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplatedNode")
            .field("type", &self.spec.type_name)
            .field("references", &self.references)
            .finish_non_exhaustive()
    }
}

impl TemplatedNode {
    fn new(
        node_type: Arc<NodeType>,
        shape: &NodeSpec,
        config: serde_json::Value,
        template: ConfigTemplate,
        raw: serde_json::Map<String, serde_json::Value>,
        references: &[Reference],
        env: EnvAccess,
    ) -> Self {
        let mut spec = shape.clone();
        for reference in references {
            if let Some(name) = hidden_port_name(reference) {
                spec.inputs.push(PortSpec::of::<serde_json::Value>(
                    &name,
                    Some("read by an expression in the configuration"),
                    true,
                ));
            }
        }
        // The engine reads these flags when it compiles the flow, before
        // any run renders the configuration: ask a node made from what is
        // known now.
        let mut probe = template.static_part();
        if let Some(object) = probe.as_object_mut() {
            for (key, value) in &raw {
                object.insert(key.clone(), value.clone());
            }
        }
        let (eager, runs_flows) = node_type
            .create(&probe)
            .map_or((false, false), |node| (node.eager(), node.runs_flows()));
        // A typed node's type knows, whatever the probe could make: a node
        // that runs flows must never take the slot its flows need.
        let runs_flows = runs_flows || node_type.runs_flows();
        TemplatedNode {
            node_type,
            spec: Arc::new(spec),
            config,
            template,
            raw,
            references: references.to_vec(),
            env,
            eager,
            runs_flows,
        }
    }
}

impl ErasedNode for TemplatedNode {
    fn spec(&self) -> Arc<NodeSpec> {
        self.spec.clone()
    }

    fn run<'a>(
        &'a self,
        mut inputs: Vec<Option<Value>>,
        ctx: &'a crate::Context,
    ) -> BoxFuture<'a, Result<Vec<Option<Value>>, NodeError>> {
        Box::pin(async move {
            let real = inputs.len().saturating_sub(self.references.len());
            let hidden = inputs.split_off(real);
            let mut flow_inputs = serde_json::Map::new();
            let mut outputs: HashMap<String, serde_json::Map<String, serde_json::Value>> =
                HashMap::new();
            for (reference, value) in self.references.iter().zip(hidden) {
                let json = match value {
                    Some(v) => v.to_json().map_err(|e| {
                        NodeError::permanent(format!(
                            "a value read by an expression is not JSON: {e}"
                        ))
                    })?,
                    None => serde_json::Value::Null,
                };
                match reference {
                    Reference::Input(name) => {
                        flow_inputs.insert(name.clone(), json);
                    }
                    Reference::Node { node, port } => {
                        outputs
                            .entry(node.clone())
                            .or_default()
                            .insert(port.clone(), json);
                    }
                    Reference::Secret(_) | Reference::Env(_) => {}
                }
            }
            // The scope is not `Send`: render before the node's first await.
            let rendered = {
                let scope = Scope::new(&flow_inputs, ctx.secrets())
                    .with_nodes(&outputs)
                    .with_env(self.env.clone());
                let rendered = self.template.render(&scope);
                for secret in scope.used_secrets() {
                    ctx.redact(secret.expose());
                }
                rendered
            };
            let mut config = rendered.map_err(|(path, e)| {
                NodeError::permanent(if path.is_empty() {
                    format!("config: {e}")
                } else {
                    format!("config.{path}: {e}")
                })
            })?;
            if let Some(object) = config.as_object_mut() {
                for (key, value) in &self.raw {
                    object.insert(key.clone(), value.clone());
                }
            }
            let node = self.node_type.create(&config).map_err(|e| {
                NodeError::permanent(if e.path.is_empty() {
                    format!("config: {}", e.message)
                } else {
                    format!("config.{}: {}", e.path, e.message)
                })
            })?;
            let made = node.spec();
            if made.outputs.len() != self.spec.outputs.len() || made.inputs.len() != inputs.len() {
                return Err(NodeError::permanent(
                    "config: the expressions changed the node's ports; the fields that name ports must not be expressions",
                ));
            }
            node.run(inputs, ctx).await
        })
    }

    fn config_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        Ok(self.config.clone())
    }

    fn eager(&self) -> bool {
        self.eager
    }

    fn runs_flows(&self) -> bool {
        self.runs_flows
    }
}
