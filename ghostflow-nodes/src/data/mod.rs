//! Data nodes: build and reshape JSON values.

use ghostflow::Registry;
use ghostflow::prelude::*;

/// Registers the data nodes.
pub(crate) fn register(registry: &mut Registry) {
    registry.register::<Set>();
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
