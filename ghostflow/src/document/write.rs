//! Writing: a [`Flow`] as a [`Document`], and a document as YAML or JSON
//! text, in a stable order (the order of the flow's nodes, edges and
//! ports), so that files written twice are identical and diffs stay small.

use std::fmt::Write as _;

use indexmap::IndexMap;

use crate::error::Error;
use crate::flow::{Endpoint, Flow};

use super::load::is_hidden_port;
use super::model::{
    CircuitBreakerDecl, Document, DurationText, EdgeDecl, InputDecl, NodeDecl, RateLimitDecl,
    RetryDecl, VERSION,
};

impl Document {
    /// The document of a flow: its nodes (type, configuration, policies),
    /// edges, inputs and outputs. Loading it through a registry that knows
    /// the node types gives back an equivalent flow.
    ///
    /// A type at version `1` is written without its version (`type: name`);
    /// others as `name@version`.
    ///
    /// # Errors
    /// [`Error::Output`] naming the node whose configuration does not
    /// serialize.
    pub fn from_flow(flow: &Flow) -> Result<Document, Error> {
        let endpoint = |e: Endpoint| -> String {
            if e.is_flow_input() {
                let name = flow
                    .inputs()
                    .get(e.port as usize)
                    .map_or("?", |p| p.name.as_str());
                format!("input.{name}")
            } else {
                let node = &flow.nodes()[e.node.index()];
                format!("{}.{}", node.id, node.output_name(e.port))
            }
        };
        let mut nodes = Vec::with_capacity(flow.nodes().len());
        for node in flow.nodes() {
            let config = node.node.config_json().map_err(|e| Error::Output {
                name: node.id.to_string(),
                reason: format!("the node's configuration does not serialize: {e}"),
            })?;
            let policy = node.policy();
            let spec = &node.spec;
            nodes.push(NodeDecl {
                id: node.id.to_string(),
                node_type: if spec.version == "1" {
                    spec.type_name.clone()
                } else {
                    format!("{}@{}", spec.type_name, spec.version)
                },
                config,
                description: None,
                retry: policy.retry.as_ref().map(RetryDecl::from_policy),
                timeout: policy.timeout.map(DurationText),
                on_error: policy.on_error.map(Into::into),
                concurrency_key: policy.concurrency_key.clone(),
                rate_limit: policy.rate_limit.as_ref().map(RateLimitDecl::from_policy),
                circuit_breaker: policy
                    .circuit_breaker
                    .as_ref()
                    .map(CircuitBreakerDecl::from_policy),
                position: None,
            });
        }
        let edges = flow
            .edges()
            .iter()
            .filter(|e| {
                let to = &flow.nodes()[e.to.node.index()];
                !is_hidden_port(to.input_name(e.to.port))
            })
            .map(|e| EdgeDecl {
                from: endpoint(e.from),
                to: {
                    let to = &flow.nodes()[e.to.node.index()];
                    format!("{}.{}", to.id, to.input_name(e.to.port))
                },
            })
            .collect();
        let inputs = flow
            .inputs()
            .iter()
            .map(|p| {
                let any = p.schema.as_object().is_some_and(|o| o.is_empty());
                (
                    p.name.clone(),
                    InputDecl {
                        schema: (!any).then(|| p.schema.clone()),
                        description: p.description.clone(),
                        default: p.default.clone(),
                    },
                )
            })
            .collect();
        let outputs: IndexMap<String, String> = flow
            .outputs()
            .iter()
            .filter_map(|p| Some((p.name.clone(), endpoint(p.source?))))
            .collect();
        Ok(Document {
            version: VERSION,
            name: flow.name().to_owned(),
            description: None,
            inputs,
            nodes,
            edges,
            outputs,
            editor: None,
        })
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        yaml(&value)
    }

