//! Which open questions look like a new one, so the moderator can merge duplicates (issue 11,
//! point 10). Pure functions and one in-memory index; no I/O, no model, no random seed: the same
//! texts give the same scores in every process, on every platform and after a restart.
//!
//! A text becomes a set of features ([`Shingles`]): the characters and character bigrams of its
//! Chinese (CJK) runs, and the lower-cased words of its Latin runs. Before that, a light
//! normalisation makes the usual rephrasings of one question meet: full-width letters and
//! digits become ASCII, punctuation separates, greetings and thanks ("医生您好", "请问",
//! "thanks") are dropped, so are a few English stop words, plural "s" and the particles that
//! end a Chinese question (吗, 呢, 啊...), and the paired forms of Chinese questions become their
//! short form ("能不能" → "能", "需要" → "要", "多长时间" → "多久").
//!
//! Two sets are scored by the mean of their Jaccard similarity and their containment
//! ([`Shingles::similarity`]). Chinese questions are short: single characters count besides
//! bigrams, for every text alike (a feature only some texts have could never be shared), so
//! that one changed character does not halve the score of a four-character question.
//! docs/privacy-similar.md gives the measured precision and recall, and the cost.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Scores at or above this are offered to the moderator as "similar to #N". Chosen on the
/// labelled corpus (`server/tests/data/similar_pairs.tsv`); see docs/privacy-similar.md.
pub const DEFAULT_THRESHOLD: f32 = 0.7;

/// The features of one text: sorted, deduplicated hashes of the characters and character
/// bigrams of its CJK runs and of the lower-cased words of its Latin runs, after the light
/// normalisation described at the top of this module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shingles(Vec<u32>);

/// One candidate and how similar it is to the probe, from 0 (nothing shared) to 1 (the same
/// features).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Similar {
    pub id: u64,
    pub score: f32,
}

impl Shingles {
    pub fn of(text: &str) -> Shingles {
        Shingles::with(text, RECIPE)
    }

    fn with(text: &str, recipe: Recipe) -> Shingles {
        let text = if recipe.normalise {
            normalise(text)
        } else {
            fold(text)
        };
        let mut features = Vec::new();
        let mut runs = Vec::new();
        tokenise(&text, recipe, &mut runs, &mut features);
        let mut buf = [0u8; 4];
        for run in &runs {
            if run.len() == 1 || recipe.unigrams {
                features.extend(
                    run.iter()
                        .map(|c| fnv1a(FNV_OFFSET, c.encode_utf8(&mut buf).as_bytes())),
                );
            }
            for pair in run.windows(2) {
                let first = fnv1a(FNV_OFFSET, pair[0].encode_utf8(&mut buf).as_bytes());
                features.push(fnv1a(first, pair[1].encode_utf8(&mut buf).as_bytes()));
            }
        }
        features.sort_unstable();
        features.dedup();
        Shingles(features)
    }

    /// Shared features over all features of both; 0 when either is empty (an empty text is
    /// like nothing, not like every other empty text).
    pub fn jaccard(&self, other: &Shingles) -> f32 {
        let shared = shared(&self.0, &other.0);
        if shared == 0 {
            return 0.0;
        }
        shared as f32 / (self.0.len() + other.0.len() - shared) as f32
    }

    /// Shared features over the features of the smaller one: 1 when one text holds all of
    /// the other, as a short question holds in its long rephrasing with greetings and context.
    pub fn containment(&self, other: &Shingles) -> f32 {
        let shared = shared(&self.0, &other.0);
        if shared == 0 {
            return 0.0;
        }
        shared as f32 / self.0.len().min(other.0.len()) as f32
    }

