//! Watched files, handed over only once settled: what each file holds after it has stayed the
//! same for the settle time.
//!
//! drawbridge cannot know when a writer has finished a file. A config written in place in two
//! pieces holds, between them, a valid file that lacks whatever the second piece adds (an
//! `[apps]` list, a client CA), and applying it would lift those restrictions for a moment. So a
//! change is applied only when two reads of every watched file, the settle time apart, agree, and
//! what is applied is exactly what those reads saw. Writing a temporary file and renaming it over
//! the old one is still the way to edit: the new contents appear whole, and only the settle time
//! passes before they apply.
//!
//! Events are screened by name before anything else happens: a log written beside a watched file
//! (the audit or access log, a diagnostic log redirected there) must not wake the watcher, let
//! alone log something that is written beside the file again. notify's own log lines are kept out
//! of the diagnostic log below `info` for the same reason ([`feeds_back`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// What each watched file held at two reads the settle time apart (through symlinks); `None` for
/// one that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
}

// === impl Settled ===

impl Settled {
    /// Reads every one of `files` now.
    fn read(files: &[PathBuf]) -> Self {
        Self {
            files: files
                .iter()
                .map(|f| (f.clone(), std::fs::read(f).ok()))
                .collect(),
        }
    }

    /// The settled bytes of `path`, when it is a watched file that could be read.
    pub fn get(&self, path: &Path) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(f, _)| f == path)
            .and_then(|(_, bytes)| bytes.as_deref())
    }

    /// A digest per file, to tell a change from a rewrite of the same bytes.
    fn digests(&self) -> Vec<Option<[u8; 32]>> {
        self.files
            .iter()
            .map(|(_, b)| b.as_ref().map(|b| Sha256::digest(b).into()))
            .collect()
    }

    /// The files whose digest differs from `held`, for the log.
    fn changed_since(&self, held: &[Option<[u8; 32]>]) -> String {
        self.digests()
            .iter()
            .zip(&self.files)
            .zip(held)
            .filter(|((now, _), before)| now != before)
            .map(|((_, (f, _)), _)| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether a diagnostic log event comes from the file watcher's own machinery below `info`
/// (notify reports every inotify event at trace, its own reads and the log's writes included).
/// A log file in a watched directory would turn each such line into the next event, without end;
/// the binary's log filter drops these whatever `log.level` says.
pub fn feeds_back(meta: &tracing::Metadata<'_>) -> bool {
    let target = meta.target();
    let notify = target == "notify" || target.starts_with("notify::");
    notify && *meta.level() > tracing::Level::INFO
}

/// The names in each watched directory that can change a watched file: the file's own name and,
/// when it is a relative symlink (a Kubernetes volume's `file -> ..data/file`), the first
/// component of its target, which the kubelet swaps.
#[derive(Debug, Default)]
struct Names(BTreeMap<PathBuf, BTreeSet<OsString>>);

// === impl Names ===

impl Names {
    fn of(files: &[PathBuf]) -> Self {
        let mut names: BTreeMap<PathBuf, BTreeSet<OsString>> = BTreeMap::new();
        for file in files {
            let Some(name) = file.file_name() else {
                continue;
            };
            let set = names.entry(dir_of(file)).or_default();
            set.insert(name.to_owned());
            if let Ok(target) = std::fs::read_link(file)
                && let Some(Component::Normal(first)) = target.components().next()
                && target.is_relative()
            {
                set.insert(first.to_owned());
            }
        }
        Self(names)
    }

    /// Whether an event on `path` may have changed a watched file.
    fn covers(&self, path: &Path) -> bool {
        match (path.file_name(), self.0.get(&dir_of(path))) {
            (Some(name), Some(set)) => set.contains(name),
            _ => false,
        }
    }
}

/// The directory holding `file`: its parent, or `.` for a bare name.
fn dir_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Whether `event` may have changed one of the files `names` covers. Reads are not changes
/// (inotify reports opens, and the watcher's own reads would wake it again); a lost event queue
/// (`need_rescan`) or a watcher error may hide a change, so those count.
fn relevant(event: &notify::Result<notify::Event>, names: &Mutex<Names>) -> bool {
    let Ok(event) = event else {
        return true;
    };
    if event.need_rescan() {
        return true;
    }
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    let names = names.lock().unwrap_or_else(PoisonError::into_inner);
    event.paths.iter().any(|p| names.covers(p))
}

/// Watches the directories holding `files` and calls `changed` with their contents once a change
/// to any of them has settled: two reads `settle()` apart agree (the settle time is read at each
/// change, so a reload may change it). Directories, not files: cert-manager and the kubelet swap a
/// `..data` symlink, which replaces the files without writing to them. Contents, not events: a
/// rewrite of the same bytes applies nothing. Logs one line per change, never per event. The
/// returned watcher must be kept alive for as long as reloads are wanted.
///
/// # Errors
/// When the watcher cannot start or a directory cannot be watched.
pub(crate) fn watch(
    files: Vec<PathBuf>,
    settle: impl Fn() -> Duration + Send + 'static,
    changed: impl FnMut(&Settled) + Send + 'static,
) -> Result<RecommendedWatcher, notify::Error> {
    let (watcher, wake) = start(&files)?;
    tokio::spawn(follow(files, wake, settle, changed, None));
    Ok(watcher)
}

/// A watch whose file list follows what the watched files say (the config names its key, CA and
/// JWKS files): kept alive for as long as reloads are wanted.
pub(crate) struct Watching {
    _watcher: Arc<Mutex<RecommendedWatcher>>,
}

/// Like [`watch`], but the list comes from `files`, asked at start and again after each change
/// handed over to `changed`: a directory the new list needs is watched from then on, and one it
/// no longer needs is let go. A directory that cannot be watched is logged and left out; the
/// config's own directory, watched from the start, keeps its reloads coming.
///
/// # Errors
/// When the watcher cannot start or a directory of the first list cannot be watched.
pub(crate) fn watch_following(
    files: impl Fn() -> Vec<PathBuf> + Send + 'static,
    settle: impl Fn() -> Duration + Send + 'static,
    changed: impl FnMut(&Settled) + Send + 'static,
) -> Result<Watching, notify::Error> {
    let first = files();
    let (watcher, wake) = start(&first)?;
    let watcher = Arc::new(Mutex::new(watcher));
    let list = Following {
        files: Box::new(files),
        watcher: Arc::downgrade(&watcher),
    };
    tokio::spawn(follow(first, wake, settle, changed, Some(list)));
    Ok(Watching { _watcher: watcher })
}

/// Where a following watch gets its list, and the watcher whose directories it moves. Weak: the
/// watch ends when its owner drops the [`Watching`].
struct Following {
    files: Box<dyn Fn() -> Vec<PathBuf> + Send>,
    watcher: std::sync::Weak<Mutex<RecommendedWatcher>>,
}

// === impl Following ===

impl Following {
    /// The list now; the directories it adds are watched and those it drops let go.
    fn next(&self, files: &[PathBuf]) -> Vec<PathBuf> {
        let next = (self.files)();
        if next == files {
            return next;
        }
        let Some(watcher) = self.watcher.upgrade() else {
            return next;
        };
        let mut watcher = watcher.lock().unwrap_or_else(PoisonError::into_inner);
        let (before, after) = (dirs_of(files), dirs_of(&next));
        for dir in after.difference(&before) {
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "watching a directory the config names")
                }
                Err(error) => tracing::warn!(
                    dir = %dir.display(),
                    %error,
                    "cannot watch a directory the config names; a change there needs SIGHUP"
                ),
            }
        }
        for dir in before.difference(&after) {
            // A directory removed from disk is no longer watched anyway.
            let _ = watcher.unwatch(dir);
        }
        next
    }
}

