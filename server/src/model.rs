//! The things a session is made of, as stored and as sent on the wire.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use std::collections::BTreeSet;

use crate::screen::Finding;
use crate::similar::Similar;
use crate::text::{self, Lines};

pub type SessionId = Uuid;
/// Unique within a session; small numbers read well on a moderator's screen.
pub type QuestionId = u64;
/// The `sub` of a token: a random id per patient, per staff link.
pub type UserId = Uuid;

pub const MAX_QUESTION_CHARS: usize = 500;
pub const MAX_REASON_CHARS: usize = 200;
pub const MAX_ANSWER_CHARS: usize = 2000;
pub const MAX_NAME_CHARS: usize = 40;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_TOPIC_CHARS: usize = 1000;
pub const MAX_EXPERT_CHARS: usize = 100;
/// Each text field of an [`ExpertProfile`] but the licence.
pub const MAX_PROFILE_CHARS: usize = 100;
pub const MAX_LICENCE_CHARS: usize = 40;
/// A session's own blocked words: how many, and how long each.
pub const MAX_BLOCKED_WORDS: usize = 100;
pub const MAX_BLOCKED_WORD_CHARS: usize = 40;
/// How many similar open questions a new question names.
pub const MAX_SIMILAR: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Expert,
    Moderator,
    Patient,
}

impl Role {
    /// Staff see pending and rejected questions and the reasons.
    pub fn is_staff(self) -> bool {
        !matches!(self, Role::Patient)
    }

    /// Experts and moderators act through a session's links, which the host can replace;
    /// admins and patients do not.
    pub fn holds_session_link(self) -> bool {
        matches!(self, Role::Expert | Role::Moderator)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Moderation {
    /// Nothing is public before a moderator approves it: the default, this is medicine.
    #[default]
    Pre,
    /// Questions are public at once; moderators may still remove them.
    Post,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Scheduled,
    Live,
    Ended,
}

impl SessionState {
    pub fn can_become(self, next: SessionState) -> bool {
        use SessionState::*;
        matches!(
            (self, next),
            (Scheduled, Live) | (Scheduled, Ended) | (Live, Ended)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub title: String,
    pub topic: String,
    pub expert_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub scheduled_start: OffsetDateTime,
    pub moderation: Moderation,
    pub state: SessionState,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// Bumped each time the host replaces the expert and moderator links: staff tokens carry
    /// the version they were issued for and stop working once it is not the current one.
    /// Absent in sessions stored before links could be replaced, which are version 0.
    #[serde(default)]
    pub links_version: u32,
    /// Who answers, as the host verified them. Readers other than the host get the licence
    /// number masked ([`Session::public_view`]).
    #[serde(default)]
    pub expert_profile: Option<ExpertProfile>,
    /// The session's own additions to the deployment's blocked words. Staff only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_words: Vec<String>,
    /// Patients whose questions are refused. Staff only.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub muted: BTreeSet<UserId>,
    /// When the retention removed what was private (see docs/privacy.md).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub scrubbed_at: Option<OffsetDateTime>,
    /// Whether the relay records the broadcast (asked each time a publisher starts). Sessions
    /// stored before recording existed read as recorded.
    #[serde(default = "records_by_default")]
    pub record: bool,
    /// Library videos shown with the session: "watch before" while it is scheduled or live,
    /// "watch after" once it has ended.
    #[serde(default)]
    pub videos: Vec<AttachedVideo>,
}

fn records_by_default() -> bool {
    true
}

/// Most library videos one session may show.
pub const MAX_ATTACHED_VIDEOS: usize = 10;

/// A library video attached to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachedVideo {
    /// The video's id (`GET /api/videos/{id}`).
    pub video: String,
    pub when: VideoWhen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoWhen {
    Before,
    After,
}

/// Checks a session's list of attached videos: at most [`MAX_ATTACHED_VIDEOS`], ids that can
/// name a video, each (video, when) once.
pub fn checked_videos(videos: Vec<AttachedVideo>) -> Result<Vec<AttachedVideo>, String> {
    if videos.len() > MAX_ATTACHED_VIDEOS {
        return Err(format!("videos: at most {MAX_ATTACHED_VIDEOS}"));
    }
    for (i, v) in videos.iter().enumerate() {
        let well_formed = (1..=64).contains(&v.video.len())
            && v.video
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(format!("videos[{i}].video: not a video id"));
        }
        if videos[..i].contains(v) {
            return Err(format!("videos[{i}]: listed twice"));
        }
    }
    Ok(videos)
}

impl Session {
    /// What anyone may see: the licence number masked, no staff lists.
    pub fn public_view(&self) -> Session {
        Session {
            expert_profile: self.expert_profile.as_ref().map(ExpertProfile::masked),
            blocked_words: Vec::new(),
            muted: BTreeSet::new(),
            ..self.clone()
        }
    }

    /// What staff see: everything but the licence number in full, which only the host's own
    /// HTTP replies carry.
    pub fn staff_view(&self) -> Session {
        Session {
            expert_profile: self.expert_profile.as_ref().map(ExpertProfile::masked),
            ..self.clone()
        }
    }

    /// The view for `role`: hosts (admins) get everything.
    pub fn view_for(&self, role: Role) -> Session {
        match role {
            Role::Admin => self.clone(),
            Role::Expert | Role::Moderator => self.staff_view(),
            Role::Patient => self.public_view(),
        }
    }
}

/// The expert of a session as the host recorded them. The 2025 rules for medical popular
/// science ask that the expert's credentials be verified and shown; the licence number is kept
/// for the host's records and never shown in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpertProfile {
    pub name: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub hospital: String,
    #[serde(default)]
    pub department: String,
    #[serde(default)]
    pub licence: String,
    /// The host checked the credentials; pages show a badge only then.
    #[serde(default)]
    pub verified: bool,
}

impl ExpertProfile {
    pub fn validate(self) -> Result<Self, String> {
        let field = |name, value: &str, min| checked_text(name, value, min, MAX_PROFILE_CHARS);
        let licence = checked_text(
            "expert_profile.licence",
            &self.licence,
            0,
            MAX_LICENCE_CHARS,
        )?;
        Ok(ExpertProfile {
            name: field("expert_profile.name", &self.name, 1)?,
            title: field("expert_profile.title", &self.title, 0)?,
            hospital: field("expert_profile.hospital", &self.hospital, 0)?,
            department: field("expert_profile.department", &self.department, 0)?,
            licence,
            verified: self.verified,
        })
    }

    /// All but the last four characters of the licence replaced by `*`.
    pub fn masked(&self) -> ExpertProfile {
        let chars: Vec<char> = self.licence.chars().collect();
        let keep = chars.len().saturating_sub(4);
        let licence = chars
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < keep || chars.len() <= 4 {
                    '*'
                } else {
                    *c
                }
            })
            .collect();
        ExpertProfile {
            licence,
            ..self.clone()
        }
    }
}