    /// The score the moderator sees: the mean of [`jaccard`](Self::jaccard) and
    /// [`containment`](Self::containment). Jaccard alone punishes a duplicate for its extra
    /// words; containment alone rates a two-word text a perfect match for every question that
    /// uses those words. The corpus test compares the three.
    pub fn similarity(&self, other: &Shingles) -> f32 {
        score(shared(&self.0, &other.0), self.0.len(), other.0.len())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The `limit` best candidates scoring at least `threshold`, best first (ties: lower id first).
/// A candidate that shares nothing with the probe (score 0) is never returned, whatever the
/// threshold, so that this and [`SimilarIndex::query`] agree.
pub fn most_similar<'a>(
    probe: &Shingles,
    candidates: impl IntoIterator<Item = (u64, &'a Shingles)>,
    limit: usize,
    threshold: f32,
) -> Vec<Similar> {
    let mut found = Vec::new();
    if limit == 0 || probe.is_empty() {
        return found;
    }
    for (id, candidate) in candidates {
        let score = probe.similarity(candidate);
        if score > 0.0 && score >= threshold {
            found.push(Similar { id, score });
        }
    }
    best_first(found, limit)
}

/// The open questions of one session, indexed by feature so that a query looks only at the
/// questions sharing a rare feature with the probe instead of at all of them.
///
/// Why it is exact: containment is at most 1, so a candidate whose score (the mean) is ≥ t has
/// a Jaccard similarity ≥ 2t − 1, and shares at least k = ⌈(2t − 1)·n⌉ of the probe's n
/// features; it therefore holds at least one of any n − k + 1 of them. The query counts, per
/// question, how many of the probe's n − k + 1 shortest posting lists hold it; a question seen
/// c times shares at most c + k − 1 features, and is scored fully (like [`most_similar`]) only
/// when that many could reach t. Below t = 0.5 the bound says nothing and the query reads every
/// list the probe touches; it stays exact. The corpus test checks that both agree.
#[derive(Debug, Clone, Default)]
pub struct SimilarIndex {
    /// Feature hash → the slots of the questions holding it (unordered; removal swaps).
    postings: HashMap<u32, Vec<u32>>,
    /// Slot → question id and features. Slots are dense so that a query counts in a `Vec`.
    slots: Vec<Option<(u64, Shingles)>>,
    /// Slots emptied by removals, reused first.
    free: Vec<u32>,
    by_id: HashMap<u64, u32>,
}

impl SimilarIndex {
    pub fn new() -> SimilarIndex {
        SimilarIndex::default()
    }

    /// Adds a question, or replaces its features when the id is already there (an edit).
    pub fn insert(&mut self, id: u64, shingles: Shingles) {
        self.remove(id);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                // More than 4 billion open questions cannot fit in memory anyway.
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        for &feature in &shingles.0 {
            self.postings.entry(feature).or_default().push(slot);
        }
        self.slots[slot as usize] = Some((id, shingles));
        self.by_id.insert(id, slot);
    }

    /// Takes a question out (answered, rejected, merged); false when it was not there.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.by_id.remove(&id) else {
            return false;
        };
        let Some((_, shingles)) = self.slots[slot as usize].take() else {
            return false;
        };
        for feature in &shingles.0 {
            if let Some(list) = self.postings.get_mut(feature) {
                if let Some(at) = list.iter().position(|&other| other == slot) {
                    list.swap_remove(at);
                }
                if list.is_empty() {
                    self.postings.remove(feature);
                }
            }
        }
        self.free.push(slot);
        true
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The same answer as [`most_similar`] over every indexed question.
    pub fn query(&self, probe: &Shingles, limit: usize, threshold: f32) -> Vec<Similar> {
        if limit == 0 || probe.is_empty() {
            return Vec::new();
        }
        let n = probe.0.len();
        let jaccard_floor = 2.0 * threshold.clamp(0.0, 1.0) - 1.0;
        // Rounded down a little: a float error may only widen the search, never narrow it.
        let must_share = ((jaccard_floor * n as f32 - 1e-3).ceil().max(1.0) as usize).min(n);
        let mut lists: Vec<&[u32]> = probe
            .0
            .iter()
            .map(|f| self.postings.get(f).map_or(&[][..], Vec::as_slice))
            .collect();
        lists.sort_unstable_by_key(|list| list.len());
        let read = n - must_share + 1;
        let unread = n - read;
        let mut seen = vec![0u32; self.slots.len()];
        let mut touched = Vec::new();
        for &slot in lists[..read].iter().flat_map(|list| list.iter()) {
            let count = &mut seen[slot as usize];
            if *count == 0 {
                touched.push(slot);
            }
            *count = count.saturating_add(1);
        }
        let mut found = Vec::new();
        for slot in touched {
            let Some((id, candidate)) = &self.slots[slot as usize] else {
                continue;
            };
            let d = candidate.0.len();
            let at_most = (seen[slot as usize] as usize + unread).min(d).min(n);
            if score(at_most, n, d) < threshold {
                continue;
            }
            let score = probe.similarity(candidate);
            if score > 0.0 && score >= threshold {
                found.push(Similar { id: *id, score });
            }
        }
        best_first(found, limit)
    }
}

/// [`Shingles::similarity`] from the counts: increasing in `shared`, so an upper bound on the
/// shared features gives an upper bound on the score.
fn score(shared: usize, a: usize, b: usize) -> f32 {
    if shared == 0 {
        return 0.0;
    }
    let (a, b, s) = (a as f32, b as f32, shared as f32);
    (s / (a + b - s) + s / a.min(b)) / 2.0
}

fn best_first(mut found: Vec<Similar>, limit: usize) -> Vec<Similar> {
    found.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    found.truncate(limit);
    found
}

/// Merge count of two sorted, deduplicated vectors.
fn shared(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// How a text becomes features. One recipe is used ([`RECIPE`]); the others exist so that the
/// corpus test can show what each step buys (docs/privacy-similar.md).
#[derive(Debug, Clone, Copy)]
struct Recipe {
    /// Phrase replacements, particles, stop words, plurals and spellings.
    normalise: bool,
    /// Single CJK characters as features besides the bigrams.
    unigrams: bool,
}

const RECIPE: Recipe = Recipe {
    normalise: true,
    unigrams: true,
};

// FNV-1a, 32 bits: fixed constants, so a feature has the same hash everywhere; collisions
// among the few thousand features of a session are rare and would only add a shared feature.
const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv1a(mut h: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Chinese phrases replaced before tokenising, longest first where one contains another.
/// A space separates (greetings and thanks say nothing about the question); the other
/// replacements turn the paired and long forms of a question into its short form.
const PHRASES: &[(&str, &str)] = &[
    ("医生您好", " "),
    ("医生你好", " "),
    ("大夫您好", " "),
    ("大夫你好", " "),
    ("主任您好", " "),
    ("主任你好", " "),
    ("老师您好", " "),
    ("老师你好", " "),
    ("您好", " "),
    ("你好", " "),
    ("请问一下", " "),
    ("请问下", " "),
    ("请问医生", " "),
    ("请问", " "),
    ("想问一下", " "),
    ("想问下", " "),
    ("我想问", " "),
    ("谢谢医生", " "),
    ("谢谢您", " "),
    ("谢谢", " "),
    ("麻烦您", " "),
    ("可不可以", "能"),
    ("能不能", "能"),
    ("可以", "能"),
    ("需不需要", "要"),
    ("要不要", "要"),
    ("需要", "要"),
    ("多长时间", "多久"),
    ("是不是", "是"),
    ("有没有", "有"),
    ("会不会", "会"),
    ("痛不痛", "痛"),
    ("疼不疼", "疼"),
    ("大不大", "大"),
    ("手术后", "术后"),
    ("以后", "后"),
    ("之后", "后"),
    ("怎样", "怎么"),
    ("毫米", "mm"),
    ("厘米", "cm"),
    ("公分", "cm"),
    ("毫克", "mg"),
];

/// Particles that end a Chinese question or clause; dropped at the end of a CJK run only, so
/// that 吗啡 (morphine) keeps its 吗.
const PARTICLES: &[char] = &['吗', '呢', '啊', '呀', '吧', '嘛', '哦'];

/// Words that do not tell one question from another. Question words (what, how, when, often,
/// long...) stay: "how often" and "how long" are different questions.
const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "am", "be", "been", "was", "were", "do", "does", "did", "i",
    "me", "my", "we", "our", "you", "your", "it", "its", "of", "to", "in", "on", "at", "for",
    "and", "or", "with", "can", "could", "should", "would", "will", "this", "that", "there",
    "have", "has", "had", "any", "ok", "okay", "please", "doctor", "dr", "hi", "hello", "thanks",
    "thank", "so", "just", "get", "getting", "got",
];

/// Spellings and short forms that mean the same word.
const SAME_WORD: &[(&str, &str)] = &[
    ("chemo", "chemotherapy"),
    ("tumour", "tumor"),
    ("oesophageal", "esophageal"),
    ("haemoglobin", "hemoglobin"),
];

/// Full-width forms to ASCII, and lower case.
fn fold(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// [`fold`], then the Chinese phrase replacements.
fn normalise(text: &str) -> String {
    let folded = fold(text);
    let mut out = String::with_capacity(folded.len());
    let mut rest = folded.as_str();
    'outer: while let Some(c) = rest.chars().next() {
        if is_cjk(c) {
            for (from, to) in PHRASES {
                if let Some(after) = rest.strip_prefix(from) {
                    out.push_str(to);
                    rest = after;
                    continue 'outer;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Splits text into CJK runs (returned for the caller to shingle) and words (hashed into
/// `features` here). Letters and digits are separate words ("8mm" is "8" and "mm"), and a
/// point between digits stays in the number.
fn tokenise(text: &str, recipe: Recipe, runs: &mut Vec<Vec<char>>, features: &mut Vec<u32>) {
    let mut run: Vec<char> = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if is_cjk(c) {
            push_word(&mut word, recipe, features);
            run.push(c);
            continue;
        }
        push_run(&mut run, recipe, runs);
        let numeric = |ch: char| ch.is_numeric() || ch == '.';
        let point_in_number = c == '.'
            && word.ends_with(|l: char| l.is_ascii_digit())
            && chars.peek().is_some_and(char::is_ascii_digit);
        if c.is_alphanumeric() || point_in_number {
            if word.ends_with(|l: char| numeric(l) != numeric(c)) {
                push_word(&mut word, recipe, features);
            }
            word.push(c);
        } else {
            push_word(&mut word, recipe, features);
        }
    }
    push_word(&mut word, recipe, features);
    push_run(&mut run, recipe, runs);
}

fn push_run(run: &mut Vec<char>, recipe: Recipe, runs: &mut Vec<Vec<char>>) {
    while recipe.normalise && run.last().is_some_and(|c| PARTICLES.contains(c)) {
        run.pop();
    }
    if !run.is_empty() {
        runs.push(std::mem::take(run));
    }
}

fn push_word(word: &mut String, recipe: Recipe, features: &mut Vec<u32>) {
    if word.is_empty() {
        return;
    }
    let w = std::mem::take(word);
    if !recipe.normalise {
        features.push(fnv1a(FNV_OFFSET, w.as_bytes()));
        return;
    }
    if STOP_WORDS.contains(&w.as_str()) {
        return;
    }
    let w = SAME_WORD
        .iter()
        .find(|(from, _)| *from == w)
        .map_or(w.as_str(), |(_, to)| to);
    features.push(fnv1a(FNV_OFFSET, singular(w).as_bytes()));
}

/// A plural "s" dropped, so that "nodules" meets "nodule"; not from "ss", "us", "is" endings
/// (less, virus, metastasis) nor from short words.
fn singular(word: &str) -> &str {
    let keep = word.len() <= 3
        || [b"ss", b"us", b"is"]
            .iter()
            .any(|e| word.as_bytes().ends_with(*e));
    match word.strip_suffix('s') {
        Some(stem) if !keep => stem,
        _ => word,
    }
}

/// Han ideographs (with the extensions and compatibility forms), kana and Hangul: scripts
/// written without spaces, where a word is not a run of letters.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF
        | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = include_str!("../tests/data/similar_pairs.tsv");

    struct Pair {
        dup: bool,
        a: &'static str,
        b: &'static str,
    }

    impl Pair {
        fn chinese(&self) -> bool {
            self.a.chars().any(is_cjk)
        }
    }

    fn corpus() -> Vec<Pair> {
        CORPUS
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                assert_eq!(f.len(), 3, "three fields: {l}");
                assert!(f[0] == "dup" || f[0] == "diff", "dup or diff: {l}");
                Pair {
                    dup: f[0] == "dup",
                    a: f[1],
                    b: f[2],
                }
            })
            .collect()
    }

    #[derive(Default)]
    struct Counts {
        tp: u32,
        fp: u32,
        fn_: u32,
        tn: u32,
    }

    impl Counts {
        fn precision(&self) -> f32 {
            self.tp as f32 / (self.tp + self.fp).max(1) as f32
        }
        fn recall(&self) -> f32 {
            self.tp as f32 / (self.tp + self.fn_).max(1) as f32
        }
    }

    fn count<'p>(scored: impl Iterator<Item = (&'p Pair, f32)>, threshold: f32) -> Counts {
        let mut c = Counts::default();
        for (pair, score) in scored {
            match (pair.dup, score >= threshold) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (true, false) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        c
    }

    #[test]
    fn corpus_precision_and_recall() {
        let pairs = corpus();
        let (dups, diffs) = (
            pairs.iter().filter(|p| p.dup).count(),
            pairs.iter().filter(|p| !p.dup).count(),
        );
        let zh = pairs.iter().filter(|p| p.chinese()).count();
        assert!(
            pairs.len() >= 220 && dups >= 80 && diffs >= 80,
            "{dups} dup, {diffs} diff"
        );
        println!(
            "corpus: {} pairs ({dups} dup, {diffs} diff; {zh} Chinese, {} English)",
            pairs.len(),
            pairs.len() - zh
        );

        // The recipe and score in use and the ones they were chosen over, on the same pairs.
        let plain = Recipe {
            normalise: false,
            unigrams: false,
        };
        let bigrams = Recipe {
            unigrams: false,
            ..RECIPE
        };
        type Score = fn(&Shingles, &Shingles) -> f32;
        let variants: [(&str, Recipe, Score); 5] = [
            (
                "as used (mean of jaccard and containment)",
                RECIPE,
                |a, b| a.similarity(b),
            ),
            ("jaccard", RECIPE, |a, b| a.jaccard(b)),
            ("containment", RECIPE, |a, b| a.containment(b)),
            ("jaccard, no CJK unigrams", bigrams, |a, b| a.jaccard(b)),
            ("jaccard, no normalisation nor unigrams", plain, |a, b| {
                a.jaccard(b)
            }),
        ];
        for (name, recipe, score) in variants {
            let scored: Vec<(&Pair, f32)> = pairs
                .iter()
                .map(|p| {
                    (
                        p,
                        score(&Shingles::with(p.a, recipe), &Shingles::with(p.b, recipe)),
                    )
                })
                .collect();
            let line: Vec<String> = (8..=18)
                .map(|t| {
                    let t = t as f32 * 0.05;
                    let c = count(scored.iter().copied(), t);
                    let zh = count(scored.iter().copied().filter(|(p, _)| p.chinese()), t);
                    let en = count(scored.iter().copied().filter(|(p, _)| !p.chinese()), t);
                    format!(
                        "{t:.2}: {:.2}/{:.2} ({:.2}/{:.2} {:.2}/{:.2})",
                        c.precision(),
                        c.recall(),
                        zh.precision(),
                        zh.recall(),
                        en.precision(),
                        en.recall()
                    )
                })
                .collect();
            println!("{name}, P/R all (zh, en): {}", line.join(" | "));
        }

        let scored: Vec<(&Pair, f32)> = pairs
            .iter()
            .map(|p| (p, Shingles::of(p.a).similarity(&Shingles::of(p.b))))
            .collect();
        for (pair, score) in &scored {
            if pair.dup != (*score >= DEFAULT_THRESHOLD) {
                let what = if pair.dup { "missed dup" } else { "false dup" };
                println!("  {what} {score:.2}: {} | {}", pair.a, pair.b);
            }
        }
        let all = count(scored.iter().copied(), DEFAULT_THRESHOLD);
        let zh = count(
            scored.iter().copied().filter(|(p, _)| p.chinese()),
            DEFAULT_THRESHOLD,
        );
        let en = count(
            scored.iter().copied().filter(|(p, _)| !p.chinese()),
            DEFAULT_THRESHOLD,
        );
        for (name, c) in [("all", &all), ("Chinese", &zh), ("English", &en)] {
            println!(
                "at {DEFAULT_THRESHOLD}: {name:8} precision {:.3} recall {:.3} (tp {} fp {} fn {} tn {})",
                c.precision(),
                c.recall(),
                c.tp,
                c.fp,
                c.fn_,
                c.tn
            );
        }
        assert!(all.precision() >= 0.85, "precision {:.3}", all.precision());
        assert!(all.recall() >= 0.75, "recall {:.3}", all.recall());
    }

    /// Every text of the corpus once, in order of first appearance.
    fn corpus_texts(pairs: &[Pair]) -> Vec<&'static str> {
        let mut texts: Vec<&str> = Vec::new();
        for p in pairs {
            for t in [p.a, p.b] {
                if !texts.contains(&t) {
                    texts.push(t);
                }
            }
        }
        texts
    }

    #[test]
    fn the_duplicate_ranks_in_the_top_three_among_200_distractors() {
        let pairs = corpus();
        let texts = corpus_texts(&pairs);
        // The texts that duplicate pairs link to `t`, directly or through others: the same
        // question, so not distractors for `t`.
        let same_as = |t: &'static str| -> Vec<&'static str> {
            let mut linked = vec![t];
            let mut grew = true;
            while grew {
                grew = false;
                for p in pairs.iter().filter(|p| p.dup) {
                    if linked.contains(&p.a) != linked.contains(&p.b) {
                        linked.push(if linked.contains(&p.a) { p.b } else { p.a });
                        grew = true;
                    }
                }
            }
            linked
        };
        let (mut found, mut total) = (0, 0);
        for (i, pair) in pairs.iter().filter(|p| p.dup).enumerate() {
            let linked = same_as(pair.a);
            // A different window of the corpus for each probe; near-misses of the probe are
            // in the corpus and so among the distractors.
            let distractors: Vec<Shingles> = texts
                .iter()
                .cycle()
                .skip(i * 7)
                .filter(|t| !linked.contains(t))
                .take(200)
                .map(|t| Shingles::of(t))
                .collect();
            let target = Shingles::of(pair.b);
            // The duplicate gets the highest id, so a tie goes against it.
            let candidates = distractors
                .iter()
                .enumerate()
                .map(|(id, s)| (id as u64, s))
                .chain([(1_000, &target)]);
            let top = most_similar(&Shingles::of(pair.a), candidates, 3, 0.0);
            total += 1;
            if top.iter().any(|s| s.id == 1_000) {
                found += 1;
            } else {
                println!("  not in top 3: {} | {} ({top:?})", pair.a, pair.b);
            }
        }
        let rate = found as f32 / total as f32;
        println!("duplicate in the top 3 among 200 distractors: {found}/{total} ({rate:.3})");
        assert!(rate >= 0.95, "{found}/{total}");
    }

    #[test]
    fn the_index_answers_like_brute_force() {
        let texts = corpus_texts(&corpus());
        let all: Vec<(u64, Shingles)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u64 * 3 + 1, Shingles::of(t)))
            .collect();
        let mut index = SimilarIndex::new();
        for (id, s) in &all {
            index.insert(*id, s.clone());
        }
        // Inserting again replaces, it does not list a question twice.
        index.insert(all[0].0, all[0].1.clone());
        assert_eq!(index.len(), all.len());
        let mut kept: Vec<&(u64, Shingles)> = all.iter().collect();
        for round in 0..2 {
            if round == 1 {
                // Then without every other question.
                for (id, _) in all.iter().step_by(2) {
                    assert!(index.remove(*id));
                    assert!(!index.remove(*id), "removed once");
                }
                kept = all.iter().skip(1).step_by(2).collect();
                assert_eq!(index.len(), kept.len());
            }
            let mut nonempty = 0;
            for probe in texts.iter().map(|t| Shingles::of(t)) {
                for threshold in [0.0, 0.5, 0.6, DEFAULT_THRESHOLD, 0.8, 1.0] {
                    let brute =
                        most_similar(&probe, kept.iter().map(|(id, s)| (*id, s)), 5, threshold);
                    nonempty += usize::from(!brute.is_empty());
                    assert_eq!(
                        index.query(&probe, 5, threshold),
                        brute,
                        "round {round}, at {threshold}"
                    );
                }
            }
            assert!(
                nonempty > texts.len(),
                "the comparison found something to compare"
            );
        }
        for (id, _) in &all {
            index.remove(*id);
        }
        assert!(
            index.is_empty() && index.postings.is_empty(),
            "no posting left behind"
        );
        // Slots are reused.
        index.insert(5, Shingles::of("PSA"));
        assert_eq!(index.slots.len(), all.len());
    }

    #[test]
    fn same_text_scores_one_and_nothing_scores_zero() {
        let s = Shingles::of("肺结节8毫米要手术吗？");
        assert_eq!(s.jaccard(&s), 1.0);
        assert_eq!(Shingles::of("").jaccard(&Shingles::of("")), 0.0);
        assert_eq!(Shingles::of("？！ ...").jaccard(&s), 0.0);
        assert!(Shingles::of("，。！").is_empty());
        assert!(!Shingles::of("CT").is_empty());
        assert_eq!(
            Shingles::of("肺结节").jaccard(&Shingles::of("mammogram")),
            0.0
        );
    }

    #[test]
    fn features_do_not_depend_on_the_process() {
        // FNV-1a of "ct", and of 结, 节 and the bigram 结节 (its UTF-8 bytes in a row), computed
        // apart: a change of hash or a seed fails here rather than silently between two nodes.
        assert_eq!(Shingles::of("CT").0, vec![0x4b29_7fd2]);
        assert_eq!(
            Shingles::of("结节").0,
            vec![0x5288_f37f, 0x7182_8a40, 0xf418_c4fc]
        );
        assert_eq!(
            fnv1a(FNV_OFFSET, b"a"),
            0xe40c_292c,
            "the published FNV-1a test vector"
        );
    }

    #[test]
    fn normalisation_makes_rephrasings_meet() {
        let same = |a: &str, b: &str| assert_eq!(Shingles::of(a), Shingles::of(b), "{a} | {b}");
        same("ＣＴ　８ｍｍ", "ct 8mm");
        same("8毫米", "8 mm");
        same(
            "医生您好，请问化疗期间能不能吃海鲜？谢谢",
            "化疗期间能吃海鲜",
        );
        same("Is the nodule dangerous?", "nodules dangerous");
        same("chemo", "Chemotherapy");
        same("1.5cm", "1.5 cm");
        // 吗 ends a question, but starts 吗啡 (morphine).
        assert_ne!(Shingles::of("吗啡"), Shingles::of("啡"));
        // Numbers stay: 8 mm and 15 mm are not the same nodule.
        assert_ne!(Shingles::of("8mm"), Shingles::of("15mm"));
        assert_ne!(Shingles::of("1.5"), Shingles::of("15"));
    }

    #[test]
    fn best_first_ties_by_lower_id_within_limit_and_threshold() {
        let probe = Shingles::of("化疗期间能吃海鲜吗");
        let same = Shingles::of("化疗期间可以吃海鲜吗");
        let near = Shingles::of("化疗期间可以吃水果吗");
        let other = Shingles::of("PSA偏高一定是前列腺癌吗");
        let candidates = [(9, &same), (4, &near), (2, &same), (7, &other)];
        let top = most_similar(&probe, candidates, 2, 0.0);
        assert_eq!(top.iter().map(|s| s.id).collect::<Vec<_>>(), vec![2, 9]);
        assert_eq!(top[0].score, 1.0);
        let all = most_similar(&probe, candidates, 10, 0.0);
        assert_eq!(
            all.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![2, 9, 4],
            "7 shares nothing"
        );
        assert!(
            all[2].score < DEFAULT_THRESHOLD,
            "the near-miss scores {}",
            all[2].score
        );
        let strict = most_similar(&probe, candidates, 10, DEFAULT_THRESHOLD);
        assert_eq!(strict.len(), 2);
        assert!(most_similar(&probe, candidates, 0, 0.0).is_empty());
        assert!(most_similar(&Shingles::default(), candidates, 3, 0.0).is_empty());
    }

    #[test]
    fn similar_is_sent_as_id_and_score() {
        let s = Similar {
            id: 12,
            score: 0.75,
        };
        let json = serde_json::to_string(&s).expect("serialises");
        assert_eq!(json, r#"{"id":12,"score":0.75}"#);
        assert_eq!(serde_json::from_str::<Similar>(&json).expect("parses"), s);
    }
}
