//! The `ghostflow` binary, run as a user would: arguments in, exit code,
//! stdout and stderr out. Fixture documents are written to a fresh
//! directory per test. Nothing here depends on timings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

/// A directory of its own under the system's temp dir, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "ghostflow-cli-{test}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Writes `name` with `text`; returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ghostflow"));
    command.args(args).stdin(Stdio::null());
    command
}

/// Runs `ghostflow` with `args` to the end.
fn ghostflow(args: &[&str]) -> Output {
    command(args).output().expect("the binary runs")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{}", stdout(out)))
}

/// A flow that builds an object from its inputs with an expression.
const GREET: &str = r#"
version: 1
name: greet
inputs:
  name:
    schema: { type: string }
    default: world
nodes:
  - id: build
    type: set
    config:
      fields:
        text: "Hello, {{ input.name }}!"
  - id: pass
    type: passthrough
edges:
  - { from: build.value, to: pass.value }
outputs:
  greeting: pass.value
"#;

/// A flow that fails in node `stop`.
const FAILING: &str = r#"
version: 1
name: failing
nodes:
  - id: start
    type: set
    config: { fields: { n: 1 } }
  - id: stop
    type: fail
    config: { message: "stopped on purpose" }
edges:
  - { from: start.value, to: stop.value }
"#;

/// A flow that echoes inputs of several schemas.
const ECHO: &str = r#"
version: 1
name: echo
inputs:
  code: { schema: { type: string } }
  count: { schema: { type: integer }, default: 0 }
  anything: { default: 0 }
  other: { default: "" }
nodes:
  - id: pass
    type: passthrough
edges:
  - { from: input.code, to: pass.value }
outputs:
  code: pass.value
  count: input.count
  anything: input.anything
  other: input.other
"#;

/// Three problems of the same kind, so all are reported together.
const BROKEN: &str = r#"version: 1
name: broken
nodes:
  - id: a
    type: no_such_node
  - id: b
    type: delay
    config: { ms: "soon" }
  - id: c
    type: if
    config: {}
"#;

/// Lines of the form `FILE:LINE:COL: ...` whose file ends with `file`.
fn located_lines<'a>(text: &'a str, file: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            let mut parts = line.splitn(4, ':');
            let (Some(origin), Some(line), Some(col), Some(_)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return false;
            };
            origin.ends_with(file) && line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok()
        })
        .collect()
}

