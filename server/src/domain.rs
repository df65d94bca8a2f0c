//! The rules of a session, without I/O: a command from an actor either changes the session's
//! state and yields the events that describe the change, or is refused with a reason.
//!
//! Every broker applies commands through [`SessionData::apply`], so the rules live in one place
//! whatever stores the state.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::AttachedVideo;
use crate::model::{
    ExpertProfile, MAX_ANSWER_CHARS, MAX_BLOCKED_WORD_CHARS, MAX_BLOCKED_WORDS, MAX_QUESTION_CHARS,
    MAX_REASON_CHARS, MAX_SIMILAR, Moderation, Question, QuestionId, QuestionStatus, ReasonCode,
    Role, Session, SessionState, Triage, UserId, checked_multiline, checked_text,
};
use crate::screen::{self, Screen};
use crate::similar::{self, Shingles, SimilarIndex};

/// Who is acting, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: UserId,
    pub role: Role,
    pub name: Option<String>,
    /// The [`Session::links_version`] an expert's or moderator's token was issued for; such an
    /// actor is refused once the host has replaced the links. Ignored for other roles.
    pub links_version: u32,
    /// When a patient agreed to the privacy notice in this session (stores keep it apart; the
    /// socket reads it once). Patients ask only after that.
    pub consented_at: Option<OffsetDateTime>,
}

/// A change someone asks for. Its serde form is the socket's request body (see
/// [`crate::protocol::ClientMsg`]), so fields a command does not have are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    Ask {
        text: String,
    },
    Vote {
        question: QuestionId,
    },
    Unvote {
        question: QuestionId,
    },
    Approve {
        question: QuestionId,
        text: Option<String>,
        /// Publish the author's original text, personal details and all: an explicit choice,
        /// logged.
        #[serde(default)]
        original: bool,
    },
    Reject {
        question: QuestionId,
        /// Free text, shown as written. At least one of `reason` and `code`.
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        code: Option<ReasonCode>,
    },
    Edit {
        question: QuestionId,
        text: String,
    },
    Merge {
        question: QuestionId,
        into: QuestionId,
    },
    Pin {
        question: QuestionId,
        pinned: bool,
    },
    Answering {
        question: QuestionId,
    },
    Answered {
        question: QuestionId,
        answer: Option<String>,
    },
    SetState {
        state: SessionState,
    },
    /// Tags a question for a safe reply to its author; `None` clears the tag.
    Triage {
        question: QuestionId,
        tag: Option<Triage>,
    },
    /// Refuses (or allows again) a patient's questions; muting rejects their pending ones.
    Mute {
        author: UserId,
        muted: bool,
    },
    /// Replaces the session's own blocked words.
    SetBlockedWords {
        words: Vec<String>,
    },
    /// Over HTTP only (`PATCH /api/sessions/{id}`); the socket does not take it.
    #[serde(skip_deserializing)]
    UpdateSession {
        /// Boxed: the largest command by far, and a rare one.
        changes: Box<SessionChanges>,
    },
    /// Replaces the expert and moderator links: every staff token issued before stops working.
    /// Over HTTP only (`POST /api/sessions/{id}/links/rotate`).
    #[serde(skip_deserializing)]
    RotateStaffLinks,
    /// The retention: removes what is private of an ended session (see docs/privacy.md). Given
    /// by the server itself, never by a client.
    #[serde(skip_deserializing)]
    Scrub,
}

/// What a host may change of a session before it ends. Absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionChanges {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub expert_name: Option<String>,
    /// Only while the session is still scheduled.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub scheduled_start: Option<OffsetDateTime>,
    /// Only while the session is still scheduled: patients must know the rules before they ask.
    #[serde(default)]
    pub moderation: Option<Moderation>,
    /// `Some(None)` is not expressible on the wire; a profile replaces the previous one.
    #[serde(default)]
    pub expert_profile: Option<ExpertProfile>,
    /// Takes effect the next time a publisher starts; what was recorded stays.
    #[serde(default)]
    pub record: Option<bool>,
    /// Replaces the whole list.
    #[serde(default)]
    pub videos: Option<Vec<AttachedVideo>>,
}

impl SessionChanges {
    /// Whether nothing but the attached videos changes (allowed after the end).
    fn only_videos(&self) -> bool {
        let SessionChanges {
            title,
            topic,
            expert_name,
            scheduled_start,
            moderation,
            expert_profile,
            record,
            videos: _,
        } = self;
        title.is_none()
            && topic.is_none()
            && expert_name.is_none()
            && scheduled_start.is_none()
            && moderation.is_none()
            && expert_profile.is_none()
            && record.is_none()
    }
}

impl Command {
    /// Refuses a command the role may not give, whatever the session's state.
    pub fn check_role(&self, role: Role) -> Result<(), Refusal> {
        if self.allowed_for(role) {
            Ok(())
        } else {
            Err(Refusal::Forbidden(
                format!("a {role:?} may not do this").to_lowercase(),
            ))
        }
    }

    fn allowed_for(&self, role: Role) -> bool {
        use Command::*;
        match self {
            Ask { .. } | Vote { .. } | Unvote { .. } => role == Role::Patient,
            Approve { .. }
            | Reject { .. }
            | Edit { .. }
            | Merge { .. }
            | Pin { .. }
            | Mute { .. }
            | SetBlockedWords { .. } => matches!(role, Role::Moderator | Role::Admin),
            Answering { .. } | Answered { .. } | SetState { .. } => {
                matches!(role, Role::Expert | Role::Admin)
            }
            Triage { .. } => role.is_staff(),
            UpdateSession { .. } | RotateStaffLinks | Scrub => role == Role::Admin,
        }
    }

    /// The questions the command names, which a store reads fresh (vote counts included)
    /// before applying it. A command may change another question too (`answering` sends the
    /// previous one back to `approved`), but only these carry counts the command must get right.
    pub fn questions(&self) -> Vec<QuestionId> {
        use Command::*;
        match self {
            Vote { question }
            | Unvote { question }
            | Approve { question, .. }
            | Reject { question, .. }
            | Edit { question, .. }
            | Pin { question, .. }
            | Answering { question }
            | Answered { question, .. }
            | Triage { question, .. } => vec![*question],
            Merge { question, into } => vec![*question, *into],
            Ask { .. }
            | SetState { .. }
            | UpdateSession { .. }
            | RotateStaffLinks
            | Mute { .. }
            | SetBlockedWords { .. }
            | Scrub => Vec::new(),
        }
    }

    /// Whether the command can change what others see (votes are coalesced instead).
    pub fn is_vote(&self) -> bool {
        matches!(self, Command::Vote { .. } | Command::Unvote { .. })
    }
}

