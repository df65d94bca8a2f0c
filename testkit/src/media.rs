//! A WHIP publisher and a WHEP viewer on the `webrtc` crate.
