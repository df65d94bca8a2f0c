//! Personal details and blocked words in what patients type (issue 11, docs/privacy.md "What is
//! detected"). Pure functions over a string: no I/O, so the domain can call it inside
//! `SessionData::apply` for both brokers, and the socket's `screen` request can call it while a
//! patient types.
//!
//! Every offset is in Unicode code points of the text as given, `end` exclusive. Matching runs
//! on a copy folded one code point for one code point (full-width digits and letters to ASCII,
//! ASCII to lower case, the many dashes and spaces to `-` and ` `), so an offset in the folded
//! copy is the same offset in the original and no map back is needed.

mod blocked;
mod detect;

use serde::{Deserialize, Serialize};

use blocked::WordList;
use detect::Detector;

/// What a finding is. All but [`FindingKind::BlockedWord`] are personal details: they are
/// replaced by `***` before a text is public.
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
    pub const ALL: [FindingKind; 8] = [
        FindingKind::Phone,
        FindingKind::Landline,
        FindingKind::IdNumber,
        FindingKind::Email,
        FindingKind::BankCard,
        FindingKind::Contact,
        FindingKind::RecordNumber,
        FindingKind::BlockedWord,
    ];

    pub fn is_personal(self) -> bool {
        self != FindingKind::BlockedWord
    }

    /// The wire name (`"id_number"`), the same string serde writes; stable, fit for metric
    /// labels and logs.
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

    /// What an English error message calls it: "a display name may not hold {label}".
    pub fn label(self) -> &'static str {
        match self {
            FindingKind::Phone => "a mobile phone number",
            FindingKind::Landline => "a landline number",
            FindingKind::IdNumber => "an ID number",
            FindingKind::Email => "an e-mail address",
            FindingKind::BankCard => "a bank card number",
            FindingKind::Contact => "a private contact (WeChat, QQ)",
            FindingKind::RecordNumber => "a hospital record number",
            FindingKind::BlockedWord => "a blocked word",
        }
    }

    pub fn from_name(name: &str) -> Option<FindingKind> {
        FindingKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One span of a text, in code points, `end` exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub start: usize,
    pub end: usize,
}

/// What an operator configures. Record numbers have no national format, so the words that
/// announce one are the operator's; the blocked-word list is a file (docs/privacy.md).
#[derive(Debug, Clone)]
pub struct ScreenConfig {
    /// Words after which 4–20 letters and digits are a hospital record number. A space in a
    /// cue matches any run of spaces, or none ("住院 ID" matches "住院ID").
    pub record_cues: Vec<String>,
    pub blocked_words: Vec<String>,
}

/// The record cues of a deployment that configures none.
pub const DEFAULT_RECORD_CUES: &[&str] = &[
    "住院号",
    "病历号",
    "门诊号",
    "病案号",
    "就诊卡号",
    "就诊号",
    "病理号",
    "检查号",
    "影像号",
    "医保卡号",
    "社保卡号",
    "住院 ID",
    "门诊 ID",
    "MRN",
    "medical record",
    "hospital number",
    "patient ID",
];

/// The blocked words of a deployment that configures no file.
pub const DEFAULT_BLOCKED_WORDS: &str = include_str!("blocked_words.txt");

/// A blocked word longer than this is a sentence, not a word; most likely a pasted file.
pub const MAX_WORD_CHARS: usize = 64;
/// Enough for any list a person keeps; a bigger file is a mistake worth refusing at start-up.
pub const MAX_WORDS: usize = 5000;

impl Default for ScreenConfig {
    fn default() -> Self {
        ScreenConfig {
            record_cues: DEFAULT_RECORD_CUES.iter().map(|&s| s.to_owned()).collect(),
            blocked_words: parse_word_list(DEFAULT_BLOCKED_WORDS)
                .expect("the embedded blocked-word list parses (tested)"),
        }
    }
}

impl ScreenConfig {
    /// Replaces the blocked words with those of a file: one word or phrase a line, lines
    /// starting with `#` and blank lines ignored, surrounding spaces trimmed.
    pub fn with_blocked_words_file(self, text: &str) -> Result<Self, ScreenError> {
        Ok(ScreenConfig {
            blocked_words: parse_word_list(text)?,
            ..self
        })
    }
}

fn parse_word_list(text: &str) -> Result<Vec<String>, ScreenError> {
    let mut words = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let word = raw.trim();
        if word.is_empty() || word.starts_with('#') {
            continue;
        }
        check_word(word).map_err(|reason| ScreenError::WordFile {
            line: i + 1,
            reason,
        })?;
        words.push(word.to_owned());
    }
    if words.len() > MAX_WORDS {
        return Err(ScreenError::TooManyWords {
            count: words.len(),
            max: MAX_WORDS,
        });
    }
    Ok(words)
}

