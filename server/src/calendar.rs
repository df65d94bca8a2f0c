//! `GET /api/sessions/{id}/calendar.ics`: "add to calendar" for a scheduled session (RFC 5545),
//! so a patient who scanned a poster comes back on time. One event at the scheduled start, an
//! hour long (sessions have no planned end), with the patient link and a reminder 15 minutes
//! before. Written by hand: an iCalendar file is a few escaped, folded lines.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{Duration, OffsetDateTime};

use crate::AppState;
use crate::error::ApiError;
use crate::model::{Session, SessionId, SessionState};

/// How long the calendar entry lasts: sessions have no planned end.
const PLANNED_LENGTH: Duration = Duration::hours(1);
/// When the calendar reminds the patient.
const REMINDER_BEFORE: &str = "-PT15M";
const UTC_STAMP: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
) -> Result<impl IntoResponse, ApiError> {
    let session = app
        .broker
        .session(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such session".into()))?
        .public_view();
    let link = format!("{}/s/{id}", app.public_url);
    let body = ics(&session, &link, OffsetDateTime::now_utc());
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"oncolive.ics\"",
            ),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    ))
}

/// The calendar file of `session`, whose patient page is `link`.
pub fn ics(session: &Session, link: &str, now: OffsetDateTime) -> String {
    let stamp = |t: OffsetDateTime| {
        t.to_offset(time::UtcOffset::UTC)
            .format(UTC_STAMP)
            .unwrap_or_default()
    };
    let start = session.scheduled_start;
    let mut description = String::new();
    if !session.topic.is_empty() {
        description.push_str(&session.topic);
        description.push_str("\n\n");
    }
    let _ = write!(description, "{}\n{link}", session.expert_name);
    // A session ended before it went live was cancelled: calendars that imported it say so.
    let status = if session.state == SessionState::Ended && session.started_at.is_none() {
        "CANCELLED"
    } else {
        "CONFIRMED"
    };
    let lines = [
        "BEGIN:VCALENDAR".to_string(),
        "VERSION:2.0".into(),
        "PRODID:-//OncoLive//Sessions//EN".into(),
        "CALSCALE:GREGORIAN".into(),
        "METHOD:PUBLISH".into(),
        "BEGIN:VEVENT".into(),
        format!("UID:{}@oncolive", session.id),
        format!("DTSTAMP:{}", stamp(now)),
        format!("DTSTART:{}", stamp(start)),
        format!("DTEND:{}", stamp(start + PLANNED_LENGTH)),
        format!("SUMMARY:{}", escape(&session.title)),
        format!("DESCRIPTION:{}", escape(&description)),
        format!("URL:{link}"),
        format!("STATUS:{status}"),
        "BEGIN:VALARM".into(),
        "ACTION:DISPLAY".into(),
        format!("DESCRIPTION:{}", escape(&session.title)),
        format!("TRIGGER:{REMINDER_BEFORE}"),
        "END:VALARM".into(),
        "END:VEVENT".into(),
        "END:VCALENDAR".into(),
    ];
    let mut out = String::new();
    for line in &lines {
        fold(line, &mut out);
    }
    out
}

/// TEXT escaping (RFC 5545 §3.3.11).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Lines of at most 75 octets, continued with CRLF and a space (§3.1), never inside a
/// character: Chinese titles are 3 octets a character.
fn fold(line: &str, out: &mut String) {
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Moderation, NewSession};
    use time::macros::datetime;

    #[test]
    fn an_event_with_link_and_reminder_in_folded_lines() {
        let session = NewSession {
            title: "肺癌筛查：谁该做低剂量CT，多久一次，结果怎么看，结节是什么意思".into(),
            topic: "Low-dose CT; smoking, history\nnodules".into(),
            expert_name: "Dr. Wang".into(),
            scheduled_start: datetime!(2026-12-10 10:00 +08:00),
            moderation: Moderation::Pre,
            expert_profile: None,
            record: None,
            videos: Vec::new(),
        }
        .into_session(uuid::Uuid::nil(), datetime!(2026-12-01 0:00 UTC));
        let ics = ics(
            &session,
            "https://h.example/s/x",
            datetime!(2026-12-02 8:00 UTC),
        );
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
        assert!(ics.contains("\r\nDTSTART:20261210T020000Z\r\n"), "{ics}");
        assert!(ics.contains("\r\nDTEND:20261210T030000Z\r\n"));
        assert!(ics.contains("\r\nTRIGGER:-PT15M\r\n"));
        assert!(ics.contains("\r\nSTATUS:CONFIRMED\r\n"));
        for line in ics.split("\r\n") {
            assert!(line.len() <= 75, "{line:?} is {} octets", line.len());
        }
        // Unfolded, the texts are whole and escaped.
        let unfolded = ics.replace("\r\n ", "");
        assert!(unfolded.contains(&format!("SUMMARY:{}\r\n", session.title)));
        assert!(unfolded.contains(
            "DESCRIPTION:Low-dose CT\\; smoking\\, history\\nnodules\\n\\nDr. Wang\\nhttps://h.example/s/x\r\n"
        ));
        assert!(unfolded.contains("URL:https://h.example/s/x\r\n"));
    }
}
