//! The OpenAI-compatible protocol against its documented examples.

use base64::Engine as _;
use ghostflow_model_peer::{ModelPeer, Reply, embed_text};
use serde_json::{Value, json};

use crate::common::{cosine, floats, post, post_raw, post_with, sse};

fn chat_url(peer: &ModelPeer) -> String {
    format!("{}/chat/completions", peer.openai_url())
}

fn hello() -> Value {
    json!([
        {"role": "developer", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"}
    ])
}

/// The documented answer to "Hello!" (API reference, create chat
/// completion, default example), compacted.
const DOCUMENTED_COMPLETION: &str = r#"{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4.1-2025-04-14",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "Hello! How can I assist you today?",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {
      "cached_tokens": 0,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default"
}"#;

#[tokio::test]
async fn a_completion_is_the_documented_object_byte_for_byte() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("Hello! How can I assist you today?").usage(19, 10));
    let answer = post(
        &chat_url(&peer),
        &json!({"model": "gpt-4.1-2025-04-14", "messages": hello()}),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert!(
        answer
            .header("x-request-id")
            .is_some_and(|id| id.starts_with("req_"))
    );
    let ours = answer.json();
    let id = ours["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("chatcmpl-") && id.len() == 38, "{id}");
    let created = ours["created"].as_u64().unwrap();
    let documented: Value = serde_json::from_str(DOCUMENTED_COMPLETION).unwrap();
    let expected = documented
        .to_string()
        .replace("chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", &id)
        .replace("1741569952", &created.to_string());
    assert_eq!(answer.text(), expected);
}

#[tokio::test]
async fn a_stream_is_the_documented_sse_byte_for_byte() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("Hello there!"));
    let answer = post(
        &chat_url(&peer),
        &json!({"model": "gpt-4o-mini", "messages": hello(), "stream": true}),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert!(answer.cut.is_none());
    let events = sse(&answer.text(), false);
    let first = events[0].json();
    let (id, created, fp) = (
        first["id"].as_str().unwrap().to_owned(),
        first["created"].as_u64().unwrap(),
        first["system_fingerprint"].as_str().unwrap().to_owned(),
    );
    assert!(fp.starts_with("fp_"));
    // The documented chunks, with this stream's id, time and fingerprint.
    let chunk = |choice: &str| {
        format!(
            "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"{fp}\",\"choices\":[{choice}]}}\n\n"
        )
    };
    let expected = [
        chunk(r#"{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{"content":" there!"},"logprobs":null,"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}"#),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    assert_eq!(answer.text(), expected);
}

#[tokio::test]
async fn include_usage_adds_a_usage_chunk_with_no_choices_before_done() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("one two three").usage(7, 3));
    let answer = post(
        &chat_url(&peer),
        &json!({
            "model": "gpt-4o-mini",
            "messages": hello(),
            "stream": true,
            "stream_options": {"include_usage": true}
        }),
    )
    .await;
    let events = sse(&answer.text(), false);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    let (usage, rest) = chunks.split_last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 7);
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(usage["usage"]["total_tokens"], 10);
    for chunk in rest {
        assert_eq!(chunk["usage"], Value::Null, "{chunk}");
    }
    let text: String = rest
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "one two three");
    assert_eq!(rest.len(), 5, "role, three words, finish");
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn a_tool_call_is_a_function_call_with_json_string_arguments() {
    let peer = ModelPeer::start().await;
    peer.push(
        Reply::tool_call("get_current_weather", json!({"location": "Boston, MA"}))
            .call_ids(["call_abc123"]),
    );
    let answer = post(
        &chat_url(&peer),
        &json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "What's the weather like in Boston today?"}],
            "tools": [{
                "type": "function",
                "function": {
                    "name": "get_current_weather",
                    "description": "Get the current weather in a given location",
                    "parameters": {
                        "type": "object",
                        "properties": {"location": {"type": "string"}},
                        "required": ["location"]
                    }
                }
            }],
            "tool_choice": "auto"
        }),
    )
    .await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_abc123");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_current_weather");
    let arguments = call["function"]["arguments"]
        .as_str()
        .expect("a JSON string");
    assert_eq!(
        serde_json::from_str::<Value>(arguments).unwrap(),
        json!({"location": "Boston, MA"})
    );
}

