//! The in-memory flat index: every collection's vectors in one contiguous
//! array, searched exhaustively (exact results, no training, no tuning).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Filter, Match, Metric, Record};

/// The dot product, with eight independent sums so that the compiler can
/// use vector instructions (a single running sum cannot be reordered).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() - a.len() % 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

/// The length of a vector.
pub(crate) fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

/// One collection's records.
#[derive(Debug, Clone)]
pub(crate) struct Collection {
    pub(crate) dimension: usize,
    ids: Vec<Arc<str>>,
    vectors: Vec<f32>,
    norms: Vec<f32>,
    texts: Vec<Arc<str>>,
    metadata: Vec<Arc<Map<String, Value>>>,
    slots: HashMap<Arc<str>, usize>,
}

/// A candidate in the top-k heap: the heap's top is the worst kept one.
struct Candidate {
    score: f32,
    slot: usize,
    id: Arc<str>,
}

impl Candidate {
    /// Better first: higher score, then smaller id (a stable order for
    /// ties).
    fn better(&self, other: &Candidate) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.better(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Reversed, so that `BinaryHeap` (a max-heap) keeps the worst on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.better(self)
    }
}

impl Collection {
    pub(crate) fn new(dimension: usize) -> Self {
        Collection {
            dimension,
            ids: Vec::new(),
            vectors: Vec::new(),
            norms: Vec::new(),
            texts: Vec::new(),
            metadata: Vec::new(),
            slots: HashMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.slots.contains_key(id)
    }

    /// Inserts or replaces a record (its vector has the collection's
    /// dimension); true when it replaced one.
    pub(crate) fn put(&mut self, record: Record) -> bool {
        let Record {
            id,
            vector,
            text,
            metadata,
        } = record;
        let n = norm(&vector);
        if let Some(&slot) = self.slots.get(id.as_str()) {
            let at = slot * self.dimension;
            self.vectors[at..at + self.dimension].copy_from_slice(&vector);
            self.norms[slot] = n;
            self.texts[slot] = text.into();
            self.metadata[slot] = Arc::new(metadata);
            return true;
        }
        let id: Arc<str> = id.into();
        self.slots.insert(id.clone(), self.ids.len());
        self.ids.push(id);
        self.vectors.extend_from_slice(&vector);
        self.norms.push(n);
        self.texts.push(text.into());
        self.metadata.push(Arc::new(metadata));
        false
    }

    /// Removes a record; true when it was there.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.slots.remove(id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if slot != last {
            // The last record moves into the hole.
            let d = self.dimension;
            self.vectors.copy_within(last * d..(last + 1) * d, slot * d);
            self.ids.swap(slot, last);
            self.norms.swap(slot, last);
            self.texts.swap(slot, last);
            self.metadata.swap(slot, last);
            self.slots.insert(self.ids[slot].clone(), slot);
        }
        self.vectors.truncate(last * self.dimension);
        self.ids.pop();
        self.norms.pop();
        self.texts.pop();
        self.metadata.pop();
        true
    }

    /// The ids of the records that pass `filter`.
    pub(crate) fn select(&self, filter: &Filter) -> Vec<String> {
        self.ids
            .iter()
            .zip(&self.metadata)
            .filter(|(_, m)| filter.matches(m))
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// How many records pass `filter`.
    pub(crate) fn count(&self, filter: Option<&Filter>) -> usize {
        match filter {
            None => self.len(),
            Some(f) => self.metadata.iter().filter(|m| f.matches(m)).count(),
        }
    }

    /// The `top_k` best records for `query` (of the collection's
    /// dimension), best first; ties in score go by id.
    pub(crate) fn search(
        &self,
        query: &[f32],
        top_k: usize,
        metric: Metric,
        filter: Option<&Filter>,
        min_score: Option<f32>,
    ) -> Vec<Match> {
        if top_k == 0 {
            return Vec::new();
        }
        let query_norm = norm(query);
        let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(top_k + 1);
        for (slot, vector) in self.vectors.chunks_exact(self.dimension).enumerate() {
            let product = dot(query, vector);
            let score = match metric {
                Metric::Dot => product,
                Metric::Cosine => {
                    let lengths = query_norm * self.norms[slot];
                    if lengths == 0.0 {
                        0.0
                    } else {
                        product / lengths
                    }
                }
            };
            if min_score.is_some_and(|min| score < min) {
                continue;
            }
            let full = heap.len() == top_k;
            if full && let Some(worst) = heap.peek() {
                let better = score
                    .total_cmp(&worst.score)
                    .then_with(|| worst.id.as_ref().cmp(self.ids[slot].as_ref()));
                if better != Ordering::Greater {
                    continue;
                }
            }
            // The filter is read only for records that would be kept: the
            // arithmetic is cheaper than walking metadata.
            if let Some(f) = filter
                && !f.matches(&self.metadata[slot])
            {
                continue;
            }
            if full {
                heap.pop();
            }
            heap.push(Candidate {
                score,
                slot,
                id: self.ids[slot].clone(),
            });
        }
        let mut best = heap.into_vec();
        best.sort_by(|a, b| b.better(a));
        best.into_iter()
            .map(|c| Match {
                id: c.id.to_string(),
                score: c.score,
                text: self.texts[c.slot].to_string(),
                metadata: (*self.metadata[c.slot]).clone(),
            })
            .collect()
    }
}

/// Every collection of a store.
#[derive(Debug, Default, Clone)]
pub(crate) struct Index {
    pub(crate) collections: HashMap<String, Collection>,
}
