//! [`SqliteStore`]: the embedded vector store, records in a SQLite file,
//! searches in memory.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use futures::future::BoxFuture;
use parking_lot::RwLock;
use serde_json::{Map, Value};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteLockingMode, SqliteSynchronous,
};
use sqlx::{Connection, Row};

use super::index::{Collection, Index};
use super::{
    CollectionInfo, Filter, Match, Metric, Query, Record, Selection, StoreError, Upserted,
    VectorStore, check_record, check_vector,
};

/// The version of the file layout this program writes and reads.
const FORMAT: &str = "1";

/// Searches over more values than this (vectors times dimensions) run on
/// the blocking pool, not on the async threads.
const INLINE_SEARCH_VALUES: usize = 1 << 20;

/// The most SQL parameters of one statement (SQLite allows 32766).
const ROWS_PER_STATEMENT: usize = 200;

/// How long to wait for another owner of the file to let go.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The embedded vector store: one SQLite file, opened in exclusive mode,
/// and an in-memory flat index of all its records. See the [module
/// documentation](super) for why and what is guaranteed.
///
/// ```no_run
/// # async fn demo() -> Result<(), ghostflow_nodes::ai::vector::StoreError> {
/// use ghostflow_nodes::ai::vector::{Query, Record, SqliteStore, VectorStore};
///
/// let store = SqliteStore::open("data/vectors.db".as_ref(), "vectors.db").await?;
/// store
///     .upsert("docs", vec![Record {
///         id: "a".into(),
///         vector: vec![1.0, 0.0],
///         text: "about cats".into(),
///         metadata: Default::default(),
///     }])
///     .await?;
/// let best = store.search("docs", &Query::new(vec![0.9, 0.1], 3)).await?;
/// assert_eq!(best[0].id, "a");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The file as the application or flow named it, for messages.
    shown: String,
    /// The one connection; holding it is holding the write lock.
    conn: tokio::sync::Mutex<SqliteConnection>,
    index: RwLock<Index>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = self.inner.index.read();
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.shown)
            .field("collections", &index.collections.len())
            .finish_non_exhaustive()
    }
}

/// Whether a database error is SQLite's "busy" or "locked".
fn is_locked(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        _ => false,
    }
}

/// Whether a database error says the file is not (or no longer) a
/// database: `SQLITE_CORRUPT`, `SQLITE_NOTADB`.
fn is_corrupt(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 11 | 26)),
        _ => false,
    }
}

impl Inner {
    fn error(&self, e: sqlx::Error) -> StoreError {
        if is_locked(&e) {
            StoreError::Locked {
                path: self.shown.clone(),
            }
        } else if is_corrupt(&e) {
            StoreError::Corrupt {
                path: self.shown.clone(),
                reason: db_message(&e),
            }
        } else {
            StoreError::Database {
                path: self.shown.clone(),
                source: e,
            }
        }
    }

    fn corrupt(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.shown.clone(),
            reason: reason.into(),
        }
    }
}

fn db_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    }
}

fn to_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

impl SqliteStore {
    /// Opens the store in the file at `path`, creating it when missing,
    /// and loads its records into memory. `shown` names the file in
    /// messages (such as the path relative to the file root).
    ///
    /// # Errors
    /// The file is not a vector store or is damaged
    /// ([`StoreError::Corrupt`]), another engine or process has it open
    /// ([`StoreError::Locked`]), or it cannot be opened.
    pub async fn open(path: &Path, shown: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .locking_mode(SqliteLockingMode::Exclusive)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(LOCK_WAIT);
        let fail = |e: sqlx::Error| {
            if is_locked(&e) {
                StoreError::Locked {
                    path: shown.to_owned(),
                }
            } else if is_corrupt(&e) {
                StoreError::Corrupt {
                    path: shown.to_owned(),
                    reason: db_message(&e),
                }
            } else {
                StoreError::Database {
                    path: shown.to_owned(),
                    source: e,
                }
            }
        };
        let conn = SqliteConnection::connect_with(&options)
            .await
            .map_err(fail)?;
        let inner = Inner {
            shown: shown.to_owned(),
            conn: tokio::sync::Mutex::new(conn),
            index: RwLock::new(Index::default()),
        };
        let index = {
            let mut conn = inner.conn.lock().await;
            prepare(&inner, &mut conn).await?;
            load(&inner, &mut conn).await?
        };
        *inner.index.write() = index;
        Ok(SqliteStore {
            inner: Arc::new(inner),
        })
    }

