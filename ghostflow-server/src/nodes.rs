//! `ghostflow nodes`: the catalog of node types, and `ghostflow schema`.

use std::fmt::Write as _;

use ghostflow::{NodeSpec, PortSpec};
use serde_json::Value;

use crate::cli::NodesArgs;
use crate::failure::{Failure, print_stdout};

/// Prints every node type: as text, or the full specs as a JSON array.
pub(crate) fn nodes(args: &NodesArgs) -> Result<(), Failure> {
    let specs = ghostflow_nodes::specs();
    if args.json {
        return print_stdout(&encoded(serde_json::to_string_pretty(&specs))?);
    }
    let mut text = String::new();
    for spec in &specs {
        describe(&mut text, spec);
        text.push('\n');
    }
    text.push_str(
        "`?` marks an input that may stay unconnected or empty, or an output that may\n\
         stay empty. Every node also has an `error` output, used with `on_error: continue`.\n\
         Config schemas: ghostflow nodes --json",
    );
    print_stdout(&text)
}

/// Prints the JSON Schema of flow documents.
pub(crate) fn schema() -> Result<(), Failure> {
    print_stdout(&encoded(serde_json::to_string_pretty(
        &ghostflow::document::json_schema(),
    ))?)
}

fn encoded(json: Result<String, serde_json::Error>) -> Result<String, Failure> {
    json.map_err(|e| Failure::Failed(Some(format!("cannot encode as JSON: {e}"))))
}

/// One node type, as a few lines of text:
///
/// ```text
/// delay@1 (control): Waits for a fixed time, then passes its input on.
///   in:  value: any
///   out: value: any
/// ```
fn describe(out: &mut String, spec: &NodeSpec) {
    let _ = writeln!(
        out,
        "{}@{} ({}): {}",
        spec.type_name,
        spec.version,
        spec.category,
        summary(&spec.description)
    );
    let _ = writeln!(out, "  in:  {}", ports(&spec.inputs));
    let _ = writeln!(out, "  out: {}", ports(&spec.outputs));
}

/// `name: type` for each port; `?` after the name of an optional one.
fn ports(ports: &[PortSpec]) -> String {
    if ports.is_empty() {
        return "(none)".to_owned();
    }
    ports
        .iter()
        .map(|p| {
            let mark = if p.required { "" } else { "?" };
            format!("{}{mark}: {}", p.name, type_of(&p.schema))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first sentence of a description, on one line.
fn summary(description: &str) -> String {
    let paragraph = description.split("\n\n").next().unwrap_or_default();
    let line = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.find(". ") {
        Some(end) => line[..=end].to_owned(),
        None => line,
    }
}

/// A short name for the values a JSON Schema admits: `string`, `integer?`,
/// `[string]`, `Order`, `string | number`, `any`.
pub(crate) fn type_of(schema: &Value) -> String {
    let Value::Object(schema) = schema else {
        return if *schema == Value::Bool(false) {
            "nothing".to_owned()
        } else {
            "any".to_owned()
        };
    };
    let title = schema
        .get("title")
        .and_then(Value::as_str)
        .filter(|t| *t != "AnyValue");
    match schema.get("type") {
        Some(Value::String(ty)) => single_type(ty, schema.get("items"), title),
        Some(Value::Array(types)) => {
            let nullable = types.iter().any(|t| t == "null");
            let names: Vec<String> = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .map(|t| single_type(t, schema.get("items"), title))
                .collect();
            let joined = if names.is_empty() {
                "null".to_owned()
            } else {
                names.join(" | ")
            };
            if nullable && !names.is_empty() {
                if names.len() == 1 {
                    format!("{joined}?")
                } else {
                    format!("({joined})?")
                }
            } else {
                joined
            }
        }
        _ => {
            if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
                return reference.rsplit('/').next().unwrap_or(reference).to_owned();
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(options)) = schema.get(key) {
                    let nullable = options
                        .iter()
                        .any(|o| o.get("type") == Some(&"null".into()));
                    let names: Vec<String> = options
                        .iter()
                        .filter(|o| o.get("type") != Some(&"null".into()))
                        .map(type_of)
                        .collect();
                    let joined = names.join(" | ");
                    return match (nullable, names.len()) {
                        (true, 1) => format!("{joined}?"),
                        (true, _) => format!("({joined})?"),
                        (false, _) => joined,
                    };
                }
            }
            if let Some(Value::Array(values)) = schema.get("enum") {
                return values
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(" | ");
            }
            if let Some(value) = schema.get("const") {
                return value.to_string();
            }
            title.map_or_else(|| "any".to_owned(), str::to_owned)
        }
    }
}

fn single_type(ty: &str, items: Option<&Value>, title: Option<&str>) -> String {
    match (ty, items, title) {
        ("array", Some(items), _) => format!("[{}]", type_of(items)),
        ("object", _, Some(title)) => title.to_owned(),
        _ => ty.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemas_read_as_short_type_names() {
        assert_eq!(type_of(&json!({"type": "string"})), "string");
        assert_eq!(type_of(&json!({"type": ["integer", "null"]})), "integer?");
        assert_eq!(
            type_of(&json!({"type": "array", "items": {"type": "number"}})),
            "[number]"
        );
        assert_eq!(
            type_of(&json!({"title": "Order", "type": "object"})),
            "Order"
        );
        assert_eq!(type_of(&json!({"$ref": "#/$defs/Item"})), "Item");
        assert_eq!(
            type_of(&json!({"anyOf": [{"type": "string"}, {"type": "null"}]})),
            "string?"
        );
        assert_eq!(type_of(&json!({"enum": ["a", "b"]})), r#""a" | "b""#);
        assert_eq!(type_of(&json!({"title": "AnyValue"})), "any");
        assert_eq!(type_of(&json!(true)), "any");
    }

    #[test]
    fn a_summary_is_the_first_sentence_on_one_line() {
        assert_eq!(
            summary("Waits for a fixed\ntime. Then more.\n\nDetails."),
            "Waits for a fixed time."
        );
        assert_eq!(summary("No full stop"), "No full stop");
    }
}
