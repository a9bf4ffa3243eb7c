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

/// What approving needs beyond the store: scores and policy settings, to bring items up to date.
pub struct ApprovalChecks<'a> {
    pub scoring: &'a crate::pipeline::Scoring,
    pub policy: &'a nudge_policy::PolicyConfig,
}

/// Approvals decided with [`decide_checked`]: the store's result per item, and the items rejected instead
/// because the customer withdrew consent after the decision.
#[derive(Debug, Default)]
pub struct Checked {
    pub results: Vec<(i64, DecideResult)>,
    pub consent_withdrawn: Vec<i64>,
    /// Items left pending because their copy is still being generated: a person approves the copy they
    /// saw, so an item is approved only once it shows its copy.
    pub awaiting_copy: Vec<i64>,
}

/// Why an item whose copy is still being generated was not approved.
pub const AWAITING_COPY: &str =
    "its generated copy is not there yet (it is being generated); approve it once the copy shows";

/// Whether any of an approval item's actions still waits for its generated copy.
pub fn awaits_copy(actions: &serde_json::Value) -> bool {
    actions.as_array().is_some_and(|a| {
        a.iter().any(|q| q["action"]["properties"].get(nudge_model::COPY_REQUEST_PROPERTY).is_some())
    })
}

/// The reason recorded for an item rejected at approval because consent was withdrawn.
pub const CONSENT_WITHDRAWN: &str = "consent withdrawn since the decision: nothing is sent";

/// An action reaches the customer through a marketing tool and needs their consent (as the flows' check
/// at decision time: a trigger event or a list addition; a profile sync or a list removal does not).
fn needs_consent(a: &nudge_model::Action) -> bool {
    matches!(a, nudge_model::Action::TriggerEvent { .. } | nudge_model::Action::AddToList { .. })
}

/// Whether the customer's stored consent still allows marketing: subscribed, or nothing stored (the
/// decision then rested on the order's or checkout's own consent). An explicit refusal since wins.
fn consent_still_given(state: &nudge_state::CustomerState) -> bool {
    matches!(
        state.consent,
        nudge_model::MarketingConsent::Subscribed | nudge_model::MarketingConsent::Unknown
    )
}

/// Approves or rejects items as [`Store::decide_approvals`] does, with what an approval must check *now*
/// (hours or days after the decision):
/// - an item with a marketing action whose customer has since refused consent is rejected instead
///   (reason [`CONSENT_WITHDRAWN`], audited like any rejection) and never sent;
/// - a `sync_profile` action is rebuilt from the customer's current state and scores, so an approval never
///   writes the decision-time scores over newer ones.
///
/// Rejections go straight to the store.
pub async fn decide_checked(
    store: &dyn Store,
    checks: &ApprovalChecks<'_>,
    target: ApprovalTarget,
    decision: ApprovalDecision,
    by: &str,
    reason: Option<String>,
    now_ms: i64,
) -> anyhow::Result<Checked> {
    if decision == ApprovalDecision::Reject {
        let results = store.decide_approvals(target, decision, by, reason, now_ms).await?;
        return Ok(Checked { results, ..Default::default() });
    }
    let flow = match &target {
        ApprovalTarget::AllPending { flow } => flow.clone(),
        ApprovalTarget::Ids(_) => None,
    };
    let pending = store
        .list_approvals(ApprovalFilter { flow, status: Some(ApprovalStatus::Pending), limit: 0 })
        .await?;
    let pending: Vec<ApprovalRecord> = match &target {
        ApprovalTarget::AllPending { .. } => pending,
        ApprovalTarget::Ids(ids) => pending.into_iter().filter(|a| ids.contains(&a.id)).collect(),
    };
    let customers: Vec<nudge_model::CustomerId> = pending.iter().map(|a| a.customer.clone()).collect();
    let mut states = std::collections::HashMap::new();
    for chunk in customers.chunks(500) {
        for s in store.load_states(chunk).await? {
            let state: nudge_state::CustomerState = nudge_state::CustomerState::decode(&s.state)
                .map_err(|e| anyhow::anyhow!("the stored state of {}: {e}", s.customer))?;
            states.insert(s.customer, state);
        }
    }
    let now = crate::pipeline::ms_to_ts(now_ms);
    let (mut withdrawn, mut updates) = (Vec::new(), Vec::new());
    let awaiting: Vec<i64> = pending.iter().filter(|a| awaits_copy(&a.actions)).map(|a| a.id).collect();
    let pending: Vec<ApprovalRecord> = pending.into_iter().filter(|a| !awaiting.contains(&a.id)).collect();
    for item in &pending {
        let Some(state) = states.get(&item.customer) else { continue };
        let Ok(mut actions) = serde_json::from_value::<Vec<QueuedAction>>(item.actions.clone()) else {
            continue;
        };
        if actions.iter().any(|a| needs_consent(&a.action)) && !consent_still_given(state) {
            withdrawn.push(item.id);
            continue;
        }
        let mut changed = false;
        for a in actions.iter_mut().filter(|a| matches!(a.action, nudge_model::Action::UpsertProfile { .. }))
        {
            let (scores, _) = checks.scoring.score(state, now);
            a.action = nudge_policy::profile_action(state, &scores, checks.policy);
            changed = true;
        }
        if changed {
            updates.push((item.id, serde_json::to_string(&actions)?));
        }
    }
    if !withdrawn.is_empty() {
        store
            .decide_approvals(
                ApprovalTarget::Ids(withdrawn.clone()),
                ApprovalDecision::Reject,
                by,
                Some(CONSENT_WITHDRAWN.into()),
                now_ms,
            )
            .await?;
    }
    if !updates.is_empty() {
        store.replace_approval_actions(updates).await?;
    }
    // Every item named (or every pending one found), minus those just rejected: the store answers for each,
    // unknown and already-decided ones included.
    let target = match target {
        ApprovalTarget::Ids(ids) => ApprovalTarget::Ids(
            ids.into_iter().filter(|id| !withdrawn.contains(id) && !awaiting.contains(id)).collect(),
        ),
        ApprovalTarget::AllPending { .. } => {
            ApprovalTarget::Ids(pending.iter().map(|a| a.id).filter(|id| !withdrawn.contains(id)).collect())
        }
    };
    let results = match &target {
        ApprovalTarget::Ids(ids) if ids.is_empty() => Vec::new(),
        _ => store.decide_approvals(target, decision, by, reason, now_ms).await?,
    };
    Ok(Checked { results, consent_withdrawn: withdrawn, awaiting_copy: awaiting })
}

