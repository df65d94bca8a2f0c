//! Reading SDP: offers (validation and the codecs a publisher offers) and
//! trickle ICE fragments.
//!
//! The relay does not transcode, so the codec a publisher sends is the codec
//! every viewer must decode. This module decides which offered video codec a
//! publisher is answered with.

use std::io::Cursor;

use webrtc::api::media_engine::{MIME_TYPE_AV1, MIME_TYPE_H264, MIME_TYPE_VP8, MIME_TYPE_VP9};
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::sdp::SessionDescription;

/// Video codecs the relay forwards (what the viewers' media engine knows).
const FORWARDABLE_VIDEO: [&str; 4] = [MIME_TYPE_VP8, MIME_TYPE_H264, MIME_TYPE_VP9, MIME_TYPE_AV1];

/// One codec line of an offer (`a=rtpmap` plus `a=fmtp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Codec {
    pub payload_type: u8,
    /// `video/VP8`, `audio/opus`, ...
    pub mime_type: String,
    pub clock_rate: u32,
    pub channels: u16,
    pub fmtp: String,
}

impl Codec {
    pub(crate) fn vp8() -> Self {
        Codec {
            payload_type: 96,
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            fmtp: String::new(),
        }
    }

    pub(crate) fn capability(&self) -> RTCRtpCodecCapability {
        RTCRtpCodecCapability {
            mime_type: self.mime_type.clone(),
            clock_rate: self.clock_rate,
            channels: self.channels,
            sdp_fmtp_line: self.fmtp.clone(),
            rtcp_feedback: vec![],
        }
    }

    /// Whether a decoder negotiated for `other` decodes what an encoder
    /// negotiated for `self` produces: same codec and, where the codec has
    /// them, the same format parameters that change the bitstream.
    pub(crate) fn compatible_with(&self, other: &Codec) -> bool {
        if !self.mime_type.eq_ignore_ascii_case(&other.mime_type) {
            return false;
        }
        if self.mime_type.eq_ignore_ascii_case(MIME_TYPE_H264) {
            let (a, b) = (
                fmtp_value(&self.fmtp, "packetization-mode"),
                fmtp_value(&other.fmtp, "packetization-mode"),
            );
            let mode = |v: Option<&str>| v.unwrap_or("0").to_owned();
            // profile_idc and profile_iop (the first 4 hex digits); the level may differ.
            let profile = |f: &str| {
                fmtp_value(f, "profile-level-id")
                    .map(|p| p.get(..4).unwrap_or(p).to_ascii_lowercase())
                    .unwrap_or_else(|| "4200".to_owned())
            };
            return mode(a) == mode(b) && profile(&self.fmtp) == profile(&other.fmtp);
        }
        if self.mime_type.eq_ignore_ascii_case(MIME_TYPE_VP9)
            || self.mime_type.eq_ignore_ascii_case(MIME_TYPE_AV1)
        {
            let key = if self.mime_type.eq_ignore_ascii_case(MIME_TYPE_VP9) {
                "profile-id"
            } else {
                "profile"
            };
            return fmtp_value(&self.fmtp, key).unwrap_or("0")
                == fmtp_value(&other.fmtp, key).unwrap_or("0");
        }
        true
    }
}

fn fmtp_value<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// What the relay needs to know about an offer before negotiating it.
#[derive(Debug, Default)]
pub(crate) struct Offer {
    /// Video codecs of the first video section, in the offerer's preference order.
    pub video: Vec<Codec>,
    pub has_audio: bool,
    pub has_video: bool,
    /// The simulcast layers (`rid`s) the video section sends, in its `a=simulcast` order;
    /// empty without simulcast.
    pub rids: Vec<String>,
}

/// Most simulcast layers a publisher may send (browsers send up to three).
pub(crate) const MAX_LAYERS: usize = 4;

