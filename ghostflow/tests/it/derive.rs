//! What `#[derive(Node)]` and `#[derive(Ports)]` produce at run time: specs,
//! the JSON Schema of configurations, and moving values in and out of ports.

use std::path::PathBuf;

use ghostflow::port::PortError;
use ghostflow::prelude::*;
use ghostflow::{In, Out, Port, Value};
use serde_json::json;

/// Counts the words in a text.
///
/// Words shorter than `min_len` are ignored,
/// and so are words without `contains`.
#[derive(Node, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[node(input = Text, output = WordCount, category = "text", version = "2")]
pub(crate) struct CountWords {
    /// Ignore words shorter than this.
    #[serde(default)]
    pub(crate) min_len: usize,
    /// Only count words containing this.
    pub(crate) contains: Option<String>,
    /// Compare `contains` with case.
    pub(crate) case_sensitive: bool,
}

/// Input of [`CountWords`].
#[derive(Ports, Debug, PartialEq)]
pub(crate) struct Text {
    /// The text to count.
    pub(crate) text: String,
    /// More text, counted too
    /// when connected.
    pub(crate) extra: Option<String>,
}

/// Output of [`CountWords`].
#[derive(Ports, Debug, PartialEq)]
pub(crate) struct WordCount {
    /// Number of words counted.
    #[port(name = "count")]
    pub(crate) words: u64,
    /// The longest word counted; empty when none was.
    pub(crate) longest: Option<String>,
}

impl Run for CountWords {
    async fn run(&self, input: Text, _ctx: &Context) -> Result<WordCount, NodeError> {
        let text = format!("{} {}", input.text, input.extra.unwrap_or_default());
        let needle = self.contains.clone().unwrap_or_default();
        let counted: Vec<&str> = text
            .split_whitespace()
            .filter(|word| word.len() >= self.min_len)
            .filter(|word| match self.case_sensitive {
                true => word.contains(&needle),
                false => word.to_lowercase().contains(&needle.to_lowercase()),
            })
            .collect();
        Ok(WordCount {
            words: counted.len() as u64,
            longest: counted
                .iter()
                .max_by_key(|w| w.len())
                .map(|w| w.to_string()),
        })
    }
}

/// Sends a request.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HTTPRequest {
    /// Where to.
    pub(crate) url: String,
}

impl Run for HTTPRequest {
    async fn run(&self, _input: (), _ctx: &Context) -> Result<(), NodeError> {
        Ok(())
    }
}

/// Changes the case of a text.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Text, output = Text, name = "case")]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChangeCase {
    /// All capitals.
    Upper,
    /// No capitals.
    Lower,
}

impl Run for ChangeCase {
    async fn run(&self, input: Text, _ctx: &Context) -> Result<Text, NodeError> {
        let change = |s: String| match self {
            ChangeCase::Upper => s.to_uppercase(),
            ChangeCase::Lower => s.to_lowercase(),
        };
        Ok(Text {
            text: change(input.text),
            extra: input.extra.map(change),
        })
    }
}

#[test]
fn spec_matches_snapshot() {
    let spec = serde_json::to_string_pretty(&CountWords::spec()).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/count_words.json");
    if std::env::var_os("GHOSTFLOW_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &spec).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != spec {
        panic!(
            "the spec of `CountWords` differs from {} (`-` snapshot, `+` now); \
             if the change is intended, rerun with GHOSTFLOW_BLESS=1\n{}",
            path.display(),
            line_diff(&expected, &spec)
        );
    }
}

#[test]
fn spec_reads_the_attribute_and_the_docs() {
    let spec = CountWords::spec();
    assert_eq!(spec.type_name, "count_words");
    assert_eq!(spec.version, "2");
    assert_eq!(spec.category, "text");
    assert_eq!(
        spec.description,
        "Counts the words in a text.\n\n\
         Words shorter than `min_len` are ignored, and so are words without `contains`."
    );
    assert_eq!(spec.config_schema["title"], "CountWords");
}

#[test]
fn spec_defaults_name_version_and_category() {
    let spec = HTTPRequest::spec();
    assert_eq!(spec.type_name, "http_request");
    assert_eq!(spec.version, "1");
    assert_eq!(spec.category, "general");
    assert_eq!(spec.description, "Sends a request.");
    assert!(spec.inputs.is_empty() && spec.outputs.is_empty());
    assert_eq!(ChangeCase::spec().type_name, "case");
}