/// One queued action of an approval item, as the pipeline serialises it.
#[derive(serde::Serialize, serde::Deserialize)]
struct QueuedAction {
    destination: String,
    action: nudge_model::Action,
}

/// Who decides from the command line: `cli:<OS user>`.
pub fn cli_user() -> String {
    let user =
        std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

pub async fn run(cfg: &Config, cmd: ApprovalsCmd) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg).await?;
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
        ApprovalsCmd::Approve(args) => decide_cli(cfg, &*store, args, ApprovalDecision::Approve).await,
        ApprovalsCmd::Reject(args) => decide_cli(cfg, &*store, args, ApprovalDecision::Reject).await,
    }
}

/// [`decide`] with the scorer the server would use (the active model version, or the rules).
async fn decide_cli(
    cfg: &Config,
    store: &dyn Store,
    args: DecideArgs,
    decision: ApprovalDecision,
) -> anyhow::Result<()> {
    let scoring =
        crate::pipeline::Scoring::new(nudge_scoring::RulesScorer { thresholds: cfg.segments.clone() });
    crate::models_cli::load_active_scorer(store, &scoring, cfg).await?;
    let policy = cfg.policy();
    decide(store, &ApprovalChecks { scoring: &scoring, policy: &policy }, args, decision).await
}

async fn decide(
    store: &dyn Store,
    checks: &ApprovalChecks<'_>,
    args: DecideArgs,
    decision: ApprovalDecision,
) -> anyhow::Result<()> {
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
    let checked =
        decide_checked(store, checks, target, decision, &by, args.reason, crate::outbox::now_ms()).await?;
    for id in &checked.consent_withdrawn {
        eprintln!("approval item {id}: rejected instead: {CONSENT_WITHDRAWN}");
    }
    for id in &checked.awaiting_copy {
        eprintln!("approval item {id}: not approved: {AWAITING_COPY}");
    }
    let results = checked.results;
    let mut failed = checked.consent_withdrawn.len() + checked.awaiting_copy.len();
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
        for line in copy_lines(&a.actions) {
            out.push_str(&format!("{:>8}  {line}\n", ""));
        }
    }
    out
}