    /// The file's name as given to [`open`](Self::open).
    pub fn path(&self) -> &str {
        &self.inner.shown
    }
}

/// Takes the exclusive lock, and makes or checks the schema.
async fn prepare(inner: &Inner, conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let mut tx = conn
        .begin_with("BEGIN EXCLUSIVE")
        .await
        .map_err(|e| inner.error(e))?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| inner.error(e))?;
    if tables.is_empty() {
        for statement in [
            "CREATE TABLE ghostflow_vector_store (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE vector_collections (name TEXT PRIMARY KEY, dimension INTEGER NOT NULL)",
            "CREATE TABLE vector_records (collection TEXT NOT NULL, id TEXT NOT NULL, vector BLOB NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL, PRIMARY KEY (collection, id))",
        ] {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| inner.error(e))?;
        }
        sqlx::query("INSERT INTO ghostflow_vector_store (key, value) VALUES ('format', ?)")
            .bind(FORMAT)
            .execute(&mut *tx)
            .await
            .map_err(|e| inner.error(e))?;
    } else {
        if !tables.iter().any(|t| t == "ghostflow_vector_store") {
            return Err(inner.corrupt(format!(
                "it is a SQLite database of something else (tables: {})",
                tables.join(", ")
            )));
        }
        let format: Option<String> =
            sqlx::query_scalar("SELECT value FROM ghostflow_vector_store WHERE key = 'format'")
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| inner.error(e))?;
        if format.as_deref() != Some(FORMAT) {
            return Err(inner.corrupt(format!(
                "its format is {}, and this program reads format {FORMAT}",
                format.as_deref().unwrap_or("not recorded")
            )));
        }
    }
    tx.commit().await.map_err(|e| inner.error(e))
}

/// Every record, into memory.
async fn load(inner: &Inner, conn: &mut SqliteConnection) -> Result<Index, StoreError> {
    let mut index = Index::default();
    let rows = sqlx::query("SELECT name, dimension FROM vector_collections")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| inner.error(e))?;
    for row in rows {
        let name: String = row.try_get(0).map_err(|e| inner.corrupt(e.to_string()))?;
        let dimension: i64 = row.try_get(1).map_err(|e| inner.corrupt(e.to_string()))?;
        let dimension = usize::try_from(dimension)
            .ok()
            .filter(|d| (1..=super::MAX_DIMENSION).contains(d))
            .ok_or_else(|| {
                inner.corrupt(format!("collection `{name}` has dimension {dimension}"))
            })?;
        index.collections.insert(name, Collection::new(dimension));
    }
    let mut rows = sqlx::query("SELECT collection, id, vector, text, metadata FROM vector_records")
        .fetch(&mut *conn);
    while let Some(row) = rows.try_next().await.map_err(|e| inner.error(e))? {
        let bad = |e: sqlx::Error| inner.corrupt(e.to_string());
        let collection: String = row.try_get(0).map_err(bad)?;
        let id: String = row.try_get(1).map_err(bad)?;
        let bytes: Vec<u8> = row.try_get(2).map_err(bad)?;
        let text: String = row.try_get(3).map_err(bad)?;
        let metadata: String = row.try_get(4).map_err(bad)?;
        let Some(c) = index.collections.get_mut(&collection) else {
            return Err(inner.corrupt(format!(
                "record `{id}` belongs to collection `{collection}`, which is not recorded"
            )));
        };
        if bytes.len() != c.dimension * 4 {
            return Err(inner.corrupt(format!(
                "record `{id}` of collection `{collection}` has a vector of {} bytes, not {} ({} dimensions)",
                bytes.len(),
                c.dimension * 4,
                c.dimension
            )));
        }
        let vector = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let metadata: Map<String, Value> = serde_json::from_str(&metadata).map_err(|e| {
            inner.corrupt(format!(
                "record `{id}` of collection `{collection}` has metadata that is not a JSON object: {e}"
            ))
        })?;
        c.put(Record {
            id,
            vector,
            text,
            metadata,
        });
    }
    Ok(index)
}

