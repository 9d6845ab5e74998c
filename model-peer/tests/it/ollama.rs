//! Ollama's native API against its documented examples.

use ghostflow_model_peer::{ModelPeer, Reply, embed_text};
use serde_json::{Value, json};

use crate::common::{client, cosine, finish, floats, ndjson, post, post_raw};

fn chat_url(peer: &ModelPeer) -> String {
    format!("{}/api/chat", peer.url())
}

fn sky(stream: Option<bool>) -> Value {
    let mut body = json!({
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "why is the sky blue?"}]
    });
    if let Some(stream) = stream {
        body["stream"] = json!(stream);
    }
    body
}

/// Checks `created_at` is Go's RFC 3339 in UTC and replaces it, and the
/// durations, with the documented example's values.
fn normalise(mut object: Value, documented: &Value) -> Value {
    let created = object["created_at"].as_str().unwrap().to_owned();
    assert!(
        created.len() >= 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
    object["created_at"] = documented["created_at"].clone();
    for key in [
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        if object.get(key).is_some() {
            assert!(object[key].as_u64().unwrap() > 0, "{key} is in nanoseconds");
            object[key] = documented[key].clone();
        }
    }
    object
}

#[tokio::test]
async fn a_chat_without_streaming_is_the_documented_object() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("Hello! How are you today?").usage(26, 298));
    let answer = post(&chat_url(&peer), &sky(Some(false))).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    // The documented response, with the `done_reason` current servers send.
    let documented = json!({
        "model": "llama3.2",
        "created_at": "2023-12-12T14:13:43.416799Z",
        "message": {"role": "assistant", "content": "Hello! How are you today?"},
        "done_reason": "stop",
        "done": true,
        "total_duration": 5191566416_u64,
        "load_duration": 2154458,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 383809000,
        "eval_count": 298,
        "eval_duration": 4799921000_u64
    });
    assert_eq!(
        normalise(answer.json(), &documented).to_string(),
        documented.to_string()
    );
}

#[tokio::test]
async fn chat_streams_ndjson_by_default() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("The sky is blue.").usage(26, 4));
    let answer = post(&chat_url(&peer), &sky(None)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/x-ndjson"));
    let text = answer.text();
    assert!(
        !text.contains("\n\n") && !text.contains("data:"),
        "NDJSON, not SSE"
    );
    let lines = ndjson(&text);
    assert_eq!(lines.len(), 5, "four words and the final object");
    let chunk = json!({
        "model": "llama3.2",
        "created_at": "2023-08-04T08:52:19.385406455-07:00",
        "message": {"role": "assistant", "content": "The"},
        "done": false
    });
    assert_eq!(
        normalise(lines[0].clone(), &chunk).to_string(),
        chunk.to_string()
    );
    let words: String = lines[..4]
        .iter()
        .map(|l| {
            assert_eq!(l["done"], false);
            l["message"]["content"].as_str().unwrap()
        })
        .collect();
    assert_eq!(words, "The sky is blue.");
    let documented = json!({
        "model": "llama3.2",
        "created_at": "2023-08-04T19:22:45.499127Z",
        "message": {"role": "assistant", "content": ""},
        "done_reason": "stop",
        "done": true,
        "total_duration": 4883583458_u64,
        "load_duration": 1334875,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 342546000,
        "eval_count": 4,
        "eval_duration": 4535599000_u64
    });
    assert_eq!(
        normalise(lines[4].clone(), &documented).to_string(),
        documented.to_string()
    );
}

fn weather_tools() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather for a location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string"},
                    "format": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["location", "format"]
            }
        }
    }])
}

#[tokio::test]
async fn tool_calls_carry_arguments_as_objects() {
    let peer = ModelPeer::start().await;
    let arguments = json!({"format": "celsius", "location": "Paris, FR"});
    peer.push(Reply::tool_call("get_current_weather", arguments.clone()));
    peer.push(Reply::tool_call("get_current_weather", arguments.clone()));
    let mut body = json!({
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "What is the weather today in Paris?"}],
        "stream": false,
        "tools": weather_tools()
    });
    let answer = post(&chat_url(&peer), &body).await.json();
    assert_eq!(answer["done_reason"], "stop");
    assert_eq!(answer["message"]["content"], "");
    let call = &answer["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_current_weather");
    assert_eq!(
        call["function"]["arguments"], arguments,
        "an object, not a string"
    );
    assert_eq!(call["function"]["index"], 0);
    assert!(call["id"].as_str().unwrap().starts_with("call_"));

    body["stream"] = json!(true);
    let lines = ndjson(&post(&chat_url(&peer), &body).await.text());
    let with_calls: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"]["tool_calls"].is_array())
        .collect();
    assert_eq!(with_calls.len(), 1);
    assert_eq!(with_calls[0]["done"], false);
    assert_eq!(
        with_calls[0]["message"]["tool_calls"][0]["function"]["arguments"],
        arguments
    );
    assert_eq!(lines.last().unwrap()["done"], true);
}

