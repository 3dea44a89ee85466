//! Names the build: sets `VCS_AGENT_BUILD` to the crate version and, when the sources are a
//! git checkout, the commit they were built from, `0.1.0+1a2b3c4d5e6f`, with `-dirty` when
//! what goes into the binaries (the files of [`SOURCES`]) differed from that commit. Without
//! git or without a `.git` (a source tarball, a vendored copy) it is the crate version alone.
//! `--version`, the help text and the agent's connect headers say it, so an operator (and the
//! gateway's panel) can tell builds apart, not just releases.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the binaries are built from: a change here makes a build `-dirty` (a README or a
/// test does not).
const SOURCES: [&str; 4] = ["src", "Cargo.toml", "Cargo.lock", ".cargo"];

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    // Cargo scans a directory named here for changes; a path that does not exist would run
    // this script on every build.
    for source in SOURCES {
        rerun_if_exists(&root.join(source));
    }
    let build = match commit(&root) {
        Some(commit) => format!("{version}+{commit}"),
        None => version,
    };
    println!("cargo:rustc-env=VCS_AGENT_BUILD={build}");
}

/// `1a2b3c4d5e6f` or `1a2b3c4d5e6f-dirty` for a checkout whose top is `root`; `None` otherwise.
fn commit(root: &Path) -> Option<String> {
    // A tarball unpacked inside some other repository must not take that repository's commit.
    let top = git(root, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != root.canonicalize().ok()? {
        return None;
    }
    let commit = git(root, &["rev-parse", "--short=12", "HEAD"])?;
    rerun_on_new_commits(root);
    // --no-optional-locks: status must not write the index behind the developer's back.
    let mut status = vec![
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
    ];
    status.extend(SOURCES);
    let changes = git(root, &status)?;
    Some(if changes.is_empty() {
        commit
    } else {
        format!("{commit}-dirty")
    })
}

/// A commit moves HEAD (detached) or its branch (a loose ref, or packed-refs); a checkout
/// rewrites HEAD: each runs this script again.
fn rerun_on_new_commits(root: &Path) {
    let mut refs = vec!["HEAD".to_string(), "packed-refs".to_string()];
    refs.extend(git(root, &["symbolic-ref", "-q", "HEAD"]));
    for name in refs {
        if let Some(file) = git(root, &["rev-parse", "--git-path", &name]) {
            rerun_if_exists(&root.join(file));
        }
    }
}

fn rerun_if_exists(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
/// What `git ARGS` printed, trimmed, when it ran and succeeded.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}
