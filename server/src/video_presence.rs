//! This node's relay as every node sees it. The relay knows whether a WHIP publisher of a session
//! it holds sends media; this task tells the broker (a heartbeat while live, like the viewer
//! counts, and at once on a change), with the URL other nodes pull the session from, so every
//! node's pump reads the same video state from the broker ([`crate::hub`]) and every node finds
//! the session's origin ([`crate::video::SessionAuthorizer::origin_of`]). It moves this node's
//! pulls to a new origin when the expert reconnects elsewhere. And it joins the hub channel of
//! every session the relay holds, so that this node has a pump for it even with no socket here
//! (an OBS publisher, patients on other nodes): the pump ends this node's video when it forwards
//! the session's end.

use std::collections::HashMap;
use std::sync::Arc;

use oncolive_signaling::Relay;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::broker::Broker;
use crate::hub::{Audience, Hub, Membership, VIEWERS_EVERY};
use crate::model::SessionId;
use crate::video::SessionAuthorizer;

pub async fn run(
    relay: Relay,
    broker: Arc<dyn Broker>,
    hub: Arc<Hub>,
    origins: Arc<SessionAuthorizer>,
    stop: CancellationToken,
) {
    let node = hub.node();
    // A node that announces no URL is still live for everyone; nobody can pull from it.
    let url = origins.node_url.as_deref().unwrap_or("").to_owned();
    // What the broker was last told, per session this node holds.
    let mut told: HashMap<SessionId, bool> = HashMap::new();
    let mut members: HashMap<SessionId, Membership> = HashMap::new();
    let mut heartbeat = tokio::time::interval(VIEWERS_EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let beat = tokio::select! {
            _ = stop.cancelled() => break,
            _ = relay.live_changed() => false,
            _ = heartbeat.tick() => true,
        };
        let rooms: HashMap<SessionId, bool> = relay
            .rooms_live()
            .into_iter()
            .filter_map(|(session, live)| Some((session.parse().ok()?, live)))
            .collect();
        members.retain(|id, _| rooms.contains_key(id));
        for (&id, &live) in &rooms {
            if let std::collections::hash_map::Entry::Vacant(slot) = members.entry(id) {
                match hub.join(id, Audience::Staff).await {
                    Ok(member) => {
                        slot.insert(member);
                    }
                    Err(e) => tracing::debug!(session = %id, error = %e, "joining for the video"),
                }
            }
            let was = told.get(&id).copied();
            // Live: every beat (the report expires); not live: once.
            if (live && (beat || was != Some(true))) || (!live && was != Some(false)) {
                let reported = live.then_some(url.as_str());
                report(&*broker, &hub, &mut told, id, node, reported, was).await;
            }
        }
        let gone: Vec<(SessionId, bool)> = told
            .iter()
            .filter(|(id, _)| !rooms.contains_key(id))
            .map(|(&id, &was)| (id, was))
            .collect();
        for (id, was) in gone {
            if was {
                report(&*broker, &hub, &mut told, id, node, None, Some(true)).await;
            }
            told.remove(&id);
        }
        if beat {
            follow_origins(&relay, &origins).await;
        }
    }
    for (id, was) in told {
        if was {
            let _ = broker.report_video(id, node, None).await;
        }
    }
}

/// Each pull of this node moves to its session's current origin.
async fn follow_origins(relay: &Relay, origins: &SessionAuthorizer) {
    for (session, pulled_from) in relay.pulls() {
        let Ok(id) = session.parse::<SessionId>() else {
            continue;
        };
        if let Some(origin) = origins.origin_of(id).await
            && origin.whep_url != pulled_from
        {
            relay.follow(&session, &origin).await;
        }
    }
}

async fn report(
    broker: &dyn Broker,
    hub: &Hub,
    told: &mut HashMap<SessionId, bool>,
    id: SessionId,
    node: Uuid,
    url: Option<&str>,
    was: Option<bool>,
) {
    let live = url.is_some();
    match broker.report_video(id, node, url).await {
        Ok(_) => {
            told.insert(id, live);
            if was != Some(live) {
                tracing::info!(session = %id, live, "video state reported");
                hub.video_changed(id);
            }
        }
        // Told again at the next beat; until then the other nodes keep what they had.
        Err(e) => tracing::debug!(session = %id, error = %e, "video report failed"),
    }
}
