//! A JSON-lines sink that never blocks its callers: each line is encoded straight into a shared
//! buffer, which one writer thread swaps out and writes, owning the file (or standard output) and
//! reopening it when asked (logrotate).
//!
//! A line costs its caller a lock, a copy of its fields and no allocation: the audit log runs on
//! every login, and a per-line `Vec` sent through a channel cost more than the rest of the line.
//! The buffer holds a bounded number of lines; a full one drops the line instead of waiting, so a
//! slow disk cannot slow a login. Each drop is counted, and the first is reported once in the
//! diagnostic log.

use std::fmt::Display;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::oneshot;

/// How long the writer lets lines gather after the first: a line reaches the file within about
/// this long, and a busy gateway pays one write per interval.
const WRITE_INTERVAL: Duration = Duration::from_millis(50);
/// The buffer's starting size, reused from one write to the next.
const BUFFER_BYTES: usize = 64 * 1024;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output (`"-"` in the config).
    Stdout,
    /// A file, opened for appending (created with mode 0640).
    File(PathBuf),
}

impl Target {
    /// `"-"` is standard output, anything else a file path.
    pub fn parse(s: &str) -> Self {
        if s == "-" {
            Self::Stdout
        } else {
            Self::File(PathBuf::from(s))
        }
    }
}

/// Why a sink could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {path} for appending: {source}")]
pub struct SinkError {
    /// The file.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// The sending side: cheap to clone, shared by every caller. The writer thread ends, after
/// writing what is pending, when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Sink {
    handle: Arc<Handle>,
}

/// Closes the shared state when the last [`Sink`] goes.
struct Handle {
    shared: Arc<Shared>,
}

struct Shared {
    name: &'static str,
    pending: Mutex<Pending>,
    /// Wakes the writer: the first line after a write, a flush, a reopen, the close.
    wake: Condvar,
    max_lines: usize,
    dropped: IntCounter,
    warned: AtomicBool,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: usize,
    flushes: Vec<oneshot::Sender<()>>,
    reopen: bool,
    closed: bool,
}

impl Pending {
    /// Whether the writer has something to do now, before a batch has gathered.
    fn urgent(&self) -> bool {
        !self.flushes.is_empty() || self.reopen || self.closed
    }
}

/// One line being written: its fields go straight into the sink's buffer.
pub(crate) struct Line<'a> {
    out: &'a mut Vec<u8>,
}

// === impl Sink ===

impl Sink {
    /// Opens `target` now (so a bad path fails at startup) and starts the writer thread.
    /// `name` names the sink in the diagnostic log; at most `queue_lines` wait for the writer;
    /// `dropped` counts lines lost to a full buffer.
    ///
    /// # Errors
    /// [`SinkError`] when the file cannot be opened for appending.
    pub(crate) fn start(
        name: &'static str,
        target: Target,
        queue_lines: usize,
        dropped: IntCounter,
    ) -> Result<Self, SinkError> {
        Self::start_every(name, target, queue_lines, dropped, WRITE_INTERVAL)
    }

