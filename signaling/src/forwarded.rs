//! Which address a request came from when a proxy forwards it. Shared with the server, so the
//! hub's limits and the relay's count the same client the same way.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// The address our proxy appended last to `X-Forwarded-For`; earlier entries are whatever the
/// client claimed. Only meaningful behind a proxy that sets it (`--trust-forwarded-for`).
pub fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse::<IpAddr>().ok())
        .next_back()
}