#[test]
fn port_specs_follow_the_fields() {
    let spec = CountWords::spec();
    let summary = |ports: &[ghostflow::PortSpec]| -> Vec<(String, bool, Option<String>, String)> {
        ports
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    p.required,
                    p.description.clone(),
                    p.type_name.clone(),
                )
            })
            .collect()
    };
    let string = std::any::type_name::<String>().to_owned();
    assert_eq!(
        summary(&spec.inputs),
        [
            (
                "text".into(),
                true,
                Some("The text to count.".into()),
                string.clone()
            ),
            (
                "extra".into(),
                false,
                Some("More text, counted too when connected.".into()),
                string.clone()
            ),
        ]
    );
    assert_eq!(
        summary(&spec.outputs),
        [
            (
                "count".into(),
                true,
                Some("Number of words counted.".into()),
                "u64".into()
            ),
            (
                "longest".into(),
                false,
                Some("The longest word counted; empty when none was.".into()),
                string,
            ),
        ]
    );
    // An optional port's schema is the schema of its values, not of `Option`.
    assert_eq!(spec.inputs[1].schema["type"], "string");
    assert_eq!(spec.outputs[0].schema["type"], "integer");
    assert_eq!(spec.inputs, Text::port_specs());
    assert_eq!(<Text as Ports>::LEN, 2);
    assert_eq!(spec.input("extra"), Some(&spec.inputs[1]));
}

#[test]
fn values_round_trip_through_slots() {
    let mut slots = Vec::new();
    Text {
        text: "a b".into(),
        extra: Some("c".into()),
    }
    .into_values(&mut slots);
    WordCount {
        words: 3,
        longest: None,
    }
    .into_values(&mut slots);
    assert_eq!(slots.len(), 4);
    assert!(
        slots[3].is_none(),
        "an empty optional output leaves its slot empty"
    );

    let (text_slots, count_slots) = slots.split_at_mut(2);
    assert_eq!(
        Text::from_values(text_slots).unwrap(),
        Text {
            text: "a b".into(),
            extra: Some("c".into())
        }
    );
    assert_eq!(
        WordCount::from_values(count_slots).unwrap(),
        WordCount {
            words: 3,
            longest: None
        }
    );
    assert!(
        slots.iter().all(Option::is_none),
        "values are taken, not copied"
    );

    // JSON values decode into typed ports.
    let mut slots = vec![Some(Value::json(json!("from json"))), None];
    assert_eq!(Text::from_values(&mut slots).unwrap().text, "from json");
}

