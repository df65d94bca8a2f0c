//! What a session looks like in Redis, to and from the domain's types. Every stored value is a
//! domain type's own serde form ([`Session`], [`StoredQuestion`], [`Audience`]) or a code named
//! here; nothing is edited by JSON path, so a renamed field fails to compile, not to load.

use std::collections::{HashMap, HashSet};

use redis::streams::StreamId;

use super::corrupt;
use crate::broker::BrokerError;
use crate::domain::{Audience, EventBody, QuestionParts, SessionData, StoredQuestion, Touched};
use crate::model::{QuestionId, Session, SessionState, UserId};
use crate::protocol::Event;

/// The seq written into frames before the commit script puts the real one in its place.
const SEQ_PLACEHOLDER: u64 = u64::MAX;

pub fn session_json(session: &Session) -> Result<String, BrokerError> {
    serde_json::to_string(session).map_err(BrokerError::internal)
}

pub fn session_from_json(json: &str) -> Result<Session, BrokerError> {
    serde_json::from_str(json).map_err(corrupt)
}

/// `meta.state`, which the vote script reads.
pub fn state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Scheduled => "scheduled",
        SessionState::Live => "live",
        SessionState::Ended => "ended",
    }
}

/// An event's audience as the `a` field of its stream entry.
pub fn audience_json(audience: &Audience) -> Result<String, BrokerError> {
    serde_json::to_string(audience).map_err(BrokerError::internal)
}

fn record_json(stored: &StoredQuestion) -> Result<String, BrokerError> {
    serde_json::to_string(stored).map_err(BrokerError::internal)
}

/// Records written before the stored form had a name also held `"voters": []`; it is ignored.
fn record_from_json(json: &str) -> Result<StoredQuestion, BrokerError> {
    serde_json::from_str(json).map_err(corrupt)
}

/// A question's `qstate` code, which the vote and flush scripts read instead of its record:
/// `o` open for votes (and public), `p` public but closed, `h` hidden.
fn qstate(stored: &StoredQuestion) -> &'static str {
    if stored.question.status.takes_votes() {
        "o"
    } else if stored.is_public() {
        "p"
    } else {
        "h"
    }
}

/// What `load.lua` returns: seq, version, next question, session JSON, per question (id,
/// record, votes, whether the viewer voted), per requested question (id, voters).
pub type LoadedRaw = (
    u64,
    u64,
    u64,
    Option<String>,
    Vec<(QuestionId, String, u64, u8)>,
    Vec<(QuestionId, Vec<String>)>,
);

/// One consistent read of a session.
pub struct Loaded {
    /// The head of the log.
    pub seq: u64,
    /// For the commit's compare-and-set.
    pub version: u64,
    /// The state as the rules know it: records with their live vote counts, and the voters that
    /// were asked for (or just the viewer, where the viewer voted).
    pub data: SessionData,
}

impl Loaded {
    pub fn decode(raw: LoadedRaw, viewer: Option<UserId>) -> Result<Loaded, BrokerError> {
        let (seq, version, next_question, session, questions, voters) = raw;
        let session = session_from_json(&session.ok_or(BrokerError::NoSession)?)?;
        let mut voters: HashMap<QuestionId, Vec<String>> = voters.into_iter().collect();
        let questions = questions
            .into_iter()
            .map(|(id, record, votes, voted)| {
                let voters = match (voters.remove(&id), viewer) {
                    (Some(voters), _) => voters
                        .iter()
                        .map(|v| v.parse::<UserId>().map_err(corrupt))
                        .collect::<Result<_, _>>()?,
                    (None, Some(viewer)) if voted == 1 => [viewer].into(),
                    (None, _) => Default::default(),
                };
                Ok(QuestionParts {
                    stored: record_from_json(&record)?,
                    votes,
                    voters,
                })
            })
            .collect::<Result<Vec<_>, BrokerError>>()?;
        Ok(Loaded {
            seq,
            version,
            data: SessionData::from_stored(session, next_question, questions),
        })
    }
}

