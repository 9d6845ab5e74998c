//! The vector nodes: [`VectorUpsert`], [`VectorSearch`], [`VectorDelete`],
//! over the engine's [`SqliteStore`]s (one per file, shared by every
//! execution).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use ghostflow::prelude::*;
use serde_json::{Map, Value};
use sha2::Digest;

use super::{
    Filter, Match, Metric, Query, Record, Selection, SqliteStore, StoreError, VectorStore,
};
use crate::file::FileRoot;

/// The stores an engine has open, by canonical path: one object per file,
/// opened once (concurrent first uses wait for the same opening).
#[derive(Default)]
struct Stores {
    open: parking_lot::Mutex<HashMap<PathBuf, Arc<tokio::sync::OnceCell<SqliteStore>>>>,
}

const NO_ROOT: &str = "no file root: the vector store is a file under a directory the application chooses; give one with `Engine::builder().resource(ghostflow_nodes::file::FileRoot::new(dir))` (the `ghostflow` CLI gives the current directory, or `--file-root DIR`)";

/// The store named by `path` (relative to the engine's file root),
/// created when missing if `create`; else `None` when there is no such
/// file.
async fn open_store(
    ctx: &Context,
    path: &str,
    create: bool,
) -> Result<Option<SqliteStore>, NodeError> {
    let root = ctx
        .resource::<FileRoot>()
        .ok_or_else(|| NodeError::permanent(NO_ROOT))?;
    if root.is_read_only() {
        return Err(NodeError::permanent(format!(
            "the file root is read-only: the vector store `{path}` needs to write (its file, its journal and its lock)"
        )));
    }
    let (root, text) = (root.dir().to_path_buf(), path.to_owned());
    let (full, shown) = tokio::task::spawn_blocking(move || resolve(&root, &text))
        .await
        .map_err(|e| NodeError::retryable(format!("the path task failed: {e}")))?
        .map_err(NodeError::permanent)?;
    let stores = ctx.shared::<Stores>(Stores::default);
    let cell = stores.open.lock().entry(full.clone()).or_default().clone();
    if !create && !cell.initialized() && !full.exists() {
        return Ok(None);
    }
    cell.get_or_try_init(|| SqliteStore::open(&full, &shown))
        .await
        .cloned()
        .map(Some)
        .map_err(StoreError::into_node_error)
}

/// The file `text` names under `root`: its full path (the parent
/// directory canonical, created when missing) and the path as shown in
/// messages. Refuses paths that lead outside the root, by `..`, by an
/// absolute path elsewhere, or through a symbolic link.
fn resolve(root: &Path, text: &str) -> Result<(PathBuf, String), String> {
    let at = |reason: &str| format!("config.path `{text}`: {reason}");
    if text.is_empty() {
        return Err(at("is empty"));
    }
    if text.contains('\0') {
        return Err(at("contains a NUL character"));
    }
    let canonical_root =
        std::fs::canonicalize(root).map_err(|e| format!("the file root cannot be opened: {e}"))?;
    let outside = || at("leads outside the file root");
    let path = Path::new(text);
    let relative = if path.is_absolute() {
        path.strip_prefix(&canonical_root)
            .or_else(|_| path.strip_prefix(root))
            .map_err(|_| outside())?
    } else {
        path
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(outside());
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    let Some(name) = parts.pop() else {
        return Err(at("names the file root itself, not a file in it"));
    };
    // Walk the directories from the root: each must stay under it once
    // links are resolved; missing ones are made.
    let mut dir = canonical_root.clone();
    for part in &parts {
        let next = dir.join(part);
        match std::fs::symlink_metadata(&next) {
            Ok(_) => {
                let real = std::fs::canonicalize(&next).map_err(|e| at(&e.to_string()))?;
                if !real.starts_with(&canonical_root) {
                    return Err(outside());
                }
                if !real.is_dir() {
                    return Err(at(&format!(
                        "`{}` is not a directory",
                        part.to_string_lossy()
                    )));
                }
                dir = real;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::fs::create_dir(&next)
                    .or_else(|e| {
                        if e.kind() == ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| at(&format!("cannot create its directory: {e}")))?;
                dir = next;
            }
            Err(e) => return Err(at(&e.to_string())),
        }
    }
    let mut full = dir.join(name);
    if let Ok(meta) = std::fs::symlink_metadata(&full) {
        if meta.file_type().is_symlink() {
            let real =
                std::fs::canonicalize(&full).map_err(|_| at("is a symbolic link to nothing"))?;
            if !real.starts_with(&canonical_root) {
                return Err(outside());
            }
            full = real;
        }
        if full.is_dir() {
            return Err(at("is a directory"));
        }
    }
    let shown = parts
        .iter()
        .chain(std::iter::once(&name))
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    Ok((full, shown))
}

fn default_collection() -> String {
    "default".into()
}

fn collection_name<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let name = String::deserialize(deserializer)?;
    check_collection(&name).map_err(serde::de::Error::custom)?;
    Ok(name)
}

fn check_collection(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("a collection name has 1 to 128 characters".into());
    }
    if name.chars().any(char::is_control) {
        return Err("a collection name has no control characters".into());
    }
    Ok(())
}

