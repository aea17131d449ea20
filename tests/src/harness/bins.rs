//! The workspace's binaries as the process tests run them: built beforehand, never stale.
//!
//! Cargo builds another package's binaries for no test of this one (`env!("CARGO_BIN_EXE_…")`
//! names only this package's), so `scripts/test.sh` runs `cargo build --workspace --bins` before
//! the tests, and [`workspace_bin`] takes a binary from the target directory the test runs
//! from. It fails the test, rather than skip it, when the binary is missing or stale.
//!
//! Stale means older than a source it was built from. Those sources are the ones cargo lists
//! in the dep-info file it writes beside the binary (`target/debug/NAME.d`): every file of
//! every crate of this workspace that went into it. This is the strictest sensible rule the
//! suites had (kafka_e2e's: every source of each crate the binary is built from, and of
//! `src/bin/` the binary's own file only; demo_e2e's also counted the other binaries' files,
//! refusing a binary `cargo build` does not rebuild), with the crates read from cargo instead
//! of a table kept by hand: a binary is refused exactly when `cargo build` would rebuild it for
//! a change of its sources, and never for a file it does not compile.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What to do about a missing or stale binary.
const HINT: &str = "run `cargo build --workspace --bins` first (scripts/test.sh does)";

/// Names another build of `prlx-coordinator` to test against; checked only for existence.
pub const COORDINATOR_BIN_ENV: &str = "PRLX_TEST_COORDINATOR_BIN";

/// The workspace root: `root/node/models/registry.toml`, `root/.cache/…`, `root/scripts/…`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The path of the workspace binary `name` (`prlx-coordinator`, `prlx-node`, `prlx-replay`,
/// …), after checking it is built and up to date (see the module docs). For
/// `prlx-coordinator`, `$PRLX_TEST_COORDINATOR_BIN` names another build instead.
pub fn workspace_bin(name: &str) -> PathBuf {
    if name == "prlx-coordinator" {
        if let Some(path) = std::env::var_os(COORDINATOR_BIN_ENV) {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "${COORDINATOR_BIN_ENV}: {} is missing",
                path.display()
            );
            return path;
        }
    }
    let dir = target_dir();
    let path = dir.join(name);
    let built = modified(&path).unwrap_or_else(|| panic!("{} is missing: {HINT}", path.display()));
    let dep_info = dir.join(format!("{name}.d"));
    let listed = std::fs::read_to_string(&dep_info)
        .unwrap_or_else(|e| panic!("{}: {e}: {HINT}", dep_info.display()));
    for source in dep_info_sources(&listed) {
        match modified(&source) {
            Some(changed) if changed <= built => {}
            Some(_) => panic!(
                "{} is older than its source {}: {HINT}",
                path.display(),
                source.display()
            ),
            None => panic!(
                "{} was built from {}, which is gone: {HINT}",
                path.display(),
                source.display()
            ),
        }
    }
    path
}

/// Where cargo puts the binaries of the profile this test was built with (`target/debug`):
/// the test's own directory, or its parent when that is `deps/`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running test's path");
    let dir = exe.parent().expect("a binary lives in a directory");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("deps/ has a parent").to_owned(),
        _ => dir.to_owned(),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The prerequisites of the first rule of a dep-info file: `target: source source …`, in
/// make's syntax (a space inside a path is escaped with a backslash).
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let rule = text.lines().next().unwrap_or_default();
    let Some((_, prerequisites)) = rule.split_once(": ") else {
        return Vec::new();
    };
    let mut sources = Vec::new();
    let mut current = String::new();
    let mut chars = prerequisites.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => {
                if !current.is_empty() {
                    sources.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        sources.push(PathBuf::from(current));
    }
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_lists_each_prerequisite_with_escaped_spaces_kept() {
        let text = "/t/debug/bin: /w/a.rs /w/my\\ dir/b.rs  /w/c.rs\n\n/w/a.rs:\n";
        assert_eq!(
            dep_info_sources(text),
            ["/w/a.rs", "/w/my dir/b.rs", "/w/c.rs"].map(PathBuf::from)
        );
        assert!(dep_info_sources("").is_empty());
    }
}
