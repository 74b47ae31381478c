//! `[cluster]`: the validated Redis settings that let replicas share revocations, tickets, learned
//! tokens and decisions. Passwords are kept out of every `Debug` output and problem message.

use std::fmt;
use std::time::Duration;

use super::problem::Problem;
use super::raw::{RawCluster, redacted_url};

/// The longest `resync_interval_ms` accepted: a dropped message lives at most this long.
const MAX_RESYNC_INTERVAL_MS: u64 = 300_000;

/// Which Redis drawbridge talks to: exactly one of the three shapes.
#[derive(Clone, PartialEq, Eq)]
pub enum Topology {
    /// One Redis at `redis_url` (`redis://` or `rediss://`, possibly with credentials, never
    /// printed).
    Standalone {
        /// The URL.
        url: String,
    },
    /// A master found through Sentinel, followed through failovers.
    Sentinel {
        /// The sentinels' URLs, all `redis://` or all `rediss://` (then the master is reached
        /// over TLS too).
        sentinels: Vec<String>,
        /// The master name the sentinels watch.
        master: String,
        /// The sentinels' AUTH username.
        username: Option<String>,
        /// The sentinels' AUTH password (never printed).
        password: Option<String>,
        /// The name the master's certificate is verified against instead of the address the
        /// sentinels announce (`rediss://` only).
        tls_server_name: Option<String>,
    },
    /// A Redis Cluster, reached through these seed nodes.
    Cluster {
        /// Seed node URLs, all `redis://` or all `rediss://`.
        nodes: Vec<String>,
    },
}

impl Topology {
    /// The topology as the log shows it: its addresses, credentials redacted.
    #[must_use]
    pub fn shown(&self) -> String {
        let list = |urls: &[String]| {
            urls.iter()
                .map(|u| redacted_url(u))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Self::Standalone { url } => redacted_url(url),
            Self::Sentinel {
                sentinels, master, ..
            } => format!("sentinel:{master}@{}", list(sentinels)),
            Self::Cluster { nodes } => format!("cluster:{}", list(nodes)),
        }
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Standalone { .. } | Self::Cluster { .. } => f.write_str(&self.shown()),
            Self::Sentinel {
                username,
                password,
                tls_server_name,
                ..
            } => f
                .debug_struct("Sentinel")
                .field("at", &self.shown())
                .field("username", username)
                .field("password", &password.as_ref().map(|_| "<redacted>"))
                .field("tls_server_name", tls_server_name)
                .finish(),
        }
    }
}

/// `[cluster]`, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Where Redis is.
    pub topology: Topology,
    /// AUTH username of the data nodes.
    pub username: Option<String>,
    /// AUTH password of the data nodes (never printed).
    pub password: Option<String>,
    /// Prefix of every key and channel.
    pub key_prefix: String,
    /// Deadline of a connection attempt.
    pub connect_timeout: Duration,
    /// Deadline of one command.
    pub command_timeout: Duration,
    /// Period of the full revocation reload.
    pub resync_interval: Duration,
    /// `/readyz` answers 503 while Redis is unreachable.
    pub required: bool,
    /// The decision cache has a shared second level.
    pub shared_decisions: bool,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("topology", &self.topology)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("resync_interval", &self.resync_interval)
            .field("required", &self.required)
            .field("shared_decisions", &self.shared_decisions)
            .finish()
    }
}