/// Why a command was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no question {0} in this session")]
    NotFound(QuestionId),
    #[error("{0}")]
    Conflict(String),
    #[error("the session has ended")]
    SessionEnded,
    /// The actor's link was replaced by the host (see [`Command::RotateStaffLinks`]).
    #[error("this link was replaced by the host; ask the host for the new link")]
    Revoked,
    #[error("a moderator has muted you in this session; you cannot ask more questions")]
    Muted,
    #[error("please read the privacy notice and agree to it before asking")]
    ConsentRequired,
}

/// Who may receive an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Audience {
    Public,
    /// Moderators, the expert, admins, and the question's author if there is one.
    Staff {
        author: Option<UserId>,
    },
    /// Everyone but those of `Staff { author }`: the public view of something staff and the
    /// author see more of.
    Others {
        author: Option<UserId>,
    },
}

impl Audience {
    pub fn includes(&self, role: Role, id: UserId) -> bool {
        match self {
            Audience::Public => true,
            Audience::Staff { author } => role.is_staff() || *author == Some(id),
            Audience::Others { author } => !(role.is_staff() || *author == Some(id)),
        }
    }
}

/// An event before it has a sequence number.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    Session(Session),
    Question(Question),
    QuestionRemoved(QuestionId),
    Votes(Vec<(QuestionId, u64)>),
}

/// What an accepted command tells its sender.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Question(Question),
    Voted(bool),
    Session(Session),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub events: Vec<(Audience, EventBody)>,
    pub reply: Reply,
    /// What the command changed, for a store that writes only that.
    pub touched: Touched,
}

impl Applied {
    /// Adds the events and changes of `other` after this one's, keeping this one's reply.
    fn absorb(&mut self, other: Applied) {
        self.events.extend(other.events);
        self.touched.extend(other.touched);
    }
}

/// What a command changed of a session's stored state, so a store writes only that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// The [`Session`] itself (its title, state, times...).
    pub session: bool,
    /// Questions whose [`StoredQuestion`] may differ. A vote touches none: voters are not part
    /// of a question's stored form.
    pub questions: BTreeSet<QuestionId>,
}

impl Touched {
    fn question(id: QuestionId) -> Touched {
        Touched {
            session: false,
            questions: BTreeSet::from([id]),
        }
    }

    fn session() -> Touched {
        Touched {
            session: true,
            questions: BTreeSet::new(),
        }
    }

    pub fn extend(&mut self, other: Touched) {
        self.session |= other.session;
        self.questions.extend(other.questions);
    }
}

/// A question as a store keeps it: everything but its voters, which a store keeps apart (Redis
/// keeps a set per question), so a vote never rewrites the record. `question.votes` is 0 here:
/// the count is the number of voters.
///
/// The serde names are the stored form, spelled out so that renaming a Rust field cannot change
/// what is already stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredQuestion {
    #[serde(rename = "question")]
    pub question: Question,
    /// Whether the question has ever been public: decides who hears of a later rejection.
    #[serde(rename = "was_public")]
    pub was_public: bool,
}

impl StoredQuestion {
    pub fn is_public(&self) -> bool {
        self.question.status.is_public(self.was_public)
    }
}

/// One question as a store gives it back to [`SessionData::from_stored`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionParts {
    pub stored: StoredQuestion,
    /// The vote count, which a store may know without reading every voter.
    pub votes: u64,
    /// The voters the caller needs: all of them for a question a command may merge, just the
    /// viewer (if they voted) for a view, or none. Commands read or change the voters only of
    /// the questions they vote on or merge.
    pub voters: HashSet<UserId>,
}

#[derive(Debug, Clone)]
struct QuestionRecord {
    question: Question,
    /// Whether the question has ever been public: decides who hears of a later rejection.
    was_public: bool,
    voters: HashSet<UserId>,
}

impl QuestionRecord {
    fn new(question: Question, was_public: bool, voters: HashSet<UserId>) -> QuestionRecord {
        QuestionRecord {
            question,
            was_public,
            voters,
        }
    }

    /// Open for a duplicate: still waiting or in the public queue.
    fn is_open(&self) -> bool {
        matches!(
            self.question.status,
            QuestionStatus::Pending | QuestionStatus::Approved | QuestionStatus::Answering
        )
    }

    fn is_public(&self) -> bool {
        self.question.status.is_public(self.was_public)
    }

    fn stored(&self) -> StoredQuestion {
        StoredQuestion {
            question: Question {
                votes: 0,
                ..self.question.clone()
            },
            was_public: self.was_public,
        }
    }

    fn from_parts(parts: QuestionParts) -> QuestionRecord {
        let QuestionParts {
            stored:
                StoredQuestion {
                    mut question,
                    was_public,
                },
            votes,
            voters,
        } = parts;
        question.votes = votes;
        QuestionRecord::new(question, was_public, voters)
    }
}

/// How many questions a session may hold: the same rules whatever stores it. They bound what a
/// session costs (every snapshot carries its questions) and keep a flood from burying the queue
/// moderators work through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuestionCaps {
    /// Questions in any state, merged and rejected ones included.
    pub max_questions: usize,
    /// Questions waiting for a moderator (pre-moderated sessions).
    pub max_pending: usize,
}

impl Default for QuestionCaps {
    fn default() -> Self {
        QuestionCaps {
            max_questions: 20_000,
            max_pending: 5_000,
        }
    }
}

/// What every store sets from its configuration: the same rules whatever stores a session.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub caps: QuestionCaps,
    /// The deployment's detector of personal details and blocked words.
    pub screen: Arc<Screen>,
}

/// All state of one session.
#[derive(Debug, Clone)]
pub struct SessionData {
    pub session: Session,
    next_question: QuestionId,
    questions: BTreeMap<QuestionId, QuestionRecord>,
    /// Questions whose vote count changed since the last `votes` event.
    dirty_votes: BTreeSet<QuestionId>,
    /// Not stored: every store sets the rules of its configuration ([`SessionData::with_rules`]).
    rules: Rules,
    /// The open questions as the duplicate finder sees them. Built on the first question asked
    /// (a store that reads 20,000 questions for a view does not pay for it), then kept in step
    /// with every change; not stored.
    similar: Option<SimilarIndex>,
}

impl SessionData {
    pub fn new(session: Session) -> Self {
        SessionData {
            session,
            next_question: 1,
            questions: BTreeMap::new(),
            dirty_votes: BTreeSet::new(),
            rules: Rules::default(),
            similar: None,
        }
    }

    /// The same state under other rules (the default: [`Rules::default`]).
    pub fn with_rules(self, rules: Rules) -> Self {
        SessionData { rules, ..self }
    }

    /// The same state under other caps.
    pub fn with_caps(mut self, caps: QuestionCaps) -> Self {
        self.rules.caps = caps;
        self
    }

