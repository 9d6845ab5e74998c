//! The built-in model over HTTP: deterministic, normalised embeddings that
//! retrieve, extractive answers, the model name echoed.

use ghostflow_model_peer::{ModelPeer, embed_text};
use serde_json::{Value, json};

use crate::common::{ANTHROPIC, cosine, floats, post, post_with};

async fn openai_vectors(peer: &ModelPeer, input: &[&str]) -> Vec<Vec<f32>> {
    let answer = post(
        &format!("{}/embeddings", peer.openai_url()),
        &json!({"model": "text-embedding-3-small", "input": input}),
    )
    .await
    .json();
    answer["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| floats(&d["embedding"]))
        .collect()
}

async fn ollama_vectors(peer: &ModelPeer, input: &[&str]) -> Vec<Vec<f32>> {
    let answer = post(
        &format!("{}/api/embed", peer.url()),
        &json!({"model": "nomic-embed-text", "input": input}),
    )
    .await
    .json();
    answer["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect()
}

const DOCUMENTS: &[&str] = &[
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The Rust compiler checks ownership and borrowing rules at compile time.",
    "Mount Everest is the highest mountain above sea level, in the Himalayas.",
];

#[tokio::test]
async fn embeddings_are_deterministic_normalised_and_shared_by_protocols() {
    let peer = ModelPeer::start().await;
    let first = openai_vectors(&peer, DOCUMENTS).await;
    let again = openai_vectors(&peer, DOCUMENTS).await;
    let other = ModelPeer::start().await;
    let elsewhere = ollama_vectors(&other, DOCUMENTS).await;
    assert_eq!(first, again);
    assert_eq!(
        first, elsewhere,
        "the same vectors whatever the protocol or peer"
    );
    for (vector, text) in first.iter().zip(DOCUMENTS) {
        assert_eq!(vector, &embed_text(text, 256));
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
}

#[tokio::test]
async fn similar_texts_are_nearer_than_unrelated_ones() {
    let peer = ModelPeer::start().await;
    let queries = [
        ("When was the Eiffel Tower in Paris completed?", 0),
        ("How do plants turn light into energy?", 1),
        ("What does the Rust compiler check about ownership?", 2),
        ("Which mountain is the highest above sea level?", 3),
    ];
    let documents = openai_vectors(&peer, DOCUMENTS).await;
    for (query, expected) in queries {
        let q = &openai_vectors(&peer, &[query]).await[0];
        let scores: Vec<f32> = documents.iter().map(|d| cosine(q, d)).collect();
        let best = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(best, expected, "{query}: {scores:?}");
        for (i, score) in scores.iter().enumerate() {
            if i != expected {
                assert!(scores[expected] > score + 0.1, "{query}: {scores:?}");
            }
        }
    }
}

fn rag_prompt() -> Vec<Value> {
    vec![
        json!({"role": "system", "content": "Answer the question using only the context. Be brief."}),
        json!({"role": "user", "content": format!(
            "Context:\n{}\n\nQuestion: When was the Eiffel Tower completed?",
            DOCUMENTS.join("\n")
        )}),
    ]
}

#[tokio::test]
async fn every_protocol_gets_the_extractive_answer_and_its_model_back() {
    let peer = ModelPeer::start().await;
    let expected = DOCUMENTS[0];
    let openai = post(
        &format!("{}/chat/completions", peer.openai_url()),
        &json!({"model": "gpt-4o-mini-2024-07-18", "messages": rag_prompt()}),
    )
    .await
    .json();
    assert_eq!(openai["choices"][0]["message"]["content"], expected);
    assert_eq!(openai["model"], "gpt-4o-mini-2024-07-18");

    let ollama = post(
        &format!("{}/api/chat", peer.url()),
        &json!({"model": "qwen2.5:7b", "messages": rag_prompt(), "stream": false}),
    )
    .await
    .json();
    assert_eq!(ollama["message"]["content"], expected);
    assert_eq!(ollama["model"], "qwen2.5:7b");

    let prompt = rag_prompt();
    let anthropic = post_with(
        &format!("{}/v1/messages", peer.url()),
        ANTHROPIC,
        &json!({
            "model": "claude-haiku-4-5",
            "max_tokens": 200,
            "system": prompt[0]["content"],
            "messages": [prompt[1]]
        }),
    )
    .await
    .json();
    assert_eq!(anthropic["content"][0]["text"], expected);
    assert_eq!(anthropic["model"], "claude-haiku-4-5");
}

#[tokio::test]
async fn without_context_the_model_repeats_the_question() {
    let peer = ModelPeer::start().await;
    let answer = post(
        &format!("{}/chat/completions", peer.openai_url()),
        &json!({"model": "m", "messages": [{"role": "user", "content": "Say hello."}]}),
    )
    .await
    .json();
    assert_eq!(answer["choices"][0]["message"]["content"], "Say hello.");
    assert!(answer["usage"]["prompt_tokens"].as_u64().unwrap() >= 2);
}
