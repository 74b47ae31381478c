//! Open tunnels by session: so a refresh can move their deadline and a logout, a revocation or
//! shutdown can close them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::IntGauge;
use tokio::sync::watch;
use tokio::time::Instant;

/// Why drawbridge ends a tunnel itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The session expired (close code 4001).
    Expired,
    /// The session was revoked (close code 4003).
    Revoked,
    /// drawbridge is shutting down (close code 1001).
    Shutdown,
}

impl CloseReason {
    /// The code and reason sent to the client.
    pub(crate) fn client_close(self) -> (u16, &'static str) {
        match self {
            Self::Expired => (4001, "session expired"),
            Self::Revoked => (4003, "session revoked"),
            Self::Shutdown => (1001, "going away"),
        }
    }

    /// The code and reason sent to the sync server: a normal close, or going away on shutdown.
    pub(crate) fn upstream_close(self) -> (u16, &'static str) {
        match self {
            Self::Shutdown => (1001, "going away"),
            Self::Expired => (1000, "session expired"),
            Self::Revoked => (1000, "session revoked"),
        }
    }

    /// The bounded metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Shutdown => "shutdown",
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
    user: Arc<str>,
    ctl: watch::Sender<Ctl>,
}

/// Every open tunnel, keyed by session ID.
pub(crate) struct Registry {
    by_sid: Mutex<HashMap<Arc<str>, Vec<Entry>>>,
    next_id: AtomicU64,
    active: IntGauge,
    drained: tokio::sync::Notify,
}

/// Removes its tunnel from the registry when dropped.
pub(crate) struct Registration {
    registry: Arc<Registry>,
    sid: Arc<str>,
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
        if empty {
            self.registry.drained.notify_waiters();
        }
    }
}

impl Registry {
    pub(crate) fn new(active: IntGauge) -> Self {
        Self {
            by_sid: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            active,
            drained: tokio::sync::Notify::new(),
        }
    }

    /// Registers a tunnel of `sid`/`user` that must close at `deadline`.
    pub(crate) fn register(
        self: &Arc<Self>,
        sid: &str,
        user: &str,
        deadline: Instant,
    ) -> (Registration, watch::Receiver<Ctl>) {
        let (tx, rx) = watch::channel(Ctl::Until(deadline));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sid: Arc<str> = Arc::from(sid);
        self.by_sid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(sid.clone())
            .or_default()
            .push(Entry {
                id,
                user: Arc::from(user),
                ctl: tx,
            });
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

    fn send(&self, mut pick: impl FnMut(&str, &Entry) -> bool, ctl: Ctl) -> usize {
        let map = self.by_sid.lock().unwrap_or_else(PoisonError::into_inner);
        let mut n = 0;
        for (sid, list) in map.iter() {
            for e in list.iter().filter(|e| pick(sid, e)) {
                e.ctl.send_replace(ctl);
                n += 1;
            }
        }
        n
    }

    /// A refresh: the session's tunnels now close at `deadline`.
    pub(crate) fn extend(&self, sid: &str, deadline: Instant) -> usize {
        self.send(|s, _| s == sid, Ctl::Until(deadline))
    }

    /// Closes the tunnels of one session.
    pub(crate) fn close_sid(&self, sid: &str, reason: CloseReason) -> usize {
        self.send(|s, _| s == sid, Ctl::Close(reason))
    }

    /// Closes every tunnel of a user.
    pub(crate) fn close_user(&self, user: &str, reason: CloseReason) -> usize {
        self.send(|_, e| &*e.user == user, Ctl::Close(reason))
    }

    /// Closes every tunnel.
    pub(crate) fn close_all(&self, reason: CloseReason) -> usize {
        self.send(|_, _| true, Ctl::Close(reason))
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

    /// Completes when no tunnel is open.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.len() == 0 {
                return;
            }
            notified.await;
        }
    }
}