#[test]
fn run_prints_the_outputs_and_plain_progress() {
    let dir = TempDir::new("run");
    let flow = dir.file("greet.yaml", GREET);
    let out = ghostflow(&["run", path(&flow)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout_json(&out),
        json!({"greeting": {"text": "Hello, world!"}})
    );
    let err = stderr(&out);
    // stderr is a pipe here, so progress is plain lines, without escapes.
    assert!(!err.contains('\x1b'), "{err}");
    assert!(err.contains("] run `greet` started (2 nodes)"), "{err}");
    assert!(err.contains("] build started (attempt 1)"), "{err}");
    assert!(err.contains("] build succeeded in "), "{err}");
    assert!(err.contains("] run succeeded"), "{err}");
    assert!(err.lines().all(|l| l.starts_with('[')), "{err}");
}

#[test]
fn quiet_turns_progress_off() {
    let dir = TempDir::new("quiet");
    let flow = dir.file("greet.yaml", GREET);
    let out = ghostflow(&["run", "--quiet", path(&flow)]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "");
    assert_eq!(stdout_json(&out)["greeting"]["text"], "Hello, world!");
}

#[test]
fn json_describes_a_successful_run() {
    let dir = TempDir::new("json-ok");
    let flow = dir.file("greet.yaml", GREET);
    let out = ghostflow(&["run", path(&flow), "--json", "--input", "name=Ada"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout_json(&out);
    assert_eq!(report["status"], "succeeded");
    assert!(report["run_id"].as_str().is_some_and(|id| id.len() == 36));
    assert!(report["duration_ms"].as_f64().is_some());
    assert_eq!(
        report["outputs"],
        json!({"greeting": {"text": "Hello, Ada!"}})
    );
    let nodes = report["nodes"].as_array().unwrap();
    let ids: Vec<_> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["build", "pass"]);
    for node in nodes {
        assert_eq!(node["status"], "succeeded");
        assert_eq!(node["attempts"], 1);
        assert!(node["busy_us"].is_u64());
    }
    assert!(report.get("error").is_none());
}

#[test]
fn json_describes_a_failed_run_and_exits_with_1() {
    let dir = TempDir::new("json-failed");
    let flow = dir.file("failing.yaml", FAILING);
    let out = ghostflow(&["run", path(&flow), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = stdout_json(&out);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["outputs"], json!({}));
    assert_eq!(report["error"]["node"], "stop");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped on purpose"),
        "{report}"
    );
    let status = |id: &str| {
        report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .map(|n| n["status"].clone())
    };
    assert_eq!(status("start"), Some(json!("succeeded")));
    assert_eq!(status("stop"), Some(json!("failed")));
    assert!(stderr(&out).contains("node `stop` failed"));
}

#[test]
fn a_failed_run_names_the_node_on_stderr_and_prints_nothing_on_stdout() {
    let dir = TempDir::new("failed");
    let flow = dir.file("failing.yaml", FAILING);
    let out = ghostflow(&["run", path(&flow)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(
        err.contains("] stop failed (attempt 1): stopped on purpose"),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: node `stop` failed") && l.contains("stopped on purpose")),
        "{err}"
    );
}

#[test]
fn inputs_are_typed_by_their_schema() {
    let dir = TempDir::new("inputs");
    let flow = dir.file("echo.yaml", ECHO);
    let out = ghostflow(&[
        "run",
        path(&flow),
        "--input",
        "code=007",
        "--input",
        "count=42",
        "--input",
        "anything={\"a\": [1, true]}",
        "--input",
        "other=not json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout_json(&out),
        json!({
            // `type: string`: the text, though it reads as a number.
            "code": "007",
            "count": 42,
            // No schema: JSON when it parses, text when not.
            "anything": {"a": [1, true]},
            "other": "not json",
        })
    );
}

#[test]
fn input_json_sets_inputs_and_input_overrides_it() {
    let dir = TempDir::new("input-json");
    let flow = dir.file("echo.yaml", ECHO);
    let out = ghostflow(&[
        "run",
        path(&flow),
        "--input-json",
        r#"{"code": "x", "count": 1, "anything": [1, 2]}"#,
        "--input",
        "count=2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let outputs = stdout_json(&out);
    assert_eq!(outputs["code"], "x");
    assert_eq!(outputs["count"], 2);
    assert_eq!(outputs["anything"], json!([1, 2]));

    let out = ghostflow(&["run", path(&flow), "--input-json", "[1]"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("expected a JSON object"));
}

#[test]
fn an_unknown_input_is_a_usage_error_naming_the_declared_ones() {
    let dir = TempDir::new("unknown-input");
    let flow = dir.file("echo.yaml", ECHO);
    for args in [
        vec!["--input", "code=a", "--input", "colour=red"],
        vec!["--input-json", r#"{"code": "a", "colour": "red"}"#],
    ] {
        let mut all = vec!["run", path(&flow)];
        all.extend(args);
        let out = ghostflow(&all);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(stdout(&out), "");
        let err = stderr(&out);
        assert!(err.contains("unknown input `colour`"), "{err}");
        for declared in ["`code`", "`count`", "`anything`", "`other`"] {
            assert!(err.contains(declared), "{err}");
        }
    }
}

#[test]
fn a_missing_required_input_is_a_usage_error() {
    let dir = TempDir::new("missing-input");
    let flow = dir.file("echo.yaml", ECHO);
    let out = ghostflow(&["run", path(&flow)]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("`code`") && err.contains("required"), "{err}");
}

#[test]
fn a_broken_document_does_not_run_and_exits_with_2() {
    let dir = TempDir::new("broken-run");
    let flow = dir.file("broken.yaml", BROKEN);
    let out = ghostflow(&["run", path(&flow)]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert_eq!(located_lines(&err, "broken.yaml").len(), 3, "{err}");
    assert!(!err.contains("started"), "{err}");
}

#[test]
fn validate_reports_ok_files_and_every_located_problem() {
    let dir = TempDir::new("validate");
    let good = dir.file("good.yaml", GREET);
    let broken = dir.file("broken.yaml", BROKEN);

    let out = ghostflow(&["validate", path(&good)]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), format!("{}: ok (2 nodes)\n", path(&good)));

    let out = ghostflow(&["validate", path(&broken)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let problems = located_lines(&err, "broken.yaml");
    assert_eq!(problems.len(), 3, "{err}");
    assert!(problems[0].contains(":5:11: ") && problems[0].contains("no_such_node"));
    assert!(problems[1].contains(":8:") && problems[1].contains("nodes[1].config.ms"));
    assert!(problems[2].contains(":11:") && problems[2].contains("condition"));

    let out = ghostflow(&["validate", path(&good), path(&broken)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), format!("{}: ok (2 nodes)\n", path(&good)));
    assert_eq!(located_lines(&stderr(&out), "broken.yaml").len(), 3);
}

#[test]
fn nodes_lists_the_catalog_as_text_and_json() {
    let out = ghostflow(&["nodes"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("if@1 (control): "), "{text}");
    assert!(text.contains("  in:  value?: any"), "{text}");
    assert!(text.contains("  out: then?: any, else?: any"), "{text}");
    assert!(text.contains("set@1 (data): "), "{text}");

    let out = ghostflow(&["nodes", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let specs = stdout_json(&out);
    let spec = specs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type_name"] == "if")
        .expect("`if` is in the catalog");
    assert_eq!(spec["category"], "control");
    assert!(spec["config_schema"].is_object());
}

#[test]
fn schema_prints_the_document_json_schema() {
    let out = ghostflow(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema = stdout_json(&out);
    assert!(schema["properties"]["nodes"].is_object(), "{schema}");
}

#[test]
fn init_writes_a_flow_that_runs_and_never_overwrites() {
    let dir = TempDir::new("init");
    let target = dir.0.join("new").join("flows");
    let out = ghostflow(&["init", path(&target)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let written = target.join("hello.yaml");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("wrote {}", path(&written))),
        "{text}"
    );
    assert!(text.contains("ghostflow run "), "{text}");

    let out = ghostflow(&["run", path(&written)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout_json(&out),
        json!({"greeting": {"text": "Hello, world!"}})
    );
    // The `if` takes the other branch.
    let out = ghostflow(&[
        "run",
        path(&written),
        "--input",
        "name=Ada",
        "--input",
        "loud=true",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout_json(&out),
        json!({"greeting": {"text": "HELLO, ADA!"}})
    );

    std::fs::write(&written, "# edited\n").unwrap();
    let out = ghostflow(&["init", path(&target)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "# edited\n");
}

#[test]
fn a_delay_shows_started_and_succeeded_in_order() {
    let dir = TempDir::new("delay");
    let flow = dir.file(
        "delay.yaml",
        r#"
version: 1
name: waits
inputs:
  v: { default: 7 }
nodes:
  - id: wait
    type: delay
    config: { ms: 20 }
  - id: after
    type: passthrough
edges:
  - { from: input.v, to: wait.value }
  - { from: wait.value, to: after.value }
outputs:
  v: after.value
"#,
    );
    let out = ghostflow(&["run", path(&flow)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out), json!({"v": 7}));
    let err = stderr(&out);
    let position = |needle: &str| {
        err.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with `{needle}` in:\n{err}"))
    };
    let order = [
        position("] wait started (attempt 1)"),
        position("] wait succeeded in "),
        position("] after started (attempt 1)"),
        position("] after succeeded in "),
        position("] run succeeded"),
    ];
    assert!(order.is_sorted(), "{order:?} in:\n{err}");
}

#[test]
fn usage_errors_exit_with_2() {
    let out = ghostflow(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ghostflow(&["run", "x.yaml", "--input", "no-equals-sign"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("NAME=VALUE"));
    let out = ghostflow(&["run", "/no/such/dir/flow.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read the file"));
}

/// Ctrl-C cancels the execution: exit 130, the outcome says cancelled.
#[cfg(unix)]
#[test]
fn an_interrupt_cancels_the_run_and_exits_with_130() {
    use std::io::{BufRead, BufReader};

    let dir = TempDir::new("interrupt");
    let flow = dir.file(
        "long.yaml",
        r#"
version: 1
name: long
inputs:
  v: { default: 1 }
nodes:
  - id: wait
    type: delay
    config: { ms: 600000 }
edges:
  - { from: input.v, to: wait.value }
"#,
    );
    let mut child = command(&["run", path(&flow), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // The handler is in place before the first event is shown.
    while !seen.contains("wait started") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "{seen}");
        seen.push_str(&line);
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    seen.push_str(&rest);
    assert_eq!(out.status.code(), Some(130), "{seen}");
    assert!(seen.contains("] wait cancelled"), "{seen}");
    assert!(seen.contains("interrupted"), "{seen}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "cancelled");
    assert_eq!(report["nodes"][0]["status"], "cancelled");
}

#[test]
fn expressions_read_the_environment_only_when_allowed() {
    let dir = TempDir::new("env");
    let flow = dir.file(
        "env.yaml",
        r#"
version: 1
name: env
nodes:
  - id: read
    type: set
    config: { fields: { place: "{{ env.GHOSTFLOW_CLI_TEST_PLACE }}" } }
outputs:
  value: read.value
"#,
    );
    let run = |allow: &[&str]| {
        let mut args = vec!["run", path(&flow)];
        for name in allow {
            args.extend(["--allow-env", name]);
        }
        command(&args)
            .env("GHOSTFLOW_CLI_TEST_PLACE", "here")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(located_lines(&err, "env.yaml").len(), 1, "{err}");
    assert!(err.contains("--allow-env"), "{err}");
    for allow in [["GHOSTFLOW_CLI_TEST_PLACE"], ["*"]] {
        let out = run(&allow);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout_json(&out), json!({"value": {"place": "here"}}));
    }
}

#[test]
fn file_nodes_work_under_the_current_directory_or_the_file_root_only() {
    let dir = TempDir::new("files");
    let flow = dir.file(
        "files.yaml",
        r#"
version: 1
name: files
inputs:
  path: { schema: { type: string }, default: out/note.txt }
nodes:
  - id: write
    type: file_write
    config: { create_dirs: true }
  - id: read
    type: file_read
edges:
  - { from: input.path, to: write.path }
  - { from: input.path, to: write.content }
  - { from: write.path, to: read.path }
outputs:
  text: read.content
"#,
    );
    // The current directory is the root by default.
    let out = command(&["run", path(&flow), "--quiet"])
        .current_dir(&dir.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out), json!({"text": "out/note.txt"}));
    assert_eq!(
        std::fs::read_to_string(dir.0.join("out/note.txt")).unwrap(),
        "out/note.txt"
    );

    // --file-root moves it; a path climbing out of it is refused.
    let root = dir.0.join("root");
    std::fs::create_dir(&root).unwrap();
    let escape = ["run", path(&flow), "--quiet", "--file-root", path(&root)];
    let out = command(&[&escape[..], &["--input", "path=../outside.txt"]].concat())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("node `write` failed"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.0.join("outside.txt").exists());

    // Read-only refuses the write; a missing root is a usage error.
    let out = command(&[&escape[..], &["--read-only-files"]].concat())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!root.join("out").exists());
    let missing = dir.0.join("missing");
    let out = ghostflow(&["run", path(&flow), "--file-root", path(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
}

/// A chat flow against the model peer (a local server speaking the OpenAI
/// protocol): the answer streams, and its tokens show in the plain
/// progress, joined into lines of the node, before the node's success.
#[test]
fn run_shows_the_tokens_a_chat_streams() {
    // The peer serves on this runtime's threads while the binary runs.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let peer = runtime.block_on(ghostflow_model_peer::ModelPeer::start());
    peer.api_key("sk-cli-test");
    peer.push(ghostflow_model_peer::Reply::text(
        "Paris is the capital of France.\nIt lies on the Seine.",
    ));
    let dir = TempDir::new("chat");
    let flow = dir.file(
        "chat.yaml",
        &format!(
            r#"
version: 1
name: ask
nodes:
  - id: ask
    type: chat
    config:
      model: {{ provider: openai, name: test-model, base_url: "{}", api_key_secret: CLI_MODEL_KEY }}
      prompt: What is the capital of France?
outputs:
  answer: ask.text
"#,
            peer.openai_url()
        ),
    );
    let out = command(&["run", path(&flow)])
        .env("CLI_MODEL_KEY", "sk-cli-test")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let at = |suffix: &str| {
        lines
            .iter()
            .position(|l| l.ends_with(suffix))
            .unwrap_or_else(|| panic!("no line ending with `{suffix}`:\n{err}"))
    };
    let first = at("] ask: Paris is the capital of France.");
    let second = at("] ask: It lies on the Seine.");
    let succeeded = lines
        .iter()
        .position(|l| l.contains("] ask succeeded in "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(first < second && second < succeeded, "{err}");
    assert!(!err.contains("sk-cli-test"), "{err}");
    assert!(
        stdout(&out).contains("Paris is the capital of France."),
        "{}",
        stdout(&out)
    );
    let request = peer.last_request().unwrap();
    assert_eq!(request.body["stream"], json!(true));
    assert_eq!(request.header("authorization"), Some("Bearer sk-cli-test"));
}
