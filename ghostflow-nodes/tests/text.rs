//! The text nodes run in flows (mostly written as documents) with
//! `Engine`: regular expressions, digests, HMAC signatures, base64.
#![cfg(feature = "text")]

mod common;
use common::{load, load_error};

use ghostflow::document::Document;
use ghostflow::{Engine, Error, Flow, Inputs, MapSecrets, NodeFailure, NodeStatus, Outcome};
use ghostflow_nodes::text::{
    Base64, Base64Mode, DataFormat, DigestEncoding, GroupRef, Hash, HashAlgorithm, RegexExtract,
    RegexReplace,
};
use serde_json::{Value, json};

// ------------------------------------------------------------------ helpers

/// A flow with a flow input `text` into one node of `node_type` with
/// `config` (JSON, which is YAML too); every output port in `outputs`
/// becomes a flow output of the same name.
fn one_node(node_type: &str, config: Value, port: &str, outputs: &[&str]) -> Flow {
    let outputs: String = outputs.iter().map(|o| format!("  {o}: n.{o}\n")).collect();
    load(&format!(
        "version: 1\nname: one\ninputs:\n  {port}: {{}}\nnodes:\n  - id: n\n    type: {node_type}\n    config: {config}\nedges:\n  - {{ from: input.{port}, to: n.{port} }}\noutputs:\n{outputs}"
    ))
}

fn engine() -> Engine {
    Engine::builder()
        .secrets(
            MapSecrets::new()
                .with("WEBHOOK_SECRET", "It's a Secret to Everybody")
                .with("JEFE", "Jefe")
                .with("B64_KEY", "SmVmZQ==")
                .with("NOT_B64", "%%%"),
        )
        .build()
}

async fn run(flow: &Flow, inputs: Value) -> Result<Outcome, Error> {
    let inputs = Inputs::from_json(inputs.as_object().cloned().unwrap_or_default());
    engine().run(flow, inputs).await
}

/// The outputs of a run that must succeed, as one JSON object (empty
/// outputs are `null`).
async fn outputs(flow: &Flow, inputs: Value) -> Value {
    let outcome = run(flow, inputs)
        .await
        .unwrap_or_else(|e| panic!("the run failed: {e}"));
    Value::Object(outcome.outputs_json().unwrap())
}

/// The message of the node failure of a run that must fail.
async fn failure(flow: &Flow, inputs: Value) -> (String, bool) {
    match run(flow, inputs).await {
        Err(Error::NodeFailed { error, .. }) => (error.message().to_owned(), error.is_retryable()),
        Err(other) => panic!("expected a node failure, got {other}"),
        Ok(outcome) => panic!("expected a node failure, got {:?}", outcome.outputs_json()),
    }
}

// ------------------------------------------------------------- regex_match

#[tokio::test]
async fn regex_match_gives_the_groups_of_the_first_match() {
    let flow = one_node(
        "regex_match",
        json!({"pattern": r"(?P<project>[A-Z]+)-(?P<number>\d+)(?P<draft>!)?"}),
        "text",
        &["matched", "groups", "named"],
    );
    assert_eq!(
        outputs(&flow, json!({"text": "[OPS-42] disk full; see OPS-7!"})).await,
        json!({
            "matched": true,
            "groups": ["OPS-42", "OPS", "42", null],
            "named": {"project": "OPS", "number": "42", "draft": null},
        })
    );
    // No match: `matched` says so, and the group outputs stay empty.
    assert_eq!(
        outputs(&flow, json!({"text": "nothing here"})).await,
        json!({"matched": false, "groups": null, "named": null})
    );
}

#[tokio::test]
async fn regex_match_flags_change_what_matches() {
    let text = "first line\nSecond Line";
    for (config, expected) in [
        (json!({"pattern": "second"}), false),
        (json!({"pattern": "second", "case_insensitive": true}), true),
        (json!({"pattern": "^Second"}), false),
        (json!({"pattern": "^Second", "multiline": true}), true),
        (json!({"pattern": "line.Second"}), false),
        (json!({"pattern": "line.Second", "dot_all": true}), true),
        // Inline flags work too.
        (json!({"pattern": "(?i)SECOND"}), true),
    ] {
        let flow = one_node("regex_match", config.clone(), "text", &["matched"]);
        assert_eq!(
            outputs(&flow, json!({"text": text})).await["matched"],
            json!(expected),
            "{config}"
        );
    }
}

