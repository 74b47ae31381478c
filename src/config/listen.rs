//! `[listen]`: the client-facing listener: where it binds, its queue, the PROXY protocol and the
//! proxies whose forwarding headers name the client.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::problem::Problem;
use super::section::{Section, restart_if_changed, socket_addr};

/// Default main listener address.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8443";
/// `listen.backlog`: connections the kernel queues before drawbridge accepts them (capped by
/// `net.core.somaxconn`). A reconnect storm after a replica dies arrives faster than any accept loop.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
/// `listen.plaintext`: TLS is on.
pub const DEFAULT_LISTEN_PLAINTEXT: bool = false;
/// `listen.proxy_protocol`: connections start with the client's own bytes.
pub const DEFAULT_LISTEN_PROXY_PROTOCOL: bool = false;

/// `[listen]`: the client-facing listener.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawListen {
    /// Socket address to bind.
    pub addr: String,
    /// Serve plain HTTP (a mesh terminates TLS in front).
    pub plaintext: bool,
    /// Listen queue length.
    pub backlog: u32,
    /// Read a PROXY protocol header (v1 or v2) before TLS; connections without one are refused.
    pub proxy_protocol: bool,
    /// CIDRs (or single addresses) of proxies whose `X-Forwarded-For`/`Forwarded` is believed.
    pub trusted_proxies: Vec<String>,
}

impl Default for RawListen {
    fn default() -> Self {
        Self {
            addr: DEFAULT_LISTEN_ADDR.to_owned(),
            plaintext: DEFAULT_LISTEN_PLAINTEXT,
            backlog: DEFAULT_LISTEN_BACKLOG,
            proxy_protocol: DEFAULT_LISTEN_PROXY_PROTOCOL,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[listen]`
#[derive(Debug, Clone)]
pub struct Listen {
    /// Address to bind.
    pub addr: SocketAddr,
    /// Listen queue length.
    pub backlog: u32,
    /// Every connection opens with a PROXY protocol header (v1 or v2), read before TLS; the
    /// address it names is the connection's client.
    pub proxy_protocol: bool,
    /// Proxies whose `X-Forwarded-For`/`Forwarded` name the client.
    pub trusted_proxies: TrustedProxies,
}

/// `[listen]`: an address, a queue length the kernel takes, trusted proxies that parse.
pub(super) fn validate(raw: &RawListen, p: &mut Vec<Problem>) -> Option<Listen> {
    let addr = socket_addr(&raw.addr, "listen.addr", p);
    if !(1..=65_535).contains(&raw.backlog) {
        p.push(Problem::new(
            "listen.backlog",
            "must be between 1 and 65535",
        ));
    }
    let trusted_proxies = TrustedProxies::parse(&raw.trusted_proxies, "listen.trusted_proxies", p);
    Some(Listen {
        addr: addr?,
        backlog: raw.backlog,
        proxy_protocol: raw.proxy_protocol,
        trusted_proxies,
    })
}

/// The bound address and the listen queue are set up once, at start.
impl Section for Listen {
    fn restart_keys(&self, next: &Self, keys: &mut Vec<&'static str>) {
        restart_if_changed("listen.addr", &self.addr, &next.addr, keys);
        restart_if_changed("listen.backlog", &self.backlog, &next.backlog, keys);
    }
}

/// `listen.trusted_proxies`: the networks whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

// === impl TrustedProxies ===

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

impl TrustedProxies {
    /// Whether `ip` lies in one of the networks (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses CIDRs or single addresses; each entry that is neither, or a CIDR with host bits
    /// set (a typo more often than not), is a problem at `key.i`.
    fn parse(entries: &[String], key: &str, p: &mut Vec<Problem>) -> Self {
        let mut nets = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let text = entry.trim();
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) if net.trunc() != net => p.push(Problem::new(
                    format!("{key}.{i}"),
                    format!(
                        "{text:?} has host bits set; write the network, e.g. \"{}\"",
                        net.trunc()
                    ),
                )),
                Ok(net) => nets.push(net),
                Err(_) => p.push(Problem::new(
                    format!("{key}.{i}"),
                    format!(
                        "{text:?} is not a CIDR or an IP address (e.g. \"10.0.0.0/8\" or \"fd00::/8\")"
                    ),
                )),
            }
        }
        Self(nets)
    }
}
