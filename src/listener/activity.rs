//! What each open connection is doing (requests in flight, a tunnel, idle since when, a request
//! head arriving), and the table of open connections the listener picks an eviction victim from.
//!
//! The request side writes ([`Busy`] guards, one per request, dropped with the response body;
//! the stream notes the first bytes of a head); the connection's own task reads it when its timer
//! fires, and the accept loop reads every entry only when `limits.max_connections` is reached.
//! Nothing here allocates per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

/// One connection's state, shared by its task, its service and its IO.
#[derive(Debug)]
pub(super) struct Activity {
    /// When the socket was accepted; the other times are offsets from it.
    accepted: Instant,
    /// Requests whose response has not been fully sent yet.
    in_flight: AtomicUsize,
    /// A complete request head has reached the service.
    requested: AtomicBool,
    /// A websocket tunnel runs over this connection: never idle, never evicted.
    tunnel: AtomicBool,
    /// Milliseconds after `accepted` at which the last request finished.
    idle_since_ms: AtomicU64,
    /// Milliseconds after `accepted` at which the next request head began to arrive, or
    /// [`NO_HEAD`] while none has.
    head_since_ms: AtomicU64,
    /// The peer sent the HTTP/2 connection preface.
    http2: AtomicBool,
    /// Reads report end-of-stream from now on (see `io::Guarded`).
    eof: AtomicBool,
    /// The task blocked reading, woken when `eof` is set.
    reader: AtomicWaker,
    /// Set once, when the accept loop picks this connection to make room.
    evicted: AtomicBool,
    evict: Notify,
}

/// `head_since_ms` while no request head is arriving.
const NO_HEAD: u64 = u64::MAX;

/// The limits a connection's timer applies.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadlines {
    /// When the first complete request head must have arrived.
    pub(super) first_request_by: Instant,
    /// Time for a later HTTP/1 head, from its first byte.
    pub(super) header_read: Duration,
    /// Time with no request in flight.
    pub(super) idle: Duration,
}

/// What the connection's timer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Nothing to do before this instant.
    Until(Instant),
    /// No complete request head arrived in time (the first, or a later HTTP/1 one under way).
    NoRequest,
    /// No request in flight for the idle timeout.
    Idle,
}

// === impl Activity ===

