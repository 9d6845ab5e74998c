//! The embedded vector store's two candidate designs, side by side in one
//! run: (a) SQLite (through sqlx) for the records plus an in-memory flat
//! index (`SqliteStore`, what the `vector_*` nodes use), and (b) an
//! in-memory index saved to a file of our own format, rewritten to a
//! temporary file, synced and renamed over the old one on every save (the
//! crash-safe form of "a file of our own").
//!
//! Both search the same kind of in-memory flat index, so search is
//! measured once (on the real store); upserts and reopening are measured
//! for both. Vectors have 384 dimensions; stores hold 10,000 and 100,000
//! records with a short text and a small metadata object each.
//!
//! Run with `cargo bench -p ghostflow-benches --bench vector_store`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use ghostflow_nodes::ai::vector::{Filter, Metric, Query, Record, SqliteStore, VectorStore};
use serde_json::{Map, Value, json};

const DIMENSION: usize = 384;
const SIZES: [usize; 2] = [10_000, 100_000];
const BATCH: usize = 100;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn random_vector(rng: &mut fastrand::Rng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMENSION).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn records(rng: &mut fastrand::Rng, from: usize, n: usize) -> Vec<Record> {
    (from..from + n)
        .map(|i| Record {
            id: format!("doc-{}-chunk-{}", i / 20, i % 20),
            vector: random_vector(rng),
            text: format!("Chunk {i} of a document: {}", "some words of text ".repeat(8)),
            metadata: json!({"source": format!("doc-{}.md", i / 20), "chunk": i % 20, "lang": if i % 3 == 0 { "de" } else { "en" }})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        })
        .collect()
}

// ------------------------------------------------- (b) a file of our own

/// The in-memory form design (b) keeps: what `SqliteStore` keeps too.
#[derive(Default)]
struct OwnIndex {
    ids: Vec<String>,
    slots: HashMap<String, usize>,
    vectors: Vec<f32>,
    norms: Vec<f32>,
    texts: Vec<String>,
    metadata: Vec<Map<String, Value>>,
}

impl OwnIndex {
    fn put(&mut self, r: Record) {
        let norm = r.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        match self.slots.get(&r.id) {
            Some(&slot) => {
                self.vectors[slot * DIMENSION..(slot + 1) * DIMENSION].copy_from_slice(&r.vector);
                self.norms[slot] = norm;
                self.texts[slot] = r.text;
                self.metadata[slot] = r.metadata;
            }
            None => {
                self.slots.insert(r.id.clone(), self.ids.len());
                self.ids.push(r.id);
                self.vectors.extend_from_slice(&r.vector);
                self.norms.push(norm);
                self.texts.push(r.text);
                self.metadata.push(r.metadata);
            }
        }
    }

    /// Writes everything to a temporary file, syncs it, renames it over
    /// `path` and syncs the directory.
    fn save(&self, path: &Path) {
        let tmp = path.with_extension("tmp");
        let mut out =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).unwrap());
        out.write_all(b"GFVS0001").unwrap();
        out.write_all(&(DIMENSION as u32).to_le_bytes()).unwrap();
        out.write_all(&(self.ids.len() as u64).to_le_bytes())
            .unwrap();
        for slot in 0..self.ids.len() {
            let meta = Value::Object(self.metadata[slot].clone()).to_string();
            for field in [
                self.ids[slot].as_bytes(),
                self.texts[slot].as_bytes(),
                meta.as_bytes(),
            ] {
                out.write_all(&(field.len() as u32).to_le_bytes()).unwrap();
                out.write_all(field).unwrap();
            }
            for v in &self.vectors[slot * DIMENSION..(slot + 1) * DIMENSION] {
                out.write_all(&v.to_le_bytes()).unwrap();
            }
        }
        let file = out.into_inner().unwrap();
        file.sync_all().unwrap();
        std::fs::rename(&tmp, path).unwrap();
        std::fs::File::open(path.parent().unwrap())
            .unwrap()
            .sync_all()
            .unwrap();
    }

    fn load(path: &Path) -> OwnIndex {
        let bytes = std::fs::read(path).unwrap();
        let mut at = 8;
        let mut take = |n: usize| {
            let s = &bytes[at..at + n];
            at += n;
            s
        };
        let dimension = u32::from_le_bytes(take(4).try_into().unwrap()) as usize;
        let count = u64::from_le_bytes(take(8).try_into().unwrap()) as usize;
        let mut index = OwnIndex::default();
        for _ in 0..count {
            let mut field = || {
                let n = u32::from_le_bytes(take(4).try_into().unwrap()) as usize;
                String::from_utf8(take(n).to_vec()).unwrap()
            };
            let (id, text, meta) = (field(), field(), field());
            let vector = take(dimension * 4)
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            index.put(Record {
                id,
                vector,
                text,
                metadata: serde_json::from_str(&meta).unwrap(),
            });
        }
        index
    }
}

