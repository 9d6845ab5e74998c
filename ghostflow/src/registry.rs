//! The registry of node types: how documents name nodes, and the catalog.
//!
//! A [`Registry`] maps a type name and version to a [`NodeType`]: its
//! [`NodeSpec`] and a way to make a configured node from JSON. Typed nodes
//! register with one call:
//!
//! ```
//! use ghostflow::prelude::*;
//! use ghostflow::Registry;
//!
//! /// Says hello.
//! #[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
//! #[node(output = Greeting)]
//! pub struct Hello {
//!     /// Who to greet.
//!     pub name: String,
//! }
//!
//! /// A greeting.
//! #[derive(Ports)]
//! pub struct Greeting {
//!     /// The greeting.
//!     pub text: String,
//! }
//!
//! impl Run for Hello {
//!     async fn run(&self, _: (), _: &Context) -> Result<Greeting, NodeError> {
//!         Ok(Greeting { text: format!("hello {}", self.name) })
//!     }
//! }
//!
//! let mut registry = Registry::new();
//! registry.register::<Hello>();
//! let hello = registry.get("hello").unwrap();
//! assert_eq!(hello.spec().version, "1");
//! assert!(hello.create(&serde_json::json!({ "name": "Ada" })).is_ok());
//! let problems = hello.validate(&serde_json::json!({ "name": 7 }));
//! assert_eq!(problems[0].path, "name");
//! ```
//!
//! Documents write `type: hello` (the latest version) or `type: hello@1`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;

use crate::node::{ErasedNode, NodeSpec, Run, TypedNode, spec_of};

/// Makes a configured node from its JSON configuration.
type Factory = dyn Fn(&serde_json::Value) -> Result<Arc<dyn ErasedNode>, ConfigError> + Send + Sync;

/// The spec of a node configured with a config, for types whose ports
/// depend on their configuration.
type Shape = dyn Fn(&serde_json::Value) -> Result<NodeSpec, ConfigError> + Send + Sync;

/// One version of one node type.
pub struct NodeType {
    spec: Arc<NodeSpec>,
    factory: Box<Factory>,
    /// Set for types whose ports depend on their configuration.
    shape: Option<Box<Shape>>,
    /// The compiled config schema, made on first use; `None` when the
    /// schema itself does not compile (then only deserialization checks).
    validator: OnceLock<Option<jsonschema::Validator>>,
    /// [`Run::RUNS_FLOWS`] of a typed node; `false` for types made at run
    /// time, whose nodes answer for themselves.
    runs_flows: bool,
}

impl fmt::Debug for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeType")
            .field("type_name", &self.spec.type_name)
            .field("version", &self.spec.version)
            .finish_non_exhaustive()
    }
}

