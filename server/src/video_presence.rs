//! This node's relay as every node sees it. The relay knows whether the publisher of a session
//! it holds sends media; this task tells the broker (a heartbeat while live, like the viewer
//! counts, and at once on a change), so every node's pump reads the same video state from the
//! broker ([`crate::hub`]). It also joins the hub channel of every session the relay holds, so
//! that this node has a pump for it even with no socket here (an OBS publisher, patients on other
//! nodes): the pump ends this node's video when it forwards the session's end.

use std::collections::HashMap;
use std::sync::Arc;

use oncolive_signaling::Relay;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::hub::{Audience, Hub, Membership, VIEWERS_EVERY};
use crate::model::SessionId;

pub async fn run(relay: Relay, broker: Arc<dyn Broker>, hub: Arc<Hub>, stop: CancellationToken) {
    let node = hub.node();
    // What the broker was last told, per session this node holds.
    let mut told: HashMap<SessionId, bool> = HashMap::new();
    let mut members: HashMap<SessionId, Membership> = HashMap::new();
    let mut heartbeat = tokio::time::interval(VIEWERS_EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = relay.live_changed() => {}
            _ = heartbeat.tick() => {}
        }
        let rooms: HashMap<SessionId, bool> = relay
            .rooms_live()
            .into_iter()
            .filter_map(|(session, live)| Some((session.parse().ok()?, live)))
            .collect();
        members.retain(|id, _| rooms.contains_key(id));
        for (&id, &live) in &rooms {
            if !members.contains_key(&id) {
                match hub.join(id, Audience::Staff).await {
                    Ok(member) => {
                        members.insert(id, member);
                    }
                    Err(e) => tracing::debug!(session = %id, error = %e, "joining for the video"),
                }
            }
            let was = told.get(&id).copied();
            // Live: every beat (the report expires); not live: once.
            if live || was != Some(false) {
                report(&*broker, &hub, &mut told, id, node, live, was).await;
            }
        }
        let gone: Vec<(SessionId, bool)> = told
            .iter()
            .filter(|(id, _)| !rooms.contains_key(id))
            .map(|(&id, &was)| (id, was))
            .collect();
        for (id, was) in gone {
            if was {
                report(&*broker, &hub, &mut told, id, node, false, Some(true)).await;
            }
            told.remove(&id);
        }
    }
    for (id, was) in told {
        if was {
            let _ = broker.report_video(id, node, false).await;
        }
    }
}

async fn report(
    broker: &dyn Broker,
    hub: &Hub,
    told: &mut HashMap<SessionId, bool>,
    id: SessionId,
    node: uuid::Uuid,
    live: bool,
    was: Option<bool>,
) {
    match broker.report_video(id, node, live).await {
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
