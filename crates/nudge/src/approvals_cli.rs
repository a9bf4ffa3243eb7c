//! `nudge approvals`: list the decisions waiting for approval (`mode = "approval"`, or a live flow within its
//! `approval.first_n`) and approve or reject them, one by one or in bulk. Works on the data directory
//! directly, with or without a running server (a running server's outbox worker picks approved actions up
//! on its next poll). Decisions are attributed to the operating-system user (`cli:$USER`) in the audit trail.

use crate::config::Config;
use clap::Subcommand;
use nudge_store::{
    ApprovalDecision, ApprovalFilter, ApprovalRecord, ApprovalStatus, ApprovalTarget, DecideResult, Store,
};

#[derive(Subcommand)]
pub enum ApprovalsCmd {
    /// List approval items, oldest first.
    List {
        /// Only this flow's items.
        #[arg(long)]
        flow: Option<String>,
        /// Only items in this state: pending, approved, rejected or expired.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Approve items: their actions are sent (once each).
    Approve(DecideArgs),
    /// Reject items: nothing of them is ever sent.
    Reject(DecideArgs),
}

#[derive(clap::Args)]
pub struct DecideArgs {
    /// With --all: only this flow's pending items.
    #[arg(long)]
    flow: Option<String>,
    /// Every pending item (of --flow, or of every flow).
    #[arg(long)]
    all: bool,
    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: Option<String>,
    /// The items' ids (`nudge approvals list` shows them).
    ids: Vec<i64>,
}

/// Who decides from the command line: `cli:<OS user>`.
pub fn cli_user() -> String {
    let user =
        std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

pub async fn run(cfg: &Config, cmd: ApprovalsCmd) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg)?;
    match cmd {
        ApprovalsCmd::List { flow, status, json } => {
            let status = status
                .map(|s| {
                    ApprovalStatus::parse(&s).ok_or_else(|| {
                        anyhow::anyhow!(
                            "`{s}` is not an approval status (pending, approved, rejected, expired)"
                        )
                    })
                })
                .transpose()?;
            let items = store.list_approvals(ApprovalFilter { flow, status, limit: 0 }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                print!("{}", list_text(&items));
            }
            Ok(())
        }
        ApprovalsCmd::Approve(args) => decide(&*store, args, ApprovalDecision::Approve).await,
        ApprovalsCmd::Reject(args) => decide(&*store, args, ApprovalDecision::Reject).await,
    }
}

async fn decide(store: &dyn Store, args: DecideArgs, decision: ApprovalDecision) -> anyhow::Result<()> {
    let verb = match decision {
        ApprovalDecision::Approve => "approved",
        ApprovalDecision::Reject => "rejected",
    };
    let target = match (args.all, args.ids.is_empty()) {
        (true, true) => ApprovalTarget::AllPending { flow: args.flow.clone() },
        (true, false) => anyhow::bail!("give item ids or --all, not both"),
        (false, true) => anyhow::bail!(
            "name the items to decide: their ids (`nudge approvals list` shows them), or --all [--flow FLOW]"
        ),
        (false, false) if args.flow.is_some() => {
            anyhow::bail!("--flow selects items with --all; with ids, give the ids alone")
        }
        (false, false) => ApprovalTarget::Ids(args.ids.clone()),
    };
    let by = cli_user();
    let results = store.decide_approvals(target, decision, &by, args.reason, crate::outbox::now_ms()).await?;
    let mut failed = 0;
    let mut decided = 0;
    for (id, r) in &results {
        match r {
            DecideResult::Decided => decided += 1,
            DecideResult::NotFound => {
                failed += 1;
                eprintln!("approval item {id}: no such item");
            }
            DecideResult::AlreadyDecided(s) => {
                failed += 1;
                eprintln!("approval item {id}: already {}; nothing changed", s.as_str());
            }
            DecideResult::Expired => {
                failed += 1;
                eprintln!("approval item {id}: expired; nothing is sent");
            }
        }
    }
    println!("{decided} item(s) {verb} by {by}");
    if failed > 0 {
        anyhow::bail!("{failed} item(s) could not be {verb}");
    }
    Ok(())
}

