//! The catalog as `ghostflow nodes` shows it: every node type of the
//! library is described, has schemas that compile, documented ports, and an
//! example in its description that its own config schema accepts.

use ghostflow::document::source::parse;
use ghostflow::document::{Format, Limits};
use ghostflow::expr::ConfigTemplate;

/// The ```yaml block of a description.
fn yaml_example(description: &str) -> Option<&str> {
    let start = description.find("```yaml\n")? + "```yaml\n".len();
    let end = start + description[start..].find("```")?;
    Some(&description[start..end])
}

#[test]
fn every_node_type_is_described_with_a_valid_example() {
    let registry = ghostflow_nodes::registry();
    let specs = ghostflow_nodes::specs();
    assert!(!specs.is_empty());
    let mut problems = Vec::new();
    for spec in &specs {
        let name = &spec.type_name;
        let first = spec.description.split("\n\n").next().unwrap_or_default();
        if first.trim().is_empty() || first.len() > 400 {
            problems.push(format!(
                "{name}: the first paragraph of the description should say in a sentence or two what the node does"
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            problems.push(format!("{name}: type names are snake_case"));
        }
        if let Err(e) = jsonschema::validator_for(&spec.config_schema) {
            problems.push(format!("{name}: the config schema does not compile: {e}"));
        }
        for port in spec.inputs.iter().chain(&spec.outputs) {
            if port.description.as_deref().unwrap_or_default().is_empty() {
                problems.push(format!("{name}: port `{}` has no description", port.name));
            }
            if let Err(e) = jsonschema::validator_for(&port.schema) {
                problems.push(format!(
                    "{name}: the schema of port `{}` does not compile: {e}",
                    port.name
                ));
            }
        }
        let Some(example) = yaml_example(&spec.description) else {
            problems.push(format!("{name}: the description has no ```yaml example"));
            continue;
        };
        let value = match parse(example.as_bytes(), Format::Yaml, &Limits::default()) {
            Ok((value, _)) => value,
            Err(e) => {
                problems.push(format!("{name}: the example is not YAML: {e}"));
                continue;
            }
        };
        let Some([node]) = value.as_array().map(Vec::as_slice) else {
            problems.push(format!(
                "{name}: the example should be a list with one node declaration"
            ));
            continue;
        };
        if node["type"] != serde_json::json!(name) {
            problems.push(format!(
                "{name}: the example declares type {}",
                node["type"]
            ));
            continue;
        }
        let config = node.get("config").cloned().unwrap_or(serde_json::json!({}));
        let node_type = registry.get(name).unwrap();
        // As the loader does: fields the node renders itself (`x-template`)
        // or loads (`x-flow`) are not expressions, and templated strings
        // are checked per run.
        let mut expressions = config.clone();
        if let (Some(object), Some(properties)) = (
            expressions.as_object_mut(),
            spec.config_schema["properties"].as_object(),
        ) {
            for (field, schema) in properties {
                if schema.get("x-template") == Some(&serde_json::json!(true))
                    || schema.get("x-flow") == Some(&serde_json::json!(true))
                {
                    object.remove(field);
                }
            }
        }
        let template = match ConfigTemplate::parse(&expressions) {
            Ok(t) => t,
            Err(errors) => {
                problems.push(format!("{name}: the example's expressions: {errors:?}"));
                continue;
            }
        };
        let templated: Vec<&str> = template.paths().collect();
        for e in node_type.validate(&config) {
            let inside = templated.iter().any(|t| {
                e.path == *t
                    || e.path.starts_with(&format!("{t}."))
                    || e.path.starts_with(&format!("{t}["))
            });
            if !inside {
                problems.push(format!("{name}: the example's config: {e}"));
            }
        }
        if let Err(e) = node_type.spec_for(&config) {
            problems.push(format!("{name}: the example's ports: {e}"));
        }
        if template.is_static()
            && let Err(e) = node_type.create(&config)
        {
            problems.push(format!(
                "{name}: the example's config does not make a node: {e}"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[cfg(feature = "control")]
#[test]
fn enum_mistakes_list_the_choices() {
    let registry = ghostflow_nodes::registry();
    let problems = registry
        .get("for_each")
        .unwrap()
        .validate(&serde_json::json!({"flow": "x.yaml", "on_item_error": "retry"}));
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "on_item_error");
    assert_eq!(
        problems[0].message,
        r#""retry" is not one of "fail", "skip", "collect""#
    );
}

/// The whole catalog with every family on: a node type that disappears or
/// changes its name or category is a change users see.
#[cfg(all(
    feature = "control",
    feature = "data",
    feature = "text",
    feature = "http",
    feature = "file",
    feature = "sql",
    feature = "messaging",
    feature = "email",
    feature = "ai"
))]
#[test]
fn every_family_registers_its_nodes() {
    let mut by_category: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for spec in ghostflow_nodes::specs() {
        by_category
            .entry(spec.category.clone())
            .or_default()
            .push(spec.type_name.clone());
    }
    let expected = serde_json::json!({
        "ai": [
            "agent", "chat", "document_load", "embed", "extract", "text_split", "vector_delete",
            "vector_search", "vector_upsert"
        ],
        "control": ["delay", "fail", "for_each", "if", "merge", "passthrough", "subflow", "switch"],
        "data": [
            "aggregate", "csv_parse", "csv_write", "datetime_add", "datetime_diff",
            "datetime_format", "datetime_parse", "datetime_start_of", "deduplicate", "filter",
            "json_parse", "json_stringify", "limit", "set", "sort", "split_out", "transform"
        ],
        "email": ["email_send"],
        "file": ["file_list", "file_read", "file_write"],
        "http": ["graphql", "http_request"],
        "messaging": [
            "discord_message", "mqtt_publish", "nats_publish", "nats_request", "redis",
            "slack_message"
        ],
        "sql": ["sql_execute", "sql_query", "sql_query_one"],
        "text": ["base64", "hash", "hmac", "regex_extract", "regex_match", "regex_replace", "template"]
    });
    assert_eq!(serde_json::to_value(&by_category).unwrap(), expected);
    assert_eq!(ghostflow_nodes::specs().len(), 56);
}
