//! `GET /api/limits`: the text limits the server enforces, for the pages' counters and
//! `maxlength`s, so the web app never carries its own copy of them.
//!
//! The numbers are the constants of [`crate::model`]; this module only gives them wire names.
//! They change only with a new build, so the answer may be cached for an hour.

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::model::{
    MAX_ANSWER_CHARS, MAX_EXPERT_CHARS, MAX_NAME_CHARS, MAX_QUESTION_CHARS, MAX_REASON_CHARS,
    MAX_TITLE_CHARS, MAX_TOPIC_CHARS,
};

/// Longest accepted texts, in Unicode characters after trimming (a Chinese character is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextLimits {
    /// A patient's question, and a moderator's edit of it.
    pub question_chars: usize,
    /// A moderator's reason for rejecting a question.
    pub reason_chars: usize,
    /// The expert's written answer.
    pub answer_chars: usize,
    /// The name a patient joins with (empty means anonymous).
    pub name_chars: usize,
    /// A session's title.
    pub title_chars: usize,
    /// A session's topic line.
    pub topic_chars: usize,
    /// The expert's name on a session.
    pub expert_chars: usize,
}

/// The limits this build enforces.
pub const TEXT_LIMITS: TextLimits = TextLimits {
    question_chars: MAX_QUESTION_CHARS,
    reason_chars: MAX_REASON_CHARS,
    answer_chars: MAX_ANSWER_CHARS,
    name_chars: MAX_NAME_CHARS,
    title_chars: MAX_TITLE_CHARS,
    topic_chars: MAX_TOPIC_CHARS,
    expert_chars: MAX_EXPERT_CHARS,
};

/// How long a browser or proxy may keep the answer: the limits change only with a deploy.
pub const CACHE_CONTROL: &str = "public, max-age=3600";

/// The handler of `GET /api/limits` (public: no token).
pub async fn get() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, CACHE_CONTROL)], Json(TEXT_LIMITS))
}