fn fmt_ms(ms: i64) -> String {
    crate::pipeline::fmt_ts(crate::pipeline::ms_to_ts(ms))
}

/// The text listing: one line per item.
pub fn list_text(items: &[ApprovalRecord]) -> String {
    if items.is_empty() {
        return "no approval items\n".into();
    }
    let mut out = format!(
        "{:>8}  {:<10}  {:<24}  {:<28}  {:>7}  {:<20}  {}\n",
        "ID", "STATUS", "FLOW", "CUSTOMER", "ACTIONS", "EXPIRES", "DECIDED BY"
    );
    for a in items {
        let n = a.actions.as_array().map_or(0, Vec::len);
        out.push_str(&format!(
            "{:>8}  {:<10}  {:<24}  {:<28}  {:>7}  {:<20}  {}\n",
            a.id,
            a.status.as_str(),
            a.flow,
            a.customer.to_string(),
            n,
            fmt_ms(a.expires_at_ms),
            a.decided_by.as_deref().unwrap_or("-"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_model::TraceId;
    use nudge_store::{NewApproval, ProcessOutcome};
    use std::sync::Arc;

    fn args(all: bool, flow: Option<&str>, ids: &[i64]) -> DecideArgs {
        DecideArgs { flow: flow.map(str::to_string), all, reason: None, ids: ids.to_vec() }
    }

    #[tokio::test]
    async fn the_cli_decides_by_id_or_all_and_refuses_what_it_cannot_decide() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            nudge_store::sqlite::SqliteStore::open(dir.path(), nudge_store::sqlite::Durability::Normal)
                .unwrap(),
        );
        let now = crate::outbox::now_ms();
        let outcomes = (0..3)
            .map(|i| {
                let t = TraceId::new();
                ProcessOutcome {
                    trace_id: Some(t),
                    approvals: vec![NewApproval {
                        trace_id: t,
                        flow: if i == 2 { "other".into() } else { "winback".into() },
                        flow_version: "v".into(),
                        customer: format!("shopify:{i}").parse().unwrap(),
                        actions_json: r#"[{"destination":"klaviyo","action":{"n":1}}]"#.into(),
                        created_at_ms: now,
                        expires_at_ms: now + 60_000,
                    }],
                    ..Default::default()
                }
            })
            .collect();
        store.commit_processing(outcomes).await.unwrap();
        let items = store.list_approvals(ApprovalFilter::default()).await.unwrap();
        let ids: Vec<i64> = items.iter().map(|a| a.id).collect();
        assert!(list_text(&items).contains("winback"));

        let e = decide(&*store, args(false, None, &[]), ApprovalDecision::Approve).await.unwrap_err();
        assert!(e.to_string().contains("--all"), "{e}");
        let e = decide(&*store, args(true, None, &[ids[0]]), ApprovalDecision::Approve).await.unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        decide(&*store, args(false, None, &[ids[0]]), ApprovalDecision::Approve).await.unwrap();
        let e = decide(&*store, args(false, None, &[ids[0]]), ApprovalDecision::Reject).await.unwrap_err();
        assert!(e.to_string().contains("could not be rejected"), "{e}");
        let e = decide(&*store, args(false, None, &[424_242]), ApprovalDecision::Approve).await.unwrap_err();
        assert!(e.to_string().contains("1 item(s)"), "{e}");
        // --all --flow decides only that flow's pending items.
        decide(&*store, args(true, Some("winback"), &[]), ApprovalDecision::Reject).await.unwrap();
        let after = store.list_approvals(ApprovalFilter::default()).await.unwrap();
        let status: Vec<ApprovalStatus> = after.iter().map(|a| a.status).collect();
        assert_eq!(status, [ApprovalStatus::Approved, ApprovalStatus::Rejected, ApprovalStatus::Pending]);
        assert!(after[0].decided_by.as_deref().unwrap().starts_with("cli:"));
        assert_eq!(store.backlog().await.unwrap().1, 1, "the approved item's action is in the outbox");
    }
}