#[tokio::test]
async fn streamed_tool_calls_reassemble_by_index() {
    let peer = ModelPeer::start().await;
    let first = json!({"city": "Paris", "units": "celsius", "days": [1, 2, 3]});
    let second = json!({"query": "the Eiffel Tower's height in metres"});
    peer.push(Reply::tool_calls(vec![
        ("get_weather", first.clone()),
        ("search", second.clone()),
    ]));
    let answer = post(
        &chat_url(&peer),
        &json!({"model": "gpt-4o-mini", "messages": hello(), "stream": true}),
    )
    .await;
    let events = sse(&answer.text(), false);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = None;
    let mut argument_chunks = 0;
    for event in &events[..events.len() - 1] {
        let chunk = event.json();
        let choice = &chunk["choices"][0];
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(reason.to_owned());
        }
        for delta in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = delta["index"].as_u64().unwrap() as usize;
            if index == calls.len() {
                assert_eq!(delta["type"], "function");
                assert_eq!(delta["function"]["arguments"], "");
                calls.push((
                    delta["id"]
                        .as_str()
                        .expect("the first delta has the id")
                        .to_owned(),
                    delta["function"]["name"]
                        .as_str()
                        .expect("and the name")
                        .to_owned(),
                    String::new(),
                ));
            } else {
                assert!(delta.get("id").is_none(), "only the first delta has the id");
                argument_chunks += 1;
                calls[index].2 += delta["function"]["arguments"].as_str().unwrap();
            }
        }
    }
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert!(argument_chunks > 4, "arguments arrive in fragments");
    assert_eq!(calls.len(), 2);
    assert!(calls[0].0.starts_with("call_") && calls[0].0 != calls[1].0);
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(serde_json::from_str::<Value>(&calls[0].2).unwrap(), first);
    assert_eq!(calls[1].1, "search");
    assert_eq!(serde_json::from_str::<Value>(&calls[1].2).unwrap(), second);
    assert_eq!(
        events[0].json()["choices"][0]["delta"]["role"],
        "assistant",
        "the role comes first"
    );
}

#[tokio::test]
async fn json_schema_response_formats_get_a_satisfying_value() {
    let peer = ModelPeer::start().await;
    let answer = post(
        &chat_url(&peer),
        &json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Paris is the capital of France."},
                {"role": "user", "content": "What is the capital of France?"}
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "capital",
                    "strict": true,
                    "schema": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string"},
                            "population": {"type": "integer", "minimum": 1},
                            "sources": {"type": "array", "items": {"type": "string"}, "minItems": 1}
                        },
                        "required": ["city", "population", "sources"],
                        "additionalProperties": false
                    }
                }
            }
        }),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let content = answer.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let value: Value = serde_json::from_str(&content).unwrap();
    assert_eq!(value["city"], "Paris is the capital of France.");
    assert_eq!(value["population"], 1);
    assert_eq!(value["sources"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn json_object_mode_needs_the_word_json_in_the_messages() {
    let peer = ModelPeer::start().await;
    let refused = post(
        &chat_url(&peer),
        &json!({"model": "m", "messages": hello(), "response_format": {"type": "json_object"}}),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json()["error"]["message"],
        "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'."
    );
    let answer = post(
        &chat_url(&peer),
        &json!({
            "model": "m",
            "messages": [{"role": "user", "content": "Reply in JSON: hello?"}],
            "response_format": {"type": "json_object"}
        }),
    )
    .await;
    let content = answer.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(serde_json::from_str::<Value>(&content).unwrap().is_object());
}

#[tokio::test]
async fn embeddings_are_the_documented_list() {
    let peer = ModelPeer::start().await;
    let url = format!("{}/embeddings", peer.openai_url());
    let answer = post(
        &url,
        &json!({"model": "text-embedding-3-small", "input": "The food was delicious and the waiter..."}),
    )
    .await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["object", "data", "model", "usage"]);
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    let item = &body["data"][0];
    let keys: Vec<&str> = item
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["object", "embedding", "index"]);
    assert_eq!(item["object"], "embedding");
    assert_eq!(item["index"], 0);
    let vector = floats(&item["embedding"]);
    assert_eq!(vector.len(), 256);
    assert_eq!(
        vector,
        embed_text("The food was delicious and the waiter...", 256)
    );
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 7, "total_tokens": 7})
    );

    let answer = post(
        &url,
        &json!({"model": "m", "input": ["cats purr", "dogs bark"], "dimensions": 32}),
    )
    .await;
    let body = answer.json();
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(floats(&data[0]["embedding"]).len(), 32);
    assert_eq!(floats(&data[1]["embedding"]), embed_text("dogs bark", 32));
}