fn store_path<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let path = String::deserialize(deserializer)?;
    if path.is_empty() {
        return Err(serde::de::Error::custom("the store's path is empty"));
    }
    Ok(path)
}

/// A stable id for a record without one: the first 128 bits of the
/// SHA-256 of its text, in hexadecimal (the same text gets the same id,
/// so upserting a document again replaces its chunks).
pub(crate) fn text_id(text: &str) -> String {
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

// ------------------------------------------------------------------ upsert

/// Records to store: parallel lists.
#[derive(Ports, Debug)]
pub struct VectorUpsertInput {
    /// One vector per record (such as an embeddings node's output).
    pub vectors: Vec<Vec<f32>>,
    /// One text per record, in the same order.
    pub texts: Vec<String>,
    /// One id per record; without them, each id is derived from the text
    /// (the first 128 bits of its SHA-256, in hexadecimal).
    pub ids: Option<Vec<String>>,
    /// Metadata: one object for every record, or a list of objects, one
    /// per record (such as `text_split`'s `metadata` output).
    pub metadata: Option<Value>,
}

/// What the upsert did.
#[derive(Ports, Debug)]
pub struct VectorUpsertOutput {
    /// Records that were new.
    pub inserted: u64,
    /// Records that replaced one with the same id.
    pub updated: u64,
    /// Records in the collection afterwards.
    pub count: u64,
    /// The records' ids, in the order of the inputs.
    pub ids: Vec<String>,
}

/// Stores vectors with their texts and metadata in a collection of the
/// embedded vector store, replacing records with the same id.
///
/// The store is a SQLite file at `path` under the engine's file root,
/// opened once per engine and shared by every execution; it survives
/// restarts. `vectors` and `texts` are parallel lists; `ids` (optional,
/// else derived from each text, so that loading a document again replaces
/// its chunks rather than adding copies) and `metadata` (one object for
/// all, or one per record) complete them. A collection takes the
/// dimension of its first vector; a vector of another length fails the
/// node, naming the collection and both sizes. The write is atomic: all
/// records are stored, or none.
///
/// ```yaml
/// - id: store_chunks
///   type: vector_upsert
///   config:
///     path: data/knowledge.db
///     collection: handbook
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = VectorUpsertInput, output = VectorUpsertOutput, category = "ai")]
#[serde(deny_unknown_fields)]
pub struct VectorUpsert {
    /// The store's file, relative to the engine's file root (created with
    /// its directories when missing).
    #[serde(deserialize_with = "store_path")]
    pub path: String,
    /// The collection (default `default`).
    #[serde(default = "default_collection", deserialize_with = "collection_name")]
    pub collection: String,
    /// The most records one run stores (default 10000).
    #[serde(default = "default_max_records")]
    pub max_records: usize,
}

fn default_max_records() -> usize {
    10_000
}

impl VectorUpsert {
    /// Upserts into `collection` of the store at `path`.
    pub fn new(path: impl Into<String>, collection: impl Into<String>) -> Self {
        VectorUpsert {
            path: path.into(),
            collection: collection.into(),
            max_records: default_max_records(),
        }
    }
}