/// What `refresh.lua` returns: ok, seq, version, next question, session JSON, per record read
/// (id, record or nil), per count asked for (id, votes), per voters asked for (id, voters).
pub type RefreshedRaw = (
    u8,
    u64,
    u64,
    u64,
    Option<String>,
    Vec<(QuestionId, Option<String>)>,
    Vec<(QuestionId, u64)>,
    Vec<(QuestionId, Vec<String>)>,
);

/// What changed of a session since the version a cached copy holds.
// One per batch, moved once: boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Refreshed {
    /// The stored version is behind the one held: the data was replaced; read it all again.
    Replaced,
    Changed {
        version: u64,
        next_question: QuestionId,
        session: Session,
        /// The records written since (`None`: no such question).
        records: Vec<(QuestionId, Option<StoredQuestion>)>,
        counts: Vec<(QuestionId, u64)>,
        voters: Vec<(QuestionId, HashSet<UserId>)>,
    },
}

impl Refreshed {
    pub fn decode(raw: RefreshedRaw) -> Result<Refreshed, BrokerError> {
        let (ok, _seq, version, next_question, session, records, counts, voters) = raw;
        if ok == 0 {
            return Ok(Refreshed::Replaced);
        }
        let session = session_from_json(&session.ok_or(BrokerError::NoSession)?)?;
        let records = records
            .into_iter()
            .map(|(id, json)| Ok((id, json.as_deref().map(record_from_json).transpose()?)))
            .collect::<Result<_, BrokerError>>()?;
        let voters = voters
            .into_iter()
            .map(|(id, voters)| {
                let voters = voters
                    .iter()
                    .map(|v| v.parse::<UserId>().map_err(corrupt))
                    .collect::<Result<_, _>>()?;
                Ok((id, voters))
            })
            .collect::<Result<_, BrokerError>>()?;
        Ok(Refreshed::Changed {
            version,
            next_question,
            session,
            records,
            counts,
            voters,
        })
    }
}