/// Checks a `redis_url` whole: `redis://` or `rediss://`, a host, a numeric port (1-65535) when
/// one is given, and a database number as the only path segment; no query, no fragment (the
/// client would read `#insecure` as "skip certificate checks"). The reason never repeats the URL,
/// which may hold a password.
fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err(
            "must be set (e.g. \"redis://redis:6379\" or \"rediss://redis:6380\")".to_owned(),
        );
    }
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("must start with redis:// or rediss://".to_owned());
    }
    let parsed = url::Url::parse(url).map_err(|e| match e {
        url::ParseError::InvalidPort => {
            "has a port that is not a number from 1 to 65535".to_owned()
        }
        url::ParseError::EmptyHost => "has no host".to_owned(),
        other => format!("is not a valid URL: {other}"),
    })?;
    match parsed.host_str() {
        None | Some("") => return Err("has no host".to_owned()),
        Some("0.0.0.0" | "[::]") => {
            return Err("names a wildcard address, not a host to connect to".to_owned());
        }
        Some(_) => {}
    }
    if parsed.port() == Some(0) {
        return Err("has a port that is not a number from 1 to 65535".to_owned());
    }
    let db = parsed.path().strip_prefix('/').unwrap_or(parsed.path());
    let db_number =
        db.len() <= 5 && db.bytes().all(|b| b.is_ascii_digit()) && db.parse::<u16>().is_ok();
    if !db.is_empty() && !db_number {
        return Err(
            "has a path that is not a database number (e.g. redis://redis:6379/0)".to_owned(),
        );
    }
    if parsed.query().is_some() {
        return Err("must not have a query (?...)".to_owned());
    }
    if parsed.fragment().is_some() {
        return Err(
            "must not have a fragment (#...): #insecure would turn off certificate checks"
                .to_owned(),
        );
    }
    Ok(())
}

/// Checks `[cluster]`, pushing one [`Problem`] per bad key.
pub(super) fn validate(raw: &RawCluster, p: &mut Vec<Problem>) -> Option<Cluster> {
    let before = p.len();
    let topology = topology(raw, p);
    if raw.password.as_deref().is_some_and(str::is_empty) {
        p.push(Problem::new(
            "cluster.password",
            "is empty; remove it or give it through ${file:..} or ${env:..}",
        ));
    }
    if raw.username.is_some() && raw.password.is_none() {
        p.push(Problem::new("cluster.username", "needs cluster.password"));
    }
    if raw.key_prefix.contains(char::is_whitespace) {
        p.push(Problem::new(
            "cluster.key_prefix",
            "must not contain whitespace",
        ));
    }
    for (key, v) in [
        ("cluster.connect_timeout_ms", raw.connect_timeout_ms),
        ("cluster.command_timeout_ms", raw.command_timeout_ms),
        ("cluster.resync_interval_ms", raw.resync_interval_ms),
    ] {
        if v == 0 {
            p.push(Problem::new(key, "must be greater than 0"));
        }
    }
    if raw.resync_interval_ms > MAX_RESYNC_INTERVAL_MS {
        p.push(Problem::new(
            "cluster.resync_interval_ms",
            format!(
                "must be at most {MAX_RESYNC_INTERVAL_MS}: a missed revocation lives that long"
            ),
        ));
    }
    let topology = topology?;
    (p.len() == before).then(|| Cluster {
        topology,
        username: raw.username.clone(),
        password: raw.password.clone(),
        key_prefix: raw.key_prefix.clone(),
        connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
        command_timeout: Duration::from_millis(raw.command_timeout_ms),
        resync_interval: Duration::from_millis(raw.resync_interval_ms),
        required: raw.required,
        shared_decisions: raw.shared_decisions,
    })
}

/// The Redis link is set up once, at start.
impl super::section::Section for Option<Cluster> {
    fn restart_keys(&self, next: &Self, keys: &mut Vec<&'static str>) {
        super::section::restart_if_changed("cluster", self, next, keys);
    }
}