// ------------------------------------------------------------------ setup

struct Fixture {
    _dir: tempfile::TempDir,
    sqlite: PathBuf,
    own: PathBuf,
}

fn fixture(rt: &tokio::runtime::Runtime, n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("store.db");
    let own = dir.path().join("store.gfvs");
    let mut rng = fastrand::Rng::with_seed(7);
    let all = records(&mut rng, 0, n);
    rt.block_on(async {
        let store = SqliteStore::open(&sqlite, "store.db").await.unwrap();
        store.upsert("bench", all.clone()).await.unwrap();
    });
    let mut index = OwnIndex::default();
    for r in all {
        index.put(r);
    }
    index.save(&own);
    // Let the first store's connection close before anyone reopens it.
    std::thread::sleep(Duration::from_millis(300));
    Fixture {
        _dir: dir,
        sqlite,
        own,
    }
}

// ------------------------------------------------------------------ benches

fn vector_store(c: &mut Criterion) {
    let rt = runtime();
    for n in SIZES {
        let fx = fixture(&rt, n);
        let mut rng = fastrand::Rng::with_seed(11);

        let mut group = c.benchmark_group(format!("vector_store/{n}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));

        // Search: one flat index (both designs keep the same).
        let store = rt
            .block_on(SqliteStore::open(&fx.sqlite, "store.db"))
            .unwrap();
        let query = Query::new(random_vector(&mut rng), 10);
        group.bench_function("search_top10_cosine", |b| {
            b.iter(|| rt.block_on(store.search("bench", &query)).unwrap())
        });
        let dot = Query {
            metric: Metric::Dot,
            ..query.clone()
        };
        group.bench_function("search_top10_dot", |b| {
            b.iter(|| rt.block_on(store.search("bench", &dot)).unwrap())
        });
        let filtered = Query {
            filter: Some(Filter::parse(&json!({"lang": "de", "chunk": {"lt": 10}})).unwrap()),
            ..query.clone()
        };
        group.bench_function("search_top10_filtered", |b| {
            b.iter(|| rt.block_on(store.search("bench", &filtered)).unwrap())
        });

        // Upserts of 100 records (replacing 100 of the n, so the size stays).
        let batch = records(&mut rng, 0, BATCH);
        group.bench_with_input(
            BenchmarkId::new("upsert_100", "sqlite"),
            &batch,
            |b, batch| {
                b.iter_batched(
                    || batch.clone(),
                    |batch| rt.block_on(store.upsert("bench", batch)).unwrap(),
                    BatchSize::SmallInput,
                )
            },
        );
        drop(store);
        let mut own = OwnIndex::load(&fx.own);
        group.bench_with_input(
            BenchmarkId::new("upsert_100", "own_file"),
            &batch,
            |b, batch| {
                b.iter_batched(
                    || batch.clone(),
                    |batch| {
                        for r in batch {
                            own.put(r);
                        }
                        own.save(&fx.own);
                    },
                    BatchSize::SmallInput,
                )
            },
        );
        drop(own);
        std::thread::sleep(Duration::from_millis(300));

        // Reopen: from the file to a searchable index. Each SQLite open
        // gets a fresh copy (the copy is not timed), so no lock is waited
        // for.
        let copies = fx.sqlite.with_extension("copies");
        std::fs::create_dir_all(&copies).unwrap();
        let mut k = 0;
        group.bench_function(BenchmarkId::new("reopen", "sqlite"), |b| {
            b.iter_batched(
                || {
                    k += 1;
                    let to = copies.join(format!("{k}.db"));
                    std::fs::copy(&fx.sqlite, &to).unwrap();
                    let wal = fx.sqlite.with_extension("db-wal");
                    if wal.exists() {
                        std::fs::copy(&wal, to.with_extension("db-wal")).unwrap();
                    }
                    to
                },
                |path| rt.block_on(SqliteStore::open(&path, "copy.db")).unwrap(),
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new("reopen", "own_file"), |b| {
            b.iter(|| OwnIndex::load(&fx.own))
        });
        group.finish();
        std::fs::remove_dir_all(&copies).ok();
    }
}

criterion_group!(benches, vector_store);
criterion_main!(benches);