/// What a host sends to create a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    pub title: String,
    #[serde(default)]
    pub topic: String,
    pub expert_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub scheduled_start: OffsetDateTime,
    #[serde(default)]
    pub moderation: Moderation,
    #[serde(default)]
    pub expert_profile: Option<ExpertProfile>,
    /// Whether to record the broadcast; `true` when absent.
    #[serde(default)]
    pub record: Option<bool>,
    #[serde(default)]
    pub videos: Vec<AttachedVideo>,
}

impl NewSession {
    /// Trims the text fields and checks their lengths.
    pub fn validate(mut self) -> Result<Self, String> {
        self.title = checked_text("title", &self.title, 1, MAX_TITLE_CHARS)?;
        self.topic = checked_multiline("topic", &self.topic, 0, MAX_TOPIC_CHARS)?;
        self.expert_name = checked_text("expert_name", &self.expert_name, 1, MAX_EXPERT_CHARS)?;
        self.expert_profile = self
            .expert_profile
            .map(ExpertProfile::validate)
            .transpose()?;
        self.videos = checked_videos(self.videos)?;
        Ok(self)
    }

    pub fn into_session(self, id: SessionId, now: OffsetDateTime) -> Session {
        Session {
            id,
            title: self.title,
            topic: self.topic,
            expert_name: self.expert_name,
            scheduled_start: self.scheduled_start,
            moderation: self.moderation,
            state: SessionState::Scheduled,
            created_at: now,
            started_at: None,
            ended_at: None,
            links_version: 0,
            expert_profile: self.expert_profile,
            blocked_words: Vec::new(),
            muted: BTreeSet::new(),
            scrubbed_at: None,
            record: self.record.unwrap_or(true),
            videos: self.videos,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionStatus {
    Pending,
    Approved,
    Answering,
    Answered,
    Rejected,
    Merged,
}

impl QuestionStatus {
    pub const ALL: [QuestionStatus; 6] = [
        QuestionStatus::Pending,
        QuestionStatus::Approved,
        QuestionStatus::Answering,
        QuestionStatus::Answered,
        QuestionStatus::Rejected,
        QuestionStatus::Merged,
    ];

    /// The wire name (as serde writes it), for messages and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            QuestionStatus::Pending => "pending",
            QuestionStatus::Approved => "approved",
            QuestionStatus::Answering => "answering",
            QuestionStatus::Answered => "answered",
            QuestionStatus::Rejected => "rejected",
            QuestionStatus::Merged => "merged",
        }
    }

    /// Votes are taken only on questions in the public queue.
    pub fn takes_votes(self) -> bool {
        matches!(self, QuestionStatus::Approved | QuestionStatus::Answering)
    }

    /// Whether everyone may see a question in this status. A merged question stays public only
    /// if it was public before the merge.
    pub fn is_public(self, was_public: bool) -> bool {
        match self {
            QuestionStatus::Approved | QuestionStatus::Answering | QuestionStatus::Answered => true,
            QuestionStatus::Merged => was_public,
            QuestionStatus::Pending | QuestionStatus::Rejected => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub id: QuestionId,
    pub text: String,
    pub status: QuestionStatus,
    pub votes: u64,
    pub pinned: bool,
    pub edited: bool,
    pub author: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub asked_at: OffsetDateTime,
    pub answer: Option<String>,
    /// When the expert marked it answered.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub answered_at: Option<OffsetDateTime>,
    pub reason: Option<String>,
    pub merged_into: Option<QuestionId>,
    /// Omitted from public messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_id: Option<UserId>,
    /// A preset rejection reason, shown in each reader's language; `reason` is free text kept
    /// as written. Staff and the author only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<ReasonCode>,
    /// The author's text as typed, when `text` differs from it (personal details hidden, or a
    /// moderator's edit). Staff and the author only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
    /// What the screen found in `original` (or in `text` when there is no original). Staff and
    /// the author only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// A moderator published the original text on purpose. Staff only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub original_shown: bool,
    /// The most similar open questions when this one was asked. Staff only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub similar: Vec<Similar>,
    /// Staff and the author only: the author then sees a safe reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage: Option<Triage>,
    /// When the expert last marked it answering: where a replay's chapter starts.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub answering_at: Option<OffsetDateTime>,
}

impl Question {
    /// The view anyone may see: no author id, no rejection reason, nothing the screen found.
    pub fn public_view(&self) -> Question {
        Question {
            author_id: None,
            reason: None,
            reason_code: None,
            original: None,
            findings: Vec::new(),
            original_shown: false,
            similar: Vec::new(),
            triage: None,
            ..self.clone()
        }
    }

    /// What the author sees of their own question: no other patients' questions
    /// (`similar`), nothing a moderator decided about the text.
    pub fn author_view(&self) -> Question {
        Question {
            similar: Vec::new(),
            original_shown: false,
            ..self.clone()
        }
    }

    /// The view for a reader: staff see everything, the author their own view, the rest the
    /// public one.
    pub fn view_for(&self, role: Role, reader: UserId) -> Question {
        if role.is_staff() {
            self.clone()
        } else if self.author_id == Some(reader) {
            self.author_view()
        } else {
            self.public_view()
        }
    }
}

#[cfg(test)]
impl Question {
    /// A question as a test needs it: anonymous, asked at the epoch, nothing decided yet.
    pub(crate) fn sample(id: QuestionId, text: &str, status: QuestionStatus) -> Question {
        Question {
            id,
            text: text.into(),
            status,
            votes: 0,
            pinned: false,
            edited: false,
            author: None,
            asked_at: OffsetDateTime::UNIX_EPOCH,
            answer: None,
            answered_at: None,
            reason: None,
            merged_into: None,
            author_id: None,
            reason_code: None,
            original: None,
            findings: Vec::new(),
            original_shown: false,
            similar: Vec::new(),
            triage: None,
            answering_at: None,
        }
    }
}

/// Preset reasons for a rejection: codes, so that every reader sees them in their language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    PersonalDetails,
    OffTopic,
    Duplicate,
    Abuse,
    Advertising,
    MedicalAdvice,
    /// Set by the server when a moderator mutes the author.
    Muted,
    Other,
}

/// A moderator's or the expert's call that a question needs more than a broadcast can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Triage {
    /// See a doctor or book an outpatient visit.
    Clinic,
    /// Call 120 now.
    Urgent,
}

/// Queue order: pinned first, then more votes, then older first.
pub fn queue_order(a: &Question, b: &Question) -> std::cmp::Ordering {
    b.pinned
        .cmp(&a.pinned)
        .then(b.votes.cmp(&a.votes))
        .then(a.asked_at.cmp(&b.asked_at))
        .then(a.id.cmp(&b.id))
}

/// A single-line text field (a title, a reason...): trimmed, checked for invisible and control
/// characters (see [`crate::text`]), between `min` and `max` characters.
pub fn checked_text(field: &str, raw: &str, min: usize, max: usize) -> Result<String, String> {
    text::clean(field, raw, min, max, Lines::Single).map_err(|e| e.to_string())
}

/// A field the pages show on several lines (a question, an answer, a topic): as
/// [`checked_text`], but line breaks are kept (as `\n`).
pub fn checked_multiline(field: &str, raw: &str, min: usize, max: usize) -> Result<String, String> {
    text::clean(field, raw, min, max, Lines::Multi).map_err(|e| e.to_string())
}

/// A patient's display name as given at join: `None` when empty (anonymous), refused when it
/// holds invisible characters or a role label.
pub fn checked_name(raw: &str) -> Result<Option<String>, String> {
    let name = text::clean_name("name", raw, MAX_NAME_CHARS).map_err(|e| e.to_string())?;
    Ok((!name.is_empty()).then_some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_counted_in_characters() {
        assert_eq!(checked_text("t", "  你好  ", 1, 2).as_deref(), Ok("你好"));
        assert!(checked_text("t", "   ", 1, 5).is_err());
        assert!(checked_text("t", &"字".repeat(501), 1, 500).is_err());
        assert!(checked_text("t", &"字".repeat(500), 1, 500).is_ok());
    }

    #[test]
    fn session_state_only_moves_forward() {
        use SessionState::*;
        assert!(Scheduled.can_become(Live));
        assert!(Live.can_become(Ended));
        assert!(!Ended.can_become(Live));
        assert!(!Live.can_become(Scheduled));
        assert!(!Live.can_become(Live));
    }
}