/// What one commit writes: the outcome of a batch of accepted commands.
pub struct Change {
    /// The version the session was read at.
    pub version: u64,
    /// The session's JSON when a command changed it.
    pub session: Option<String>,
    pub state: &'static str,
    pub next_question: u64,
    /// The records the commands touched: (id, record as stored, qstate code); a record the
    /// commands removed (the retention) is `("", "")`.
    pub records: Vec<(QuestionId, String, &'static str)>,
    /// (question, the vote count its events carry), checked against the voters at commit.
    pub counts: Vec<(QuestionId, u64)>,
    /// (merged question, question merged into), in the order the merges were applied.
    pub merges: Vec<(QuestionId, QuestionId)>,
    /// (audience JSON, frame text before the seq, frame text after it).
    pub events: Vec<(String, String, String)>,
}

impl Change {
    pub fn new(
        version: u64,
        data: &SessionData,
        touched: &Touched,
        events: &[(Audience, EventBody)],
        merges: Vec<(QuestionId, QuestionId)>,
    ) -> Result<Change, BrokerError> {
        let mut records = Vec::with_capacity(touched.questions.len());
        for &id in &touched.questions {
            match data.stored_question(id) {
                Some(stored) => records.push((id, record_json(&stored)?, qstate(&stored))),
                None => records.push((id, String::new(), "")),
            }
        }
        let mut counts = Vec::new();
        let mut templates = Vec::with_capacity(events.len());
        for (audience, body) in events {
            if let EventBody::Question(q) = body {
                counts.push((q.id, q.votes));
            }
            let (before, after) = frame_template(*audience, body.clone())?;
            templates.push((audience_json(audience)?, before, after));
        }
        Ok(Change {
            version,
            session: touched
                .session
                .then(|| session_json(&data.session))
                .transpose()?,
            state: state_name(data.session.state),
            next_question: data.next_question(),
            records,
            counts,
            merges,
            events: templates,
        })
    }
}

/// An event's frame, encoded once, cut where its seq goes: the text before `"seq":` (included)
/// and after the number. The commit script hands out the seqs and puts each in its place.
fn frame_template(audience: Audience, body: EventBody) -> Result<(String, String), BrokerError> {
    let frame = Event::encode(SEQ_PLACEHOLDER, audience, body).frame;
    let marker = format!("\"seq\":{SEQ_PLACEHOLDER}");
    let (before, after) = frame
        .as_str()
        .split_once(&marker)
        .ok_or_else(|| BrokerError::internal("an event frame without seq"))?;
    Ok((format!("{before}\"seq\":"), after.to_owned()))
}

/// Decodes one entry of a session's stream (id `SEQ-0`, fields `a` and `f`).
pub fn decode_event(entry: &StreamId) -> Result<Event, String> {
    let seq = entry
        .id
        .split('-')
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| format!("unexpected stream id {}", entry.id))?;
    let audience: String = entry
        .get("a")
        .ok_or_else(|| format!("event {seq} has no audience"))?;
    let frame: String = entry
        .get("f")
        .ok_or_else(|| format!("event {seq} has no frame"))?;
    let audience = serde_json::from_str(&audience)
        .map_err(|e| format!("event {seq} has a bad audience: {e}"))?;
    Ok(Event {
        seq,
        audience,
        frame: frame.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Question, QuestionStatus};
    use crate::protocol::{ServerMsg, VoteCount};

    fn question(status: QuestionStatus) -> Question {
        Question::sample(4, "q", status)
    }

    #[test]
    fn a_frame_template_with_a_seq_is_the_frame_of_that_seq() {
        let body = EventBody::QuestionRemoved(3);
        let frame = Event::encode(SEQ_PLACEHOLDER, Audience::Public, body.clone()).frame;
        let marker = format!("\"seq\":{SEQ_PLACEHOLDER}");
        assert_eq!(frame.as_str().matches(&marker).count(), 1);
        let (before, after) = frame_template(Audience::Public, body.clone()).unwrap_or_default();
        assert_eq!(
            format!("{before}17{after}"),
            Event::encode(17, Audience::Public, body).frame.as_str()
        );
    }

    #[test]
    fn the_flush_script_writes_votes_frames_as_the_server_encodes_them() {
        // What flush.lua concatenates, for seq 9 and counts {3: 12, 10: 1}.
        let lua = r#"{"type":"votes","seq":9,"votes":[{"id":3,"votes":12},{"id":10,"votes":1}]}"#;
        let event = Event::encode(
            9,
            Audience::Public,
            EventBody::Votes(vec![(3, 12), (10, 1)]),
        );
        assert_eq!(event.frame.as_str(), lua);
        let parsed: ServerMsg = serde_json::from_str(lua).unwrap_or(ServerMsg::Pong { req: None });
        assert_eq!(
            parsed,
            ServerMsg::Votes {
                seq: 9,
                votes: vec![
                    VoteCount { id: 3, votes: 12 },
                    VoteCount { id: 10, votes: 1 }
                ]
            }
        );
        assert_eq!(
            audience_json(&Audience::Public).unwrap_or_default(),
            r#"{"to":"public"}"#
        );
    }

    #[test]
    fn records_keep_the_stored_field_names_and_read_the_older_form() {
        let stored = StoredQuestion {
            question: question(QuestionStatus::Merged),
            was_public: true,
        };
        let json = record_json(&stored).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(value["was_public"], true);
        assert_eq!(value["question"]["status"], "merged");
        // Before the stored form was its own type, records also held an (always empty) voters list.
        let older = json.replacen('{', r#"{"voters":[],"#, 1);
        assert_eq!(record_from_json(&older).ok(), Some(stored.clone()));
        assert_eq!(qstate(&stored), "p");
    }

    #[test]
    fn qstate_follows_the_status() {
        let code = |status, was_public| {
            qstate(&StoredQuestion {
                question: question(status),
                was_public,
            })
        };
        assert_eq!(code(QuestionStatus::Approved, true), "o");
        assert_eq!(code(QuestionStatus::Answering, true), "o");
        assert_eq!(code(QuestionStatus::Answered, true), "p");
        assert_eq!(code(QuestionStatus::Merged, false), "h");
        assert_eq!(code(QuestionStatus::Pending, false), "h");
        assert_eq!(code(QuestionStatus::Rejected, true), "h");
    }
}
