//! A JSON-lines sink that never blocks its callers: lines go through a bounded queue to one writer
//! task, which owns the file (or standard output) and reopens it when asked (logrotate).
//!
//! A full queue drops the line instead of waiting: a slow disk must not slow a login. Each drop
//! is counted, and the first one is reported once in the diagnostic log.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{Notify, mpsc, oneshot};

/// Most lines written in one go before the writer flushes.
const BATCH_LINES: usize = 4096;
/// How often the writer drains the queue: a line reaches the file within about this long.
const WRITE_INTERVAL: Duration = Duration::from_millis(50);
/// The writer's buffer: one write per tick at thousands of lines a second.
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

enum Msg {
    Line(Vec<u8>),
    Flush(oneshot::Sender<()>),
}

/// The sending side: cheap to clone, shared by every caller.
#[derive(Clone)]
pub(crate) struct Sink {
    inner: Arc<Inner>,
}

struct Inner {
    name: &'static str,
    tx: mpsc::Sender<Msg>,
    reopen: Arc<Notify>,
    /// Wakes the writer before its tick (a flush request).
    wake: Arc<Notify>,
    dropped: IntCounter,
    warned: AtomicBool,
}

// === impl Sink ===

impl Sink {
    /// Opens `target` now (so a bad path fails at startup) and spawns the writer task.
    /// `name` names the sink in the diagnostic log; `dropped` counts lines lost to a full queue.
    ///
    /// # Errors
    /// [`SinkError`] when the file cannot be opened for appending.
    pub(crate) fn start(
        name: &'static str,
        target: Target,
        queue_lines: usize,
        dropped: IntCounter,
    ) -> Result<Self, SinkError> {
        let out = open(&target)?;
        let (tx, rx) = mpsc::channel(queue_lines.max(1));
        let reopen = Arc::new(Notify::new());
        let wake = Arc::new(Notify::new());
        tokio::spawn(write_loop(
            name,
            target,
            out,
            rx,
            reopen.clone(),
            wake.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                name,
                tx,
                reopen,
                wake,
                dropped,
                warned: AtomicBool::new(false),
            }),
        })
    }

    /// Queues one line (a newline is added); drops it when the queue is full.
    pub(crate) fn send(&self, mut line: Vec<u8>) {
        line.push(b'\n');
        if self.inner.tx.try_send(Msg::Line(line)).is_err() {
            self.inner.dropped.inc();
            if !self.inner.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    log = self.inner.name,
                    "log queue full: dropping lines (counted in drawbridge_{}_dropped_total; \
                     said once)",
                    self.inner.name
                );
            }
        }
    }

    /// Closes and reopens the file (after logrotate moved it); standard output is left alone.
    pub(crate) fn reopen(&self) {
        self.inner.reopen.notify_one();
    }

    /// Waits, at most `within`, until every line queued so far is written and flushed.
    pub(crate) async fn flush(&self, within: Duration) {
        let (done, wait) = oneshot::channel();
        let flushed = async {
            if self.inner.tx.send(Msg::Flush(done)).await.is_ok() {
                self.inner.wake.notify_one();
                let _ = wait.await;
            }
        };
        let _ = tokio::time::timeout(within, flushed).await;
    }
}

type Out = BufWriter<Box<dyn AsyncWrite + Send + Unpin>>;

fn open(target: &Target) -> Result<Out, SinkError> {
    let raw: Box<dyn AsyncWrite + Send + Unpin> = match target {
        Target::Stdout => Box::new(tokio::io::stdout()),
        Target::File(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
            let file = options.open(path).map_err(|source| SinkError {
                path: path.clone(),
                source,
            })?;
            Box::new(tokio::fs::File::from_std(file))
        }
    };
    Ok(BufWriter::with_capacity(BUFFER_BYTES, raw))
}

async fn write_loop(
    name: &'static str,
    target: Target,
    mut out: Out,
    mut rx: mpsc::Receiver<Msg>,
    reopen: Arc<Notify>,
    wake: Arc<Notify>,
) {
    let mut failing = false;
    // The writer drains the queue on a tick, not per line: a line costs its sender a queue push
    // and no task wake-up, and the file one write per tick.
    let mut tick = tokio::time::interval(WRITE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut more = false;
    loop {
        if !more {
            tokio::select! {
                biased;
                () = reopen.notified() => {
                    let _ = out.flush().await;
                    if let Target::File(_) = target {
                        match open(&target) {
                            Ok(new) => {
                                out = new;
                                tracing::info!(log = name, "log file reopened");
                            }
                            Err(error) => tracing::error!(log = name, %error, "cannot reopen the log file; writing to the old one"),
                        }
                    }
                }
                () = wake.notified() => {}
                _ = tick.tick() => {}
            }
        }
        let (mut written, mut waiting, mut closed) = (0, Vec::new(), false);
        loop {
            match rx.try_recv() {
                Ok(Msg::Line(line)) => {
                    report(name, &mut failing, out.write_all(&line).await);
                    written += 1;
                }
                Ok(Msg::Flush(done)) => waiting.push(done),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
            if written == BATCH_LINES {
                break;
            }
        }
        more = written == BATCH_LINES;
        if written > 0 || !waiting.is_empty() || closed {
            report(name, &mut failing, out.flush().await);
        }
        for done in waiting {
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

    #[tokio::test(flavor = "current_thread")]
    async fn full_queue_drops_and_counts_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let dropped = counter();
        let sink = Sink::start("test", Target::File(path.clone()), 2, dropped.clone()).unwrap();
        // The writer cannot run until this task yields: everything past the queue is dropped.
        for i in 0..100 {
            sink.send(format!("{{\"n\":{i}}}").into_bytes());
        }
        assert_eq!(dropped.get(), 98);
        sink.flush(Duration::from_secs(5)).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"n\":0}\n{\"n\":1}\n");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reopen_writes_to_a_new_file_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let sink = Sink::start("test", Target::File(path.clone()), 16, counter()).unwrap();
        sink.send(b"before".to_vec());
        sink.flush(Duration::from_secs(5)).await;
        std::fs::rename(&path, dir.path().join("out.log.1")).unwrap();
        sink.reopen();
        tokio::task::yield_now().await;
        sink.send(b"after".to_vec());
        sink.flush(Duration::from_secs(5)).await;
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.log.1")).unwrap(),
            "before\n"
        );
    }

    #[test]
    fn dash_is_stdout() {
        assert_eq!(Target::parse("-"), Target::Stdout);
        assert_eq!(Target::parse("a.log"), Target::File(PathBuf::from("a.log")));
    }
}
