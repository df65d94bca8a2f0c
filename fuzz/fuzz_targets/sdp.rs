//! SDP offers (WHIP and WHEP `POST`) and trickle ICE fragments (`PATCH`), as the relay reads
//! them. The first byte picks which.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oncolive_signaling::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    if kind % 2 == 0 {
        if let Ok(offer) = fuzzing::offer(text) {
            assert!(offer.has_audio || offer.has_video);
            // A chosen codec is one the publisher offered.
            for chosen in [&offer.chosen, &offer.chosen_while_watched].into_iter().flatten() {
                assert!(offer.video_codecs.contains(chosen));
            }
            let _ = fuzzing::attribute(text, "ice-ufrag");
        }
    } else {
        let (_, candidates) = fuzzing::fragment(text);
        for c in candidates {
            assert!(c.line.starts_with("candidate:"));
        }
    }
});