#[tokio::test]
async fn base64_embeddings_decode_to_the_same_floats() {
    let peer = ModelPeer::start().await;
    let url = format!("{}/embeddings", peer.openai_url());
    let answer = post(
        &url,
        &json!({"model": "m", "input": "hello world", "encoding_format": "base64", "dimensions": 8}),
    )
    .await;
    let encoded = answer.json()["data"][0]["embedding"]
        .as_str()
        .unwrap()
        .to_owned();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let vector: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(vector, embed_text("hello world", 8));
    assert!((cosine(&vector, &vector) - 1.0).abs() < 1e-5);
}

#[tokio::test]
async fn a_required_key_is_checked_as_a_bearer_token() {
    let peer = ModelPeer::start().await;
    peer.api_key("sk-test-0123456789");
    let body = json!({"model": "m", "messages": hello()});
    let missing = post(&chat_url(&peer), &body).await;
    assert_eq!(missing.status, 401);
    let error = &missing.json()["error"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("You didn't provide an API key.")
    );
    assert_eq!(error["type"], "invalid_request_error");

    let wrong = post_with(
        &chat_url(&peer),
        &[("authorization", "Bearer sk-wrong-9876543210")],
        &body,
    )
    .await;
    assert_eq!(wrong.status, 401);
    let error = &wrong.json()["error"];
    assert_eq!(error["code"], "invalid_api_key");
    assert_eq!(error["param"], Value::Null);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Incorrect API key provided: sk-"),
        "{message}"
    );
    assert!(
        !message.contains("sk-wrong-9876543210"),
        "the key is masked"
    );

    let right = post_with(
        &chat_url(&peer),
        &[("authorization", "Bearer sk-test-0123456789")],
        &body,
    )
    .await;
    assert_eq!(right.status, 200);
    let embeddings = post_with(
        &format!("{}/embeddings", peer.openai_url()),
        &[("authorization", "Bearer nope")],
        &json!({"model": "m", "input": "x"}),
    )
    .await;
    assert_eq!(embeddings.status, 401);
}

#[tokio::test]
async fn scripted_statuses_use_openai_error_objects() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::status(429).retry_after(2));
    peer.push(Reply::status(500));
    peer.push(Reply::status(401));
    peer.push(Reply::status(503).message("try later"));
    let body = json!({"model": "gpt-4o-mini", "messages": hello()});

    let limited = post(&chat_url(&peer), &body).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("2"));
    let error = &limited.json()["error"];
    assert_eq!(error["type"], "requests");
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert!(error["message"].as_str().unwrap().contains("gpt-4o-mini"));

    let broken = post(&chat_url(&peer), &body).await;
    assert_eq!(broken.status, 500);
    assert_eq!(
        broken.json(),
        json!({"error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": null,
            "code": null
        }})
    );
    assert_eq!(broken.header("retry-after"), None);

    let denied = post(&chat_url(&peer), &body).await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.json()["error"]["code"], "invalid_api_key");

    let busy = post(&chat_url(&peer), &body).await;
    assert_eq!(busy.status, 503);
    assert_eq!(busy.json()["error"]["message"], "try later");
}

