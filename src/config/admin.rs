//! `[admin]`: where health, readiness, metrics and the admin actions are served.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::problem::Problem;
use super::section::{Section, restart_if_changed, socket_addr};

/// Default admin listener address (health, readiness, metrics).
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9090";

/// `[admin]`: health, readiness and metrics.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Socket address to bind.
    pub addr: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADMIN_ADDR.to_owned(),
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone)]
pub struct Admin {
    /// Address to bind.
    pub addr: SocketAddr,
}

/// `[admin]`: an address, not the one the main listener binds (`listen`, when it parsed).
pub(super) fn validate(
    raw: &RawAdmin,
    listen: Option<SocketAddr>,
    p: &mut Vec<Problem>,
) -> Option<Admin> {
    let addr = socket_addr(&raw.addr, "admin.addr", p);
    if let (Some(l), Some(a)) = (listen, addr)
        && l == a
        && l.port() != 0
    {
        p.push(Problem::new("admin.addr", "must differ from listen.addr"));
    }
    Some(Admin { addr: addr? })
}

/// The admin address is bound once, at start.
impl Section for Admin {
    fn restart_keys(&self, next: &Self, keys: &mut Vec<&'static str>) {
        restart_if_changed("admin.addr", &self.addr, &next.addr, keys);
    }
}