    /// Rebuilds a session's state from what a store kept: the session, the id the next question
    /// gets, and its questions. No vote counts are pending: a store keeps those itself.
    pub fn from_stored(
        session: Session,
        next_question: QuestionId,
        questions: impl IntoIterator<Item = QuestionParts>,
    ) -> Self {
        SessionData {
            session,
            next_question,
            questions: questions
                .into_iter()
                .map(|parts| (parts.stored.question.id, QuestionRecord::from_parts(parts)))
                .collect(),
            dirty_votes: BTreeSet::new(),
            rules: Rules::default(),
            similar: None,
        }
    }

    /// Brings a copy kept from an earlier read up to date with what a store read since: the
    /// session, the next id, and the records that changed (`None`: the record does not exist,
    /// e.g. a question this copy asked in a commit that was not stored). A record that changed
    /// keeps the vote count and voters this copy had; [`SessionData::set_votes`] sets those
    /// where a command needs them.
    pub fn refresh(
        &mut self,
        session: Session,
        next_question: QuestionId,
        records: impl IntoIterator<Item = (QuestionId, Option<StoredQuestion>)>,
    ) {
        self.session = session;
        self.next_question = next_question;
        for (id, stored) in records {
            let Some(stored) = stored else {
                self.questions.remove(&id);
                if let Some(index) = &mut self.similar {
                    index.remove(id);
                }
                continue;
            };
            let (votes, voters) = self
                .questions
                .remove(&id)
                .map(|r| (r.question.votes, r.voters))
                .unwrap_or_default();
            let parts = QuestionParts {
                stored,
                votes,
                voters,
            };
            self.questions.insert(id, QuestionRecord::from_parts(parts));
            self.index_question(id);
        }
        self.dirty_votes.clear();
    }

    /// Sets question `id`'s vote count, and its voters when they are given (a command that
    /// moves voters needs them all).
    pub fn set_votes(&mut self, id: QuestionId, votes: u64, voters: Option<HashSet<UserId>>) {
        if let Some(record) = self.questions.get_mut(&id) {
            record.question.votes = votes;
            if let Some(voters) = voters {
                record.voters = voters;
            }
        }
    }

    /// How many questions the session has (of every status).
    pub fn question_count(&self) -> usize {
        self.questions.len()
    }

    /// The id the next question asked will get.
    pub fn next_question(&self) -> QuestionId {
        self.next_question
    }

    /// Question `id` in the form a store keeps it.
    pub fn stored_question(&self, id: QuestionId) -> Option<StoredQuestion> {
        self.questions.get(&id).map(QuestionRecord::stored)
    }

    pub fn apply(
        &mut self,
        actor: &Actor,
        command: Command,
        now: OffsetDateTime,
    ) -> Result<Applied, Refusal> {
        command.check_role(actor.role)?;
        // Checked here, under the store's write, so that no command of a replaced link lands
        // after the replacement, even from a socket that has not heard of it yet.
        if actor.role.holds_session_link() && actor.links_version != self.session.links_version {
            return Err(Refusal::Revoked);
        }
        // A link that leaks after the session still shows its pending and rejected questions,
        // so links can be replaced in every state.
        if command == Command::RotateStaffLinks {
            return Ok(self.rotate_staff_links());
        }
        if command == Command::Scrub {
            return self.scrub(now);
        }
        if self.session.state == SessionState::Ended {
            // The replay lives on: "watch after" videos can still be attached.
            if let Command::UpdateSession { changes } = command
                && changes.only_videos()
            {
                return self.update_session(*changes);
            }
            return Err(Refusal::SessionEnded);
        }
        match command {
            Command::Ask { text } => self.ask(actor, &text, now),
            Command::Vote { question } => self.vote(actor, question, true),
            Command::Unvote { question } => self.vote(actor, question, false),
            Command::Approve {
                question,
                text,
                original,
            } => self.approve(actor, question, text, original),
            Command::Reject {
                question,
                reason,
                code,
            } => self.reject(question, reason.as_deref(), code),
            Command::Edit { question, text } => self.edit(question, &text),
            Command::Merge { question, into } => self.merge(question, into),
            Command::Pin { question, pinned } => self.pin(question, pinned),
            Command::Answering { question } => self.answering(question, now),
            Command::Answered { question, answer } => self.answered(question, answer, now),
            Command::SetState { state } => self.set_state(state, now),
            Command::Triage { question, tag } => self.triage(question, tag),
            Command::Mute { author, muted } => Ok(self.mute(author, muted)),
            Command::SetBlockedWords { words } => self.set_blocked_words(words),
            Command::UpdateSession { changes } => self.update_session(*changes),
            Command::RotateStaffLinks => Ok(self.rotate_staff_links()),
            Command::Scrub => self.scrub(now),
        }
    }

    fn rotate_staff_links(&mut self) -> Applied {
        self.session.links_version = self.session.links_version.wrapping_add(1);
        self.session_changed()
    }

    /// Takes the vote counts changed since the last call, as one event, if any changed.
    pub fn take_vote_counts(&mut self) -> Option<(Audience, EventBody)> {
        let dirty = std::mem::take(&mut self.dirty_votes);
        let counts: Vec<_> = dirty
            .into_iter()
            .filter_map(|id| self.questions.get(&id))
            .filter(|r| r.is_public())
            .map(|r| (r.question.id, r.question.votes))
            .collect();
        (!counts.is_empty()).then_some((Audience::Public, EventBody::Votes(counts)))
    }

    /// Questions `viewer` may see, in queue order, and the ids it has voted for.
    pub fn visible_to(&self, role: Role, viewer: UserId) -> (Vec<Question>, Vec<QuestionId>) {
        let mut questions: Vec<Question> = self
            .questions
            .values()
            .filter(|r| role.is_staff() || r.question.author_id == Some(viewer) || r.is_public())
            .map(|r| r.question.view_for(role, viewer))
            .collect();
        questions.sort_by(crate::model::queue_order);
        let votes = self
            .questions
            .values()
            .filter(|r| r.voters.contains(&viewer))
            .map(|r| r.question.id)
            .collect();
        (questions, votes)
    }

    pub fn question(&self, id: QuestionId) -> Option<&Question> {
        self.questions.get(&id).map(|r| &r.question)
    }

    fn record(&mut self, id: QuestionId) -> Result<&mut QuestionRecord, Refusal> {
        self.questions.get_mut(&id).ok_or(Refusal::NotFound(id))
    }

