//! `nudge privacy` through the binary: export writes the person's data and no one else's; erase
//! `--dry-run` counts and changes nothing; erase removes them (with no destination configured, none is
//! asked) and leaves no trace of them in the data directory or the logs; status shows the job by
//! pseudonym.

use nudge_store::prelude::*;
use nudge_store::{ProcessOutcome, StoredState};
use std::path::Path;
use std::process::{Command, Output};

const EMAIL: &str = "cli-erase-person@example.org";
const ID: &str = "shopify:8812734465001";

fn nudge(data_dir: &Path, args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "debug")
        .env_remove("NUDGE_CONFIG")
        .output()
        .expect("the nudge binary runs");
    assert!(
        o.status.success(),
        "nudge {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_export_and_status_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store =
            nudge_store::sqlite::SqliteStore::open(dir.path(), nudge_store::sqlite::Durability::Normal)
                .unwrap();
        let state = |id: &str, email: &str| {
            let mut st = nudge_state::CustomerState::new(id.parse().unwrap());
            st.email = Some(email.into());
            StoredState { customer: id.parse().unwrap(), email: Some(email.into()), state: st.encode() }
        };

        store
            .commit_processing(vec![ProcessOutcome {
                states: vec![state(ID, EMAIL), state("shopify:8812734465002", "kept@example.org")],
                ..Default::default()
            }])
            .await
            .unwrap();
    }
    let mut logs = Vec::new();

    let out = dir.path().join("export.json");
    let o = nudge(dir.path(), &["privacy", "export", "--customer", ID, "--out", out.to_str().unwrap()]);
    logs.extend(o.stderr);
    let export = std::fs::read_to_string(&out).unwrap();
    assert!(export.contains(EMAIL), "{export}");
    assert!(!export.contains("kept@example.org") && !export.contains("8812734465002"), "only the person");
    std::fs::remove_file(&out).unwrap();

    let o = nudge(dir.path(), &["privacy", "erase", "--customer", ID, "--dry-run"]);
    let shown = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(shown.contains("\"states\": 1"), "{shown}");
    logs.extend(o.stderr);

    let o = nudge(dir.path(), &["privacy", "erase", "--customer", ID, "--wait-secs", "10"]);
    let shown = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(shown.contains("erased ps_customer_") && shown.contains("done"), "{shown}");
    assert!(shown.contains("no destination held them"), "{shown}");
    logs.extend(o.stderr);

    let o = nudge(dir.path(), &["privacy", "status", "--customer", ID, "--json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["done"], true);
    assert_eq!(jobs[0]["summary"]["states"], 1);
    logs.extend(o.stderr);

    // The export of an erased person is empty.
    let o = nudge(dir.path(), &["privacy", "export", "--customer", ID]);
    let empty: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(empty["states"].as_array().unwrap().is_empty() && empty["audit"].as_array().unwrap().is_empty());

    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        for n in [EMAIL, "8812734465001"] {
            assert!(!contains(&bytes, n.as_bytes()), "{} holds {n}", e.path().display());
        }
    }
    for n in [EMAIL, "8812734465001"] {
        assert!(!contains(&logs, n.as_bytes()), "the logs hold {n}");
    }
}
