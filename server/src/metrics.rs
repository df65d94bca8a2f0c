//! Metric names in one place, and the Prometheus recorder.
//!
//! Every metric is described (its `# HELP`) and given a zero for each label set it can have
//! when the recorder is installed, so a scrape of a fresh node finds every series: an alert on
//! an absent series cannot tell "nothing happened" from "the exporter is broken". A new metric
//! belongs in [`describe`] as well as in its accessor. docs/operations.md lists them all.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::broker::Broker;
use crate::model::{Role, SessionState};
use crate::screen::FindingKind;

const CONNECTIONS: &str = "oncolive_ws_connections";
const SESSIONS: &str = "oncolive_sessions";
const MESSAGES_IN_TOTAL: &str = "oncolive_ws_messages_in_total";
const MESSAGES_OUT_TOTAL: &str = "oncolive_ws_messages_out_total";
const SLOW_DISCONNECTS_TOTAL: &str = "oncolive_ws_slow_disconnects_total";
const COMMIT_CONFLICTS_TOTAL: &str = "oncolive_commit_conflicts_total";
const RATE_LIMITED_TOTAL: &str = "oncolive_rate_limited_total";
const QUESTIONS_TOTAL: &str = "oncolive_questions_total";
const URL_TOKENS_TOTAL: &str = "oncolive_ws_url_tokens_total";
const HTTP_CLOSED_TOTAL: &str = "oncolive_http_connections_closed_total";
const SCRUBBED_TOTAL: &str = "oncolive_sessions_scrubbed_total";
const CONSENTS_TOTAL: &str = "oncolive_consents_total";
const FINDINGS_TOTAL: &str = "oncolive_screen_findings_total";
const RECORDINGS: &str = "oncolive_recordings";
const RECORDINGS_BYTES: &str = "oncolive_recordings_bytes";
const RECORDINGS_REMOVED_TOTAL: &str = "oncolive_recordings_removed_total";
/// The `reason` labels of [`RECORDINGS_REMOVED_TOTAL`].
const RECORDING_REMOVAL_REASONS: [&str; 4] = ["retention", "space", "deleted", "session_deleted"];
/// The `kind` labels of [`FINDINGS_TOTAL`].
const FINDING_KINDS: [FindingKind; 8] = [
    FindingKind::Phone,
    FindingKind::Landline,
    FindingKind::IdNumber,
    FindingKind::Email,
    FindingKind::BankCard,
    FindingKind::Contact,
    FindingKind::RecordNumber,
    FindingKind::BlockedWord,
];
/// The `reason` labels of [`HTTP_CLOSED_TOTAL`].
const HTTP_CLOSE_REASONS: [&str; 3] = ["per_address", "slow_headers", "idle"];

const ROLES: [Role; 4] = [Role::Admin, Role::Expert, Role::Moderator, Role::Patient];
const SESSION_STATES: [SessionState; 3] = [
    SessionState::Scheduled,
    SessionState::Live,
    SessionState::Ended,
];
/// The `state` labels of [`QUESTIONS_TOTAL`]: `submitted`, then every status a command moves a
/// question into (`pending` is where a submitted question starts, so it is not counted apart).
const QUESTION_EVENTS: [&str; 6] = [
    "submitted",
    "approved",
    "answering",
    "answered",
    "rejected",
    "merged",
];
/// A scrape does not wait longer than this for the session counts; it keeps the last ones.
const SESSION_COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// The process-wide recorder; tests start several servers in one process, so it is made once.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours just stays empty.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            oncolive_signaling::describe_metrics();
            handle
        })
        .clone()
}

