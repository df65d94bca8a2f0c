//! A snapshot in parts. A session with thousands of questions is megabytes of JSON; written as
//! one frame it would be larger than a socket's write buffer (`MAX_WRITE_BUFFER` in `ws.rs`) and
//! the socket would be closed as too slow before the client read a byte. So the questions and
//! `my_votes` are cut into parts of at most `part_bytes` of JSON each: the `snapshot` carries the
//! first, `snapshot_part` messages the rest, each written with the socket's usual back-pressure.
//!
//! No I/O here: [`split`] only decides where to cut.

use std::io;

use serde::Serialize;

use crate::model::{Question, QuestionId};
use crate::protocol::{ServerMsg, Snapshot, SnapshotPart};

/// Bytes of questions and votes per part unless configured (`--snapshot-part-bytes`).
pub const DEFAULT_PART_BYTES: usize = 64 * 1024;
/// Smaller parts would cost a frame for every few questions.
pub const MIN_PART_BYTES: usize = 1024;
/// Half the socket's write buffer, so that one part plus what is already buffered always fits.
pub const MAX_PART_BYTES: usize = 256 * 1024;

/// The messages that carry `snapshot`, in the order they must be sent: the snapshot with the
/// first questions (and `more` set when parts follow), then its parts. The questions keep their
/// order. A part exceeds `part_bytes` only when a single question is larger than that.
pub fn split(mut snapshot: Snapshot, part_bytes: usize) -> Vec<ServerMsg> {
    let questions = std::mem::take(&mut snapshot.questions);
    let my_votes = std::mem::take(&mut snapshot.my_votes);
    let mut pieces: Vec<(Vec<Question>, Vec<QuestionId>)> = vec![Default::default()];
    let mut used = 0;
    // Starts a new piece when `bytes` more would not fit in the current one (unless it is empty).
    let mut room_for = |bytes: usize, pieces: &mut Vec<(Vec<Question>, Vec<QuestionId>)>| {
        if used > 0 && used + bytes > part_bytes {
            pieces.push(Default::default());
            used = 0;
        }
        used += bytes;
    };
    for question in questions {
        // +1: the comma between array elements.
        room_for(json_len(&question) + 1, &mut pieces);
        if let Some(piece) = pieces.last_mut() {
            piece.0.push(question);
        }
    }
    for id in my_votes {
        room_for(json_len(&id) + 1, &mut pieces);
        if let Some(piece) = pieces.last_mut() {
            piece.1.push(id);
        }
    }
    let seq = snapshot.seq;
    let last = pieces.len() - 1;
    let mut pieces = pieces.into_iter().enumerate();
    if let Some((_, (questions, my_votes))) = pieces.next() {
        snapshot.questions = questions;
        snapshot.my_votes = my_votes;
    }
    snapshot.more = last > 0;
    let mut messages = Vec::with_capacity(last + 1);
    messages.push(ServerMsg::Snapshot(snapshot));
    messages.extend(pieces.map(|(i, (questions, my_votes))| {
        ServerMsg::SnapshotPart(SnapshotPart {
            seq,
            questions,
            my_votes,
            more: i < last,
        })
    }));
    messages
}

/// The length of `value` as JSON, without building the text.
fn json_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Our types always serialise; a failure would only make the part smaller.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Moderation, NewSession, QuestionStatus, Role};
    use crate::protocol::{VideoState, You, encode};
    use time::OffsetDateTime;
    use uuid::Uuid;

    fn question(id: QuestionId) -> Question {
        let text = format!("question number {id}, about screening intervals");
        Question {
            votes: id % 7,
            author: Some("Ana".into()),
            ..Question::sample(id, &text, QuestionStatus::Approved)
        }
    }

    fn snapshot(questions: u64, votes: u64) -> Snapshot {
        let now = OffsetDateTime::UNIX_EPOCH;
        let session = NewSession {
            title: "t".into(),
            topic: String::new(),
            expert_name: "e".into(),
            scheduled_start: now,
            moderation: Moderation::Post,
            expert_profile: None,
            record: None,
            videos: Vec::new(),
        }
        .into_session(Uuid::nil(), now);
        Snapshot {
            seq: 42,
            session,
            you: You {
                id: Uuid::nil(),
                role: Role::Moderator,
                name: None,
                consented_at: None,
                muted: false,
            },
            questions: (1..=questions).map(question).collect(),
            my_votes: (1..=votes).collect(),
            viewers: 3,
            video: VideoState::Waiting,
            more: false,
        }
    }

    #[test]
    fn a_small_snapshot_is_one_message_without_more() {
        let whole = snapshot(3, 2);
        let messages = split(whole.clone(), DEFAULT_PART_BYTES);
        assert_eq!(messages, vec![ServerMsg::Snapshot(whole)]);
    }

    #[test]
    fn a_large_snapshot_is_cut_into_bounded_parts_that_add_up_to_it() {
        let whole = snapshot(500, 300);
        let part_bytes = 4096;
        let messages = split(whole.clone(), part_bytes);
        assert!(messages.len() > 10, "{} messages", messages.len());
        let mut rebuilt = match &messages[0] {
            ServerMsg::Snapshot(s) => {
                assert!(s.more);
                s.clone()
            }
            other => panic!("first message {other:?}"),
        };
        for (i, msg) in messages.iter().enumerate().skip(1) {
            let ServerMsg::SnapshotPart(part) = msg else {
                panic!("message {i} is {msg:?}");
            };
            assert_eq!(part.seq, 42);
            assert_eq!(part.more, i + 1 < messages.len());
            // The whole frame: the part's JSON plus the few bytes of its own fields.
            assert!(encode(msg).len() <= part_bytes + 100, "part {i}");
            rebuilt.absorb(part.clone());
        }
        assert!(!rebuilt.more);
        assert_eq!(rebuilt, whole);
    }

    #[test]
    fn a_question_larger_than_a_part_gets_a_part_of_its_own() {
        let mut whole = snapshot(3, 0);
        whole.questions[1].text = "x".repeat(3000);
        let messages = split(whole, MIN_PART_BYTES);
        let counts: Vec<usize> = messages
            .iter()
            .map(|m| match m {
                ServerMsg::Snapshot(s) => s.questions.len(),
                ServerMsg::SnapshotPart(p) => p.questions.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(counts, vec![1, 1, 1]);
    }
}