#[test]
fn bad_slots_are_reported_by_port_name() {
    let mut missing = vec![None, Some(Value::new("extra".to_string()))];
    assert_eq!(
        Text::from_values(&mut missing),
        Err(PortError::Missing { port: "text" })
    );
    assert_eq!(
        Text::from_values(&mut []),
        Err(PortError::Missing { port: "text" })
    );

    let mut wrong = vec![Some(Value::new("x".to_string())), None];
    let err = WordCount::from_values(&mut wrong).unwrap_err();
    let PortError::Type { port, source } = &err else {
        panic!("expected a type error, got {err:?}");
    };
    assert_eq!(*port, "count", "the renamed port's name, not the field's");
    assert_eq!(source.expected, "u64");
    assert!(err.to_string().starts_with("input port `count`: "), "{err}");

    let mut wrong_optional = vec![Some(Value::new(1u64)), Some(Value::new(2u64))];
    let err = WordCount::from_values(&mut wrong_optional).unwrap_err();
    assert!(
        matches!(
            err,
            PortError::Type {
                port: "longest",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn handles_point_at_their_ports() {
    let mut b = Flow::builder("handles");
    let first = b.add("first", ChangeCase::Upper);
    let count = b.add(
        "count",
        CountWords {
            min_len: 0,
            contains: None,
            case_sensitive: false,
        },
    );
    let inputs: TextPorts<In> = count.inp();
    let outputs: WordCountPorts<Out> = count.out();
    assert_eq!(inputs.text.node(), count.index());
    assert_eq!((inputs.text.position(), inputs.extra.position()), (0, 1));
    assert_eq!(
        (outputs.words.position(), outputs.longest.position()),
        (0, 1)
    );
    let extra: Port<In, String> = inputs.extra;
    assert_eq!(first.out().text.node(), first.index());
    assert!(format!("{inputs:?}").starts_with("TextPorts { text: Port"));
    b.connect(first.out().text, extra);
}

#[tokio::test]
async fn derived_nodes_run_in_a_flow() {
    let mut b = Flow::builder("count");
    let text = b.input::<String>("text");
    let upper = b.add("upper", ChangeCase::Upper);
    let count = b.add(
        "count",
        CountWords {
            min_len: 2,
            contains: Some("o".into()),
            case_sensitive: false,
        },
    );
    b.connect(text, upper.inp().text);
    b.connect(upper.out().text, count.inp().text);
    b.output("count", count.out().words);
    b.output("longest", count.out().longest);
    let flow = b.build().unwrap();
    let outcome = Engine::new()
        .run(
            &flow,
            Inputs::new().set("text", "a longer word or two".to_string()),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output::<u64>("count").unwrap(), 4);
    assert_eq!(outcome.output::<String>("longest").unwrap(), "LONGER");
}

#[test]
fn config_json_is_serde_json() {
    let config = CountWords {
        min_len: 3,
        contains: None,
        case_sensitive: true,
    };
    assert_eq!(
        config.config_json().unwrap(),
        json!({ "min_len": 3, "contains": null, "case_sensitive": true })
    );
    assert_eq!(ChangeCase::Lower.config_json().unwrap(), json!("lower"));
}

/// Serde and the schema in the spec accept and reject the same configs.
#[test]
fn schema_and_serde_agree() {
    fn check<N: Node + serde::de::DeserializeOwned>(samples: &[(serde_json::Value, bool)]) {
        let schema = N::spec().config_schema;
        for (sample, valid) in samples {
            let by_serde = serde_json::from_value::<N>(sample.clone()).is_ok();
            let by_schema = schema_accepts(&schema, &schema, sample);
            assert_eq!(
                (by_serde, by_schema),
                (*valid, *valid),
                "{sample} (serde, schema) for {}",
                N::spec().type_name
            );
        }
    }
    check::<CountWords>(&[
        (json!({ "case_sensitive": true }), true),
        (
            json!({ "case_sensitive": false, "min_len": 3, "contains": "a" }),
            true,
        ),
        (json!({ "case_sensitive": false, "contains": null }), true),
        (json!({ "case_sensitive": false, "unknown": 1 }), true),
        (json!({}), false),
        (json!({ "min_len": 3 }), false),
        (json!({ "case_sensitive": "yes" }), false),
        (json!({ "case_sensitive": true, "min_len": -1 }), false),
        (json!({ "case_sensitive": true, "min_len": 1.5 }), false),
        (json!({ "case_sensitive": true, "contains": 7 }), false),
        (json!([true]), false),
    ]);
    check::<HTTPRequest>(&[
        (json!({ "url": "https://example.com" }), true),
        (
            json!({ "url": "https://example.com", "method": "GET" }),
            false,
        ),
        (json!({}), false),
    ]);
    check::<ChangeCase>(&[
        (json!("upper"), true),
        (json!("lower"), true),
        (json!("Upper"), false),
        (json!(1), false),
        (json!(null), false),
    ]);
}

/// A JSON Schema validator for the keywords that schemars emits for the
/// types above; an unknown keyword fails the test rather than pass silently.
fn schema_accepts(
    schema: &serde_json::Value,
    root: &serde_json::Value,
    value: &serde_json::Value,
) -> bool {
    use serde_json::Value as J;
    let object = match schema {
        J::Bool(accept) => return *accept,
        J::Object(object) => object,
        other => panic!("not a schema: {other}"),
    };
    object.iter().all(|(keyword, arg)| match keyword.as_str() {
        "$schema" | "title" | "description" | "format" | "default" | "$defs" => true,
        "$ref" => {
            let pointer = arg.as_str().unwrap().trim_start_matches('#');
            schema_accepts(root.pointer(pointer).unwrap(), root, value)
        }
        "type" => {
            let types: Vec<&str> = match arg {
                J::String(t) => vec![t.as_str()],
                J::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                other => panic!("bad type: {other}"),
            };
            types.iter().any(|t| match *t {
                "null" => value.is_null(),
                "boolean" => value.is_boolean(),
                "string" => value.is_string(),
                "object" => value.is_object(),
                "array" => value.is_array(),
                "number" => value.is_number(),
                "integer" => value.is_i64() || value.is_u64(),
                other => panic!("unknown type {other}"),
            })
        }
        "minimum" => value.as_f64().is_none_or(|v| v >= arg.as_f64().unwrap()),
        "maximum" => value.as_f64().is_none_or(|v| v <= arg.as_f64().unwrap()),
        "enum" => arg.as_array().unwrap().contains(value),
        "const" => arg == value,
        "oneOf" => {
            arg.as_array()
                .unwrap()
                .iter()
                .filter(|s| schema_accepts(s, root, value))
                .count()
                == 1
        }
        "anyOf" => arg
            .as_array()
            .unwrap()
            .iter()
            .any(|s| schema_accepts(s, root, value)),
        "required" => value.as_object().is_none_or(|fields| {
            arg.as_array()
                .unwrap()
                .iter()
                .all(|name| fields.contains_key(name.as_str().unwrap()))
        }),
        "properties" => value.as_object().is_none_or(|fields| {
            fields.iter().all(|(name, field)| match arg.get(name) {
                Some(field_schema) => schema_accepts(field_schema, root, field),
                None => true,
            })
        }),
        "additionalProperties" => value.as_object().is_none_or(|fields| {
            let known = object.get("properties").and_then(J::as_object);
            fields
                .iter()
                .filter(|(name, _)| known.is_none_or(|k| !k.contains_key(*name)))
                .all(|(_, field)| schema_accepts(arg, root, field))
        }),
        other => panic!("the test validator does not know the keyword `{other}`"),
    })
}

/// A line diff of `old` and `new`: unchanged lines start with two spaces,
/// removed ones with `-`, added ones with `+`.
fn line_diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("- {}\n", a[i]);
            i += 1;
        } else {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        }
    }
    out
}

#[test]
fn line_diff_marks_changes() {
    assert_eq!(
        line_diff("a\nb\nc", "a\nx\nc\nd"),
        "  a\n- b\n+ x\n  c\n+ d\n"
    );
}