/// Describes every metric of the server and gives each label set its zero.
fn describe() {
    describe_gauge!(
        CONNECTIONS,
        "Open WebSockets on this node, by the token's role."
    );
    describe_gauge!(
        SESSIONS,
        "Sessions in storage by state (the whole deployment's, the same on every node)."
    );
    describe_counter!(MESSAGES_IN_TOTAL, "WebSocket text messages received.");
    describe_counter!(MESSAGES_OUT_TOTAL, "WebSocket messages sent.");
    describe_counter!(
        SLOW_DISCONNECTS_TOTAL,
        "WebSockets closed with 4000 (too slow): a full queue, write buffer or send timeout."
    );
    describe_counter!(
        COMMIT_CONFLICTS_TOTAL,
        "Commits of a batch of commands lost to another node's commit (Redis only): the batch is read and applied again."
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        "Questions refused by the per-patient question budget."
    );
    describe_counter!(
        QUESTIONS_TOTAL,
        "Questions submitted, and questions moved into each status by staff."
    );
    describe_counter!(
        URL_TOKENS_TOTAL,
        "WebSockets opened with the deprecated ?token= instead of Sec-WebSocket-Protocol."
    );
    describe_counter!(
        HTTP_CLOSED_TOTAL,
        "HTTP connections closed by the server: over the per-address cap at accept, headers too slow, idle."
    );
    for role in ROLES {
        connections(role).increment(0.0);
    }
    for reason in HTTP_CLOSE_REASONS {
        counter!(HTTP_CLOSED_TOTAL, "reason" => reason).increment(0);
    }
    counter!(URL_TOKENS_TOTAL).increment(0);
    describe_counter!(
        SCRUBBED_TOTAL,
        "Ended sessions whose private data the retention removed on this node."
    );
    describe_counter!(
        CONSENTS_TOTAL,
        "Patients' agreements to the privacy notice recorded on this node."
    );
    describe_counter!(
        FINDINGS_TOTAL,
        "Personal details and blocked words found in questions asked on this node, by kind."
    );
    for c in [scrubbed(), consents()] {
        c.increment(0);
    }
    describe_gauge!(
        RECORDINGS,
        "Recordings in the media store (shared by every node on S3), as of this node's last sweep."
    );
    describe_gauge!(
        RECORDINGS_BYTES,
        "Bytes of recordings in the media store, as of this node's last sweep; bounded by --recordings-max-gb."
    );
    describe_counter!(
        RECORDINGS_REMOVED_TOTAL,
        "Recordings removed by this node, by reason: retention, space (--recordings-max-gb), deleted (by the host), session_deleted."
    );
    recordings().set(0.0);
    recordings_bytes().set(0.0);
    for reason in RECORDING_REMOVAL_REASONS {
        recordings_removed(reason).increment(0);
    }
    for kind in FINDING_KINDS {
        findings(kind).increment(0);
    }
    for state in SESSION_STATES {
        gauge!(SESSIONS, "state" => state_name(state)).increment(0.0);
    }
    for state in QUESTION_EVENTS {
        questions(state).increment(0);
    }
    for c in [slow_disconnects(), rate_limited(), commit_conflicts()] {
        c.increment(0);
    }
    // By name: the cached handles below call `handle()`, which is still initialising here.
    counter!(MESSAGES_IN_TOTAL).increment(0);
    counter!(MESSAGES_OUT_TOTAL).increment(0);
}

/// Open sockets of `role` on this node: up when one opens, down when it closes.
pub fn connections(role: Role) -> Gauge {
    gauge!(CONNECTIONS, "role" => role_name(role))
}

/// Sets the session gauges from storage. Called at start and on every scrape, so they follow
/// sessions created and ended on any node; a broker that does not answer in time leaves the
/// last counts (the scrape is not held up by a slow Redis).
pub async fn count_sessions(broker: &dyn Broker) {
    let sessions = match tokio::time::timeout(SESSION_COUNT_TIMEOUT, broker.sessions()).await {
        Ok(Ok(sessions)) => sessions,
        Ok(Err(e)) => return tracing::debug!(error = %e, "cannot count sessions"),
        Err(_) => return tracing::debug!("counting sessions timed out"),
    };
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    for s in &sessions {
        *counts.entry(state_name(s.state)).or_default() += 1;
    }
    for state in SESSION_STATES {
        let name = state_name(state);
        gauge!(SESSIONS, "state" => name).set(counts.get(name).copied().unwrap_or(0) as f64);
    }
}

