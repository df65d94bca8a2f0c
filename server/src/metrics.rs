//! Metric names in one place, and the Prometheus recorder.

use std::sync::{LazyLock, OnceLock};

use metrics::{Counter, Gauge, counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process-wide recorder; tests start several servers in one process, so it is made once.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours just stays empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub fn connections() -> Gauge {
    gauge!("oncolive_ws_connections")
}

pub fn sessions() -> Gauge {
    gauge!("oncolive_sessions")
}

/// Counted once per message, so the handle is looked up once per process, after the recorder
/// is installed, instead of by name on every message.
static MESSAGES_IN: LazyLock<Counter> = LazyLock::new(|| {
    handle();
    counter!("oncolive_ws_messages_in_total")
});
static MESSAGES_OUT: LazyLock<Counter> = LazyLock::new(|| {
    handle();
    counter!("oncolive_ws_messages_out_total")
});

pub fn messages_in() -> &'static Counter {
    &MESSAGES_IN
}

pub fn messages_out() -> &'static Counter {
    &MESSAGES_OUT
}

pub fn slow_disconnects() -> Counter {
    counter!("oncolive_ws_slow_disconnects_total")
}

pub fn rate_limited() -> Counter {
    counter!("oncolive_rate_limited_total")
}

/// Questions entering a state: submitted, approved, rejected, merged, answering, answered.
pub fn questions(state: &'static str) -> Counter {
    counter!("oncolive_questions_total", "state" => state)
}

/// Sockets opened with the deprecated `?token=` instead of `Sec-WebSocket-Protocol`: when it
/// stays at zero after a deploy, the URL form can go (see docs/security.md).
pub fn url_tokens() -> Counter {
    counter!("oncolive_ws_url_tokens_total")
}

/// HTTP connections closed by the server: `per_address` (refused at accept), `slow_headers`,
/// `idle`.
pub fn connections_closed(reason: &'static str) -> Counter {
    counter!("oncolive_http_connections_closed_total", "reason" => reason)
}