#[tokio::test]
async fn formats_get_json_content() {
    let peer = ModelPeer::start().await;
    let answer = post(
        &chat_url(&peer),
        &json!({
            "model": "llama3.1",
            "messages": [{"role": "user", "content": "Ollama is 22 years old and busy saving the world. Return a JSON object with the age and availability."}],
            "stream": false,
            "format": {
                "type": "object",
                "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
                "required": ["age", "available"]
            },
            "options": {"temperature": 0}
        }),
    )
    .await
    .json();
    let content: Value =
        serde_json::from_str(answer["message"]["content"].as_str().unwrap()).unwrap();
    assert!(content["age"].is_i64());
    assert!(content["available"].is_boolean());

    let answer = post(
        &chat_url(&peer),
        &json!({"model": "llama3.2", "messages": [{"role": "user", "content": "Colours? Respond using JSON"}], "format": "json", "stream": false}),
    )
    .await
    .json();
    let content: Value =
        serde_json::from_str(answer["message"]["content"].as_str().unwrap()).unwrap();
    assert!(content.is_object());
}

#[tokio::test]
async fn options_limit_and_stop_the_answer() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("alpha beta gamma delta"));
    peer.push(Reply::text("alpha beta gamma delta"));
    let mut body = sky(Some(false));
    body["options"] = json!({"num_predict": 2, "temperature": 0.2});
    let limited = post(&chat_url(&peer), &body).await.json();
    assert_eq!(limited["message"]["content"], "alpha beta");
    assert_eq!(limited["done_reason"], "length");
    body["options"] = json!({"stop": [" gamma"]});
    let stopped = post(&chat_url(&peer), &body).await.json();
    assert_eq!(stopped["message"]["content"], "alpha beta");
    assert_eq!(stopped["done_reason"], "stop");
}

#[tokio::test]
async fn empty_messages_load_the_model() {
    let peer = ModelPeer::start().await;
    let answer = post(
        &chat_url(&peer),
        &json!({"model": "llama3.2", "messages": []}),
    )
    .await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    assert_eq!(body["done_reason"], "load");
    assert_eq!(body["done"], true);
    assert_eq!(body["message"], json!({"role": "assistant", "content": ""}));
}