    fn ask(&mut self, actor: &Actor, text: &str, now: OffsetDateTime) -> Result<Applied, Refusal> {
        let text =
            checked_multiline("text", text, 1, MAX_QUESTION_CHARS).map_err(Refusal::Invalid)?;
        if self.session.muted.contains(&actor.id) {
            return Err(Refusal::Muted);
        }
        if actor.consented_at.is_none() {
            return Err(Refusal::ConsentRequired);
        }
        self.check_room()?;
        let findings = self
            .rules
            .screen
            .findings(&text, &self.session.blocked_words);
        let public = screen::redact(&text, &findings);
        let shingles = Shingles::of(&public);
        let similar =
            self.similar_index()
                .query(&shingles, MAX_SIMILAR, similar::DEFAULT_THRESHOLD);
        let id = self.next_question;
        self.next_question += 1;
        // Anything the screen found waits for a moderator, whatever the session's mode.
        let status = match self.session.moderation {
            Moderation::Post if findings.is_empty() => QuestionStatus::Approved,
            Moderation::Pre | Moderation::Post => QuestionStatus::Pending,
        };
        let original = (public != text).then_some(text);
        let question = Question {
            id,
            text: public,
            status,
            votes: 0,
            pinned: false,
            edited: false,
            author: actor.name.clone(),
            asked_at: now,
            answer: None,
            answered_at: None,
            reason: None,
            merged_into: None,
            author_id: Some(actor.id),
            reason_code: None,
            original,
            findings,
            original_shown: false,
            similar,
            triage: None,
            answering_at: None,
        };
        self.questions
            .insert(id, QuestionRecord::new(question, false, HashSet::new()));
        self.similar_index().insert(id, shingles);
        Ok(self.changed(id, Reply::Question))
    }

    /// Refuses a new question when the session holds as many as it may. Ids are given from 1
    /// without gaps, so the count needs no scan; the pending ones do, which costs microseconds at
    /// the largest sessions and only on an ask.
    fn check_room(&self) -> Result<(), Refusal> {
        let QuestionCaps {
            max_questions,
            max_pending,
        } = self.rules.caps;
        let asked = self.next_question.saturating_sub(1);
        if asked >= max_questions as u64 {
            return Err(Refusal::Conflict(format!(
                "this session has reached its limit of {max_questions} questions; no more can be asked"
            )));
        }
        if self.session.moderation == Moderation::Pre {
            let pending = self
                .questions
                .values()
                .filter(|r| r.question.status == QuestionStatus::Pending)
                .count();
            if pending >= max_pending {
                return Err(Refusal::Conflict(format!(
                    "{max_pending} questions are waiting for the moderators; ask again once they have caught up"
                )));
            }
        }
        Ok(())
    }

    fn vote(&mut self, actor: &Actor, id: QuestionId, up: bool) -> Result<Applied, Refusal> {
        let record = self.record(id)?;
        // Taking back a vote is always harmless; only new votes need a public question.
        let taking_back = !up && record.voters.contains(&actor.id);
        if !record.question.status.takes_votes() && !taking_back {
            // A question outside the public queue (pending, rejected, merged before it was
            // shown) is not there for voters: `conflict` would tell a patient that it exists.
            // Its author gets the same answer: a store's vote path (Redis' vote.lua) knows
            // whether a question is public, not who wrote it.
            if !record.is_public() {
                return Err(Refusal::NotFound(id));
            }
            return Err(Refusal::Conflict(format!(
                "question {id} is not open for votes"
            )));
        }
        let changed = if up {
            record.voters.insert(actor.id)
        } else {
            record.voters.remove(&actor.id)
        };
        if changed {
            record.question.votes = record.voters.len() as u64;
            self.dirty_votes.insert(id);
        }
        Ok(Applied {
            events: Vec::new(),
            reply: Reply::Voted(up),
            touched: Touched::default(),
        })
    }

    fn approve(
        &mut self,
        actor: &Actor,
        id: QuestionId,
        text: Option<String>,
        original: bool,
    ) -> Result<Applied, Refusal> {
        if original && text.is_some() {
            return Err(Refusal::Invalid(
                "give either a new text or original: true, not both".into(),
            ));
        }
        let text = text
            .map(|t| checked_multiline("text", &t, 1, MAX_QUESTION_CHARS).map_err(Refusal::Invalid))
            .transpose()?;
        let screened = text.map(|t| self.screened(&t));
        let q = &mut self.record(id)?.question;
        if q.status != QuestionStatus::Pending {
            return Err(conflict(q, "approve"));
        }
        if original {
            if let Some(original) = q.original.take() {
                tracing::info!(
                    question = id,
                    moderator = %actor.id,
                    findings = q.findings.len(),
                    "a moderator published a question's original text"
                );
                q.edited |= q.text != original && q.findings.is_empty();
                q.text = original;
                q.original_shown = true;
            }
        } else if let Some(text) = screened {
            set_text(q, text);
        }
        q.status = QuestionStatus::Approved;
        Ok(self.changed(id, Reply::Question))
    }

    /// A moderator's text with the personal details it holds hidden: an edit is public text too.
    fn screened(&self, text: &str) -> String {
        let findings = self.rules.screen.findings(text, &[]);
        screen::redact(text, &findings)
    }

    fn reject(
        &mut self,
        id: QuestionId,
        reason: Option<&str>,
        code: Option<ReasonCode>,
    ) -> Result<Applied, Refusal> {
        let reason = reason
            .map(|r| checked_text("reason", r, 0, MAX_REASON_CHARS).map_err(Refusal::Invalid))
            .transpose()?
            .filter(|r| !r.is_empty());
        if reason.is_none() && code.is_none() {
            return Err(Refusal::Invalid(
                "give a reason: a code, a text, or both".into(),
            ));
        }
        let q = &mut self.record(id)?.question;
        if !matches!(q.status, QuestionStatus::Pending | QuestionStatus::Approved) {
            return Err(conflict(q, "reject"));
        }
        q.status = QuestionStatus::Rejected;
        q.reason = reason;
        q.reason_code = code;
        q.pinned = false;
        Ok(self.changed(id, Reply::Question))
    }

    fn edit(&mut self, id: QuestionId, text: &str) -> Result<Applied, Refusal> {
        let text =
            checked_multiline("text", text, 1, MAX_QUESTION_CHARS).map_err(Refusal::Invalid)?;
        let text = self.screened(&text);
        let q = &mut self.record(id)?.question;
        if !matches!(q.status, QuestionStatus::Pending | QuestionStatus::Approved) {
            return Err(conflict(q, "edit"));
        }
        set_text(q, text);
        Ok(self.changed(id, Reply::Question))
    }

    fn merge(&mut self, id: QuestionId, into: QuestionId) -> Result<Applied, Refusal> {
        if id == into {
            return Err(Refusal::Invalid(
                "a question cannot be merged into itself".into(),
            ));
        }
        let target = self.record(into)?;
        if !target.question.status.takes_votes() {
            return Err(conflict(&target.question, "merge into"));
        }
        let source = self.record(id)?;
        if !matches!(
            source.question.status,
            QuestionStatus::Pending | QuestionStatus::Approved
        ) {
            return Err(conflict(&source.question, "merge"));
        }
        let voters = std::mem::take(&mut source.voters);
        source.question.status = QuestionStatus::Merged;
        source.question.merged_into = Some(into);
        source.question.votes = 0;
        source.question.pinned = false;
        let target = self.record(into)?;
        target.voters.extend(voters);
        target.question.votes = target.voters.len() as u64;
        let mut applied = self.changed(id, Reply::Question);
        applied.absorb(self.changed(into, Reply::Question));
        Ok(applied)
    }

