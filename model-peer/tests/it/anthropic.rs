//! Anthropic's messages API against its documented examples.

use ghostflow_model_peer::{ModelPeer, Reply};
use serde_json::{Value, json};

use crate::common::{ANTHROPIC, Sse, post, post_with, sse};

fn url(peer: &ModelPeer) -> String {
    format!("{}/v1/messages", peer.url())
}

fn hello(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "stream": stream
    })
}

/// The documented answer of "Using the Messages API", compacted.
const DOCUMENTED_MESSAGE: &str = r#"{
  "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
  "type": "message",
  "role": "assistant",
  "content": [
    {
      "type": "text",
      "text": "Hello!"
    }
  ],
  "model": "claude-sonnet-4-5",
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {
    "input_tokens": 12,
    "output_tokens": 6
  }
}"#;

#[tokio::test]
async fn a_message_is_the_documented_object_byte_for_byte() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("Hello!").usage(12, 6));
    let answer = post_with(&url(&peer), ANTHROPIC, &hello(false)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert!(
        answer
            .header("request-id")
            .is_some_and(|id| id.starts_with("req_"))
    );
    let id = answer.json()["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("msg_01") && id.len() == 28, "{id}");
    let documented: Value = serde_json::from_str(DOCUMENTED_MESSAGE).unwrap();
    let expected = documented
        .to_string()
        .replace("msg_01XFDUDYJgAACzvnptvVoYEL", &id);
    assert_eq!(answer.text(), expected);
}

/// The documented basic stream ("Streaming Messages"), as (event, data).
fn documented_stream() -> Vec<(&'static str, Value)> {
    vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there!"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 15}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ]
}

#[tokio::test]
async fn a_stream_is_the_documented_event_sequence_byte_for_byte() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("Hello there!").usage(25, 15));
    let answer = post_with(&url(&peer), ANTHROPIC, &hello(true)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert!(answer.cut.is_none());
    let text = answer.text();
    let events = sse(&text, false);
    let id = events[0].json()["message"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("msg_01"));
    let expected: String = documented_stream()
        .into_iter()
        .map(|(event, data)| {
            let data = data
                .to_string()
                .replace("msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", &id);
            format!("event: {event}\ndata: {data}\n\n")
        })
        .collect();
    assert_eq!(text, expected);
}

/// Joins a stream's blocks: (type, id, name, text or JSON text) by index.
fn blocks(events: &[Sse]) -> Vec<(String, Option<String>, Option<String>, String)> {
    let mut out: Vec<(String, Option<String>, Option<String>, String)> = Vec::new();
    for event in events {
        let data = event.json();
        assert_eq!(
            event.event.as_deref(),
            data["type"].as_str(),
            "event names match types"
        );
        match data["type"].as_str().unwrap() {
            "content_block_start" => {
                let block = &data["content_block"];
                assert_eq!(data["index"], out.len());
                out.push((
                    block["type"].as_str().unwrap().to_owned(),
                    block["id"].as_str().map(str::to_owned),
                    block["name"].as_str().map(str::to_owned),
                    String::new(),
                ));
                if block["type"] == "tool_use" {
                    assert_eq!(block["input"], json!({}));
                }
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap() as usize;
                let delta = &data["delta"];
                let piece = match delta["type"].as_str().unwrap() {
                    "text_delta" => delta["text"].as_str().unwrap(),
                    "input_json_delta" => delta["partial_json"].as_str().unwrap(),
                    other => panic!("unexpected delta {other}"),
                };
                out[index].3.push_str(piece);
            }
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn streamed_tool_use_reassembles_from_partial_json() {
    let peer = ModelPeer::start().await;
    let input = json!({"location": "San Francisco, CA", "unit": "fahrenheit"});
    peer.push(
        Reply::tool_call("get_weather", input.clone())
            .with_text("I'll check the weather in San Francisco for you."),
    );
    let answer = post_with(&url(&peer), ANTHROPIC, &hello(true)).await;
    let events = sse(&answer.text(), false);
    let blocks = blocks(&events);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].0, "text");
    assert_eq!(
        blocks[0].3,
        "I'll check the weather in San Francisco for you."
    );
    assert_eq!(blocks[1].0, "tool_use");
    assert!(blocks[1].1.as_ref().unwrap().starts_with("toolu_01"));
    assert_eq!(blocks[1].2.as_deref(), Some("get_weather"));
    assert_eq!(serde_json::from_str::<Value>(&blocks[1].3).unwrap(), input);
    let fragments = events
        .iter()
        .filter(|e| e.data.contains("input_json_delta"))
        .count();
    assert!(fragments > 3, "the input arrives in fragments");
    let delta = events[events.len() - 2].json();
    assert_eq!(delta["type"], "message_delta");
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        events.last().unwrap().event.as_deref(),
        Some("message_stop")
    );
}

