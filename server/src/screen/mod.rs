//! Placeholder of the personal-detail detector (helper branch `detect` replaces this file).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    Phone,
    Landline,
    IdNumber,
    Email,
    BankCard,
    Contact,
    RecordNumber,
    BlockedWord,
}

impl FindingKind {
    pub fn is_personal(self) -> bool {
        self != FindingKind::BlockedWord
    }
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::Phone => "phone",
            FindingKind::Landline => "landline",
            FindingKind::IdNumber => "id_number",
            FindingKind::Email => "email",
            FindingKind::BankCard => "bank_card",
            FindingKind::Contact => "contact",
            FindingKind::RecordNumber => "record_number",
            FindingKind::BlockedWord => "blocked_word",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ScreenConfig {
    pub record_cues: Vec<String>,
    pub blocked_words: Vec<String>,
}

impl ScreenConfig {
    pub fn with_blocked_words_file(mut self, text: &str) -> Result<Self, ScreenError> {
        self.blocked_words = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        Ok(self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Default)]
pub struct Screen {
    config: ScreenConfig,
}

impl Screen {
    pub fn new(config: ScreenConfig) -> Result<Screen, ScreenError> {
        Ok(Screen { config })
    }

    pub fn findings(&self, text: &str, session_words: &[String]) -> Vec<Finding> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_ascii_digit() {
                let start = i;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                if i - start == 11 && chars[start] == '1' {
                    out.push(Finding {
                        kind: FindingKind::Phone,
                        start,
                        end: i,
                    });
                }
            } else {
                i += 1;
            }
        }
        let lower = text.to_lowercase();
        for word in self.config.blocked_words.iter().chain(session_words) {
            if let Some(at) = lower.find(&word.to_lowercase()) {
                let start = lower[..at].chars().count();
                let end = start + word.chars().count();
                if !out.iter().any(|f| f.start < end && start < f.end) {
                    out.push(Finding {
                        kind: FindingKind::BlockedWord,
                        start,
                        end,
                    });
                }
            }
        }
        out.sort_by_key(|f| f.start);
        out
    }
}

pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut out = String::new();
    let mut skip_until = 0;
    for (i, c) in text.chars().enumerate() {
        if let Some(f) = findings
            .iter()
            .find(|f| f.kind.is_personal() && f.start == i)
        {
            out.push_str("***");
            skip_until = f.end;
        }
        if i >= skip_until {
            out.push(c);
        }
    }
    out
}
