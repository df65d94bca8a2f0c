//! The HTTP JSON bodies, read as `extract::JsonBody` reads them, then validated and applied as
//! the handlers do. The first byte picks the body type.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use oncolive_fuzz::{Fixture, apply_as_everyone, fixture};
use oncolive_server::api_types::{JoinRequest, StateRequest};
use oncolive_server::domain::{Command, SessionChanges};
use oncolive_server::extract::parse_json;
use oncolive_server::model::{NewSession, checked_name};

static BASE: LazyLock<Fixture> = LazyLock::new(fixture);

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => {
            if let Ok(new) = parse_json::<NewSession>(body)
                && let Ok(valid) = new.validate()
            {
                // Validation is idempotent: a stored session re-validates unchanged.
                let again = valid.clone().validate().expect("valid stays valid");
                assert_eq!(again.title, valid.title);
                assert_eq!(again.topic, valid.topic);
                assert_eq!(again.expert_name, valid.expert_name);
            }
        }
        1 => {
            if let Ok(changes) = parse_json::<SessionChanges>(body) {
                apply_as_everyone(&BASE, &Command::UpdateSession { changes: Box::new(changes) });
            }
        }
        2 => {
            if let Ok(Some(JoinRequest { name: Some(name) })) =
                parse_json::<Option<JoinRequest>>(body)
                && let Ok(Some(name)) = checked_name(&name)
            {
                assert_eq!(checked_name(&name), Ok(Some(name.clone())));
            }
        }
        _ => {
            if let Ok(StateRequest { state }) = parse_json::<StateRequest>(body) {
                apply_as_everyone(&BASE, &Command::SetState { state });
            }
        }
    }
});