/// The records of an upsert's inputs, or what is wrong with them.
fn records(input: VectorUpsertInput, max: usize) -> Result<Vec<Record>, String> {
    let VectorUpsertInput {
        vectors,
        texts,
        ids,
        metadata,
    } = input;
    let n = vectors.len();
    if texts.len() != n {
        return Err(format!(
            "inputs `vectors` ({n}) and `texts` ({}) must have the same length",
            texts.len()
        ));
    }
    if n > max {
        return Err(format!(
            "input `vectors`: {n} records, more than config.max_records ({max})"
        ));
    }
    if let Some(ids) = &ids
        && ids.len() != n
    {
        return Err(format!(
            "inputs `vectors` ({n}) and `ids` ({}) must have the same length",
            ids.len()
        ));
    }
    let metadata: Vec<Map<String, Value>> = match metadata {
        None | Some(Value::Null) => vec![Map::new(); n],
        Some(Value::Object(shared)) => vec![shared; n],
        Some(Value::Array(items)) => {
            if items.len() != n {
                return Err(format!(
                    "inputs `vectors` ({n}) and `metadata` ({}) must have the same length",
                    items.len()
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(m) => Ok(m),
                    Value::Null => Ok(Map::new()),
                    other => Err(format!(
                        "input `metadata`: item {i} is {}, not an object",
                        crate::kind(&other)
                    )),
                })
                .collect::<Result<_, _>>()?
        }
        Some(other) => {
            return Err(format!(
                "input `metadata`: expected an object or a list of objects, got {}",
                crate::kind(&other)
            ));
        }
    };
    let ids = ids.unwrap_or_else(|| texts.iter().map(|t| text_id(t)).collect());
    Ok(vectors
        .into_iter()
        .zip(texts)
        .zip(ids)
        .zip(metadata)
        .map(|(((vector, text), id), metadata)| Record {
            id,
            vector,
            text,
            metadata,
        })
        .collect())
}

impl Run for VectorUpsert {
    async fn run(
        &self,
        input: VectorUpsertInput,
        ctx: &Context,
    ) -> Result<VectorUpsertOutput, NodeError> {
        check_collection(&self.collection)
            .map_err(|e| NodeError::permanent(format!("config.collection: {e}")))?;
        let records = records(input, self.max_records).map_err(NodeError::permanent)?;
        let ids = records.iter().map(|r| r.id.clone()).collect();
        let Some(store) = open_store(ctx, &self.path, true).await? else {
            return Err(NodeError::retryable(format!(
                "the vector store `{}` could not be created",
                self.path
            )));
        };
        let done = store
            .upsert(&self.collection, records)
            .await
            .map_err(StoreError::into_node_error)?;
        Ok(VectorUpsertOutput {
            inserted: done.inserted,
            updated: done.updated,
            count: done.count,
            ids,
        })
    }
}

// ------------------------------------------------------------------ search

/// The query.
#[derive(Ports, Debug)]
pub struct VectorSearchInput {
    /// The query vector (such as the embedding of a question).
    pub vector: Vec<f32>,
    /// A filter for this run, combined with the configured one (both must
    /// hold); same language.
    pub filter: Option<Value>,
    /// Any value: connect an output here to search only after that node
    /// (such as a `vector_upsert`) has run. The value is not used.
    pub after: Option<Value>,
}

/// What was found.
#[derive(Ports, Debug)]
pub struct VectorSearchOutput {
    /// The matches, best first: `{id, score, text, metadata}`.
    pub matches: Vec<Match>,
    /// The matches' texts, best first.
    pub texts: Vec<String>,
    /// The matches' texts joined by `separator`, ready for a prompt.
    pub context: String,
    /// How many matches.
    pub count: u64,
}

/// Finds the records of a collection most similar to a query vector, by
/// cosine or dot product, optionally only among records whose metadata
/// passes a filter.
///
/// The search is exact (every vector of the collection is compared) and
/// its matches come best first, ties broken by id. The filter language:
/// `field: value` (equality), `field: {in: [...]}`, `field: {gte: 1, lt: 5}`
/// (numbers), `ne`, `not_in`, `exists`, and `and`/`or`/`not` over filters;
/// a dotted name reads nested metadata. The configured filter is checked
/// when the flow loads; a `filter` input is checked when the node runs and
/// must hold as well. A query vector whose length is not the collection's
/// fails the node, naming both sizes; so does a collection that does not
/// exist.
///
/// ```yaml
/// - id: find_passages
///   type: vector_search
///   config:
///     path: data/knowledge.db
///     collection: handbook
///     top_k: 4
///     metric: cosine
///     filter:
///       lang: { in: [en, de] }
///       year: { gte: 2020 }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = VectorSearchInput, output = VectorSearchOutput, category = "ai")]
#[serde(deny_unknown_fields)]
pub struct VectorSearch {
    /// The store's file, relative to the engine's file root.
    #[serde(deserialize_with = "store_path")]
    pub path: String,
    /// The collection (default `default`).
    #[serde(default = "default_collection", deserialize_with = "collection_name")]
    pub collection: String,
    /// How many matches at most (1 to 1000, default 4).
    #[serde(default = "default_top_k", deserialize_with = "top_k")]
    pub top_k: usize,
    /// `cosine` (the default) or `dot`.
    #[serde(default)]
    pub metric: Metric,
    /// Only records whose metadata passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Only matches scoring at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
    /// What joins the texts in `context` (default a blank line).
    #[serde(default = "default_separator")]
    pub separator: String,
}

fn default_top_k() -> usize {
    4
}

fn default_separator() -> String {
    "\n\n".into()
}

fn top_k<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let k = usize::deserialize(deserializer)?;
    if !(1..=1000).contains(&k) {
        return Err(serde::de::Error::custom(format!(
            "{k} is not between 1 and 1000"
        )));
    }
    Ok(k)
}

