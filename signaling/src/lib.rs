//! WHIP/WHEP signaling and the selective-forwarding relay (filled by the video issue).