#[tokio::test]
async fn tool_use_is_a_content_block_with_an_input_object() {
    let peer = ModelPeer::start().await;
    peer.push(
        Reply::tool_call("get_weather", json!({"location": "San Francisco, CA"}))
            .with_text("I'll check the current weather in San Francisco for you.")
            .call_ids(["toolu_01A09q90qw90lq917835lq9"]),
    );
    let answer = post_with(&url(&peer), ANTHROPIC, &hello(false)).await;
    let body = answer.json();
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(
        body["content"],
        json!([
            {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA"}}
        ])
    );
}

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "input_schema": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["location"]
        }
    })
}

#[tokio::test]
async fn a_forced_tool_is_called_with_schema_satisfying_input() {
    let peer = ModelPeer::start().await;
    let mut body = hello(false);
    body["tools"] = json!([weather_tool()]);
    body["tool_choice"] = json!({"type": "tool", "name": "get_weather"});
    let answer = post_with(&url(&peer), ANTHROPIC, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["stop_reason"], "tool_use");
    let block = &body["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "get_weather");
    assert!(block["input"]["location"].is_string());
    assert_eq!(block["input"]["unit"], "celsius");
}

#[tokio::test]
async fn tool_results_answer_the_tool_use_before_them() {
    let peer = ModelPeer::start().await;
    let assistant = json!({"role": "assistant", "content": [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}
    ]});
    let body = |result_id: &str| {
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "tools": [weather_tool()],
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                assistant,
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": result_id, "content": "Paris: 15 degrees, rain"}]}
            ]
        })
    };
    let answer = post_with(&url(&peer), ANTHROPIC, &body("toolu_1")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["content"][0]["text"],
        "Paris: 15 degrees, rain"
    );

    let answer = post_with(&url(&peer), ANTHROPIC, &body("toolu_2")).await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.json()["error"],
        json!({
            "type": "invalid_request_error",
            "message": "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_2. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
        })
    );

    let unanswered = json!({
        "model": "m", "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            assistant,
            {"role": "user", "content": "Well?"}
        ]
    });
    let answer = post_with(&url(&peer), ANTHROPIC, &unanswered).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1.")
    );
}

#[tokio::test]
async fn the_version_header_is_required() {
    let peer = ModelPeer::start().await;
    let answer = post(&url(&peer), &hello(false)).await;
    assert_eq!(answer.status, 400);
    let body = answer.json();
    assert_eq!(body["type"], "error");
    assert_eq!(
        body["error"],
        json!({"type": "invalid_request_error", "message": "anthropic-version: header is required"})
    );
    assert!(body["request_id"].as_str().unwrap().starts_with("req_"));
    assert_eq!(
        peer.requests().len(),
        1,
        "refused requests are recorded too"
    );
}

#[tokio::test]
async fn a_required_key_is_checked_as_x_api_key() {
    let peer = ModelPeer::start().await;
    peer.api_key("sk-ant-test");
    let missing = post_with(&url(&peer), ANTHROPIC, &hello(false)).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.json()["error"],
        json!({"type": "authentication_error", "message": "x-api-key header is required"})
    );
    let wrong = post_with(
        &url(&peer),
        &[
            ("anthropic-version", "2023-06-01"),
            ("x-api-key", "sk-ant-other"),
        ],
        &hello(false),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"]["message"], "invalid x-api-key");
    let right = post_with(
        &url(&peer),
        &[
            ("anthropic-version", "2023-06-01"),
            ("x-api-key", "sk-ant-test"),
        ],
        &hello(false),
    )
    .await;
    assert_eq!(right.status, 200);
    assert_eq!(
        peer.last_request().unwrap().header("X-Api-Key"),
        Some("sk-ant-test")
    );
}

#[tokio::test]
async fn scripted_statuses_use_anthropic_error_types() {
    let peer = ModelPeer::start().await;
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ] {
        peer.push(Reply::status(status).retry_after(7));
        let answer = post_with(&url(&peer), ANTHROPIC, &hello(false)).await;
        assert_eq!(answer.status, status);
        let body = answer.json();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], kind, "{status}");
        assert!(body["error"]["message"].is_string());
        assert_eq!(answer.header("retry-after"), Some("7"));
    }
}

#[tokio::test]
async fn a_mid_stream_error_is_an_error_event() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("Hello there friend").error_after(4, 529));
    let answer = post_with(&url(&peer), ANTHROPIC, &hello(true)).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.cut.is_none(),
        "the stream ends cleanly after the error"
    );
    let events = sse(&answer.text(), false);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        events[4].json(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
}