/// A configuration that a node type does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the configuration, such as `url` or `headers.Accept`; empty
    /// for the configuration as a whole.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl NodeType {
    /// The type's spec.
    pub fn spec(&self) -> &Arc<NodeSpec> {
        &self.spec
    }

    /// The spec of a node of this type configured with `config`: the
    /// type's spec, except for types whose ports depend on their
    /// configuration (such as a switch with one output per case). The
    /// configuration may still hold expressions (`"{{ ... }}"` strings);
    /// the ports must not depend on those.
    ///
    /// # Errors
    /// The fields the ports depend on are missing or wrong.
    pub fn spec_for(&self, config: &serde_json::Value) -> Result<Arc<NodeSpec>, ConfigError> {
        match &self.shape {
            Some(shape) => shape(config).map(Arc::new),
            None => Ok(self.spec.clone()),
        }
    }

    /// Whether the ports of this type's nodes depend on their configuration.
    pub fn has_dynamic_ports(&self) -> bool {
        self.shape.is_some()
    }

    /// Whether this type's nodes run flows ([`Run::RUNS_FLOWS`]), known
    /// without a configuration: always `false` for types registered with
    /// [`Registry::register_erased`] or [`Registry::register_dynamic`],
    /// whose nodes say it through [`ErasedNode::runs_flows`].
    pub fn runs_flows(&self) -> bool {
        self.runs_flows
    }

    /// A node configured with `config`.
    ///
    /// # Errors
    /// The configuration does not deserialize; the error names the field.
    pub fn create(&self, config: &serde_json::Value) -> Result<Arc<dyn ErasedNode>, ConfigError> {
        (self.factory)(config)
    }

    /// Every way `config` breaks the type's config schema, each with its
    /// path; empty when it conforms.
    pub fn validate(&self, config: &serde_json::Value) -> Vec<ConfigError> {
        let validator = self
            .validator
            .get_or_init(|| jsonschema::validator_for(&self.spec.config_schema).ok());
        match validator {
            Some(validator) => schema_problems(validator, &self.spec.config_schema, config)
                .into_iter()
                .map(|p| ConfigError {
                    path: match &p.key {
                        Some(key) => {
                            let base = pointer_to_path(&p.pointer);
                            if base.is_empty() {
                                key.clone()
                            } else {
                                format!("{base}.{key}")
                            }
                        }
                        None => pointer_to_path(&p.pointer),
                    },
                    message: p.message,
                })
                .collect(),
            None => Vec::new(),
        }
    }
}

/// One way a value breaks a JSON Schema, worded for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaProblem {
    /// JSON pointer of the value.
    pub(crate) pointer: String,
    /// For an unknown field, its name (the problem is about that key).
    pub(crate) key: Option<String>,
    /// What is wrong.
    pub(crate) message: String,
}