/// Upserts, on a task of its own (see [`SqliteStore::write`]).
async fn upsert(
    inner: Arc<Inner>,
    collection: String,
    records: Vec<Record>,
) -> Result<Upserted, StoreError> {
    for (i, record) in records.iter().enumerate() {
        check_record(i, record)?;
    }
    let mut conn = inner.conn.lock().await;
    let existing = inner
        .index
        .read()
        .collections
        .get(&collection)
        .map(|c| c.dimension);
    let Some(first) = records.first() else {
        let count = inner
            .index
            .read()
            .collections
            .get(&collection)
            .map_or(0, Collection::len);
        return Ok(Upserted {
            count: count as u64,
            ..Upserted::default()
        });
    };
    let dimension = existing.unwrap_or(first.vector.len());
    for (i, record) in records.iter().enumerate() {
        if record.vector.len() != dimension {
            return Err(StoreError::Dimension {
                collection,
                expected: dimension,
                got: record.vector.len(),
                what: format!("record {i} (id `{}`)", record.id),
            });
        }
    }
    // A repeated id keeps its first place and its last record.
    let mut unique: Vec<Record> = Vec::with_capacity(records.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for record in records {
        match seen.get(&record.id) {
            Some(&at) => unique[at] = record,
            None => {
                seen.insert(record.id.clone(), unique.len());
                unique.push(record);
            }
        }
    }
    let mut tx = conn.begin().await.map_err(|e| inner.error(e))?;
    if existing.is_none() {
        sqlx::query("INSERT INTO vector_collections (name, dimension) VALUES (?, ?)")
            .bind(&collection)
            .bind(dimension as i64)
            .execute(&mut *tx)
            .await
            .map_err(|e| inner.error(e))?;
    }
    for batch in unique.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO vector_records (collection, id, vector, text, metadata) VALUES ",
        );
        for i in 0..batch.len() {
            sql.push_str(if i == 0 {
                "(?, ?, ?, ?, ?)"
            } else {
                ", (?, ?, ?, ?, ?)"
            });
        }
        sql.push_str(
            " ON CONFLICT (collection, id) DO UPDATE SET vector = excluded.vector, text = excluded.text, metadata = excluded.metadata",
        );
        let mut query = sqlx::query(&sql);
        for record in batch {
            query = query
                .bind(&collection)
                .bind(&record.id)
                .bind(to_bytes(&record.vector))
                .bind(&record.text)
                .bind(Value::Object(record.metadata.clone()).to_string());
        }
        query.execute(&mut *tx).await.map_err(|e| inner.error(e))?;
    }
    tx.commit().await.map_err(|e| inner.error(e))?;
    // Committed: the index follows, whole, before the lock is let go.
    let mut index = inner.index.write();
    let c = index
        .collections
        .entry(collection)
        .or_insert_with(|| Collection::new(dimension));
    let mut done = Upserted::default();
    for record in unique {
        if c.put(record) {
            done.updated += 1;
        } else {
            done.inserted += 1;
        }
    }
    done.count = c.len() as u64;
    Ok(done)
}

/// Deletes, on a task of its own.
async fn delete(
    inner: Arc<Inner>,
    collection: String,
    selection: Selection,
) -> Result<u64, StoreError> {
    let mut conn = inner.conn.lock().await;
    let (ids, emptied) = {
        let index = inner.index.read();
        let Some(c) = index.collections.get(&collection) else {
            return Ok(0);
        };
        let mut ids = match &selection {
            Selection::Ids(ids) => ids.iter().filter(|id| c.contains(id)).cloned().collect(),
            Selection::Filter(filter) => c.select(filter),
        };
        ids.sort();
        ids.dedup();
        let emptied = ids.len() == c.len();
        (ids, emptied)
    };
    if ids.is_empty() {
        return Ok(0);
    }
    let mut tx = conn.begin().await.map_err(|e| inner.error(e))?;
    if emptied {
        for statement in [
            "DELETE FROM vector_records WHERE collection = ?",
            "DELETE FROM vector_collections WHERE name = ?",
        ] {
            sqlx::query(statement)
                .bind(&collection)
                .execute(&mut *tx)
                .await
                .map_err(|e| inner.error(e))?;
        }
    } else {
        for batch in ids.chunks(ROWS_PER_STATEMENT) {
            let marks = vec!["?"; batch.len()].join(", ");
            let sql =
                format!("DELETE FROM vector_records WHERE collection = ? AND id IN ({marks})");
            let mut query = sqlx::query(&sql).bind(&collection);
            for id in batch {
                query = query.bind(id);
            }
            query.execute(&mut *tx).await.map_err(|e| inner.error(e))?;
        }
    }
    tx.commit().await.map_err(|e| inner.error(e))?;
    let mut index = inner.index.write();
    if emptied {
        index.collections.remove(&collection);
    } else if let Some(c) = index.collections.get_mut(&collection) {
        for id in &ids {
            c.remove(id);
        }
    }
    Ok(ids.len() as u64)
}

