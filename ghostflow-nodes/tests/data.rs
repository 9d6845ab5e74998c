//! The data nodes, run in flows through `Engine`: documents loaded with the
//! registry, and flows made with the typed builder. The peers of this
//! family are in the process (the values themselves), so nothing external
//! is needed.

// The crate's doc comes before the gate, so that a build without the
// feature still has one (`missing_docs`).
#![cfg(feature = "data")]

mod common;
use common::{load, load_error};

use ghostflow::document::Document;
use ghostflow::{Engine, Flow, Inputs, NodeFailure, NodeStatus, Outcome};
use ghostflow_nodes::data::{Sort, SortKey, SortOrder, Transform};
use serde_json::{Map, Value, json};

// ------------------------------------------------------------------ helpers

/// A flow of one node `n` of `node_type` with `config`, a flow input for
/// each key of `inputs` wired to the input port of that name, and a flow
/// output for each of the node's output ports.
fn one_node(node_type: &str, config: &Value, inputs: &Map<String, Value>) -> Flow {
    let registry = ghostflow_nodes::registry();
    let spec = registry.get(node_type).unwrap().spec().clone();
    let mut yaml = String::from("version: 1\nname: one\n");
    if !inputs.is_empty() {
        yaml.push_str("inputs:\n");
        for name in inputs.keys() {
            yaml.push_str(&format!("  {name}: {{}}\n"));
        }
    }
    yaml.push_str(&format!(
        "nodes:\n  - id: n\n    type: {node_type}\n    config: {config}\n"
    ));
    if !inputs.is_empty() {
        yaml.push_str("edges:\n");
        for name in inputs.keys() {
            yaml.push_str(&format!("  - {{ from: input.{name}, to: n.{name} }}\n"));
        }
    }
    yaml.push_str("outputs:\n");
    for port in &spec.outputs {
        yaml.push_str(&format!("  {0}: n.{0}\n", port.name));
    }
    load(&yaml)
}

/// Runs one node; its outputs, or the run's error as text.
async fn run_node(
    node_type: &str,
    config: Value,
    inputs: Value,
) -> Result<Map<String, Value>, String> {
    let inputs = inputs.as_object().cloned().unwrap_or_default();
    let flow = one_node(node_type, &config, &inputs);
    let outcome = Engine::new()
        .run(&flow, Inputs::from_json(inputs))
        .await
        .map_err(|e| e.to_string())?;
    outcome.outputs_json().map_err(|e| e.to_string())
}

/// Runs one node and returns its output `port`.
async fn output(node_type: &str, config: Value, inputs: Value, port: &str) -> Value {
    let outputs = run_node(node_type, config.clone(), inputs.clone())
        .await
        .unwrap_or_else(|e| panic!("{node_type} {config} on {inputs}: {e}"));
    outputs[port].clone()
}

/// Runs one node that must fail; the error text.
async fn failure(node_type: &str, config: Value, inputs: Value) -> String {
    match run_node(node_type, config.clone(), inputs).await {
        Ok(out) => panic!("{node_type} {config} gave {out:?}"),
        Err(e) => e,
    }
}

/// Every problem with `config` for `node_type`: the schema's, then the
/// node's own (when the schema accepts it), as `path: message`.
fn config_errors(node_type: &str, config: Value) -> String {
    let registry = ghostflow_nodes::registry();
    let node_type = registry.get(node_type).unwrap();
    let mut problems: Vec<String> = node_type
        .validate(&config)
        .iter()
        .map(ToString::to_string)
        .collect();
    if let Err(e) = node_type.create(&config) {
        problems.push(e.to_string());
    }
    assert!(!problems.is_empty(), "{config} was accepted");
    problems.join("\n")
}

fn assert_contains(text: &str, expected: &str) {
    assert!(text.contains(expected), "`{text}` lacks `{expected}`");
}

// -------------------------------------------------------------- transform

