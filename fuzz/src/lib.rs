//! What the fuzz targets share: a session with a question in every status, and the actors
//! that act on it, so that a decoded command reaches every rule of `SessionData::apply`.

use oncolive_server::domain::{Actor, Command, SessionData};
use oncolive_server::model::{Moderation, NewSession, QuestionId, Role, SessionState};
use time::OffsetDateTime;
use uuid::Uuid;

pub struct Fixture {
    pub data: SessionData,
    /// One actor of each role; the patient wrote every question.
    pub actors: Vec<Actor>,
    pub now: OffsetDateTime,
}

/// Question ids in the fixture: 1 pending, 2 approved (voted), 3 answering, 4 rejected,
/// 5 answered, 6 merged into 2.
pub const QUESTIONS: QuestionId = 6;

pub fn fixture() -> Fixture {
    let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let new = NewSession {
        title: "fuzz".into(),
        topic: String::new(),
        expert_name: "Dr. Fuzz".into(),
        scheduled_start: now,
        moderation: Moderation::Pre,
        expert_profile: None,
    };
    let mut data = SessionData::new(new.into_session(Uuid::from_u128(1), now));
    let actor = |n: u128, role| Actor {
        id: Uuid::from_u128(n),
        role,
        name: Some(format!("{role:?}")),
        links_version: 0,
        consented_at: Some(now),
    };
    let (admin, expert, moderator, patient) = (
        actor(10, Role::Admin),
        actor(11, Role::Expert),
        actor(12, Role::Moderator),
        actor(13, Role::Patient),
    );
    let mut run = |who: &Actor, command| {
        // The fixture is built from commands that must succeed; a failure is a broken fixture.
        if let Err(e) = data.apply(who, command, now) {
            panic!("fixture command refused: {e}");
        }
    };
    run(&expert, Command::SetState { state: SessionState::Live });
    for n in 1..=QUESTIONS {
        run(&patient, Command::Ask { text: format!("question {n}") });
    }
    for q in 2..=QUESTIONS {
        run(&moderator, Command::Approve { question: q, text: None, original: false });
    }
    run(&patient, Command::Vote { question: 2 });
    run(&expert, Command::Answering { question: 3 });
    run(&moderator, Command::Reject { question: 4, reason: Some("fuzz".into()), code: None });
    run(&expert, Command::Answered { question: 5, answer: None });
    run(&moderator, Command::Merge { question: 6, into: 2 });
    Fixture {
        data,
        actors: vec![admin, expert, moderator, patient],
        now,
    }
}

/// Applies `command` as every role to a fresh copy of `base`; the rules must refuse or accept,
/// never panic, and whatever they accept must leave a session every role can still view.
pub fn apply_as_everyone(base: &Fixture, command: &Command) {
    for actor in &base.actors {
        let mut data = base.data.clone();
        if data.apply(actor, command.clone(), base.now).is_ok() {
            for viewer in &base.actors {
                let (questions, _) = data.visible_to(viewer.role, viewer.id);
                assert!(questions.len() as u64 <= data.next_question());
            }
            let _ = data.take_vote_counts();
        }
    }
}
