//! The duplicate finder's cost (docs/privacy-similar.md): turning one question into features,
//! and finding the 3 most similar of 20,000 open questions, by brute force and by the index.
//! The 20,000 are made from the labelled corpus's sentences with variations (greetings and
//! thanks around them, other numbers, halves of two questions joined), from a fixed seed.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use oncolive_server::similar::{DEFAULT_THRESHOLD, Shingles, SimilarIndex, most_similar};

const CORPUS: &str = include_str!("../tests/data/similar_pairs.tsv");
const QUESTIONS: usize = 20_000;
const PROBE_ZH: &str = "医生您好，我妈妈体检发现肺结节8毫米，需要手术吗？";
const PROBE_EN: &str = "Doctor, my mother has an 8 mm lung nodule, does it need surgery?";

/// A small linear congruential generator: the same questions on every run, no dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

fn sentences() -> (Vec<&'static str>, Vec<&'static str>) {
    let mut zh = Vec::new();
    let mut en = Vec::new();
    for line in CORPUS.lines().filter(|l| !l.starts_with('#')) {
        for text in line.split('\t').skip(1) {
            if text.chars().any(|c| ('\u{4E00}'..='\u{9FFF}').contains(&c)) {
                zh.push(text);
            } else {
                en.push(text);
            }
        }
    }
    (zh, en)
}

fn questions(n: usize) -> Vec<String> {
    let (zh, en) = sentences();
    let mut rng = Lcg(11);
    (0..n)
        .map(|_| {
            let chinese = rng.below(3) < 2;
            let (pool, before, after): (&[&str], &[&str], &[&str]) = if chinese {
                (
                    &zh,
                    &[
                        "",
                        "",
                        "医生您好，",
                        "请问",
                        "老师你好，我想问一下",
                        "我爸爸",
                    ],
                    &["", "", "谢谢", "？", "，很担心", "，急"],
                )
            } else {
                (
                    &en,
                    &["", "", "Doctor, ", "Hi, ", "Quick question: "],
                    &["", "", " Thanks!", " I am worried."],
                )
            };
            let first: Vec<char> = rng.pick(pool).chars().collect();
            let mut body: String = if rng.below(2) == 0 {
                first.iter().collect()
            } else {
                let second: Vec<char> = rng.pick(pool).chars().collect();
                let (a, b) = (first.len() / 2, second.len() / 2);
                first[..a].iter().chain(&second[b..]).collect()
            };
            if rng.below(2) == 0 {
                let number = (1 + rng.below(30)).to_string();
                body = body
                    .split(|c: char| c.is_ascii_digit())
                    .collect::<Vec<_>>()
                    .join(&number);
            }
            format!("{}{body}{}", rng.pick(before), rng.pick(after))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    c.bench_function("shingles_of/zh", |b| {
        b.iter(|| Shingles::of(black_box(PROBE_ZH)))
    });
    c.bench_function("shingles_of/en", |b| {
        b.iter(|| Shingles::of(black_box(PROBE_EN)))
    });

    let open: Vec<(u64, Shingles)> = questions(QUESTIONS)
        .iter()
        .enumerate()
        .map(|(id, q)| (id as u64, Shingles::of(q)))
        .collect();
    let mut index = SimilarIndex::new();
    for (id, s) in &open {
        index.insert(*id, s.clone());
    }
    for (name, probe) in [("zh", PROBE_ZH), ("en", PROBE_EN)] {
        let probe = Shingles::of(probe);
        let brute = most_similar(
            &probe,
            open.iter().map(|(id, s)| (*id, s)),
            3,
            DEFAULT_THRESHOLD,
        );
        assert_eq!(
            index.query(&probe, 3, DEFAULT_THRESHOLD),
            brute,
            "both ways agree"
        );
        c.bench_function(&format!("most_similar_20k/{name}"), |b| {
            b.iter(|| {
                most_similar(
                    black_box(&probe),
                    open.iter().map(|(id, s)| (*id, s)),
                    3,
                    DEFAULT_THRESHOLD,
                )
            })
        });
        c.bench_function(&format!("index_query_20k/{name}"), |b| {
            b.iter(|| index.query(black_box(&probe), 3, DEFAULT_THRESHOLD))
        });
    }
    // What a new question costs the index: insert, then remove to keep the size.
    let (zh_probe, extra) = (Shingles::of(PROBE_ZH), QUESTIONS as u64 + 1);
    c.bench_function("index_insert_remove_20k", |b| {
        b.iter(|| {
            index.insert(extra, zh_probe.clone());
            index.remove(extra)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
