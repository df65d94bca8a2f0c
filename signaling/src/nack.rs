//! Retransmission on a viewer's NACKs, within limits.
//!
//! `webrtc`'s own responder resends every packet a NACK names, as often as it is named. A
//! receiver on a link that is already full loses the resent packets too and names them again
//! (the crate's own NACK generator, which an edge's pull and other `webrtc`-based clients use,
//! asks for every missing packet every 100 ms until it arrives), so resends grow until they
//! are most of the link. Measured with the simulcast test: a viewer throttled to 300 kbit/s
//! that had briefly tried a 480 kbit/s layer lost 42–52 % of the 150 kbit/s layer it then
//! settled on, and the throttle dropped 73,303 packets in 45 s, most of them resends.
//!
//! Here a packet is resent at most [`MAX_RESENDS`] times, never twice within [`RESEND_GAP`],
//! not after [`MAX_AGE`] (a live player has given up on it), and resends of one stream may use
//! at most [`BUDGET_SHARE`] of the bytes the stream sends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Attributes, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader, RTPWriter,
};
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use webrtc::rtp::packet::Packet;

pub(crate) const MAX_RESENDS: u8 = 2;
pub(crate) const RESEND_GAP: Duration = Duration::from_millis(150);
pub(crate) const MAX_AGE: Duration = Duration::from_millis(1000);
/// Resent bytes, as a share of the bytes sent.
pub(crate) const BUDGET_SHARE: f64 = 0.25;
/// The budget never holds more than this (a quiet stream cannot save up a burst).
const BUDGET_CAP: f64 = 64.0 * 1200.0;

type Result<T> = std::result::Result<T, webrtc::interceptor::Error>;

/// Builds a [`Responder`] per peer connection (`history_log2`: packets kept per stream, 2^n).
pub(crate) struct ResponderBuilder {
    pub history_log2: u8,
}

impl InterceptorBuilder for ResponderBuilder {
    fn build(&self, _id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(Responder {
            history: 1 << self.history_log2,
            streams: Arc::default(),
        }))
    }
}

type Streams = Arc<Mutex<HashMap<u32, Arc<Stream>>>>;

pub(crate) struct Responder {
    history: usize,
    streams: Streams,
}

/// One outgoing stream's history and resend budget. A plain mutex: never held across an await.
struct Stream {
    state: Mutex<History>,
    next: Arc<dyn RTPWriter + Send + Sync>,
}

struct Sent {
    packet: Packet,
    at: Instant,
    last_resent: Option<Instant>,
    resends: u8,
}

/// The pure part: what to keep, and whether a NACKed packet may go out again.
pub(crate) struct History {
    slots: Vec<Option<Sent>>,
    budget: f64,
}

impl History {
    pub(crate) fn new(size: usize) -> History {
        History {
            slots: (0..size).map(|_| None).collect(),
            budget: 0.0,
        }
    }

    pub(crate) fn sent(&mut self, packet: &Packet, now: Instant) {
        let bytes = (packet.header.marshal_size_hint() + packet.payload.len()) as f64;
        self.budget = (self.budget + bytes * BUDGET_SHARE).min(BUDGET_CAP);
        let slot = usize::from(packet.header.sequence_number) % self.slots.len();
        self.slots[slot] = Some(Sent {
            packet: packet.clone(),
            at: now,
            last_resent: None,
            resends: 0,
        });
    }

    /// The packet `seq` if it may be resent now (and counts the resend).
    pub(crate) fn resend(&mut self, seq: u16, now: Instant) -> Option<Packet> {
        let slot = usize::from(seq) % self.slots.len();
        let sent = self.slots[slot].as_mut()?;
        let fresh = sent.packet.header.sequence_number == seq
            && now.saturating_duration_since(sent.at) <= MAX_AGE
            && sent.resends < MAX_RESENDS
            && sent
                .last_resent
                .is_none_or(|at| now.saturating_duration_since(at) >= RESEND_GAP);
        let bytes = (sent.packet.header.marshal_size_hint() + sent.packet.payload.len()) as f64;
        if !fresh || self.budget < bytes {
            return None;
        }
        self.budget -= bytes;
        sent.resends += 1;
        sent.last_resent = Some(now);
        Some(sent.packet.clone())
    }
}

/// `Header::marshal_size` without the trait import at every call.
trait SizeHint {
    fn marshal_size_hint(&self) -> usize;
}