#[tokio::test]
async fn unknown_models_are_not_found() {
    let peer = ModelPeer::start().await;
    peer.only_models(["gpt-4o-mini"]);
    let answer = post(
        &chat_url(&peer),
        &json!({"model": "gpt-9", "messages": hello()}),
    )
    .await;
    assert_eq!(answer.status, 404);
    assert_eq!(
        answer.json(),
        json!({"error": {
            "message": "The model `gpt-9` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": null,
            "code": "model_not_found"
        }})
    );
    let models = crate::common::finish(
        crate::common::client()
            .get(format!("{}/models", peer.openai_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(models.json()["data"][0]["id"], "gpt-4o-mini");
}

/// Sends `body` and returns the error object of the expected 400.
async fn refused(peer: &ModelPeer, body: Value) -> Value {
    let answer = post(&chat_url(peer), &body).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    answer.json()["error"].clone()
}

#[tokio::test]
async fn requests_are_validated_field_by_field() {
    let peer = ModelPeer::start().await;
    let error = refused(&peer, json!({"model": "m"})).await;
    assert_eq!(
        error,
        json!({
            "message": "Missing required parameter: 'messages'.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "missing_required_parameter"
        })
    );
    let error = refused(&peer, json!({"messages": hello()})).await;
    assert_eq!(error["message"], "you must provide a model parameter");
    let error = refused(&peer, json!({"model": "m", "messages": "Hello!"})).await;
    assert_eq!(
        error["message"],
        "Invalid type for 'messages': expected an array, but got a string instead."
    );
    assert_eq!(error["code"], "invalid_type");
    let error = refused(&peer, json!({"model": "m", "messages": []})).await;
    assert_eq!(error["code"], "empty_array");
    let error = refused(
        &peer,
        json!({"model": "m", "messages": [{"role": "robot", "content": "hi"}]}),
    )
    .await;
    assert_eq!(
        error["message"],
        "Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
    );
    assert_eq!(error["param"], "messages[0].role");
    let error = refused(
        &peer,
        json!({"model": "m", "messages": [{"content": "hi"}]}),
    )
    .await;
    assert_eq!(error["param"], "messages[0].role");
    let error = refused(
        &peer,
        json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
    )
    .await;
    assert_eq!(
        error["message"],
        "Invalid type for 'messages[0].content': expected one of a string or array of objects, but got an integer instead."
    );
    let error = refused(
        &peer,
        json!({"model": "m", "messages": hello(), "temperature": 3}),
    )
    .await;
    assert_eq!(error["code"], "decimal_above_max_value");
    assert_eq!(error["param"], "temperature");
    let error = refused(
        &peer,
        json!({"model": "m", "messages": hello(), "max_tokens": "10"}),
    )
    .await;
    assert_eq!(
        error["message"],
        "Invalid type for 'max_tokens': expected an integer, but got a string instead."
    );
    let error = refused(
        &peer,
        json!({"model": "m", "messages": hello(), "temprature": 1}),
    )
    .await;
    assert_eq!(
        error["message"],
        "Unrecognized request argument supplied: temprature"
    );
    let error = refused(
        &peer,
        json!({"model": "m", "messages": hello(), "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(error["param"], "stream_options");
    let error = refused(
        &peer,
        json!({"model": "m", "messages": hello(), "tool_choice": "auto"}),
    )
    .await;
    assert_eq!(error["param"], "tool_choice");
    let error = refused(
        &peer,
        json!({"model": "m", "messages": hello(), "parallel_tool_calls": false}),
    )
    .await;
    assert_eq!(error["param"], "parallel_tool_calls");
    let error = refused(
        &peer,
        json!({"model": "m", "messages": hello(), "tools": [{"type": "function", "function": {"name": "bad name"}}]}),
    )
    .await;
    assert_eq!(error["param"], "tools[0].function.name");
    let error = refused(
        &peer,
        json!({"model": "m", "messages": hello(), "response_format": {"type": "xml"}}),
    )
    .await;
    assert_eq!(error["param"], "response_format.type");
    let error = refused(
        &peer,
        json!({"model": "m", "messages": hello(), "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}),
    )
    .await;
    assert_eq!(error["param"], "response_format.json_schema.name");

    let garbage = post_raw(
        &chat_url(&peer),
        &[("content-type", "application/json")],
        "{not json",
    )
    .await;
    assert_eq!(garbage.status, 400);
    assert!(
        garbage.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("We could not parse the JSON body of your request.")
    );
    assert_eq!(peer.pending(), 0);
}

fn assistant_call(id: &str) -> Value {
    json!({
        "role": "assistant",
        "content": null,
        "tool_calls": [{"id": id, "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]
    })
}

#[tokio::test]
async fn tool_results_must_answer_the_calls_before_them() {
    let peer = ModelPeer::start().await;
    let user = json!({"role": "user", "content": "Weather in Paris?"});
    let error = refused(
        &peer,
        json!({"model": "m", "messages": [user, {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]}),
    )
    .await;
    assert_eq!(
        error["message"],
        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."
    );
    assert_eq!(error["param"], "messages.[1].role");

    let error = refused(
        &peer,
        json!({"model": "m", "messages": [user, assistant_call("call_1"), {"role": "tool", "tool_call_id": "call_2", "content": "sunny"}]}),
    )
    .await;
    assert_eq!(
        error["message"],
        "Invalid parameter: 'tool_call_id' of 'call_2' not found in 'tool_calls' of previous message."
    );
    assert_eq!(error["param"], "messages.[2].tool_call_id");

    let error = refused(
        &peer,
        json!({"model": "m", "messages": [user, assistant_call("call_1"), {"role": "user", "content": "and?"}]}),
    )
    .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .ends_with("The following tool_call_ids did not have response messages: call_1")
    );

    let error = refused(
        &peer,
        json!({"model": "m", "messages": [user, assistant_call("call_1"), {"role": "tool", "content": "sunny"}]}),
    )
    .await;
    assert_eq!(error["param"], "messages.[2].tool_call_id");

    let mut object_arguments = assistant_call("call_1");
    object_arguments["tool_calls"][0]["function"]["arguments"] = json!({"city": "Paris"});
    let error = refused(
        &peer,
        json!({"model": "m", "messages": [user, object_arguments, {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]}),
    )
    .await;
    assert_eq!(
        error["message"],
        "Invalid type for 'messages[1].tool_calls[0].function.arguments': expected a string, but got an object instead."
    );

    let answer = post(
        &chat_url(&peer),
        &json!({"model": "m", "messages": [user, assistant_call("call_1"), {"role": "tool", "tool_call_id": "call_1", "content": "Paris: sunny, 21 C"}]}),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "Paris: sunny, 21 C"
    );
}

#[tokio::test]
async fn stop_sequences_and_token_limits_are_honoured() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("one two three. END four five"));
    peer.push(Reply::text("one two three four five"));
    let stopped = post(
        &chat_url(&peer),
        &json!({"model": "m", "messages": hello(), "stop": ["END"]}),
    )
    .await;
    let choice = &stopped.json()["choices"][0];
    assert_eq!(choice["message"]["content"], "one two three. ");
    assert_eq!(choice["finish_reason"], "stop");
    let limited = post(
        &chat_url(&peer),
        &json!({"model": "m", "messages": hello(), "max_completion_tokens": 2}),
    )
    .await;
    let choice = &limited.json()["choices"][0];
    assert_eq!(choice["message"]["content"], "one two");
    assert_eq!(choice["finish_reason"], "length");
}

#[tokio::test]
async fn unknown_urls_and_methods_get_openai_errors() {
    let peer = ModelPeer::start().await;
    let answer = post(&format!("{}/completion", peer.openai_url()), &json!({})).await;
    assert_eq!(answer.status, 404);
    assert_eq!(
        answer.json()["error"]["message"],
        "Invalid URL (POST /v1/completion)"
    );
    let answer = crate::common::finish(
        crate::common::client()
            .get(chat_url(&peer))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 405);
    assert_eq!(
        answer.json()["error"]["message"],
        "Invalid method for URL (GET /v1/chat/completions)"
    );
}