/// Parses an offer and rejects what cannot be one, with a reason for the client.
pub(crate) fn parse_offer(text: &str) -> Result<Offer, String> {
    if !text.trim_start().starts_with("v=0") {
        return Err("an SDP offer starts with \"v=0\"".to_owned());
    }
    let description = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
        .map_err(|err| format!("unparseable SDP: {err}"))?;
    let mut offer = Offer::default();
    for media in &description.media_descriptions {
        match media.media_name.media.as_str() {
            "audio" => offer.has_audio = true,
            "video" if !offer.has_video => {
                offer.has_video = true;
                offer.video = media_codecs(media);
                offer.rids = send_rids(media);
            }
            _ => {}
        }
    }
    if !offer.has_audio && !offer.has_video {
        return Err("the offer has neither an audio nor a video section".to_owned());
    }
    if offer.rids.len() > MAX_LAYERS {
        return Err(format!(
            "the offer sends {} simulcast layers; at most {MAX_LAYERS} are accepted",
            offer.rids.len()
        ));
    }
    let has_ice = |key: &str| {
        description.attribute(key).is_some()
            || description
                .media_descriptions
                .iter()
                .any(|m| m.attribute(key).flatten().is_some())
    };
    if !has_ice("ice-ufrag") || !has_ice("ice-pwd") {
        return Err("the offer lacks ICE credentials (a=ice-ufrag / a=ice-pwd)".to_owned());
    }
    if !has_ice("fingerprint") {
        return Err("the offer lacks a DTLS fingerprint (a=fingerprint)".to_owned());
    }
    Ok(offer)
}

/// The `rid`s a media section sends (RFC 8851, RFC 8853): in the order of `a=simulcast:send`
/// (the first of each group of alternatives, paused ones too), else of the `a=rid` lines.
fn send_rids(media: &webrtc::sdp::MediaDescription) -> Vec<String> {
    let values = |key: &'static str| {
        media
            .attributes
            .iter()
            .filter(move |a| a.key == key)
            .filter_map(|a| a.value.as_deref())
    };
    let declared: Vec<&str> = values("rid")
        .filter_map(|v| {
            let mut parts = v.split_whitespace();
            let id = parts.next()?;
            (parts.next() == Some("send")).then_some(id)
        })
        .collect();
    let ordered: Vec<String> = values("simulcast")
        .filter_map(|v| {
            let mut parts = v.split_whitespace();
            (parts.next() == Some("send"))
                .then(|| parts.next())
                .flatten()
        })
        .flat_map(|list| list.split(';'))
        .filter_map(|group| group.split(',').next())
        .map(|id| id.trim_start_matches('~'))
        .filter(|id| declared.contains(id))
        .map(str::to_owned)
        .collect();
    if ordered.is_empty() {
        declared.into_iter().map(str::to_owned).collect()
    } else {
        ordered
    }
}

fn media_codecs(media: &webrtc::sdp::MediaDescription) -> Vec<Codec> {
    let kind = media.media_name.media.as_str();
    let mut codecs = Vec::new();
    for format in &media.media_name.formats {
        let Ok(payload_type) = format.parse::<u8>() else {
            continue;
        };
        let prefix = format!("{payload_type} ");
        let line = |key: &str| {
            media.attributes.iter().find_map(|a| {
                (a.key == key)
                    .then_some(a.value.as_deref())
                    .flatten()
                    .and_then(|v| v.strip_prefix(&prefix))
            })
        };
        let Some(rtpmap) = line("rtpmap") else {
            continue;
        };
        let mut parts = rtpmap.trim().split('/');
        let name = parts.next().unwrap_or_default();
        let clock_rate = parts.next().and_then(|c| c.parse().ok()).unwrap_or(90_000);
        let channels = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        codecs.push(Codec {
            payload_type,
            mime_type: format!("{kind}/{name}"),
            clock_rate,
            channels,
            fmtp: line("fmtp").unwrap_or_default().trim().to_owned(),
        });
    }
    codecs
}

/// The video codec to answer a publisher with.
///
/// While viewers are watching, the room's current codec is kept if the
/// publisher offers it (viewers keep decoding without renegotiation);
/// otherwise the publisher's first forwardable codec wins.
pub(crate) fn choose_publisher_video(
    offered: &[Codec],
    current: &Codec,
    keep_current: bool,
) -> Option<Codec> {
    let forwardable = |c: &&Codec| {
        FORWARDABLE_VIDEO
            .iter()
            .any(|m| c.mime_type.eq_ignore_ascii_case(m))
    };
    if keep_current
        && let Some(same) = offered
            .iter()
            .filter(forwardable)
            .find(|c| c.compatible_with(current))
    {
        return Some(same.clone());
    }
    offered.iter().find(forwardable).cloned()
}

/// The value of the first `a=KEY:VALUE` line of `sdp`.
pub(crate) fn attribute_value<'a>(sdp: &'a str, key: &str) -> Option<&'a str> {
    sdp.lines().find_map(|line| {
        line.trim()
            .strip_prefix("a=")?
            .strip_prefix(key)?
            .strip_prefix(':')
    })
}

