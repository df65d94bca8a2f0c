//! `GET /api/sessions/{id}/export?format=md|csv|json`: a session's public questions and answers
//! for the hospital's records, as patients saw them (personal details hidden), with no names
//! and no ids of people.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Admin;
use crate::model::{Question, QuestionStatus, Role, Session, SessionId};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Md,
    Csv,
    Json,
}

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    format: Format,
}

/// One exported question: what the public saw of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedQuestion {
    pub id: u64,
    pub text: String,
    pub status: QuestionStatus,
    pub votes: u64,
    pub answer: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub asked_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub answered_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub session: ExportedSession,
    pub questions: Vec<ExportedQuestion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedSession {
    pub id: SessionId,
    pub title: String,
    pub topic: String,
    pub expert_name: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
}

pub async fn export(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
    _: Admin,
    Query(query): Query<ExportQuery>,
) -> Result<impl IntoResponse, ApiError> {
    // A reader who is no one: exactly what any patient may see.
    let view = app.broker.view(id, Role::Patient, Uuid::nil()).await?;
    let export = Export::of(&view.session, &view.questions);
    let (content_type, ext, body) = match query.format {
        Format::Json => (
            "application/json",
            "json",
            serde_json::to_string_pretty(&export).map_err(|e| ApiError::Internal(e.to_string()))?,
        ),
        Format::Csv => ("text/csv; charset=utf-8", "csv", export.csv()),
        Format::Md => ("text/markdown; charset=utf-8", "md", export.markdown()),
    };
    let disposition = format!("attachment; filename=\"oncolive-{id}.{ext}\"");
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    ))
}

impl Export {
    /// The public questions and answers, in the order they were asked.
    pub fn of(session: &Session, questions: &[Question]) -> Export {
        let mut questions: Vec<ExportedQuestion> = questions
            .iter()
            .filter(|q| {
                matches!(
                    q.status,
                    QuestionStatus::Approved | QuestionStatus::Answering | QuestionStatus::Answered
                )
            })
            .map(|q| {
                let q = q.public_view();
                ExportedQuestion {
                    id: q.id,
                    text: q.text,
                    status: q.status,
                    votes: q.votes,
                    answer: q.answer,
                    asked_at: q.asked_at,
                    answered_at: q.answered_at,
                }
            })
            .collect();
        questions.sort_by_key(|q| q.id);
        Export {
            session: ExportedSession {
                id: session.id,
                title: session.title.clone(),
                topic: session.topic.clone(),
                expert_name: session.expert_name.clone(),
                started_at: session.started_at,
                ended_at: session.ended_at,
            },
            questions,
        }
    }

    pub fn csv(&self) -> String {
        let mut out = String::from("id,status,votes,asked_at,answered_at,question,answer\r\n");
        for q in &self.questions {
            let row = [
                q.id.to_string(),
                q.status.name().to_owned(),
                q.votes.to_string(),
                rfc3339(Some(q.asked_at)),
                rfc3339(q.answered_at),
                q.text.clone(),
                q.answer.clone().unwrap_or_default(),
            ];
            let row: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
            out.push_str(&row.join(","));
            out.push_str("\r\n");
        }
        out
    }

    pub fn markdown(&self) -> String {
        let s = &self.session;
        let mut out = format!("# {}\n\n", md_line(&s.title));
        out.push_str(&format!("Expert: {}\n\n", md_line(&s.expert_name)));
        if !s.topic.is_empty() {
            out.push_str(&format!("{}\n\n", md_block(&s.topic)));
        }
        for q in &self.questions {
            out.push_str(&format!(
                "## {}. {}\n\n",
                q.id,
                md_line(&q.text.replace('\n', " "))
            ));
            out.push_str(&format!(
                "{} votes · asked {}\n\n",
                q.votes,
                rfc3339(Some(q.asked_at))
            ));
            if let Some(answer) = &q.answer {
                out.push_str(&format!("{}\n\n", md_block(answer)));
            }
        }
        out
    }
}

fn rfc3339(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

/// RFC 4180 quoting. A field a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first)
/// gets a leading `'`: patients' text opened in Excel must stay text.
fn csv_field(field: &str) -> String {
    let field = if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{field}")
    } else {
        field.to_owned()
    };
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field
    }
}

/// Patients' text as Markdown text, not markup: every character Markdown gives a meaning to is
/// escaped, so a question cannot become a link, an image or a heading.
fn md_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\`*_{}[]()<>#+-.!|~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn md_block(text: &str) -> String {
    text.lines().map(md_line).collect::<Vec<_>>().join("  \n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }

    #[test]
    fn markdown_text_cannot_become_markup() {
        assert_eq!(md_line("[x](http://a)"), "\\[x\\]\\(http://a\\)");
        assert_eq!(md_line("# title"), "\\# title");
    }
}