/// Sends `body` and returns the message of the expected 400.
async fn refused(peer: &ModelPeer, body: Value) -> String {
    let answer = post_with(&url(peer), ANTHROPIC, &body).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn requests_are_validated_field_by_field() {
    let peer = ModelPeer::start().await;
    let messages = json!([{"role": "user", "content": "Hi"}]);
    assert_eq!(
        refused(&peer, json!({"model": "m", "messages": messages})).await,
        "max_tokens: Field required"
    );
    assert_eq!(
        refused(&peer, json!({"max_tokens": 10, "messages": messages})).await,
        "model: Field required"
    );
    assert_eq!(
        refused(&peer, json!({"model": "m", "max_tokens": 10})).await,
        "messages: Field required"
    );
    assert_eq!(
        refused(
            &peer,
            json!({"model": "m", "max_tokens": "ten", "messages": messages})
        )
        .await,
        "max_tokens: Input should be a valid integer"
    );
    assert_eq!(
        refused(&peer, json!({"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "Be brief."}]})).await,
        "messages.0.role: Input should be 'user' or 'assistant'"
    );
    assert_eq!(
        refused(&peer, json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "txt", "text": "x"}]}]})).await,
        "messages.0.content.0: Input tag 'txt' found using 'type' does not match any of the expected tags: 'text', 'image', 'document', 'search_result', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking', 'server_tool_use', 'web_search_tool_result'"
    );
    assert_eq!(
        refused(
            &peer,
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": ""}]})
        )
        .await,
        "messages.0: all messages must have non-empty content except for the optional final assistant message"
    );
    assert_eq!(
        refused(
            &peer,
            json!({"model": "m", "max_tokens": 10, "messages": messages, "stop": ["x"]})
        )
        .await,
        "stop: Extra inputs are not permitted"
    );
    assert_eq!(
        refused(
            &peer,
            json!({"model": "m", "max_tokens": 10, "messages": messages, "temperature": 1.5})
        )
        .await,
        "temperature: Input should be less than or equal to 1"
    );
    assert_eq!(
        refused(&peer, json!({"model": "m", "max_tokens": 10, "messages": messages, "tools": [{"name": "get_weather"}]})).await,
        "tools.0.input_schema: Field required"
    );
    assert_eq!(
        refused(&peer, json!({"model": "m", "max_tokens": 10, "messages": messages, "tool_choice": {"type": "any"}})).await,
        "tool_choice may only be specified while providing tools"
    );
    let answer = post_with(
        &url(&peer),
        &[("anthropic-version", "2023-06-01"), ("content-type", "application/json")],
        &json!({"model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "Paris is in France."}], "messages": [{"role": "user", "content": "Where is Paris?"}]}),
    )
    .await;
    assert_eq!(answer.status, 200, "system blocks are accepted");
    assert_eq!(answer.json()["content"][0]["text"], "Paris is in France.");
}

#[tokio::test]
async fn stop_sequences_and_max_tokens_set_the_stop_reason() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("Counting: one two three"));
    peer.push(Reply::text("Counting: one two three"));
    let mut body = hello(false);
    body["stop_sequences"] = json!(["two"]);
    let stopped = post_with(&url(&peer), ANTHROPIC, &body).await.json();
    assert_eq!(stopped["stop_reason"], "stop_sequence");
    assert_eq!(stopped["stop_sequence"], "two");
    assert_eq!(stopped["content"][0]["text"], "Counting: one ");
    let mut body = hello(false);
    body["max_tokens"] = json!(2);
    let limited = post_with(&url(&peer), ANTHROPIC, &body).await.json();
    assert_eq!(limited["stop_reason"], "max_tokens");
    assert_eq!(limited["stop_sequence"], Value::Null);
    assert_eq!(limited["content"][0]["text"], "Counting: one");
}

#[tokio::test]
async fn unknown_models_and_paths_are_not_found_errors() {
    let peer = ModelPeer::start().await;
    peer.only_models(["claude-sonnet-4-5"]);
    let mut body = hello(false);
    body["model"] = json!("claude-9");
    let answer = post_with(&url(&peer), ANTHROPIC, &body).await;
    assert_eq!(answer.status, 404);
    assert_eq!(
        answer.json()["error"],
        json!({"type": "not_found_error", "message": "model: claude-9"})
    );
    let answer = post_with(&format!("{}/v1/complete", peer.url()), ANTHROPIC, &body).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["error"]["type"], "not_found_error");
}
