//! The SQL nodes against the real databases of this machine: PostgreSQL
//! (`GHOSTFLOW_TEST_POSTGRES_URL`, default `postgres://root@127.0.0.1:5432/test`),
//! MariaDB (`GHOSTFLOW_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`)
//! and SQLite files in temporary directories. Each test works in its own
//! PostgreSQL schema or MariaDB database, named after the process and a
//! counter, and drops it when it ends, also when it fails.
#![cfg(feature = "sql")]

mod common;
use common::{load, load_error};

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ghostflow::document::Document;
use ghostflow::{Engine, Error, Flow, Inputs, MapSecrets, NodeError, NodeFailure, NodeStatus};
use ghostflow_nodes::sql::{SqlExecute, SqlQuery, Statements};
use serde_json::{Map, Value, json};
use sqlx::{Connection, Executor};

// ------------------------------------------------------------ the databases

fn postgres_url() -> String {
    std::env::var("GHOSTFLOW_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

fn mysql_url() -> String {
    std::env::var("GHOSTFLOW_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A name no other test, run or process uses.
fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "gf_{tag}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Postgres,
    MariaDb,
    Sqlite,
}

/// What a test made and must remove.
enum Scratch {
    PgSchema { admin: String, name: String },
    MyDatabase { admin: String, name: String },
    Dir(#[expect(dead_code, reason = "held for its Drop")] tempfile::TempDir),
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (admin, sql) = match self {
            Scratch::PgSchema { admin, name } => (
                admin.clone(),
                format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE"),
            ),
            Scratch::MyDatabase { admin, name } => {
                (admin.clone(), format!("DROP DATABASE IF EXISTS {name}"))
            }
            Scratch::Dir(_) => return,
        };
        let postgres = matches!(self, Scratch::PgSchema { .. });
        // A runtime of its own: this runs while a test's runtime unwinds.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                if postgres {
                    let mut conn = sqlx::PgConnection::connect(&admin).await?;
                    conn.execute(sqlx::raw_sql(&sql)).await?;
                } else {
                    let mut conn = sqlx::MySqlConnection::connect(&admin).await?;
                    conn.execute(sqlx::raw_sql(&sql)).await?;
                }
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop the test's scratch space: {e}");
        }
    }
}

/// A database to test against: its URL (also the engine's secret
/// `DB_URL`), and an engine with that secret.
struct Db {
    kind: Kind,
    url: String,
    engine: Engine,
    _scratch: Scratch,
}

fn engine_for(url: &str) -> Engine {
    Engine::builder()
        .registry(Arc::new(ghostflow_nodes::registry()))
        .secrets(MapSecrets::new().with("DB_URL", url).with(
            "DOWN_URL",
            "postgres://root:hunter2-secret@127.0.0.1:9/test",
        ))
        .build()
}

impl Db {
    async fn postgres() -> Db {
        let admin = postgres_url();
        let name = unique("pg");
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} is not reachable ({e}); start it (`.ci/run` starts the local services)")
        });
        conn.execute(format!("CREATE SCHEMA {name}").as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        let separator = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{separator}options[search_path]={name}");
        Db {
            kind: Kind::Postgres,
            engine: engine_for(&url),
            url,
            _scratch: Scratch::PgSchema { admin, name },
        }
    }

    async fn mariadb() -> Db {
        let admin = mysql_url();
        let name = unique("my");
        let mut conn = sqlx::MySqlConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("MariaDB at {admin} is not reachable ({e}); start it (`.ci/run` starts the local services)")
        });
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        let url = url.to_string();
        Db {
            kind: Kind::MariaDb,
            engine: engine_for(&url),
            url,
            _scratch: Scratch::MyDatabase { admin, name },
        }
    }

    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        Db {
            kind: Kind::Sqlite,
            engine: engine_for(&url),
            url,
            _scratch: Scratch::Dir(dir),
        }
    }

    /// Placeholder `n` (from 1) in this database's syntax.
    fn p(&self, n: usize) -> String {
        match self.kind {
            Kind::MariaDb => "?".to_owned(),
            _ => format!("${n}"),
        }
    }

    /// Placeholders 1 to `n`, comma-separated.
    fn ps(&self, n: usize) -> String {
        (1..=n).map(|i| self.p(i)).collect::<Vec<_>>().join(", ")
    }

    /// Runs one node of `node_type` with `config` (the connection added
    /// when the config has none) and the given inputs.
    async fn call(
        &self,
        node_type: &str,
        mut config: Value,
        inputs: Value,
    ) -> Result<Map<String, Value>, NodeError> {
        if config.get("url").is_none() && config.get("url_secret").is_none() {
            config["url_secret"] = json!("DB_URL");
        }
        run_one(&self.engine, node_type, &config, inputs).await
    }

    async fn execute(&self, query: impl Into<Value>, params: Value) -> Map<String, Value> {
        let query = query.into();
        self.call(
            "sql_execute",
            json!({"query": query, "params": params}),
            json!({}),
        )
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    async fn rows(&self, query: &str, params: Value) -> Value {
        self.call(
            "sql_query",
            json!({"query": query, "params": params}),
            json!({}),
        )
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))["rows"]
            .clone()
    }

    async fn query_err(&self, query: &str, params: Value) -> NodeError {
        match self
            .call(
                "sql_query",
                json!({"query": query, "params": params}),
                json!({}),
            )
            .await
        {
            Err(e) => e,
            Ok(out) => panic!("{query}: expected a failure, got {out:?}"),
        }
    }

    async fn execute_err(&self, config: Value, inputs: Value) -> NodeError {
        match self.call("sql_execute", config.clone(), inputs).await {
            Err(e) => e,
            Ok(out) => panic!("{config}: expected a failure, got {out:?}"),
        }
    }
}

// ------------------------------------------------------------------ helpers

fn outputs_of(node_type: &str) -> &'static [&'static str] {
    match node_type {
        "sql_query" => &["rows", "columns", "truncated"],
        "sql_query_one" => &["row", "found"],
        _ => &["rows_affected", "last_insert_id", "results"],
    }
}

/// A document with one node `sql` of `node_type`, a flow input per key of
/// `inputs` connected to the node's port of that name, and every output.
fn one_node_yaml(node_type: &str, config: &Value, inputs: &[String], extra: &str) -> String {
    let mut yaml = String::from("version: 1\nname: one\n");
    if !inputs.is_empty() {
        yaml.push_str("inputs:\n");
        for name in inputs {
            yaml.push_str(&format!("  {name}: {{}}\n"));
        }
    }
    yaml.push_str(&format!(
        "nodes:\n  - id: sql\n    type: {node_type}\n    config: {config}\n{extra}"
    ));
    if !inputs.is_empty() {
        yaml.push_str("edges:\n");
        for name in inputs {
            yaml.push_str(&format!("  - {{ from: input.{name}, to: sql.{name} }}\n"));
        }
    }
    yaml.push_str("outputs:\n");
    for name in outputs_of(node_type) {
        yaml.push_str(&format!("  {name}: sql.{name}\n"));
    }
    yaml
}

