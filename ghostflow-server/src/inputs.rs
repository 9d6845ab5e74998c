//! Flow inputs from the command line: `--input-json` and `--input NAME=VALUE`,
//! typed by the schemas the flow declares.

use ghostflow::{Flow, FlowPort};
use serde_json::{Map, Value};

use crate::failure::Failure;

/// The inputs of one run: `json` first, then each `NAME=VALUE` over it.
///
/// # Errors
/// [`Failure::Usage`] naming the declared inputs when a name is not one of
/// them. Missing required inputs are left to the engine, which names them.
pub(crate) fn collect(
    flow: &Flow,
    json: Option<Map<String, Value>>,
    assignments: &[(String, String)],
) -> Result<Map<String, Value>, Failure> {
    let declared = flow.inputs();
    let mut inputs = json.unwrap_or_default();
    for (name, text) in assignments {
        let Some(port) = declared.iter().find(|p| p.name == *name) else {
            return Err(unknown(flow, name));
        };
        inputs.insert(name.clone(), typed_value(port, text));
    }
    if let Some(name) = inputs
        .keys()
        .find(|name| !declared.iter().any(|p| p.name == **name))
    {
        return Err(unknown(flow, name));
    }
    Ok(inputs)
}

/// The value of `--input NAME=TEXT`: the text itself for a string input,
/// otherwise the JSON it holds, or the text when it is not JSON.
fn typed_value(port: &FlowPort, text: &str) -> Value {
    if takes_text(&port.schema) {
        return Value::String(text.to_owned());
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Whether a schema only admits strings (and perhaps null): `type: string`,
/// `type: [string, "null"]`, or an enum of strings.
fn takes_text(schema: &Value) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(types)) => {
            types.iter().any(|t| t == "string")
                && types.iter().all(|t| t == "string" || t == "null")
        }
        _ => schema
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|values| !values.is_empty() && values.iter().all(Value::is_string)),
    }
}

/// The error for an input the flow does not declare, listing those it does.
fn unknown(flow: &Flow, name: &str) -> Failure {
    let declared = flow.inputs();
    if declared.is_empty() {
        return Failure::Usage(format!(
            "unknown input `{name}`: flow `{}` declares no inputs",
            flow.name()
        ));
    }
    let list: Vec<String> = declared.iter().map(describe).collect();
    Failure::Usage(format!(
        "unknown input `{name}`: flow `{}` declares {}",
        flow.name(),
        list.join(", ")
    ))
}

/// `name (string, default "world")`, for messages.
fn describe(port: &FlowPort) -> String {
    let ty = crate::nodes::type_of(&port.schema);
    match &port.default {
        Some(default) => format!("`{}` ({ty}, default {default})", port.name),
        None => format!("`{}` ({ty}, required)", port.name),
    }
}

/// The JSON kind of a value, for messages: `an array`, `a string`.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_stay_text_and_everything_else_is_json_when_it_parses() {
        assert!(takes_text(&json!({"type": "string"})));
        assert!(takes_text(&json!({"type": ["string", "null"]})));
        assert!(takes_text(&json!({"enum": ["a", "b"]})));
        assert!(!takes_text(&json!({"type": ["string", "integer"]})));
        assert!(!takes_text(&json!({"type": "integer"})));
        assert!(!takes_text(&json!({})));
        assert!(!takes_text(&json!(true)));
    }
}
