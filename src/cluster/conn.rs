//! The connection to the Redis `[cluster]` names, whichever of the three shapes it is: one
//! server, a master found through Sentinel (found again after every failover), or a Redis
//! Cluster (MOVED/ASK and slot changes followed by the client). Every link period opens it anew,
//! so a failover is followed by rebuilding the link, without a restart.
//!
//! Through Sentinel with `tls_server_name`, the master is looked up here (not by the crate, which
//! dials the announced address and checks its certificate against it): the connections to the
//! announced address are made by hand, TLS verified against the configured name, and handed to
//! the crate's connection types.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection, PubSub,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, PushKind,
    RedisConnectionInfo, RedisFuture, Value,
};
use rustls::pki_types::ServerName;

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
    /// One connection to the master, made by hand (Sentinel with `tls_server_name`); when it
    /// drops, the link period ends and the next one looks the master up again.
    Named(MultiplexedConnection),
    /// Not connected yet: every command fails at once.
    Absent,
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Named(c) => c.req_packed_command(cmd),
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
            Self::Named(c) => c.req_packed_commands(cmd, offset, count),
            Self::Absent => Box::pin(async { Err(not_connected()) }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Named(c) => c.get_db(),
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
    /// Sentinel, with the master's certificate checked against `tls_server_name`.
    NamedSentinel(Named),
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
                tls_server_name: Some(name),
            } => Ok(Self::NamedSentinel(Named::new(
                sentinels,
                master,
                username.as_deref(),
                password.as_deref(),
                name,
                settings,
            )?)),
            Topology::Sentinel {
                sentinels,
                master,
                username,
                password,
                tls_server_name: None,
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
            Self::Sentinel { .. } | Self::NamedSentinel(_) | Self::Cluster { .. } => Conn::Absent,
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
            Self::NamedSentinel(named) => {
                let (conn, messages) = named.open(settings, channel).await?;
                Ok((Conn::Named(conn), messages))
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
        matches!(self, Self::Sentinel { .. } | Self::NamedSentinel(_))
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

// === Sentinel with a TLS server name ===

/// The sentinels and what the master's connections need when its certificate is checked against
/// `tls_server_name` instead of the address the sentinels announce.
pub(super) struct Named {
    /// Each sentinel, with the sentinels' credentials.
    sentinels: Vec<ConnectionInfo>,
    /// The master name the sentinels watch.
    master: String,
    /// The name the master's certificate must carry.
    server_name: ServerName<'static>,
    /// The data nodes' credentials, database 0.
    redis: RedisConnectionInfo,
}

// === impl Named ===

impl Named {
    fn new(
        sentinels: &[String],
        master: &str,
        username: Option<&str>,
        password: Option<&str>,
        tls_server_name: &str,
        settings: &Settings,
    ) -> redis::RedisResult<Self> {
        let sentinels = sentinels
            .iter()
            .map(|url| {
                let info = url.as_str().into_connection_info()?;
                let Some(password) = password else {
                    return Ok(info);
                };
                let mut redis = info.redis_settings().clone().set_password(password);
                if let Some(user) = username {
                    redis = redis.set_username(user);
                }
                Ok(info.set_redis_settings(redis))
            })
            .collect::<redis::RedisResult<Vec<_>>>()?;
        let server_name = ServerName::try_from(tls_server_name.to_owned()).map_err(|_| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "cluster.tls_server_name is not a DNS name",
            ))
        })?;
        let mut redis = RedisConnectionInfo::default();
        if let Some(password) = &settings.password {
            redis = redis.set_password(password);
            if let Some(user) = &settings.username {
                redis = redis.set_username(user);
            }
        }
        Ok(Self {
            sentinels,
            master: master.to_owned(),
            server_name,
            redis,
        })
    }

    /// Looks the master up, checks it answers `ROLE` as master, and opens the command connection
    /// and the subscription to `channel` on it, each over its own TLS connection. The stream of
    /// messages also ends (with [`Message::Lost`]) when the command connection drops.
    async fn open(
        &self,
        settings: &Settings,
        channel: &str,
    ) -> redis::RedisResult<(MultiplexedConnection, Messages)> {
        let timeout = settings.connect_timeout;
        let (host, port) = self.master_addr(settings).await?;
        // Read for every period, as the crate does for each `rediss://` connection, so a
        // replaced bundle is picked up at the next reconnect.
        let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config()?));

        let stream = bounded(timeout, self.dial(&tls, &host, port)).await?;
        let config =
            AsyncConnectionConfig::new().set_response_timeout(Some(settings.command_timeout));
        let (mut conn, driver) = bounded(
            timeout,
            MultiplexedConnection::new_with_config(&self.redis, stream, config),
        )
        .await?;
        let (ended, dropped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            driver.await;
            let _ = ended.send(());
        });
        if !is_master(&mut conn, settings.command_timeout).await? {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                "the node the sentinels announce is not a master",
            )));
        }

        let stream = bounded(timeout, self.dial(&tls, &host, port)).await?;
        let mut pubsub = bounded(timeout, PubSub::new(&self.redis, stream)).await?;
        bounded(timeout, pubsub.subscribe(channel)).await?;
        let messages = pubsub
            .into_on_message()
            .map(|m| Message::Payload(m.get_payload_bytes().to_vec()))
            .chain(futures_util::stream::once(async { Message::Lost }));
        let dropped = futures_util::stream::once(dropped).map(|_| Message::Lost);
        Ok((
            conn,
            Box::pin(futures_util::stream::select(messages, dropped)),
        ))
    }

    /// The master's address as the first sentinel that answers names it, when that sentinel
    /// holds it up (flags `master`, neither `s_down` nor `o_down`); each sentinel is asked in
    /// turn, each within `connect_timeout_ms`.
    async fn master_addr(&self, settings: &Settings) -> redis::RedisResult<(String, u16)> {
        let mut last = redis::RedisError::from((
            redis::ErrorKind::MasterNameNotFoundBySentinel,
            "no sentinel names a master that is up",
        ));
        for info in &self.sentinels {
            let asked = bounded(settings.connect_timeout, async {
                let client = redis::Client::open(info.clone())?;
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(Some(settings.command_timeout));
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("MASTER")
                    .arg(&self.master)
                    .query_async::<HashMap<String, String>>(&mut conn)
                    .await
            })
            .await;
            match asked.map(|fields| master_of(&fields, &self.master)) {
                Ok(Some(addr)) => return Ok(addr),
                Ok(None) => {}
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// A TLS connection to `host:port` whose certificate must carry `tls_server_name`.
    async fn dial(
        &self,
        tls: &tokio_rustls::TlsConnector,
        host: &str,
        port: u16,
    ) -> redis::RedisResult<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        Ok(tls.connect(self.server_name.clone(), tcp).await?)
    }
}

/// The address in a `SENTINEL MASTER` reply when it names `master` and holds it up.
fn master_of(fields: &HashMap<String, String>, master: &str) -> Option<(String, u16)> {
    let flags = fields.get("flags")?;
    let up = flags.split(',').any(|f| f == "master")
        && !flags.split(',').any(|f| matches!(f, "s_down" | "o_down"));
    if !up || fields.get("name").map(String::as_str) != Some(master) {
        return None;
    }
    let port = fields.get("port")?.parse().ok()?;
    Some((fields.get("ip")?.clone(), port))
}

/// Whether the node behind `conn` answers `ROLE` as a master.
async fn is_master(conn: &mut MultiplexedConnection, within: Duration) -> redis::RedisResult<bool> {
    let role: Vec<Value> = bounded(within, redis::cmd("ROLE").query_async(conn)).await?;
    Ok(match role.first() {
        Some(Value::BulkString(r)) => r == b"master",
        Some(Value::SimpleString(r)) => r == "master",
        _ => false,
    })
}

/// A client configuration over the platform's roots, the ones the crate trusts for `rediss://`
/// (`SSL_CERT_FILE` and `SSL_CERT_DIR` replace them, as for every `rediss://` connection).
fn tls_config() -> redis::RedisResult<rustls::ClientConfig> {
    let found = rustls_native_certs::load_native_certs();
    if let Some(error) = found.errors.into_iter().next() {
        return Err(std::io::Error::other(format!(
            "cannot load the platform's root certificates: {error}"
        ))
        .into());
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(name: &str, flags: &str, port: &str) -> HashMap<String, String> {
        [
            ("name", name),
            ("ip", "10.0.0.7"),
            ("port", port),
            ("flags", flags),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn master_of_a_sentinel_reply_only_when_named_and_up() {
        assert_eq!(
            master_of(&reply("m", "master", "6379"), "m"),
            Some(("10.0.0.7".to_owned(), 6379))
        );
        for (name, flags, port) in [
            ("other", "master", "6379"),
            ("m", "master,s_down", "6379"),
            ("m", "master,o_down", "6379"),
            ("m", "slave", "6379"),
            ("m", "master", "70000"),
            ("m", "master", "x"),
        ] {
            assert_eq!(
                master_of(&reply(name, flags, port), "m"),
                None,
                "{name} {flags} {port}"
            );
        }
    }
}