/// Every way `instance` breaks `schema` (compiled as `validator`), with
/// unknown fields named one by one (with a suggestion) and missing fields
/// said plainly.
pub(crate) fn schema_problems(
    validator: &jsonschema::Validator,
    schema: &serde_json::Value,
    instance: &serde_json::Value,
) -> Vec<SchemaProblem> {
    use jsonschema::error::ValidationErrorKind as Kind;
    let mut out = Vec::new();
    for e in validator.iter_errors(instance) {
        let pointer = e.instance_path().as_str().to_owned();
        match e.kind() {
            Kind::AdditionalProperties { unexpected } => {
                // The allowed names sit beside `additionalProperties`.
                let schema_path = e.schema_path().as_str();
                let allowed: Vec<String> = schema_path
                    .strip_suffix("/additionalProperties")
                    .and_then(|parent| schema.pointer(parent))
                    .and_then(|s| s.get("properties"))
                    .and_then(|p| p.as_object())
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                for key in unexpected {
                    let suggestion = allowed
                        .iter()
                        .map(|a| (edit_distance(key, a), a))
                        .filter(|(d, _)| *d <= 2)
                        .min()
                        .map(|(_, a)| format!("; did you mean `{a}`?"));
                    out.push(SchemaProblem {
                        pointer: pointer.clone(),
                        key: Some(key.clone()),
                        message: format!(
                            "unknown field `{key}`{}",
                            suggestion.unwrap_or_else(|| if allowed.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    " (fields: {})",
                                    allowed
                                        .iter()
                                        .map(|a| format!("`{a}`"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            })
                        ),
                    });
                }
            }
            Kind::Required { property } => out.push(SchemaProblem {
                pointer,
                key: None,
                message: format!(
                    "missing field `{}`",
                    property
                        .as_str()
                        .map_or_else(|| property.to_string(), str::to_owned)
                ),
            }),
            Kind::OneOfNotValid { context } | Kind::AnyOf { context } if !context.is_empty() => {
                // A choice between fixed values (an enum): name them.
                let choices: Option<Vec<String>> = context
                    .iter()
                    .map(|alternative| match alternative.as_slice() {
                        [one] => match one.kind() {
                            Kind::Constant { expected_value } => {
                                Some(vec![expected_value.to_string()])
                            }
                            Kind::Enum { options } => options
                                .as_array()
                                .map(|o| o.iter().map(ToString::to_string).collect()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect::<Option<Vec<Vec<String>>>>()
                    .map(|c| c.into_iter().flatten().collect());
                let message = match choices {
                    Some(choices) => {
                        format!("{} is not one of {}", e.instance(), choices.join(", "))
                    }
                    None => e.to_string(),
                };
                out.push(SchemaProblem {
                    pointer,
                    key: None,
                    message,
                });
            }
            _ => out.push(SchemaProblem {
                pointer,
                key: None,
                message: e.to_string(),
            }),
        }
    }
    out
}

/// `/headers/0/name` as `headers[0].name`.
pub(crate) fn pointer_to_path(pointer: &str) -> String {
    let mut path = String::new();
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            path.push('[');
            path.push_str(&segment);
            path.push(']');
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment);
        }
    }
    path
}

/// Why a type reference did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// No type has this name.
    #[error("unknown node type `{name}`{}", suggest(suggestions))]
    UnknownType {
        /// The name asked for.
        name: String,
        /// Registered names that look alike.
        suggestions: Vec<String>,
    },
    /// The type exists, not in this version.
    #[error("node type `{name}` has no version `{version}` (available: {})", available.join(", "))]
    UnknownVersion {
        /// The type's name.
        name: String,
        /// The version asked for.
        version: String,
        /// The registered versions.
        available: Vec<String>,
    },
}

fn suggest(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => format!("; did you mean `{one}`?"),
        many => format!(
            "; did you mean one of {}?",
            many.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Node types by name and version.
#[derive(Default)]
pub struct Registry {
    /// Versions of each type, oldest first.
    types: BTreeMap<String, Vec<Arc<NodeType>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("types", &self.types.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the typed node `N`, made from its config by serde. A type
    /// registered again with the same name and version replaces the first.
    pub fn register<N: Run + DeserializeOwned>(&mut self) -> &mut Self {
        let spec = spec_of::<N>();
        self.insert(NodeType {
            spec,
            factory: Box::new(|config| {
                serde_path_to_error::deserialize::<_, N>(config)
                    .map(|node| Arc::new(TypedNode::new(node)) as Arc<dyn ErasedNode>)
                    .map_err(|e| ConfigError {
                        path: deserialize_path(e.path()),
                        message: e.into_inner().to_string(),
                    })
            }),
            shape: None,
            validator: OnceLock::new(),
            runs_flows: N::RUNS_FLOWS,
        });
        self
    }

    /// Registers a node type made at run time: its spec, and a function that
    /// makes a node from a config. A type registered again with the same
    /// name and version replaces the first.
    pub fn register_erased(
        &mut self,
        spec: NodeSpec,
        create: impl Fn(&serde_json::Value) -> Result<Arc<dyn ErasedNode>, ConfigError>
        + Send
        + Sync
        + 'static,
    ) -> &mut Self {
        self.insert(NodeType {
            spec: Arc::new(spec),
            factory: Box::new(create),
            shape: None,
            validator: OnceLock::new(),
            runs_flows: false,
        });
        self
    }

    /// Registers a node type whose ports depend on its configuration, such
    /// as a switch with one output per case: `spec` is the catalog's view,
    /// `shape` gives the spec of a node configured with a config (which may
    /// still hold expressions; the ports must not depend on them), and
    /// `create` makes the node, whose spec must have the ports `shape` gave.
    pub fn register_dynamic(
        &mut self,
        spec: NodeSpec,
        shape: impl Fn(&serde_json::Value) -> Result<NodeSpec, ConfigError> + Send + Sync + 'static,
        create: impl Fn(&serde_json::Value) -> Result<Arc<dyn ErasedNode>, ConfigError>
        + Send
        + Sync
        + 'static,
    ) -> &mut Self {
        self.insert(NodeType {
            spec: Arc::new(spec),
            factory: Box::new(create),
            shape: Some(Box::new(shape)),
            validator: OnceLock::new(),
            runs_flows: false,
        });
        self
    }

    fn insert(&mut self, node_type: NodeType) {
        let versions = self
            .types
            .entry(node_type.spec.type_name.clone())
            .or_default();
        versions.retain(|v| v.spec.version != node_type.spec.version);
        versions.push(Arc::new(node_type));
        versions.sort_by(|a, b| compare_versions(&a.spec.version, &b.spec.version));
    }

    /// The type named by `reference`: `name` (its latest version) or
    /// `name@version`.
    ///
    /// # Errors
    /// No such type (with similar names), or no such version (with those
    /// that exist).
    pub fn get(&self, reference: &str) -> Result<&Arc<NodeType>, LookupError> {
        let (name, version) = match reference.split_once('@') {
            Some((name, version)) => (name.trim(), Some(version.trim())),
            None => (reference.trim(), None),
        };
        let Some(versions) = self.types.get(name) else {
            return Err(LookupError::UnknownType {
                name: name.to_owned(),
                suggestions: self.similar(name),
            });
        };
        let found = match version {
            None => versions.last(),
            Some(version) => versions.iter().find(|t| t.spec.version == version),
        };
        found.ok_or_else(|| LookupError::UnknownVersion {
            name: name.to_owned(),
            version: version.unwrap_or_default().to_owned(),
            available: versions.iter().map(|t| t.spec.version.clone()).collect(),
        })
    }

    /// Every registered type, by name, each version oldest first.
    pub fn types(&self) -> impl Iterator<Item = &Arc<NodeType>> + '_ {
        self.types.values().flatten()
    }

    /// The specs of every registered type, by name, each version oldest first.
    pub fn specs(&self) -> impl Iterator<Item = &NodeSpec> + '_ {
        self.types().map(|t| &*t.spec)
    }

    /// Number of registered type versions.
    pub fn len(&self) -> usize {
        self.types.values().map(Vec::len).sum()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// Registered names close to `name` (edit distance at most 2, or one
    /// containing the other), closest first.
    fn similar(&self, name: &str) -> Vec<String> {
        let mut close: Vec<(usize, &String)> = self
            .types
            .keys()
            .filter_map(|candidate| {
                let distance = edit_distance(name, candidate);
                let related = candidate.contains(name) || name.contains(candidate.as_str());
                (distance <= 2 || (related && !name.is_empty())).then_some((distance, candidate))
            })
            .collect();
        close.sort();
        close.into_iter().take(3).map(|(_, n)| n.clone()).collect()
    }
}

/// serde_path_to_error's path as `headers.Accept` or `items[2]`.
fn deserialize_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." { String::new() } else { text }
}

/// Orders dotted numeric versions numerically (`2` < `10`, `1.2` < `1.10`),
/// anything else as text.
fn compare_versions(a: &str, b: &str) -> Ordering {
    let numbers = |v: &str| -> Option<Vec<u64>> { v.split('.').map(|p| p.parse().ok()).collect() };
    match (numbers(a), numbers(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Levenshtein distance, for suggestions.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        let mut v = vec!["10", "2", "1.10", "1.2", "1"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(v, ["1", "1.2", "1.10", "2", "10"]);
        assert_eq!(compare_versions("2", "10"), Ordering::Less);
        assert_eq!(compare_versions("beta", "alpha"), Ordering::Greater);
        assert_eq!(compare_versions("1.2", "1.10"), Ordering::Less);
    }

    #[test]
    fn pointers_become_dotted_paths() {
        assert_eq!(pointer_to_path(""), "");
        assert_eq!(pointer_to_path("/url"), "url");
        assert_eq!(pointer_to_path("/headers/0/name"), "headers[0].name");
        assert_eq!(pointer_to_path("/a~1b/c~0d"), "a/b.c~d");
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("http_request", "http_requst"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