fn search_now(inner: &Inner, collection: &str, query: &Query) -> Result<Vec<Match>, StoreError> {
    let index = inner.index.read();
    let Some(c) = index.collections.get(collection) else {
        let mut known: Vec<String> = index.collections.keys().cloned().collect();
        known.sort();
        return Err(StoreError::NoCollection {
            collection: collection.to_owned(),
            known,
        });
    };
    if query.vector.len() != c.dimension {
        return Err(StoreError::Dimension {
            collection: collection.to_owned(),
            expected: c.dimension,
            got: query.vector.len(),
            what: "the query vector".into(),
        });
    }
    Ok(c.search(
        &query.vector,
        query.top_k,
        query.metric,
        query.filter.as_ref(),
        query.min_score,
    ))
}

impl SqliteStore {
    /// Runs a write on its own task: when the caller's future is dropped
    /// (a cancelled execution, a timeout), the write still finishes, so
    /// the file and the index never part.
    async fn write<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        match tokio::spawn(work).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Invalid(format!(
                "the vector store `{}`: the write task failed: {e}",
                self.inner.shown
            ))),
        }
    }
}

impl VectorStore for SqliteStore {
    fn upsert<'a>(
        &'a self,
        collection: &'a str,
        records: Vec<Record>,
    ) -> BoxFuture<'a, Result<Upserted, StoreError>> {
        Box::pin(self.write(upsert(self.inner.clone(), collection.to_owned(), records)))
    }

    fn delete<'a>(
        &'a self,
        collection: &'a str,
        selection: &'a Selection,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(self.write(delete(
            self.inner.clone(),
            collection.to_owned(),
            selection.clone(),
        )))
    }

    fn search<'a>(
        &'a self,
        collection: &'a str,
        query: &'a Query,
    ) -> BoxFuture<'a, Result<Vec<Match>, StoreError>> {
        Box::pin(async move {
            check_vector(&query.vector, "the query vector")?;
            if query.metric == Metric::Cosine && query.vector.iter().all(|v| *v == 0.0) {
                return Err(StoreError::Invalid(
                    "the query vector is all zeros: its cosine with anything is undefined".into(),
                ));
            }
            let size = {
                let index = self.inner.index.read();
                index
                    .collections
                    .get(collection)
                    .map_or(0, |c| c.len() * c.dimension)
            };
            if size <= INLINE_SEARCH_VALUES {
                return search_now(&self.inner, collection, query);
            }
            let (inner, collection, query) =
                (self.inner.clone(), collection.to_owned(), query.clone());
            tokio::task::spawn_blocking(move || search_now(&inner, &collection, &query))
                .await
                .map_err(|e| StoreError::Invalid(format!("the search task failed: {e}")))?
        })
    }

    fn count<'a>(
        &'a self,
        collection: &'a str,
        filter: Option<&'a Filter>,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let index = self.inner.index.read();
            Ok(index
                .collections
                .get(collection)
                .map_or(0, |c| c.count(filter) as u64))
        })
    }

    fn collections(&self) -> BoxFuture<'_, Result<Vec<CollectionInfo>, StoreError>> {
        Box::pin(async move {
            let index = self.inner.index.read();
            let mut all: Vec<CollectionInfo> = index
                .collections
                .iter()
                .map(|(name, c)| CollectionInfo {
                    name: name.clone(),
                    dimension: c.dimension,
                    count: c.len() as u64,
                })
                .collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(all)
        })
    }
}