/// The generated copy an item's trigger events carry, one line per slot (`copy winback@2 subject: …`),
/// or a line saying it is still being generated.
fn copy_lines(actions: &serde_json::Value) -> Vec<String> {
    let mut lines = Vec::new();
    for q in actions.as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(props) = q["action"]["properties"].as_object() else { continue };
        if props.contains_key(nudge_model::COPY_REQUEST_PROPERTY) {
            lines.push("copy: being generated".to_string());
            continue;
        }
        for (key, v) in props {
            let (Some(o), Some(prompt)) = (v.as_object(), v["prompt"].as_str()) else { continue };
            if !v["fallback"].is_boolean() {
                continue;
            }
            let fallback = if v["fallback"] == true { " (fallback)" } else { "" };
            for (slot, text) in o.iter().filter(|(k, _)| *k != "prompt" && *k != "fallback") {
                lines.push(format!("{key} {prompt}{fallback} {slot}: {}", text.as_str().unwrap_or_default()));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_model::TraceId;
    use nudge_store::{NewApproval, ProcessOutcome};
    use std::sync::Arc;

    fn scoring() -> crate::pipeline::Scoring {
        crate::pipeline::Scoring::new(nudge_scoring::RulesScorer { thresholds: Default::default() })
    }

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
        let (scoring, policy) = (scoring(), nudge_policy::PolicyConfig::default());
        let checks = ApprovalChecks { scoring: &scoring, policy: &policy };
        let decide = async |store: &dyn Store, args: DecideArgs, d: ApprovalDecision| {
            decide(store, &checks, args, d).await
        };

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

    #[tokio::test]
    async fn approving_rechecks_consent_and_brings_a_profile_sync_up_to_date() {
        use nudge_model::{Action, AttrValue, MarketingConsent};
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            nudge_store::sqlite::SqliteStore::open(dir.path(), nudge_store::sqlite::Durability::Normal)
                .unwrap(),
        );
        let now = crate::outbox::now_ms();
        let (gone, kept): (nudge_model::CustomerId, nudge_model::CustomerId) =
            ("shopify:10".parse().unwrap(), "shopify:11".parse().unwrap());
        // As the customers are now: one has unsubscribed since the decision.
        let mut states = Vec::new();
        for (c, consent) in [(&gone, MarketingConsent::Unsubscribed), (&kept, MarketingConsent::Subscribed)] {
            let mut st = nudge_state::CustomerState::new(c.clone());
            st.consent = consent;
            st.email = Some(format!("{c}@example.org").replace(':', "_"));
            states.push(nudge_store::StoredState {
                customer: c.clone(),
                email: st.email.clone(),
                state: st.encode(),
            });
        }
        store.put_states(states).await.unwrap();
        let event = Action::TriggerEvent {
            customer: gone.clone(),
            email: None,
            name: "AI Winback".into(),
            properties: Default::default(),
            value: None,
            time: crate::pipeline::ms_to_ts(now),
            unique_id: "nudge:winback:1".into(),
        };
        let stale = Action::UpsertProfile {
            customer: kept.clone(),
            email: None,
            first_name: None,
            last_name: None,
            attributes: [("ai_churn_risk".to_string(), AttrValue::Number(99.0))].into_iter().collect(),
        };
        let outcomes = [(&gone, event), (&kept, stale)]
            .into_iter()
            .map(|(c, action)| {
                let t = TraceId::new();
                let actions = serde_json::json!([{ "destination": "klaviyo", "action": action }]);
                ProcessOutcome {
                    trace_id: Some(t),
                    approvals: vec![NewApproval {
                        trace_id: t,
                        flow: "winback".into(),
                        flow_version: "v".into(),
                        customer: c.clone(),
                        actions_json: actions.to_string(),
                        created_at_ms: now,
                        expires_at_ms: now + 60_000,
                    }],
                    ..Default::default()
                }
            })
            .collect();
        store.commit_processing(outcomes).await.unwrap();
        let (scoring, policy) = (scoring(), nudge_policy::PolicyConfig::default());
        let checks = ApprovalChecks { scoring: &scoring, policy: &policy };
        let checked = decide_checked(
            &*store,
            &checks,
            ApprovalTarget::AllPending { flow: Some("winback".into()) },
            ApprovalDecision::Approve,
            "token:mia",
            None,
            now,
        )
        .await
        .unwrap();
        let items = store.list_approvals(ApprovalFilter::default()).await.unwrap();
        assert_eq!(checked.consent_withdrawn, vec![items[0].id]);
        assert_eq!(checked.results, vec![(items[1].id, DecideResult::Decided)]);
        assert_eq!(items[0].status, ApprovalStatus::Rejected);
        assert_eq!(items[0].reason.as_deref(), Some(CONSENT_WITHDRAWN));
        assert_eq!(items[1].status, ApprovalStatus::Approved);
        // Only the profile sync is sent, with the scores of now (the rules fallback), not the decision's 99.
        let due = store.due_outbox(i64::MAX / 2, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        let sent: Action = serde_json::from_str(&due[0].action_json).unwrap();
        let Action::UpsertProfile { customer, attributes, .. } = sent else { panic!("{sent:?}") };
        assert_eq!(customer, kept);
        assert_ne!(attributes.get("ai_churn_risk"), Some(&AttrValue::Number(99.0)));
        assert!(
            matches!(attributes.get("ai_model_version"), Some(AttrValue::Text(v)) if v.starts_with("rules"))
        );
    }
}