    fn pin(&mut self, id: QuestionId, pinned: bool) -> Result<Applied, Refusal> {
        let q = &mut self.record(id)?.question;
        if !q.status.takes_votes() {
            return Err(conflict(q, "pin"));
        }
        q.pinned = pinned;
        Ok(self.changed(id, Reply::Question))
    }

    fn answering(&mut self, id: QuestionId, now: OffsetDateTime) -> Result<Applied, Refusal> {
        let q = &self.record(id)?.question;
        if q.status != QuestionStatus::Approved {
            return Err(conflict(q, "start answering"));
        }
        let previous: Vec<QuestionId> = self
            .questions
            .values()
            .filter(|r| r.question.status == QuestionStatus::Answering)
            .map(|r| r.question.id)
            .collect();
        // The previous question's events come first, the reply is about `id`.
        let mut events = Vec::new();
        let mut touched = Touched::default();
        for prev in previous {
            self.record(prev)?.question.status = QuestionStatus::Approved;
            let applied = self.changed(prev, Reply::Question);
            events.extend(applied.events);
            touched.extend(applied.touched);
        }
        let q = &mut self.record(id)?.question;
        q.status = QuestionStatus::Answering;
        q.answering_at = Some(now);
        let mut applied = self.changed(id, Reply::Question);
        events.append(&mut applied.events);
        applied.events = events;
        applied.touched.extend(touched);
        Ok(applied)
    }

    fn answered(
        &mut self,
        id: QuestionId,
        answer: Option<String>,
        now: OffsetDateTime,
    ) -> Result<Applied, Refusal> {
        let answer = answer
            .map(|a| checked_multiline("answer", &a, 0, MAX_ANSWER_CHARS).map_err(Refusal::Invalid))
            .transpose()?
            .filter(|a| !a.is_empty());
        let q = &mut self.record(id)?.question;
        if !matches!(
            q.status,
            QuestionStatus::Approved | QuestionStatus::Answering
        ) {
            return Err(conflict(q, "mark answered"));
        }
        q.status = QuestionStatus::Answered;
        q.answer = answer;
        q.answered_at = Some(now);
        q.pinned = false;
        Ok(self.changed(id, Reply::Question))
    }

    fn triage(&mut self, id: QuestionId, tag: Option<Triage>) -> Result<Applied, Refusal> {
        let q = &mut self.record(id)?.question;
        if matches!(q.status, QuestionStatus::Rejected | QuestionStatus::Merged) {
            return Err(conflict(q, "triage"));
        }
        q.triage = tag;
        Ok(self.changed(id, Reply::Question))
    }

    fn mute(&mut self, author: UserId, muted: bool) -> Applied {
        let changed = if muted {
            self.session.muted.insert(author)
        } else {
            self.session.muted.remove(&author)
        };
        let mut applied = self.session_changed();
        if !changed || !muted {
            return applied;
        }
        // Their waiting questions leave the queue: a moderator muting a flood should not then
        // have to reject it one by one.
        let pending: Vec<QuestionId> = self
            .questions
            .values()
            .filter(|r| {
                r.question.author_id == Some(author) && r.question.status == QuestionStatus::Pending
            })
            .map(|r| r.question.id)
            .collect();
        for id in pending {
            if let Some(record) = self.questions.get_mut(&id) {
                record.question.status = QuestionStatus::Rejected;
                record.question.reason_code = Some(ReasonCode::Muted);
                record.question.pinned = false;
            }
            let changed = self.changed(id, Reply::Question);
            applied.events.extend(changed.events);
            applied.touched.extend(changed.touched);
        }
        applied
    }

    fn set_blocked_words(&mut self, words: Vec<String>) -> Result<Applied, Refusal> {
        if words.len() > MAX_BLOCKED_WORDS {
            return Err(Refusal::Invalid(format!(
                "at most {MAX_BLOCKED_WORDS} blocked words per session"
            )));
        }
        let mut checked: Vec<String> = Vec::with_capacity(words.len());
        for word in words {
            let word = checked_text("words", &word, 1, MAX_BLOCKED_WORD_CHARS)
                .map_err(Refusal::Invalid)?;
            if !checked.contains(&word) {
                checked.push(word);
            }
        }
        self.session.blocked_words = checked;
        Ok(self.session_changed())
    }

    /// Keeps an ended session's public questions and answers, as the hospital's content, and
    /// removes the rest: questions never made public, what the screen found, the authors.
    fn scrub(&mut self, now: OffsetDateTime) -> Result<Applied, Refusal> {
        if self.session.state != SessionState::Ended {
            return Err(Refusal::Conflict(
                "only an ended session's private data is removed".into(),
            ));
        }
        let mut touched = Touched::session();
        self.questions.retain(|id, record| {
            touched.questions.insert(*id);
            record.is_public()
        });
        for record in self.questions.values_mut() {
            let q = &mut record.question;
            q.author_id = None;
            q.author = None;
            q.original = None;
            q.findings.clear();
            q.original_shown = false;
            q.similar.clear();
            q.triage = None;
            q.reason = None;
            q.reason_code = None;
        }
        self.session.muted.clear();
        self.session.scrubbed_at = Some(now);
        self.similar = None;
        let mut applied = self.session_changed();
        applied.touched = touched;
        Ok(applied)
    }

    fn set_state(&mut self, state: SessionState, now: OffsetDateTime) -> Result<Applied, Refusal> {
        let current = self.session.state;
        if !current.can_become(state) {
            return Err(Refusal::Conflict(
                format!("a session cannot go from {current:?} to {state:?}").to_lowercase(),
            ));
        }
        self.session.state = state;
        match state {
            SessionState::Live => self.session.started_at = Some(now),
            SessionState::Ended => self.session.ended_at = Some(now),
            SessionState::Scheduled => {}
        }
        Ok(self.session_changed())
    }

    fn update_session(&mut self, changes: SessionChanges) -> Result<Applied, Refusal> {
        use crate::model::{MAX_EXPERT_CHARS, MAX_TITLE_CHARS, MAX_TOPIC_CHARS};
        let scheduled = self.session.state == SessionState::Scheduled;
        if !scheduled && (changes.scheduled_start.is_some() || changes.moderation.is_some()) {
            return Err(Refusal::Conflict(
                "the start time and the moderation mode can change only before the session goes live"
                    .into(),
            ));
        }
        let text = |field, value: Option<String>, min, max| {
            value
                .map(|v| checked_text(field, &v, min, max).map_err(Refusal::Invalid))
                .transpose()
        };
        let title = text("title", changes.title, 1, MAX_TITLE_CHARS)?;
        let topic = changes
            .topic
            .map(|v| checked_multiline("topic", &v, 0, MAX_TOPIC_CHARS).map_err(Refusal::Invalid))
            .transpose()?;
        let expert_name = text("expert_name", changes.expert_name, 1, MAX_EXPERT_CHARS)?;
        let profile = changes
            .expert_profile
            .map(ExpertProfile::validate)
            .transpose()
            .map_err(Refusal::Invalid)?;
        let videos = changes
            .videos
            .map(crate::model::checked_videos)
            .transpose()
            .map_err(Refusal::Invalid)?;
        let s = &mut self.session;
        s.title = title.unwrap_or(std::mem::take(&mut s.title));
        s.topic = topic.unwrap_or(std::mem::take(&mut s.topic));
        s.expert_name = expert_name.unwrap_or(std::mem::take(&mut s.expert_name));
        s.scheduled_start = changes.scheduled_start.unwrap_or(s.scheduled_start);
        s.moderation = changes.moderation.unwrap_or(s.moderation);
        if let Some(profile) = profile {
            s.expert_profile = Some(profile);
        }
        s.record = changes.record.unwrap_or(s.record);
        if let Some(videos) = videos {
            s.videos = videos;
        }
        Ok(self.session_changed())
    }

