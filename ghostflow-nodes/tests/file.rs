//! The file nodes against real files: each test makes its own temporary
//! directory holding the file root (`root/`) and, beside it, a directory
//! the flows must never reach (`outside/`).
#![cfg(feature = "file")]
#![cfg(unix)]

mod common;
use common::{load, load_error};

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ghostflow::document::Document;
use ghostflow::{Engine, Error, Flow, Inputs, NodeFailure, NodeStatus, Outcome};
use ghostflow_nodes::file::{FileList, FileRead, FileRoot, FileWrite, IfExists, WriteFormat};
use serde_json::{Value, json};

// ------------------------------------------------------------------ helpers

/// A temporary directory with the file root and a directory outside it.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret.txt"), "top secret").unwrap();
        Sandbox { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    /// Writes `content` at `path` under the root, making directories.
    fn put(&self, path: &str, content: &str) {
        let full = self.root().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    fn get(&self, path: &str) -> String {
        std::fs::read_to_string(self.root().join(path)).unwrap()
    }

    fn engine(&self) -> Engine {
        Engine::builder()
            .resource(FileRoot::new(self.root()))
            .build()
    }

    fn read_only_engine(&self) -> Engine {
        Engine::builder()
            .resource(FileRoot::new(self.root()).read_only())
            .build()
    }

    /// Every path under the sandbox (root and outside), sorted, to see
    /// that nothing else was created: no temporary file, nothing outside.
    fn tree(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let path = entry.path();
                out.push(path.strip_prefix(base).unwrap().display().to_string());
                if entry.file_type().unwrap().is_dir() {
                    walk(&path, base, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }
}

/// A flow of one node `n` of `node_type` with `config`; each flow input
/// named in `inputs` goes to the node's port of the same name, and each
/// port named in `outputs` becomes a flow output.
fn one_node(node_type: &str, config: Value, inputs: &[&str], outputs: &[&str]) -> Flow {
    let declared: String = inputs.iter().map(|i| format!("  {i}: {{}}\n")).collect();
    let edges: String = inputs
        .iter()
        .map(|i| format!("  - {{ from: input.{i}, to: n.{i} }}\n"))
        .collect();
    let outs: String = outputs.iter().map(|o| format!("  {o}: n.{o}\n")).collect();
    load(&format!(
        "version: 1\nname: one\n{}nodes:\n  - id: n\n    type: {node_type}\n    config: {config}\n{}outputs:\n{outs}",
        if inputs.is_empty() {
            String::new()
        } else {
            format!("inputs:\n{declared}")
        },
        if inputs.is_empty() {
            String::new()
        } else {
            format!("edges:\n{edges}")
        },
    ))
}

fn read_flow(config: Value) -> Flow {
    one_node("file_read", config, &[], &["content", "path", "bytes"])
}

fn write_flow(config: Value) -> Flow {
    one_node(
        "file_write",
        config,
        &["content"],
        &["path", "bytes", "created"],
    )
}

fn list_flow(config: Value) -> Flow {
    one_node("file_list", config, &[], &["entries", "paths", "truncated"])
}

async fn run(engine: &Engine, flow: &Flow, inputs: Value) -> Result<Outcome, Error> {
    let inputs = Inputs::from_json(inputs.as_object().cloned().unwrap_or_default());
    engine.run(flow, inputs).await
}

async fn outputs(engine: &Engine, flow: &Flow, inputs: Value) -> Value {
    let outcome = run(engine, flow, inputs)
        .await
        .unwrap_or_else(|e| panic!("the run failed: {e}"));
    Value::Object(outcome.outputs_json().unwrap())
}

/// The message and kind of the node failure of a run that must fail.
async fn failure(engine: &Engine, flow: &Flow, inputs: Value) -> (String, bool) {
    match run(engine, flow, inputs).await {
        Err(Error::NodeFailed { error, .. }) => (error.message().to_owned(), error.is_retryable()),
        Err(other) => panic!("expected a node failure, got {other}"),
        Ok(outcome) => panic!("expected a node failure, got {:?}", outcome.outputs_json()),
    }
}

// ----------------------------------------------------------------- reading

#[tokio::test]
async fn file_read_reads_text_json_bytes_and_lines() {
    let s = Sandbox::new();
    s.put("notes/a.txt", "héllo\r\nworld\n");
    s.put("data.json", r#"{"items": [1, 2]}"#);
    std::fs::write(s.root().join("blob.bin"), [0u8, 159, 146, 150, 255]).unwrap();
    let e = s.engine();
    assert_eq!(
        outputs(&e, &read_flow(json!({"path": "notes/a.txt"})), json!({})).await,
        json!({"content": "héllo\r\nworld\n", "path": "notes/a.txt", "bytes": 14})
    );
    assert_eq!(
        outputs(
            &e,
            &read_flow(json!({"path": "notes/a.txt", "format": "lines"})),
            json!({})
        )
        .await["content"],
        json!(["héllo", "world"])
    );
    assert_eq!(
        outputs(
            &e,
            &read_flow(json!({"path": "data.json", "format": "json"})),
            json!({})
        )
        .await["content"],
        json!({"items": [1, 2]})
    );
    assert_eq!(
        outputs(
            &e,
            &read_flow(json!({"path": "blob.bin", "format": "bytes"})),
            json!({})
        )
        .await,
        json!({"content": "AJ+Slv8=", "path": "blob.bin", "bytes": 5})
    );
    // `.` and `..` that stay inside are fine; the output shows the path
    // as written, without `.` parts.
    assert_eq!(
        outputs(
            &e,
            &read_flow(json!({"path": "./notes/../notes/a.txt"})),
            json!({})
        )
        .await["path"],
        json!("notes/../notes/a.txt")
    );
    // An absolute path is accepted when it lies under the root.
    let absolute = s.root().join("data.json").display().to_string();
    assert_eq!(
        outputs(&e, &read_flow(json!({"path": absolute})), json!({})).await["path"],
        json!("data.json")
    );
    // ... also through the root's canonical path.
    let canonical = std::fs::canonicalize(s.root()).unwrap().join("data.json");
    assert_eq!(
        outputs(
            &e,
            &read_flow(json!({"path": canonical.display().to_string()})),
            json!({})
        )
        .await["path"],
        json!("data.json")
    );
}

#[tokio::test]
async fn file_read_takes_its_path_from_an_input_or_an_expression() {
    let s = Sandbox::new();
    s.put("config/prod.json", r#"{"env": "prod"}"#);
    s.put("other.txt", "other");
    let e = s.engine();
    let flow = one_node(
        "file_read",
        json!({"path": "other.txt"}),
        &["path"],
        &["content"],
    );
    assert_eq!(
        outputs(&e, &flow, json!({"path": "config/prod.json"})).await["content"],
        json!(r#"{"env": "prod"}"#)
    );
    let flow = load(
        r#"
version: 1
name: computed
inputs:
  env: {}
nodes:
  - id: n
    type: file_read
    config: { path: "config/{{ input.env }}.json", format: json }
outputs:
  content: n.content
"#,
    );
    assert_eq!(
        outputs(&e, &flow, json!({"env": "prod"})).await["content"],
        json!({"env": "prod"})
    );
    // The confinement is checked on the final path, at run time.
    let (message, retryable) = failure(&e, &flow, json!({"env": "../../outside/x"})).await;
    assert_eq!(
        message,
        "`config/../../outside/x.json` leads outside the file root"
    );
    assert!(!retryable);
    // Neither a configured path nor an input: a clear failure.
    let flow = one_node("file_read", json!({}), &[], &["content"]);
    let (message, _) = failure(&e, &flow, json!({})).await;
    assert_eq!(
        message,
        "config.path: no path: set `path` in the config or connect the `path` input"
    );
}

#[tokio::test]
async fn file_read_failures_name_the_path_relative_to_the_root() {
    let s = Sandbox::new();
    s.put("dir/a.txt", "a");
    s.put("big.txt", &"x".repeat(100));
    std::fs::write(s.root().join("latin1.txt"), b"caf\xe9\n").unwrap();
    s.put("bad.json", "{\"a\": }");
    let e = s.engine();
    let root = s.root().display().to_string();
    for (config, expected) in [
        (json!({"path": "nope.txt"}), "`nope.txt` does not exist"),
        (
            json!({"path": "missing/a.txt"}),
            "`missing/a.txt`: the directory `missing` does not exist",
        ),
        (
            json!({"path": "dir/a.txt/b"}),
            "`dir/a.txt/b`: `dir/a.txt` is not a directory",
        ),
        (json!({"path": "dir"}), "`dir` is a directory"),
        (json!({"path": "."}), "`.` is a directory"),
        (
            json!({"path": "big.txt", "max_bytes": 99}),
            "`big.txt` is larger than 99 bytes (config.max_bytes)",
        ),
        (
            json!({"path": "latin1.txt"}),
            "`latin1.txt`: not UTF-8 text: the byte 0xe9 at offset 3 (line 1) starts no valid character; `format: bytes` reads any file as base64",
        ),
        (
            json!({"path": "bad.json", "format": "json"}),
            "`bad.json`: not valid JSON: expected value at line 1 column 7; `format: text` reads it as text",
        ),
        (json!({"path": ""}), "`` is not a usable path: it is empty"),
    ] {
        let (message, retryable) = failure(&e, &read_flow(config.clone()), json!({})).await;
        assert_eq!(message, expected, "{config}");
        assert!(!retryable, "{config}");
        assert!(
            !message.contains(&root),
            "the root's location shows: {message}"
        );
    }
    // Exactly `max_bytes` is fine.
    assert_eq!(
        outputs(
            &e,
            &read_flow(json!({"path": "big.txt", "max_bytes": 100})),
            json!({})
        )
        .await["bytes"],
        json!(100)
    );
}

// ---------------------------------------------------------------- escapes

#[tokio::test]
async fn paths_that_lead_outside_the_root_are_refused() {
    let s = Sandbox::new();
    s.put("inside/ok.txt", "fine");
    let root = s.root();
    let outside = s.outside();
    // A link to a file outside, relative and absolute.
    symlink("../outside/secret.txt", root.join("rel-link.txt")).unwrap();
    symlink(outside.join("secret.txt"), root.join("abs-link.txt")).unwrap();
    // A link to the outside directory, as a parent of the path.
    symlink(&outside, root.join("out-dir")).unwrap();
    // A link inside that climbs out with `..`.
    symlink("../../outside", root.join("inside/climb")).unwrap();
    // Links that stay inside are followed.
    symlink("inside/ok.txt", root.join("good-link.txt")).unwrap();
    symlink(root.join("inside"), root.join("good-dir")).unwrap();
    symlink("loop-b", root.join("loop-a")).unwrap();
    symlink("loop-a", root.join("loop-b")).unwrap();
    let e = s.engine();
    for (path, expected) in [
        (
            "../outside/secret.txt",
            "`../outside/secret.txt` leads outside the file root",
        ),
        (
            "inside/../../x",
            "`inside/../../x` leads outside the file root",
        ),
        ("/etc/passwd", "`/etc/passwd` leads outside the file root"),
        (
            "rel-link.txt",
            "`rel-link.txt` leads outside the file root (through the symbolic link `rel-link.txt`)",
        ),
        (
            "abs-link.txt",
            "`abs-link.txt` leads outside the file root (through the symbolic link `abs-link.txt`)",
        ),
        (
            "out-dir/secret.txt",
            "`out-dir/secret.txt` leads outside the file root (through the symbolic link `out-dir`)",
        ),
        (
            "inside/climb/secret.txt",
            "`inside/climb/secret.txt` leads outside the file root (through the symbolic link `inside/climb`)",
        ),
        (
            "loop-a",
            "`loop-a`: more than 40 symbolic links to follow (a loop?)",
        ),
    ] {
        let (message, retryable) = failure(&e, &read_flow(json!({"path": path})), json!({})).await;
        assert_eq!(message, expected, "{path}");
        assert!(!retryable);
        assert!(!message.contains("top secret"));
    }
    for path in [
        "good-link.txt",
        "good-dir/ok.txt",
        "good-dir/../inside/ok.txt",
    ] {
        assert_eq!(
            outputs(&e, &read_flow(json!({"path": path})), json!({})).await["content"],
            json!("fine"),
            "{path}"
        );
    }
    // Writes through links out are refused too, and touch nothing outside.
    let before = s.tree();
    for (path, expected) in [
        (
            "out-dir/new.txt",
            "`out-dir/new.txt` leads outside the file root (through the symbolic link `out-dir`)",
        ),
        (
            "abs-link.txt",
            "`abs-link.txt` leads outside the file root (through the symbolic link `abs-link.txt`)",
        ),
        (
            "../outside/new.txt",
            "`../outside/new.txt` leads outside the file root",
        ),
    ] {
        let (message, _) = failure(
            &e,
            &write_flow(json!({"path": path, "create_dirs": true})),
            json!({"content": "pwned"}),
        )
        .await;
        assert_eq!(message, expected, "{path}");
    }
    assert_eq!(s.tree(), before);
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "top secret"
    );
    // A write through a link that stays inside writes the link's target.
    outputs(
        &e,
        &write_flow(json!({"path": "good-link.txt"})),
        json!({"content": "rewritten"}),
    )
    .await;
    assert_eq!(s.get("inside/ok.txt"), "rewritten");
    assert!(
        std::fs::symlink_metadata(root.join("good-link.txt"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_for_a_link_mid_flight_never_leads_out() {
    // One thread keeps turning `d` from a directory into a link to the
    // outside and back, while flows read `d/secret.txt` and write
    // `d/new.txt`. A path checked and then opened by name would sometimes
    // be redirected outside; walked from directory handles, it never is.
    let s = Sandbox::new();
    let root = s.root();
    let outside = s.outside();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (root, outside, stop) = (root.clone(), outside.clone(), stop.clone());
        std::thread::spawn(move || {
            let d = root.join("d");
            for _ in 0..20_000 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                std::fs::create_dir(&d).unwrap();
                std::fs::write(d.join("secret.txt"), "inside").unwrap();
                // Writes may be adding files meanwhile: retry until empty.
                while std::fs::remove_dir_all(&d).is_err() {}
                symlink(&outside, &d).unwrap();
                std::fs::remove_file(&d).unwrap();
            }
        })
    };
    let e = s.engine();
    let read = read_flow(json!({"path": "d/secret.txt"}));
    let write = write_flow(json!({"path": "d/new.txt"}));
    let mut read_inside = 0;
    for _ in 0..300 {
        match run(&e, &read, json!({})).await {
            Ok(outcome) => {
                // Empty when read between the swapper's create and write.
                let content = outcome.output::<String>("content").unwrap();
                assert!(content == "inside" || content.is_empty(), "{content}");
                read_inside += 1;
            }
            Err(Error::NodeFailed { error, .. }) => {
                assert!(
                    !error.message().contains("top secret"),
                    "{}",
                    error.message()
                );
            }
            Err(other) => panic!("{other}"),
        }
        let _ = run(&e, &write, json!({"content": "pwned"})).await;
        assert!(!outside.join("new.txt").exists(), "a write went outside");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    swapper.join().unwrap();
    assert!(!outside.join("new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "top secret"
    );
    // Not an assertion on timing: just that the race was really run (some
    // reads found the directory in place).
    eprintln!("{read_inside} of 300 reads found the directory in place");
}

#[tokio::test]
async fn without_a_root_the_nodes_say_how_to_give_one() {
    let s = Sandbox::new();
    s.put("a.txt", "a");
    let expected = "no file root: the file nodes only touch files under a directory the application chooses; give one with `Engine::builder().resource(ghostflow_nodes::file::FileRoot::new(dir))` (the `ghostflow` CLI gives the current directory, or `--file-root DIR`)";
    let bare = Engine::new();
    for (flow, inputs) in [
        (read_flow(json!({"path": "a.txt"})), json!({})),
        (
            write_flow(json!({"path": "a.txt"})),
            json!({"content": "b"}),
        ),
        (list_flow(json!({"pattern": "*"})), json!({})),
    ] {
        let (message, retryable) = failure(&bare, &flow, inputs).await;
        assert_eq!(message, expected);
        assert!(!retryable);
    }
    assert_eq!(s.get("a.txt"), "a");
    // A root that does not exist says so.
    let missing = Engine::builder()
        .resource(FileRoot::new(s.root().join("nope")))
        .build();
    let (message, _) = failure(&missing, &read_flow(json!({"path": "a.txt"})), json!({})).await;
    assert!(
        message.starts_with("the file root cannot be opened: No such file or directory"),
        "{message}"
    );
}

#[tokio::test]
async fn a_read_only_root_refuses_writes_and_allows_reads() {
    let s = Sandbox::new();
    s.put("a.txt", "old");
    let e = s.read_only_engine();
    let before = s.tree();
    for config in [
        json!({"path": "a.txt"}),
        json!({"path": "new.txt"}),
        json!({"path": "a.txt", "if_exists": "append"}),
        json!({"path": "d/new.txt", "create_dirs": true}),
    ] {
        let (message, retryable) =
            failure(&e, &write_flow(config.clone()), json!({"content": "x"})).await;
        let path = config["path"].as_str().unwrap();
        assert_eq!(
            message,
            format!("the file root is read-only: `{path}` cannot be written")
        );
        assert!(!retryable);
    }
    assert_eq!(s.tree(), before);
    assert_eq!(s.get("a.txt"), "old");
    assert_eq!(
        outputs(&e, &read_flow(json!({"path": "a.txt"})), json!({})).await["content"],
        json!("old")
    );
    assert_eq!(
        outputs(&e, &list_flow(json!({"pattern": "*.txt"})), json!({})).await["paths"],
        json!(["a.txt"])
    );
}

// ----------------------------------------------------------------- writing

#[tokio::test]
async fn file_write_writes_text_json_and_bytes() {
    let s = Sandbox::new();
    let e = s.engine();
    assert_eq!(
        outputs(
            &e,
            &write_flow(json!({"path": "a.txt"})),
            json!({"content": "héllo"})
        )
        .await,
        json!({"path": "a.txt", "bytes": 6, "created": true})
    );
    assert_eq!(s.get("a.txt"), "héllo");
    outputs(
        &e,
        &write_flow(json!({"path": "a.json", "format": "json"})),
        json!({"content": {"b": [1, 2], "a": null}}),
    )
    .await;
    assert_eq!(s.get("a.json"), "{\"b\":[1,2],\"a\":null}\n");
    outputs(
        &e,
        &write_flow(json!({"path": "p.json", "format": "json", "pretty": true})),
        json!({"content": {"b": [1]}}),
    )
    .await;
    assert_eq!(s.get("p.json"), "{\n  \"b\": [\n    1\n  ]\n}\n");
    let out = outputs(
        &e,
        &write_flow(json!({"path": "blob.bin", "format": "bytes"})),
        json!({"content": "AJ+Slv8"}),
    )
    .await;
    assert_eq!(out["bytes"], json!(5));
    assert_eq!(
        std::fs::read(s.root().join("blob.bin")).unwrap(),
        [0u8, 159, 146, 150, 255]
    );
    // Overwriting says the file was not created, and keeps its permissions.
    std::fs::set_permissions(
        s.root().join("a.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    assert_eq!(
        outputs(
            &e,
            &write_flow(json!({"path": "a.txt"})),
            json!({"content": "new"})
        )
        .await,
        json!({"path": "a.txt", "bytes": 3, "created": false})
    );
    assert_eq!(s.get("a.txt"), "new");
    let mode = std::fs::metadata(s.root().join("a.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(
        s.tree(),
        [
            "outside",
            "outside/secret.txt",
            "root",
            "root/a.json",
            "root/a.txt",
            "root/blob.bin",
            "root/p.json"
        ]
    );
}

#[tokio::test]
async fn file_write_if_exists_fail_and_append() {
    let s = Sandbox::new();
    s.put("keep.txt", "old");
    let e = s.engine();
    let before = s.tree();
    let (message, retryable) = failure(
        &e,
        &write_flow(json!({"path": "keep.txt", "if_exists": "fail"})),
        json!({"content": "new"}),
    )
    .await;
    assert_eq!(message, "`keep.txt` already exists (if_exists: fail)");
    assert!(!retryable);
    assert_eq!(s.get("keep.txt"), "old");
    assert_eq!(s.tree(), before);
    // A new file is fine with `fail`.
    assert_eq!(
        outputs(
            &e,
            &write_flow(json!({"path": "fresh.txt", "if_exists": "fail"})),
            json!({"content": "new"})
        )
        .await["created"],
        json!(true)
    );
    assert_eq!(s.get("fresh.txt"), "new");
    // Append creates, then appends: JSON Lines.
    let append = write_flow(json!({"path": "log.jsonl", "if_exists": "append", "format": "json"}));
    let first = outputs(&e, &append, json!({"content": {"n": 1}})).await;
    assert_eq!(
        first,
        json!({"path": "log.jsonl", "bytes": 8, "created": true})
    );
    let second = outputs(&e, &append, json!({"content": {"n": 2}})).await;
    assert_eq!(second["created"], json!(false));
    assert_eq!(s.get("log.jsonl"), "{\"n\":1}\n{\"n\":2}\n");
    let text_append = write_flow(json!({"path": "keep.txt", "if_exists": "append"}));
    outputs(&e, &text_append, json!({"content": "+more"})).await;
    assert_eq!(s.get("keep.txt"), "old+more");
}

#[tokio::test]
async fn file_write_creates_parent_directories_only_when_told() {
    let s = Sandbox::new();
    let e = s.engine();
    let (message, retryable) = failure(
        &e,
        &write_flow(json!({"path": "out/2024/a.txt"})),
        json!({"content": "x"}),
    )
    .await;
    assert_eq!(
        message,
        "`out/2024/a.txt`: the directory `out` does not exist (set `create_dirs: true` to create it)"
    );
    assert!(!retryable);
    assert!(!s.root().join("out").exists());
    outputs(
        &e,
        &write_flow(json!({"path": "out/2024/a.txt", "create_dirs": true})),
        json!({"content": "x"}),
    )
    .await;
    assert_eq!(s.get("out/2024/a.txt"), "x");
}

#[tokio::test]
async fn failed_writes_leave_the_old_file_and_no_temporary_file() {
    let s = Sandbox::new();
    s.put("a.txt", "old");
    s.put("dir/inner.txt", "inner");
    let e = s.engine();
    let before = s.tree();
    for (config, content, expected) in [
        (
            json!({"path": "a.txt"}),
            json!({"not": "text"}),
            "input `content`: `format: text` writes a string, got an object (`format: json` writes any value)",
        ),
        (
            json!({"path": "a.txt", "format": "bytes"}),
            json!("%%%"),
            "input `content`: `format: bytes` writes base64: Invalid symbol 37, offset 0.",
        ),
        (
            json!({"path": "a.txt", "format": "bytes"}),
            json!(12),
            "input `content`: `format: bytes` writes a base64 string, got a number",
        ),
        (json!({"path": "dir"}), json!("x"), "`dir` is a directory"),
        (
            json!({"path": "a.txt/b"}),
            json!("x"),
            "`a.txt/b`: `a.txt` is not a directory",
        ),
    ] {
        let (message, retryable) =
            failure(&e, &write_flow(config.clone()), json!({"content": content})).await;
        assert_eq!(message, expected, "{config}");
        assert!(!retryable);
        assert_eq!(s.get("a.txt"), "old");
        assert_eq!(s.tree(), before, "{config}");
    }
}

#[tokio::test]
async fn fifos_and_other_special_files_are_refused_without_blocking() {
    let s = Sandbox::new();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        s.root().join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_bits_truncate(0o644),
        0,
    )
    .unwrap();
    let e = s.engine();
    // Opening a FIFO for reading would wait for a writer: it must not.
    let (message, retryable) = failure(&e, &read_flow(json!({"path": "pipe"})), json!({})).await;
    assert_eq!(message, "`pipe` is not a regular file (it is a FIFO)");
    assert!(!retryable);
    for if_exists in ["overwrite", "append"] {
        let (message, _) = failure(
            &e,
            &write_flow(json!({"path": "pipe", "if_exists": if_exists})),
            json!({"content": "x"}),
        )
        .await;
        assert_eq!(message, "`pipe` is not a regular file (it is a FIFO)");
    }
    let out = outputs(&e, &list_flow(json!({"pattern": "*"})), json!({})).await;
    assert_eq!(out["entries"][0]["kind"], json!("other"));
    assert_eq!(
        s.tree(),
        ["outside", "outside/secret.txt", "root", "root/pipe"]
    );
}

#[tokio::test]
async fn a_write_abandoned_by_a_timeout_leaves_one_whole_version() {
    let s = Sandbox::new();
    s.put("big.txt", "old");
    let e = s.engine();
    let flow = load(
        r#"
version: 1
name: slow-write
inputs:
  content: {}
nodes:
  - id: n
    type: file_write
    config: { path: big.txt }
    timeout: 1ms
edges:
  - { from: input.content, to: n.content }
outputs:
  path: n.path
"#,
    );
    let content = "y".repeat(16 << 20);
    let result = run(&e, &flow, json!({"content": content})).await;
    // The engine drops the node's future at the timeout; the write, on the
    // blocking pool, sees it between chunks and gives up, removing its
    // temporary file (or it had already finished). Wait for it to end.
    for _ in 0..200 {
        if s.tree().len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        s.tree(),
        ["outside", "outside/secret.txt", "root", "root/big.txt"]
    );
    let text = s.get("big.txt");
    match result {
        Err(Error::NodeFailed { error, .. }) => {
            eprintln!(
                "the write failed: {}; old kept: {}",
                error.message(),
                text == "old"
            );
            assert!(text == "old" || text == content);
        }
        Ok(_) => assert_eq!(text, content),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn concurrent_writes_replace_the_file_whole() {
    let s = Sandbox::new();
    s.put("shared.txt", &"0".repeat(200_000));
    let e = s.engine();
    let flow = write_flow(json!({"path": "shared.txt"}));
    let writes = (1..=8).map(|i| {
        let content = i.to_string().repeat(200_000);
        let (e, flow) = (e.clone(), flow.clone());
        async move { run(&e, &flow, json!({"content": content})).await }
    });
    let reader = async {
        // Every read while they run sees one complete version.
        for _ in 0..20 {
            let text = std::fs::read_to_string(s.root().join("shared.txt")).unwrap();
            assert_eq!(text.len(), 200_000);
            let first = text.as_bytes()[0];
            assert!(text.bytes().all(|b| b == first));
            tokio::task::yield_now().await;
        }
    };
    let (results, ()) = tokio::join!(futures::future::join_all(writes), reader);
    for result in results {
        result.unwrap();
    }
    let text = s.get("shared.txt");
    assert!(text.bytes().all(|b| b == text.as_bytes()[0]));
    assert_eq!(
        s.tree(),
        ["outside", "outside/secret.txt", "root", "root/shared.txt"]
    );
}

// ----------------------------------------------------------------- listing

/// Sets a file's modification time, to check the `modified` output.
fn set_mtime(path: &Path, secs: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[tokio::test]
async fn file_list_finds_matches_sorted_with_their_details() {
    let s = Sandbox::new();
    for path in [
        "reports/2024/b.csv",
        "reports/2024/a.csv",
        "reports/2023/q4/z.csv",
        "reports/2024/notes.txt",
        "reports-old/x.csv",
        "top.csv",
    ] {
        s.put(path, "1,2\n");
    }
    set_mtime(&s.root().join("reports/2024/a.csv"), 1_700_000_000);
    let e = s.engine();
    let out = outputs(
        &e,
        &list_flow(json!({"pattern": "reports/**/*.csv"})),
        json!({}),
    )
    .await;
    assert_eq!(
        out["paths"],
        json!([
            "reports/2023/q4/z.csv",
            "reports/2024/a.csv",
            "reports/2024/b.csv"
        ])
    );
    assert_eq!(out["truncated"], json!(false));
    assert_eq!(
        out["entries"][1],
        json!({
            "path": "reports/2024/a.csv",
            "name": "a.csv",
            "kind": "file",
            "size": 4,
            "modified": "2023-11-14T22:13:20Z",
        })
    );
    // `*` stays in its component; directories match too; kinds filter.
    let out = outputs(&e, &list_flow(json!({"pattern": "*"})), json!({})).await;
    assert_eq!(out["paths"], json!(["reports", "reports-old", "top.csv"]));
    assert_eq!(out["entries"][0]["kind"], json!("dir"));
    let out = outputs(
        &e,
        &list_flow(json!({"pattern": "*", "kind": "file"})),
        json!({}),
    )
    .await;
    assert_eq!(out["paths"], json!(["top.csv"]));
    let out = outputs(
        &e,
        &list_flow(json!({"pattern": "reports/**", "kind": "dir"})),
        json!({}),
    )
    .await;
    assert_eq!(
        out["paths"],
        json!(["reports/2023", "reports/2023/q4", "reports/2024"])
    );
    let out = outputs(
        &e,
        &list_flow(json!({"pattern": "reports/*/*.{csv,txt}"})),
        json!({}),
    )
    .await;
    assert_eq!(
        out["paths"],
        json!([
            "reports/2024/a.csv",
            "reports/2024/b.csv",
            "reports/2024/notes.txt"
        ])
    );
    // Sorted component by component: `reports/...` before `reports-old`.
    let out = outputs(&e, &list_flow(json!({"pattern": "**/*.csv"})), json!({})).await;
    assert_eq!(
        out["paths"],
        json!([
            "reports/2023/q4/z.csv",
            "reports/2024/a.csv",
            "reports/2024/b.csv",
            "reports-old/x.csv",
            "top.csv"
        ])
    );
    // A prefix that does not exist lists nothing.
    let out = outputs(
        &e,
        &list_flow(json!({"pattern": "nothing/*.csv"})),
        json!({}),
    )
    .await;
    assert_eq!(out["paths"], json!([]));
}

#[tokio::test]
async fn file_list_is_bounded() {
    let s = Sandbox::new();
    for i in 0..30 {
        s.put(&format!("many/{i:02}.txt"), "x");
    }
    let e = s.engine();
    let out = outputs(
        &e,
        &list_flow(json!({"pattern": "many/*.txt", "max_entries": 5})),
        json!({}),
    )
    .await;
    assert_eq!(
        out["paths"],
        json!([
            "many/00.txt",
            "many/01.txt",
            "many/02.txt",
            "many/03.txt",
            "many/04.txt"
        ])
    );
    assert_eq!(out["truncated"], json!(true));
    let out = outputs(
        &e,
        &list_flow(json!({"pattern": "many/*.txt", "max_entries": 30})),
        json!({}),
    )
    .await;
    assert_eq!(out["truncated"], json!(false));
    let (message, retryable) = failure(
        &e,
        &list_flow(json!({"pattern": "**/*.txt", "max_scanned": 10})),
        json!({}),
    )
    .await;
    assert_eq!(
        message,
        "the listing looked at more than 10 entries (config.max_scanned); narrow the pattern"
    );
    assert!(!retryable);
}

#[tokio::test]
async fn file_list_never_follows_a_symbolic_link() {
    let s = Sandbox::new();
    s.put("inside/a.txt", "a");
    symlink(s.outside(), s.root().join("out-dir")).unwrap();
    symlink("inside", s.root().join("in-dir")).unwrap();
    let e = s.engine();
    let out = outputs(&e, &list_flow(json!({"pattern": "**"})), json!({})).await;
    assert_eq!(
        out["paths"],
        json!(["in-dir", "inside", "inside/a.txt", "out-dir"])
    );
    assert_eq!(out["entries"][0]["kind"], json!("symlink"));
    assert_eq!(out["entries"][3]["kind"], json!("symlink"));
    let out = outputs(
        &e,
        &list_flow(json!({"pattern": "**", "kind": "symlink"})),
        json!({}),
    )
    .await;
    assert_eq!(out["paths"], json!(["in-dir", "out-dir"]));
    // A literal prefix through a link out is refused, like any path.
    let (message, _) = failure(&e, &list_flow(json!({"pattern": "out-dir/*"})), json!({})).await;
    assert_eq!(
        message,
        "`out-dir` leads outside the file root (through the symbolic link `out-dir`)"
    );
    // One that stays inside is followed, and listed under the prefix.
    let out = outputs(&e, &list_flow(json!({"pattern": "in-dir/*"})), json!({})).await;
    assert_eq!(out["paths"], json!(["in-dir/a.txt"]));
}

// ------------------------------------------------------------- bad configs

#[tokio::test]
async fn bad_configs_fail_when_the_flow_loads_at_their_path() {
    for (node_type, config, expected) in [
        (
            "file_read",
            "{ path: a, format: xml }",
            "nodes[0].config.format:",
        ),
        (
            "file_read",
            "{ path: a, max_bytes: -1 }",
            "nodes[0].config.max_bytes:",
        ),
        ("file_read", "{ path: [a] }", "nodes[0].config.path:"),
        ("file_read", "{ paht: a }", "unknown field `paht`"),
        (
            "file_write",
            "{ path: a, if_exists: replace }",
            "nodes[0].config.if_exists:",
        ),
        (
            "file_write",
            "{ path: a, create_dirs: maybe }",
            "nodes[0].config.create_dirs:",
        ),
        (
            "file_write",
            "{ path: a, format: csv }",
            "nodes[0].config.format:",
        ),
        (
            "file_list",
            "{}",
            "nodes[0].config: missing field `pattern`",
        ),
        (
            "file_list",
            "{ pattern: '/etc/*' }",
            "nodes[0].config.pattern: `/etc/*`: the pattern is relative to the file root; remove the leading `/`",
        ),
        (
            "file_list",
            "{ pattern: '../*' }",
            "nodes[0].config.pattern: `../*`: a pattern has no empty, `.` or `..` components",
        ),
        (
            "file_list",
            "{ pattern: 'a/[b' }",
            "nodes[0].config.pattern: `a/[b`: unclosed character class",
        ),
        (
            "file_list",
            "{ pattern: '*', kind: link }",
            "nodes[0].config.kind:",
        ),
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
}

// --------------------------------------------------------------- on_error

#[tokio::test]
async fn on_error_continue_and_skip() {
    let s = Sandbox::new();
    let e = s.engine();
    let doc = |policy: &str, extra: &str| {
        load(&format!(
            r#"
version: 1
name: policies
nodes:
  - id: read
    type: file_read
    config: {{ path: missing.txt }}
    on_error: {policy}
  - id: copy
    type: file_write
    config: {{ path: copy.txt }}
edges:
  - {{ from: read.content, to: copy.content }}
outputs:
  written: copy.path
{extra}"#
        ))
    };
    let outcome = run(&e, &doc("continue", "  failure: read.error\n"), json!({}))
        .await
        .unwrap();
    let error: NodeFailure = outcome.output("failure").unwrap();
    assert_eq!(error.node, "read");
    assert_eq!(error.message, "`missing.txt` does not exist");
    assert!(!error.retryable);
    assert_eq!(outcome.node("read").unwrap().status, NodeStatus::Failed);
    assert_eq!(outcome.node("copy").unwrap().status, NodeStatus::Skipped);
    let outcome = run(&e, &doc("skip", ""), json!({})).await.unwrap();
    assert_eq!(outcome.node("read").unwrap().status, NodeStatus::Skipped);
    assert_eq!(outcome.node("copy").unwrap().status, NodeStatus::Skipped);
    assert_eq!(outcome.outputs_json().unwrap()["written"], json!(null));
    assert!(!s.root().join("copy.txt").exists());
    let (message, _) = failure(&e, &doc("fail", ""), json!({})).await;
    assert_eq!(message, "`missing.txt` does not exist");
}

// ------------------------------------------------------------------- flows

#[cfg(feature = "text")]
#[tokio::test]
async fn a_document_flow_reads_extracts_hashes_and_writes() {
    let s = Sandbox::new();
    s.put(
        "inbox/mail.log",
        "from ada@example.com\nfrom bob@example.org\nfrom ada@example.com\n",
    );
    let e = s.engine();
    let flow = load(
        r#"
version: 1
name: digest-mail
inputs:
  log: {}
nodes:
  - id: read
    type: file_read
    config: { path: "inbox/{{ input.log }}" }
  - id: raw
    type: file_read
    config: { path: "inbox/{{ input.log }}", format: bytes }
  - id: emails
    type: regex_extract
    config: { pattern: 'from (?P<who>\S+@\S+)', group: who }
  - id: checksum
    type: hash
    config: { algorithm: sha256, input: base64 }
  - id: save_emails
    type: file_write
    config: { path: out/emails.json, format: json, create_dirs: true }
  - id: save_checksum
    type: file_write
    config: { path: "out/{{ input.log }}.sha256", create_dirs: true }
edges:
  - { from: read.content, to: emails.text }
  - { from: raw.content, to: checksum.data }
  - { from: emails.values, to: save_emails.content }
  - { from: checksum.digest, to: save_checksum.content }
outputs:
  emails: save_emails.path
  checksum: save_checksum.path
  count: emails.count
"#,
    );
    let out = outputs(&e, &flow, json!({"log": "mail.log"})).await;
    assert_eq!(
        out,
        json!({"emails": "out/emails.json", "checksum": "out/mail.log.sha256", "count": 3})
    );
    assert_eq!(
        s.get("out/emails.json"),
        "[\"ada@example.com\",\"bob@example.org\",\"ada@example.com\"]\n"
    );
    // Computed independently (sha256sum) for the same bytes.
    assert_eq!(
        s.get("out/mail.log.sha256"),
        "f02121c4ae517bba4649b96515060d2ca1e343a42fedd890956abf78be8ef2ad"
    );
}

#[tokio::test]
async fn typed_flows_run_and_read_back_as_documents() {
    let s = Sandbox::new();
    s.put("in/a.txt", "alpha");
    s.put("in/b.txt", "beta");
    s.put("in/data.json", r#"{"n": [1, 2]}"#);
    let e = s.engine();
    let mut b = Flow::builder("typed-files");
    let list = b.add("list", FileList::new("in/*.txt").unwrap());
    let mut read_json = FileRead::new("in/data.json");
    read_json.format = ghostflow_nodes::file::ReadFormat::Json;
    let read_json = b.add("read_json", read_json);
    let read_text = b.add("read_text", FileRead::new("in/b.txt"));
    let mut write = FileWrite::new("out/data.json");
    write.format = WriteFormat::Json;
    write.pretty = true;
    write.create_dirs = true;
    write.if_exists = IfExists::Overwrite;
    let save = b.add("save", write);
    let mut copy = FileWrite::new("out/b-copy.txt");
    copy.create_dirs = true;
    let copy = b.add("copy", copy);
    b.connect(read_json.out().content, save.inp().content);
    b.connect(read_text.out().content, copy.inp().content);
    b.output("listed", list.out().paths);
    b.output("saved", save.out().path);
    b.output("copied", copy.out().bytes);
    let flow = b.build().unwrap();
    let direct = outputs(&e, &flow, json!({})).await;
    assert_eq!(
        direct,
        json!({"listed": ["in/a.txt", "in/b.txt"], "saved": "out/data.json", "copied": 4})
    );
    assert_eq!(
        s.get("out/data.json"),
        "{\n  \"n\": [\n    1,\n    2\n  ]\n}\n"
    );
    assert_eq!(s.get("out/b-copy.txt"), "beta");

    let yaml = Document::from_flow(&flow).unwrap().to_yaml();
    assert!(yaml.contains("type: file_list"), "{yaml}");
    std::fs::remove_dir_all(s.root().join("out")).unwrap();
    let reloaded = outputs(&e, &load(&yaml), json!({})).await;
    assert_eq!(reloaded, direct);
    assert_eq!(s.get("out/b-copy.txt"), "beta");
}