impl VectorSearch {
    /// The `top_k` best matches by cosine in `collection` of the store at
    /// `path`.
    pub fn new(path: impl Into<String>, collection: impl Into<String>, top_k: usize) -> Self {
        VectorSearch {
            path: path.into(),
            collection: collection.into(),
            top_k,
            metric: Metric::Cosine,
            filter: None,
            min_score: None,
            separator: default_separator(),
        }
    }
}

impl Run for VectorSearch {
    async fn run(
        &self,
        input: VectorSearchInput,
        ctx: &Context,
    ) -> Result<VectorSearchOutput, NodeError> {
        check_collection(&self.collection)
            .map_err(|e| NodeError::permanent(format!("config.collection: {e}")))?;
        if !(1..=1000).contains(&self.top_k) {
            return Err(NodeError::permanent(format!(
                "config.top_k: {} is not between 1 and 1000",
                self.top_k
            )));
        }
        let given = match input.filter {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                Filter::parse(&value)
                    .map_err(|e| NodeError::permanent(format!("input `filter`: {e}")))?,
            ),
        };
        let filter = match (self.filter.clone(), given) {
            (Some(a), Some(b)) => Some(a.and(b)),
            (a, b) => a.or(b),
        };
        let query = Query {
            vector: input.vector,
            top_k: self.top_k,
            metric: self.metric,
            filter,
            min_score: self.min_score,
        };
        let Some(store) = open_store(ctx, &self.path, false).await? else {
            return Err(NodeError::permanent(format!(
                "the vector store `{}` does not exist: nothing was stored in it yet",
                self.path
            )));
        };
        let matches = store
            .search(&self.collection, &query)
            .await
            .map_err(StoreError::into_node_error)?;
        let texts: Vec<String> = matches.iter().map(|m| m.text.clone()).collect();
        Ok(VectorSearchOutput {
            context: texts.join(&self.separator),
            count: matches.len() as u64,
            matches,
            texts,
        })
    }
}

// ------------------------------------------------------------------ delete

/// What to delete.
#[derive(Ports, Debug)]
pub struct VectorDeleteInput {
    /// The ids of the records to delete (ids that do not exist are
    /// ignored); in place of a configured filter.
    pub ids: Option<Vec<String>>,
    /// Any value: connect an output here to delete only after that node
    /// has run. The value is not used.
    pub after: Option<Value>,
}

/// What was deleted.
#[derive(Ports, Debug)]
pub struct VectorDeleteOutput {
    /// How many records were deleted.
    pub deleted: u64,
    /// Records left in the collection.
    pub count: u64,
}