    /// The events that tell everyone about the session's current state: staff see their lists
    /// (muted patients, blocked words), others the public view (see [`Event::encode`]).
    ///
    /// [`Event::encode`]: crate::protocol::Event::encode
    fn session_changed(&self) -> Applied {
        let session = EventBody::Session(self.session.clone());
        // One event for everyone unless staff see more than the public (their lists).
        let events = if self.session.blocked_words.is_empty() && self.session.muted.is_empty() {
            vec![(Audience::Public, session)]
        } else {
            vec![
                (Audience::Others { author: None }, session.clone()),
                (Audience::Staff { author: None }, session),
            ]
        };
        Applied {
            events,
            reply: Reply::Session(self.session.clone()),
            touched: Touched::session(),
        }
    }

    /// The duplicate finder's index of the open questions, built when first needed.
    fn similar_index(&mut self) -> &mut SimilarIndex {
        let questions = &self.questions;
        self.similar.get_or_insert_with(|| {
            let mut index = SimilarIndex::new();
            for r in questions.values().filter(|r| r.is_open()) {
                index.insert(r.question.id, Shingles::of(&r.question.text));
            }
            index
        })
    }

    /// Keeps the index (if built) in step with question `id`: in it while open, with its
    /// current text; out of it otherwise.
    fn index_question(&mut self, id: QuestionId) {
        let (Some(index), Some(record)) = (&mut self.similar, self.questions.get(&id)) else {
            return;
        };
        if record.is_open() {
            index.insert(id, Shingles::of(&record.question.text));
        } else {
            index.remove(id);
        }
    }

    /// The events that tell everyone concerned about the current state of question `id`.
    fn changed(&mut self, id: QuestionId, reply: fn(Question) -> Reply) -> Applied {
        self.index_question(id);
        let Some(record) = self.questions.get_mut(&id) else {
            unreachable!("changed() is called only for questions that exist")
        };
        let was_public = record.was_public;
        let public = record.is_public();
        record.was_public |= public;
        let q = record.question.clone();
        let author = q.author_id;
        let staff = Audience::Staff { author };
        // Staff and the author get the whole question (`Event::encode` makes each view), the
        // others the public view: one event each, so nobody reads a change twice.
        let events = if public {
            vec![
                (Audience::Others { author }, EventBody::Question(q.clone())),
                (staff, EventBody::Question(q.clone())),
            ]
        } else if was_public {
            // Public until now: everyone else drops it; staff and the author learn why.
            vec![
                (Audience::Others { author }, EventBody::QuestionRemoved(id)),
                (staff, EventBody::Question(q.clone())),
            ]
        } else {
            vec![(staff, EventBody::Question(q.clone()))]
        };
        Applied {
            events,
            reply: reply(q),
            touched: Touched::question(id),
        }
    }
}

/// Sets a question's public text to a moderator's (already screened) one, keeping the author's
/// own text as `original` for staff and the author.
fn set_text(q: &mut Question, text: String) {
    let original = q.original.take().unwrap_or_else(|| q.text.clone());
    q.edited |= text != q.text;
    q.text = text;
    q.original_shown = false;
    q.original = (q.text != original).then_some(original);
}