#[tokio::test]
async fn errors_are_one_line_objects_with_ollama_statuses() {
    let peer = ModelPeer::start().await;
    let missing = post(&chat_url(&peer), &json!({"messages": []})).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json(), json!({"error": "model is required"}));

    let mistyped = post(
        &chat_url(&peer),
        &json!({"model": "llama3.2", "messages": "hi"}),
    )
    .await;
    assert_eq!(mistyped.status, 400);
    assert_eq!(
        mistyped.json()["error"],
        "json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message"
    );
    let content = post(
        &chat_url(&peer),
        &json!({"model": "llama3.2", "messages": [{"role": "user", "content": 1}]}),
    )
    .await;
    assert_eq!(
        content.json()["error"],
        "json: cannot unmarshal number into Go struct field Message.messages.content of type string"
    );
    let role = post(
        &chat_url(&peer),
        &json!({"model": "llama3.2", "messages": [{"role": "robot", "content": "hi"}]}),
    )
    .await;
    assert_eq!(role.status, 400);
    assert!(role.json()["error"].as_str().unwrap().contains("\"robot\""));
    let arguments = post(
        &chat_url(&peer),
        &json!({"model": "llama3.2", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{\"a\":1}"}}]}
        ]}),
    )
    .await;
    assert_eq!(arguments.status, 400);
    assert!(
        arguments.json()["error"]
            .as_str()
            .unwrap()
            .contains("messages.tool_calls.function.arguments")
    );
    let option = post(
        &chat_url(&peer),
        &json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "options": {"temperature": "hot"}}),
    )
    .await;
    assert_eq!(
        option.json()["error"],
        "option \"temperature\" must be of type float32"
    );
    let empty = post_raw(&chat_url(&peer), &[], "").await;
    assert_eq!(empty.json(), json!({"error": "missing request body"}));

    peer.only_models(["llama3.2"]);
    let unknown = post(
        &chat_url(&peer),
        &json!({"model": "mistral", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json(),
        json!({"error": "model 'mistral' not found"})
    );
    let latest = post(
        &chat_url(&peer),
        &json!({"model": "llama3.2:latest", "messages": [{"role": "user", "content": "hi"}], "stream": false}),
    )
    .await;
    assert_eq!(
        latest.status, 200,
        "llama3.2 and llama3.2:latest are one model"
    );
}

#[tokio::test]
async fn scripted_statuses_keep_ollama_words() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::status(404));
    peer.push(Reply::status(429).retry_after(3));
    peer.push(Reply::status(500).message("CUDA error: out of memory"));
    let not_found = post(&chat_url(&peer), &sky(None)).await;
    assert_eq!(not_found.status, 404);
    assert_eq!(
        not_found.json(),
        json!({"error": "model \"llama3.2\" not found, try pulling it first"})
    );
    let limited = post(&chat_url(&peer), &sky(None)).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("3"));
    let broken = post(&chat_url(&peer), &sky(None)).await;
    assert_eq!(broken.status, 500);
    assert_eq!(broken.json(), json!({"error": "CUDA error: out of memory"}));
}

#[tokio::test]
async fn a_mid_stream_error_is_an_error_line() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("one two three").error_after(2, 500));
    let answer = post(&chat_url(&peer), &sky(None)).await;
    assert!(answer.cut.is_none());
    let lines = ndjson(&answer.text());
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["message"]["content"], " two");
    assert_eq!(
        lines[2],
        json!({"error": "llama runner process has terminated: exit status 2"})
    );
}

#[tokio::test]
async fn embed_is_the_documented_object() {
    let peer = ModelPeer::start().await;
    let url = format!("{}/api/embed", peer.url());
    let answer = post(
        &url,
        &json!({"model": "all-minilm", "input": "Why is the sky blue?"}),
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
    assert_eq!(
        keys,
        [
            "model",
            "embeddings",
            "total_duration",
            "load_duration",
            "prompt_eval_count"
        ]
    );
    assert_eq!(body["model"], "all-minilm");
    assert_eq!(body["prompt_eval_count"], 5);
    let vectors = body["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 1);
    let vector = floats(&vectors[0]);
    assert_eq!(vector, embed_text("Why is the sky blue?", 256));
    assert!((cosine(&vector, &vector) - 1.0).abs() < 1e-5);

    let answer = post(
        &url,
        &json!({"model": "all-minilm", "input": ["Why is the sky blue?", "Why is the grass green?"], "dimensions": 16}),
    )
    .await
    .json();
    let vectors = answer["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    assert_eq!(
        floats(&vectors[1]),
        embed_text("Why is the grass green?", 16)
    );

    let wrong = post(&url, &json!({"model": "all-minilm", "input": 5})).await;
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.json(), json!({"error": "invalid input type"}));
    let legacy = post(
        &format!("{}/api/embeddings", peer.url()),
        &json!({"model": "all-minilm", "prompt": "Here is an article about llamas..."}),
    )
    .await
    .json();
    assert_eq!(
        floats(&legacy["embedding"]),
        embed_text("Here is an article about llamas...", 256)
    );
}

#[tokio::test]
async fn tags_list_the_models() {
    let peer = ModelPeer::start().await;
    peer.only_models(["llama3.2", "all-minilm:22m"]);
    let answer = finish(
        client()
            .get(format!("{}/api/tags", peer.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    let names: Vec<&str> = body["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["llama3.2:latest", "all-minilm:22m"]);
    assert_eq!(body["models"][0]["details"]["format"], "gguf");
    let root = finish(client().get(peer.url()).send().await.unwrap()).await;
    assert_eq!(root.text(), "Ollama is running");
    let unknown = post(&format!("{}/api/nothing", peer.url()), &json!({})).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.text(), "404 page not found");
}
