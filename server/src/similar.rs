//! Placeholder of the duplicate finder (helper branch `similar` replaces this file).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shingles(Vec<u32>);

impl Shingles {
    pub fn of(text: &str) -> Shingles {
        let chars: Vec<char> = text.chars().filter(|c| c.is_alphanumeric()).collect();
        let mut v: Vec<u32> = chars
            .windows(2)
            .map(|w| (w[0] as u32).wrapping_mul(31).wrapping_add(w[1] as u32))
            .collect();
        v.sort_unstable();
        v.dedup();
        Shingles(v)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn jaccard(&self, other: &Shingles) -> f32 {
        let inter = self
            .0
            .iter()
            .filter(|x| other.0.binary_search(x).is_ok())
            .count();
        let union = self.0.len() + other.0.len() - inter;
        if union == 0 {
            0.0
        } else {
            inter as f32 / union as f32
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Similar {
    pub id: u64,
    pub score: f32,
}

pub const DEFAULT_THRESHOLD: f32 = 0.4;

pub fn most_similar<'a>(
    probe: &Shingles,
    candidates: impl IntoIterator<Item = (u64, &'a Shingles)>,
    limit: usize,
    threshold: f32,
) -> Vec<Similar> {
    let mut out: Vec<Similar> = candidates
        .into_iter()
        .map(|(id, s)| Similar {
            id,
            score: probe.jaccard(s),
        })
        .filter(|s| s.score >= threshold)
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    out.truncate(limit);
    out
}

/// Placeholder: the same API as the helper's exact index, by brute force.
#[derive(Debug, Clone, Default)]
pub struct SimilarIndex {
    questions: std::collections::HashMap<u64, Shingles>,
}

impl SimilarIndex {
    pub fn new() -> SimilarIndex {
        SimilarIndex::default()
    }
    pub fn insert(&mut self, id: u64, shingles: Shingles) {
        self.questions.insert(id, shingles);
    }
    pub fn remove(&mut self, id: u64) -> bool {
        self.questions.remove(&id).is_some()
    }
    pub fn len(&self) -> usize {
        self.questions.len()
    }
    pub fn is_empty(&self) -> bool {
        self.questions.is_empty()
    }
    pub fn query(&self, probe: &Shingles, limit: usize, threshold: f32) -> Vec<Similar> {
        most_similar(
            probe,
            self.questions.iter().map(|(id, s)| (*id, s)),
            limit,
            threshold,
        )
    }
}