/// Checks new ICE credentials against RFC 8839's grammar (`ice-char`:
/// letters, digits, `+`, `/`; a ufrag of 4 to 256 of them, a password of 22
/// to 256), so that nothing a client sends can end up as another SDP line.
pub(crate) fn check_credentials(ufrag: &str, pwd: &str) -> Result<(), String> {
    let ice_chars = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    if !(4..=256).contains(&ufrag.len()) || !ice_chars(ufrag) {
        return Err("a=ice-ufrag must be 4 to 256 letters, digits, '+' or '/'".to_owned());
    }
    if !(22..=256).contains(&pwd.len()) || !ice_chars(pwd) {
        return Err("a=ice-pwd must be 22 to 256 letters, digits, '+' or '/'".to_owned());
    }
    Ok(())
}

/// `answer` with `x-google-start-bitrate` (kbit/s) on its video codecs' `a=fmtp` lines (added
/// where a codec has none). Chromium then starts its bandwidth estimate there instead of at
/// 300 kbit/s, so a simulcast publisher sends all its layers from the first second rather than
/// ramping up the top one over about four (measured 3.8 s). Other browsers and OBS ignore the
/// parameter; it changes nothing on the relay's side of the connection.
pub(crate) fn with_start_bitrate(answer: &str, kbps: u32) -> String {
    const VIDEO: [&str; 4] = ["VP8/", "VP9/", "H264/", "AV1/"];
    let param = format!("x-google-start-bitrate={kbps}");
    let lines: Vec<&str> = answer.lines().map(str::trim_end).collect();
    let mut video_pts = Vec::new();
    let mut in_video = false;
    for line in &lines {
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
        } else if in_video
            && let Some(rest) = line.strip_prefix("a=rtpmap:")
            && let Some((pt, codec)) = rest.split_once(' ')
            && VIDEO
                .iter()
                .any(|v| codec.to_ascii_uppercase().starts_with(v))
        {
            video_pts.push(pt.to_owned());
        }
    }
    let has_fmtp = |pt: &str| {
        lines.iter().any(|l| {
            l.strip_prefix("a=fmtp:")
                .and_then(|r| r.split_once(' '))
                .is_some_and(|(p, _)| p == pt)
        })
    };
    let mut out = String::with_capacity(answer.len() + 64 * video_pts.len());
    for line in &lines {
        out.push_str(line);
        if let Some(rest) = line.strip_prefix("a=fmtp:")
            && let Some((pt, _)) = rest.split_once(' ')
            && video_pts.iter().any(|p| p == pt)
        {
            out.push(';');
            out.push_str(&param);
        }
        out.push_str("\r\n");
        if let Some(rest) = line.strip_prefix("a=rtpmap:")
            && let Some((pt, _)) = rest.split_once(' ')
            && video_pts.iter().any(|p| p == pt)
            && !has_fmtp(pt)
        {
            out.push_str(&format!("a=fmtp:{pt} {param}\r\n"));
        }
    }
    out
}