/// Deletes records from a collection of the embedded vector store: those
/// with the given ids, or those whose metadata passes the configured
/// filter.
///
/// Give either the `ids` input or a `filter` (the same language as
/// `vector_search`'s; `filter: {}` deletes every record). A collection
/// whose last record is deleted is removed, so that it may be filled again
/// with vectors of another dimension. The delete is atomic.
///
/// ```yaml
/// - id: forget_old_guide
///   type: vector_delete
///   config:
///     path: data/knowledge.db
///     collection: handbook
///     filter: { source: old-guide.md }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = VectorDeleteInput, output = VectorDeleteOutput, category = "ai")]
#[serde(deny_unknown_fields)]
pub struct VectorDelete {
    /// The store's file, relative to the engine's file root.
    #[serde(deserialize_with = "store_path")]
    pub path: String,
    /// The collection (default `default`).
    #[serde(default = "default_collection", deserialize_with = "collection_name")]
    pub collection: String,
    /// Delete the records whose metadata passes (when no `ids` are
    /// given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

impl VectorDelete {
    /// Deletes from `collection` of the store at `path`, by the `ids`
    /// input.
    pub fn new(path: impl Into<String>, collection: impl Into<String>) -> Self {
        VectorDelete {
            path: path.into(),
            collection: collection.into(),
            filter: None,
        }
    }
}

impl Run for VectorDelete {
    async fn run(
        &self,
        input: VectorDeleteInput,
        ctx: &Context,
    ) -> Result<VectorDeleteOutput, NodeError> {
        check_collection(&self.collection)
            .map_err(|e| NodeError::permanent(format!("config.collection: {e}")))?;
        let selection = match (input.ids, &self.filter) {
            (Some(ids), None) => Selection::Ids(ids),
            (None, Some(filter)) => Selection::Filter(filter.clone()),
            (Some(_), Some(_)) => {
                return Err(NodeError::permanent(
                    "input `ids` and config.filter: give one of them, not both",
                ));
            }
            (None, None) => {
                return Err(NodeError::permanent(
                    "nothing to delete: connect the `ids` input or set config.filter (`filter: {}` deletes every record)",
                ));
            }
        };
        let Some(store) = open_store(ctx, &self.path, false).await? else {
            // No store, no records: nothing to delete.
            return Ok(VectorDeleteOutput {
                deleted: 0,
                count: 0,
            });
        };
        let deleted = store
            .delete(&self.collection, &selection)
            .await
            .map_err(StoreError::into_node_error)?;
        let count = store
            .count(&self.collection, None)
            .await
            .map_err(StoreError::into_node_error)?;
        Ok(VectorDeleteOutput { deleted, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        let canonical = std::fs::canonicalize(&root).unwrap();
        let (full, shown) = resolve(&root, "a/b/../store.db").unwrap();
        assert_eq!(full, canonical.join("a/store.db"));
        assert_eq!(shown, "a/store.db");
        assert!(canonical.join("a").is_dir());
        assert_eq!(
            resolve(&root, "../outside/x.db").unwrap_err(),
            "config.path `../outside/x.db`: leads outside the file root"
        );
        let elsewhere = dir.path().join("outside/x.db").display().to_string();
        assert!(
            resolve(&root, &elsewhere)
                .unwrap_err()
                .ends_with("leads outside the file root")
        );
        let inside = root.join("in.db").display().to_string();
        assert_eq!(resolve(&root, &inside).unwrap().1, "in.db");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("outside"), root.join("link")).unwrap();
            assert_eq!(
                resolve(&root, "link/x.db").unwrap_err(),
                "config.path `link/x.db`: leads outside the file root"
            );
            std::os::unix::fs::symlink(dir.path().join("outside/x.db"), root.join("file.db"))
                .unwrap();
            std::fs::write(dir.path().join("outside/x.db"), b"").unwrap();
            assert_eq!(
                resolve(&root, "file.db").unwrap_err(),
                "config.path `file.db`: leads outside the file root"
            );
        }
        assert_eq!(
            resolve(&root, ".").unwrap_err(),
            "config.path `.`: names the file root itself, not a file in it"
        );
    }

    #[test]
    fn ids_come_from_texts() {
        assert_eq!(text_id("hello"), "2cf24dba5fb0a30e26e83b2ac5b9e29e");
        assert_eq!(text_id("hello").len(), 32);
    }
}