    /// The document as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// `value` as a YAML document (block style; strings quoted only when YAML
/// would read them otherwise; multi-line strings as `|` blocks).
pub fn yaml(value: &serde_json::Value) -> String {
    let mut out = String::new();
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => emit_map(&mut out, map, 0, false),
        serde_json::Value::Array(items) if !items.is_empty() => emit_seq(&mut out, items, 0),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

/// A mapping at `level`; with `first_inline`, its first key goes on the
/// current line (after a `- `).
fn emit_map(
    out: &mut String,
    map: &serde_json::Map<String, serde_json::Value>,
    level: usize,
    first_inline: bool,
) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !first_inline {
            indent(out, level);
        }
        out.push_str(&scalar_string(key));
        out.push(':');
        emit_after_key(out, value, level);
    }
}

/// The value of a `key:` written at `level`.
fn emit_after_key(out: &mut String, value: &serde_json::Value, level: usize) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            emit_map(out, map, level + 1, false);
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            emit_seq(out, items, level + 1);
        }
        serde_json::Value::String(s) if block_literal_ok(s) => {
            emit_literal(out, s, level + 1);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

/// A sequence at `level`.
fn emit_seq(out: &mut String, items: &[serde_json::Value], level: usize) {
    for item in items {
        indent(out, level);
        out.push_str("- ");
        match item {
            serde_json::Value::Object(map) if !map.is_empty() => {
                emit_map(out, map, level + 1, true)
            }
            serde_json::Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                emit_seq(out, inner, level + 1);
            }
            serde_json::Value::String(s) if block_literal_ok(s) => {
                out.pop();
                emit_literal(out, s, level + 1);
            }
            other => {
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

/// A multi-line string as a literal block whose lines sit at `level`.
fn emit_literal(out: &mut String, s: &str, level: usize) {
    out.push_str(if s.ends_with('\n') { " |\n" } else { " |-\n" });
    for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
        if !line.is_empty() {
            indent(out, level);
            out.push_str(line);
        }
        out.push('\n');
    }
}

/// Whether a multi-line string reads back the same from a `|` block:
/// it has a line break, no leading blank on its first line, no trailing
/// blanks, no other control characters, and at most one final line break.
fn block_literal_ok(s: &str) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    body.contains('\n')
        && !body.ends_with('\n')
        && !body.starts_with([' ', '\t', '\n'])
        && body.split('\n').all(|l| l.trim_end() == l)
        && !body.chars().any(|c| c.is_control() && c != '\n')
}

/// A scalar (or an empty collection) on one line.
fn inline(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "null".to_owned(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => scalar_string(s),
        serde_json::Value::Array(a) if a.is_empty() => "[]".to_owned(),
        serde_json::Value::Object(m) if m.is_empty() => "{}".to_owned(),
        // Non-empty collections are written as blocks by the callers.
        other => other.to_string(),
    }
}

/// A string as a YAML scalar: plain when YAML reads it back as the same
/// string, double-quoted (JSON escapes, valid YAML) otherwise.
fn scalar_string(s: &str) -> String {
    if plain_ok(s) {
        s.to_owned()
    } else {
        let mut quoted = String::with_capacity(s.len() + 2);
        // serde_json's escaping is a subset of YAML's double-quoted escapes.
        let _ = write!(quoted, "{}", serde_json::Value::String(s.to_owned()));
        quoted
    }
}

fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    const RESERVED: &[&str] = &[
        "null", "Null", "NULL", "~", "true", "True", "TRUE", "false", "False", "FALSE", "yes",
        "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF",
    ];
    if RESERVED.contains(&s) || s.parse::<f64>().is_ok() || looks_numeric(s) {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) || first.is_whitespace() {
        return false;
    }
    if s.ends_with(char::is_whitespace) || s.ends_with(':') {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.contains('\t') {
        return false;
    }
    s.chars().all(|c| !c.is_control() && c != '\u{feff}')
}

/// Forms YAML 1.1 readers may take as numbers (`0x1F`, `1_000`, `.inf`).
fn looks_numeric(s: &str) -> bool {
    let t = s.trim_start_matches(['+', '-']);
    t.starts_with("0x")
        || t.starts_with("0o")
        || t.starts_with("0b")
        || t.eq_ignore_ascii_case(".inf")
        || t.eq_ignore_ascii_case(".nan")
        || (t
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
            && t.chars()
                .all(|c| c.is_ascii_digit() || "._eE+-:".contains(c)))
}
