//! The `switch` node: routes a value to one of several named outputs.

use std::sync::Arc;

use ghostflow::node::BoxFuture;
use ghostflow::{ConfigError, Context, ErasedNode, NodeError, NodeSpec, PortSpec, Value};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The doc comment of [`Switch`], which is also its catalog description.
macro_rules! switch_doc {
    () => {
        "Routes its input to the output of the first case that matches (or of every case, with \
`mode: all`), and to `default` when none does.

A case matches when the switch's `value` equals its `equals`, or when its `when` is true. The \
outputs not taken stay empty, so the branches behind them are skipped. The input is optional: \
without it, the taken output carries `null`. The node has one output per case, named after it, \
plus `default`.

```yaml
- id: route
  type: switch
  config:
    value: \"{{ input.ticket.priority }}\"
    cases:
      - { name: urgent, equals: P1 }
      - { name: soon, equals: P2 }
      - { name: big_customer, when: \"{{ input.ticket.seats > 500 }}\" }
```"
    };
}

/// One case of a [`Switch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchCase {
    /// The output port this case sends to (letters, digits and `_`).
    pub name: String,
    /// Matches when the switch's `value` equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// Matches when this is true (usually an expression, such as
    /// `"{{ input.score > 0.8 }}"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<bool>,
}

/// Which cases take the input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SwitchMode {
    /// The first case that matches.
    #[default]
    First,
    /// Every case that matches.
    All,
}

/// The configuration of a [`Switch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    /// What the cases' `equals` compare with (usually an expression, such
    /// as `"{{ input.status }}"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// The cases, in order; each has an `equals` or a `when`.
    pub cases: Vec<SwitchCase>,
    /// Whether the first matching case or every matching case takes the input.
    #[serde(default)]
    pub mode: SwitchMode,
}

#[doc = switch_doc!()]
#[derive(Debug)]
pub struct Switch {
    config: SwitchConfig,
    spec: Arc<NodeSpec>,
}

/// The output taken when no case matches.
const DEFAULT_OUTPUT: &str = "default";

impl Switch {
    /// The type name.
    pub const TYPE: &'static str = "switch";

    /// A switch with these cases.
    ///
    /// # Errors
    /// A case name that is empty, not an identifier, repeated, or one of
    /// `default`/`error`; a case with neither or both of `equals` and `when`;
    /// `equals` without a `value` to compare.
    pub fn new(config: SwitchConfig) -> Result<Self, ConfigError> {
        let err = |path: String, message: String| ConfigError { path, message };
        if config.cases.is_empty() {
            return Err(err(
                "cases".into(),
                "a switch needs at least one case".into(),
            ));
        }
        for (i, case) in config.cases.iter().enumerate() {
            let at = format!("cases[{i}]");
            let name = &case.name;
            check_name(i, name, config.cases[..i].iter().map(|c| c.name.as_str()))?;
            match (&case.equals, case.when) {
                (None, None) => {
                    return Err(err(at, format!("case `{name}` needs `equals` or `when`")));
                }
                (Some(_), Some(_)) => {
                    return Err(err(
                        at,
                        format!("case `{name}` has both `equals` and `when`; keep one"),
                    ));
                }
                (Some(_), None) if config.value.is_none() => {
                    return Err(err(
                        format!("{at}.equals"),
                        format!("case `{name}` compares with `value`, which is not set"),
                    ));
                }
                _ => {}
            }
        }
        let spec = Self::spec_with_cases(config.cases.iter().map(|c| c.name.as_str()));
        Ok(Switch {
            config,
            spec: Arc::new(spec),
        })
    }

    /// The spec of the type, for catalogs: its outputs are `default` and one
    /// per case, which only a configured switch knows.
    pub fn catalog_spec() -> NodeSpec {
        NodeSpec {
            type_name: Self::TYPE.into(),
            version: "1".into(),
            description: switch_doc!().to_owned(),
            category: "control".into(),
            config_schema: schemars::SchemaGenerator::default()
                .into_root_schema_for::<SwitchConfig>()
                .to_value(),
            inputs: vec![PortSpec::of::<Option<serde_json::Value>>(
                "value",
                Some("What the taken output carries; `null` when not connected."),
                false,
            )],
            outputs: vec![default_port()],
        }
    }

