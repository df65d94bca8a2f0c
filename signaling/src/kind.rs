//! Audio or video: what a room track, a forwarding loop and a metric label are about.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Audio,
    Video,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}