/// Checks that exactly one of `redis_url`, `sentinels`, `cluster_nodes` is set, and that one whole.
fn topology(raw: &RawCluster, p: &mut Vec<Problem>) -> Option<Topology> {
    let url = raw.redis_url.trim();
    let chosen = [
        !url.is_empty(),
        raw.sentinels.is_some(),
        raw.cluster_nodes.is_some(),
    ];
    if chosen.iter().filter(|c| **c).count() > 1 {
        p.push(Problem::new(
            "cluster",
            "set exactly one of redis_url (standalone), sentinels (with sentinel_master) or \
             cluster_nodes (Redis Cluster), not several",
        ));
        return None;
    }
    if raw.sentinels.is_none() {
        for (key, set) in [
            ("cluster.sentinel_master", raw.sentinel_master.is_some()),
            ("cluster.sentinel_username", raw.sentinel_username.is_some()),
            ("cluster.sentinel_password", raw.sentinel_password.is_some()),
        ] {
            if set {
                p.push(Problem::new(key, "applies only with cluster.sentinels"));
            }
        }
        if raw.tls_server_name.is_some() {
            p.push(Problem::new(
                "cluster.tls_server_name",
                "applies only with cluster.sentinels (rediss://): redis_url and cluster_nodes \
                 certificates are checked against the hosts in their URLs",
            ));
        }
    }
    if let Some(sentinels) = &raw.sentinels {
        let before = p.len();
        let sentinels = url_list("cluster.sentinels", sentinels, p);
        let master = raw.sentinel_master.as_deref().map(str::trim).unwrap_or("");
        if master.is_empty() {
            p.push(Problem::new(
                "cluster.sentinel_master",
                "must be set with cluster.sentinels: the master name the sentinels watch",
            ));
        }
        if raw.sentinel_password.as_deref().is_some_and(str::is_empty) {
            p.push(Problem::new(
                "cluster.sentinel_password",
                "is empty; remove it or give it through ${file:..} or ${env:..}",
            ));
        }
        if raw.sentinel_username.is_some() && raw.sentinel_password.is_none() {
            p.push(Problem::new(
                "cluster.sentinel_username",
                "needs cluster.sentinel_password",
            ));
        }
        for url in &sentinels {
            if url_has_credentials(url) {
                p.push(Problem::new(
                    "cluster.sentinels",
                    "must not carry credentials: use cluster.sentinel_username and \
                     cluster.sentinel_password (and cluster.username/password for the master)",
                ));
                break;
            }
        }
        let tls_server_name = raw.tls_server_name.as_deref().map(str::trim);
        if let Some(name) = tls_server_name {
            check_tls_server_name(name, &sentinels, p);
        }
        return (p.len() == before).then(|| Topology::Sentinel {
            sentinels,
            master: master.to_owned(),
            username: raw.sentinel_username.clone(),
            password: raw.sentinel_password.clone(),
            tls_server_name: tls_server_name.map(str::to_owned),
        });
    }
    if let Some(nodes) = &raw.cluster_nodes {
        let before = p.len();
        let nodes = url_list("cluster.cluster_nodes", nodes, p);
        return (p.len() == before).then_some(Topology::Cluster { nodes });
    }
    if let Err(why) = check_url(url) {
        p.push(Problem::new(
            "cluster.redis_url",
            format!("{why}; or set cluster.sentinels or cluster.cluster_nodes instead"),
        ));
        return None;
    }
    Some(Topology::Standalone {
        url: url.to_owned(),
    })
}

/// Checks a list of node URLs: not empty, each whole, all with TLS or all without, and database
/// 0 only (Redis Cluster has no other; through Sentinel the master's is 0).
fn url_list(key: &str, urls: &[String], p: &mut Vec<Problem>) -> Vec<String> {
    if urls.is_empty() {
        p.push(Problem::new(key, "is empty: list at least one address"));
    }
    let urls: Vec<String> = urls.iter().map(|u| u.trim().to_owned()).collect();
    for (i, url) in urls.iter().enumerate() {
        if let Err(why) = check_url(url) {
            p.push(Problem::new(format!("{key}[{i}]"), why));
        } else if url::Url::parse(url)
            .is_ok_and(|u| !matches!(u.path().trim_start_matches('/'), "" | "0"))
        {
            p.push(Problem::new(
                format!("{key}[{i}]"),
                "names a database other than 0; only database 0 is used here",
            ));
        }
    }
    let tls = urls.iter().filter(|u| u.starts_with("rediss://")).count();
    if tls != 0 && tls != urls.len() {
        p.push(Problem::new(
            key,
            "mixes redis:// and rediss://: use TLS for all nodes or for none",
        ));
    }
    urls
}

