//! The `ghostflow-model-peer` binary: its help, and serving until killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::{post, post_with};

const BINARY: &str = env!("CARGO_BIN_EXE_ghostflow-model-peer");

#[test]
fn help_lists_the_options_and_the_protocols() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "--port",
        "--host",
        "--api-key",
        "--models",
        "/v1/chat/completions",
        "/api/chat",
        "/v1/messages",
    ] {
        assert!(help.contains(needle), "{needle} in {help}");
    }
}

#[tokio::test]
async fn it_prints_its_urls_and_serves_them() {
    let mut child = Command::new(BINARY)
        .args(["--port", "0", "--api-key", "sk-bin"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("ghostflow-model-peer listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    let openai = lines.next().unwrap().unwrap();
    assert!(openai.contains(&format!("{url}/v1")), "{openai}");
    let answer = post_with(
        &format!("{url}/v1/chat/completions"),
        &[("authorization", "Bearer sk-bin")],
        &json!({"model": "m", "messages": [{"role": "user", "content": "Ping?"}]}),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["choices"][0]["message"]["content"], "Ping?");
    let refused = post(
        &format!("{url}/v1/chat/completions"),
        &json!({"model": "m", "messages": [{"role": "user", "content": "Ping?"}]}),
    )
    .await;
    assert_eq!(refused.status, 401);
    child.kill().unwrap();
    child.wait().unwrap();
}