fn dirs_of(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    files.iter().map(|f| dir_of(f)).collect()
}

/// What a started watcher hands to the task that follows it: its wake-ups, the names it screens
/// events by, and what the files held when it started (read before the caller goes on, so a
/// write right after the start is a change).
struct Wake {
    rx: mpsc::Receiver<()>,
    names: Arc<Mutex<Names>>,
    held: Vec<Option<[u8; 32]>>,
}

/// A watcher over the directories of `files`.
fn start(files: &[PathBuf]) -> Result<(RecommendedWatcher, Wake), notify::Error> {
    let names = Arc::new(Mutex::new(Names::of(files)));
    // One slot: a burst of events leaves one wake-up, and the watcher's own thread never blocks.
    let (tx, rx) = mpsc::channel::<()>(1);
    let screen = names.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if relevant(&event, &screen) {
            let _ = tx.try_send(());
        }
    })?;
    for dir in &dirs_of(files) {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    let held = Settled::read(files).digests();
    Ok((watcher, Wake { rx, names, held }))
}

/// The watch itself: on each wake-up, settles the change and hands it over; ends when the
/// watcher is dropped (the wake-ups stop).
async fn follow(
    mut files: Vec<PathBuf>,
    wake: Wake,
    settle: impl Fn() -> Duration,
    mut changed: impl FnMut(&Settled),
    list: Option<Following>,
) {
    let Wake {
        mut rx,
        names,
        mut held,
    } = wake;
    while rx.recv().await.is_some() {
        let mut seen = Settled::read(&files);
        if seen.digests() == held {
            continue;
        }
        let wait = settle();
        tracing::debug!(
            files = %seen.changed_since(&held),
            settle_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "a watched file changed; applying it once unchanged for the settle time"
        );
        loop {
            tokio::time::sleep(wait).await;
            // Events during the wait are covered by the second read.
            while rx.try_recv().is_ok() {}
            let now = Settled::read(&files);
            if now == seen {
                break;
            }
            seen = now;
        }
        let digests = seen.digests();
        if digests != held {
            held = digests;
            changed(&seen);
        }
        if let Some(list) = &list {
            let next = list.next(&files);
            if next != files {
                files = next;
                // The new files were read by the change just applied; from here on a change to
                // them is one to apply.
                held = Settled::read(&files).digests();
            }
        }
        // A swapped symlink may point elsewhere now, and the list may have moved.
        *names.lock().unwrap_or_else(PoisonError::into_inner) = Names::of(&files);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_the_file_and_its_volume_link_but_not_a_log_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..2026_01_01");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("drawbridge.toml"), "").unwrap();
        std::os::unix::fs::symlink("..2026_01_01", dir.path().join("..data")).unwrap();
        let config = dir.path().join("drawbridge.toml");
        std::os::unix::fs::symlink("..data/drawbridge.toml", &config).unwrap();
        let names = Names::of(std::slice::from_ref(&config));
        assert!(names.covers(&config));
        assert!(names.covers(&dir.path().join("..data")));
        assert!(!names.covers(&dir.path().join("audit.log")));
        assert!(!names.covers(&dir.path().join("..data_tmp")));
        assert!(!names.covers(Path::new("/elsewhere/drawbridge.toml")));
    }

    /// Waits up to 10 s for `count` to reach `n`.
    async fn reaches(count: &std::sync::atomic::AtomicUsize, n: usize) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if count.load(std::sync::atomic::Ordering::SeqCst) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn following_watch_list_moved_to_another_directory_hands_over_changes_there() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (in_a, in_b) = (a.path().join("key.pem"), b.path().join("key.pem"));
        std::fs::write(&in_a, "a1").unwrap();
        std::fs::write(&in_b, "b1").unwrap();
        let list = Arc::new(Mutex::new(vec![in_a.clone()]));
        let changes = Arc::new(AtomicUsize::new(0));
        let (asked, counted) = (list.clone(), changes.clone());
        let _watching = watch_following(
            move || asked.lock().unwrap().clone(),
            || Duration::from_millis(50),
            move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();

        // The first list is watched; the change hands the list over to dir B.
        *list.lock().unwrap() = vec![in_b.clone()];
        std::fs::write(&in_a, "a2").unwrap();
        assert!(reaches(&changes, 1).await, "a change in dir A was not seen");

        // Dir B is watched from the change on (the list is asked again just after it, so a write
        // is repeated until the watch has moved).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut n = 1;
        while changes.load(Ordering::SeqCst) < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "a change in dir B, which the list moved to, was not seen"
            );
            n += 1;
            std::fs::write(&in_b, format!("b{n}")).unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
