//! Every key the Redis broker uses, in one place (the schema is in docs/architecture.md,
//! "Redis key schema").
//!
//! Every key of a session carries the session id as a hash tag (`{ID}`), so all of them live in
//! one hash slot: the Lua scripts that touch several of them stay valid on Redis Cluster.

use crate::model::{QuestionId, SessionId};

/// `PREFIX:sessions`: a set of the ids of every session not yet expired. The only key shared by
/// all sessions; it is written on its own (never inside a session's script) and pruned lazily of
/// ids whose session has expired.
const SESSIONS: &str = "sessions";
/// `PREFIX:{ID}:session`: string, the `Session` as JSON. Small, so listings and socket upgrades
/// do not read the questions.
const SESSION: &str = "session";
/// `PREFIX:{ID}:meta`: hash with `seq` (the head of the event log: the last `seq` handed out),
/// `version` (bumped by every change to `session` or `questions`, for compare-and-set),
/// `state` (`scheduled|live|ended`, for the vote script) and `next_question`.
const META: &str = "meta";
/// `PREFIX:{ID}:questions`: hash, question id → the question's record as JSON without its voters
/// and with `votes` 0 (the count lives in the voters set).
const QUESTIONS: &str = "questions";
/// `PREFIX:{ID}:changed`: sorted set, question id scored by the `version` its record was last
/// written at. A node holding the session at version V reads only the records scored above V
/// (`refresh.lua`) instead of every question. One member per question, like `questions`.
const CHANGED: &str = "changed";
/// `PREFIX:{ID}:qstate`: hash, question id → `o` (open: takes votes, public), `p` (public, closed
/// to votes) or `h` (hidden). Derived from `questions`, written in the same script; the vote and
/// flush scripts read it instead of parsing JSON.
const QSTATE: &str = "qstate";
/// `PREFIX:{ID}:voters:{QUESTION}`: set of the user ids voting for a question. Its cardinality is
/// the question's vote count.
const VOTERS: &str = "voters";
/// `PREFIX:{ID}:dirty`: set of question ids whose vote count changed since the last `votes`
/// event.
const DIRTY: &str = "dirty";
/// `PREFIX:{ID}:events`: stream, the session's event log. Entry id `SEQ-0`; fields `a` (the
/// audience as JSON) and `f` (the encoded frame). Trimmed to about `history` entries.
const EVENTS: &str = "events";
/// `PREFIX:{ID}:viewers`: hash, node id → `COUNT:EXPIRES_AT_MS` (Redis clock). Entries past
/// their expiry are dropped by the next report; the key itself expires when no node reports.
const VIEWERS: &str = "viewers";
/// `PREFIX:{ID}:video`: hash, node id → `1:EXPIRES_AT_MS` (Redis clock) for each node whose
/// relay has the session's publisher sending now (the same script and rules as `viewers`).
const VIDEO: &str = "video";

/// `PREFIX:{ID}:consents`: hash, patient id → when they agreed to the privacy notice (RFC 3339).
/// Deleted by the retention.
const CONSENTS: &str = "consents";

/// The key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches(':').to_owned(),
        }
    }

    pub fn sessions(&self) -> String {
        format!("{}:{SESSIONS}", self.prefix)
    }

    fn of(&self, id: SessionId, name: &str) -> String {
        format!("{}:{{{id}}}:{name}", self.prefix)
    }

    pub fn session(&self, id: SessionId) -> String {
        self.of(id, SESSION)
    }

    pub fn meta(&self, id: SessionId) -> String {
        self.of(id, META)
    }

    pub fn questions(&self, id: SessionId) -> String {
        self.of(id, QUESTIONS)
    }

    pub fn changed(&self, id: SessionId) -> String {
        self.of(id, CHANGED)
    }

    pub fn qstate(&self, id: SessionId) -> String {
        self.of(id, QSTATE)
    }

    /// What the scripts append a question id to, to name its voters set.
    pub fn voters_prefix(&self, id: SessionId) -> String {
        format!("{}:", self.of(id, VOTERS))
    }

    pub fn voters(&self, id: SessionId, question: QuestionId) -> String {
        format!("{}{question}", self.voters_prefix(id))
    }

    pub fn dirty(&self, id: SessionId) -> String {
        self.of(id, DIRTY)
    }

    pub fn events(&self, id: SessionId) -> String {
        self.of(id, EVENTS)
    }

    pub fn viewers(&self, id: SessionId) -> String {
        self.of(id, VIEWERS)
    }

    pub fn video(&self, id: SessionId) -> String {
        self.of(id, VIDEO)
    }

    pub fn consents(&self, id: SessionId) -> String {
        self.of(id, CONSENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_share_the_hash_tag() {
        let keys = Keys::new("oncolive:");
        let id = uuid::Uuid::nil();
        let tag = format!("{{{id}}}");
        for key in [
            keys.session(id),
            keys.meta(id),
            keys.questions(id),
            keys.qstate(id),
            keys.changed(id),
            keys.voters(id, 7),
            keys.dirty(id),
            keys.events(id),
            keys.viewers(id),
            keys.video(id),
            keys.consents(id),
        ] {
            assert!(key.starts_with("oncolive:{"), "{key}");
            assert!(key.contains(&tag), "{key}");
        }
        assert_eq!(keys.voters(id, 7), format!("oncolive:{tag}:voters:7"));
    }
}
