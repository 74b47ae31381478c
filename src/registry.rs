//! Open tunnels by session: so a refresh can move their deadline and a logout, a revocation or
//! shutdown can close them.
//!
//! Every tunnel is registered, whatever its gate. A public tunnel has no session and no user,
//! and a tunnel admitted by a learned Ditto token has a user but no session: they are kept
//! under `None`, so no session ID or user ID (not even `""`) ever names them, and only shutdown
//! closes them.
//! Shutdown seals the registry, so a tunnel whose handshake was still in flight is told to close
//! as it opens, and [`Registry::drained`] waits for those handshakes too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::unix_now;

/// Why drawbridge ends a tunnel itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The session expired (close code 4001).
    Expired,
    /// The session was revoked (close code 4003).
    Revoked,
    /// drawbridge is shutting down (close code 1001).
    Shutdown,
    /// A re-check found narrower permissions or another user (close code 4009): the client
    /// reconnects, and the sync server sees the new identity.
    PermissionsChanged,
}

impl CloseReason {
    /// The code and reason sent to the client.
    pub(crate) fn client_close(self) -> (u16, &'static str) {
        match self {
            Self::Expired => (4001, "session expired"),
            Self::Revoked => (4003, "session revoked"),
            Self::Shutdown => (1001, "going away"),
            Self::PermissionsChanged => (4009, "permissions changed"),
        }
    }

    /// The code and reason sent to the sync server: a normal close, or going away on shutdown.
    pub(crate) fn upstream_close(self) -> (u16, &'static str) {
        match self {
            Self::Shutdown => (1001, "going away"),
            Self::Expired => (1000, "session expired"),
            Self::Revoked => (1000, "session revoked"),
            Self::PermissionsChanged => (1000, "permissions changed"),
        }
    }

    /// The bounded metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Shutdown => "shutdown",
            Self::PermissionsChanged => "permissions_changed",
        }
    }
}

/// What a tunnel is told after it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctl {
    /// Close at this instant unless told otherwise (a refresh moves it).
    Until(Instant),
    /// Close now.
    Close(CloseReason),
}

struct Entry {
    id: u64,
    /// `None` for a public tunnel.
    user: Option<Arc<str>>,
    ctl: watch::Sender<Ctl>,
}

/// Every open tunnel, keyed by session ID (`None`: tunnels without a session).
pub(crate) struct Registry {
    by_sid: Mutex<HashMap<Option<Arc<str>>, Vec<Entry>>>,
    /// Set by [`Registry::close_all`] while `by_sid` is locked: tunnels registered later are told
    /// to close at once.
    sealed: OnceLock<CloseReason>,
    /// Handshakes past the gate whose tunnel is not registered yet.
    opening: AtomicUsize,
    next_id: AtomicU64,
    active: IntGauge,
    drained: tokio::sync::Notify,
}

/// Removes its tunnel from the registry when dropped.
pub(crate) struct Registration {
    registry: Arc<Registry>,
    sid: Option<Arc<str>>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self
            .registry
            .by_sid
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = map.get_mut(&self.sid) {
            list.retain(|e| e.id != self.id);
            if list.is_empty() {
                map.remove(&self.sid);
            }
        }
        let empty = map.is_empty();
        drop(map);
        self.registry.active.dec();
        if empty && self.registry.opening.load(Ordering::Acquire) == 0 {
            self.registry.drained.notify_waiters();
        }
    }
}

/// A websocket handshake on its way to the sync server; [`Registry::drained`] waits for it.
///
/// Hold it until the tunnel is registered (or the handshake failed): a tunnel that opens while
/// drawbridge shuts down is then still closed with 1001 before the process exits.
pub(crate) struct Opening {
    registry: Arc<Registry>,
}

impl Drop for Opening {
    fn drop(&mut self) {
        if self.registry.opening.fetch_sub(1, Ordering::AcqRel) == 1 && self.registry.len() == 0 {
            self.registry.drained.notify_waiters();
        }
    }
}

impl Registry {
    /// An empty registry that keeps `active` at the number of open tunnels.
    pub(crate) fn new(active: IntGauge) -> Self {
        Self {
            by_sid: Mutex::new(HashMap::new()),
            sealed: OnceLock::new(),
            opening: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            active,
            drained: tokio::sync::Notify::new(),
        }
    }

    /// Counts a handshake past the gate until the returned guard drops.
    pub(crate) fn opening(self: &Arc<Self>) -> Opening {
        self.opening.fetch_add(1, Ordering::AcqRel);
        Opening {
            registry: self.clone(),
        }
    }

    /// Registers a tunnel of session `sid` and `user` (`None` when it has none) that must close
    /// at `deadline` (at once if the registry is sealed).
    pub(crate) fn register(
        self: &Arc<Self>,
        sid: Option<&str>,
        user: Option<&str>,
        deadline: Instant,
    ) -> (Registration, watch::Receiver<Ctl>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sid: Option<Arc<str>> = sid.map(Arc::from);
        let mut map = self.by_sid.lock().unwrap_or_else(PoisonError::into_inner);
        let first = match self.sealed.get() {
            Some(&reason) => Ctl::Close(reason),
            None => Ctl::Until(deadline),
        };
        let (tx, rx) = watch::channel(first);
        map.entry(sid.clone()).or_default().push(Entry {
            id,
            user: user.map(Arc::from),
            ctl: tx,
        });
        drop(map);
        self.active.inc();
        (
            Registration {
                registry: self.clone(),
                sid,
                id,
            },
            rx,
        )
    }