    /// The spec of a switch with these case names: one output per case,
    /// then `default`.
    fn spec_with_cases<'a>(names: impl Iterator<Item = &'a str>) -> NodeSpec {
        let mut spec = Self::catalog_spec();
        spec.outputs = names
            .map(|name| {
                PortSpec::of::<Option<serde_json::Value>>(
                    name,
                    Some("Carries the input when this case matches."),
                    false,
                )
            })
            .chain(std::iter::once(default_port()))
            .collect();
        spec
    }

    /// The spec of a switch configured with `config`, which may still hold
    /// expressions: only the case names, which must be plain, matter.
    ///
    /// # Errors
    /// `cases` is missing or not a list, or a case name is missing, not a
    /// port name, or repeated.
    pub fn shape(config: &serde_json::Value) -> Result<NodeSpec, ConfigError> {
        let err = |path: String, message: String| ConfigError { path, message };
        let cases = config
            .get("cases")
            .and_then(|c| c.as_array())
            .ok_or_else(|| err("cases".into(), "expected a list of cases".into()))?;
        let mut names: Vec<&str> = Vec::with_capacity(cases.len());
        for (i, case) in cases.iter().enumerate() {
            let name = case.get("name").and_then(|n| n.as_str()).ok_or_else(|| {
                err(
                    format!("cases[{i}].name"),
                    "expected the case's output name".into(),
                )
            })?;
            check_name(i, name, names.iter().copied())?;
            names.push(name);
        }
        Ok(Self::spec_with_cases(names.into_iter()))
    }

    /// Makes a switch from its JSON configuration (for the registry).
    ///
    /// # Errors
    /// The configuration does not deserialize or is inconsistent; the error
    /// names the field.
    pub fn from_config(config: &serde_json::Value) -> Result<Arc<dyn ErasedNode>, ConfigError> {
        let config: SwitchConfig =
            serde_path_to_error::deserialize(config).map_err(|e| ConfigError {
                path: match e.path().to_string().as_str() {
                    "." => String::new(),
                    other => other.to_owned(),
                },
                message: e.into_inner().to_string(),
            })?;
        Ok(Arc::new(Switch::new(config)?))
    }

    /// The position of output `name` (a case or `default`), to connect it.
    pub fn output(&self, name: &str) -> Option<u16> {
        self.spec
            .outputs
            .iter()
            .position(|p| p.name == name)
            .map(|p| p as u16)
    }
}

/// Checks case `i`'s output name against the rules and the earlier names.
fn check_name<'a>(
    i: usize,
    name: &str,
    mut earlier: impl Iterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    let path = format!("cases[{i}].name");
    let message = if name.contains("{{") {
        format!("`{name}`: a case name is an output port and cannot be an expression")
    } else if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("`{name}` is not a port name: use letters, digits and `_`")
    } else if name == DEFAULT_OUTPUT || name == "error" {
        format!("`{name}` is the name of a built-in output; choose another")
    } else if earlier.any(|e| e == name) {
        format!("case `{name}` appears twice")
    } else {
        return Ok(());
    };
    Err(ConfigError { path, message })
}

fn default_port() -> PortSpec {
    PortSpec::of::<Option<serde_json::Value>>(
        DEFAULT_OUTPUT,
        Some("Carries the input when no case matches."),
        false,
    )
}

impl ErasedNode for Switch {
    fn spec(&self) -> Arc<NodeSpec> {
        self.spec.clone()
    }

    fn run<'a>(
        &'a self,
        mut inputs: Vec<Option<Value>>,
        _ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Vec<Option<Value>>, NodeError>> {
        Box::pin(async move {
            let value = inputs
                .pop()
                .flatten()
                .unwrap_or_else(|| Value::json(serde_json::Value::Null));
            let matches = |case: &SwitchCase| match (&case.equals, case.when) {
                (Some(expected), _) => self.config.value.as_ref() == Some(expected),
                (None, Some(when)) => when,
                (None, None) => false,
            };
            let mut outputs: Vec<Option<Value>> = vec![None; self.config.cases.len() + 1];
            let mut any = false;
            for (i, case) in self.config.cases.iter().enumerate() {
                if matches(case) {
                    outputs[i] = Some(value.clone());
                    any = true;
                    if self.config.mode == SwitchMode::First {
                        break;
                    }
                }
            }
            if !any {
                outputs[self.config.cases.len()] = Some(value);
            }
            Ok(outputs)
        })
    }

    fn config_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(&self.config)
    }
}