async fn run_one(
    engine: &Engine,
    node_type: &str,
    config: &Value,
    inputs: Value,
) -> Result<Map<String, Value>, NodeError> {
    let inputs = inputs.as_object().cloned().unwrap_or_default();
    let names: Vec<String> = inputs.keys().cloned().collect();
    let flow = load(&one_node_yaml(node_type, config, &names, ""));
    outcome(engine.run(&flow, Inputs::from_json(inputs)).await)
}

fn outcome(result: Result<ghostflow::Outcome, Error>) -> Result<Map<String, Value>, NodeError> {
    match result {
        Ok(outcome) => Ok(outcome.outputs_json().unwrap()),
        Err(Error::NodeFailed { error, .. }) => Err(error),
        Err(other) => panic!("expected outputs or a node failure, got {other}"),
    }
}

fn assert_starts(error: &NodeError, start: &str) {
    assert!(
        error.message().starts_with(start),
        "`{}` should start with `{start}`",
        error.message()
    );
}

fn assert_has(error: &NodeError, part: &str) {
    assert!(
        error.message().contains(part),
        "`{}` should contain `{part}`",
        error.message()
    );
}

const BOBBY: &str = "Robert'); DROP TABLE students;--";

// ------------------------------------------------- the same on every database

/// A value that would be an injection if spliced into the SQL is stored as
/// it is, and nothing is dropped.
async fn parameters_are_bound_not_spliced(db: &Db) {
    db.execute("CREATE TABLE students (name VARCHAR(100))", json!([]))
        .await;
    let done = db
        .execute(
            format!("INSERT INTO students (name) VALUES ({})", db.p(1)).as_str(),
            json!([BOBBY]),
        )
        .await;
    assert_eq!(done["rows_affected"], json!(1));
    let rows = db
        .rows(
            &format!("SELECT name FROM students WHERE name = {}", db.p(1)),
            json!([BOBBY]),
        )
        .await;
    assert_eq!(rows, json!([{"name": BOBBY}]));
    // Through the `params` input too.
    let out = db
        .call(
            "sql_query",
            json!({"query": format!("SELECT count(*) AS n FROM students WHERE name <> {}", db.p(1))}),
            json!({"params": ["someone else"]}),
        )
        .await
        .unwrap();
    assert_eq!(out["rows"], json!([{"n": 1}]));
    assert_eq!(out["columns"], json!(["n"]));
    assert_eq!(out["truncated"], json!(false));
    // Both places at once is a mistake.
    let err = db
        .call(
            "sql_query",
            json!({"query": "SELECT 1 AS one", "params": [1]}),
            json!({"params": [2]}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "input `params`: the config has `params` too; give the parameters in one place"
    );
    assert!(!err.is_retryable());
}

/// Lists of statements and batches are all or nothing.
async fn transactions_are_all_or_nothing(db: &Db) {
    let (p1, p2) = (db.p(1), db.p(2));
    db.execute(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner VARCHAR(40) NOT NULL, balance INTEGER NOT NULL CHECK (balance >= 0))",
        json!([]),
    )
    .await;
    let insert = format!(
        "INSERT INTO accounts (id, owner, balance) VALUES ({})",
        db.ps(3)
    );
    let done = db
        .call(
            "sql_execute",
            json!({"query": insert, "batch_fields": ["id", "owner", "balance"]}),
            json!({"batch": [
                {"id": 1, "owner": "ada", "balance": 100},
                [2, "grace", 50],
                {"balance": 0, "owner": "linus", "id": 3}
            ]}),
        )
        .await
        .unwrap();
    assert_eq!(done["rows_affected"], json!(3));
    assert_eq!(done["results"].as_array().unwrap().len(), 3);
    assert_eq!(done["results"][1]["rows_affected"], json!(1));

    // A transfer that would overdraw: the first update ran, the second
    // broke the CHECK, and the first is undone.
    let transfer = json!([
        format!("UPDATE accounts SET balance = balance + {p1} WHERE id = {p2}"),
        format!("UPDATE accounts SET balance = balance - {p1} WHERE id = {p2}"),
    ]);
    let err = db
        .execute_err(
            json!({"query": transfer, "params": [[80, 1], [80, 2]]}),
            json!({}),
        )
        .await;
    assert_starts(&err, "config.query[1]: ");
    assert!(
        err.message()
            .ends_with("(the transaction was rolled back: nothing was written)"),
        "{err}"
    );
    assert!(!err.is_retryable());
    let balances = db
        .rows("SELECT id, balance FROM accounts ORDER BY id", json!([]))
        .await;
    assert_eq!(
        balances,
        json!([{"id": 1, "balance": 100}, {"id": 2, "balance": 50}, {"id": 3, "balance": 0}])
    );
    // The same transfer within the balance goes through.
    let done = db
        .call(
            "sql_execute",
            json!({"query": transfer, "params": [[30, 1], [30, 2]]}),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(done["rows_affected"], json!(2));
    let balances = db
        .rows(
            "SELECT balance FROM accounts WHERE id < 3 ORDER BY id",
            json!([]),
        )
        .await;
    assert_eq!(balances, json!([{"balance": 130}, {"balance": 20}]));

    // A batch whose third element repeats a key: none of it stays.
    let err = db
        .execute_err(
            json!({"query": insert}),
            json!({"batch": [[10, "a", 1], [11, "b", 1], [10, "c", 1]]}),
        )
        .await;
    assert_starts(&err, "batch element 2: ");
    assert_has(&err, "nothing was written");
    let rows = db
        .rows(
            "SELECT count(*) AS n FROM accounts WHERE id >= 10",
            json!([]),
        )
        .await;
    assert_eq!(rows, json!([{"n": 0}]));

    // Mistakes in the shape of the work are refused before anything runs.
    let err = db
        .execute_err(json!({"query": transfer, "params": [[1, 1]]}), json!({}))
        .await;
    assert_eq!(
        err.message(),
        "params: 1 list(s) of parameters for 2 statements; give one list per statement (`[]` for none)"
    );
    let err = db
        .execute_err(
            json!({"query": insert, "batch_fields": ["id", "owner", "balance"]}),
            json!({"batch": [{"id": 1}]}),
        )
        .await;
    assert_eq!(
        err.message(),
        "input `batch`: element 0 has no field `owner` (config.batch_fields)"
    );
    let err = db
        .execute_err(json!({"query": insert}), json!({"batch": [7]}))
        .await;
    assert_eq!(
        err.message(),
        "input `batch`: element 0 is a number; expected a list of parameters (or an object, with `batch_fields` set)"
    );
    // An empty batch does nothing.
    let done = db
        .call(
            "sql_execute",
            json!({"query": insert}),
            json!({"batch": []}),
        )
        .await
        .unwrap();
    assert_eq!(done["rows_affected"], json!(0));
    assert_eq!(done["results"], json!([]));
}

/// `max_rows` fails or truncates, never reads on silently.
async fn max_rows_fails_or_truncates(db: &Db) {
    db.execute("CREATE TABLE numbers (n INTEGER)", json!([]))
        .await;
    db.call(
        "sql_execute",
        json!({"query": format!("INSERT INTO numbers (n) VALUES ({})", db.p(1))}),
        json!({"batch": (1..=25).map(|n| json!([n])).collect::<Vec<_>>()}),
    )
    .await
    .unwrap();
    let query = "SELECT n FROM numbers ORDER BY n";
    let err = db
        .call(
            "sql_query",
            json!({"query": query, "max_rows": 10}),
            json!({}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "config.query: the query returned more than 10 rows (config.max_rows); add a LIMIT, raise max_rows or set over_max_rows: truncate"
    );
    assert!(!err.is_retryable());
    let out = db
        .call(
            "sql_query",
            json!({"query": query, "max_rows": 10, "over_max_rows": "truncate"}),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(out["truncated"], json!(true));
    assert_eq!(
        out["rows"],
        json!((1..=10).map(|n| json!({"n": n})).collect::<Vec<_>>())
    );
    // Exactly at the limit is not truncated.
    let out = db
        .call(
            "sql_query",
            json!({"query": query, "max_rows": 25}),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(out["truncated"], json!(false));
    assert_eq!(out["rows"].as_array().unwrap().len(), 25);
    // The connection is fine after a result was left unread.
    assert_eq!(
        db.rows("SELECT count(*) AS c FROM numbers", json!([]))
            .await,
        json!([{"c": 25}])
    );
    // No rows: the columns are still known.
    let out = db
        .call(
            "sql_query",
            json!({"query": "SELECT n, n AS m FROM numbers WHERE n < 0"}),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(out["rows"], json!([]));
    assert_eq!(out["columns"], json!(["n", "m"]));
}

/// Bad SQL, a constraint violation and a wrong number of parameters are
/// permanent, with the database's words and code.
async fn failures_are_permanent_with_the_database_code(db: &Db, syntax: &str, unique: &str) {
    let err = db.query_err("SELEC 1", json!([])).await;
    assert_starts(&err, "config.query: ");
    assert_has(&err, syntax);
    assert!(!err.is_retryable());

    db.execute("CREATE TABLE pkeys (k INTEGER PRIMARY KEY)", json!([]))
        .await;
    let insert = format!("INSERT INTO pkeys (k) VALUES ({})", db.p(1));
    db.execute(insert.as_str(), json!([1])).await;
    let err = db
        .execute_err(json!({"query": insert, "params": [1]}), json!({}))
        .await;
    assert_starts(&err, "config.query: ");
    assert_has(&err, unique);
    assert!(!err.is_retryable());

    let err = db
        .query_err(
            &format!(
                "SELECT k FROM pkeys WHERE k = {} OR k = {}",
                db.p(1),
                db.p(2)
            ),
            json!([1]),
        )
        .await;
    assert_eq!(
        err.message(),
        "config.query: the SQL has 2 parameter placeholder(s) but 1 value(s) were given in `params`"
    );
    assert!(!err.is_retryable());
    let err = db.query_err("SELECT k FROM pkeys", json!([1])).await;
    assert_eq!(
        err.message(),
        "config.query: the SQL has 0 parameter placeholder(s) but 1 value(s) were given in `params`"
    );
    // Two columns with one name would lose one in an object.
    let err = db.query_err("SELECT k, k FROM pkeys", json!([])).await;
    assert_eq!(
        err.message(),
        "config.query: columns 1 and 2 are both named `k`; give them distinct names with AS"
    );
}

/// sql_query_one: a row, no row, or too many.
async fn query_one_finds_one_row(db: &Db) {
    db.execute(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(40))",
        json!([]),
    )
    .await;
    db.execute(
        "INSERT INTO people (id, name) VALUES (1, 'ada'), (2, 'grace')",
        json!([]),
    )
    .await;
    let by_id = format!("SELECT id, name FROM people WHERE id = {}", db.p(1));
    let out = db
        .call(
            "sql_query_one",
            json!({"query": by_id, "params": [2]}),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(out["row"], json!({"id": 2, "name": "grace"}));
    assert_eq!(out["found"], json!(true));
    let out = db
        .call(
            "sql_query_one",
            json!({"query": by_id, "params": [9]}),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(out["row"], json!(null));
    assert_eq!(out["found"], json!(false));
    let err = db
        .call(
            "sql_query_one",
            json!({"query": by_id, "params": [9], "required": true}),
            json!({}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "config.query: the query returned no row (config.required)"
    );
    let err = db
        .call(
            "sql_query_one",
            json!({"query": "SELECT id FROM people"}),
            json!({}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "config.query: the query returned more than one row; add a LIMIT 1 or use sql_query"
    );
    assert!(!err.is_retryable());
}

/// A document flow: make a table, insert the rows of an input list in one
/// transaction, read them back.
async fn a_document_flow_creates_inserts_and_reads(db: &Db) {
    let yaml = format!(
        r#"
version: 1
name: people
inputs:
  people: {{ schema: {{ type: array }} }}
  min_age: {{ schema: {{ type: integer }}, default: 18 }}
nodes:
  - id: create
    type: sql_execute
    config:
      url_secret: DB_URL
      query: CREATE TABLE members (name VARCHAR(100) PRIMARY KEY, age INTEGER NOT NULL)
  - id: insert
    type: sql_execute
    config:
      url_secret: DB_URL
      query: INSERT INTO members (name, age) VALUES ({p1}, {p2})
      batch_fields: [name, age]
  - id: adults
    type: sql_query
    config:
      url_secret: DB_URL
      query: SELECT name, age FROM members WHERE age >= {p1} ORDER BY name
      params: ["{{{{ input.min_age }}}}"]
edges:
  - {{ from: create.rows_affected, to: insert.after }}
  - {{ from: input.people, to: insert.batch }}
  - {{ from: insert.rows_affected, to: adults.after }}
outputs:
  inserted: insert.rows_affected
  adults: adults.rows
"#,
        p1 = db.p(1),
        p2 = db.p(2)
    );
    let flow = load(&yaml);
    let people = json!([
        {"name": "Ada", "age": 36},
        {"name": BOBBY, "age": 12},
        {"name": "Grace", "age": 85}
    ]);
    let outcome = db
        .engine
        .run(
            &flow,
            Inputs::from_json(json!({"people": people}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output::<u64>("inserted").unwrap(), 3);
    assert_eq!(
        outcome.output::<Value>("adults").unwrap(),
        json!([{"name": "Ada", "age": 36}, {"name": "Grace", "age": 85}])
    );
    // Run again: the table exists, the create fails, nothing else runs.
    let err = db
        .engine
        .run(
            &flow,
            Inputs::from_json(json!({"people": people}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap_err();
    match err {
        Error::NodeFailed { node, error, .. } => {
            assert_eq!(node, "create");
            assert!(!error.is_retryable(), "{error}");
        }
        other => panic!("{other}"),
    }
}

// --------------------------------------------------------------- PostgreSQL

#[tokio::test]
async fn postgres_parameters_are_bound_not_spliced() {
    parameters_are_bound_not_spliced(&Db::postgres().await).await;
}

#[tokio::test]
async fn postgres_transactions_are_all_or_nothing() {
    transactions_are_all_or_nothing(&Db::postgres().await).await;
}

#[tokio::test]
async fn postgres_max_rows() {
    max_rows_fails_or_truncates(&Db::postgres().await).await;
}

#[tokio::test]
async fn postgres_failures_carry_sqlstate() {
    let db = Db::postgres().await;
    failures_are_permanent_with_the_database_code(
        &db,
        r#"syntax error at or near "SELEC" (SQLSTATE 42601, at character 1)"#,
        r#"duplicate key value violates unique constraint "pkeys_pkey": Key (k)=(1) already exists. (SQLSTATE 23505)"#,
    )
    .await;
}

#[tokio::test]
async fn postgres_query_one() {
    query_one_finds_one_row(&Db::postgres().await).await;
}

#[tokio::test]
async fn postgres_document_flow() {
    a_document_flow_creates_inserts_and_reads(&Db::postgres().await).await;
}

#[tokio::test]
async fn postgres_types_round_trip_as_json() {
    let db = Db::postgres().await;
    db.execute(
        json!([
            "CREATE TYPE mood AS ENUM ('happy', 'sad')",
            "CREATE TYPE pair AS (a integer, b text)",
            "CREATE TABLE everything (id integer PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, b boolean, n numeric(20,4), t text, vc varchar(40), j json, jb jsonb, u uuid, d date, tm time, ts timestamp, tstz timestamptz, iv interval, bin bytea, ia integer[], ta text[], m mood, nul text)",
        ]),
        json!([]),
    )
    .await;
    let values = json!([
        1, -32768, 2147483647, 9223372036854775807_i64, 1.5, 0.1, true, "12345678901234.5678",
        BOBBY, "héllo", {"a": [1, 2, {"b": null}]}, {"z": 1, "a": "x"},
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "2024-02-29", "13:45:30.25",
        "2024-05-01T10:30:00.123456", "2024-05-01T12:30:00+02:00", "1 day 2 hours",
        "AAEC/w==", [1, null, 3], ["x", "y z"], "happy", null
    ]);
    // Every placeholder binds as the type PostgreSQL infers for it; the
    // interval, which has no JSON form, is bound from text with a cast.
    let placeholders: Vec<String> = (1..=23)
        .map(|n| {
            if n == 18 {
                "$18::text::interval".to_owned()
            } else {
                format!("${n}")
            }
        })
        .collect();
    let done = db
        .execute(
            format!(
                "INSERT INTO everything VALUES ({})",
                placeholders.join(", ")
            )
            .as_str(),
            values,
        )
        .await;
    assert_eq!(done["rows_affected"], json!(1));
    assert_eq!(done["last_insert_id"], json!(null));
    let out = db
        .call(
            "sql_query",
            json!({"query": "SELECT * FROM everything"}),
            json!({}),
        )
        .await
        .unwrap();
    let expected = json!({
        "id": 1, "i2": -32768, "i4": 2147483647, "i8": 9223372036854775807_i64,
        "f4": 1.5, "f8": 0.1, "b": true, "n": "12345678901234.5678", "t": BOBBY, "vc": "héllo",
        "j": {"a": [1, 2, {"b": null}]}, "jb": {"a": "x", "z": 1},
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "d": "2024-02-29", "tm": "13:45:30.250",
        "ts": "2024-05-01T10:30:00.123456", "tstz": "2024-05-01T10:30:00+00:00",
        "iv": "P1DT2H", "bin": "AAEC/w==", "ia": [1, null, 3], "ta": ["x", "y z"],
        "m": "happy", "nul": null
    });
    assert_eq!(out["rows"], json!([expected]));
    // Column order is kept.
    let keys: Vec<&String> = out["rows"][0].as_object().unwrap().keys().collect();
    let columns: Vec<String> = serde_json::from_value(out["columns"].clone()).unwrap();
    assert_eq!(keys, columns.iter().collect::<Vec<_>>());
    assert_eq!(columns[..4], ["id", "i2", "i4", "i8"]);

    // The values JSON has no number for, and the rarer types.
    let rows = db
        .rows(
            r#"SELECT 'NaN'::float8 AS nan, 'Infinity'::float8 AS inf, '-Infinity'::real AS ninf,
                      'infinity'::timestamp AS ts_inf, '-infinity'::date AS d_inf,
                      ARRAY[[1,2],[3,4]] AS grid, '{}'::int[] AS empty, ROW(7, 'seven')::pair AS p,
                      'NaN'::numeric AS n_nan, 0.000123 AS small, -5.50 AS neg, 1000000::numeric AS big,
                      '192.168.1.0/24'::cidr AS net, '10.0.0.1'::inet AS host,
                      '08:00:2b:01:02:03'::macaddr AS mac, B'1011'::varbit AS bits,
                      '12:30:00+05:30'::timetz AS ttz, 'x'::"char" AS ch, 42::oid AS o,
                      'abc'::name AS nm, 'fixed'::char(8) AS fx, '-1 day -01:30:00'::interval AS back,
                      ARRAY['2024-01-01'::date, NULL] AS dates"#,
            json!([]),
        )
        .await;
    assert_eq!(
        rows,
        json!([{
            "nan": "NaN", "inf": "Infinity", "ninf": "-Infinity", "ts_inf": "infinity",
            "d_inf": "-infinity", "grid": [[1, 2], [3, 4]], "empty": [], "p": {"a": 7, "b": "seven"},
            "n_nan": "NaN", "small": "0.000123", "neg": "-5.50", "big": "1000000",
            "net": "192.168.1.0/24", "host": "10.0.0.1", "mac": "08:00:2b:01:02:03",
            "bits": "1011", "ttz": "12:30:00+05:30", "ch": "x", "o": 42, "nm": "abc",
            "fx": "fixed   ", "back": "P-1DT-1H-30M", "dates": ["2024-01-01", null]
        }])
    );

    // Parameters take the inferred type: strings for integers, dates and
    // arrays for ANY.
    assert_eq!(
        db.rows("SELECT $1::int4 + 1 AS n", json!(["41"])).await,
        json!([{"n": 42}])
    );
    assert_eq!(
        db.rows(
            "SELECT id FROM everything WHERE d = $1 AND id = ANY($2) AND jb @> $3",
            json!(["2024-02-29", [1, 2], {"z": 1}])
        )
        .await,
        json!([{"id": 1}])
    );
    assert_eq!(
        db.rows(
            "SELECT $1::numeric * 2 AS twice",
            json!(["0.1000000000000000000001"])
        )
        .await,
        json!([{"twice": "0.2000000000000000000002"}])
    );
    // What cannot be bound says so, and how to do it instead.
    let err = db
        .query_err("SELECT $1::date AS d", json!(["29/02/2024"]))
        .await;
    assert_eq!(
        err.message(),
        "config.query: params[0] ($1): `29/02/2024` is not a date (YYYY-MM-DD)"
    );
    assert!(!err.is_retryable());
    let err = db.query_err("SELECT $1::int2 AS s", json!([40000])).await;
    assert_eq!(
        err.message(),
        "config.query: params[0] ($1): expected an integer from -32768 to 32767 for `INT2`, got the number 40000"
    );
    let err = db
        .query_err("SELECT $1::interval AS i", json!(["1 day"]))
        .await;
    assert_eq!(
        err.message(),
        "config.query: params[0] ($1): the type `INTERVAL` cannot be bound from JSON; bind text and cast it in the SQL (`$n::text::interval`)"
    );
    // A column type with no JSON form names the column.
    let err = db
        .query_err("SELECT 1 AS one, point(1, 2) AS pt", json!([]))
        .await;
    assert_eq!(
        err.message(),
        "config.query: column `pt` (POINT): the type `POINT` has no JSON form here; cast the column to text in the SQL (`column::text`)"
    );
    assert!(!err.is_retryable());
    // The injection attempt is text in a row.
    let rows = db
        .rows(
            "SELECT count(*) AS n FROM everything WHERE t = $1",
            json!([BOBBY]),
        )
        .await;
    assert_eq!(rows, json!([{"n": 1}]));
}

#[tokio::test]
async fn postgres_statement_timeout_is_retryable() {
    let db = Db::postgres().await;
    let err = db
        .call(
            "sql_query",
            json!({"query": "SELECT pg_sleep(5)", "statement_timeout": "200ms"}),
            json!({}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "config.query: canceling statement due to statement timeout (SQLSTATE 57014)"
    );
    assert!(err.is_retryable());
}

/// A port on 127.0.0.1 nothing listens on.
const DOWN_PG: &str = "postgres://root:hunter2-secret@127.0.0.1:9/test";

#[tokio::test]
async fn postgres_down_is_retryable_and_the_password_is_masked() {
    let engine = engine_for("unused");
    for config in [
        json!({"url": DOWN_PG, "query": "SELECT 1", "connect_timeout": "300ms"}),
        json!({"url_secret": "DOWN_URL", "query": "SELECT 1", "connect_timeout": "300ms"}),
    ] {
        let err = run_one(&engine, "sql_query", &config, json!({}))
            .await
            .unwrap_err();
        assert_starts(
            &err,
            "cannot connect to postgres://root:***@127.0.0.1:9/test: ",
        );
        assert_has(&err, "refused");
        assert!(!err.message().contains("hunter2"), "{err}");
        assert!(err.is_retryable());
    }
    // With a retry policy the engine tries again, and reports the same.
    let flow = load(&one_node_yaml(
        "sql_execute",
        &json!({"url": DOWN_PG, "query": "DELETE FROM t", "connect_timeout": "200ms"}),
        &[],
        "    retry: { max_attempts: 2, backoff: 1ms }\n",
    ));
    match engine.run(&flow, Inputs::new()).await {
        Err(Error::NodeFailed {
            attempts, error, ..
        }) => {
            assert_eq!(attempts, 2);
            assert!(!error.message().contains("hunter2"), "{error}");
        }
        other => panic!("{:?}", other.map(|o| o.outputs_json())),
    }
}

#[tokio::test]
async fn postgres_cancelled_transaction_leaves_nothing_behind() {
    let db = Db::postgres().await;
    let table = unique("held");
    db.execute(
        json!([
            "CREATE TABLE items (id integer PRIMARY KEY)",
            format!("CREATE TABLE {table} (id integer PRIMARY KEY)"),
            format!("INSERT INTO {table} VALUES (1)"),
        ]),
        json!([]),
    )
    .await;
    // Another session holds the row the transaction will want.
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    holder.execute("BEGIN").await.unwrap();
    holder
        .execute(format!("SELECT * FROM {table} WHERE id = 1 FOR UPDATE").as_str())
        .await
        .unwrap();
    let config = json!({
        "url_secret": "DB_URL",
        "query": ["INSERT INTO items VALUES (1)", format!("UPDATE {table} SET id = id WHERE id = 1")]
    });
    // The node's timeout drops it while it waits for the lock.
    let flow = load(&one_node_yaml(
        "sql_execute",
        &config,
        &[],
        "    timeout: 300ms\n",
    ));
    let err = outcome(db.engine.run(&flow, Inputs::new()).await).unwrap_err();
    assert_eq!(err.message(), "timed out after 300ms");
    holder.execute("ROLLBACK").await.unwrap();
    // The dropped transaction is rolled back once the lock frees: wait
    // (boundedly) until no session is left inside it (its last statement
    // is then the rollback).
    let mut open = i64::MAX;
    for _ in 0..100 {
        open = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state <> 'idle' AND query LIKE $1",
        )
        .bind(format!("%{table}%"))
        .fetch_one(&mut holder)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, 0, "a transaction was left open");
    // Nothing of it was committed, nothing of it holds a lock, and the
    // engine's pool works as before.
    holder.execute("BEGIN").await.unwrap();
    holder
        .execute(format!("SELECT * FROM {table} WHERE id = 1 FOR UPDATE NOWAIT").as_str())
        .await
        .unwrap();
    holder.execute("ROLLBACK").await.unwrap();
    assert_eq!(
        db.rows("SELECT count(*) AS n FROM items", json!([])).await,
        json!([{"n": 0}])
    );
    holder.close().await.unwrap();
}

// ------------------------------------------------------------------ MariaDB

#[tokio::test]
async fn mariadb_parameters_are_bound_not_spliced() {
    parameters_are_bound_not_spliced(&Db::mariadb().await).await;
}

#[tokio::test]
async fn mariadb_transactions_are_all_or_nothing() {
    transactions_are_all_or_nothing(&Db::mariadb().await).await;
}

#[tokio::test]
async fn mariadb_max_rows() {
    max_rows_fails_or_truncates(&Db::mariadb().await).await;
}

#[tokio::test]
async fn mariadb_failures_carry_sqlstate() {
    let db = Db::mariadb().await;
    failures_are_permanent_with_the_database_code(
        &db,
        "You have an error in your SQL syntax",
        "Duplicate entry '1' for key 'PRIMARY' (SQLSTATE 23000, error 1062)",
    )
    .await;
    let err = db.query_err("SELEC 1", json!([])).await;
    assert_has(&err, "(SQLSTATE 42000, error 1064)");
}

#[tokio::test]
async fn mariadb_query_one() {
    query_one_finds_one_row(&Db::mariadb().await).await;
}

#[tokio::test]
async fn mariadb_document_flow() {
    a_document_flow_creates_inserts_and_reads(&Db::mariadb().await).await;
}

#[tokio::test]
async fn mariadb_types_round_trip_as_json() {
    let db = Db::mariadb().await;
    db.execute(
        "CREATE TABLE everything (id INT AUTO_INCREMENT PRIMARY KEY, ti TINYINT, si SMALLINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED, f FLOAT, d DOUBLE, b BOOLEAN, n DECIMAL(20,4), t TEXT, vc VARCHAR(40), j JSON, u UUID, dt DATE, tm TIME(6), dtm DATETIME(6), ts TIMESTAMP(6) NULL, bin VARBINARY(16), bl BLOB, e ENUM('happy','sad'), yr YEAR, bt BIT(4), nul TEXT)",
        json!([]),
    )
    .await;
    let done = db
        .execute(
            "INSERT INTO everything (ti, si, i, bi, ubi, f, d, b, n, t, vc, j, u, dt, tm, dtm, ts, bin, bl, e, yr, bt, nul) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, FROM_BASE64(?), UNHEX('DEADBEEF'), ?, ?, b'1010', ?)",
            json!([
                -128, -32768, 2147483647, 9223372036854775807_i64, 18446744073709551615_u64,
                1.5, 0.1, true, "12345678901234.5678", BOBBY, "héllo", {"a": [1, 2]},
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "2024-02-29", "-12:30:00.5",
                "2024-05-01T10:30:00.123456", "2024-05-01 12:30:00", "AAEC/w==", "sad", 2024, null
            ]),
        )
        .await;
    assert_eq!(done["rows_affected"], json!(1));
    assert_eq!(done["last_insert_id"], json!(1));
    let out = db
        .call(
            "sql_query",
            json!({"query": "SELECT *, CAST(u AS CHAR) AS u_text FROM everything", "json_columns": ["j"]}),
            json!({}),
        )
        .await
        .unwrap();
    // MariaDB reports its UUID type (like its JSON type and any text with
    // a `_bin` collation) as binary, without the character set that would
    // tell it from binary data: it reads as base64 unless cast to text or
    // named in `json_columns`.
    let uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    assert_eq!(
        out["rows"],
        json!([{
            "id": 1, "ti": -128, "si": -32768, "i": 2147483647, "bi": 9223372036854775807_i64,
            "ubi": 18446744073709551615_u64, "f": 1.5, "d": 0.1, "b": true,
            "n": "12345678901234.5678", "t": BOBBY, "vc": "héllo", "j": {"a": [1, 2]},
            "u": BASE64.encode(uuid), "dt": "2024-02-29",
            "tm": "-12:30:00.500", "dtm": "2024-05-01T10:30:00.123456",
            "ts": "2024-05-01T12:30:00+00:00", "bin": "AAEC/w==", "bl": "3q2+7w==",
            "e": "sad", "yr": 2024, "bt": 10, "nul": null, "u_text": uuid
        }])
    );
    // Without `json_columns`, MariaDB's JSON is the bytes it stores.
    let rows = db
        .rows("SELECT j, CAST(j AS CHAR) AS jt FROM everything", json!([]))
        .await;
    assert_eq!(
        rows,
        json!([{"j": BASE64.encode(r#"{"a":[1,2]}"#), "jt": r#"{"a":[1,2]}"#}])
    );
    // A second insert's id, and booleans from TINYINT(1).
    let done = db
        .execute("INSERT INTO everything (b) VALUES (?)", json!([false]))
        .await;
    assert_eq!(done["last_insert_id"], json!(2));
    let rows = db
        .rows(
            "SELECT b, b IS NULL AS none, 1.5e300 * 1 AS big, -0.25 AS exact FROM everything WHERE id = ?",
            json!([2]),
        )
        .await;
    assert_eq!(
        rows,
        json!([{"b": false, "none": 0, "big": 1.5e300, "exact": "-0.25"}])
    );
    // A json_columns entry that is not a column is a mistake.
    let err = db
        .call(
            "sql_query",
            json!({"query": "SELECT id FROM everything", "json_columns": ["nope"]}),
            json!({}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "config.json_columns: the result has no column `nope` (its columns: id)"
    );
    // A column type with no JSON form names the column.
    let err = db.query_err("SELECT POINT(1, 2) AS pt", json!([])).await;
    assert_starts(
        &err,
        "config.query: column `pt` (GEOMETRY): the type `GEOMETRY` has no JSON form here",
    );
}

#[tokio::test]
async fn mariadb_statement_timeout_is_retryable() {
    let db = Db::mariadb().await;
    let err = db
        .call(
            "sql_query",
            json!({
                "query": "SELECT count(*) AS n FROM information_schema.columns a, information_schema.columns b, information_schema.columns c",
                "statement_timeout": "200ms"
            }),
            json!({}),
        )
        .await
        .unwrap_err();
    assert_has(&err, "max_statement_time exceeded");
    assert_has(&err, "error 1969");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn mariadb_down_and_wrong_passwords_do_not_show_the_password() {
    let engine = engine_for("unused");
    let config = json!({
        "url": "mariadb://root:hunter2-secret@127.0.0.1:9/test",
        "query": "SELECT 1",
        "connect_timeout": "300ms"
    });
    let err = run_one(&engine, "sql_query", &config, json!({}))
        .await
        .unwrap_err();
    assert_starts(
        &err,
        "cannot connect to mariadb://root:***@127.0.0.1:9/test: ",
    );
    assert_has(&err, "refused");
    assert!(!err.message().contains("hunter2"), "{err}");
    assert!(err.is_retryable());
    // The server is up but refuses the password: permanent, masked.
    let mut url = url::Url::parse(&mysql_url()).unwrap();
    url.set_password(Some("wr0ng-p@ss")).unwrap();
    let secret_engine = Engine::builder()
        .secrets(MapSecrets::new().with("DB_URL", url.as_str()))
        .build();
    let err = run_one(
        &secret_engine,
        "sql_query",
        &json!({"url_secret": "DB_URL", "query": "SELECT 1"}),
        json!({}),
    )
    .await
    .unwrap_err();
    assert_has(&err, "Access denied");
    assert_has(&err, "(SQLSTATE 28000, error 1045)");
    assert!(!err.message().contains("wr0ng"), "{err}");
    assert!(!err.is_retryable());
}

// ------------------------------------------------------------------- SQLite

#[tokio::test]
async fn sqlite_parameters_are_bound_not_spliced() {
    parameters_are_bound_not_spliced(&Db::sqlite()).await;
}

#[tokio::test]
async fn sqlite_transactions_are_all_or_nothing() {
    transactions_are_all_or_nothing(&Db::sqlite()).await;
}

#[tokio::test]
async fn sqlite_max_rows() {
    max_rows_fails_or_truncates(&Db::sqlite()).await;
}

#[tokio::test]
async fn sqlite_failures_carry_the_result_code() {
    failures_are_permanent_with_the_database_code(
        &Db::sqlite(),
        r#"near "SELEC": syntax error (SQLite error 1)"#,
        "UNIQUE constraint failed: pkeys.k (SQLite error 1555)",
    )
    .await;
}

#[tokio::test]
async fn sqlite_query_one() {
    query_one_finds_one_row(&Db::sqlite()).await;
}

#[tokio::test]
async fn sqlite_document_flow() {
    a_document_flow_creates_inserts_and_reads(&Db::sqlite()).await;
}

#[tokio::test]
async fn sqlite_types_round_trip_as_json() {
    let db = Db::sqlite();
    db.execute(
        "CREATE TABLE everything (id INTEGER PRIMARY KEY, i INTEGER, f REAL, b BOOLEAN, n NUMERIC, t TEXT, j TEXT, bin BLOB, d DATE, nul TEXT)",
        json!([]),
    )
    .await;
    let done = db
        .execute(
            "INSERT INTO everything (i, f, b, n, t, j, bin, d, nul) VALUES ($1, $2, $3, $4, $5, $6, X'0001FF', $7, $8)",
            json!([9223372036854775807_i64, 0.1, true, "12.50", BOBBY, {"a": [1]}, "2024-02-29", null]),
        )
        .await;
    assert_eq!(done["rows_affected"], json!(1));
    assert_eq!(done["last_insert_id"], json!(1));
    let out = db
        .call(
            "sql_query",
            json!({"query": "SELECT * FROM everything", "json_columns": ["j"]}),
            json!({}),
        )
        .await
        .unwrap();
    // NUMERIC affinity stored "12.50" as the real 12.5: what is stored is
    // what comes back.
    assert_eq!(
        out["rows"],
        json!([{
            "id": 1, "i": 9223372036854775807_i64, "f": 0.1, "b": true, "n": 12.5, "t": BOBBY,
            "j": {"a": [1]}, "bin": "AAH/", "d": "2024-02-29", "nul": null
        }])
    );
    let rows = db
        .rows(
            "SELECT 1e999 AS inf, -1e999 AS ninf, json_extract($1, '$.k') AS k",
            json!([{"k": "v"}]),
        )
        .await;
    assert_eq!(
        rows,
        json!([{"inf": "Infinity", "ninf": "-Infinity", "k": "v"}])
    );
    let err = db
        .query_err("SELECT $1 AS big", json!([18446744073709551615_u64]))
        .await;
    assert_eq!(
        err.message(),
        "config.query: params[0]: 18446744073709551615 is larger than SQLite's largest integer (9223372036854775807); pass it as a string"
    );
    // An UPDATE has no insert id, even on a connection that inserted.
    let done = db.execute("UPDATE everything SET i = 1", json!([])).await;
    assert_eq!(done["last_insert_id"], json!(null));
}

#[tokio::test]
async fn sqlite_statement_timeout_interrupts() {
    let db = Db::sqlite();
    let err = db
        .call(
            "sql_query",
            json!({
                "query": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) AS n FROM c",
                "statement_timeout": "200ms"
            }),
            json!({}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.message(), "config.query: interrupted (SQLite error 9)");
    assert!(err.is_retryable());
    // The next statement on the same pool is not interrupted.
    assert_eq!(
        db.rows("SELECT 2 AS two", json!([])).await,
        json!([{"two": 2}])
    );
}

#[tokio::test]
async fn sqlite_in_memory_databases_live_with_their_engine() {
    let yaml = r#"
version: 1
name: memory
nodes:
  - id: make
    type: sql_execute
    config:
      url: "sqlite::memory:"
      query: ["CREATE TABLE t (x INTEGER)", "INSERT INTO t VALUES (1), (2)"]
  - id: read
    type: sql_query
    config:
      url: "sqlite::memory:"
      query: SELECT count(*) AS n, $1 AS made FROM t
      params: ["{{ nodes.make.rows_affected }}"]
      # SQLite applies the statement timeout statement by statement: a
      # different one does not give this node a pool, and a database, of
      # its own.
      statement_timeout: 5s
outputs:
  rows: read.rows
"#;
    let engine = engine_for("unused");
    let outcome = engine.run(&load(yaml), Inputs::new()).await.unwrap();
    assert_eq!(
        outcome.output::<Value>("rows").unwrap(),
        json!([{"n": 2, "made": 2}])
    );
    // The next execution of the same engine sees the same database...
    let again = run_one(
        &engine,
        "sql_query",
        &json!({"url": "sqlite::memory:", "query": "SELECT count(*) AS n FROM t"}),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(again["rows"], json!([{"n": 2}]));
    // ...and another engine has its own.
    let err = run_one(
        &engine_for("unused"),
        "sql_query",
        &json!({"url": "sqlite::memory:", "query": "SELECT count(*) AS n FROM t"}),
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.message(),
        "config.query: no such table: t (SQLite error 1)"
    );
}

// ------------------------------------------------------- configs and flows

#[test]
fn bad_configs_fail_when_the_flow_loads_at_their_paths() {
    for (node_type, config, expected) in [
        (
            "sql_query",
            r#"{ url_secret: DB }"#,
            "nodes[0].config: missing field `query`",
        ),
        (
            "sql_execute",
            r#"{ url_secret: DB }"#,
            "nodes[0].config: missing field `query`",
        ),
        (
            "sql_query",
            r#"{ url_secret: DB, query: "SELECT * FROM t WHERE id = {{ input.id }}" }"#,
            "nodes[0].config.query: the SQL contains `{{`: expressions are not evaluated in SQL",
        ),
        (
            "sql_execute",
            r#"{ url_secret: DB, query: ["DELETE FROM t", "DELETE FROM u WHERE id = {{ input.id }}"] }"#,
            "nodes[0].config.query: [1]: the SQL contains `{{`",
        ),
        (
            "sql_query_one",
            r#"{ url_secret: DB, query: "SELECT {{ input.column }} FROM t" }"#,
            "give the values in `params`",
        ),
        (
            "sql_execute",
            r#"{ url_secret: DB, query: 5 }"#,
            "nodes[0].config.query: 5 is not valid under any of the schemas",
        ),
        (
            "sql_execute",
            r#"{ url_secret: DB, query: [] }"#,
            "nodes[0].config.query: the list of statements is empty",
        ),
        (
            "sql_query",
            r#"{ url_secret: DB, query: "  " }"#,
            "nodes[0].config.query: the SQL text is empty",
        ),
        (
            "sql_query",
            r#"{ url_secret: DB, query: "SELECT 1", max_rows: many }"#,
            "nodes[0].config.max_rows:",
        ),
        (
            "sql_query",
            r#"{ url_secret: DB, query: "SELECT 1", params: { id: 1 } }"#,
            "nodes[0].config.params:",
        ),
        (
            "sql_query",
            r#"{ url: "redis://127.0.0.1/", query: "SELECT 1" }"#,
            "nodes[0].config.url: the scheme `redis` is not supported; use postgres://, mysql://, mariadb:// or sqlite:",
        ),
        (
            "sql_query",
            r#"{ url_secret: DB, query: "SELECT 1", over_max_rows: wrap }"#,
            "nodes[0].config.over_max_rows:",
        ),
        (
            "sql_query",
            r#"{ url_secret: DB, query: "SELECT 1", statement_timeout: forever }"#,
            "nodes[0].config.statement_timeout:",
        ),
        (
            "sql_query",
            r#"{ url_secret: DB, query: "SELECT 1", max_connections: 0 }"#,
            "nodes[0].config.max_connections:",
        ),
        (
            "sql_query",
            r#"{ url_secret: DB, sql: "SELECT 1" }"#,
            "unknown field `sql`",
        ),
    ] {
        let yaml = format!(
            "version: 1\nname: bad\nnodes:\n  - id: db\n    type: {node_type}\n    config: {config}\n"
        );
        let err = load_error(&yaml);
        assert!(
            err.contains(expected),
            "{config}: `{err}` lacks `{expected}`"
        );
    }
}

#[tokio::test]
async fn the_connection_comes_from_url_or_url_secret() {
    let engine = engine_for("sqlite::memory:");
    let err = run_one(
        &engine,
        "sql_query",
        &json!({"query": "SELECT 1 AS one"}),
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.message(),
        "config: missing the connection: give `url` or `url_secret` (the name of a secret holding the URL)"
    );
    assert!(!err.is_retryable());
    let err = run_one(
        &engine,
        "sql_query",
        &json!({"query": "SELECT 1 AS one", "url": "sqlite::memory:", "url_secret": "DB_URL"}),
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.message(),
        "config: give either `url` or `url_secret`, not both"
    );
    let err = run_one(
        &engine,
        "sql_query",
        &json!({"query": "SELECT 1 AS one", "url_secret": "NOT_SET"}),
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.message(), "node `sql`: secret `NOT_SET` is not set");
    let out = run_one(
        &engine,
        "sql_query",
        &json!({"query": "SELECT 1 AS one", "url_secret": "DB_URL"}),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(out["rows"], json!([{"one": 1}]));
}

#[tokio::test]
async fn on_error_continue_and_skip() {
    let db = Db::sqlite();
    db.execute("CREATE TABLE k (id INTEGER PRIMARY KEY)", json!([]))
        .await;
    db.execute("INSERT INTO k VALUES (1)", json!([])).await;
    for policy in ["continue", "skip"] {
        // `report` reads the insert's output in an expression: it depends
        // on the insert, and is skipped with it.
        let yaml = format!(
            r#"
version: 1
name: dup
nodes:
  - id: insert
    type: sql_execute
    config: {{ url_secret: DB_URL, query: "INSERT INTO k VALUES (1)" }}
    on_error: {policy}
  - id: report
    type: sql_query
    config:
      url_secret: DB_URL
      query: SELECT $1 AS inserted
      params: ["{{{{ nodes.insert.rows_affected }}}}"]
outputs:
  failure: insert.error
  report: report.rows
"#
        );
        let outcome = db.engine.run(&load(&yaml), Inputs::new()).await.unwrap();
        assert_eq!(
            outcome.node("report").unwrap().status,
            NodeStatus::Skipped,
            "{policy}"
        );
        let failure = outcome.output::<NodeFailure>("failure");
        if policy == "continue" {
            assert_eq!(outcome.node("insert").unwrap().status, NodeStatus::Failed);
            let failure = failure.unwrap();
            assert_eq!(failure.node, "insert");
            assert_eq!(
                failure.message,
                "config.query: UNIQUE constraint failed: k.id (SQLite error 1555)"
            );
            assert!(!failure.retryable);
            assert_eq!(failure.attempts, 1);
        } else {
            assert_eq!(outcome.node("insert").unwrap().status, NodeStatus::Skipped);
            assert!(failure.is_err(), "{failure:?}");
        }
    }
}

#[tokio::test]
async fn typed_flows_run_and_read_back_as_documents() {
    let db = Db::sqlite();
    let mut b = Flow::builder("typed");
    let make = b.add(
        "make",
        SqlExecute::new(
            &db.url,
            Statements::Many(vec![
                "CREATE TABLE t (x INTEGER, label TEXT)".to_owned(),
                "INSERT INTO t VALUES ($1, $2)".to_owned(),
            ]),
        )
        .unwrap()
        .params([json!([]), json!([7, "seven"])]),
    );
    let read = b.add(
        "read",
        SqlQuery::new(&db.url, "SELECT x, label FROM t WHERE x > $1")
            .unwrap()
            .params([json!(0)]),
    );
    b.connect(make.out().last_insert_id, read.inp().after);
    b.output("rows", read.out().rows);
    let flow = b.build().unwrap();
    let engine = engine_for(&db.url);
    let direct = engine.run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(
        direct.output::<Value>("rows").unwrap(),
        json!([{"x": 7, "label": "seven"}])
    );
    let yaml = Document::from_flow(&flow).unwrap().to_yaml();
    assert!(yaml.contains("type: sql_query"), "{yaml}");
    // Read back into a fresh database: the same result.
    let other = Db::sqlite();
    let yaml = yaml.replace(&db.url, &other.url);
    let reloaded = engine.run(&load(&yaml), Inputs::new()).await.unwrap();
    assert_eq!(
        reloaded.output::<Value>("rows").unwrap(),
        direct.output::<Value>("rows").unwrap()
    );
    // The constructors refuse what a document would.
    assert_eq!(
        SqlQuery::new("ftp://x", "SELECT 1").unwrap_err(),
        "the scheme `ftp` is not supported; use postgres://, mysql://, mariadb:// or sqlite:"
    );
    assert!(SqlExecute::new("sqlite::memory:", "DELETE FROM t WHERE a = {{ x }}").is_err());
}

#[cfg(feature = "control")]
#[tokio::test]
async fn for_each_inserts_one_row_per_item() {
    let db = Db::postgres().await;
    db.execute(
        "CREATE TABLE tags (name text PRIMARY KEY, n integer)",
        json!([]),
    )
    .await;
    let yaml = r#"
version: 1
name: tags
inputs:
  tags: { schema: { type: array } }
nodes:
  - id: each
    type: for_each
    config:
      concurrency: 3
      flow:
        version: 1
        name: one-tag
        inputs:
          item: { schema: { type: object } }
        nodes:
          - id: insert
            type: sql_execute
            config:
              url_secret: DB_URL
              query: INSERT INTO tags (name, n) VALUES ($1, $2)
              params: ["{{ input.item.name }}", "{{ input.item.n }}"]
        outputs:
          affected: insert.rows_affected
edges:
  - { from: input.tags, to: each.items }
outputs:
  results: each.results
"#;
    let outcome = db
        .engine
        .run(
            &load(yaml),
            Inputs::from_json(
                json!({"tags": [{"name": "a", "n": 1}, {"name": BOBBY, "n": 2}, {"name": "c", "n": 3}]})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome.output::<Value>("results").unwrap(),
        json!([1, 1, 1])
    );
    assert_eq!(
        db.rows("SELECT name, n FROM tags ORDER BY n", json!([]))
            .await,
        json!([{"name": "a", "n": 1}, {"name": BOBBY, "n": 2}, {"name": "c", "n": 3}])
    );
}