#[tokio::test]
async fn a_branch_on_a_match_skips_what_reads_the_groups() {
    let flow = load(
        r#"
version: 1
name: branch
inputs:
  text: {}
nodes:
  - id: find
    type: regex_match
    config: { pattern: 'id=(\d+)' }
  - id: shout
    type: template
    config: { template: "found {{ data[1] }}" }
edges:
  - { from: input.text, to: find.text }
  - { from: find.groups, to: shout.data }
outputs:
  matched: find.matched
"#,
    );
    let outcome = run(&flow, json!({"text": "no id"})).await.unwrap();
    assert!(!outcome.output::<bool>("matched").unwrap());
    assert_eq!(outcome.node("shout").unwrap().status, NodeStatus::Skipped);
    let outcome = run(&flow, json!({"text": "id=7"})).await.unwrap();
    assert_eq!(outcome.node("shout").unwrap().status, NodeStatus::Succeeded);
}

// ----------------------------------------------------------- regex_extract

#[tokio::test]
async fn regex_extract_lists_matches_with_byte_and_char_offsets() {
    let flow = one_node(
        "regex_extract",
        json!({"pattern": r"(?P<user>[\w.]+)@(?P<domain>[\w.]+\w)"}),
        "text",
        &["matches", "values", "count", "truncated"],
    );
    // "é" and "ö" take two bytes each: byte and char offsets differ.
    let text = "Écrire à zoë@exämple.org, ou bob@b.io.";
    let out = outputs(&flow, json!({"text": text})).await;
    assert_eq!(out["count"], json!(2));
    assert_eq!(out["truncated"], json!(false));
    assert_eq!(out["values"], json!(["zoë@exämple.org", "bob@b.io"]));
    let first = &out["matches"][0];
    assert_eq!(
        *first,
        json!({
            "text": "zoë@exämple.org",
            "start": 11,
            "end": 28,
            "char_start": 9,
            "char_end": 24,
            "groups": ["zoë@exämple.org", "zoë", "exämple.org"],
            "named": {"user": "zoë", "domain": "exämple.org"},
        })
    );
    // The offsets point at the match in bytes and in characters.
    assert_eq!(&text[11..28], "zoë@exämple.org");
    let chars: String = text.chars().skip(9).take(24 - 9).collect();
    assert_eq!(chars, "zoë@exämple.org");
    let second = &out["matches"][1];
    assert_eq!(second["text"], json!("bob@b.io"));
    assert_eq!(
        (&second["start"], &second["char_start"]),
        (&json!(33), &json!(29))
    );
}

#[tokio::test]
async fn regex_extract_values_follow_the_group_and_the_count_is_capped() {
    let text = "a=1 b=22 c= d=4444";
    for (group, values) in [
        (json!("value"), json!(["1", "22", null, "4444"])),
        (json!(1), json!(["a", "b", "c", "d"])),
        // A digit string (what an expression renders) is a number.
        (json!("1"), json!(["a", "b", "c", "d"])),
        (json!(0), json!(["a=1", "b=22", "c=", "d=4444"])),
    ] {
        let flow = one_node(
            "regex_extract",
            json!({"pattern": r"(\w)=(?P<value>\d+)?", "group": group}),
            "text",
            &["values"],
        );
        assert_eq!(
            outputs(&flow, json!({"text": text})).await["values"],
            values,
            "{group}"
        );
    }
    let flow = one_node(
        "regex_extract",
        json!({"pattern": r"\d", "max_matches": 3}),
        "text",
        &["values", "count", "truncated"],
    );
    let out = outputs(&flow, json!({"text": "1 2 3 4 5"})).await;
    assert_eq!(out["values"], json!(["1", "2", "3"]));
    assert_eq!(
        (&out["count"], &out["truncated"]),
        (&json!(3), &json!(true))
    );
    // Exactly `max_matches` matches are not truncated.
    let out = outputs(&flow, json!({"text": "1 2 3"})).await;
    assert_eq!(out["truncated"], json!(false));
    // No match at all is an empty list.
    let out = outputs(&flow, json!({"text": "none"})).await;
    assert_eq!(out["values"], json!([]));
    assert_eq!(out["count"], json!(0));
}

