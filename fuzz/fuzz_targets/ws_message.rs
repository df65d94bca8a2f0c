//! The WebSocket message decoder: `ClientMsg` as `ws.rs` parses it, the `req` echoed for a
//! message that does not parse, and the command applied by every role.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use oncolive_fuzz::{Fixture, apply_as_everyone, fixture};
use oncolive_server::protocol::{ClientMsg, MAX_REQ_CHARS, Request};
use oncolive_server::ws::request_id;

static BASE: LazyLock<Fixture> = LazyLock::new(fixture);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(req) = request_id(text) {
        assert!(req.chars().count() <= MAX_REQ_CHARS);
    }
    let Ok(msg) = serde_json::from_str::<ClientMsg>(text) else {
        return;
    };
    // What a client library writes must read back as the same message.
    let encoded = serde_json::to_string(&msg).expect("a decoded message encodes");
    let again: ClientMsg = serde_json::from_str(&encoded).expect("an encoded message decodes");
    assert_eq!(again, msg);
    if let Request::Command(command) = &msg.request {
        apply_as_everyone(&BASE, command);
    }
});
