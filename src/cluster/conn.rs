//! The connection to the Redis `[cluster]` names, whichever of the three shapes it is: one
//! server, a master found through Sentinel (found again after every failover), or a Redis
//! Cluster (MOVED/ASK and slot changes followed by the client). Every link period opens it anew,
//! so a failover is followed by rebuilding the link, without a restart.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, IntoConnectionInfo, Pipeline, PushKind, RedisFuture, Value};

use crate::config::cluster::{Cluster as Settings, Topology};

/// Longest wait between two reconnection attempts of a standalone connection.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A command connection to the data nodes; cheap to clone.
#[derive(Clone)]
pub(super) enum Conn {
    /// One server (standalone, or the master Sentinel named at the last resolution).
    Single(ConnectionManager),
    /// A Redis Cluster: each command goes to the node that owns its key's slot.
    Cluster(ClusterConnection),
    /// Not connected yet: every command fails at once.
    Absent,
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Absent => Box::pin(async { Err(not_connected()) }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Self::Absent => Box::pin(async { Err(not_connected()) }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Absent => 0,
        }
    }
}

/// The error of a command sent before any connection was made.
pub(super) fn not_connected() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "cluster link down",
    ))
}

/// What the events subscription yields.
pub(super) enum Message {
    /// A message's payload.
    Payload(Vec<u8>),
    /// The subscription (or, on Redis Cluster, a node connection) was lost: messages may have
    /// been missed, so the link is rebuilt and the set reloaded.
    Lost,
}

/// The events subscription of one link period.
pub(super) type Messages = Pin<Box<dyn Stream<Item = Message> + Send>>;

/// Where the data nodes are found, kept for the life of the process.
pub(super) enum Source {
    Standalone {
        client: redis::Client,
        conn: ConnectionManager,
    },
    Sentinel {
        sentinel: tokio::sync::Mutex<SentinelClient>,
        /// How many sentinels there are, to bound a resolution that asks each in turn.
        count: u32,
    },
    Cluster {
        nodes: Vec<String>,
        username: Option<String>,
        password: Option<String>,
    },
}