impl SizeHint for webrtc::rtp::header::Header {
    fn marshal_size_hint(&self) -> usize {
        webrtc::util::MarshalSize::marshal_size(self)
    }
}

fn supports_nack(info: &StreamInfo) -> bool {
    info.rtcp_feedback
        .iter()
        .any(|fb| fb.typ == "nack" && fb.parameter.is_empty())
}

#[async_trait]
impl RTPWriter for Stream {
    async fn write(&self, packet: &Packet, attributes: &Attributes) -> Result<usize> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sent(packet, Instant::now());
        self.next.write(packet, attributes).await
    }
}

struct NackReader {
    parent: Arc<dyn RTCPReader + Send + Sync>,
    streams: Streams,
}

#[async_trait]
impl RTCPReader for NackReader {
    async fn read(
        &self,
        buf: &mut [u8],
        attributes: &Attributes,
    ) -> Result<(
        Vec<Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>>,
        Attributes,
    )> {
        let (packets, attributes) = self.parent.read(buf, attributes).await?;
        for packet in &packets {
            let Some(nack) = packet.as_any().downcast_ref::<TransportLayerNack>() else {
                continue;
            };
            let stream = self
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&nack.media_ssrc)
                .cloned();
            let Some(stream) = stream else { continue };
            let now = Instant::now();
            let resend: Vec<Packet> = {
                let mut history = stream.state.lock().unwrap_or_else(|e| e.into_inner());
                nack.nacks
                    .iter()
                    .flat_map(|pair| pair.into_iter())
                    .filter_map(|seq| history.resend(seq, now))
                    .collect()
            };
            if resend.is_empty() {
                continue;
            }
            tokio::spawn(async move {
                let attributes = Attributes::new();
                for packet in resend {
                    if let Err(err) = stream.next.write(&packet, &attributes).await {
                        tracing::debug!(error = %err, "resending a NACKed packet");
                        break;
                    }
                }
            });
        }
        Ok((packets, attributes))
    }
}

#[async_trait]
impl Interceptor for Responder {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        Arc::new(NackReader {
            parent: reader,
            streams: self.streams.clone(),
        })
    }

    async fn bind_rtcp_writer(
        &self,
        writer: Arc<dyn RTCPWriter + Send + Sync>,
    ) -> Arc<dyn RTCPWriter + Send + Sync> {
        writer
    }

    async fn bind_local_stream(
        &self,
        info: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        if !supports_nack(info) {
            return writer;
        }
        let stream = Arc::new(Stream {
            state: Mutex::new(History::new(self.history)),
            next: writer,
        });
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info.ssrc, stream.clone());
        stream
    }

    async fn unbind_local_stream(&self, info: &StreamInfo) {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&info.ssrc);
    }

    async fn bind_remote_stream(
        &self,
        _info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        reader
    }

    async fn unbind_remote_stream(&self, _info: &StreamInfo) {}

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16) -> Packet {
        let mut p = Packet::default();
        p.header.sequence_number = seq;
        p.payload = bytes::Bytes::from(vec![0u8; 988]);
        p
    }

    #[test]
    fn a_packet_is_resent_twice_at_most_spaced_and_while_fresh() {
        let t0 = Instant::now();
        let mut history = History::new(1024);
        for seq in 0..100 {
            history.sent(&packet(seq), t0);
        }
        assert!(history.resend(5, t0).is_some());
        assert!(
            history.resend(5, t0 + Duration::from_millis(50)).is_none(),
            "too soon"
        );
        assert!(history.resend(5, t0 + Duration::from_millis(200)).is_some());
        assert!(
            history.resend(5, t0 + Duration::from_millis(400)).is_none(),
            "twice already"
        );
        assert!(
            history
                .resend(6, t0 + Duration::from_millis(1100))
                .is_none(),
            "too old"
        );
        assert!(history.resend(500, t0).is_none(), "never sent");
    }

    #[test]
    fn resends_stay_within_a_quarter_of_what_was_sent() {
        let t0 = Instant::now();
        let mut history = History::new(1024);
        for seq in 0..200 {
            history.sent(&packet(seq), t0);
        }
        let resent = (0..200)
            .filter(|&s| history.resend(s, t0).is_some())
            .count();
        // The budget is capped at 64 packets' worth.
        assert!((49..=65).contains(&resent), "{resent} of 200 resent");
    }
}
