//! The open-file limit at start: the soft RLIMIT_NOFILE raised to the hard one, then weighed
//! against `limits.max_connections`.
//!
//! Many systems start services with a soft limit of 1024 under a far higher hard one; every
//! client connection, its upstream connection and every pooled provider or Redis connection
//! holds a file descriptor, so under 1024 `accept` fails with EMFILE long before
//! `max_connections` is reached.

/// File descriptors one client connection may hold: its socket and its connection to the sync
/// server (a tunnel, or a pooled forward).
pub(crate) const FDS_PER_CONNECTION: u64 = 2;
/// File descriptors besides client connections: the listeners, the admin port and its clients,
/// provider and Redis pools, watched config and certificate files, logs.
pub(crate) const FDS_RESERVED: u64 = 64;

/// The file descriptors `max_connections` open client connections may need.
pub(crate) fn fds_needed(max_connections: usize) -> u64 {
    u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(FDS_PER_CONNECTION)
        .saturating_add(FDS_RESERVED)
}

/// Raises the soft open-file limit to the hard one and logs both; warns when
/// `max_connections` does not fit in the result. Never fails: a limit that cannot be read or
/// raised is logged and the gateway runs with what it has.
#[cfg(unix)]
pub(crate) fn raise(max_connections: usize) {
    use rlimit::Resource;

    let (before, hard) = match Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "open file limit: cannot be read; left as it is");
            return;
        }
    };
    let soft = match rlimit::increase_nofile_limit(hard) {
        Ok(soft) => soft,
        Err(error) => {
            tracing::warn!(
                soft = before,
                hard,
                %error,
                "open file limit: soft limit {before} could not be raised to the hard limit {hard}"
            );
            before
        }
    };
    if soft > before {
        tracing::info!(
            soft,
            hard,
            soft_before = before,
            "open file limit: soft limit raised from {before} to {soft} (hard limit {hard})"
        );
    } else {
        tracing::info!(
            soft,
            hard,
            "open file limit: soft limit {soft} (hard limit {hard})"
        );
    }
    let needed = fds_needed(max_connections);
    if needed > soft {
        tracing::warn!(
            soft,
            hard,
            needed,
            max_connections,
            "limits.max_connections = {max_connections} needs up to {needed} file descriptors \
             ({FDS_PER_CONNECTION} a connection + {FDS_RESERVED}), more than the open file \
             limit {soft}: raise the hard limit (ulimit -Hn, systemd LimitNOFILE=, the container \
             runtime's nofile ulimit) or lower limits.max_connections"
        );
    }
}

/// Nothing to raise where RLIMIT_NOFILE does not exist.
#[cfg(not(unix))]
pub(crate) fn raise(_max_connections: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fds_needed_counts_two_a_connection_and_a_reserve() {
        assert_eq!(fds_needed(0), 64);
        assert_eq!(fds_needed(1000), 2064);
        assert_eq!(fds_needed(usize::MAX), u64::MAX);
    }
}