#[tokio::test]
async fn regex_extract_flags_apply() {
    let flow = one_node(
        "regex_extract",
        json!({"pattern": "^item: .+$", "multiline": true, "case_insensitive": true}),
        "text",
        &["values"],
    );
    assert_eq!(
        outputs(&flow, json!({"text": "Item: a\nnot: b\nITEM: c"})).await["values"],
        json!(["Item: a", "ITEM: c"])
    );
    let flow = one_node(
        "regex_extract",
        json!({"pattern": "<b>(.*?)</b>", "dot_all": true, "group": 1}),
        "text",
        &["values"],
    );
    assert_eq!(
        outputs(&flow, json!({"text": "<b>one\ntwo</b> <b>three</b>"})).await["values"],
        json!(["one\ntwo", "three"])
    );
}

#[tokio::test]
async fn a_group_the_pattern_lacks_fails_when_the_node_runs() {
    let flow = one_node(
        "regex_extract",
        json!({"pattern": r"(?P<key>\w+)=(\d+)", "group": "valeu"}),
        "text",
        &["values"],
    );
    let (message, retryable) = failure(&flow, json!({"text": "a=1"})).await;
    assert_eq!(
        message,
        "config.group: the pattern has no group `valeu` (groups 0 to 2; named `key`)"
    );
    assert!(!retryable);
    let flow = one_node(
        "regex_extract",
        json!({"pattern": r"\w", "group": 3}),
        "text",
        &["values"],
    );
    let (message, _) = failure(&flow, json!({"text": "a"})).await;
    assert_eq!(
        message,
        "config.group: the pattern has no group 3 (groups 0 to 0, none named)"
    );
}

// ----------------------------------------------------------- regex_replace

#[tokio::test]
async fn regex_replace_expands_references_and_honours_the_limit() {
    let card = r"\b(\d{4})[ -]?\d{4}[ -]?\d{4}[ -]?(?P<last>\d{4})\b";
    let text = "cards 4111 1111 1111 1234 and 5500-0000-0000-0004, $5 fee";
    for (config, expected, replaced) in [
        (
            json!({"pattern": card, "replacement": "$1 **** **** ${last}"}),
            "cards 4111 **** **** 1234 and 5500 **** **** 0004, $5 fee",
            2,
        ),
        (
            json!({"pattern": card, "replacement": "[${1}x] $$", "limit": 1}),
            "cards [4111x] $ and 5500-0000-0000-0004, $5 fee",
            1,
        ),
        (
            json!({"pattern": card, "replacement": "$1-$last", "literal": true}),
            "cards $1-$last and $1-$last, $5 fee",
            2,
        ),
        (
            json!({"pattern": "CARDS", "replacement": "<$0>", "case_insensitive": true}),
            "<cards> 4111 1111 1111 1234 and 5500-0000-0000-0004, $5 fee",
            1,
        ),
        (json!({"pattern": "nothing", "replacement": "x"}), text, 0),
    ] {
        let flow = one_node(
            "regex_replace",
            config.clone(),
            "text",
            &["text", "replaced"],
        );
        assert_eq!(
            outputs(&flow, json!({"text": text})).await,
            json!({"text": expected, "replaced": replaced}),
            "{config}"
        );
    }
    let flow = one_node(
        "regex_replace",
        json!({"pattern": "^(\\w+)$", "replacement": "- $1", "multiline": true}),
        "text",
        &["text"],
    );
    assert_eq!(
        outputs(&flow, json!({"text": "a\nb"})).await["text"],
        json!("- a\n- b")
    );
    let flow = one_node(
        "regex_replace",
        json!({"pattern": "a.b", "replacement": "_", "dot_all": true}),
        "text",
        &["text"],
    );
    assert_eq!(
        outputs(&flow, json!({"text": "a\nb"})).await["text"],
        json!("_")
    );
}

#[tokio::test]
async fn regex_replace_refuses_unknown_groups_and_oversized_results() {
    let flow = one_node(
        "regex_replace",
        json!({"pattern": r"(\d+)", "replacement": "$1st"}),
        "text",
        &["text"],
    );
    let (message, retryable) = failure(&flow, json!({"text": "1"})).await;
    assert_eq!(
        message,
        "config.replacement: `$1st` refers to no group of the pattern (groups 0 to 1, none named); write `${1}x` to follow group 1 with letters, `$$` for a `$`"
    );
    assert!(!retryable);
    // Every empty match of `x*` becomes 10 bytes: far more than the text.
    let flow = one_node(
        "regex_replace",
        json!({"pattern": "x*", "replacement": "0123456789", "max_bytes": 100}),
        "text",
        &["text"],
    );
    let (message, _) = failure(&flow, json!({"text": "a".repeat(50)})).await;
    assert_eq!(
        message,
        "the result would be longer than 100 bytes (config.max_bytes)"
    );
    let ok = outputs(&flow, json!({"text": "ab"})).await;
    assert_eq!(ok["text"], json!("0123456789a0123456789b0123456789"));
}