/// Checks `tls_server_name`: a DNS name (the certificate of whichever master the sentinels
/// announce must carry it), and only where the master is reached over TLS at all.
fn check_tls_server_name(name: &str, sentinels: &[String], p: &mut Vec<Problem>) {
    let dns = matches!(
        rustls::pki_types::ServerName::try_from(name),
        Ok(rustls::pki_types::ServerName::DnsName(_))
    );
    if !dns {
        p.push(Problem::new(
            "cluster.tls_server_name",
            "must be a DNS name (e.g. \"redis.internal\"), not empty and not an IP address",
        ));
    }
    if !sentinels.is_empty() && !sentinels.iter().all(|u| u.starts_with("rediss://")) {
        p.push(Problem::new(
            "cluster.tls_server_name",
            "needs rediss:// sentinels: with redis:// the master is reached without TLS, so no \
             certificate name is checked",
        ));
    }
}

fn url_has_credentials(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml: &str) -> RawCluster {
        toml::from_str(toml).expect("valid TOML for [cluster]")
    }

    fn problems(toml: &str) -> Vec<String> {
        let mut p = Vec::new();
        let out = validate(&raw(toml), &mut p);
        assert_eq!(out.is_none(), !p.is_empty(), "a result beside problems");
        p.iter().map(|x| format!("{x}")).collect()
    }

    fn topology_of(toml: &str) -> Topology {
        let mut p = Vec::new();
        let c = validate(&raw(toml), &mut p);
        assert!(p.is_empty(), "{:?}", problems(toml));
        c.expect("valid").topology
    }

    #[test]
    fn each_topology_alone_is_accepted() {
        assert!(matches!(
            topology_of("redis_url = \"redis://r:6379/2\""),
            Topology::Standalone { .. }
        ));
        let sentinel = topology_of(
            "sentinels = [\"redis://s1:26379\", \"redis://s2:26379\"]\n\
             sentinel_master = \"mymaster\"\nsentinel_username = \"su\"\n\
             sentinel_password = \"MARK-sentinel-pw\"\npassword = \"MARK-data-pw\"",
        );
        let Topology::Sentinel {
            sentinels, master, ..
        } = &sentinel
        else {
            panic!("not sentinel: {sentinel:?}");
        };
        assert_eq!(sentinels.len(), 2);
        assert_eq!(master, "mymaster");
        let shown = format!("{sentinel:?}");
        assert!(!shown.contains("MARK"), "a password in Debug: {shown}");
        assert!(matches!(
            topology_of("cluster_nodes = [\"rediss://c1:6379\", \"rediss://c2:6379/0\"]"),
            Topology::Cluster { .. }
        ));
    }

    #[test]
    fn sentinel_password_is_redacted_in_every_debug() {
        let text = "sentinels = [\"redis://s:26379\"]\nsentinel_master = \"m\"\n\
                    sentinel_password = \"MARK-sentinel-pw\"";
        assert!(!format!("{:?}", raw(text)).contains("MARK"));
        let mut p = Vec::new();
        let c = validate(&raw(text), &mut p).unwrap();
        assert!(!format!("{c:?}").contains("MARK"));
    }

    #[test]
    fn a_mix_of_topologies_is_refused() {
        for text in [
            "redis_url = \"redis://r\"\nsentinels = [\"redis://s:26379\"]\nsentinel_master = \"m\"",
            "redis_url = \"redis://r\"\ncluster_nodes = [\"redis://c:6379\"]",
            "sentinels = [\"redis://s:26379\"]\nsentinel_master = \"m\"\ncluster_nodes = [\"redis://c:6379\"]",
        ] {
            let p = problems(text);
            assert!(p.iter().any(|x| x.contains("exactly one")), "{text}: {p:?}");
        }
    }

    #[test]
    fn none_set_names_all_three_choices() {
        let p = problems("key_prefix = \"x:\"");
        assert!(
            p.iter().any(|x| x.contains("cluster.redis_url")
                && x.contains("sentinels")
                && x.contains("cluster_nodes")),
            "{p:?}"
        );
    }

    #[test]
    fn empty_lists_are_refused() {
        let p = problems("sentinels = []\nsentinel_master = \"m\"");
        assert!(
            p.iter()
                .any(|x| x.contains("cluster.sentinels") && x.contains("empty")),
            "{p:?}"
        );
        let p = problems("cluster_nodes = []");
        assert!(
            p.iter()
                .any(|x| x.contains("cluster.cluster_nodes") && x.contains("empty")),
            "{p:?}"
        );
    }

    #[test]
    fn sentinels_without_a_master_name_are_refused() {
        for text in [
            "sentinels = [\"redis://s:26379\"]",
            "sentinels = [\"redis://s:26379\"]\nsentinel_master = \"  \"",
        ] {
            let p = problems(text);
            assert!(
                p.iter().any(|x| x.contains("cluster.sentinel_master")),
                "{p:?}"
            );
        }
    }

    #[test]
    fn sentinel_keys_without_sentinels_are_refused() {
        let p = problems(
            "redis_url = \"redis://r\"\nsentinel_master = \"m\"\nsentinel_password = \"pw\"",
        );
        assert!(
            p.iter().any(|x| x.contains("cluster.sentinel_master")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|x| x.contains("cluster.sentinel_password")),
            "{p:?}"
        );
    }

    #[test]
    fn sentinel_credentials_must_be_whole_and_out_of_the_urls() {
        let p = problems(
            "sentinels = [\"redis://:MARK@s:26379\"]\nsentinel_master = \"m\"\nsentinel_username = \"u\"",
        );
        assert!(
            p.iter()
                .any(|x| x.contains("cluster.sentinels") && x.contains("credentials")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|x| x.contains("cluster.sentinel_username")),
            "{p:?}"
        );
        assert!(
            !p.iter().any(|x| x.contains("MARK")),
            "a password in a problem: {p:?}"
        );
    }

    #[test]
    fn a_database_other_than_0_with_redis_cluster_is_refused() {
        let p = problems("cluster_nodes = [\"redis://c1:6379\", \"redis://c2:6379/3\"]");
        assert!(
            p.iter()
                .any(|x| x.contains("cluster.cluster_nodes[1]") && x.contains("database")),
            "{p:?}"
        );
    }

    #[test]
    fn bad_node_urls_and_mixed_tls_are_refused() {
        let p = problems("cluster_nodes = [\"http://c1:6379\", \"redis://c2\", \"rediss://c3\"]");
        assert!(
            p.iter().any(|x| x.contains("cluster.cluster_nodes[0]")),
            "{p:?}"
        );
        assert!(p.iter().any(|x| x.contains("mixes")), "{p:?}");
    }

    #[test]
    fn tls_server_name_with_tls_sentinels_is_kept() {
        let topology = topology_of(
            "sentinels = [\"rediss://s1:26379\", \"rediss://s2:26379\"]\n\
             sentinel_master = \"m\"\ntls_server_name = \"redis.internal\"",
        );
        let Topology::Sentinel {
            tls_server_name, ..
        } = topology
        else {
            panic!("not sentinel");
        };
        assert_eq!(tls_server_name.as_deref(), Some("redis.internal"));
    }

    #[test]
    fn tls_server_name_outside_tls_sentinels_is_refused() {
        for text in [
            "redis_url = \"rediss://r:6380\"\ntls_server_name = \"redis.internal\"",
            "cluster_nodes = [\"rediss://c:6379\"]\ntls_server_name = \"redis.internal\"",
            "sentinels = [\"redis://s:26379\"]\nsentinel_master = \"m\"\n\
             tls_server_name = \"redis.internal\"",
        ] {
            let p = problems(text);
            assert!(
                p.iter().any(|x| x.contains("cluster.tls_server_name")),
                "{text}: {p:?}"
            );
        }
    }

    #[test]
    fn tls_server_name_that_is_no_dns_name_is_refused() {
        for name in [
            "",
            "  ",
            "127.0.0.1",
            "::1",
            "bad name",
            "under_score!.example",
        ] {
            let text = format!(
                "sentinels = [\"rediss://s:26379\"]\nsentinel_master = \"m\"\n\
                 tls_server_name = {name:?}"
            );
            let p = problems(&text);
            assert!(
                p.iter()
                    .any(|x| x.contains("cluster.tls_server_name") && x.contains("DNS name")),
                "{name:?}: {p:?}"
            );
        }
    }
}