fn check_word(word: &str) -> Result<(), String> {
    let chars = word.chars().count();
    if chars > MAX_WORD_CHARS {
        return Err(format!(
            "{chars} characters, at most {MAX_WORD_CHARS} (one word or phrase a line)"
        ));
    }
    if let Some(c) = word.chars().find(|c| c.is_control()) {
        return Err(format!("control character U+{:04X}", u32::from(c)));
    }
    if !word.chars().any(char::is_alphanumeric) {
        return Err("no letter, digit or character: it would match punctuation".to_owned());
    }
    Ok(())
}

/// A configuration that cannot be compiled; reported at start-up, never on client input.
#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    #[error("blocked-word file, line {line}: {reason}")]
    WordFile { line: usize, reason: String },
    #[error("blocked word {word:?}: {reason}")]
    Word { word: String, reason: String },
    #[error("too many blocked words: {count}, at most {max}")]
    TooManyWords { count: usize, max: usize },
    #[error("record cue {cue:?}: {reason}")]
    RecordCue { cue: String, reason: String },
}

/// The compiled rules. Cheap to share (`Arc`); `findings` takes `&self`.
#[derive(Debug)]
pub struct Screen {
    detector: Detector,
    words: WordList,
}

impl Screen {
    pub fn new(config: ScreenConfig) -> Result<Screen, ScreenError> {
        for cue in &config.record_cues {
            let reason = if cue.trim().is_empty() {
                Some("empty")
            } else if cue.chars().count() > 32 {
                Some("longer than 32 characters")
            } else if cue.chars().any(|c| c.is_control() || c.is_ascii_digit()) {
                Some("holds a digit or control character")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(ScreenError::RecordCue {
                    cue: cue.clone(),
                    reason: reason.to_owned(),
                });
            }
        }
        for word in &config.blocked_words {
            check_word(word.trim()).map_err(|reason| ScreenError::Word {
                word: word.clone(),
                reason,
            })?;
        }
        if config.blocked_words.len() > MAX_WORDS {
            return Err(ScreenError::TooManyWords {
                count: config.blocked_words.len(),
                max: MAX_WORDS,
            });
        }
        Ok(Screen {
            detector: Detector::new(&config.record_cues, today()),
            words: WordList::new(&config.blocked_words),
        })
    }

    /// Every personal detail and blocked word in `text`, plus the words of `session_words`
    /// (a session's additions, checked by the domain). Sorted by start, non-overlapping;
    /// where a personal detail and a blocked word overlap, the personal detail is kept.
    pub fn findings(&self, text: &str, session_words: &[String]) -> Vec<Finding> {
        let norm = fold(text);
        let mut personal = self.detector.findings(&norm);
        let mut words = self.words.findings(&norm);
        if !session_words.is_empty() {
            words.extend(WordList::new(session_words).findings(&norm));
        }
        words.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
        for w in words {
            let free = |f: &Finding| f.end <= w.start || w.end <= f.start;
            if personal.iter().all(free) {
                personal.push(w);
            }
        }
        personal.sort_by_key(|f| f.start);
        personal
    }
}

impl Default for Screen {
    fn default() -> Self {
        Screen::new(ScreenConfig::default()).expect("the default configuration compiles (tested)")
    }
}

/// Birth dates after today are not ID numbers. Read once per `Screen`: a server that runs for
/// a year rejects the IDs of babies born meanwhile, which is no loss.
fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// Replaces every personal finding's span with `***`; blocked words stay. Overlapping spans
/// are masked as their union (the detector never makes them, but a caller's list might, and a
/// leaked character is worse than a merged mask); spans past the end are cut, never a panic.
pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut spans: Vec<(usize, usize)> = findings
        .iter()
        .filter(|f| f.kind.is_personal() && f.start < f.end)
        .map(|f| (f.start, f.end))
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start < last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut spans = merged.into_iter().peekable();
    let mut masked_until = 0;
    for (i, c) in text.chars().enumerate() {
        if i < masked_until {
            continue;
        }
        if let Some((_, end)) = spans.next_if(|&(start, _)| start == i) {
            out.push_str("***");
            masked_until = end;
            continue;
        }
        out.push(c);
    }
    out
}

/// The copy the rules read: one char for one char of `text`.
fn fold(text: &str) -> Vec<char> {
    text.chars().map(fold_char).collect()
}

fn fold_char(c: char) -> char {
    let c = match u32::from(c) {
        // Full-width ASCII (！ to ～), what Chinese input methods type.
        code @ 0xFF01..=0xFF5E => char::from_u32(code - 0xFEE0).unwrap_or(c),
        0x3000 | 0x00A0 | 0x2002..=0x200A | 0x202F | 0x205F => ' ',
        0x2010..=0x2015 | 0x2212 | 0xFE63 => '-',
        _ => c,
    };
    match c {
        '\t' => ' ',
        _ => c.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests;