// -------------------------------------------------------------------- hash

#[tokio::test]
async fn hash_computes_every_algorithm_in_hex_or_base64() {
    for (algorithm, hex) in [
        ("md5", "900150983cd24fb0d6963f7d28e17f72"),
        ("sha1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (
            "sha256",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            "sha512",
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
    ] {
        let flow = one_node("hash", json!({"algorithm": algorithm}), "data", &["digest"]);
        assert_eq!(
            outputs(&flow, json!({"data": "abc"})).await["digest"],
            json!(hex),
            "{algorithm}"
        );
    }
    // The default is SHA-256; base64 in (the bytes of "abc"), base64 out.
    let flow = one_node(
        "hash",
        json!({"input": "base64", "output": "base64"}),
        "data",
        &["digest"],
    );
    assert_eq!(
        outputs(&flow, json!({"data": "YWJj"})).await["digest"],
        json!("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=")
    );
    // Bytes that are not text hash as they are (md5 of 00 ff).
    let flow = one_node(
        "hash",
        json!({"algorithm": "md5", "input": "base64"}),
        "data",
        &["digest"],
    );
    assert_eq!(
        outputs(&flow, json!({"data": "AP8="})).await["digest"],
        json!("d07d34efac6328007ad67c7e0a985e00")
    );
}

#[tokio::test]
async fn hash_input_must_be_base64_when_told() {
    let flow = one_node("hash", json!({"input": "base64"}), "data", &["digest"]);
    let (message, retryable) = failure(&flow, json!({"data": "not base64!"})).await;
    assert_eq!(
        message,
        "input `data`: not valid standard base64: `!` at offset 9 (not counting whitespace) is not in the alphabet"
    );
    assert!(!retryable);
}

// -------------------------------------------------------------------- hmac

/// GitHub's documented example: this secret, this body, this signature.
const GITHUB_BODY: &str = "Hello, World!";
const GITHUB_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

fn verify_flow(extra: Value) -> Flow {
    let mut config = json!({
        "mode": "verify",
        "key_secret": "WEBHOOK_SECRET",
        "prefix": "sha256=",
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    load(&format!(
        r#"
version: 1
name: verify
inputs:
  body: {{}}
  signature: {{}}
nodes:
  - id: check
    type: hmac
    config: {config}
edges:
  - {{ from: input.body, to: check.data }}
  - {{ from: input.signature, to: check.signature }}
outputs:
  valid: check.valid
  signature: check.signature
"#
    ))
}

#[tokio::test]
async fn hmac_signs_with_a_key_from_the_secrets() {
    let flow = one_node(
        "hmac",
        json!({"key_secret": "WEBHOOK_SECRET", "prefix": "sha256="}),
        "data",
        &["signature", "valid"],
    );
    assert_eq!(
        outputs(&flow, json!({"data": GITHUB_BODY})).await,
        json!({"signature": GITHUB_SIGNATURE, "valid": null})
    );
    // RFC 2202 / RFC 4231 test case 2 ("Jefe"), each hash function.
    let data = "what do ya want for nothing?";
    for (config, expected) in [
        (
            json!({"key_secret": "JEFE", "algorithm": "sha1"}),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
        ),
        (
            json!({"key_secret": "JEFE", "output": "base64"}),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=",
        ),
        (
            json!({"key_secret": "JEFE", "algorithm": "sha512"}),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
        // The same key, given in base64; the same data, given in base64.
        (
            json!({"key_secret": "B64_KEY", "key_format": "base64", "algorithm": "sha1"}),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
        ),
    ] {
        let flow = one_node("hmac", config.clone(), "data", &["signature"]);
        assert_eq!(
            outputs(&flow, json!({"data": data})).await["signature"],
            json!(expected),
            "{config}"
        );
    }
    let flow = one_node(
        "hmac",
        json!({"key_secret": "JEFE", "algorithm": "sha1", "input": "base64"}),
        "data",
        &["signature"],
    );
    assert_eq!(
        outputs(
            &flow,
            json!({"data": "d2hhdCBkbyB5YSB3YW50IGZvciBub3RoaW5nPw=="})
        )
        .await["signature"],
        json!("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
    );
}

#[tokio::test]
async fn hmac_verifies_webhook_signatures() {
    let good = json!({"body": GITHUB_BODY, "signature": GITHUB_SIGNATURE});
    // Valid: `valid` is true and the expected signature is not shown.
    assert_eq!(
        outputs(&verify_flow(json!({})), good.clone()).await,
        json!({"valid": true, "signature": null})
    );
    // Upper-case hex is the same signature.
    let upper = format!("sha256={}", GITHUB_SIGNATURE[7..].to_uppercase());
    assert_eq!(
        outputs(
            &verify_flow(json!({})),
            json!({"body": GITHUB_BODY, "signature": upper})
        )
        .await["valid"],
        json!(true)
    );
    let tampered = json!({"body": "Hello, World?", "signature": GITHUB_SIGNATURE});
    let (message, retryable) = failure(&verify_flow(json!({})), tampered.clone()).await;
    assert_eq!(
        message,
        "input `signature`: the signature does not match the data"
    );
    assert!(!retryable);
    // With `on_mismatch: output`, a mismatch of any kind is `valid: false`.
    let lenient = verify_flow(json!({"on_mismatch": "output"}));
    for inputs in [
        tampered,
        json!({"body": GITHUB_BODY, "signature": &GITHUB_SIGNATURE[7..]}),
        json!({"body": GITHUB_BODY, "signature": "sha256=zz"}),
        json!({"body": GITHUB_BODY, "signature": "sha256=abcd"}),
    ] {
        assert_eq!(
            outputs(&lenient, inputs.clone()).await,
            json!({"valid": false, "signature": null}),
            "{inputs}"
        );
    }
    // Malformed signatures say why when they fail the node.
    let (message, _) = failure(
        &verify_flow(json!({})),
        json!({"body": GITHUB_BODY, "signature": &GITHUB_SIGNATURE[7..]}),
    )
    .await;
    assert_eq!(
        message,
        "input `signature`: not a valid signature: it does not start with `sha256=`"
    );
    let (message, _) = failure(
        &verify_flow(json!({})),
        json!({"body": GITHUB_BODY, "signature": "sha256=xyz"}),
    )
    .await;
    assert_eq!(
        message,
        "input `signature`: not a valid signature: not hexadecimal: an odd number of digits (3)"
    );
    // Base64 signatures, without a prefix.
    let flow = verify_flow(json!({"key_secret": "JEFE", "prefix": "", "output": "base64"}));
    assert_eq!(
        outputs(
            &flow,
            json!({"body": "what do ya want for nothing?", "signature": "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM"})
        )
        .await["valid"],
        json!(true)
    );
}

#[tokio::test]
async fn hmac_failures_name_the_secret_never_its_value() {
    let flow = one_node(
        "hmac",
        json!({"key_secret": "MISSING_SECRET"}),
        "data",
        &["signature"],
    );
    let (message, retryable) = failure(&flow, json!({"data": "x"})).await;
    assert_eq!(message, "node `n`: secret `MISSING_SECRET` is not set");
    assert!(!retryable);
    let flow = one_node(
        "hmac",
        json!({"key_secret": "NOT_B64", "key_format": "base64"}),
        "data",
        &["signature"],
    );
    let (message, _) = failure(&flow, json!({"data": "x"})).await;
    assert_eq!(
        message,
        "config.key_format: secret `NOT_B64` is not valid base64"
    );
    assert!(!message.contains("%%%"));
    // Verifying without a signature input is a clear failure.
    let flow = one_node(
        "hmac",
        json!({"key_secret": "JEFE", "mode": "verify"}),
        "data",
        &["valid"],
    );
    let (message, _) = failure(&flow, json!({"data": "x"})).await;
    assert_eq!(
        message,
        "input `signature`: missing; `mode: verify` needs the signature to check"
    );
}

// ------------------------------------------------------------------ base64

#[tokio::test]
async fn base64_encodes_and_decodes_both_alphabets() {
    let text = "héllo wörld?>";
    for (config, encoded) in [
        (json!({}), "aMOpbGxvIHfDtnJsZD8+"),
        (json!({"alphabet": "url_safe"}), "aMOpbGxvIHfDtnJsZD8-"),
        (
            json!({"mode": "encode", "pad": false}),
            "aMOpbGxvIHfDtnJsZD8+",
        ),
    ] {
        let flow = one_node("base64", config.clone(), "text", &["text"]);
        assert_eq!(
            outputs(&flow, json!({"text": text})).await["text"],
            json!(encoded),
            "{config}"
        );
    }
    for (config, text, encoded) in [
        (json!({}), "hi", "aGk="),
        (json!({"pad": false}), "hi", "aGk"),
        (
            json!({"alphabet": "url_safe", "pad": false}),
            "\u{fbff}",
            "76-_",
        ),
    ] {
        let flow = one_node("base64", config.clone(), "text", &["text"]);
        assert_eq!(
            outputs(&flow, json!({"text": text})).await["text"],
            json!(encoded),
            "{config}"
        );
    }
    // Decoding takes padded and unpadded input, and line breaks.
    for (config, encoded) in [
        (json!({"mode": "decode"}), "aMOpbGxvIHfDtnJsZD8+"),
        (json!({"mode": "decode"}), "aMOpbGxv\nIHfDtnJs\nZD8+\n"),
        (
            json!({"mode": "decode", "alphabet": "url_safe"}),
            "aMOpbGxvIHfDtnJsZD8-",
        ),
    ] {
        let flow = one_node("base64", config.clone(), "text", &["text"]);
        assert_eq!(
            outputs(&flow, json!({"text": encoded})).await["text"],
            json!(text),
            "{config}"
        );
    }
    let flow = one_node("base64", json!({"mode": "decode"}), "text", &["text"]);
    assert_eq!(
        outputs(&flow, json!({"text": "aGk"})).await["text"],
        json!("hi")
    );
}

#[tokio::test]
async fn base64_decoding_says_where_input_is_not_base64_or_not_text() {
    let flow = one_node("base64", json!({"mode": "decode"}), "text", &["text"]);
    // 0xc3 0x28 is not UTF-8: 0xc3 starts a character 0x28 does not continue.
    let (message, retryable) = failure(&flow, json!({"text": "wyhhYmM="})).await;
    assert_eq!(
        message,
        "input `text`: the decoded bytes are not UTF-8 text: the byte 0xc3 at offset 0 (of 5) starts no valid character"
    );
    assert!(!retryable);
    let (message, _) = failure(&flow, json!({"text": "aMOpbGxvIHfDtnJsZD8-"})).await;
    assert_eq!(
        message,
        "input `text`: not valid standard base64: `-` at offset 19 is not in the alphabet; `-` and `_` belong to the URL-safe alphabet (`alphabet: url_safe`)"
    );
}

// ------------------------------------------------------------- bad configs

#[tokio::test]
async fn bad_configs_fail_when_the_flow_loads_at_their_path() {
    for (node_type, config, expected) in [
        (
            "regex_match",
            r#"{ pattern: "(abc" }"#,
            "nodes[0].config.pattern: regex parse error:",
        ),
        (
            "regex_match",
            "{}",
            "nodes[0].config: missing field `pattern`",
        ),
        (
            "regex_match",
            r#"{ pattern: a, case_insensitive: "yes" }"#,
            "nodes[0].config.case_insensitive:",
        ),
        (
            "regex_extract",
            r#"{ pattern: '\w{9999}' }"#,
            "nodes[0].config.pattern: Compiled regex exceeds size limit",
        ),
        (
            "regex_extract",
            "{ pattern: a, max_matches: -1 }",
            "nodes[0].config.max_matches:",
        ),
        (
            "regex_extract",
            "{ pattern: a, group: [1] }",
            "nodes[0].config.group:",
        ),
        (
            "regex_replace",
            "{ pattern: a }",
            "nodes[0].config: missing field `replacement`",
        ),
        (
            "regex_replace",
            "{ pattern: '[z-a]', replacement: b }",
            "nodes[0].config.pattern: regex parse error:",
        ),
        (
            "regex_replace",
            "{ pattern: a, replacement: b, limt: 1 }",
            "unknown field `limt`",
        ),
        ("hash", "{ algorithm: sha3 }", "nodes[0].config.algorithm:"),
        ("hash", "{ output: hexa }", "nodes[0].config.output:"),
        (
            "hmac",
            "{ mode: sign }",
            "nodes[0].config: missing field `key_secret`",
        ),
        (
            "hmac",
            "{ key_secret: K, algorithm: md5 }",
            "nodes[0].config.algorithm:",
        ),
        ("hmac", "{ key_secret: K, key: abc }", "unknown field `key`"),
        ("base64", "{ mode: rot13 }", "nodes[0].config.mode:"),
        ("base64", "{ pad: 1 }", "nodes[0].config.pad:"),
    ] {
        let yaml = format!(
            "version: 1\nname: bad\nnodes:\n  - id: n\n    type: {node_type}\n    config: {config}\n"
        );
        let err = load_error(&yaml);
        assert!(
            err.contains(expected),
            "{node_type} {config}: `{err}` lacks `{expected}`"
        );
    }
    // The regex crate's message says what and where.
    let err = load_error(
        "version: 1\nname: bad\nnodes:\n  - id: n\n    type: regex_match\n    config: { pattern: \"(abc\" }\n",
    );
    assert!(err.contains("unclosed group"), "{err}");
    // Enums list their choices.
    let err = load_error(
        "version: 1\nname: bad\nnodes:\n  - id: n\n    type: hash\n    config: { algorithm: sha3 }\n",
    );
    assert!(
        err.contains(r#""md5", "sha1", "sha256", "sha512""#),
        "{err}"
    );
}

#[tokio::test]
async fn a_pattern_from_an_expression_is_checked_when_the_node_runs() {
    let flow = load(
        r#"
version: 1
name: dynamic
inputs:
  pattern: {}
  text: {}
nodes:
  - id: find
    type: regex_extract
    config: { pattern: "{{ input.pattern }}" }
edges:
  - { from: input.text, to: find.text }
outputs:
  values: find.values
"#,
    );
    assert_eq!(
        outputs(&flow, json!({"pattern": "[0-9]+", "text": "a1b22"})).await["values"],
        json!(["1", "22"])
    );
    let (message, retryable) = failure(&flow, json!({"pattern": "(", "text": "a"})).await;
    assert!(message.contains("pattern: regex parse error"), "{message}");
    assert!(!retryable);
}

// --------------------------------------------------------------- on_error

#[tokio::test]
async fn on_error_continue_and_skip() {
    let doc = |policy: &str| {
        load(&format!(
            r#"
version: 1
name: policies
inputs:
  text: {{}}
nodes:
  - id: decode
    type: base64
    config: {{ mode: decode }}
    on_error: {policy}
  - id: digest
    type: hash
edges:
  - {{ from: input.text, to: decode.text }}
  - {{ from: decode.text, to: digest.data }}
outputs:
  digest: digest.digest
{error}"#,
            error = if policy == "continue" {
                "  failure: decode.error\n"
            } else {
                ""
            }
        ))
    };
    // `continue`: the failure is on the `error` port, the rest is skipped.
    let outcome = run(&doc("continue"), json!({"text": "@@"})).await.unwrap();
    let error: NodeFailure = outcome.output("failure").unwrap();
    assert_eq!(error.node, "decode");
    assert_eq!(
        error.message,
        "input `text`: not valid standard base64: `@` at offset 0 is not in the alphabet"
    );
    assert!(!error.retryable);
    assert_eq!(error.attempts, 1);
    assert_eq!(outcome.node("decode").unwrap().status, NodeStatus::Failed);
    assert_eq!(outcome.node("digest").unwrap().status, NodeStatus::Skipped);
    // The run still gives the output of a good input.
    let outcome = run(&doc("continue"), json!({"text": "YWJj"}))
        .await
        .unwrap();
    assert_eq!(
        outcome.output::<String>("digest").unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // `skip`: the node and what depends on it are skipped.
    let outcome = run(&doc("skip"), json!({"text": "@@"})).await.unwrap();
    assert_eq!(outcome.node("decode").unwrap().status, NodeStatus::Skipped);
    assert_eq!(outcome.node("digest").unwrap().status, NodeStatus::Skipped);
    assert_eq!(outcome.outputs_json().unwrap()["digest"], json!(null));
    // `fail` (the default) fails the run.
    let (message, _) = failure(&doc("fail"), json!({"text": "@@"})).await;
    assert!(message.contains("not valid standard base64"), "{message}");
}

// ------------------------------------------------------------------- flows

#[tokio::test]
async fn a_document_flow_extracts_signs_and_encodes() {
    // A webhook: check its signature, pull the order ids out of the body,
    // mask the emails, and sign a compact receipt.
    let flow = load(
        r#"
version: 1
name: webhook
inputs:
  body: {}
  signature: {}
nodes:
  - id: check
    type: hmac
    config: { mode: verify, key_secret: WEBHOOK_SECRET, prefix: "sha256=" }
  - id: ids
    type: regex_extract
    config: { pattern: 'order-(?P<id>\d+)', group: id }
  - id: masked
    type: regex_replace
    config: { pattern: '(?P<user>[\w.]+)@', replacement: '***@' }
  - id: receipt
    type: template
    config: { template: "{{ data | join(',') }}" }
  - id: digest
    type: hash
    config: { algorithm: sha1 }
  - id: encoded
    type: base64
    config: { alphabet: url_safe, pad: false }
edges:
  - { from: input.body, to: check.data }
  - { from: input.signature, to: check.signature }
  - { from: input.body, to: ids.text }
  - { from: input.body, to: masked.text }
  - { from: ids.values, to: receipt.data }
  - { from: receipt.text, to: digest.data }
  - { from: receipt.text, to: encoded.text }
outputs:
  valid: check.valid
  ids: ids.values
  masked: masked.text
  receipt: receipt.text
  digest: digest.digest
  encoded: encoded.text
"#,
    );
    let body = "order-17 for ada@example.com, order-4 for bob@example.org";
    // Computed independently (Python's hmac module) with the same secret.
    let signature = "sha256=5f3ebf2407958ba44f9089ea08e506f2e2b0824d9c253c6d375ba0981bd1d57d";
    let out = outputs(&flow, json!({"body": body, "signature": signature})).await;
    assert_eq!(
        out,
        json!({
            "valid": true,
            "ids": ["17", "4"],
            "masked": "order-17 for ***@example.com, order-4 for ***@example.org",
            "receipt": "17,4",
            "digest": "d3b72cadb9c0d29411ec32226dbfa0042b5bb1b0",
            "encoded": "MTcsNA",
        })
    );
}

#[tokio::test]
async fn typed_flows_run_and_read_back_as_documents() {
    let mut b = Flow::builder("typed");
    let text = b.input::<String>("text");
    let mut find = RegexExtract::new(r"(?P<word>\p{L}+)").unwrap();
    find.group = GroupRef::Name("word".into());
    find.max_matches = 2;
    let find = b.add("find", find);
    let mut replace = RegexReplace::new(r"\s+", " ").unwrap();
    replace.limit = 1;
    let replace = b.add("replace", replace);
    let hash = b.add(
        "hash",
        Hash {
            algorithm: HashAlgorithm::Sha512,
            input: DataFormat::Text,
            output: DigestEncoding::Base64,
        },
    );
    let encode = b.add(
        "encode",
        Base64 {
            mode: Base64Mode::Encode,
            ..Base64::default()
        },
    );
    b.connect(text, find.inp().text);
    b.connect(text, replace.inp().text);
    b.connect(replace.out().text, hash.inp().data);
    b.connect(replace.out().text, encode.inp().text);
    b.output("words", find.out().values);
    b.output("truncated", find.out().truncated);
    b.output("replaced", replace.out().text);
    b.output("digest", hash.out().digest);
    b.output("encoded", encode.out().text);
    let flow = b.build().unwrap();
    let inputs = json!({"text": "één  twee   drie"});
    let direct = outputs(&flow, inputs.clone()).await;
    assert_eq!(direct["words"], json!(["één", "twee"]));
    assert_eq!(direct["truncated"], json!(true));
    assert_eq!(direct["replaced"], json!("één twee   drie"));
    assert_eq!(direct["encoded"], json!("w6nDqW4gdHdlZSAgIGRyaWU="));
    assert_eq!(direct["digest"].as_str().unwrap().len(), 88);

    let yaml = Document::from_flow(&flow).unwrap().to_yaml();
    assert!(yaml.contains("type: regex_extract"), "{yaml}");
    let reloaded = outputs(&load(&yaml), inputs).await;
    assert_eq!(reloaded, direct);
}