fn conflict(q: &Question, action: &str) -> Refusal {
    Refusal::Conflict(format!(
        "cannot {action} question {} while it is {}",
        q.id,
        q.status.name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewSession;
    use uuid::Uuid;

    fn data(moderation: Moderation) -> SessionData {
        let now = OffsetDateTime::now_utc();
        let new = NewSession {
            title: "t".into(),
            topic: String::new(),
            expert_name: "e".into(),
            scheduled_start: now,
            moderation,
            expert_profile: None,
            record: None,
            videos: Vec::new(),
        };
        SessionData::new(new.into_session(Uuid::now_v7(), now))
    }

    fn actor(role: Role) -> Actor {
        Actor {
            id: Uuid::now_v7(),
            role,
            name: None,
            links_version: 0,
            consented_at: Some(OffsetDateTime::now_utc()),
        }
    }

    fn ask(d: &mut SessionData, p: &Actor, text: &str) -> QuestionId {
        let now = OffsetDateTime::now_utc();
        match d.apply(p, Command::Ask { text: text.into() }, now) {
            Ok(Applied {
                reply: Reply::Question(q),
                ..
            }) => q.id,
            other => panic!("ask failed: {other:?}"),
        }
    }

    /// Two patients and a moderator; `a` has both patients' votes, `b` the first patient's.
    struct Voted {
        d: SessionData,
        p1: Actor,
        p2: Actor,
        m: Actor,
        a: QuestionId,
        b: QuestionId,
    }

    fn voted(now: OffsetDateTime) -> Voted {
        let mut d = data(Moderation::Post);
        let (p1, p2) = (actor(Role::Patient), actor(Role::Patient));
        let a = ask(&mut d, &p1, "a");
        let b = ask(&mut d, &p2, "b");
        for p in [&p1, &p2] {
            d.apply(p, Command::Vote { question: a }, now).unwrap();
        }
        d.apply(&p1, Command::Vote { question: b }, now).unwrap();
        Voted {
            d,
            p1,
            p2,
            m: actor(Role::Moderator),
            a,
            b,
        }
    }

    /// What a store that keeps everything would hand back: every question with all its voters.
    fn stored_parts(d: &SessionData) -> Vec<QuestionParts> {
        d.questions
            .values()
            .map(|r| QuestionParts {
                stored: d.stored_question(r.question.id).unwrap(),
                votes: r.question.votes,
                voters: r.voters.clone(),
            })
            .collect()
    }

    #[test]
    fn a_session_rebuilt_from_its_stored_parts_behaves_the_same() {
        let now = OffsetDateTime::now_utc();
        let Voted {
            mut d,
            p1,
            p2,
            m,
            a,
            b,
        } = voted(now);
        let c = ask(&mut d, &p2, "c");
        let reject = Command::Reject {
            question: c,
            reason: Some("r".into()),
            code: None,
        };
        d.apply(&m, reject, now).unwrap();
        d.take_vote_counts();

        let mut rebuilt =
            SessionData::from_stored(d.session.clone(), d.next_question(), stored_parts(&d));
        for role in [Role::Patient, Role::Moderator] {
            assert_eq!(rebuilt.visible_to(role, p1.id), d.visible_to(role, p1.id));
        }
        let merge = Command::Merge {
            question: b,
            into: a,
        };
        assert_eq!(
            rebuilt.apply(&m, merge.clone(), now),
            d.apply(&m, merge, now)
        );
        assert_eq!(rebuilt.question(a).unwrap().votes, 2);
        assert_eq!(ask(&mut rebuilt, &p1, "d"), ask(&mut d, &p1, "d"));
        // `c` was public before its rejection; the rebuilt session still knows it.
        assert_eq!(rebuilt.stored_question(c), d.stored_question(c));
        assert!(rebuilt.stored_question(c).is_some_and(|s| s.was_public));
    }

    #[test]
    fn the_stored_form_leaves_the_vote_count_to_the_voters() {
        let now = OffsetDateTime::now_utc();
        let mut d = data(Moderation::Post);
        let p = actor(Role::Patient);
        let id = ask(&mut d, &p, "a");
        d.apply(&p, Command::Vote { question: id }, now).unwrap();
        assert_eq!(d.question(id).unwrap().votes, 1);
        assert_eq!(d.stored_question(id).unwrap().question.votes, 0);
        let parts = QuestionParts {
            stored: d.stored_question(id).unwrap(),
            votes: 7,
            voters: HashSet::new(),
        };
        let rebuilt = SessionData::from_stored(d.session.clone(), d.next_question(), [parts]);
        assert_eq!(rebuilt.question(id).unwrap().votes, 7);
        // A rebuilt session has no vote counts pending: the store keeps its own.
        assert_eq!(rebuilt.clone().take_vote_counts(), None);
    }

    #[test]
    fn applied_names_what_the_command_touched() {
        let now = OffsetDateTime::now_utc();
        let mut d = data(Moderation::Post);
        let p = actor(Role::Patient);
        let (e, m, admin) = (
            actor(Role::Expert),
            actor(Role::Moderator),
            actor(Role::Admin),
        );
        let a = ask(&mut d, &p, "a");
        let b = ask(&mut d, &p, "b");
        let c = ask(&mut d, &p, "c");
        let mut touched = |actor: &Actor, command| d.apply(actor, command, now).unwrap().touched;
        let questions = |ids: &[QuestionId]| Touched {
            session: false,
            questions: ids.iter().copied().collect(),
        };
        assert_eq!(
            touched(&p, Command::Ask { text: "d".into() }),
            questions(&[4])
        );
        assert_eq!(
            touched(&p, Command::Vote { question: a }),
            Touched::default()
        );
        assert_eq!(
            touched(&e, Command::Answering { question: a }),
            questions(&[a])
        );
        assert_eq!(
            touched(&e, Command::Answering { question: b }),
            questions(&[a, b])
        );
        assert_eq!(
            touched(
                &m,
                Command::Merge {
                    question: c,
                    into: b
                }
            ),
            questions(&[b, c])
        );
        let live = Command::SetState {
            state: SessionState::Live,
        };
        assert_eq!(
            touched(&admin, live),
            Touched {
                session: true,
                questions: BTreeSet::new()
            }
        );
    }

    #[test]
    fn merge_moves_votes_and_counts_a_double_voter_once() {
        let now = OffsetDateTime::now_utc();
        let Voted { mut d, m, a, b, .. } = voted(now);
        d.apply(
            &m,
            Command::Merge {
                question: b,
                into: a,
            },
            now,
        )
        .unwrap();
        assert_eq!(d.question(a).unwrap().votes, 2);
        assert_eq!(d.question(b).unwrap().status, QuestionStatus::Merged);
    }

    #[test]
    fn rejecting_a_public_question_removes_it_publicly_and_tells_staff_why() {
        let now = OffsetDateTime::now_utc();
        let mut d = data(Moderation::Post);
        let p = actor(Role::Patient);
        let id = ask(&mut d, &p, "call me at 555");
        let applied = d
            .apply(
                &actor(Role::Moderator),
                Command::Reject {
                    question: id,
                    reason: Some("phone number".into()),
                    code: None,
                },
                now,
            )
            .unwrap();
        // Everyone else drops it; staff and the author learn why.
        assert_eq!(applied.events.len(), 2);
        assert_eq!(
            applied.events[0],
            (
                Audience::Others { author: Some(p.id) },
                EventBody::QuestionRemoved(id)
            )
        );
        assert_eq!(applied.events[1].0, Audience::Staff { author: Some(p.id) });
    }

    #[test]
    fn roles_are_enforced() {
        let now = OffsetDateTime::now_utc();
        let mut d = data(Moderation::Pre);
        let p = actor(Role::Patient);
        let id = ask(&mut d, &p, "q");
        let refused = d.apply(
            &p,
            Command::Approve {
                question: id,
                text: None,
                original: false,
            },
            now,
        );
        assert!(matches!(refused, Err(Refusal::Forbidden(_))));
        let refused = d.apply(&actor(Role::Expert), Command::Ask { text: "x".into() }, now);
        assert!(matches!(refused, Err(Refusal::Forbidden(_))));
    }

    #[test]
    fn only_one_question_is_answering() {
        let now = OffsetDateTime::now_utc();
        let mut d = data(Moderation::Post);
        let p = actor(Role::Patient);
        let e = actor(Role::Expert);
        let a = ask(&mut d, &p, "a");
        let b = ask(&mut d, &p, "b");
        d.apply(&e, Command::Answering { question: a }, now)
            .unwrap();
        d.apply(&e, Command::Answering { question: b }, now)
            .unwrap();
        assert_eq!(d.question(a).unwrap().status, QuestionStatus::Approved);
        assert_eq!(d.question(b).unwrap().status, QuestionStatus::Answering);
    }

    #[test]
    fn a_session_takes_no_more_questions_than_its_caps() {
        let now = OffsetDateTime::now_utc();
        let caps = QuestionCaps {
            max_questions: 4,
            max_pending: 2,
        };
        let mut d = data(Moderation::Pre).with_caps(caps);
        let (p, m) = (actor(Role::Patient), actor(Role::Moderator));
        let a = ask(&mut d, &p, "a");
        ask(&mut d, &p, "b");
        let full = d.apply(&p, Command::Ask { text: "c".into() }, now);
        assert!(
            matches!(&full, Err(Refusal::Conflict(m)) if m.contains("waiting for the moderators")),
            "{full:?}"
        );
        // A refused ask takes no id: the next accepted one gets 3.
        d.apply(
            &m,
            Command::Approve {
                question: a,
                text: None,
                original: false,
            },
            now,
        )
        .unwrap();
        assert_eq!(ask(&mut d, &p, "c"), 3);
        d.apply(
            &m,
            Command::Reject {
                question: 3,
                reason: Some("r".into()),
                code: None,
            },
            now,
        )
        .unwrap();
        assert_eq!(ask(&mut d, &p, "d"), 4);
        let full = d.apply(&p, Command::Ask { text: "e".into() }, now);
        assert!(
            matches!(&full, Err(Refusal::Conflict(m)) if m.contains("limit of 4 questions")),
            "{full:?}"
        );
        // The caps are not stored: a rebuilt session takes the store's.
        let rebuilt =
            SessionData::from_stored(d.session.clone(), d.next_question(), stored_parts(&d));
        let mut rebuilt = rebuilt.with_caps(QuestionCaps {
            max_questions: 5,
            max_pending: 5,
        });
        assert_eq!(ask(&mut rebuilt, &p, "e"), 5);
    }

    #[test]
    fn post_moderated_sessions_have_no_pending_cap() {
        let mut d = data(Moderation::Post).with_caps(QuestionCaps {
            max_questions: 10,
            max_pending: 1,
        });
        let p = actor(Role::Patient);
        for n in 1..=3 {
            assert_eq!(ask(&mut d, &p, "q"), n);
        }
    }

    #[test]
    fn a_question_the_voter_cannot_see_is_not_found() {
        let now = OffsetDateTime::now_utc();
        let mut d = data(Moderation::Pre);
        let (author, other) = (actor(Role::Patient), actor(Role::Patient));
        let pending = ask(&mut d, &author, "pending");
        let rejected = ask(&mut d, &author, "rejected");
        let reject = Command::Reject {
            question: rejected,
            reason: Some("r".into()),
            code: None,
        };
        d.apply(&actor(Role::Moderator), reject, now).unwrap();
        for id in [pending, rejected] {
            for command in [
                Command::Vote { question: id },
                Command::Unvote { question: id },
            ] {
                assert_eq!(
                    d.apply(&other, command, now).unwrap_err(),
                    Refusal::NotFound(id)
                );
            }
            // Its author too: votes are about the public queue.
            let own = d.apply(&author, Command::Vote { question: id }, now);
            assert_eq!(own.unwrap_err(), Refusal::NotFound(id));
        }
        // A public question that takes no votes (answered) is a conflict for everyone.
        let answered = ask(&mut d, &author, "answered");
        let m = actor(Role::Moderator);
        let approve = Command::Approve {
            question: answered,
            text: None,
            original: false,
        };
        d.apply(&m, approve, now).unwrap();
        let done = Command::Answered {
            question: answered,
            answer: None,
        };
        d.apply(&actor(Role::Expert), done, now).unwrap();
        let refused = d.apply(&other, Command::Vote { question: answered }, now);
        assert!(matches!(refused, Err(Refusal::Conflict(_))), "{refused:?}");
    }

    #[test]
    fn every_text_field_refuses_invisible_characters() {
        let now = OffsetDateTime::now_utc();
        let mut d = data(Moderation::Pre);
        let p = actor(Role::Patient);
        let (m, e) = (actor(Role::Moderator), actor(Role::Expert));
        let id = ask(&mut d, &p, "line one\r\nline two");
        assert_eq!(d.question(id).unwrap().text, "line one\nline two");
        let bidi = "ok \u{202E}gnp.exe";
        let commands = [
            (&p, Command::Ask { text: bidi.into() }),
            (
                &m,
                Command::Approve {
                    question: id,
                    text: Some(bidi.into()),
                    original: false,
                },
            ),
            (
                &m,
                Command::Edit {
                    question: id,
                    text: bidi.into(),
                },
            ),
            (
                &m,
                Command::Reject {
                    question: id,
                    reason: Some("two\nlines".into()),
                    code: None,
                },
            ),
            (
                &e,
                Command::Answered {
                    question: id,
                    answer: Some("zero\u{200B}width".into()),
                },
            ),
            (
                &actor(Role::Admin),
                Command::UpdateSession {
                    changes: Box::new(SessionChanges {
                        title: Some("Dr.\u{2066}Wang".into()),
                        ..SessionChanges::default()
                    }),
                },
            ),
        ];
        for (who, command) in commands {
            let refused = d.apply(who, command.clone(), now);
            assert!(
                matches!(&refused, Err(Refusal::Invalid(m)) if m.contains("U+")),
                "{command:?}: {refused:?}"
            );
        }
        assert_eq!(d.question(id).unwrap().status, QuestionStatus::Pending);
        assert_eq!(d.question(id).unwrap().text, "line one\nline two");
    }

    #[test]
    fn votes_are_idempotent_and_coalesced() {
        let now = OffsetDateTime::now_utc();
        let mut d = data(Moderation::Post);
        let p = actor(Role::Patient);
        let id = ask(&mut d, &p, "a");
        for _ in 0..3 {
            d.apply(&p, Command::Vote { question: id }, now).unwrap();
        }
        assert_eq!(d.question(id).unwrap().votes, 1);
        assert_eq!(
            d.take_vote_counts(),
            Some((Audience::Public, EventBody::Votes(vec![(id, 1)])))
        );
        assert_eq!(d.take_vote_counts(), None);
    }

    #[test]
    fn replacing_the_links_refuses_old_staff_tokens_at_once_but_not_patients() {
        let now = OffsetDateTime::now_utc();
        let mut d = data(Moderation::Pre);
        let (p, m, admin) = (
            actor(Role::Patient),
            actor(Role::Moderator),
            actor(Role::Admin),
        );
        let id = ask(&mut d, &p, "q");
        let applied = d.apply(&admin, Command::RotateStaffLinks, now).unwrap();
        assert_eq!(d.session.links_version, 1);
        assert!(applied.touched.session, "the new version is stored");
        assert!(matches!(
            applied.events[..],
            [(Audience::Public, EventBody::Session(ref s))] if s.links_version == 1
        ));
        let approve = Command::Approve {
            question: id,
            text: None,
            original: false,
        };
        assert_eq!(
            d.apply(&m, approve.clone(), now).unwrap_err(),
            Refusal::Revoked
        );
        let current = Actor {
            links_version: 1,
            ..m.clone()
        };
        d.apply(&current, approve, now).unwrap();
        // Patients and admins hold no link of the session.
        ask(&mut d, &p, "still here");
        let end = Command::SetState {
            state: SessionState::Ended,
        };
        d.apply(&admin, end, now).unwrap();
        // Even an ended session's links can be replaced (they still show private questions).
        d.apply(&admin, Command::RotateStaffLinks, now).unwrap();
        assert_eq!(d.session.links_version, 2);
        assert_eq!(
            d.apply(&current, Command::RotateStaffLinks, now)
                .unwrap_err(),
            Refusal::Forbidden("a moderator may not do this".into())
        );
    }
}