    fn start_every(
        name: &'static str,
        target: Target,
        queue_lines: usize,
        dropped: IntCounter,
        interval: Duration,
    ) -> Result<Self, SinkError> {
        let out = open(&target)?;
        let shared = Arc::new(Shared {
            name,
            pending: Mutex::new(Pending {
                bytes: Vec::with_capacity(BUFFER_BYTES),
                ..Pending::default()
            }),
            wake: Condvar::new(),
            max_lines: queue_lines.max(1),
            dropped,
            warned: AtomicBool::new(false),
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("drawbridge-{name}"))
            .spawn(move || write_loop(&writer, &target, out, interval))
            .expect("the OS starts a thread at startup");
        Ok(Self {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// Appends one line `{"ts":…,"event":<event>,<fields>,"trace_id":…}`, or drops it when
    /// the buffer is full. Never waits for the disk.
    pub(crate) fn write(
        &self,
        event: &'static str,
        trace_id: Option<&str>,
        fields: impl FnOnce(&mut Line<'_>),
    ) {
        let shared = &self.handle.shared;
        let mut pending = shared.lock();
        if pending.lines >= shared.max_lines {
            drop(pending);
            shared.dropped.inc();
            if !shared.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    log = shared.name,
                    "log queue full: dropping lines (counted in drawbridge_{}_dropped_total; \
                     said once)",
                    shared.name
                );
            }
            return;
        }
        let first = pending.lines == 0;
        pending.lines += 1;
        let out = &mut pending.bytes;
        timestamp::line_start(|start| out.extend_from_slice(start));
        out.extend_from_slice(event.as_bytes());
        out.push(b'"');
        let mut line = Line { out };
        fields(&mut line);
        line.opt_str("trace_id", trace_id);
        line.out.extend_from_slice(b"}\n");
        drop(pending);
        if first {
            shared.wake.notify_one();
        }
    }

    /// Closes and reopens the file (after logrotate moved it); standard output is left alone.
    pub(crate) fn reopen(&self) {
        let shared = &self.handle.shared;
        shared.lock().reopen = true;
        shared.wake.notify_one();
    }

    /// Waits, at most `within`, until every line written so far has reached the file.
    pub(crate) async fn flush(&self, within: Duration) {
        let shared = &self.handle.shared;
        let (done, wait) = oneshot::channel();
        shared.lock().flushes.push(done);
        shared.wake.notify_one();
        let _ = tokio::time::timeout(within, wait).await;
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Line ===

impl Line<'_> {
    /// `"key":"value"`. Keys are the code's own names and are written as they are.
    #[inline(always)]
    pub(crate) fn str(&mut self, key: &'static str, value: &str) {
        // Most values need no escaping: copy them in one go.
        if value.bytes().all(needs_no_escape) {
            self.word(key, value);
        } else {
            self.key(key);
            crate::terminal::json_string(self.out, value);
        }
    }

    /// [`Line::str`] for a value that needs no escaping: one of the code's own words.
    #[inline(always)]
    pub(crate) fn word(&mut self, key: &'static str, value: &str) {
        debug_assert!(value.bytes().all(needs_no_escape));
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
    }

    /// [`Line::word`] when `value` is there; nothing when it is not.
    #[inline(always)]
    pub(crate) fn opt_word(&mut self, key: &'static str, value: Option<&'static str>) {
        if let Some(value) = value {
            self.word(key, value);
        }
    }

    /// [`Line::str`] when `value` is there; nothing when it is not.
    #[inline]
    pub(crate) fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    /// `"key":<number>` (any integer or float serde_json writes as a number).
    #[inline]
    pub(crate) fn num(&mut self, key: &'static str, value: impl serde::Serialize) {
        self.key(key);
        let _ = serde_json::to_writer(&mut *self.out, &value);
    }

    /// [`Line::num`] when `value` is there; nothing when it is not.
    #[inline]
    pub(crate) fn opt_num(&mut self, key: &'static str, value: Option<impl serde::Serialize>) {
        if let Some(value) = value {
            self.num(key, value);
        }
    }

    /// `"key":"<address>"`.
    #[inline]
    pub(crate) fn ip(&mut self, key: &'static str, value: IpAddr) {
        self.key(key);
        match value {
            // Display would go through the formatting machinery, which costs more than the rest
            // of a login line.
            IpAddr::V4(v4) => {
                self.out.push(b'"');
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.out.push(b'.');
                    }
                    if octet >= 100 {
                        self.out.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        self.out.push(b'0' + octet / 10 % 10);
                    }
                    self.out.push(b'0' + octet % 10);
                }
                self.out.push(b'"');
            }
            IpAddr::V6(_) => {
                let _ = write!(self.out, "\"{value}\"");
            }
        }
    }

    /// [`Line::ip`] when `value` is there; nothing when it is not.
    #[inline]
    pub(crate) fn opt_ip(&mut self, key: &'static str, value: Option<IpAddr>) {
        if let Some(value) = value {
            self.ip(key, value);
        }
    }

    /// `"key":"<value>"` for a value whose text needs no escaping (a socket address).
    pub(crate) fn shown(&mut self, key: &'static str, value: impl Display) {
        self.key(key);
        let _ = write!(self.out, "\"{value}\"");
    }

    #[inline(always)]
    fn key(&mut self, key: &'static str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }
}

/// Whether a byte goes into a JSON string as it is: printable ASCII other than `"` and `\`. Any
/// other byte sends its string through [`crate::terminal::json_string`] (most of them are letters of UTF-8 text that go
/// as they are there too).
#[inline(always)]
fn needs_no_escape(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// Now, as RFC 3339 UTC with milliseconds. The date is formatted once per second and thread, and
/// only the milliseconds are written for each line: a busy gateway writes many lines within a
/// second, and formatting a date costs more than the rest of a line.
pub(crate) mod timestamp {
    use std::cell::RefCell;
    use std::time::{Duration, SystemTime};

    const HEAD: &str = "{\"ts\":\"";
    /// After the milliseconds.
    const TAIL: &str = "Z\",\"event\":\"";

    /// Lends `f` the start of a line written now: `{"ts":"<now>","event":"`.
    pub(crate) fn line_start<R>(f: impl FnOnce(&[u8]) -> R) -> R {
        thread_local! {
            static LAST: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
        }
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let (secs, ms) = (since_epoch.as_secs(), since_epoch.subsec_millis());
        LAST.with_borrow_mut(|(at, text)| {
            if *at != secs {
                let date = i64::try_from(secs)
                    .ok()
                    .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                // A whole second: RFC 3339 writes it without a fraction, as `…:SSZ`.
                let date = date
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                let date = date.strip_suffix('Z').unwrap_or(&date);
                *text = format!("{HEAD}{date}.000{TAIL}").into_bytes();
                *at = secs;
            }
            let end = text.len() - TAIL.len();
            text[end - 3..end].copy_from_slice(&[
                b'0' + (ms / 100 % 10) as u8,
                b'0' + (ms / 10 % 10) as u8,
                b'0' + (ms % 10) as u8,
            ]);
            f(text)
        })
    }

    /// Now, as [`line_start`] would write it.
    #[cfg(test)]
    pub(crate) fn now() -> String {
        line_start(|s| {
            String::from_utf8_lossy(&s[HEAD.len()..s.len() - TAIL.len() + 1]).into_owned()
        })
    }
}

enum Out {
    Stdout,
    File(std::fs::File),
}

impl Out {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(bytes)?;
                stdout.flush()
            }
            Self::File(file) => file.write_all(bytes),
        }
    }
}

fn open(target: &Target) -> Result<Out, SinkError> {
    match target {
        Target::Stdout => Ok(Out::Stdout),
        Target::File(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
            options
                .open(path)
                .map(Out::File)
                .map_err(|source| SinkError {
                    path: path.clone(),
                    source,
                })
        }
    }
}

/// The writer thread: sleeps until a line comes, lets more gather for `interval` (unless a
/// flush, reopen or close is asked for), swaps the buffer out and writes it in one go.
fn write_loop(shared: &Shared, target: &Target, mut out: Out, interval: Duration) {
    let mut failing = false;
    let mut spare = Vec::with_capacity(BUFFER_BYTES);
    loop {
        let mut pending = shared
            .wake
            .wait_while(shared.lock(), |p| p.lines == 0 && !p.urgent())
            .unwrap_or_else(PoisonError::into_inner);
        if !pending.urgent() {
            pending = shared
                .wake
                .wait_timeout_while(pending, interval, |p| !p.urgent())
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::swap(&mut pending.bytes, &mut spare);
        pending.lines = 0;
        let flushes = std::mem::take(&mut pending.flushes);
        let reopen = std::mem::take(&mut pending.reopen);
        let closed = pending.closed;
        drop(pending);

        // What is pending goes to the new file: logrotate has moved the old one by now, and may
        // compress it next.
        if reopen && matches!(target, Target::File(_)) {
            match open(target) {
                Ok(new) => {
                    out = new;
                    tracing::info!(log = shared.name, "log file reopened");
                }
                Err(error) => {
                    tracing::error!(log = shared.name, %error, "cannot reopen the log file; writing to the old one")
                }
            }
        }
        if !spare.is_empty() {
            report(shared.name, &mut failing, out.write_all(&spare));
            spare.clear();
        }
        for done in flushes {
            let _ = done.send(());
        }
        if closed {
            return;
        }
    }
}

/// Logs the first write error of a run of them, and the recovery.
fn report(name: &'static str, failing: &mut bool, result: std::io::Result<()>) {
    match (result, *failing) {
        (Err(error), false) => {
            *failing = true;
            tracing::error!(log = name, %error, "cannot write the log; lines are being lost");
        }
        (Ok(()), true) => {
            *failing = false;
            tracing::info!(log = name, "log writes work again");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> IntCounter {
        IntCounter::new("test_dropped_total", "test").unwrap()
    }

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn full_buffer_drops_and_counts_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let dropped = counter();
        // The writer waits an hour for a batch: only the flush below makes it write.
        let hour = Duration::from_secs(3600);
        let sink = Sink::start_every("test", Target::File(path.clone()), 2, dropped.clone(), hour)
            .unwrap();
        for i in 0..100u32 {
            sink.write("n", None, |l| l.num("n", i));
        }
        assert_eq!(dropped.get(), 98);
        sink.flush(Duration::from_secs(5)).await;
        let got: Vec<_> = lines(&path).iter().map(|l| l["n"].clone()).collect();
        assert_eq!(got, [0, 1]);
        // Written lines make room again.
        sink.write("n", None, |l| l.num("n", 100));
        sink.flush(Duration::from_secs(5)).await;
        assert_eq!(lines(&path).len(), 3);
        assert_eq!(dropped.get(), 98);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reopen_writes_to_a_new_file_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let sink = Sink::start("test", Target::File(path.clone()), 16, counter()).unwrap();
        sink.write("before", None, |_| {});
        sink.flush(Duration::from_secs(5)).await;
        std::fs::rename(&path, dir.path().join("out.log.1")).unwrap();
        sink.reopen();
        sink.write("after", None, |_| {});
        sink.flush(Duration::from_secs(5)).await;
        let events = |p: &std::path::Path| -> Vec<_> {
            lines(p).iter().map(|l| l["event"].clone()).collect()
        };
        assert_eq!(events(&path), ["after"]);
        assert_eq!(events(&dir.path().join("out.log.1")), ["before"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_line_is_json_whatever_its_strings_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let sink = Sink::start("test", Target::File(path.clone()), 16, counter()).unwrap();
        let nasty = "quote \" backslash \\ newline \n tab \t nul \u{0} é ✓ \u{7f} csi \u{9b}31m \u{80}\u{85}\u{9f}\u{a0}";
        sink.write("e", Some("4bf92f3577b34da6a3ce929d0e0e4736"), |l| {
            l.str("plain", "ann@example.com");
            l.str("nasty", nasty);
            l.opt_str("absent", None);
            l.num("count", 7u64);
            l.num("ms", 1.25f64);
            l.opt_num("none", None::<u64>);
            l.ip("ip", IpAddr::from([10, 0, 0, 1]));
            l.opt_ip("ip0", Some(IpAddr::from([0, 9, 10, 255])));
            l.ip("ip6", "2001:db8::1".parse().unwrap());
            l.shown("addr", std::net::SocketAddr::from(([127, 0, 0, 1], 9)));
        });
        sink.flush(Duration::from_secs(5)).await;
        let got = lines(&path);
        assert_eq!(got.len(), 1);
        let l = &got[0];
        assert!(l["ts"].as_str().unwrap().ends_with('Z'), "{l}");
        assert_eq!(l["event"], "e");
        assert_eq!(l["plain"], "ann@example.com");
        assert_eq!(l["nasty"], nasty);
        // Nothing a terminal acts on is left raw: C0, DEL and C1 are all escaped.
        let raw = std::fs::read_to_string(&path).unwrap();
        let raw = raw.trim_end_matches('\n');
        assert!(
            !raw.chars().any(|c| c.is_control()),
            "a control character left raw: {raw:?}"
        );
        assert!(
            raw.contains(r"\u007f") && raw.contains(r"\u009b31m"),
            "{raw}"
        );
        assert_eq!(l["count"], 7);
        assert_eq!(l["ms"], 1.25);
        assert_eq!(l["ip"], "10.0.0.1");
        assert_eq!(l["ip0"], "0.9.10.255");
        assert_eq!(l["ip6"], "2001:db8::1");
        assert_eq!(l["addr"], "127.0.0.1:9");
        assert_eq!(l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(l.get("absent").is_none() && l.get("none").is_none(), "{l}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_last_sink_dropped_writes_what_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let hour = Duration::from_secs(3600);
        let sink =
            Sink::start_every("test", Target::File(path.clone()), 16, counter(), hour).unwrap();
        let clone = sink.clone();
        sink.write("one", None, |_| {});
        drop(sink);
        clone.write("two", None, |_| {});
        drop(clone);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path).unwrap().lines().count() < 2 {
            assert!(std::time::Instant::now() < deadline, "never written");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(lines(&path).len(), 2);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_and_move_on() {
        use time::format_description::well_known::Rfc3339;
        let first = timestamp::now();
        assert!(first.ends_with('Z'), "{first}");
        let a = time::OffsetDateTime::parse(&first, &Rfc3339).unwrap();
        assert_eq!(a.nanosecond() % 1_000_000, 0, "milliseconds: {first}");
        std::thread::sleep(Duration::from_millis(3));
        let later = timestamp::now();
        let b = time::OffsetDateTime::parse(&later, &Rfc3339).unwrap();
        assert!(b > a, "{first} then {later}");
        let behind = (time::OffsetDateTime::now_utc() - b).whole_milliseconds();
        assert!((0..1000).contains(&behind), "{later} is {behind} ms behind");
    }

    #[test]
    fn dash_is_stdout() {
        assert_eq!(Target::parse("-"), Target::Stdout);
        assert_eq!(Target::parse("a.log"), Target::File(PathBuf::from("a.log")));
    }
}
