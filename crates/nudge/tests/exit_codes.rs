//! Exit codes through the binary: 0 ok, 1 failed, 2 usage or configuration error; and no progress drawing
//! when stderr is not a terminal.

use std::path::Path;
use std::process::{Command, Output};

fn nudge(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env_remove("NUDGE_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("the nudge binary runs")
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // Unknown subcommand, unknown option, a missing required argument: clap's usage errors.
    for args in [&["no-such-command"][..], &["audit", "--no-such-option"], &["tokens", "create"]] {
        let o = nudge(dir.path(), args);
        assert_eq!(code(&o), Some(2), "nudge {args:?}: {}", stderr(&o));
    }
    // A malformed argument the command checks itself, and a name that is not configured.
    let o = nudge(dir.path(), &["replay", "dead-letters", "--trace", "not-a-trace"]);
    assert_eq!(code(&o), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not a trace id"), "{}", stderr(&o));
    let o = nudge(dir.path(), &["replay", "dead-letters", "--destination", "nowhere"]);
    assert_eq!(code(&o), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("destination `nowhere` is not configured"), "{}", stderr(&o));
    let o = nudge(dir.path(), &["replay", "dead-letters", "--since", "yesterday-ish"]);
    assert_eq!(code(&o), Some(2), "{}", stderr(&o));
    // Help and version are not errors.
    assert_eq!(code(&nudge(dir.path(), &["--help"])), Some(0));
    assert_eq!(code(&nudge(dir.path(), &["--version"])), Some(0));
}

#[test]
fn configuration_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten = \"not an address\"\n").unwrap();
    let bad = bad.to_str().unwrap();
    for args in [&["--config", bad, "config", "check"][..], &["--config", bad, "replay", "fetch-jobs"]] {
        let o = nudge(dir.path(), args);
        assert_eq!(code(&o), Some(2), "nudge {args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("server.listen"), "the error names the key: {}", stderr(&o));
    }
    let missing = dir.path().join("missing.toml");
    let o = nudge(dir.path(), &["--config", missing.to_str().unwrap(), "config", "check"]);
    assert_eq!(code(&o), Some(2), "{}", stderr(&o));
}

#[test]
fn success_exits_0_and_failure_1_without_progress_drawing() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing to replay in a fresh store: done, and stderr (not a terminal here) holds no progress.
    let o = nudge(dir.path(), &["replay", "fetch-jobs"]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 dead-lettered fetch jobs"));
    assert!(!stderr(&o).contains("queueing"), "a spinner was drawn to a pipe: {}", stderr(&o));
    // A file that cannot be read is a failure, not a usage error.
    let missing = dir.path().join("no-such-orders.csv");
    let o = nudge(dir.path(), &["import", "--transactions", missing.to_str().unwrap()]);
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
}
