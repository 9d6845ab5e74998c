//! Scripted replies: the shared queue, cut and stalled streams, malformed
//! bodies, delays, recorded requests.

use std::time::Duration;

use ghostflow_model_peer::{ModelPeer, Protocol, Reply};
use serde_json::{Value, json};

use crate::common::{
    ANTHROPIC, client, finish, json_request, ndjson, post, post_raw, post_with, sse,
};

fn openai(peer: &ModelPeer, stream: bool) -> (String, Value) {
    (
        format!("{}/chat/completions", peer.openai_url()),
        json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}),
    )
}

fn ollama(peer: &ModelPeer, stream: bool) -> (String, Value) {
    (
        format!("{}/api/chat", peer.url()),
        json!({"model": "llama3.2", "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}),
    )
}

fn anthropic(peer: &ModelPeer, stream: bool) -> (String, Value) {
    (
        format!("{}/v1/messages", peer.url()),
        json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}),
    )
}

#[tokio::test]
async fn one_queue_serves_all_protocols_in_order_then_the_builtin_model() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("first"))
        .push(Reply::text("second"))
        .push(Reply::text("third"));
    assert_eq!(peer.pending(), 3);
    let (url, body) = ollama(&peer, false);
    assert_eq!(
        post(&url, &body).await.json()["message"]["content"],
        "first"
    );
    let (url, body) = anthropic(&peer, false);
    assert_eq!(
        post_with(&url, ANTHROPIC, &body).await.json()["content"][0]["text"],
        "second"
    );
    let (url, body) = openai(&peer, false);
    assert_eq!(
        post(&url, &body).await.json()["choices"][0]["message"]["content"],
        "third"
    );
    assert_eq!(peer.pending(), 0);
    assert_eq!(
        post(&url, &body).await.json()["choices"][0]["message"]["content"],
        "Hi",
        "the built-in model answers an empty queue"
    );
}

#[tokio::test]
async fn refused_requests_do_not_take_a_reply() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("kept"));
    let (url, _) = openai(&peer, false);
    assert_eq!(post(&url, &json!({"model": "m"})).await.status, 400);
    assert_eq!(peer.pending(), 1);
}

#[tokio::test]
async fn cut_after_closes_an_openai_stream_without_done() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("partial answer that goes on").cut_after(3));
    let (url, body) = openai(&peer, true);
    let answer = post(&url, &body).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.cut.is_some(),
        "the body ends with an error, not cleanly"
    );
    let text = answer.text();
    let events = sse(&text, false);
    assert_eq!(events.len(), 3, "exactly three events arrived: {text}");
    assert!(!text.contains("[DONE]"));
    let words: String = events
        .iter()
        .filter_map(|e| {
            e.json()["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(words, "partial answer");
}

#[tokio::test]
async fn cut_after_closes_ollama_and_anthropic_streams_too() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("one two three four").cut_after(2));
    peer.push(Reply::text("one two three four").cut_after(4));
    let (url, body) = ollama(&peer, true);
    let answer = post(&url, &body).await;
    assert!(answer.cut.is_some());
    let lines = ndjson(&answer.text());
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["done"] == false), "no final line");
    let (url, body) = anthropic(&peer, true);
    let answer = post_with(&url, ANTHROPIC, &body).await;
    assert!(answer.cut.is_some());
    let events = sse(&answer.text(), false);
    assert_eq!(events.len(), 4);
    assert!(
        events
            .iter()
            .all(|e| e.event.as_deref() != Some("message_stop"))
    );
}

#[tokio::test]
async fn cut_after_cuts_a_plain_body_in_the_middle() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("whole").cut_after(10));
    let (url, body) = openai(&peer, false);
    let answer = post(&url, &body).await;
    assert_eq!(answer.status, 200);
    assert!(answer.cut.is_some());
    assert_eq!(answer.body.len(), 10);
}

#[tokio::test]
async fn malformed_bodies_are_not_json() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::malformed());
    peer.push(Reply::malformed());
    peer.push(Reply::malformed());
    let (url, body) = openai(&peer, false);
    let answer = post(&url, &body).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert!(answer.cut.is_none());
    assert!(serde_json::from_slice::<Value>(&answer.body).is_err());
    let (url, body) = ollama(&peer, false);
    assert!(serde_json::from_slice::<Value>(&post(&url, &body).await.body).is_err());
    let (url, body) = anthropic(&peer, false);
    assert!(
        serde_json::from_slice::<Value>(&post_with(&url, ANTHROPIC, &body).await.body).is_err()
    );
}

#[tokio::test]
async fn a_malformed_stream_has_one_bad_data_line_and_its_terminator() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("one two three").malformed_body());
    peer.push(Reply::text("one two three").malformed_body());
    let (url, body) = openai(&peer, true);
    let answer = post(&url, &body).await;
    assert!(answer.cut.is_none());
    let events = sse(&answer.text(), false);
    let bad: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.data != "[DONE]" && serde_json::from_str::<Value>(&e.data).is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(bad, [1], "the first content delta is cut");
    assert_eq!(events.last().unwrap().data, "[DONE]");

    let (url, body) = ollama(&peer, true);
    let text = post(&url, &body).await.text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(serde_json::from_str::<Value>(lines[0]).is_err());
    assert!(
        lines[1..]
            .iter()
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );
}

#[tokio::test]
async fn mid_stream_errors_in_openai_streams_are_error_events() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("one two three").error_after(2, 500));
    peer.push(Reply::text("one two three").error_after(2, 500));
    let (url, body) = openai(&peer, true);
    let answer = post(&url, &body).await;
    assert_eq!(answer.status, 200);
    let events = sse(&answer.text(), false);
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].json()["error"]["type"], "server_error");
    let (url, body) = openai(&peer, false);
    assert_eq!(
        post(&url, &body).await.status,
        500,
        "without a stream, the error itself"
    );
}