    fn send(&self, mut pick: impl FnMut(Option<&str>, &Entry) -> bool, ctl: Ctl) -> usize {
        let map = self.by_sid.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(ctl, Ctl::Until(_)) && self.sealed.get().is_some() {
            // A refresh must not call back a close already sent.
            return 0;
        }
        let mut n = 0;
        for (sid, list) in map.iter() {
            for e in list.iter().filter(|e| pick(sid.as_deref(), e)) {
                e.ctl.send_replace(ctl);
                n += 1;
            }
        }
        n
    }

    /// A refresh: the session's tunnels now close at `deadline`.
    pub(crate) fn extend(&self, sid: &str, deadline: Instant) -> usize {
        self.send(|s, _| s == Some(sid), Ctl::Until(deadline))
    }

    /// Closes the tunnels of one session.
    pub(crate) fn close_sid(&self, sid: &str, reason: CloseReason) -> usize {
        self.send(|s, _| s == Some(sid), Ctl::Close(reason))
    }

    /// Closes every tunnel of a user (never a public one, whatever `user` is).
    pub(crate) fn close_user(&self, user: &str, reason: CloseReason) -> usize {
        self.send(|_, e| e.user.as_deref() == Some(user), Ctl::Close(reason))
    }

    /// Closes every tunnel, and seals the registry so that every tunnel registered from now on
    /// closes with `reason` as it opens (the first reason sealed stays).
    pub(crate) fn close_all(&self, reason: CloseReason) -> usize {
        let map = self.by_sid.lock().unwrap_or_else(PoisonError::into_inner);
        let ctl = Ctl::Close(*self.sealed.get_or_init(|| reason));
        let mut n = 0;
        for e in map.values().flatten() {
            e.ctl.send_replace(ctl);
            n += 1;
        }
        n
    }

    /// Open tunnels.
    pub(crate) fn len(&self) -> usize {
        self.by_sid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Completes when no tunnel is open and no handshake is on its way to becoming one.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.opening.load(Ordering::Acquire) == 0 && self.len() == 0 {
                return;
            }
            notified.await;
        }
    }
}
/// When a tunnel of a session expiring at `exp` (Unix seconds) must close; far away when it has none.
pub(crate) fn deadline_for(exp: Option<u64>, grace: Duration) -> Instant {
    let now = Instant::now();
    match exp {
        Some(exp) => now + Duration::from_secs(exp.saturating_sub(unix_now())) + grace,
        // Ungated tunnels live until a side closes; a year stands in for never.
        None => now + Duration::from_secs(365 * 24 * 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Arc<Registry> {
        Arc::new(Registry::new(
            IntGauge::new("tunnels_test", "open tunnels").unwrap(),
        ))
    }

    fn closed(rx: &watch::Receiver<Ctl>) -> bool {
        matches!(*rx.borrow(), Ctl::Close(_))
    }

    #[test]
    fn public_and_ditto_tunnels_answer_to_no_empty_sid_or_user() {
        let r = registry();
        let later = Instant::now() + Duration::from_secs(60);
        let (_public, public) = r.register(None, None, later);
        let (_ditto, ditto) = r.register(None, Some("dora"), later);
        let (_empty, empty) = r.register(Some("s-empty"), Some(""), later);
        let (_alice, alice) = r.register(Some("s-alice"), Some("alice"), later);
        assert_eq!(r.len(), 4);
        // The empty user and session ID name only what really carries them.
        assert_eq!(r.close_sid("", CloseReason::Revoked), 0);
        assert_eq!(r.extend("", later), 0);
        assert_eq!(r.close_user("", CloseReason::Revoked), 1);
        assert!(closed(&empty));
        assert!(!closed(&public) && !closed(&ditto) && !closed(&alice));
        assert_eq!(r.close_user("dora", CloseReason::Revoked), 1);
        assert!(closed(&ditto) && !closed(&public));
        assert_eq!(r.close_sid("s-alice", CloseReason::Revoked), 1);
        assert!(closed(&alice) && !closed(&public));
        // Shutdown closes every tunnel, the public one too.
        assert_eq!(r.close_all(CloseReason::Shutdown), 4);
        assert!(closed(&public));
    }

    #[test]
    fn registration_dropped_leaves_the_registry() {
        let r = registry();
        let later = Instant::now() + Duration::from_secs(60);
        let (a, _rx_a) = r.register(None, None, later);
        let (b, _rx_b) = r.register(None, None, later);
        assert_eq!(r.len(), 2);
        drop(a);
        assert_eq!(r.len(), 1);
        drop(b);
        assert_eq!(r.len(), 0);
    }
}
