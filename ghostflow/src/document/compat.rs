//! Whether an output port can feed an input port, judged from their JSON
//! Schemas (documents connect ports by name, so types are checked here,
//! where the typed builder checks them at compile time).
//!
//! The check is by JSON type: `string`, `integer`, `number`, `boolean`,
//! `array`, `object`, `null`. A port whose schema says nothing about its type
//! (any JSON value) connects to anything; `integer` feeds `number` (not the
//! other way round); a nullable output may feed a non-nullable input, since
//! an empty value skips the consumer instead of reaching it. Values of the
//! same Rust type always connect.

use std::collections::BTreeSet;

use crate::port::PortSpec;

/// The JSON types a schema admits; `None` when it admits any value or when
/// the schema is too dynamic to tell (`$ref` cycles, `not`, ...), in which
/// case the edge is accepted and the value is checked when it arrives.
pub(crate) fn json_types(schema: &serde_json::Value) -> Option<BTreeSet<&'static str>> {
    json_types_in(schema, schema, 0)
}

fn json_types_in(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    depth: usize,
) -> Option<BTreeSet<&'static str>> {
    const ALL: [&str; 7] = [
        "string", "integer", "number", "boolean", "array", "object", "null",
    ];
    if depth > 16 {
        return None;
    }
    let object = match schema {
        serde_json::Value::Bool(true) => return None,
        serde_json::Value::Bool(false) => return Some(BTreeSet::new()),
        serde_json::Value::Object(object) => object,
        _ => return None,
    };
    if let Some(reference) = object.get("$ref").and_then(|r| r.as_str()) {
        let target = reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))?;
        return json_types_in(root, target, depth + 1);
    }
    if let Some(types) = object.get("type") {
        let names: Vec<&str> = match types {
            serde_json::Value::String(t) => vec![t.as_str()],
            serde_json::Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect(),
            _ => return None,
        };
        return Some(
            names
                .into_iter()
                .filter_map(|n| ALL.iter().copied().find(|a| *a == n))
                .collect(),
        );
    }
    let values = object
        .get("enum")
        .and_then(|e| e.as_array())
        .map(|v| v.iter().collect::<Vec<_>>())
        .or_else(|| object.get("const").map(|c| vec![c]));
    if let Some(values) = values {
        return Some(values.into_iter().map(type_of).collect());
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = object.get(key).and_then(|b| b.as_array()) {
            let mut union = BTreeSet::new();
            for branch in branches {
                union.extend(json_types_in(root, branch, depth + 1)?);
            }
            return Some(union);
        }
    }
    if let Some(parts) = object.get("allOf").and_then(|b| b.as_array()) {
        let mut meet: Option<BTreeSet<&'static str>> = None;
        for part in parts {
            if let Some(types) = json_types_in(root, part, depth + 1) {
                meet = Some(match meet {
                    Some(m) => m.intersection(&types).copied().collect(),
                    None => types,
                });
            }
        }
        return meet;
    }
    None
}

fn type_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// `Ok` when values of `from` can reach `to`; otherwise a sentence naming
/// both types.
pub(crate) fn check(from: &PortSpec, to: &PortSpec) -> Result<(), String> {
    if from.type_name == to.type_name {
        return Ok(());
    }
    let (Some(out), Some(inp)) = (json_types(&from.schema), json_types(&to.schema)) else {
        return Ok(());
    };
    let accepted = |t: &str| inp.contains(t) || (t == "integer" && inp.contains("number"));
    // `null` is how an empty value would look; empty values never arrive.
    let produced: Vec<&str> = out.iter().copied().filter(|t| *t != "null").collect();
    if produced.is_empty() || produced.iter().any(|t| accepted(t)) {
        Ok(())
    } else {
        Err(format!(
            "produces {} but the input takes {}",
            describe(&out),
            describe(&inp)
        ))
    }
}

fn describe(types: &BTreeSet<&str>) -> String {
    match types.len() {
        0 => "nothing".to_owned(),
        1 => types
            .iter()
            .next()
            .map(|t| (*t).to_owned())
            .unwrap_or_default(),
        _ => types.iter().copied().collect::<Vec<_>>().join(" or "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port<T: schemars::JsonSchema>() -> PortSpec {
        PortSpec::of::<T>("p", None, true)
    }

    #[test]
    fn rust_types_map_to_json_types() {
        let types = |s: &PortSpec| json_types(&s.schema);
        assert_eq!(types(&port::<String>()), Some(["string"].into()));
        assert_eq!(types(&port::<u64>()), Some(["integer"].into()));
        assert_eq!(
            types(&port::<Option<f64>>()),
            Some(["null", "number"].into())
        );
        assert_eq!(types(&port::<Vec<u8>>()), Some(["array"].into()));
        assert_eq!(types(&port::<serde_json::Value>()), None);
        #[derive(schemars::JsonSchema)]
        #[expect(dead_code, reason = "only its schema is used")]
        enum Mode {
            Fast,
            Slow,
        }
        assert_eq!(types(&port::<Mode>()), Some(["string"].into()));
    }

    #[test]
    fn compatible_and_incompatible_ports() {
        assert!(check(&port::<u64>(), &port::<f64>()).is_ok());
        assert!(check(&port::<u32>(), &port::<u64>()).is_ok());
        assert!(check(&port::<String>(), &port::<serde_json::Value>()).is_ok());
        assert!(check(&port::<serde_json::Value>(), &port::<u64>()).is_ok());
        assert!(check(&port::<Option<String>>(), &port::<String>()).is_ok());
        let err = check(&port::<String>(), &port::<u64>()).unwrap_err();
        assert_eq!(err, "produces string but the input takes integer");
        let err = check(&port::<f64>(), &port::<u64>()).unwrap_err();
        assert!(err.contains("produces number"), "{err}");
        assert!(check(&port::<Vec<String>>(), &port::<String>()).is_err());
    }
}