/// The offer an ICE restart stands for: the client's previous offer with its
/// new credentials and none of its old candidates (the fragment's are added on
/// their own), one version later. WHIP and WHEP renegotiate nothing but ICE
/// (RFC 9725 §4.3.3), so everything else stays as first negotiated.
pub(crate) fn restarted_offer(previous: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(previous.len());
    for line in previous.lines() {
        let line = line.trim_end();
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        if line.starts_with("a=ice-ufrag:") {
            out.push_str("a=ice-ufrag:");
            out.push_str(ufrag);
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str("a=ice-pwd:");
            out.push_str(pwd);
        } else if let Some(origin) = line.strip_prefix("o=") {
            out.push_str("o=");
            out.push_str(&next_origin_version(origin));
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// `o=` with its session version (the third field) one higher, as RFC 8866
/// asks of a changed description; unchanged if it is not a number.
fn next_origin_version(origin: &str) -> String {
    let mut fields: Vec<String> = origin.split(' ').map(str::to_owned).collect();
    if let Some(version) = fields.get_mut(2)
        && let Ok(n) = version.parse::<u64>()
    {
        *version = n.wrapping_add(1).to_string();
    }
    fields.join(" ")
}

/// The relay's side of an ICE session, as the `200` of an ICE restart hands it
/// to the client (RFC 9725 §4.3.3): an `application/trickle-ice-sdpfrag` with
/// the credentials of `local` (the relay's answer), then its first media
/// section (the one the others are bundled on) with its candidates.
/// `None` if `local` has no ICE credentials.
pub(crate) fn ice_fragment(local: &str) -> Option<String> {
    let ufrag = attribute_value(local, "ice-ufrag")?;
    let pwd = attribute_value(local, "ice-pwd")?;
    let mut out = String::new();
    let mut section = 0;
    for line in local.lines().map(str::trim) {
        if line == "a=ice-lite" && section == 0 {
            out.push_str("a=ice-lite\r\n");
        }
        if line.starts_with("m=") {
            section += 1;
            if section == 1 {
                out.push_str(&format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"));
                out.push_str(line);
                out.push_str("\r\n");
            }
            continue;
        }
        let listed = line.starts_with("a=mid:")
            || line.starts_with("a=candidate:")
            || line == "a=end-of-candidates";
        if section == 1 && listed {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    if section == 0 {
        out.push_str(&format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"));
    }
    Some(out)
}

/// A trickle ICE fragment: the ICE session it belongs to (when it says), the
/// password that comes with a new one (an ICE restart), and its candidates.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Trickle {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    pub candidates: Vec<Candidate>,
}

/// One `a=candidate:` line and the media section it was listed under.
#[derive(Debug, PartialEq)]
pub(crate) struct Candidate {
    pub line: String,
    pub mid: Option<String>,
    pub mline_index: Option<u16>,
}

/// Reads an `application/trickle-ice-sdpfrag` body (RFC 8840 §4.4).
pub(crate) fn parse_fragment(fragment: &str) -> Trickle {
    let mut trickle = Trickle::default();
    let mut mline_index: Option<u16> = None;
    let mut mid: Option<String> = None;
    for line in fragment.lines().map(str::trim) {
        if line.starts_with("m=") {
            mline_index = Some(mline_index.map_or(0, |i| i.saturating_add(1)));
            mid = None;
        } else if let Some(value) = line.strip_prefix("a=mid:") {
            mid = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("a=ice-ufrag:") {
            trickle.ufrag = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("a=ice-pwd:") {
            trickle.pwd = Some(value.to_owned());
        } else if let Some(candidate) = line.strip_prefix("a=")
            && candidate.starts_with("candidate:")
        {
            trickle.candidates.push(Candidate {
                line: candidate.to_owned(),
                mid: mid.clone(),
                mline_index,
            });
        }
    }
    trickle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_bitrate_goes_on_every_video_codec_and_nothing_else() {
        let answer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n";
        let out = with_start_bitrate(answer, 1500);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.contains(&"a=fmtp:111 minptime=10;useinbandfec=1"));
        assert!(lines.contains(&"a=fmtp:96 x-google-start-bitrate=1500"));
        assert!(lines.contains(&"a=fmtp:97 apt=96"));
        assert!(lines.contains(
            &"a=fmtp:102 packetization-mode=1;profile-level-id=42e01f;x-google-start-bitrate=1500"
        ));
        let at = |l: &str| lines.iter().position(|x| *x == l).unwrap();
        assert_eq!(
            at("a=fmtp:96 x-google-start-bitrate=1500"),
            at("a=rtpmap:96 VP8/90000") + 1
        );
        assert_eq!(lines.len(), answer.lines().count() + 1);
        assert!(out.ends_with("\r\n"));
        webrtc::sdp::SessionDescription::unmarshal(&mut std::io::Cursor::new(out.as_bytes()))
            .expect("still SDP");
    }

    #[test]
    fn fragment_candidates_keep_their_section() {
        let fragment = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\na=end-of-candidates\r\n";
        let trickle = parse_fragment(fragment);
        assert_eq!(trickle.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(
            trickle.candidates,
            vec![Candidate {
                line: "candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0"
                    .into(),
                mid: Some("0".into()),
                mline_index: Some(0),
            }]
        );
    }

    const CHROME_LIKE: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=fingerprint:sha-256 AA:BB\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 102 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n";

    #[test]
    fn reads_video_codecs_in_order() {
        let offer = parse_offer(CHROME_LIKE).expect("valid offer");
        assert!(offer.has_audio && offer.has_video);
        let names: Vec<&str> = offer.video.iter().map(|c| c.mime_type.as_str()).collect();
        assert_eq!(names, ["video/H264", "video/VP8"]);
        assert_eq!(
            offer.video[0].fmtp,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
        );
    }

    #[test]
    fn reads_simulcast_layers_in_their_order() {
        let simulcast = CHROME_LIKE.replace(
            "a=rtpmap:96 VP8/90000\r\n",
            "a=rtpmap:96 VP8/90000\r\na=rid:h send\r\na=rid:l send\r\na=rid:m send\r\na=rid:x recv\r\na=simulcast:send l;~m,mm;h\r\n",
        );
        let offer = parse_offer(&simulcast).unwrap();
        assert_eq!(offer.rids, ["l", "m", "h"]);
        assert!(parse_offer(CHROME_LIKE).unwrap().rids.is_empty());
        let many: String = (0..5).map(|i| format!("a=rid:r{i} send\r\n")).collect();
        let too_many = CHROME_LIKE.replace(
            "a=rtpmap:96 VP8/90000\r\n",
            &format!("a=rtpmap:96 VP8/90000\r\n{many}"),
        );
        assert!(parse_offer(&too_many).unwrap_err().contains("at most 4"));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(parse_offer("hello").is_err());
        assert!(parse_offer("v=0\r\nm=audio").is_err());
        let no_fingerprint = CHROME_LIKE.replace("a=fingerprint:sha-256 AA:BB\r\n", "");
        assert!(
            matches!(parse_offer(&no_fingerprint), Err(reason) if reason.contains("fingerprint"))
        );
    }

    #[test]
    fn keeps_the_rooms_codec_while_viewers_watch() {
        let offer = parse_offer(CHROME_LIKE).expect("valid offer");
        let chosen = choose_publisher_video(&offer.video, &Codec::vp8(), true).expect("a codec");
        assert_eq!(chosen.mime_type, "video/VP8");
        let chosen = choose_publisher_video(&offer.video, &Codec::vp8(), false).expect("a codec");
        assert_eq!(chosen.mime_type, "video/H264");
    }

    #[test]
    fn h264_compatibility_follows_mode_and_profile() {
        let h264 = |fmtp: &str| Codec {
            payload_type: 102,
            mime_type: "video/H264".into(),
            clock_rate: 90_000,
            channels: 0,
            fmtp: fmtp.into(),
        };
        let baseline1 = h264("packetization-mode=1;profile-level-id=42e01f");
        assert!(baseline1.compatible_with(&h264("profile-level-id=42e034;packetization-mode=1")));
        assert!(!baseline1.compatible_with(&h264("packetization-mode=0;profile-level-id=42e01f")));
        assert!(!baseline1.compatible_with(&h264("packetization-mode=1;profile-level-id=640032")));
    }

    #[test]
    fn a_restarted_offer_changes_only_ice() {
        let previous = format!(
            "{CHROME_LIKE}a=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\r\na=end-of-candidates\r\n"
        );
        let offer = restarted_offer(&previous, "wxyz", "0123456789abcdefghijkl");
        assert!(offer.contains("o=- 1 3 IN IP4 127.0.0.1\r\n"), "{offer}");
        assert!(offer.contains("a=ice-ufrag:wxyz\r\n") && !offer.contains("ice-ufrag:abcd"));
        assert!(offer.contains("a=ice-pwd:0123456789abcdefghijkl\r\n"));
        assert!(!offer.contains("a=candidate") && !offer.contains("end-of-candidates"));
        let reparsed = parse_offer(&offer).expect("still an offer");
        assert_eq!(reparsed.video.len(), 2);
        assert!(offer.contains("a=fmtp:111 minptime=10;useinbandfec=1\r\n"));
    }

    #[test]
    fn ice_credentials_follow_rfc_8839() {
        assert!(check_credentials("abcd", "0123456789abcdefghijkl").is_ok());
        assert!(check_credentials("ab+/", "0123456789abcdefghij+/").is_ok());
        assert!(check_credentials("abc", "0123456789abcdefghijkl").is_err());
        assert!(check_credentials("abcd", "short").is_err());
        assert!(check_credentials("ab\r\na=x", "0123456789abcdefghijkl").is_err());
        assert!(check_credentials("abcd", "0123456789abcdefghijk l").is_err());
    }

    #[test]
    fn the_ice_fragment_carries_credentials_and_first_section_candidates() {
        let local = "v=0\r\no=- 9 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:NEWU\r\na=ice-pwd:newpasswordnewpassword\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\r\na=end-of-candidates\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:NEWU\r\na=mid:1\r\na=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\r\na=end-of-candidates\r\n";
        let fragment = ice_fragment(local).expect("credentials");
        assert_eq!(
            fragment,
            "a=ice-ufrag:NEWU\r\na=ice-pwd:newpasswordnewpassword\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\r\na=end-of-candidates\r\n"
        );
        let read = parse_fragment(&fragment);
        assert_eq!(read.ufrag.as_deref(), Some("NEWU"));
        assert_eq!(read.pwd.as_deref(), Some("newpasswordnewpassword"));
        assert_eq!(read.candidates.len(), 1);
        assert_eq!(ice_fragment("v=0\r\nm=audio 9 RTP/AVP 0\r\n"), None);
    }
}