/// Counted once per message, so the handle is looked up once per process, after the recorder
/// is installed, instead of by name on every message.
static MESSAGES_IN: LazyLock<Counter> = LazyLock::new(|| {
    handle();
    counter!(MESSAGES_IN_TOTAL)
});
static MESSAGES_OUT: LazyLock<Counter> = LazyLock::new(|| {
    handle();
    counter!(MESSAGES_OUT_TOTAL)
});

pub fn messages_in() -> &'static Counter {
    &MESSAGES_IN
}

pub fn messages_out() -> &'static Counter {
    &MESSAGES_OUT
}

pub fn slow_disconnects() -> Counter {
    counter!(SLOW_DISCONNECTS_TOTAL)
}

/// A batch read at a version another node moved on from before the commit: read again and
/// applied again. How often two nodes race on one session.
pub fn commit_conflicts() -> Counter {
    counter!(COMMIT_CONFLICTS_TOTAL)
}

/// Recordings in the media store (all nodes' together), as of this node's last sweep.
pub fn recordings() -> Gauge {
    gauge!(RECORDINGS)
}

/// Bytes of recordings in the media store, as of this node's last sweep.
pub fn recordings_bytes() -> Gauge {
    gauge!(RECORDINGS_BYTES)
}

/// `reason`: one of [`RECORDING_REMOVAL_REASONS`].
pub fn recordings_removed(reason: &'static str) -> Counter {
    counter!(RECORDINGS_REMOVED_TOTAL, "reason" => reason)
}

pub fn scrubbed() -> Counter {
    counter!(SCRUBBED_TOTAL)
}

pub fn consents() -> Counter {
    counter!(CONSENTS_TOTAL)
}

pub fn findings(kind: FindingKind) -> Counter {
    counter!(FINDINGS_TOTAL, "kind" => kind.name())
}

pub fn rate_limited() -> Counter {
    counter!(RATE_LIMITED_TOTAL)
}

/// Questions entering a state: one of [`QUESTION_EVENTS`].
pub fn questions(state: &'static str) -> Counter {
    counter!(QUESTIONS_TOTAL, "state" => state)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Expert => "expert",
        Role::Moderator => "moderator",
        Role::Patient => "patient",
    }
}

fn state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Scheduled => "scheduled",
        SessionState::Live => "live",
        SessionState::Ended => "ended",
    }
}

/// Whether a command moves a question into another status (and so counts in
/// [`QUESTIONS_TOTAL`]); an edit or a pin does not.
pub fn moves_status(command: &crate::domain::Command) -> bool {
    use crate::domain::Command::*;
    matches!(
        command,
        Approve { .. } | Reject { .. } | Merge { .. } | Answering { .. } | Answered { .. }
    )
}

/// Sockets opened with the deprecated `?token=` instead of `Sec-WebSocket-Protocol`: when it
/// stays at zero after a deploy, the URL form can go (see docs/security.md).
pub fn url_tokens() -> Counter {
    counter!(URL_TOKENS_TOTAL)
}

/// HTTP connections closed by the server: `per_address` (refused at accept), `slow_headers`,
/// `idle`.
pub fn connections_closed(reason: &'static str) -> Counter {
    counter!(HTTP_CLOSED_TOTAL, "reason" => reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::QuestionStatus;

    #[test]
    fn every_question_status_a_command_reaches_has_a_label() {
        for status in QuestionStatus::ALL {
            if status != QuestionStatus::Pending {
                assert!(QUESTION_EVENTS.contains(&status.name()), "{status:?}");
            }
        }
    }
}