impl Source {
    /// The source `settings` name; nothing is connected yet.
    ///
    /// # Errors
    /// The client's error when a URL or a credential is not usable.
    pub(super) fn new(settings: &Settings) -> redis::RedisResult<Self> {
        match &settings.topology {
            Topology::Standalone { url } => {
                let mut info = url.as_str().into_connection_info()?;
                if let Some(password) = &settings.password {
                    let mut redis = info.redis_settings().clone().set_password(password);
                    if let Some(user) = &settings.username {
                        redis = redis.set_username(user);
                    }
                    info = info.set_redis_settings(redis);
                }
                let client = redis::Client::open(info)?;
                let conn = ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    manager_config(settings),
                )?;
                Ok(Self::Standalone { client, conn })
            }
            Topology::Sentinel {
                sentinels,
                master,
                username,
                password,
            } => {
                let addrs = sentinels
                    .iter()
                    .map(|u| u.as_str().into_connection_info().map(|i| i.addr().clone()))
                    .collect::<redis::RedisResult<Vec<_>>>()?;
                let count = u32::try_from(addrs.len()).unwrap_or(u32::MAX);
                let mut b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?;
                if sentinels.iter().all(|u| u.starts_with("rediss://")) {
                    b = b
                        .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                        .set_client_to_redis_tls_mode(redis::TlsMode::Secure);
                }
                if let Some(password) = password {
                    b = b.set_client_to_sentinel_password(password);
                    if let Some(user) = username {
                        b = b.set_client_to_sentinel_username(user);
                    }
                }
                if let Some(password) = &settings.password {
                    b = b.set_client_to_redis_password(password);
                    if let Some(user) = &settings.username {
                        b = b.set_client_to_redis_username(user);
                    }
                }
                Ok(Self::Sentinel {
                    sentinel: tokio::sync::Mutex::new(b.build()?),
                    count,
                })
            }
            Topology::Cluster { nodes } => Ok(Self::Cluster {
                nodes: nodes.clone(),
                username: settings.username.clone(),
                password: settings.password.clone(),
            }),
        }
    }

    /// The command connection before the first link period.
    pub(super) fn initial(&self) -> Conn {
        match self {
            Self::Standalone { conn, .. } => Conn::Single(conn.clone()),
            Self::Sentinel { .. } | Self::Cluster { .. } => Conn::Absent,
        }
    }

    /// Opens one link period: the command connection and the subscription to `channel`, each
    /// step bounded by `connect_timeout_ms`. Through Sentinel, the master is looked up again
    /// (it may have changed); on Redis Cluster, the slot map is read again.
    ///
    /// # Errors
    /// The first step that failed or timed out.
    pub(super) async fn open(
        &self,
        settings: &Settings,
        channel: &str,
    ) -> redis::RedisResult<(Conn, Messages)> {
        let timeout = settings.connect_timeout;
        match self {
            Self::Standalone { client, conn } => {
                let messages = subscribe(client, channel, timeout).await?;
                Ok((Conn::Single(conn.clone()), messages))
            }
            Self::Sentinel { sentinel, count } => {
                // Each sentinel may take a connect timeout, and the master one more.
                let bound = timeout * (count + 1);
                let client = bounded(bound, async {
                    sentinel.lock().await.async_get_client().await
                })
                .await?;
                let messages = subscribe(&client, channel, timeout).await?;
                let conn = bounded(
                    timeout,
                    ConnectionManager::new_with_config(client, manager_config(settings)),
                )
                .await?;
                Ok((Conn::Single(conn), messages))
            }
            Self::Cluster {
                nodes,
                username,
                password,
            } => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let mut b = ClusterClientBuilder::new(nodes.clone())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(tx)
                    .connection_timeout(timeout)
                    .response_timeout(settings.command_timeout)
                    .retries(2);
                if let Some(password) = password {
                    b = b.password(password);
                    if let Some(user) = username {
                        b = b.username(user);
                    }
                }
                let client = b.build()?;
                let mut conn = bounded(timeout, client.get_async_connection()).await?;
                bounded(timeout, conn.subscribe(channel)).await?;
                let messages = futures_util::stream::unfold(rx, |mut rx| async move {
                    let push = rx.recv().await?;
                    let item = match push.kind {
                        PushKind::Message => match push.data.get(1) {
                            Some(Value::BulkString(payload)) => Message::Payload(payload.clone()),
                            _ => Message::Payload(Vec::new()),
                        },
                        PushKind::Disconnection => Message::Lost,
                        _ => return Some((None, rx)),
                    };
                    Some((Some(item), rx))
                })
                .filter_map(|item| async move { item });
                Ok((Conn::Cluster(conn), Box::pin(messages)))
            }
        }
    }

    /// Whether this shape may hand over to a new master at any time (then a `READONLY` answer
    /// means "find the master again", and each resync checks the role).
    pub(super) fn follows_sentinel(&self) -> bool {
        matches!(self, Self::Sentinel { .. })
    }
}

fn manager_config(settings: &Settings) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.command_timeout))
        .set_number_of_retries(1)
        .set_max_delay(MAX_BACKOFF)
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
    timeout: Duration,
) -> redis::RedisResult<Messages> {
    let mut pubsub = bounded(timeout, client.get_async_pubsub()).await?;
    bounded(timeout, pubsub.subscribe(channel)).await?;
    let messages = pubsub
        .into_on_message()
        .map(|m| Message::Payload(m.get_payload_bytes().to_vec()))
        .chain(futures_util::stream::once(async { Message::Lost }));
    Ok(Box::pin(messages))
}

async fn bounded<T>(
    within: Duration,
    op: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(within, op)
        .map(|r| r.unwrap_or_else(|_| Err(timed_out())))
        .await
}

/// The error of a step that ran past its deadline.
pub(super) fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "cluster connect timed out",
    ))
}

/// The masters of a Redis Cluster as `CLUSTER SLOTS` names them (host, port), each once: a key
/// scan must ask every one of them.
///
/// # Errors
/// The command's error, or a reply of another shape.
pub(super) async fn cluster_masters(
    conn: &mut ClusterConnection,
) -> redis::RedisResult<Vec<(String, u16)>> {
    let reply: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let bad =
        || redis::RedisError::from((redis::ErrorKind::Parse, "unexpected CLUSTER SLOTS reply"));
    let Value::Array(ranges) = reply else {
        return Err(bad());
    };
    let mut masters = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            return Err(bad());
        };
        let Some(Value::Array(master)) = fields.get(2) else {
            return Err(bad());
        };
        let host = match master.first() {
            Some(Value::BulkString(h)) => String::from_utf8(h.clone()).map_err(|_| bad())?,
            Some(Value::SimpleString(h)) => h.clone(),
            _ => return Err(bad()),
        };
        let port = match master.get(1) {
            Some(Value::Int(p)) => u16::try_from(*p).map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        if !masters.contains(&(host.clone(), port)) {
            masters.push((host, port));
        }
    }
    Ok(masters)
}
