//! Blocked words: the deployment's list and a session's additions, on folded text.
//!
//! A word made of Latin letters matches whole words only ("ass" is not in "mass", which
//! oncology questions are full of); a space in it matches any run of spaces. A word with
//! Chinese characters matches anywhere, also with spaces or dots typed between its
//! characters ("代 购", "代.购"), the usual way round a filter.

use std::collections::HashMap;

use super::{Finding, FindingKind};

/// Characters skipped between the characters of a Chinese word; at most this many in a row.
const SPREAD: &[char] = &[' ', '*', '.', '-', '_', '·', '|', '/', ',', '~', '、'];
const MAX_SPREAD: usize = 3;

#[derive(Debug)]
struct Word {
    chars: Vec<char>,
    /// Holds a non-ASCII character: matched anywhere, separators skipped.
    cjk: bool,
}

/// Words indexed by their first character: a text is read once, and at each position only
/// the words starting with that character are tried.
#[derive(Debug, Default)]
pub(super) struct WordList {
    by_first: HashMap<char, Vec<Word>>,
}

impl WordList {
    pub(super) fn new(words: &[String]) -> WordList {
        let mut by_first: HashMap<char, Vec<Word>> = HashMap::new();
        for word in words {
            let folded: String = word.chars().map(super::fold_char).collect();
            let chars: Vec<char> = folded
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .collect();
            let Some(&first) = chars.first() else {
                continue;
            };
            let cjk = !chars.iter().all(char::is_ascii);
            by_first.entry(first).or_default().push(Word { chars, cjk });
        }
        for list in by_first.values_mut() {
            // Longest first: at one position "特效药代购" is reported, not "代购"'s neighbour.
            list.sort_by_key(|w| std::cmp::Reverse(w.chars.len()));
        }
        WordList { by_first }
    }

    /// Non-overlapping hits, leftmost and then longest first.
    pub(super) fn findings(&self, t: &[char]) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < t.len() {
            let hit = self
                .by_first
                .get(&t[pos])
                .and_then(|list| list.iter().find_map(|w| w.match_at(t, pos)));
            match hit {
                Some(end) => {
                    out.push(Finding {
                        kind: FindingKind::BlockedWord,
                        start: pos,
                        end,
                    });
                    pos = end;
                }
                None => pos += 1,
            }
        }
        out
    }
}

impl Word {
    fn match_at(&self, t: &[char], pos: usize) -> Option<usize> {
        let boundary = |c: Option<&char>| !c.is_some_and(char::is_ascii_alphanumeric);
        if self.chars[0].is_ascii_alphanumeric() && pos > 0 && !boundary(t.get(pos - 1)) {
            return None;
        }
        let mut i = pos;
        for (k, &wc) in self.chars.iter().enumerate() {
            if wc == ' ' {
                let from = i;
                while t.get(i) == Some(&' ') {
                    i += 1;
                }
                if i == from {
                    return None;
                }
                continue;
            }
            if self.cjk && k > 0 {
                let from = i;
                while i - from < MAX_SPREAD && t.get(i).is_some_and(|c| SPREAD.contains(c)) {
                    i += 1;
                }
            }
            if t.get(i) != Some(&wc) {
                return None;
            }
            i += 1;
        }
        let last = self.chars[self.chars.len() - 1];
        if last.is_ascii_alphanumeric() && !boundary(t.get(i)) {
            return None;
        }
        Some(i)
    }
}
