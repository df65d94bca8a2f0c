//! Entry points for the fuzzer (`fuzz/`): the parsers that bytes from a WHIP/WHEP client reach
//! before any WebRTC state exists. They return plain summaries so that a fuzz target can check
//! properties without seeing the relay's private types. Not an API for hosts.

use crate::sdp;

/// What [`offer`] learned of an offer the relay would accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSummary {
    pub has_audio: bool,
    pub has_video: bool,
    /// The MIME types of the first video section's codecs, in the offer's order.
    pub video_codecs: Vec<String>,
    /// The codec a publisher offering this would be answered with (`None`: refused), when the
    /// room's codec is VP8 and viewers are watching.
    pub chosen_while_watched: Option<String>,
    /// The same when nobody watches.
    pub chosen: Option<String>,
}

/// Validates an SDP offer as `POST /whip` and `POST /whep` do, and picks the publisher's codec.
pub fn offer(text: &str) -> Result<OfferSummary, String> {
    let offer = sdp::parse_offer(text)?;
    let current = sdp::Codec::vp8();
    let pick =
        |watched| sdp::choose_publisher_video(&offer.video, &current, watched).map(|c| c.mime_type);
    // Every pair of offered codecs is compared, as a renegotiating publisher's would be.
    for a in &offer.video {
        for b in &offer.video {
            let _ = a.compatible_with(b);
        }
    }
    Ok(OfferSummary {
        has_audio: offer.has_audio,
        has_video: offer.has_video,
        video_codecs: offer.video.iter().map(|c| c.mime_type.clone()).collect(),
        chosen_while_watched: pick(true),
        chosen: pick(false),
    })
}

/// One candidate of a trickle fragment as [`fragment`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateSummary {
    /// The candidate line without its `a=`.
    pub line: String,
    pub mid: Option<String>,
    pub mline_index: Option<u16>,
}

/// Reads an `application/trickle-ice-sdpfrag` body as `PATCH` on a WHIP/WHEP resource does:
/// its ICE ufrag (if it names one) and its candidates.
pub fn fragment(text: &str) -> (Option<String>, Vec<CandidateSummary>) {
    let trickle = sdp::parse_fragment(text);
    let candidates = trickle
        .candidates
        .into_iter()
        .map(|c| CandidateSummary {
            line: c.line,
            mid: c.mid,
            mline_index: c.mline_index,
        })
        .collect();
    (trickle.ufrag, candidates)
}

/// The value of the first `a=KEY:VALUE` line, as the relay reads an answer's ICE ufrag.
pub fn attribute<'a>(sdp_text: &'a str, key: &str) -> Option<&'a str> {
    sdp::attribute_value(sdp_text, key)
}