#[tokio::test]
async fn transform_reshapes_with_jq() {
    let orders = json!({"lines": [
        {"sku": "a", "qty": 2, "price": 1.5},
        {"sku": "b", "qty": 0, "price": 9},
        {"sku": "ç名", "qty": 1, "price": 10}
    ]});
    let out = output(
        "transform",
        json!({"filter": ".lines | map(select(.qty > 0) | {sku, total: (.qty * .price)}) | sort_by(-.total)"}),
        json!({"value": orders}),
        "value",
    )
    .await;
    assert_eq!(
        out,
        json!([{"sku": "ç名", "total": 10}, {"sku": "a", "total": 3.0}])
    );
    // Strings, regexes, formats and numbers.
    let out = output(
        "transform",
        json!({"filter": r#"{up: (.s | ascii_upcase), len: (.s | length), re: (.s | test("^h.l")), b64: (.s | @base64), big: .big, keys: (.o | keys), joined: (.l | join("-"))}"#}),
        json!({"value": {"s": "héllo", "big": 9007199254740993u64, "o": {"b": 1, "a": 2}, "l": ["x", 1, null]}}),
        "value",
    )
    .await;
    assert_eq!(
        out,
        json!({"up": "HéLLO", "len": 5, "re": true, "b64": "aMOpbGxv", "big": 9007199254740993u64, "keys": ["a", "b"], "joined": "x-1-null"})
    );
    let out = output(
        "transform",
        json!({"filter": "[., now > 0]"}),
        json!({"value": null}),
        "value",
    )
    .await;
    assert_eq!(out, json!([null, true]));
}

#[tokio::test]
async fn transform_outputs_first_first_or_null_or_all() {
    let value = json!({"value": [1, 2, 3]});
    assert_eq!(
        output(
            "transform",
            json!({"filter": ".[]"}),
            value.clone(),
            "value"
        )
        .await,
        json!(1)
    );
    assert_eq!(
        output(
            "transform",
            json!({"filter": ".[]", "output": "all"}),
            value.clone(),
            "value"
        )
        .await,
        json!([1, 2, 3])
    );
    assert_eq!(
        output(
            "transform",
            json!({"filter": "empty", "output": "all"}),
            value.clone(),
            "value"
        )
        .await,
        json!([])
    );
    assert_eq!(
        output(
            "transform",
            json!({"filter": ".[] | select(. > 5)", "output": "first_or_null"}),
            value.clone(),
            "value"
        )
        .await,
        json!(null)
    );
    let err = failure("transform", json!({"filter": ".[] | select(. > 5)"}), value).await;
    assert_contains(&err, "node `n` failed");
    assert_contains(
        &err,
        "filter `.[] | select(. > 5)` gave no output (with `output: first_or_null` it gives null",
    );
}

#[tokio::test]
async fn transform_reads_variables_from_config_and_input() {
    let config =
        json!({"filter": "[$rate, $name, $vars.extra]", "vars": {"rate": 2, "name": "cfg"}});
    assert_eq!(
        output(
            "transform",
            config.clone(),
            json!({"value": null, "vars": {"name": "input", "extra": [1]}}),
            "value"
        )
        .await,
        json!([2, "input", [1]])
    );
    let err = failure(
        "transform",
        json!({"filter": "$missing + 1"}),
        json!({"value": 1}),
    )
    .await;
    assert_contains(
        &err,
        "filter `$missing + 1` reads `$missing`, which neither `vars` in the config nor the `vars` input sets",
    );
    let err = failure(
        "transform",
        json!({"filter": "$x", "vars": {"x": 1}}),
        json!({"value": 1, "vars": [1]}),
    )
    .await;
    assert_contains(
        &err,
        "input `vars`: expected an object of variables, got an array",
    );
    // A variable bound in the filter is not read from `vars`.
    assert_eq!(
        output(
            "transform",
            json!({"filter": ". as $x | reduce range(3) as $i (0; . + $x + $i)"}),
            json!({"value": 10}),
            "value"
        )
        .await,
        json!(33)
    );
}

#[tokio::test]
async fn transform_errors_at_run_time_name_the_filter_and_give_jaq_s_message() {
    let err = failure(
        "transform",
        json!({"filter": ".a.b"}),
        json!({"value": {"a": 5}}),
    )
    .await;
    assert_contains(&err, "filter `.a.b`: cannot index 5 with \"b\"");
    let err = failure(
        "transform",
        json!({"filter": "error(\"no customer\")"}),
        json!({"value": 1}),
    )
    .await;
    assert_contains(&err, "filter `error(\"no customer\")`: no customer");
    let err = failure(
        "transform",
        json!({"filter": ". + 1"}),
        json!({"value": "text"}),
    )
    .await;
    assert_contains(&err, "cannot calculate \"text\" + 1");
    // An object key that is not a string has no JSON form.
    let err = failure(
        "transform",
        json!({"filter": "{(1): 2}"}),
        json!({"value": 1}),
    )
    .await;
    assert_contains(&err, "output: the object key 1 is not a string");
}

#[test]
fn transform_configs_are_checked_when_they_load() {
    for (config, expected) in [
        (json!({}), "missing field `filter`"),
        (json!({"filter": 5}), "filter: 5 is not of type \"string\""),
        (
            json!({"filter": ".a |"}),
            "filter: expected term, found the end of the filter (line 1, column 5)",
        ),
        (
            json!({"filter": "[1,\n 2"}),
            "filter: expected closing bracket (line 2, column 3)",
        ),
        (
            json!({"filter": "map(frobnicate)"}),
            "filter: undefined filter `frobnicate/0` (line 1, column 5)",
        ),
        (
            json!({"filter": ".", "output": "last"}),
            r#"output: "last" is not one of "first", "first_or_null", "all""#,
        ),
        (
            json!({"filter": ".", "outputs": "all"}),
            "unknown field `outputs`; did you mean `output`?",
        ),
        (
            json!({"filter": ".", "vars": [1]}),
            "vars: [1] is not of type \"object\"",
        ),
        (
            json!({"filter": ".", "limits": {"timeout": "soon"}}),
            "limits.timeout: `soon` is not a duration",
        ),
        (
            json!({"filter": ".", "limits": {"max_step": 1}}),
            "unknown field `max_step`",
        ),
        (json!({"filter": ""}), "filter: "),
    ] {
        let errors = config_errors("transform", config.clone());
        assert_contains(&errors, expected);
    }
    // In a document the error carries the node's path.
    let err = load_error(
        "version: 1\nname: bad\nnodes:\n  - id: t\n    type: transform\n    config:\n      filter: '.items | mapp(.x)'\n",
    );
    assert_contains(
        &err,
        "nodes[0].config.filter: undefined filter `mapp/1` (line 1, column 10)",
    );
}

#[test]
fn the_sandbox_refuses_what_reads_the_host_or_has_effects() {
    for (filter, name) in [
        ("env.HOME", "env"),
        ("$ENV.PATH", "$ENV"),
        ("input", "input"),
        ("[inputs]", "inputs"),
        ("debug", "debug"),
        ("debug(\"x\")", "debug"),
        ("stderr", "stderr"),
        ("halt", "halt"),
        ("halt_error(1)", "halt_error"),
        ("0 | localtime", "localtime"),
        ("0 | strflocaltime(\"%H\")", "strflocaltime"),
        ("\"a\" | tobytes", "tobytes"),
        ("input_filename", "input_filename"),
        ("$__loc__", "$__loc__"),
    ] {
        let errors = config_errors("transform", json!({"filter": filter}));
        assert_contains(
            &errors,
            &format!("filter: `{name}` is not available in the sandbox"),
        );
    }
    for filter in [
        "include \"lib\"; .",
        "import \"lib\" as lib; .",
        "module {a: 1}; .",
    ] {
        let errors = config_errors("transform", json!({"filter": filter}));
        assert_contains(
            &errors,
            "filter: modules are not available in the sandbox (they read files) (line 1, column 1)",
        );
    }
}

#[tokio::test]
async fn runaway_filters_stop_at_their_limits() {
    let steps = json!({"max_steps": 100000});
    for filter in [
        "[repeat(1)]",
        "[range(1e12)]",
        "last(range(1e18))",
        "until(false; .)",
        "[limit(1e9; repeat(1))] | length",
    ] {
        let err = failure(
            "transform",
            json!({"filter": filter, "limits": steps}),
            json!({"value": 0}),
        )
        .await;
        assert_contains(
            &err,
            &format!(
                "filter `{filter}`: the filter took more than 100000 steps (limits.max_steps)"
            ),
        );
    }
    let err = failure(
        "transform",
        json!({"filter": "def f: 1 + f; f"}),
        json!({"value": 0}),
    )
    .await;
    assert_contains(&err, "the filter recursed too deeply");
    let err = failure(
        "transform",
        json!({"filter": "last(range(1e18))", "limits": {"timeout": "50ms", "max_steps": 100000000000u64}}),
        json!({"value": 0}),
    )
    .await;
    assert_contains(&err, "the filter ran longer than 50ms (limits.timeout)");
    let err = failure(
        "transform",
        json!({"filter": "repeat(1)", "output": "all", "limits": {"max_outputs": 10}}),
        json!({"value": 0}),
    )
    .await;
    assert_contains(
        &err,
        "filter `repeat(1)`: more than 10 outputs (limits.max_outputs)",
    );
}

#[tokio::test]
async fn what_a_filter_builds_is_bounded() {
    let limits = json!({"max_bytes": 1000});
    for (filter, expected) in [
        (
            "\"x\" * 100000000",
            "a string would be longer than 1000 bytes (limits.max_bytes)",
        ),
        (
            "reduce range(20) as $i (\"ab\"; . + .)",
            "a string would be longer than 1000 bytes",
        ),
        (
            "[range(1000)]",
            "a list would have more than 500 items (limits.max_bytes / 2)",
        ),
        (
            "reduce range(20) as $i ([1]; . + .)",
            "a list or object would have more than 500 entries",
        ),
        (
            "[range(400)] | tojson",
            "tojson: the value is larger than 1000 bytes as JSON",
        ),
        (
            "[range(400)] | \"\\(.)\"",
            "a value to turn into text is larger than 1000 bytes",
        ),
        (
            "reduce range(30) as $i (0; [., .]) | tostring",
            "a value to turn into text is larger than 1000 bytes",
        ),
        (
            "[range(400) | tostring]",
            "output: the value is larger than 1000 bytes as JSON (limits.max_bytes)",
        ),
    ] {
        let err = failure(
            "transform",
            json!({"filter": filter, "limits": limits}),
            json!({"value": 0}),
        )
        .await;
        assert_contains(&err, expected);
    }
    for filter in [
        "reduce range(20000) as $i (0; [.])",
        "reduce range(20000) as $i (0; {a: .})",
        "reduce range(20000) as $i ({}; .a = .)",
        "reduce range(20000) as $i ([0]; key_values)",
    ] {
        let err = failure("transform", json!({"filter": filter}), json!({"value": 0})).await;
        assert_contains(&err, "a value would nest more than 10000 levels deep");
    }
    let err = failure(
        "transform",
        json!({"filter": "reduce range(200) as $i (0; [.])"}),
        json!({"value": 0}),
    )
    .await;
    assert_contains(&err, "output: the value nests more than 128 levels deep");
    // Within the limits the same shapes are fine.
    assert_eq!(
        output(
            "transform",
            json!({"filter": "reduce range(3) as $i (0; [., .]) | tojson", "limits": limits}),
            json!({"value": 0}),
            "value"
        )
        .await,
        json!("[[[0,0],[0,0]],[[0,0],[0,0]]]")
    );
}

// ------------------------------------------------------------------ filter

#[tokio::test]
async fn filter_keeps_what_satisfies_the_condition() {
    let people = json!([
        {"name": "Ada", "age": 36},
        {"name": "Bob"},
        {"name": "Cy", "age": 17},
        {"name": "Dé", "age": 18, "tags": ["vip"]},
        "not an object?"
    ]);
    let out = run_node(
        "filter",
        json!({"condition": "(.age? // 0) >= $min or (.tags? // [] | index(\"vip\") != null)", "vars": {"min": 18}}),
        json!({"items": people}),
    )
    .await
    .unwrap();
    assert_eq!(
        out["kept"],
        json!([{"name": "Ada", "age": 36}, {"name": "Dé", "age": 18, "tags": ["vip"]}])
    );
    assert_eq!(
        out["discarded"],
        json!([{"name": "Bob"}, {"name": "Cy", "age": 17}, "not an object?"])
    );
    // No output and `null` discard; an empty list gives empty lists.
    let out = run_node(
        "filter",
        json!({"condition": "if .k then .k else empty end"}),
        json!({"items": [{"k": true}, {"k": null}, {}]}),
    )
    .await
    .unwrap();
    assert_eq!(out["kept"], json!([{"k": true}]));
    assert_eq!(out["discarded"], json!([{"k": null}, {}]));
    let out = run_node("filter", json!({"condition": ".x"}), json!({"items": []}))
        .await
        .unwrap();
    assert_eq!(
        (out["kept"].clone(), out["discarded"].clone()),
        (json!([]), json!([]))
    );
}

#[tokio::test]
async fn filter_failures_name_the_input_or_the_item() {
    let err = failure(
        "filter",
        json!({"condition": ".x"}),
        json!({"items": {"x": 1}}),
    )
    .await;
    assert_contains(&err, "input `items`: expected a list, got an object");
    let err = failure(
        "filter",
        json!({"condition": ".x | test(\"a\")"}),
        json!({"items": [{"x": "a"}, {"x": 3}]}),
    )
    .await;
    assert_contains(
        &err,
        "condition `.x | test(\"a\")` on item 1: cannot use 3 as string",
    );
    let errors = config_errors("filter", json!({"condition": ".x >"}));
    assert_contains(
        &errors,
        "condition: expected term, found the end of the filter",
    );
    let errors = config_errors("filter", json!({"filter": ".x"}));
    assert_contains(&errors, "missing field `condition`");
    // The steps budget is shared by all items.
    let err = failure(
        "filter",
        json!({"condition": "[range(100)] | length > 0", "limits": {"max_steps": 1000}}),
        json!({"items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]}),
    )
    .await;
    assert_contains(&err, "the filter took more than 1000 steps");
}

// -------------------------------------------------------------------- sort

#[tokio::test]
async fn sort_orders_by_fields_stably_with_nulls_placed() {
    let items = json!([
        {"id": 1, "price": 10, "name": "b"},
        {"id": 2, "price": null, "name": "a"},
        {"id": 3, "price": 2, "name": "é"},
        {"id": 4, "name": "c"},
        {"id": 5, "price": 10, "name": "a"},
        {"id": 6, "price": "9", "name": "Z"},
        {"id": 7, "price": 2.0, "name": "d"}
    ]);
    let ids = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].clone())
            .collect::<Vec<_>>()
    };
    let out = output(
        "sort",
        json!({"by": [{"field": "price"}]}),
        json!({"items": items}),
        "items",
    )
    .await;
    // Numbers before strings, 2 = 2.0 keeps input order, nulls and missing last.
    assert_eq!(
        ids(&out),
        [
            json!(3),
            json!(7),
            json!(1),
            json!(5),
            json!(6),
            json!(2),
            json!(4)
        ]
    );
    let out = output(
        "sort",
        json!({"by": [{"field": "price", "order": "desc", "nulls": "first"}, {"field": "name"}]}),
        json!({"items": items}),
        "items",
    )
    .await;
    assert_eq!(
        ids(&out),
        [
            json!(2),
            json!(4),
            json!(6),
            json!(5),
            json!(1),
            json!(7),
            json!(3)
        ]
    );
    let out = output(
        "sort",
        json!({"by": [{"field": "name"}]}),
        json!({"items": items}),
        "items",
    )
    .await;
    assert_eq!(
        ids(&out),
        [
            json!(6),
            json!(2),
            json!(5),
            json!(1),
            json!(4),
            json!(7),
            json!(3)
        ]
    );
    // Whole items, mixed kinds.
    let out = output(
        "sort",
        json!({}),
        json!({"items": [[1], "b", 3, null, {"a": 1}, true, "a", 1.5]}),
        "items",
    )
    .await;
    assert_eq!(out, json!([null, true, 1.5, 3, "a", "b", [1], {"a": 1}]));
    assert_eq!(
        output("sort", json!({}), json!({"items": []}), "items").await,
        json!([])
    );
    let err = failure("sort", json!({}), json!({"items": "abc"})).await;
    assert_contains(&err, "input `items`: expected a list, got a string");
}

#[test]
fn sort_configs_are_checked() {
    let errors = config_errors("sort", json!({"by": [{"field": "a..b"}]}));
    assert_contains(
        &errors,
        "by[0].field: `a..b` is not a field path: an empty name at character 3",
    );
    let errors = config_errors("sort", json!({"by": [{"field": "a", "order": "up"}]}));
    assert_contains(&errors, r#"by[0].order: "up" is not one of "asc", "desc""#);
    let errors = config_errors("sort", json!({"by": ["a"]}));
    assert_contains(&errors, "by[0]");
    let errors = config_errors("sort", json!({"by": [{"order": "asc"}]}));
    assert_contains(&errors, "by[0]: missing field `field`");
}

// ------------------------------------------------------------------- limit

#[tokio::test]
async fn limit_slices_from_either_end() {
    let items = json!({"items": [1, 2, 3, 4, 5, 6]});
    for (config, expected) in [
        (json!({"count": 2}), json!([1, 2])),
        (json!({"count": 2, "offset": 3}), json!([4, 5])),
        (json!({"count": 10, "offset": 4}), json!([5, 6])),
        (json!({"count": 2, "offset": 9}), json!([])),
        (json!({"count": 2, "from": "end"}), json!([5, 6])),
        (
            json!({"count": 2, "offset": 1, "from": "end"}),
            json!([4, 5]),
        ),
        (json!({"count": 10, "offset": 5, "from": "end"}), json!([1])),
        (json!({"count": 0}), json!([])),
    ] {
        assert_eq!(
            output("limit", config.clone(), items.clone(), "items").await,
            expected,
            "{config}"
        );
    }
    assert_eq!(
        output("limit", json!({"count": 3}), json!({"items": []}), "items").await,
        json!([])
    );
    assert_contains(&config_errors("limit", json!({})), "missing field `count`");
    assert_contains(
        &config_errors("limit", json!({"count": -1})),
        "count: -1 is less than the minimum of 0",
    );
    assert_contains(
        &config_errors("limit", json!({"count": 1, "from": "middle"})),
        r#"from: "middle" is not one of "start", "end""#,
    );
}

// ------------------------------------------------------------- deduplicate

#[tokio::test]
async fn deduplicate_compares_items_or_fields() {
    let items = json!([
        {"a": 1, "b": {"x": [1, 2]}},
        {"b": {"x": [1.0, 2]}, "a": 1},
        {"a": 2},
        {"a": 1, "b": {"x": [2, 1]}}
    ]);
    let out = run_node("deduplicate", json!({}), json!({"items": items}))
        .await
        .unwrap();
    assert_eq!(
        out["items"],
        json!([{"a": 1, "b": {"x": [1, 2]}}, {"a": 2}, {"a": 1, "b": {"x": [2, 1]}}])
    );
    assert_eq!(out["duplicates"], json!([{"b": {"x": [1.0, 2]}, "a": 1}]));
    let people = json!([
        {"email": "a@x", "n": 1},
        {"email": "b@x", "n": 2},
        {"email": "a@x", "n": 3},
        {"n": 4},
        {"email": null, "n": 5}
    ]);
    let out = run_node(
        "deduplicate",
        json!({"by": ["email"], "keep": "last"}),
        json!({"items": people}),
    )
    .await
    .unwrap();
    assert_eq!(
        out["items"],
        json!([{"email": "b@x", "n": 2}, {"email": "a@x", "n": 3}, {"email": null, "n": 5}])
    );
    assert_eq!(
        out["duplicates"],
        json!([{"email": "a@x", "n": 1}, {"n": 4}])
    );
    let out = run_node(
        "deduplicate",
        json!({"by": ["email", "n"]}),
        json!({"items": people}),
    )
    .await
    .unwrap();
    assert_eq!(out["duplicates"], json!([]));
    let out = run_node("deduplicate", json!({}), json!({"items": []}))
        .await
        .unwrap();
    assert_eq!(out["items"], json!([]));
    assert_contains(
        &config_errors("deduplicate", json!({"by": ["a["]})),
        "by[0]: `a[` is not a field path",
    );
    assert_contains(
        &config_errors("deduplicate", json!({"keep": "any"})),
        r#"keep: "any" is not one of "first", "last""#,
    );
}

// --------------------------------------------------------------- aggregate

fn sales() -> Value {
    json!([
        {"customer": {"id": 1, "name": "Ada"}, "total": 10, "sku": "a", "when": "2024-01-02"},
        {"customer": {"id": 2, "name": "Bob"}, "total": 2.5, "sku": "b", "when": "2024-01-01"},
        {"customer": {"id": 1, "name": "Ada"}, "total": 5, "sku": "a", "when": "2024-01-03"},
        {"customer": {"id": 1, "name": "Ada"}, "sku": "c", "when": null},
        {"customer": {"id": 3}, "total": null}
    ])
}

#[tokio::test]
async fn aggregate_summarizes_groups_in_first_seen_order() {
    let config = json!({
        "group_by": ["customer.id"],
        "aggregations": {
            "orders": {"op": "count"},
            "with_total": {"op": "count", "field": "total"},
            "revenue": {"op": "sum", "field": "total"},
            "average": {"op": "avg", "field": "total"},
            "smallest": {"op": "min", "field": "total"},
            "largest": {"op": "max", "field": "total"},
            "first_day": {"op": "first", "field": "when"},
            "last_day": {"op": "last", "field": "when"},
            "skus": {"op": "list", "field": "sku"},
            "products": {"op": "count_distinct", "field": "sku"}
        }
    });
    let out = output("aggregate", config, json!({"items": sales()}), "value").await;
    assert_eq!(
        out,
        json!([
            {"customer": {"id": 1}, "orders": 3, "with_total": 2, "revenue": 15, "average": 7.5, "smallest": 5, "largest": 10,
             "first_day": "2024-01-02", "last_day": "2024-01-03", "skus": ["a", "a", "c"], "products": 2},
            {"customer": {"id": 2}, "orders": 1, "with_total": 1, "revenue": 2.5, "average": 2.5, "smallest": 2.5, "largest": 2.5,
             "first_day": "2024-01-01", "last_day": "2024-01-01", "skus": ["b"], "products": 1},
            {"customer": {"id": 3}, "orders": 1, "with_total": 0, "revenue": 0, "average": null, "smallest": null, "largest": null,
             "first_day": null, "last_day": null, "skus": [], "products": 0}
        ])
    );
    // Two group fields; missing values group as null.
    let out = output(
        "aggregate",
        json!({"group_by": ["customer.name", "sku"], "aggregations": {"n": {"op": "count"}}}),
        json!({"items": sales()}),
        "value",
    )
    .await;
    assert_eq!(
        out,
        json!([
            {"customer": {"name": "Ada"}, "sku": "a", "n": 2},
            {"customer": {"name": "Bob"}, "sku": "b", "n": 1},
            {"customer": {"name": "Ada"}, "sku": "c", "n": 1},
            {"customer": {"name": null}, "sku": null, "n": 1}
        ])
    );
}

#[tokio::test]
async fn aggregate_without_groups_gives_one_object() {
    let config = json!({"aggregations": {"n": {"op": "count"}, "sum": {"op": "sum", "field": "total"}, "avg": {"op": "avg", "field": "total"}, "max": {"op": "max", "field": "sku"}}});
    assert_eq!(
        output(
            "aggregate",
            config.clone(),
            json!({"items": sales()}),
            "value"
        )
        .await,
        json!({"n": 5, "sum": 17.5, "avg": 5.833333333333333, "max": "c"})
    );
    assert_eq!(
        output("aggregate", config, json!({"items": []}), "value").await,
        json!({"n": 0, "sum": 0, "avg": null, "max": null})
    );
    assert_eq!(
        output(
            "aggregate",
            json!({"group_by": ["a"], "aggregations": {"n": {"op": "count"}}}),
            json!({"items": []}),
            "value"
        )
        .await,
        json!([])
    );
    // Integer sums stay exact beyond f64's integers.
    assert_eq!(
        output(
            "aggregate",
            json!({"aggregations": {"s": {"op": "sum", "field": "v"}}}),
            json!({"items": [{"v": 9007199254740993u64}, {"v": 2}]}),
            "value"
        )
        .await,
        json!({"s": 9007199254740995u64})
    );
}

#[tokio::test]
async fn aggregate_failures_name_the_item_and_the_field() {
    let err = failure(
        "aggregate",
        json!({"aggregations": {"revenue": {"op": "sum", "field": "total"}}}),
        json!({"items": [{"total": 1}, {"total": "12.5"}]}),
    )
    .await;
    assert_contains(
        &err,
        "aggregations.revenue: item 1 has a string at `total`; `sum` needs numbers",
    );
    for (config, expected) in [
        (
            json!({"aggregations": {"s": {"op": "sum"}}}),
            "aggregations.s: `sum` needs a `field`",
        ),
        (
            json!({"aggregations": {"s": {"op": "median", "field": "x"}}}),
            r#"aggregations.s.op: "median" is not one of"#,
        ),
        (
            json!({"group_by": ["total"], "aggregations": {"total": {"op": "count"}}}),
            "the aggregation `total` would overwrite the group field `total`",
        ),
        (
            json!({"group_by": ["a[-1]"], "aggregations": {}}),
            "group_by: `a[-1]` has a negative index",
        ),
        (json!({"group_by": ["a"]}), "missing field `aggregations`"),
        (
            json!({"aggregations": {"s": {"op": "count", "fields": "x"}}}),
            "unknown field `fields`",
        ),
    ] {
        assert_contains(&config_errors("aggregate", config), expected);
    }
}

// --------------------------------------------------------------- split_out

#[tokio::test]
async fn split_out_turns_a_list_into_items() {
    let order = json!({"id": 7, "customer": {"name": "Ada", "vip": true}, "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "id": 99}], "note": "x"});
    assert_eq!(
        output(
            "split_out",
            json!({"field": "lines", "keep": ["id", "customer.name"]}),
            json!({"value": order}),
            "items"
        )
        .await,
        json!([
            {"sku": "a", "qty": 1, "id": 7, "customer": {"name": "Ada"}},
            {"sku": "b", "id": 99, "customer": {"name": "Ada"}}
        ])
    );
    assert_eq!(
        output(
            "split_out",
            json!({"field": "lines", "keep_all": true, "destination": "line"}),
            json!({"value": order}),
            "items"
        )
        .await,
        json!([
            {"line": {"sku": "a", "qty": 1}, "id": 7, "customer": {"name": "Ada", "vip": true}, "note": "x"},
            {"line": {"sku": "b", "id": 99}, "id": 7, "customer": {"name": "Ada", "vip": true}, "note": "x"}
        ])
    );
    // Scalars go under the field's last name; a list of parents is split in order.
    assert_eq!(
        output("split_out", json!({"field": "meta.tags", "keep": ["id"]}), json!({"value": [{"id": 1, "meta": {"tags": ["x", "y"]}}, {"id": 2}, {"id": 3, "meta": {"tags": []}}, {"id": 4, "meta": {"tags": ["z"]}}]}), "items").await,
        json!([{"tags": "x", "id": 1}, {"tags": "y", "id": 1}, {"tags": "z", "id": 4}])
    );
    let err = failure(
        "split_out",
        json!({"field": "lines"}),
        json!({"value": {"lines": "abc"}}),
    )
    .await;
    assert_contains(&err, "input `value`: `lines` is a string, not a list");
    let err = failure(
        "split_out",
        json!({"field": "lines"}),
        json!({"value": [{"lines": []}, 5]}),
    )
    .await;
    assert_contains(
        &err,
        "input `value`[1]: expected an object holding `lines`, got a number",
    );
    assert_contains(
        &config_errors("split_out", json!({})),
        "missing field `field`",
    );
    assert_contains(
        &config_errors("split_out", json!({"field": "a", "keep": ["b[-1]"]})),
        "keep: `b[-1]` has a negative index",
    );
}

// -------------------------------------------------------------------- json

#[tokio::test]
async fn json_parse_reads_one_value_and_says_where_it_breaks() {
    assert_eq!(
        output(
            "json_parse",
            json!({}),
            json!({"text": "\u{feff} {\"a\": [1, 2.5, \"é\"], \"b\": null}\n"}),
            "value"
        )
        .await,
        json!({"a": [1, 2.5, "é"], "b": null})
    );
    let err = failure(
        "json_parse",
        json!({}),
        json!({"text": "{\n  \"a\": 1\n  \"b\": 2\n}"}),
    )
    .await;
    assert_contains(
        &err,
        "input `text`: not valid JSON: expected `,` or `}` at line 3 column 3",
    );
    let err = failure("json_parse", json!({}), json!({"text": "[1] [2]"})).await;
    assert_contains(&err, "trailing characters at line 1 column 5");
    let err = failure("json_parse", json!({}), json!({"text": "  "})).await;
    assert_contains(&err, "input `text`: the text is empty, not JSON");
    let err = failure(
        "json_parse",
        json!({"max_bytes": 4}),
        json!({"text": "[1, 2]"}),
    )
    .await;
    assert_contains(
        &err,
        "input `text`: 6 bytes is more than 4 (config.max_bytes)",
    );
    let err = failure(
        "json_parse",
        json!({}),
        json!({"text": format!("{}{}", "[".repeat(200), "]".repeat(200))}),
    )
    .await;
    assert_contains(&err, "recursion limit exceeded");
    assert_contains(
        &config_errors("json_parse", json!({"max_bytes": "big"})),
        "max_bytes: \"big\" is not of type \"integer\"",
    );
}

#[tokio::test]
async fn json_stringify_writes_compact_pretty_or_sorted() {
    let value = json!({"value": {"b": [1, {"d": 1, "c": "é"}], "a": null}});
    assert_eq!(
        output("json_stringify", json!({}), value.clone(), "text").await,
        json!(r#"{"b":[1,{"d":1,"c":"é"}],"a":null}"#)
    );
    assert_eq!(
        output(
            "json_stringify",
            json!({"sort_keys": true}),
            value.clone(),
            "text"
        )
        .await,
        json!(r#"{"a":null,"b":[1,{"c":"é","d":1}]}"#)
    );
    assert_eq!(
        output(
            "json_stringify",
            json!({"pretty": true, "sort_keys": true}),
            json!({"value": {"b": 1, "a": [true]}}),
            "text"
        )
        .await,
        json!("{\n  \"a\": [\n    true\n  ],\n  \"b\": 1\n}")
    );
    // What json_stringify writes, json_parse reads back.
    let text = output(
        "json_stringify",
        json!({"pretty": true}),
        value.clone(),
        "text",
    )
    .await;
    assert_eq!(
        output("json_parse", json!({}), json!({"text": text}), "value").await,
        value["value"]
    );
    assert_contains(
        &config_errors("json_stringify", json!({"indent": 2})),
        "unknown field `indent`",
    );
}

// --------------------------------------------------------------------- csv

#[tokio::test]
async fn csv_parse_reads_headers_quotes_and_types() {
    let text = "id,name,score,active,note\n1,\"Doe, Jane\",3.5,true,\n2,\"say \"\"hi\"\"\",-12,FALSE,\"two\nlines\"\n007,Zoë,1e5,yes,x\n";
    let out = output("csv_parse", json!({}), json!({"text": text}), "items").await;
    assert_eq!(
        out,
        json!([
            {"id": "1", "name": "Doe, Jane", "score": "3.5", "active": "true", "note": ""},
            {"id": "2", "name": "say \"hi\"", "score": "-12", "active": "FALSE", "note": "two\nlines"},
            {"id": "007", "name": "Zoë", "score": "1e5", "active": "yes", "note": "x"}
        ])
    );
    let out = output(
        "csv_parse",
        json!({"infer_types": true, "empty_as_null": true}),
        json!({"text": text}),
        "items",
    )
    .await;
    assert_eq!(
        out,
        json!([
            {"id": 1, "name": "Doe, Jane", "score": 3.5, "active": true, "note": null},
            {"id": 2, "name": "say \"hi\"", "score": -12, "active": false, "note": "two\nlines"},
            {"id": "007", "name": "Zoë", "score": "1e5", "active": "yes", "note": "x"}
        ])
    );
    // Other delimiters, trimming, no header, a byte order mark.
    let out = output(
        "csv_parse",
        json!({"delimiter": "\t", "trim": "all", "header": false, "infer_types": true}),
        json!({"text": "\u{feff} a \t 1\nb\t 2.0 \n"}),
        "items",
    )
    .await;
    assert_eq!(out, json!([["a", 1], ["b", 2.0]]));
    let out = output(
        "csv_parse",
        json!({"delimiter": ";", "quote": "'"}),
        json!({"text": "a;b\n'x;y';z\n"}),
        "items",
    )
    .await;
    assert_eq!(out, json!([{"a": "x;y", "b": "z"}]));
    assert_eq!(
        output("csv_parse", json!({}), json!({"text": ""}), "items").await,
        json!([])
    );
    assert_eq!(
        output("csv_parse", json!({}), json!({"text": "a,b\n"}), "items").await,
        json!([])
    );
}

#[tokio::test]
async fn csv_parse_refuses_ragged_rows_unless_flexible() {
    let text = "a,b,c\n1,2,3\n4,5\n6,7,8,9\n";
    let err = failure("csv_parse", json!({}), json!({"text": text})).await;
    assert_contains(
        &err,
        "input `text`: line 3 has 2 field(s) where the header has 3 (set `flexible: true` to accept ragged rows)",
    );
    let out = output(
        "csv_parse",
        json!({"flexible": true}),
        json!({"text": text}),
        "items",
    )
    .await;
    assert_eq!(
        out,
        json!([
            {"a": "1", "b": "2", "c": "3"},
            {"a": "4", "b": "5", "c": null},
            {"a": "6", "b": "7", "c": "8", "column_4": "9"}
        ])
    );
    let err = failure(
        "csv_parse",
        json!({"header": false}),
        json!({"text": "1,2\n3\n"}),
    )
    .await;
    assert_contains(&err, "line 2 has 1 field(s) where the first row has 2");
    let err = failure(
        "csv_parse",
        json!({}),
        json!({"text": "id,name,id\n1,2,3\n"}),
    )
    .await;
    assert_contains(
        &err,
        "input `text`: the header names `id` twice (columns 1 and 3)",
    );
    let out = output(
        "csv_parse",
        json!({}),
        json!({"text": "a,,c\n1,2,3\n"}),
        "items",
    )
    .await;
    assert_eq!(out, json!([{"a": "1", "column_2": "2", "c": "3"}]));
    for (config, expected) in [
        (
            json!({"delimiter": ";;"}),
            "delimiter: `;;` is not one ASCII character",
        ),
        (
            json!({"delimiter": "\n"}),
            "delimiter: a line break cannot separate or quote fields",
        ),
        (
            json!({"quote": "é"}),
            "quote: `é` is not one ASCII character",
        ),
        (
            json!({"trim": "both"}),
            r#"trim: "both" is not one of "none", "headers", "fields", "all""#,
        ),
        (
            json!({"flexibel": true}),
            "unknown field `flexibel`; did you mean `flexible`?",
        ),
    ] {
        assert_contains(&config_errors("csv_parse", config), expected);
    }
}

#[tokio::test]
async fn csv_write_writes_columns_in_order_and_nested_values_as_json() {
    let items = json!([
        {"id": 1, "name": "Doe, Jane", "tags": ["a", "b"]},
        {"name": "Zoë", "id": 2, "extra": {"k": null}, "ok": true},
        {"id": 3, "name": null}
    ]);
    assert_eq!(
        output("csv_write", json!({}), json!({"items": items}), "text").await,
        json!(
            "id,name,tags,extra,ok\n1,\"Doe, Jane\",\"[\"\"a\"\",\"\"b\"\"]\",,\n2,Zoë,,\"{\"\"k\"\":null}\",true\n3,,,,\n"
        )
    );
    assert_eq!(
        output(
            "csv_write",
            json!({"columns": ["name", "id", "missing"], "delimiter": ";", "line_ending": "crlf"}),
            json!({"items": items}),
            "text"
        )
        .await,
        json!("name;id;missing\r\nDoe, Jane;1;\r\nZoë;2;\r\n;3;\r\n")
    );
    assert_eq!(
        output(
            "csv_write",
            json!({"header": false}),
            json!({"items": [["a", 1], ["b\"c", null, 2.5]]}),
            "text"
        )
        .await,
        json!("a,1\n\"b\"\"c\",,2.5\n")
    );
    assert_eq!(
        output("csv_write", json!({}), json!({"items": []}), "text").await,
        json!("")
    );
    let err = failure("csv_write", json!({}), json!({"items": [{"a": 1}, "x"]})).await;
    assert_contains(
        &err,
        "input `items`: item 1 is a string; rows are objects (or lists)",
    );
    let err = failure("csv_write", json!({}), json!({"items": {"a": 1}})).await;
    assert_contains(&err, "input `items`: expected a list, got an object");
    assert_contains(
        &config_errors("csv_write", json!({"columns": "id"})),
        "columns: \"id\" is not of type",
    );
}

#[tokio::test]
async fn csv_round_trips_through_parse_and_write() {
    let text = "id,name,note\n1,\"Doe, Jane\",\"line one\nline two\"\n2,\"quote \"\"q\"\"\",\n3,Zoë 名前,plain\n";
    let items = output("csv_parse", json!({}), json!({"text": text}), "items").await;
    let back = output(
        "csv_write",
        json!({}),
        json!({"items": items.clone()}),
        "text",
    )
    .await;
    assert_eq!(back, json!(text));
    let typed = output(
        "csv_parse",
        json!({"infer_types": true}),
        json!({"text": "a,b,c\n1,2.5,true\n-3,0.5,false\n"}),
        "items",
    )
    .await;
    let back = output(
        "csv_write",
        json!({}),
        json!({"items": typed.clone()}),
        "text",
    )
    .await;
    assert_eq!(back, json!("a,b,c\n1,2.5,true\n-3,0.5,false\n"));
    assert_eq!(
        output(
            "csv_parse",
            json!({"infer_types": true}),
            json!({"text": back}),
            "items"
        )
        .await,
        typed
    );
}

// ------------------------------------------------------------------- dates

#[tokio::test]
async fn datetime_parse_reads_every_format() {
    for (config, value, expected, ms) in [
        (
            json!({}),
            json!("2024-03-10T01:30:00-05:00"),
            "2024-03-10T01:30:00-05:00",
            1710052200000i64,
        ),
        (
            json!({}),
            json!("2024-03-10"),
            "2024-03-10T00:00:00Z",
            1710028800000,
        ),
        (
            json!({"time_zone": "America/New_York"}),
            json!("2024-03-10 12:00"),
            "2024-03-10T12:00:00-04:00",
            1710086400000,
        ),
        (
            json!({}),
            json!(1710052200),
            "2024-03-10T06:30:00Z",
            1710052200000,
        ),
        (
            json!({"format": "rfc2822"}),
            json!("Sun, 10 Mar 2024 03:30:00 -0400"),
            "2024-03-10T03:30:00-04:00",
            1710055800000,
        ),
        (
            json!({"format": "unix_seconds", "time_zone": "Asia/Tokyo"}),
            json!("1710052200.5"),
            "2024-03-10T15:30:00.5+09:00",
            1710052200500,
        ),
        (
            json!({"format": "unix_milliseconds"}),
            json!(1710052200123i64),
            "2024-03-10T06:30:00.123Z",
            1710052200123,
        ),
        (
            json!({"format": {"strftime": "%d/%m/%Y %H:%M"}, "time_zone": "Europe/Paris"}),
            json!("31/03/2024 02:30"),
            "2024-03-31T03:30:00+02:00",
            1711848600000,
        ),
        (
            json!({"format": {"strftime": "%d/%m/%Y"}}),
            json!("29/02/2024"),
            "2024-02-29T00:00:00Z",
            1709164800000,
        ),
        (
            json!({"format": {"strftime": "%Y-%m-%d %H:%M %z"}}),
            json!("2024-01-01 10:00 +0530"),
            "2024-01-01T10:00:00+05:30",
            1704083400000,
        ),
    ] {
        let out = run_node("datetime_parse", config.clone(), json!({"value": value}))
            .await
            .unwrap();
        assert_eq!(out["value"], json!(expected), "{config} {value}");
        assert_eq!(out["unix_milliseconds"], json!(ms), "{config} {value}");
    }
    let err = failure(
        "datetime_parse",
        json!({}),
        json!({"value": "next tuesday"}),
    )
    .await;
    assert_contains(&err, "input `value`: `next tuesday` is not a date-time");
    let err = failure(
        "datetime_parse",
        json!({"format": {"strftime": "%d/%m/%Y"}}),
        json!({"value": "2024-01-01"}),
    )
    .await;
    assert_contains(
        &err,
        "input `value`: `2024-01-01` does not match `%d/%m/%Y`",
    );
    let err = failure(
        "datetime_parse",
        json!({"format": "unix_seconds"}),
        json!({"value": "soon"}),
    )
    .await;
    assert_contains(&err, "expected unix seconds as a number, got `soon`");
    let err = failure(
        "datetime_parse",
        json!({"format": "rfc3339"}),
        json!({"value": [1]}),
    )
    .await;
    assert_contains(&err, "input `value`: expected text, got an array");
}

#[tokio::test]
async fn datetime_format_writes_in_a_zone() {
    let value = json!({"value": "2024-07-14T19:14:00Z"});
    for (config, expected) in [
        (
            json!({"format": {"strftime": "%A %-d %B %Y at %H:%M %Z"}, "time_zone": "America/New_York"}),
            json!("Sunday 14 July 2024 at 15:14 EDT"),
        ),
        (
            json!({"format": "rfc3339", "time_zone": "Asia/Kolkata"}),
            json!("2024-07-15T00:44:00+05:30"),
        ),
        (
            json!({"format": "rfc2822", "time_zone": "Europe/Paris"}),
            json!("Sun, 14 Jul 2024 21:14:00 +0200"),
        ),
        (json!({"format": "unix_seconds"}), json!(1720984440)),
        (
            json!({"format": "unix_milliseconds"}),
            json!(1720984440000i64),
        ),
        (
            json!({"format": {"strftime": "%Y-%m-%d %Q"}, "time_zone": "Europe/Paris"}),
            json!("2024-07-14 Europe/Paris"),
        ),
    ] {
        assert_eq!(
            output("datetime_format", config.clone(), value.clone(), "value").await,
            expected,
            "{config}"
        );
    }
    let err = failure(
        "datetime_format",
        json!({"format": "rfc3339"}),
        json!({"value": 1720984440}),
    )
    .await;
    assert_contains(
        &err,
        "input `value`: a number is not a date-time here; read unix times with `datetime_parse`",
    );
}

#[tokio::test]
async fn datetime_add_is_calendar_aware_and_dst_correct() {
    let ny = "America/New_York";
    for (value, config, expected) in [
        (
            "2024-03-09T12:00:00-05:00",
            json!({"span": "1 day", "time_zone": ny}),
            "2024-03-10T12:00:00-04:00",
        ),
        (
            "2024-03-09T12:00:00-05:00",
            json!({"span": "24h", "time_zone": ny}),
            "2024-03-10T13:00:00-04:00",
        ),
        (
            "2024-03-09T12:00:00-05:00",
            json!({"span": "24h"}),
            "2024-03-10T12:00:00-05:00",
        ),
        (
            "2024-01-31T09:00:00Z",
            json!({"span": "1 month"}),
            "2024-02-29T09:00:00Z",
        ),
        (
            "2024-01-31T09:00:00Z",
            json!({"span": "1 month 2 days"}),
            "2024-03-02T09:00:00Z",
        ),
        (
            "2024-03-31T10:00:00+02:00",
            json!({"span": "P1M", "subtract": true, "time_zone": "Europe/Paris"}),
            "2024-02-29T10:00:00+01:00",
        ),
        (
            "2024-11-03T12:00:00-05:00",
            json!({"span": "-1 day", "time_zone": ny}),
            "2024-11-02T12:00:00-04:00",
        ),
        (
            "2024-01-01T00:00:00Z",
            json!({"span": "90 minutes ago"}),
            "2023-12-31T22:30:00Z",
        ),
    ] {
        assert_eq!(
            output(
                "datetime_add",
                config.clone(),
                json!({"value": value}),
                "value"
            )
            .await,
            json!(expected),
            "{value} {config}"
        );
    }
    let err = failure(
        "datetime_add",
        json!({"span": "1 day"}),
        json!({"value": "tomorrow"}),
    )
    .await;
    assert_contains(&err, "input `value`: `tomorrow` is not a date-time");
    let err = failure(
        "datetime_add",
        json!({"span": "9000 years"}),
        json!({"value": "2024-01-01T00:00:00Z"}),
    )
    .await;
    assert_contains(&err, "2024-01-01T00:00:00Z + `9000 years`: ");
}

#[tokio::test]
async fn datetime_diff_counts_in_units() {
    for (start, end, config, expected) in [
        (
            "2024-03-09T12:00:00-05:00",
            "2024-03-10T12:00:00-04:00",
            json!({"unit": "days", "time_zone": "America/New_York"}),
            json!(1.0),
        ),
        (
            "2024-03-09T12:00:00-05:00",
            "2024-03-10T12:00:00-04:00",
            json!({"unit": "hours"}),
            json!(23.0),
        ),
        (
            "2024-01-31T00:00:00Z",
            "2024-02-29T00:00:00Z",
            json!({"unit": "months"}),
            json!(1.0),
        ),
        (
            "2024-01-31T00:00:00Z",
            "2024-02-28T00:00:00Z",
            json!({"unit": "months"}),
            json!(28.0 / 29.0),
        ),
        (
            "2024-01-31T00:00:00Z",
            "2024-02-28T00:00:00Z",
            json!({"unit": "months", "whole": true}),
            json!(0),
        ),
        (
            "2024-01-15T00:00:00Z",
            "2024-03-15T00:00:00Z",
            json!({"unit": "months"}),
            json!(2.0),
        ),
        (
            "2024-01-01T00:00:00Z",
            "2024-01-02T12:00:00Z",
            json!({"unit": "days"}),
            json!(1.5),
        ),
        (
            "2024-01-02T12:00:00Z",
            "2024-01-01T00:00:00Z",
            json!({"unit": "days", "whole": true}),
            json!(-1),
        ),
        (
            "2000-02-29",
            "2024-02-28",
            json!({"unit": "years", "whole": true}),
            json!(23),
        ),
        (
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:01.5Z",
            json!({"unit": "milliseconds"}),
            json!(1500.0),
        ),
    ] {
        assert_eq!(
            output(
                "datetime_diff",
                config.clone(),
                json!({"start": start, "end": end}),
                "value"
            )
            .await,
            expected,
            "{start} {end} {config}"
        );
    }
    let err = failure(
        "datetime_diff",
        json!({"unit": "days"}),
        json!({"start": "2024-01-01", "end": null}),
    )
    .await;
    assert_contains(&err, "input `end`: expected a date-time as text, got null");
}

#[tokio::test]
async fn datetime_start_of_rounds_down_in_a_zone() {
    let value = "2024-03-14T15:47:12.5-04:00";
    for (config, expected) in [
        (
            json!({"unit": "day", "time_zone": "America/New_York"}),
            "2024-03-14T00:00:00-04:00",
        ),
        (
            json!({"unit": "week", "time_zone": "America/New_York"}),
            "2024-03-11T00:00:00-04:00",
        ),
        (
            json!({"unit": "week", "week_starts_on": "sunday", "time_zone": "America/New_York"}),
            "2024-03-10T00:00:00-05:00",
        ),
        (
            json!({"unit": "month", "time_zone": "America/New_York"}),
            "2024-03-01T00:00:00-05:00",
        ),
        (json!({"unit": "year"}), "2024-01-01T00:00:00-04:00"),
        (json!({"unit": "hour"}), "2024-03-14T15:00:00-04:00"),
        (
            json!({"unit": "minute", "time_zone": "UTC"}),
            "2024-03-14T19:47:00Z",
        ),
    ] {
        assert_eq!(
            output(
                "datetime_start_of",
                config.clone(),
                json!({"value": value}),
                "value"
            )
            .await,
            json!(expected),
            "{config}"
        );
    }
    // Where midnight does not exist, the day starts at the first time that does.
    assert_eq!(
        output(
            "datetime_start_of",
            json!({"unit": "day", "time_zone": "America/Santiago"}),
            json!({"value": "2024-09-08T12:00:00-03:00"}),
            "value"
        )
        .await,
        json!("2024-09-08T01:00:00-03:00")
    );
}

#[test]
fn datetime_configs_are_checked() {
    for (node, config, expected) in [
        (
            "datetime_parse",
            json!({"format": {"strftime": "%Y %!"}}),
            "format.strftime: `%Y %!` is not a strftime pattern",
        ),
        ("datetime_parse", json!({"format": "iso"}), "format"),
        (
            "datetime_parse",
            json!({"time_zone": "Mars/Olympus"}),
            "time_zone: `Mars/Olympus` is not a known time zone",
        ),
        ("datetime_format", json!({}), "missing field `format`"),
        ("datetime_format", json!({"format": "auto"}), "format"),
        (
            "datetime_format",
            json!({"format": {"strftime": ""}}),
            "format.strftime: a strftime pattern cannot be empty",
        ),
        (
            "datetime_add",
            json!({"span": "a fortnight"}),
            "span: `a fortnight` is not a span",
        ),
        ("datetime_add", json!({}), "missing field `span`"),
        (
            "datetime_add",
            json!({"span": "20000 years"}),
            "span: `20000 years` is not a span",
        ),
        (
            "datetime_add",
            json!({"span": "1d", "time_zone": "+99:00"}),
            "time_zone: `+99:00` is not an offset",
        ),
        (
            "datetime_diff",
            json!({"unit": "fortnights"}),
            r#"unit: "fortnights" is not one of"#,
        ),
        (
            "datetime_start_of",
            json!({"unit": "week", "week_starts_on": "funday"}),
            r#"week_starts_on: "funday" is not one of"#,
        ),
    ] {
        assert_contains(&config_errors(node, config), expected);
    }
}

// ------------------------------------------------------------------- flows

#[tokio::test]
async fn a_document_flow_from_csv_to_a_csv_report() {
    let flow = load(
        r#"
version: 1
name: report
inputs:
  orders: { schema: { type: string } }
nodes:
  - id: parse
    type: csv_parse
    config: { infer_types: true, trim: all }
  - id: paid
    type: filter
    config:
      condition: '.status == "paid" and .total >= $minimum'
      vars: { minimum: "{{ 5 }}" }
  - id: per_customer
    type: aggregate
    config:
      group_by: [customer]
      aggregations:
        orders: { op: count }
        revenue: { op: sum, field: total }
        last_order: { op: max, field: date }
  - id: ranked
    type: sort
    config:
      by: [{ field: revenue, order: desc }, { field: customer }]
  - id: top
    type: limit
    config: { count: 2 }
  - id: write
    type: csv_write
    config: { columns: [customer, orders, revenue, last_order] }
edges:
  - { from: input.orders, to: parse.text }
  - { from: parse.items, to: paid.items }
  - { from: paid.kept, to: per_customer.items }
  - { from: per_customer.value, to: ranked.items }
  - { from: ranked.items, to: top.items }
  - { from: top.items, to: write.items }
outputs:
  report: write.text
  skipped: paid.discarded
"#,
    );
    let orders = "customer, status, total, date\nAda, paid, 12.5, 2024-01-03\nBob, paid, 30, 2024-01-01\nAda, refunded, 99, 2024-01-04\nCy, paid, 2, 2024-01-05\nAda, paid, 20, 2024-01-02\nDé, paid, 7, 2024-01-06\n";
    let outcome = Engine::new()
        .run(&flow, Inputs::new().set("orders", orders.to_string()))
        .await
        .unwrap();
    let report: String = outcome.output("report").unwrap();
    assert_eq!(
        report,
        "customer,orders,revenue,last_order\nAda,2,32.5,2024-01-03\nBob,1,30,2024-01-01\n"
    );
    let skipped: Value = outcome.output("skipped").unwrap();
    assert_eq!(skipped.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn typed_flows_run_and_read_back_as_documents() {
    let mut b = Flow::builder("typed");
    let data = b.input::<Value>("data");
    let totals = b.add(
        "totals",
        Transform::new(".lines | map({sku, total: (.qty * .price)})").unwrap(),
    );
    let sorted = b.add(
        "sorted",
        Sort {
            by: vec![SortKey {
                field: ghostflow_nodes::data::FieldPath::parse("total").unwrap(),
                order: SortOrder::Desc,
                nulls: Default::default(),
            }],
        },
    );
    b.connect(data, totals.inp().value);
    b.connect(totals.out().value, sorted.inp().items);
    b.output("items", sorted.out().items);
    let flow = b.build().unwrap();
    let input =
        json!({"lines": [{"sku": "a", "qty": 1, "price": 2}, {"sku": "b", "qty": 3, "price": 4}]});
    let run = |flow: Flow| {
        let input = input.clone();
        async move {
            let outcome: Outcome = Engine::new()
                .run(&flow, Inputs::new().set("data", input))
                .await
                .unwrap();
            outcome.output::<Value>("items").unwrap()
        }
    };
    let direct = run(flow.clone()).await;
    assert_eq!(
        direct,
        json!([{"sku": "b", "total": 12}, {"sku": "a", "total": 2}])
    );
    let yaml = Document::from_flow(&flow).unwrap().to_yaml();
    assert!(yaml.contains("type: transform"), "{yaml}");
    assert!(yaml.contains(".lines | map"), "{yaml}");
    assert_eq!(run(load(&yaml)).await, direct);
}

#[tokio::test]
async fn on_error_continue_and_skip() {
    let flow = load(
        r#"
version: 1
name: errors
inputs:
  value: {}
nodes:
  - id: risky
    type: transform
    config: { filter: '.a.b' }
    on_error: continue
  - id: after_risky
    type: json_stringify
  - id: skipped
    type: sort
    on_error: skip
  - id: after_skipped
    type: limit
    config: { count: 1 }
  - id: fine
    type: json_stringify
edges:
  - { from: input.value, to: risky.value }
  - { from: risky.value, to: after_risky.value }
  - { from: input.value, to: skipped.items }
  - { from: skipped.items, to: after_skipped.items }
  - { from: input.value, to: fine.value }
outputs:
  failure: risky.error
  fine: fine.text
"#,
    );
    let outcome = Engine::new()
        .run(&flow, Inputs::new().set("value", json!({"a": 5})))
        .await
        .unwrap();
    let failure: NodeFailure = outcome.output("failure").unwrap();
    assert_eq!(failure.node, "risky");
    assert_eq!(failure.message, "filter `.a.b`: cannot index 5 with \"b\"");
    assert!(!failure.retryable);
    assert_eq!(outcome.node("risky").unwrap().status, NodeStatus::Failed);
    assert_eq!(
        outcome.node("after_risky").unwrap().status,
        NodeStatus::Skipped
    );
    assert_eq!(outcome.node("skipped").unwrap().status, NodeStatus::Skipped);
    assert_eq!(
        outcome.node("after_skipped").unwrap().status,
        NodeStatus::Skipped
    );
    assert_eq!(outcome.output::<String>("fine").unwrap(), r#"{"a":5}"#);
}
