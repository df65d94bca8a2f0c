//! The connection every request shares, and the rules for using it: every call has a timeout,
//! reads are retried once on a dropped connection, writes never are, and Redis errors become
//! broker errors that keep the Redis error as their source.
//!
//! One Redis is named `redis://[user:password@]host:port[/db]`; a Redis Cluster by some of its
//! nodes, `redis+cluster://[user:password@]host:port[,host:port…]` (any one node that answers is
//! enough to find the others; naming every master survives a node being down at start-up).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    Cmd, ConnectionInfo, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    RedisResult, ServerErrorKind, Value,
};

use super::failed;
use crate::broker::BrokerError;

/// The scheme of a URL that names a Redis Cluster.
pub const CLUSTER_SCHEME: &str = "redis+cluster";

/// Where Redis is, as the reader needs to know it: it opens connections of its own.
#[derive(Clone)]
pub enum Target {
    Single(redis::Client),
    /// The nodes the URL names, each with the URL's credentials.
    Cluster(Vec<ConnectionInfo>),
}

pub struct Connection {
    /// Reconnects by itself. Cloning it is cheap, and each call takes a clone.
    handle: Handle,
    /// The same connection on one Redis; on a cluster, a second one whose client retries.
    reads: Handle,
    timeout: Duration,
}

/// The pause between two attempts of a read on a cluster that found no connection.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How often the cluster client sends a read again (after a dropped connection, a redirect, a
/// master still loading) within the command timeout.
const READ_RETRIES: u32 = 3;

