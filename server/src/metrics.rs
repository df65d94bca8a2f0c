//! Metric names in one place, and the Prometheus recorder.

use std::sync::OnceLock;

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

pub fn messages_in() -> Counter {
    counter!("oncolive_ws_messages_in_total")
}

pub fn messages_out() -> Counter {
    counter!("oncolive_ws_messages_out_total")
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