#[tokio::test]
async fn a_stalled_stream_is_seen_closing_when_the_client_goes_away() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("one two three four").stall_after(3));
    let (url, body) = openai(&peer, true);
    let mut response = json_request(&url, &body).send().await.unwrap();
    let mut received = Vec::new();
    while !String::from_utf8_lossy(&received).contains(" two") {
        let chunk = response.chunk().await.unwrap().expect("the stream goes on");
        received.extend_from_slice(&chunk);
    }
    tokio::time::timeout(Duration::from_secs(10), peer.wait_open_streams(1))
        .await
        .expect("the stream is open");
    assert_eq!(peer.open_streams(), 1);
    drop(response);
    tokio::time::timeout(Duration::from_secs(10), peer.wait_open_streams(0))
        .await
        .expect("the peer sees the client go away");
    assert_eq!(peer.open_streams(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_delayed_reply_waits_on_the_tokio_clock() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("late").delay(Duration::from_secs(300)));
    let (url, body) = openai(&peer, false);
    let mut request = tokio::spawn(async move {
        let response = json_request(&url, &body).send().await?;
        let bytes = response.bytes().await?;
        Ok::<Value, reqwest::Error>(serde_json::from_slice(&bytes).expect("a JSON answer"))
    });
    // Busy until the peer has the request (and so took the reply): the
    // paused clock cannot advance before.
    while peer.requests().is_empty() {
        tokio::task::yield_now().await;
    }
    assert_eq!(peer.pending(), 0);
    let early = tokio::time::timeout(Duration::from_secs(5), &mut request).await;
    assert!(early.is_err(), "no answer before the delay ends");
    let answer = tokio::time::timeout(Duration::from_secs(600), &mut request)
        .await
        .expect("the answer comes once the delay has passed")
        .unwrap()
        .unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "late");
}

#[tokio::test]
async fn paced_streams_still_arrive_whole() {
    let peer = ModelPeer::start().await;
    peer.push(
        Reply::text("a b c")
            .pace(Duration::from_millis(1))
            .delay(Duration::from_millis(1)),
    );
    let (url, body) = ollama(&peer, true);
    let lines = ndjson(&post(&url, &body).await.text());
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["done"], true);
}

#[tokio::test]
async fn finish_and_usage_map_to_each_protocol() {
    let peer = ModelPeer::start().await;
    for _ in 0..3 {
        peer.push(
            Reply::text("truncated answer")
                .finish("length")
                .usage(12, 5),
        );
    }
    let (url, body) = openai(&peer, false);
    let answer = post(&url, &body).await.json();
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["prompt_tokens"], 12);
    assert_eq!(answer["usage"]["completion_tokens"], 5);
    assert_eq!(answer["usage"]["total_tokens"], 17);
    let (url, body) = anthropic(&peer, false);
    let answer = post_with(&url, ANTHROPIC, &body).await.json();
    assert_eq!(answer["stop_reason"], "max_tokens");
    assert_eq!(
        answer["usage"],
        json!({"input_tokens": 12, "output_tokens": 5})
    );
    let (url, body) = ollama(&peer, false);
    let answer = post(&url, &body).await.json();
    assert_eq!(answer["done_reason"], "length");
    assert_eq!(answer["prompt_eval_count"], 12);
    assert_eq!(answer["eval_count"], 5);
}

#[tokio::test]
async fn embeddings_have_their_own_queue() {
    let peer = ModelPeer::start().await;
    peer.push(Reply::text("a chat answer, untouched by embeddings"));
    peer.push_embeddings(Reply::embeddings(vec![vec![1.0, 0.0], vec![0.0, 1.0]]));
    peer.push_embeddings(Reply::status(429).retry_after(3));
    peer.push_embeddings(Reply::text("wrong queue"));
    let url = format!("{}/embeddings", peer.openai_url());
    let body = json!({"model": "m", "input": ["a", "b"]});
    let answer = post(&url, &body).await.json();
    assert_eq!(answer["data"][1]["embedding"], json!([0.0, 1.0]));
    let limited = post(&url, &body).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("3"));
    let mismatch = post(&url, &body).await;
    assert_eq!(mismatch.status, 500);
    assert!(
        mismatch.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("push")
    );
    assert_eq!(peer.pending(), 1);
}

#[tokio::test]
async fn every_request_is_recorded_as_it_arrived() {
    let peer = ModelPeer::start().await;
    let (url, openai_body) = openai(&peer, false);
    post_with(&url, &[("authorization", "Bearer sk-1")], &openai_body).await;
    post_raw(&format!("{}/api/chat", peer.url()), &[], "{broken").await;
    let (url, body) = anthropic(&peer, false);
    post_with(&url, ANTHROPIC, &body).await;
    let requests = peer.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].protocol, Protocol::Openai);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].header("Authorization"), Some("Bearer sk-1"));
    assert_eq!(requests[0].body, openai_body);
    assert_eq!(requests[1].protocol, Protocol::Ollama);
    assert_eq!(requests[1].body, json!("{broken"));
    assert_eq!(requests[2].protocol, Protocol::Anthropic);
    assert_eq!(requests[2].header("anthropic-version"), Some("2023-06-01"));
    peer.clear_requests();
    assert!(peer.requests().is_empty());
    let got = finish(
        client()
            .get(format!("{}/api/tags", peer.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(peer.last_request().unwrap().body, Value::Null);
}