/// A connection to one Redis or to a cluster, as one type for the calls: a cluster connection
/// routes each command to the master of its keys' hash slot.
#[derive(Clone)]
pub enum Handle {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// A connection that connects on first use, and where the reader opens its own.
    pub fn open(url: &str, timeout: Duration) -> Result<(Connection, Target), BrokerError> {
        let target = Target::parse(url)?;
        let (handle, reads) = match &target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map_err(|e| BrokerError::Internal(failed("cannot set up Redis", e)))?;
                (Handle::Single(manager.clone()), Handle::Single(manager))
            }
            Target::Cluster(nodes) => {
                let connect = |retries| {
                    let client = ClusterClientBuilder::new(nodes.clone())
                        .retries(retries)
                        .min_retry_wait(20)
                        .max_retry_wait(400)
                        .build()
                        .map_err(|e| BrokerError::Internal(failed("bad Redis Cluster URL", e)))?;
                    let config = ClusterConfig::new()
                        .set_connection_timeout(timeout)
                        .set_response_timeout(timeout);
                    Ok::<_, BrokerError>(Handle::Cluster(
                        client.get_pending_async_connection_with_config(config),
                    ))
                };
                // Writes get no retries: the cluster client would also resend a command whose
                // connection dropped after it was sent, and a write whose fate is unknown must
                // not be sent twice (a redirect is followed by `Handle` instead: Redis did not
                // run it). Reads are safe to resend, and the client's retries also wait for
                // the reconnection a restarted master needs.
                (connect(0)?, connect(READ_RETRIES)?)
            }
        };
        Ok((
            Connection {
                handle,
                reads,
                timeout,
            },
            target,
        ))
    }

    /// A handle for a call through [`Self::call`] (a read through [`Self::read`] gets its own).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs one Redis call with the timeout. Writes go through here only: a write whose fate is
    /// unknown must not be sent twice.
    pub async fn call<T>(
        &self,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(broker_error),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// Runs a read, and once more on a fresh connection if the connection had been dropped (as
    /// it is when Redis restarts while this node is idle). Reads are safe to send twice.
    pub async fn read<T, F, Fut>(&self, mut attempt: F) -> Result<T, BrokerError>
    where
        F: FnMut(Handle) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if let Handle::Cluster(_) = self.reads {
            return self.read_on_cluster(attempt).await;
        }
        match tokio::time::timeout(self.timeout, attempt(self.reads.clone())).await {
            Ok(Err(e)) if e.is_connection_dropped() || e.is_io_error() => {
                self.call(attempt(self.reads.clone())).await
            }
            Ok(result) => result.map_err(broker_error),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// A read on a cluster: sent again until the timeout while no connection can carry it.
    /// The cluster client reconnects to a restarted master (or learns a moved slot) in the
    /// background, one node at a time, so one immediate retry is not enough there.
    async fn read_on_cluster<T, F, Fut>(&self, mut attempt: F) -> Result<T, BrokerError>
    where
        F: FnMut(Handle) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let reads = async {
            loop {
                match attempt(self.reads.clone()).await {
                    Err(e) if is_connection_lost(&e) || is_redirect(&e) => {
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    result => return result,
                }
            }
        };
        match tokio::time::timeout(self.timeout, reads).await {
            Ok(result) => result.map_err(broker_error),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// Whether Redis can serve requests. One Redis must answer and must not be a node of a
    /// cluster (it would redirect every command); on a cluster, every master this node knows
    /// must answer and report the cluster up with every hash slot served.
    pub async fn ready(&self) -> Result<(), BrokerError> {
        match self.handle() {
            Handle::Single(mut conn) => {
                let _: String = self.call(redis::cmd("PING").query_async(&mut conn)).await?;
                // Best effort: a proxy that does not know INFO is taken at its PING.
                let info: Result<String, _> = self
                    .call(redis::cmd("INFO").arg("cluster").query_async(&mut conn))
                    .await;
                if info.is_ok_and(|info| info_field(&info, "cluster_enabled") == Some("1")) {
                    return Err(BrokerError::unavailable(format!(
                        "this Redis is a node of a cluster: name it with {CLUSTER_SCHEME}://"
                    )));
                }
                Ok(())
            }
            Handle::Cluster(mut conn) => {
                let masters = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let replies = self
                    .call(conn.route_command(redis::cmd("CLUSTER").arg("INFO").to_owned(), masters))
                    .await?;
                let replies: Vec<(String, String)> =
                    redis::from_redis_value(replies).map_err(|e| {
                        BrokerError::Internal(failed("unexpected CLUSTER INFO reply", e))
                    })?;
                if replies.is_empty() {
                    return Err(BrokerError::unavailable("no Redis Cluster master answers"));
                }
                for (node, info) in &replies {
                    cluster_serves_all(info).map_err(|problem| {
                        BrokerError::unavailable(format!("Redis Cluster node {node}: {problem}"))
                    })?;
                }
                Ok(())
            }
        }
    }

    fn timed_out(&self) -> BrokerError {
        BrokerError::unavailable(format!(
            "Redis did not answer within {} ms",
            self.timeout.as_millis()
        ))
    }
}

impl Target {
    fn parse(url: &str) -> Result<Target, BrokerError> {
        let bad = |e: RedisError| BrokerError::Internal(failed("bad Redis URL", e));
        match url.split_once("://") {
            Some((CLUSTER_SCHEME, rest)) => cluster_nodes(rest).map(Target::Cluster).map_err(bad),
            _ => redis::Client::open(url).map(Target::Single).map_err(bad),
        }
    }
}

/// The nodes of `[user:password@]host:port[,host:port…][/…]` (the part after the scheme), each a
/// `redis://` URL with the same credentials and options.
fn cluster_nodes(rest: &str) -> RedisResult<Vec<ConnectionInfo>> {
    let invalid = |detail: &str| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "bad Redis Cluster URL",
            detail.to_owned(),
        ))
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (format!("{user}@"), hosts),
        None => (String::new(), authority),
    };
    let nodes = hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| format!("redis://{user}{host}{tail}").into_connection_info())
        .collect::<RedisResult<Vec<_>>>()?;
    if nodes.is_empty() {
        return Err(invalid(
            "it names no node (redis+cluster://host:port[,host:port…])",
        ));
    }
    if nodes.iter().any(|n| n.redis_settings().db() != 0) {
        return Err(invalid("a Redis Cluster has only database 0"));
    }
    Ok(nodes)
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(conn) => conn.req_packed_command(cmd),
            Handle::Cluster(conn) => Box::pin(cluster_command(conn, cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Handle::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Handle::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(conn) => conn.get_db(),
            Handle::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Sends `cmd` where the cluster connection routes it (waiting while it has no connection for
/// it, as after every master restarted), and once more to the node a `MOVED`
/// reply names: a node that answers `MOVED` did not run the command (the slot has moved, as it
/// does when a cluster is resharded or a replica takes over), so sending it again is safe even
/// for a write.
async fn cluster_command(conn: &mut ClusterConnection, cmd: &Cmd) -> RedisResult<Value> {
    let mut sent = conn.req_packed_command(cmd).await;
    // No connection to send it by: nothing was sent. The caller's timeout bounds the waiting.
    while sent
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::ClusterConnectionNotFound)
    {
        tokio::time::sleep(RETRY_PAUSE).await;
        sent = conn.req_packed_command(cmd).await;
    }
    match sent {
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::Moved) => {
            let Some((host, port)) = e.redirect_node().and_then(|(node, _)| host_port(node)) else {
                return Err(e);
            };
            let node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            conn.route_command(cmd.clone(), node).await
        }
        other => other,
    }
}

/// `host:port` as Redis writes it in a redirect (an IPv6 host is not bracketed).
pub(super) fn host_port(node: &str) -> Option<(String, u16)> {
    let (host, port) = node.rsplit_once(':')?;
    Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
}

/// Every hash slot of a cluster.
const SLOTS: &str = "16384";

/// Whether one node's `CLUSTER INFO` says the cluster is up with every slot served.
fn cluster_serves_all(info: &str) -> Result<(), String> {
    let field = |name| info_field(info, name).unwrap_or("?");
    if field("cluster_state") != "ok" {
        return Err(format!("cluster_state:{}", field("cluster_state")));
    }
    for name in ["cluster_slots_assigned", "cluster_slots_ok"] {
        if field(name) != SLOTS {
            return Err(format!("{name}:{} of {SLOTS}", field(name)));
        }
    }
    Ok(())
}

/// The value of `name` in an `INFO`-style reply (`name:value` lines).
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The connection a command was to go by is gone (or was never there).
fn is_connection_lost(e: &RedisError) -> bool {
    e.is_connection_dropped()
        || e.is_io_error()
        || e.is_connection_refusal()
        || e.kind() == ErrorKind::ClusterConnectionNotFound
}

/// A reply by which Redis says it did not run the command and where to send it instead.
fn is_redirect(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::TryAgain
        )
    )
}