impl Activity {
    /// A connection accepted now.
    pub(super) fn new() -> Self {
        Self {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requested: AtomicBool::new(false),
            tunnel: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(NO_HEAD),
            http2: AtomicBool::new(false),
            eof: AtomicBool::new(false),
            reader: AtomicWaker::new(),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    /// A request head reached the service; the connection is busy until the guard drops.
    pub(super) fn begin(self: &Arc<Self>) -> Busy {
        self.requested.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since_ms.store(NO_HEAD, Ordering::Release);
        Busy {
            activity: self.clone(),
        }
    }

    /// Whether a request or a tunnel is in progress.
    pub(super) fn is_busy(&self) -> bool {
        self.tunnel.load(Ordering::Acquire) || self.in_flight.load(Ordering::Acquire) > 0
    }

    fn since_accept(&self, ms: u64) -> Instant {
        self.accepted + Duration::from_millis(ms)
    }

    /// When the connection last had nothing to do (its accept time if it never had a request).
    fn idle_since(&self) -> Instant {
        self.since_accept(self.idle_since_ms.load(Ordering::Acquire))
    }

    /// Bytes arrived between requests: on HTTP/1 a head has begun, and must now complete within
    /// `limits.header_read_timeout_ms`. Called by the stream on every read that filled something.
    pub(super) fn on_bytes(&self) {
        if self.head_since_ms.load(Ordering::Relaxed) != NO_HEAD
            || self.in_flight.load(Ordering::Acquire) > 0
        {
            return;
        }
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(NO_HEAD - 1);
        let _ =
            self.head_since_ms
                .compare_exchange(NO_HEAD, ms, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Decides at `now` whether the connection has been quiet too long.
    pub(super) fn check(&self, now: Instant, limits: &Deadlines) -> Check {
        if self.is_busy() {
            // Looked at again after `idle`; the guard's drop moves `idle_since` forward.
            return Check::Until(now + limits.idle);
        }
        if !self.requested.load(Ordering::Acquire) {
            return if now >= limits.first_request_by {
                Check::NoRequest
            } else {
                Check::Until(limits.first_request_by)
            };
        }
        let idle_by = self.idle_since() + limits.idle;
        if now >= idle_by {
            return Check::Idle;
        }
        // HTTP/2 sends frames between requests (pings, window updates); only HTTP/1 bytes
        // between requests are a head.
        if self.is_http2() {
            return Check::Until(idle_by);
        }
        match self.head_since_ms.load(Ordering::Acquire) {
            NO_HEAD => {
                // A head may begin at any time: look again within one header timeout.
                Check::Until(idle_by.min(now + limits.header_read))
            }
            ms => {
                let head_by = self.since_accept(ms) + limits.header_read;
                if now >= head_by {
                    Check::NoRequest
                } else {
                    Check::Until(idle_by.min(head_by))
                }
            }
        }
    }

    /// Records that the peer opened with the HTTP/2 preface.
    pub(super) fn set_http2(&self) {
        self.http2.store(true, Ordering::Release);
    }

    /// Whether the peer opened with the HTTP/2 preface.
    pub(super) fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Acquire)
    }

    /// From now on reads see end-of-stream, so hyper closes as if the peer had hung up.
    pub(super) fn end_reads(&self) {
        self.eof.store(true, Ordering::Release);
        self.reader.wake();
    }

    /// Whether reads see end-of-stream.
    pub(super) fn reads_ended(&self) -> bool {
        self.eof.load(Ordering::Acquire)
    }

    /// `waker` is woken by the next `end_reads`.
    pub(super) fn wake_on_end(&self, waker: &std::task::Waker) {
        self.reader.register(waker);
    }

    /// Completes once the accept loop has picked this connection to make room.
    pub(super) async fn evicted(&self) {
        self.evict.notified().await;
    }

    /// Picks this connection for eviction unless it is busy or already picked.
    fn try_evict(&self) -> bool {
        if self.is_busy() {
            return false;
        }
        if self
            .evicted
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        // `notify_one` keeps a permit if the task is not waiting yet.
        self.evict.notify_one();
        true
    }
}

/// One request in progress: taken when its head reaches the service, dropped with its response body.
#[derive(Debug)]
pub(super) struct Busy {
    activity: Arc<Activity>,
}

// === impl Busy ===

impl Busy {
    /// The response opened a websocket tunnel: the connection stays busy for the rest of its life.
    pub(super) fn tunnel(&self) {
        self.activity.tunnel.store(true, Ordering::Release);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let ms = self.activity.accepted.elapsed().as_millis();
            self.activity
                .idle_since_ms
                .store(u64::try_from(ms).unwrap_or(NO_HEAD - 1), Ordering::Release);
            // Bytes read while busy were that request's body, not the next head.
            self.activity
                .head_since_ms
                .store(NO_HEAD, Ordering::Release);
        }
    }
}

/// Scans of the table before giving up on finding an idle connection that stays idle.
const EVICTION_ATTEMPTS: usize = 3;

/// The listener's open connections, for picking an eviction victim.
#[derive(Debug, Default)]
pub(super) struct Conns {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

// === impl Conns ===

impl Conns {
    /// Adds `activity` until the returned registration drops.
    pub(super) fn register(self: &Arc<Self>, activity: Arc<Activity>) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, activity);
        Registration {
            conns: self.clone(),
            id,
        }
    }

    /// Picks the connection idle longest (no request in flight, no tunnel, not picked before) and
    /// tells it to close. `false` when every connection is busy.
    pub(super) fn evict_idlest(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        // A candidate may turn busy between the scan and the pick; it then fails the next scan.
        for _ in 0..EVICTION_ATTEMPTS {
            let Some(victim) = open
                .values()
                .filter(|a| !a.is_busy() && !a.evicted.load(Ordering::Acquire))
                .min_by_key(|a| a.idle_since())
            else {
                return false;
            };
            if victim.try_evict() {
                return true;
            }
        }
        false
    }
}

