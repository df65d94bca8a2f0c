//! The connection every request shares, and the rules for using it: every call has a timeout,
//! reads are retried once on a dropped connection, writes never are, and Redis errors become
//! broker errors that keep the Redis error as their source.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RedisResult};

use super::failed;
use crate::broker::BrokerError;

pub struct Connection {
    /// Reconnects by itself. Cloning it is cheap, and each call takes a clone.
    manager: ConnectionManager,
    timeout: Duration,
}

impl Connection {
    /// A connection that connects on first use, and the client the reader opens its own from.
    pub fn open(url: &str, timeout: Duration) -> Result<(Connection, redis::Client), BrokerError> {
        let client = redis::Client::open(url)
            .map_err(|e| BrokerError::Internal(failed("bad Redis URL", e)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| BrokerError::Internal(failed("cannot set up Redis", e)))?;
        Ok((Connection { manager, timeout }, client))
    }

    /// A handle to pass to a Redis call that goes through [`Self::call`] or [`Self::read`].
    pub fn handle(&self) -> ConnectionManager {
        self.manager.clone()
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
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, attempt(self.handle())).await {
            Ok(Err(e)) if e.is_connection_dropped() || e.is_io_error() => {
                self.call(attempt(self.handle())).await
            }
            Ok(result) => result.map_err(broker_error),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> BrokerError {
        BrokerError::unavailable(format!(
            "Redis did not answer within {} ms",
            self.timeout.as_millis()
        ))
    }
}

/// Whether Redis could not be reached (nothing was done, try again) or refused the command.
fn broker_error(e: RedisError) -> BrokerError {
    use redis::{ErrorKind, ServerErrorKind};
    let unavailable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Io
                | ErrorKind::Extension
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
    if unavailable {
        BrokerError::Unavailable(Arc::new(e))
    } else {
        tracing::error!(error = %e, "Redis refused a command");
        BrokerError::Internal(Arc::new(e))
    }
}