/// Whether Redis could not be reached (nothing was done, try again) or refused the command.
fn broker_error(e: RedisError) -> BrokerError {
    let unavailable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Io
                | ErrorKind::Extension
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                )
        );
    if e.kind() == ErrorKind::Server(ServerErrorKind::Moved) {
        // Also what a node of a cluster answers to a client that takes it for a single Redis.
        tracing::warn!(
            error = %e,
            "Redis sent a command to another node: if it is a cluster, name it with {CLUSTER_SCHEME}://"
        );
    }
    if unavailable {
        BrokerError::Unavailable(Arc::new(e))
    } else {
        tracing::error!(error = %e, "Redis refused a command");
        BrokerError::Internal(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use redis::ConnectionAddr;

    use super::*;

    #[test]
    fn a_cluster_url_names_every_node_with_the_same_credentials() {
        let nodes = cluster_nodes("app:s%40cret@10.0.0.1:7000,10.0.0.2:7001,").expect("valid");
        let addrs: Vec<&ConnectionAddr> = nodes.iter().map(ConnectionInfo::addr).collect();
        assert_eq!(
            addrs,
            [
                &ConnectionAddr::Tcp("10.0.0.1".into(), 7000),
                &ConnectionAddr::Tcp("10.0.0.2".into(), 7001)
            ]
        );
        for node in &nodes {
            assert_eq!(node.redis_settings().username(), Some("app"));
            assert_eq!(node.redis_settings().password(), Some("s@cret"));
        }
        assert!(cluster_nodes("").is_err());
        assert!(
            cluster_nodes("h1:7000,h2:7000/2").is_err(),
            "db 2 on a cluster"
        );
        assert!(cluster_nodes("h1:7000/0").is_ok());
        assert!(matches!(
            Target::parse("redis+cluster://127.0.0.1:7000"),
            Ok(Target::Cluster(n)) if n.len() == 1
        ));
        assert!(matches!(
            Target::parse("redis://127.0.0.1:6379/1"),
            Ok(Target::Single(_))
        ));
    }

    #[test]
    fn a_redirect_names_its_node() {
        assert_eq!(host_port("10.0.0.2:7001"), Some(("10.0.0.2".into(), 7001)));
        assert_eq!(host_port("::1:7001"), Some(("::1".into(), 7001)));
        assert_eq!(host_port("nonsense"), None);
    }

    #[test]
    fn a_cluster_is_ready_only_with_every_slot_served() {
        let up = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n";
        assert_eq!(cluster_serves_all(up), Ok(()));
        let down = up.replace("state:ok", "state:fail");
        assert_eq!(cluster_serves_all(&down), Err("cluster_state:fail".into()));
        // `cluster-require-full-coverage no` keeps the state ok with slots unserved.
        let partial = up.replace("slots_ok:16384", "slots_ok:10923");
        assert!(cluster_serves_all(&partial).is_err());
        assert_eq!(
            info_field("# Cluster\r\ncluster_enabled:1\r\n", "cluster_enabled"),
            Some("1")
        );
        assert_eq!(info_field("cluster_enabled_x:1", "cluster_enabled"), None);
    }
}
