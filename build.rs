//! Build script: the source revision, for `drawbridge_build_info{revision}` and `--version`.
//!
//! `DRAWBRIDGE_BUILD_REVISION` wins when set (a container build has no `.git`); otherwise
//! `git rev-parse --short HEAD` in the package's directory; otherwise "unknown" (a source
//! tarball, no git installed). It never fails the build.

use std::path::Path;
use std::process::Command;

/// The variable that names the revision outright.
const ENV_REVISION: &str = "DRAWBRIDGE_BUILD_REVISION";
/// What the revision reads when nothing tells it.
const UNKNOWN: &str = "unknown";

fn main() {
    println!("cargo:rerun-if-env-changed={ENV_REVISION}");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let dir = Path::new(&dir);
    let revision = std::env::var(ENV_REVISION)
        .ok()
        .and_then(|r| sane(r.trim()))
        .or_else(|| {
            watch_head(dir);
            own_repository(dir)
                .then(|| git(dir, &["rev-parse", "--short", "HEAD"]))
                .flatten()
                .and_then(|r| sane(&r))
        })
        .unwrap_or_else(|| UNKNOWN.to_owned());
    println!("cargo:rustc-env=DRAWBRIDGE_REVISION={revision}");
}

/// `revision` when it looks like one: 1 to 64 ASCII letters, digits, `.`, `-` or `_`.
fn sane(revision: &str) -> Option<String> {
    let ok = (1..=64).contains(&revision.len())
        && revision
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    ok.then(|| revision.to_owned())
}

/// The trimmed standard output of `git args` run in `dir`, when git is there and succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_owned())
}

/// Whether `dir` is the top of a git work tree, not a directory inside some other repository (a
/// source tarball unpacked in one).
fn own_repository(dir: &Path) -> bool {
    let top = git(dir, &["rev-parse", "--show-toplevel"]);
    match (
        top.map(|t| Path::new(&t).canonicalize()),
        dir.canonicalize(),
    ) {
        (Some(Ok(top)), Ok(dir)) => top == dir,
        _ => false,
    }
}

/// Reruns this script when HEAD moves: a new commit on the branch, or a checkout of another.
/// Git's own paths are asked for, so a linked worktree (`.git` a file) works too. Without git
/// nothing is watched but the script itself.
fn watch_head(dir: &Path) {
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
