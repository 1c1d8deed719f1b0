//! Records the git commit being built as `RINGCAST_GIT_COMMIT` (`ringcast_build_info`'s
//! `commit` label); outside a git checkout, or without git, the label says "unknown".

use std::process::Command;

fn main() {
    if let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) {
        println!("cargo:rustc-env=RINGCAST_GIT_COMMIT={commit}");
    }
    // Rebuild when HEAD moves: HEAD itself (checkout) and the ref it points to (commit).
    for file in ["HEAD", "packed-refs"] {
        // A path that does not exist (no packed-refs yet) would make cargo rebuild every time.
        if let Some(path) = git(&["rev-parse", "--git-path", file])
            .filter(|path| std::path::Path::new(path).exists())
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(path) = git(&["symbolic-ref", "-q", "HEAD"])
        .and_then(|branch| git(&["rev-parse", "--git-path", &branch]))
    {
        println!("cargo:rerun-if-changed={path}");
    }
}

/// The trimmed output of `git ARGS`, None if git fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
