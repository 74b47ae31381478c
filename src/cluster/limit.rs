//! The login rate limit shared by every replica: one GCRA cell per client address in Redis, so a
//! client spreading its logins over N replicas gets the configured rate, not N times it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;

use super::Cluster;

/// Key kind of the per-address limiter cells.
const LIMIT_KIND: &str = "rl";

/// GCRA in one script, so the check and the update are one step on the node holding the key.
/// The cell is the "theoretical arrival time" in microseconds of Redis' clock (one clock for
/// every replica); it expires when it stops mattering. Returns 1 when admitted, 0 when not.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next = tat + interval
if next - now > interval * burst then return 0 end
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000))
return 1
";

impl Cluster {
    /// Whether a login from `ip` fits `per_second` with bursts of `burst`, counted across every
    /// replica: `Some(false)` when over the limit, `None` when Redis could not answer within
    /// `command_timeout_ms` (the caller falls back on its own limiter; the first fallback of an
    /// outage is logged).
    pub(crate) async fn login_admitted(
        &self,
        ip: IpAddr,
        per_second: NonZeroU32,
        burst: NonZeroU32,
    ) -> Option<bool> {
        let interval_us = 1_000_000 / u64::from(per_second.get());
        let mut conn = self.conn();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(GCRA)
            .arg(1)
            .arg(self.key(LIMIT_KIND, &ip.to_string()))
            .arg(interval_us.max(1))
            .arg(burst.get());
        let admitted = self
            .bounded("login_limit", cmd.query_async::<i64>(&mut conn))
            .await
            .map(|n| n == 1);
        if admitted.is_none() && !self.limit_fallback_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "cluster store unreachable: login rate limits are counted per replica until it is back"
            );
        }
        admitted
    }
}