/// Keeps one connection in [`Conns`]; removes it on drop.
#[derive(Debug)]
pub(super) struct Registration {
    conns: Arc<Conns>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.conns
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);
    const HEAD: Duration = Duration::from_secs(10);

    fn limits(first_request_by: Instant) -> Deadlines {
        Deadlines {
            first_request_by,
            header_read: HEAD,
            idle: IDLE,
        }
    }

    fn later(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    /// An activity that finished a request `secs` seconds after its accept.
    fn idle_since(a: &Activity, secs: u64) {
        a.requested.store(true, Ordering::Release);
        a.idle_since_ms.store(secs * 1000, Ordering::Release);
    }

    #[test]
    fn silent_connection_expires_at_first_request_deadline() {
        let a = Arc::new(Activity::new());
        let by = later(10);
        assert_eq!(a.check(Instant::now(), &limits(by)), Check::Until(by));
        assert_eq!(a.check(by, &limits(by)), Check::NoRequest);
        assert_eq!(a.check(later(3600), &limits(by)), Check::NoRequest);
    }

    #[test]
    fn busy_connection_never_expires_and_idles_from_its_last_response() {
        let a = Arc::new(Activity::new());
        let by = Instant::now();
        let busy = a.begin();
        let far = later(3600);
        assert_eq!(a.check(far, &limits(by)), Check::Until(far + IDLE));
        drop(busy);
        let since = a.idle_since();
        assert!(since <= Instant::now());
        // Looked at again within one header timeout, in case an HTTP/1 head begins.
        assert_eq!(a.check(since, &limits(by)), Check::Until(since + HEAD));
        assert_eq!(a.check(since + IDLE, &limits(by)), Check::Idle);
    }

    #[test]
    fn overlapping_requests_idle_only_after_the_last() {
        let a = Arc::new(Activity::new());
        let (one, two) = (a.begin(), a.begin());
        drop(one);
        assert!(a.is_busy());
        idle_since(&a, 0);
        assert!(matches!(
            a.check(later(3600), &limits(Instant::now())),
            Check::Until(_)
        ));
        drop(two);
        assert!(!a.is_busy());
    }

    #[test]
    fn http1_head_begun_between_requests_must_complete_within_header_read() {
        let a = Arc::new(Activity::new());
        drop(a.begin());
        let l = limits(Instant::now());
        let now = Instant::now();
        // Nothing arriving: looked at again within one header timeout.
        assert_eq!(a.check(now, &l), Check::Until(now + HEAD));
        a.on_bytes();
        let head_by = a.since_accept(a.head_since_ms.load(Ordering::Acquire)) + HEAD;
        assert_eq!(a.check(now, &l), Check::Until(head_by));
        assert_eq!(a.check(head_by, &l), Check::NoRequest);
        // More bytes do not move the deadline; the request arriving clears it.
        a.on_bytes();
        assert_eq!(a.check(head_by, &l), Check::NoRequest);
        let busy = a.begin();
        a.on_bytes();
        drop(busy);
        let now = Instant::now();
        assert_eq!(a.check(now, &l), Check::Until(now + HEAD));
    }

    #[test]
    fn http2_bytes_between_requests_are_not_a_head() {
        let a = Arc::new(Activity::new());
        a.set_http2();
        drop(a.begin());
        a.on_bytes();
        let since = a.idle_since();
        assert_eq!(
            a.check(since + HEAD * 2, &limits(since)),
            Check::Until(since + IDLE)
        );
    }

    #[test]
    fn tunnel_keeps_connection_busy_after_its_response() {
        let a = Arc::new(Activity::new());
        let busy = a.begin();
        busy.tunnel();
        drop(busy);
        assert!(a.is_busy());
        assert!(matches!(
            a.check(later(86_400), &limits(Instant::now())),
            Check::Until(_)
        ));
    }

    #[test]
    fn eviction_picks_idlest_and_skips_busy_and_tunnels() {
        let conns = Arc::new(Conns::default());
        let busy = Arc::new(Activity::new());
        let _r0 = conns.register(busy.clone());
        let _in_flight = busy.begin();
        let tunnel = Arc::new(Activity::new());
        let _r1 = conns.register(tunnel.clone());
        tunnel.begin().tunnel();
        let silent = Arc::new(Activity::new());
        let _r2 = conns.register(silent.clone());
        let served = Arc::new(Activity::new());
        let _r3 = conns.register(served.clone());
        idle_since(&served, 5);

        assert!(conns.evict_idlest());
        assert!(
            silent.evicted.load(Ordering::Acquire),
            "idle since its accept"
        );
        assert!(conns.evict_idlest());
        assert!(served.evicted.load(Ordering::Acquire));
        assert!(!conns.evict_idlest(), "only busy connections are left");
        assert!(!busy.evicted.load(Ordering::Acquire));
        assert!(!tunnel.evicted.load(Ordering::Acquire));
    }

    #[test]
    fn eviction_prefers_the_longest_idle_keep_alive_over_a_fresher_one() {
        let conns = Arc::new(Conns::default());
        let recent = Arc::new(Activity::new());
        let _r0 = conns.register(recent.clone());
        idle_since(&recent, 30);
        let older = Arc::new(Activity::new());
        let _r1 = conns.register(older.clone());
        idle_since(&older, 10);
        assert!(conns.evict_idlest());
        assert!(older.evicted.load(Ordering::Acquire));
        assert!(!recent.evicted.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn evicted_connection_is_told_even_before_it_waits() {
        let conns = Arc::new(Conns::default());
        let a = Arc::new(Activity::new());
        let _r = conns.register(a.clone());
        assert!(conns.evict_idlest());
        tokio::time::timeout(Duration::from_secs(5), a.evicted())
            .await
            .expect("the eviction notice was lost");
    }

    #[test]
    fn registration_drop_removes_the_entry() {
        let conns = Arc::new(Conns::default());
        let r = conns.register(Arc::new(Activity::new()));
        drop(r);
        assert!(!conns.evict_idlest());
    }
}
