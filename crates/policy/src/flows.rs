//! Flows: what happens to whom, configured by the marketing team.
//!
//! A flow is a trigger (a kind of canonical event), a condition over the event, the customer and their
//! scores (CEL, see [`crate::condition`]), a mode (`live`, `shadow`, `approval`), a holdout share, a
//! frequency cap and a list of actions, each naming its destination. [`FlowSet::compile`] checks a set of
//! flow specs once, at load, and compiles every expression; [`FlowSet::decide`] evaluates the flows a
//! trigger selects for one event, after the event has been applied to the customer's state, and says for
//! each why it acts or not. Nothing here does I/O: the caller passes the time and persists the outcome.
//!
//! Order of checks for a flow whose trigger matches: condition → holdout (deterministic per flow and
//! customer; held-out customers are tracked but get nothing) → consent (marketing actions need the
//! customer's email consent) → frequency cap (counted from the customer's flow history) → mode.

use crate::condition::{Condition, ConditionError, FactValue, Facts, PreparedFacts, Schema};
use crate::schedule::Schedule;
use crate::{PolicyConfig, in_holdout, json_number, profile_action};
use nudge_model::{Action, BehaviourKind, EngagementKind, Event, MarketingConsent, ScoreSet, Timestamp};
use nudge_state::CustomerState;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// What starts a flow: a kind of canonical event, after it changed the customer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An order the customer's state did not hold before.
    OrderPlaced,
    /// A change to an order already known (paid, edited, fulfilled).
    OrderUpdated,
    OrderCancelled,
    /// A checkout the state did not hold before.
    CheckoutStarted,
    /// A checkout idle past `pipeline.checkout_abandon_after`.
    CheckoutAbandoned,
    /// A cart attributed to a known customer.
    CartUpdated,
    /// The first customer record for the customer.
    CustomerCreated,
    CustomerUpdated,
    /// The customer's segment or model version changed, or a score moved by at least 1 % of its scale.
    ScoresChanged,
    /// Any event that changed the customer's state (what the built-in profile sync listens to), except
    /// storefront behaviour and message engagement, which fire their own triggers only.
    StateChanged,
    /// A cron schedule (`schedule`, UTC), evaluated for every customer: fired only by the flow's own
    /// [`Event::ScheduleTick`], and decided for that flow alone ([`FlowSet::decide_flow`]).
    Schedule,
    /// A storefront product view that was new to the state.
    ProductViewed,
    /// A product added to the cart on the storefront.
    ProductAdded,
    CartViewed,
    /// A storefront search.
    Search,
    /// A review posted, or a newer version of one.
    ReviewPosted,
    /// A loyalty standing whose points or tier changed.
    LoyaltyChanged,
    /// A marketing email opened by a person (machine opens never fire it).
    EmailOpened,
    EmailClicked,
    /// An unsubscribe or a spam complaint.
    Unsubscribed,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::OrderPlaced => "order_placed",
            Trigger::OrderUpdated => "order_updated",
            Trigger::OrderCancelled => "order_cancelled",
            Trigger::CheckoutStarted => "checkout_started",
            Trigger::CheckoutAbandoned => "checkout_abandoned",
            Trigger::CartUpdated => "cart_updated",
            Trigger::CustomerCreated => "customer_created",
            Trigger::CustomerUpdated => "customer_updated",
            Trigger::ScoresChanged => "scores_changed",
            Trigger::StateChanged => "state_changed",
            Trigger::Schedule => "schedule",
            Trigger::ProductViewed => "product_viewed",
            Trigger::ProductAdded => "product_added",
            Trigger::CartViewed => "cart_viewed",
            Trigger::Search => "search",
            Trigger::ReviewPosted => "review_posted",
            Trigger::LoyaltyChanged => "loyalty_changed",
            Trigger::EmailOpened => "email_opened",
            Trigger::EmailClicked => "email_clicked",
            Trigger::Unsubscribed => "unsubscribed",
        }
    }

    /// The triggers an applied event fires. `known_before` says whether the state held the event's order,
    /// checkout or customer record before it was applied. See [`Trigger::of_change`].
    pub fn of_event(event: &Event, known_before: bool) -> Vec<Trigger> {
        Trigger::of_change(event, known_before, false)
    }

    /// The triggers an applied event fires, knowing also whether the state held the event's order as
    /// cancelled before. An order update that carries a cancellation (Shopify sends `orders/updated` with
    /// `cancelled_at` as well as `orders/cancelled`, in either order) fires `order_cancelled` once, from
    /// whichever arrives first. An order nudge has not seen fires `order_placed` only when it was created
    /// within a day of this update; an older one (placed before nudge listened) is `order_updated`. The same
    /// holds for customer records: `customer_created` for a record first seen within a day of its creation,
    /// `customer_updated` otherwise.
    pub fn of_change(event: &Event, known_before: bool, was_cancelled: bool) -> Vec<Trigger> {
        let first = match event {
            Event::OrderCancelled(_) => (!was_cancelled).then_some(Trigger::OrderCancelled),
            Event::OrderUpserted(o) if o.cancelled_at.is_some() => {
                (!was_cancelled).then_some(Trigger::OrderCancelled)
            }
            Event::OrderUpserted(_) if known_before => Some(Trigger::OrderUpdated),
            Event::OrderUpserted(o) if (o.updated_at - o.created_at) > time::Duration::days(1) => {
                Some(Trigger::OrderUpdated)
            }
            Event::OrderUpserted(_) => Some(Trigger::OrderPlaced),
            Event::CheckoutUpserted(_) if known_before => None,
            Event::CheckoutUpserted(_) => Some(Trigger::CheckoutStarted),
            Event::CheckoutAbandoned(_) => Some(Trigger::CheckoutAbandoned),
            Event::CartUpserted(_) => Some(Trigger::CartUpdated),
            Event::CustomerUpserted(_) if known_before => Some(Trigger::CustomerUpdated),
            // A customer record nudge has not seen is `customer_created` only when the platform created it
            // within a day of this update (it may come after the customer's first order); an older one was
            // created before nudge listened.
            Event::CustomerUpserted(c)
                if c.created_at.is_some_and(|at| (c.updated_at - at) > time::Duration::days(1)) =>
            {
                Some(Trigger::CustomerUpdated)
            }
            Event::CustomerUpserted(_) => Some(Trigger::CustomerCreated),
            Event::ProductUpserted(_) => None,
            Event::Behaviour(b) => match b.kind {
                BehaviourKind::ProductViewed => Some(Trigger::ProductViewed),
                BehaviourKind::ProductAdded => Some(Trigger::ProductAdded),
                BehaviourKind::CartViewed => Some(Trigger::CartViewed),
                BehaviourKind::Search => Some(Trigger::Search),
                _ => None,
            },
            Event::Identified(_) => None,
            Event::ReviewPosted(_) => Some(Trigger::ReviewPosted),
            Event::LoyaltyChanged(_) => Some(Trigger::LoyaltyChanged),
            Event::Engagement(e) => match e.kind {
                EngagementKind::Opened if !e.machine => Some(Trigger::EmailOpened),
                EngagementKind::Clicked => Some(Trigger::EmailClicked),
                EngagementKind::Unsubscribed | EngagementKind::SpamComplaint => Some(Trigger::Unsubscribed),
                _ => None,
            },
            // A firing changed nothing: it fires its schedule, not `state_changed`.
            Event::ScheduleTick(_) => return vec![Trigger::Schedule],
        };
        // Storefront behaviour and message engagement come by the thousand and change nothing a profile
        // sync writes: they fire their own trigger (and `scores_changed` when the scores move), not
        // `state_changed`.
        if matches!(event, Event::Behaviour(_) | Event::Engagement(_)) {
            return first.into_iter().collect();
        }
        first.into_iter().chain([Trigger::StateChanged]).collect()
    }
}

/// How a flow's decisions are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Actions are sent.
    #[default]
    Live,
    /// Decisions are recorded and audited; nothing is sent.
    Shadow,
    /// Every decision waits for a person to approve it.
    Approval,
}

/// One action of a flow, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionSpec {
    /// Write the customer's prefixed scores and segment onto their profile.
    SyncProfile { destination: String },
    /// Record a trigger event (metric) on the customer's profile.
    TrackEvent {
        destination: String,
        metric: String,
        /// Extra event properties, each a CEL expression over `event`, `customer` and `scores`.
        #[serde(default)]
        properties: BTreeMap<String, String>,
    },
    /// Make the customer a member of a list in the destination (`list_id` is the destination's id).
    AddToList { destination: String, list_id: String },
    /// End the customer's membership of a list in the destination.
    RemoveFromList { destination: String, list_id: String },
    /// Tell the team: a message to Slack (or a webhook). `text` is a CEL expression over `event`,
    /// `customer` and `scores`, evaluated when the flow decides; those facts hold no personal data, so
    /// neither can the message.
    SlackAlert { destination: String, text: String },
    /// Choose an offer arm with the offer bandit (see [`crate::offers`]); the arm goes with the flow's
    /// other actions, and the arm `none` drops its marketing actions.
    ChooseOffer(crate::offers::OfferSpec),
    /// Generate copy (subject line, preheader, body…) for the flow's trigger events from a versioned prompt
    /// (`[[prompts]]`; `version` absent: the newest configured). Nothing is generated when the flow
    /// decides: each track_event carries a pseudonymous copy request, and the copy is generated before
    /// the event is sent (or before a person sees an approval item) and lands in the event's
    /// `<prefix>copy` property.
    GenerateCopy {
        prompt: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
    },
}

/// Longest list id a flow may name. Marketing platforms use short ids (Klaviyo's are six characters);
/// anything near this length is a paste error, not an id.
pub const MAX_LIST_ID_CHARS: usize = 64;

/// Why `list_id` cannot be a list id, if it cannot: it must be 1–[`MAX_LIST_ID_CHARS`] ASCII letters,
/// digits, `-` or `_`, which is every id the destinations give out and nothing that could change the
/// meaning of a request path.
pub fn list_id_problem(list_id: &str) -> Option<String> {
    if list_id.trim().is_empty() {
        return Some(
            "the list id is empty; give the destination's id of the list, such as \"Xy12Ab\"".into(),
        );
    }
    if list_id.chars().count() > MAX_LIST_ID_CHARS {
        return Some(format!(
            "a list id has at most {MAX_LIST_ID_CHARS} characters; this one has {}",
            list_id.chars().count()
        ));
    }
    if let Some(c) = list_id.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Some(format!(
            "`{}` is not a list id: {c:?} is not allowed (use the id of the list as the destination shows \
             it: letters, digits, - and _)",
            list_id.escape_debug()
        ));
    }
    None
}

/// The version of prompt `name` a `generate_copy` action uses: `version` when configured, else the newest
/// configured. Errors name the action's key (`prompt`, `version`) and what is configured.
fn resolve_prompt(
    name: &str,
    version: Option<u32>,
    prompts: &[(&str, u32)],
) -> Result<(String, u32), (&'static str, String)> {
    let versions: Vec<u32> = prompts.iter().filter(|(n, _)| *n == name).map(|(_, v)| *v).collect();
    if versions.is_empty() {
        let mut known: Vec<&str> = prompts.iter().map(|(n, _)| *n).collect();
        known.dedup();
        let known = if known.is_empty() {
            "no [[prompts]] is configured".to_string()
        } else {
            format!("configured: {}", known.join(", "))
        };
        return Err(("prompt", format!("prompt `{name}` is not configured ({known})")));
    }
    match version {
        None => Ok((name.to_string(), versions.iter().copied().max().unwrap_or_default())),
        Some(v) if versions.contains(&v) => Ok((name.to_string(), v)),
        Some(v) => {
            let mut vs = versions.clone();
            vs.sort_unstable();
            let vs: Vec<String> = vs.iter().map(u32::to_string).collect();
            Err(("version", format!("prompt `{name}` has no version {v} (configured: {})", vs.join(", "))))
        }
    }
}

impl ActionSpec {
    pub fn destination(&self) -> &str {
        match self {
            ActionSpec::SyncProfile { destination }
            | ActionSpec::TrackEvent { destination, .. }
            | ActionSpec::AddToList { destination, .. }
            | ActionSpec::RemoveFromList { destination, .. }
            | ActionSpec::SlackAlert { destination, .. } => destination,
            // Not sent anywhere: they shape the flow's other actions.
            ActionSpec::ChooseOffer(_) | ActionSpec::GenerateCopy { .. } => "",
        }
    }

    /// The kind of [`Action`] this spec builds ([`Action::kind`]).
    pub fn action_kind(&self) -> &'static str {
        match self {
            ActionSpec::SyncProfile { .. } => "upsert_profile",
            ActionSpec::TrackEvent { .. } => "trigger_event",
            ActionSpec::AddToList { .. } => "add_to_list",
            ActionSpec::RemoveFromList { .. } => "remove_from_list",
            ActionSpec::SlackAlert { .. } => "alert",
            ActionSpec::ChooseOffer(_) => "offer",
            ActionSpec::GenerateCopy { .. } => "copy",
        }
    }

    /// The spec's `type` as configured.
    pub fn type_name(&self) -> &'static str {
        match self {
            ActionSpec::SyncProfile { .. } => "sync_profile",
            ActionSpec::TrackEvent { .. } => "track_event",
            ActionSpec::AddToList { .. } => "add_to_list",
            ActionSpec::RemoveFromList { .. } => "remove_from_list",
            ActionSpec::SlackAlert { .. } => "slack_alert",
            ActionSpec::ChooseOffer(_) => "choose_offer",
            ActionSpec::GenerateCopy { .. } => "generate_copy",
        }
    }

    /// Marketing actions reach the customer and need their consent: a trigger event starts a flow in the
    /// marketing tool, and a list is an audience that campaigns are sent to, so adding to one is marketing.
    /// A profile sync writes attributes only. Removing from a list is deliberately not marketing: it only
    /// ever stops messages (a customer who withdrew consent must still be taken off a list), so it is
    /// never held back for want of consent.
    pub fn is_marketing(&self) -> bool {
        match self {
            // An offer and copy reach the customer through the flow's marketing actions.
            ActionSpec::TrackEvent { .. }
            | ActionSpec::AddToList { .. }
            | ActionSpec::ChooseOffer(_)
            | ActionSpec::GenerateCopy { .. } => true,
            // An alert goes to the team, not to the customer.
            ActionSpec::SyncProfile { .. }
            | ActionSpec::RemoveFromList { .. }
            | ActionSpec::SlackAlert { .. } => false,
        }
    }

    /// The action in a few words, as `nudge flows list` and a dry run show it
    /// (`track_event "AI First Order" → klaviyo`).
    pub fn describe(&self) -> String {
        match self {
            ActionSpec::SyncProfile { destination } => format!("sync_profile → {destination}"),
            ActionSpec::TrackEvent { destination, metric, .. } => {
                format!("track_event \"{metric}\" → {destination}")
            }
            ActionSpec::AddToList { destination, list_id } => {
                format!("add_to_list \"{list_id}\" → {destination}")
            }
            ActionSpec::RemoveFromList { destination, list_id } => {
                format!("remove_from_list \"{list_id}\" → {destination}")
            }
            ActionSpec::SlackAlert { destination, text } => {
                format!("slack_alert → {destination} (text: {text})")
            }
            ActionSpec::ChooseOffer(o) => {
                format!(
                    "choose_offer [{}] ({}, {}% explored)",
                    o.arms.join(", "),
                    o.policy,
                    o.explore_holdout_percent
                )
            }
            ActionSpec::GenerateCopy { prompt, version: Some(v) } => format!("generate_copy {prompt}@{v}"),
            ActionSpec::GenerateCopy { prompt, version: None } => {
                format!("generate_copy {prompt} (newest version)")
            }
        }
    }
}

/// Approval settings of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    /// With `mode = "live"`: the first N decisions wait for approval, then the flow runs live.
    #[serde(default)]
    pub first_n: u32,
    /// How long an item waits before it expires (`48h`, `7d`).
    #[serde(default = "default_expiry")]
    pub expires_after: String,
}

fn default_expiry() -> String {
    "48h".into()
}

/// One flow, as written in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// Unique, `[a-z0-9_]+`.
    pub name: String,
    pub trigger: Trigger,
    /// The cron expression of a `schedule` trigger: five fields, evaluated in UTC (see
    /// [`crate::schedule`]).
    #[serde(default)]
    pub schedule: Option<String>,
    /// The condition (CEL); absent means always.
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    /// Percentage of customers (0–100) held out of this flow, by a hash of (flow, customer).
    #[serde(default)]
    pub holdout_percent: u8,
    /// At most N actions of this flow per customer per window: `"1/7d"`.
    #[serde(default)]
    pub frequency_cap: Option<String>,
    /// The rule the AI condition is compared with in the shadow report (CEL).
    #[serde(default)]
    pub baseline: Option<String>,
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
    #[serde(default)]
    pub approval: Option<ApprovalSpec>,
}

/// A frequency cap: at most `count` acting decisions in `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrequencyCap {
    pub count: u32,
    pub window_secs: i64,
}

impl FrequencyCap {
    /// Parses `N/<duration>` with a duration of `s`, `m`, `h` or `d` (`1/7d`, `3/24h`).
    pub fn parse(s: &str) -> Result<FrequencyCap, String> {
        let bad = || format!("`{s}` is not a frequency cap; write N/DURATION such as \"1/7d\" or \"3/24h\"");
        let (n, w) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let window_secs = parse_duration_secs(w.trim()).ok_or_else(bad)?;
        if count == 0 || window_secs <= 0 {
            return Err(format!("`{s}`: the count and the window must be above zero"));
        }
        Ok(FrequencyCap { count, window_secs })
    }
}

/// Seconds in `90s`, `30m`, `48h`, `7d`.
pub fn parse_duration_secs(s: &str) -> Option<i64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A config error in a flow: the key path (`flows[2].when`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for FlowError {}

/// A flow checked and compiled.
#[derive(Debug, Clone)]
pub struct CompiledFlow {
    pub spec: FlowSpec,
    pub when: Condition,
    pub baseline: Option<Condition>,
    pub cap: Option<FrequencyCap>,
    /// The schedule of a `schedule` flow.
    pub schedule: Option<Schedule>,
    /// Per action (by index), its compiled expressions: a track_event's properties, a slack_alert's
    /// `text`.
    properties: Vec<Vec<(String, Condition)>>,
    /// `nudge:<name with - for _>:`, the start of its trigger events' `unique_id`s.
    unique_prefix: String,
    /// The flow's `choose_offer` action, checked.
    pub offer: Option<crate::offers::CompiledOffer>,
    /// The flow's `generate_copy` action: the prompt's name and the version it resolved to.
    pub copy: Option<(String, u32)>,
}

/// A checked set of flows, with the version (content hash) every decision records.
#[derive(Debug, Clone)]
pub struct FlowSet {
    pub version: String,
    pub flows: Vec<CompiledFlow>,
}

impl FlowSet {
    /// Checks and compiles flow specs. `destinations` are the configured destinations' names; every action
    /// must name one of them. Every error names the flow's key path.
    pub fn compile(specs: &[FlowSpec], destinations: &[&str]) -> Result<FlowSet, FlowError> {
        FlowSet::compile_with_prompts(specs, destinations, &[])
    }

    /// [`FlowSet::compile`] knowing the configured prompts (`[[prompts]]`, each name and version): a
    /// `generate_copy` action must name one of them, and a flow that generates copy needs a track_event
    /// to carry it.
    pub fn compile_with_prompts(
        specs: &[FlowSpec],
        destinations: &[&str],
        prompts: &[(&str, u32)],
    ) -> Result<FlowSet, FlowError> {
        let schema = Schema::flows_default();
        let mut flows = Vec::with_capacity(specs.len());
        let mut seen = std::collections::BTreeSet::new();
        for (i, spec) in specs.iter().enumerate() {
            let at = |key: &str| format!("flows[{i}].{key}");
            let err = |key: &str, message: String| FlowError { path: at(key), message };
            let name_ok = !spec.name.is_empty()
                && spec.name.len() <= 64
                && spec.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !name_ok {
                return Err(err("name", format!("`{}`: use 1–64 of a-z, 0-9 and _", spec.name)));
            }
            if !seen.insert(spec.name.clone()) {
                return Err(err("name", format!("flow `{}` is defined twice", spec.name)));
            }
            let named = |key: &str, message: String| err(key, format!("flow `{}`: {message}", spec.name));
            let schedule = match (spec.trigger, &spec.schedule) {
                (Trigger::Schedule, Some(expr)) => {
                    Some(Schedule::parse(expr).map_err(|m| named("schedule", m))?)
                }
                (Trigger::Schedule, None) => {
                    return Err(named(
                        "schedule",
                        "a flow with trigger = \"schedule\" needs a schedule: a cron expression in UTC such \
                         as \"0 9 * * 1\" (Mondays at 09:00)"
                            .into(),
                    ));
                }
                (_, Some(_)) => {
                    return Err(named(
                        "schedule",
                        "only a flow with trigger = \"schedule\" has a schedule".into(),
                    ));
                }
                (_, None) => None,
            };
            if spec.holdout_percent > 100 {
                return Err(named("holdout_percent", "must be between 0 and 100".into()));
            }
            if let Some(a) = &spec.approval {
                if a.first_n > 0 && spec.mode != Mode::Live {
                    return Err(named(
                        "approval.first_n",
                        format!(
                            "first_n applies to a live flow (the first N decisions wait, then it runs live); \
                             this flow's mode is \"{}\"",
                            match spec.mode {
                                Mode::Live => "live",
                                Mode::Shadow => "shadow",
                                Mode::Approval => "approval",
                            }
                        ),
                    ));
                }
                if a.first_n == 0 && spec.mode == Mode::Live {
                    return Err(named(
                        "approval",
                        "a live flow's approval table needs first_n above zero (or use mode = \"approval\")"
                            .into(),
                    ));
                }
                match parse_duration_secs(a.expires_after.trim()) {
                    Some(secs) if secs > 0 && secs <= 365 * 86_400 => {}
                    Some(secs) if secs > 0 => {
                        return Err(named(
                            "approval.expires_after",
                            format!("`{}` is longer than a year (365d at most)", a.expires_after),
                        ));
                    }
                    _ => {
                        return Err(named(
                            "approval.expires_after",
                            format!(
                                "`{}` is not a duration; write one such as \"48h\" or \"7d\"",
                                a.expires_after
                            ),
                        ));
                    }
                }
            }
            let cond = |key: &str, src: &str| {
                Condition::compile(src, &schema).map_err(|e: ConditionError| named(key, e.to_string()))
            };
            let when = match &spec.when {
                Some(src) => cond("when", src)?,
                None => Condition::always(),
            };
            let baseline = spec.baseline.as_deref().map(|src| cond("baseline", src)).transpose()?;
            let cap = spec
                .frequency_cap
                .as_deref()
                .map(FrequencyCap::parse)
                .transpose()
                .map_err(|m| named("frequency_cap", m))?;
            let mut properties = Vec::with_capacity(spec.actions.len());
            let mut offer = None;
            let mut copy = None;
            for (j, a) in spec.actions.iter().enumerate() {
                let key = |k: &str| format!("actions[{j}].{k}");
                if let ActionSpec::GenerateCopy { prompt, version } = a {
                    if copy.is_some() {
                        return Err(named(
                            &key("type"),
                            "a flow generates one set of copy: give one generate_copy".into(),
                        ));
                    }
                    copy =
                        Some(resolve_prompt(prompt, *version, prompts).map_err(|(k, m)| named(&key(k), m))?);
                    if !spec.actions.iter().any(|a| matches!(a, ActionSpec::TrackEvent { .. })) {
                        return Err(named(
                            &key("type"),
                            "generate_copy fills the flow's trigger events (the `copy` property a template \
                             reads): add a track_event; profile syncs, lists and alerts carry no copy"
                                .into(),
                        ));
                    }
                    properties.push(Vec::new());
                    continue;
                }
                if let ActionSpec::ChooseOffer(o) = a {
                    if offer.is_some() {
                        return Err(named(
                            &key("type"),
                            "a flow chooses one offer: give one choose_offer".into(),
                        ));
                    }
                    if spec.actions.iter().all(|a| matches!(a, ActionSpec::ChooseOffer(_))) {
                        return Err(named(
                            &key("type"),
                            "choose_offer passes its arm to the flow's other actions: add a track_event or \
                             sync_profile"
                                .into(),
                        ));
                    }
                    offer =
                        Some(crate::offers::CompiledOffer::compile(o).map_err(|(k, m)| named(&key(&k), m))?);
                    properties.push(Vec::new());
                    continue;
                }
                if !destinations.contains(&a.destination()) {
                    let known = if destinations.is_empty() {
                        "no destination is configured".to_string()
                    } else {
                        format!("configured: {}", destinations.join(", "))
                    };
                    return Err(named(
                        &key("destination"),
                        format!("destination `{}` is not configured ({known})", a.destination()),
                    ));
                }
                if let ActionSpec::AddToList { list_id, .. } | ActionSpec::RemoveFromList { list_id, .. } = a
                    && let Some(problem) = list_id_problem(list_id)
                {
                    return Err(named(&key("list_id"), problem));
                }
                if let Some(why) = destination_refuses(a.destination(), a) {
                    return Err(named(&key("type"), why));
                }
                let mut props = Vec::new();
                if let ActionSpec::SlackAlert { text, .. } = a {
                    let c = Condition::compile_value(text, &schema)
                        .map_err(|e| named(&key("text"), e.to_string()))?;
                    props.push(("text".to_string(), c));
                }
                if let ActionSpec::TrackEvent { metric, properties: p, .. } = a {
                    if metric.trim().is_empty() || metric.len() > 128 {
                        return Err(named(
                            &key("metric"),
                            "give the event a name of 1–128 characters".into(),
                        ));
                    }
                    for (name, src) in p {
                        let c = Condition::compile_value(src, &schema)
                            .map_err(|e| named(&key(&format!("properties.{name}")), e.to_string()))?;
                        props.push((name.clone(), c));
                    }
                }
                properties.push(props);
            }
            let unique_prefix = format!("nudge:{}:", spec.name.replace('_', "-"));
            flows.push(CompiledFlow {
                offer,
                copy,
                spec: spec.clone(),
                when,
                baseline,
                cap,
                schedule,
                properties,
                unique_prefix,
            });
        }
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(specs).expect("flow specs serialise"));
        let version = format!("flows-{}", &hex_lower(&h.finalize())[..12]);
        Ok(FlowSet { version, flows })
    }

    /// The built-in flows used when the config has no `[[flows]]`: today's two behaviours, toward every
    /// configured destination.
    pub fn default_specs(destinations: &[&str], cfg: &PolicyConfig) -> Vec<FlowSpec> {
        // Alert channels and signed webhooks get only what a configured flow sends them.
        let destinations: Vec<&str> =
            destinations.iter().copied().filter(|d| !is_alert_channel(d) && !is_webhook(d)).collect();
        vec![
            FlowSpec {
                name: "profile_sync".into(),
                trigger: Trigger::StateChanged,
                schedule: None,
                when: None,
                mode: Mode::Live,
                holdout_percent: 0,
                frequency_cap: None,
                baseline: None,
                actions: destinations
                    .iter()
                    .map(|d| ActionSpec::SyncProfile { destination: d.to_string() })
                    .collect(),
                approval: None,
            },
            FlowSpec {
                name: "checkout_abandoned".into(),
                trigger: Trigger::CheckoutAbandoned,
                schedule: None,
                when: None,
                mode: Mode::Live,
                holdout_percent: cfg.holdout_percent,
                frequency_cap: None,
                baseline: None,
                actions: destinations
                    .iter()
                    .map(|d| ActionSpec::TrackEvent {
                        destination: d.to_string(),
                        metric: cfg.abandoned_checkout_metric.clone(),
                        properties: BTreeMap::new(),
                    })
                    .collect(),
                approval: None,
            },
        ]
    }

    pub fn get(&self, name: &str) -> Option<&CompiledFlow> {
        self.flows.iter().find(|f| f.spec.name == name)
    }

    /// Decides every flow one of `triggers` selects, for an event already applied to `state`.
    pub fn decide(&self, ctx: &DecideContext<'_>) -> Vec<FlowOutcome> {
        let selected: Vec<&CompiledFlow> =
            self.flows.iter().filter(|f| ctx.triggers.contains(&f.spec.trigger)).collect();
        if selected.is_empty() {
            return Vec::new();
        }
        let facts = facts_of(ctx.event, ctx.state, ctx.scores, ctx.now);
        let prepared = facts.prepare();
        let base = std::cell::OnceCell::new();
        selected.into_iter().map(|f| self.decide_one(f, ctx, &facts, &prepared, &base)).collect()
    }

    /// Decides flow `name` alone, if `ctx.triggers` select it: the decision of a schedule firing, which
    /// belongs to the flow whose schedule fired and to no other flow, schedule or not. `None` when the set
    /// has no such flow (it was removed by a reload) or its trigger is not among `ctx.triggers`.
    pub fn decide_flow(&self, name: &str, ctx: &DecideContext<'_>) -> Option<FlowOutcome> {
        let f = self.get(name).filter(|f| ctx.triggers.contains(&f.spec.trigger))?;
        let facts = facts_of(ctx.event, ctx.state, ctx.scores, ctx.now);
        let prepared = facts.prepare();
        Some(self.decide_one(f, ctx, &facts, &prepared, &std::cell::OnceCell::new()))
    }

    /// The `schedule` flows and their schedules, in the set's order.
    pub fn schedules(&self) -> impl Iterator<Item = (&str, &Schedule)> {
        self.flows.iter().filter_map(|f| f.schedule.as_ref().map(|s| (f.spec.name.as_str(), s)))
    }

    fn decide_one(
        &self,
        f: &CompiledFlow,
        ctx: &DecideContext<'_>,
        facts: &Facts,
        prepared: &PreparedFacts<'_>,
        base: &std::cell::OnceCell<Shared>,
    ) -> FlowOutcome {
        let spec = &f.spec;
        let mut out = FlowOutcome {
            flow: spec.name.clone(),
            flow_version: self.version.clone(),
            trigger: spec.trigger,
            status: Status::NotMatched,
            reason: String::new(),
            inputs: inputs_of(&f.when, facts),
            baseline: f.baseline.as_ref().map(|b| b.eval_prepared(prepared).unwrap_or(false)),
            actions: Vec::new(),
            offer: None,
        };
        match f.when.eval_prepared(prepared) {
            Ok(true) => {}
            Ok(false) => {
                out.reason = "condition is false".into();
                return out;
            }
            Err(e) => {
                out.status = Status::Error;
                out.reason = format!("condition could not be evaluated: {e}");
                return out;
            }
        }
        if in_holdout(&spec.name, &ctx.state.customer, spec.holdout_percent) {
            out.status = Status::HeldOut;
            out.reason = format!("customer is in the flow's {}% holdout group", spec.holdout_percent);
            return out;
        }
        // A suppressed customer gets no marketing action: the flow's other actions (alerts to the team,
        // profile syncs) still go, and a flow with nothing else is `suppressed`.
        let suppressed = ctx.state.engagement.suppressed;
        let suppression = || {
            format!(
                "customer is suppressed: {}",
                ctx.state.engagement.suppressed_reason.as_deref().unwrap_or("unsubscribed")
            )
        };
        if suppressed && spec.actions.iter().all(ActionSpec::is_marketing) {
            out.status = Status::Suppressed;
            out.reason = suppression();
            return out;
        }
        let sends_marketing = !suppressed && spec.actions.iter().any(ActionSpec::is_marketing);
        let consented = email_consent(ctx.state, Some(ctx.event));
        if !consented && sends_marketing {
            out.status = Status::NoConsent;
            out.reason = format!("no email marketing consent ({:?})", ctx.state.consent).to_lowercase();
            return out;
        }
        if let Some(cap) = f.cap {
            let since = ctx.now.unix_timestamp() - cap.window_secs;
            let recent = ctx.history.get(&spec.name).map_or(0, |v| v.iter().filter(|&&t| t > since).count());
            if recent as u32 >= cap.count {
                out.status = Status::Capped;
                out.reason = format!(
                    "frequency cap {}: {recent} acting decision(s) in the window",
                    spec.frequency_cap.as_deref().unwrap_or_default()
                );
                return out;
            }
        }
        let offer = match &f.offer {
            None => None,
            Some(o) => {
                let key = event_anchor(ctx.event, ctx.now).2;
                let seed = crate::offers::decision_seed(&spec.name, &ctx.state.customer.to_string(), &key);
                let propensity = ctx.scores.value(nudge_decide::names::PURCHASE_PROPENSITY_7D);
                match crate::offers::choose(
                    o,
                    ctx.learners.get(&spec.name),
                    ctx.state,
                    ctx.now,
                    propensity,
                    seed,
                ) {
                    Ok(chosen) => Some(chosen),
                    Err(why) => {
                        out.status = Status::Capped;
                        out.reason = format!("choose_offer: {why}");
                        return out;
                    }
                }
            }
        };
        // The arm `none` is "no message": the flow's marketing actions are dropped.
        let no_message = offer.as_ref().is_some_and(|o| o.arm == "none");
        out.actions = spec
            .actions
            .iter()
            .zip(&f.properties)
            .filter(|(a, _)| !((suppressed || no_message) && a.is_marketing()))
            .filter_map(|(a, props)| {
                let base = || base.get_or_init(|| shared_parts(ctx));
                let mut action = build_action(a, props, f, ctx, prepared, base)?;
                if let Some(o) = &offer {
                    crate::offers::attach(&mut action, o, &ctx.policy.attribute_prefix);
                }
                Some((a.destination().to_string(), action))
            })
            .collect();
        out.offer = offer;
        let shadow = spec.mode == Mode::Shadow || ctx.policy.shadow;
        let first_n = spec.approval.as_ref().map_or(0, |a| a.first_n);
        if !shadow && spec.mode == Mode::Approval {
            out.status = Status::AwaitingApproval;
            out.reason =
                "condition is true; the flow runs in approval: waiting for a person to approve".into();
            return out;
        }
        if !shadow && first_n > 0 {
            let so_far = (ctx.approvals_so_far)(&spec.name);
            if so_far < u64::from(first_n) {
                out.status = Status::AwaitingApproval;
                out.reason = format!(
                    "condition is true; decision {} of the first {first_n} that wait for approval",
                    so_far + 1
                );
                return out;
            }
        }
        out.status = if shadow { Status::Shadow } else { Status::Live };
        out.reason = if shadow && spec.mode != Mode::Shadow {
            "condition is true; shadow mode (pipeline.shadow): recorded, nothing sent".into()
        } else if shadow {
            "condition is true; the flow runs in shadow: recorded, nothing sent".into()
        } else {
            "condition is true".into()
        };
        if suppressed && spec.actions.iter().any(ActionSpec::is_marketing) {
            out.reason = format!("{}; {}: its marketing actions are dropped", out.reason, suppression());
        }
        if let Some(o) = &out.offer {
            out.reason = if o.arm == "none" {
                format!("{}; offer arm `none`: no marketing action is sent", out.reason)
            } else {
                format!("{}; offer arm `{}`", out.reason, o.arm)
            };
        }
        out
    }
}

impl FlowSet {
    /// The longest frequency-cap window of a flow, in seconds (0 without a cap): how far back its history
    /// must reach.
    pub fn longest_cap_window(&self, flow: &str) -> i64 {
        self.get(flow).and_then(|f| f.cap).map_or(0, |c| c.window_secs)
    }

    /// Whether a flow's decisions are recorded for the reports: it has a baseline rule (the shadow report)
    /// or a holdout group (the lift report). Other flows' decisions are in the audit trail only.
    pub fn measured(&self, flow: &str) -> bool {
        self.get(flow).is_some_and(|f| f.baseline.is_some() || f.spec.holdout_percent > 0)
    }
}

/// A fingerprint of what a profile shows of the scores: the segment, the adopted segments (when any is
/// adopted), the model version and each score
/// rounded to 1 % of its scale (churn risk to whole points, probabilities to 0.01, money and counts to two
/// significant digits). A `scores_changed` trigger fires when it differs from the last one.
pub fn scores_fingerprint(scores: &ScoreSet) -> String {
    let mut parts = vec![scores.segment.as_str().to_string(), scores.model_version.clone()];
    if let Some(adopted) = &scores.adopted_segments {
        parts.push(format!("segments={}", adopted.join(",")));
    }
    for s in &scores.scores {
        let v = s.value;
        let r = if s.name == "churn_risk" {
            format!("{:.0}", v)
        } else if (0.0..=1.0).contains(&v) && s.name.starts_with("p_") {
            format!("{:.2}", v)
        } else {
            format!("{:.1e}", v)
        };
        parts.push(format!("{}={r}", s.name));
    }
    parts.join("|")
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Per flow, the times (unix seconds) of the customer's acting decisions, newest last.
pub type FlowHistory = BTreeMap<String, Vec<i64>>;

/// Everything one decision reads.
pub struct DecideContext<'a> {
    pub event: &'a Event,
    pub triggers: &'a [Trigger],
    pub state: &'a CustomerState,
    pub scores: &'a ScoreSet,
    pub history: &'a FlowHistory,
    pub now: Timestamp,
    pub policy: &'a PolicyConfig,
    /// How many decisions of a flow (by name) have gone through approval so far, including those decided
    /// earlier in the same batch: a live flow with `approval.first_n = N` waits while this is below N.
    pub approvals_so_far: &'a dyn Fn(&str) -> u64,
    /// The offer bandits' learners, by flow ([`crate::offers::NO_LEARNERS`] when none has learned yet).
    pub learners: &'a crate::offers::Learners,
}

/// A [`DecideContext::approvals_so_far`] for callers with no approval history (tests, dry runs).
pub fn no_approvals(_: &str) -> u64 {
    0
}

impl FlowSet {
    /// The expiry, in seconds, of a flow's approval items (48 h without an `[flows.approval]` table).
    pub fn approval_expiry_secs(&self, flow: &str) -> i64 {
        self.get(flow)
            .and_then(|f| f.spec.approval.as_ref())
            .and_then(|a| parse_duration_secs(a.expires_after.trim()))
            .unwrap_or(48 * 3600)
    }

    /// Whether a flow's decisions can wait for approval (mode approval, or live with `first_n`).
    pub fn uses_first_n(&self, flow: &str) -> bool {
        self.get(flow).is_some_and(|f| {
            f.spec.mode == Mode::Live && f.spec.approval.as_ref().is_some_and(|a| a.first_n > 0)
        })
    }
}

/// What a flow decided for one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowOutcome {
    pub flow: String,
    pub flow_version: String,
    pub trigger: Trigger,
    pub status: Status,
    pub reason: String,
    /// The condition's inputs (`customer.orders_count` → 3), for the audit.
    pub inputs: BTreeMap<String, serde_json::Value>,
    /// The baseline rule's verdict, when the flow has one.
    pub baseline: Option<bool>,
    /// The actions, by destination (only when the flow acts: live or shadow).
    #[serde(skip)]
    pub actions: Vec<(String, Action)>,
    /// The offer a `choose_offer` action chose, with its evidence (features, each arm's estimate, the
    /// seed).
    pub offer: Option<crate::offers::OfferOutcome>,
}

impl FlowOutcome {
    /// Whether this decision counts toward the flow's frequency cap.
    pub fn acted(&self) -> bool {
        matches!(self.status, Status::Live | Status::Shadow | Status::AwaitingApproval)
    }

    /// Whether the flow's condition held (whatever came after it: holdout, consent, cap, mode).
    pub fn matched(&self) -> bool {
        !matches!(self.status, Status::NotMatched | Status::Error)
    }
}

/// Why a flow did or did not act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    NotMatched,
    Live,
    Shadow,
    HeldOut,
    NoConsent,
    Capped,
    /// The condition failed at run time (reported, nothing sent).
    Error,
    /// The flow acts, but its actions wait for a person to approve them (mode approval, or a live flow
    /// within its `approval.first_n`).
    AwaitingApproval,
    /// The customer unsubscribed or complained of spam: the flow's marketing actions are never sent
    /// (its alerts and profile syncs, which reach the team or only write attributes, still go).
    Suppressed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotMatched => "not_matched",
            Status::Live => "live",
            Status::Shadow => "shadow",
            Status::HeldOut => "held_out",
            Status::NoConsent => "no_consent",
            Status::Capped => "capped",
            Status::Error => "error",
            Status::AwaitingApproval => "awaiting_approval",
            Status::Suppressed => "suppressed",
        }
    }
}

/// What every trigger event of one decision shares: the event's own properties with the prefixed scores,
/// segment and model version, its value, time and `unique_id` key, and the customer's email. Built once
/// per event, when a flow first acts.
struct Shared {
    properties: serde_json::Map<String, serde_json::Value>,
    value: Option<nudge_model::Money>,
    time: Timestamp,
    key: String,
    email: Option<String>,
}

fn shared_parts(ctx: &DecideContext<'_>) -> Shared {
    let mut properties = event_properties(ctx.event);
    let p = &ctx.policy.attribute_prefix;
    for s in &ctx.scores.scores {
        properties.insert(format!("{p}{}", s.name), json_number(s.value));
    }
    for (name, label) in &ctx.scores.labels {
        properties.insert(format!("{p}{name}"), label.clone().into());
    }
    properties.insert(format!("{p}segment"), ctx.scores.segment.as_str().into());
    properties.insert(format!("{p}model_version"), ctx.scores.model_version.clone().into());
    if let Some(products) = crate::recommended_products_json(ctx.scores) {
        properties.insert(format!("{p}{}", crate::RECOMMENDED_PRODUCTS), products);
    }
    if let Some(adopted) = &ctx.scores.adopted_segments {
        properties.insert(format!("{p}{}", crate::ADOPTED_SEGMENTS), serde_json::json!(adopted));
    }
    let (value, time, key) = event_anchor(ctx.event, ctx.now);
    let email = ctx.state.email.clone().or_else(|| event_email(ctx.event));
    Shared { properties, value, time, key, email }
}

fn build_action<'b>(
    a: &ActionSpec,
    props: &[(String, Condition)],
    f: &CompiledFlow,
    ctx: &DecideContext<'_>,
    prepared: &PreparedFacts<'_>,
    base: impl FnOnce() -> &'b Shared,
) -> Option<Action> {
    Some(match a {
        // Shape the other actions; send nothing themselves.
        ActionSpec::ChooseOffer(_) | ActionSpec::GenerateCopy { .. } => return None,
        ActionSpec::SyncProfile { .. } => profile_action(ctx.state, ctx.scores, ctx.policy),
        ActionSpec::TrackEvent { metric, .. } => {
            let shared = base();
            let mut properties = shared.properties.clone();
            let p = &ctx.policy.attribute_prefix;
            properties.insert(format!("{p}flow"), f.spec.name.clone().into());
            for (name, expr) in props {
                let v =
                    expr.value_prepared(prepared).map(|v| fact_json(&v)).unwrap_or(serde_json::Value::Null);
                properties.insert(name.clone(), v);
            }
            if let Some((prompt, version)) = &f.copy {
                let request =
                    nudge_model::CopyRequest::from_scores(prompt, *version, &format!("{p}copy"), ctx.scores);
                properties.insert(
                    nudge_model::COPY_REQUEST_PROPERTY.into(),
                    serde_json::to_value(request).expect("a copy request serialises"),
                );
            }
            Action::TriggerEvent {
                customer: ctx.state.customer.clone(),
                email: shared.email.clone(),
                name: metric.clone(),
                properties,
                value: shared.value,
                time: shared.time,
                unique_id: format!("{}{}", f.unique_prefix, shared.key),
            }
        }
        ActionSpec::SlackAlert { .. } => {
            let text = match props.first().map(|(_, expr)| expr.value_prepared(prepared)) {
                Some(Ok(FactValue::Text(t))) => t,
                Some(Ok(FactValue::Null)) | None => String::new(),
                Some(Ok(other)) => match fact_json(&other) {
                    serde_json::Value::String(s) => s,
                    v => v.to_string(),
                },
                Some(Err(e)) => format!("flow {}: the alert text could not be evaluated: {e}", f.spec.name),
            };
            let shared = base();
            Action::Alert {
                customer: ctx.state.customer.clone(),
                flow: f.spec.name.clone(),
                text,
                time: shared.time,
                unique_id: format!("{}alert:{}", f.unique_prefix, shared.key),
            }
        }
        ActionSpec::AddToList { list_id, .. } => Action::AddToList {
            customer: ctx.state.customer.clone(),
            email: ctx.state.email.clone().or_else(|| event_email(ctx.event)),
            list_id: list_id.clone(),
        },
        ActionSpec::RemoveFromList { list_id, .. } => Action::RemoveFromList {
            customer: ctx.state.customer.clone(),
            email: ctx.state.email.clone().or_else(|| event_email(ctx.event)),
            list_id: list_id.clone(),
        },
    })
}

/// Whether `destination` is the Slack alert channel, which takes alerts only.
pub fn is_alert_channel(destination: &str) -> bool {
    destination == "slack"
}

/// Whether `destination` is a signed webhook (`webhook:<name>`), which takes every kind of action.
pub fn is_webhook(destination: &str) -> bool {
    destination.starts_with("webhook:")
}

/// Why `destination` cannot take the action `a`, if it cannot: Slack takes alerts only, and alerts go to
/// Slack or a webhook only (a marketing platform has no use for them).
fn destination_refuses(destination: &str, a: &ActionSpec) -> Option<String> {
    let alert = matches!(a, ActionSpec::SlackAlert { .. });
    if is_alert_channel(destination) && !alert {
        return Some(format!(
            "`{}` cannot go to `{destination}`: Slack takes slack_alert only",
            a.type_name()
        ));
    }
    if alert && !is_alert_channel(destination) && !is_webhook(destination) {
        return Some(format!("slack_alert goes to `slack` or a `webhook:<name>`, not `{destination}`"));
    }
    let list = matches!(a, ActionSpec::AddToList { .. } | ActionSpec::RemoveFromList { .. });
    if list && destination == "hubspot" {
        return Some(format!(
            "`{}` cannot go to `hubspot`: HubSpot lists are built from contact properties; sync_profile writes \
             them (for example ai_segment) and an active list filtered on them follows the customers",
            a.type_name()
        ));
    }
    None
}

/// The event's own properties on a trigger event (the checkout's value, items and recovery link, …).
fn event_properties(event: &Event) -> serde_json::Map<String, serde_json::Value> {
    let mut props = serde_json::Map::new();
    let items = |items: &[nudge_model::LineItem]| {
        serde_json::Value::Array(
            items
                .iter()
                .map(|li| {
                    serde_json::json!({
                        "product_id": li.product_id, "sku": li.sku, "title": li.title,
                        "quantity": li.quantity, "price": li.price.amount.to_string(),
                    })
                })
                .collect(),
        )
    };
    match event {
        Event::CheckoutAbandoned(ab) => {
            let c = &ab.checkout;
            props.insert("checkout_token".into(), c.token.clone().into());
            props.insert("checkout_value".into(), json_number(c.total.to_f64()));
            props.insert("currency".into(), c.total.currency.as_str().into());
            props.insert("items".into(), items(&c.line_items));
            if let Some(url) = &c.recovery_url {
                props.insert("recovery_url".into(), url.clone().into());
            }
        }
        Event::CheckoutUpserted(c) => {
            props.insert("checkout_token".into(), c.token.clone().into());
            props.insert("checkout_value".into(), json_number(c.total.to_f64()));
            props.insert("currency".into(), c.total.currency.as_str().into());
            props.insert("items".into(), items(&c.line_items));
        }
        Event::OrderUpserted(o) | Event::OrderCancelled(o) => {
            props.insert("order_id".into(), o.id.clone().into());
            props.insert("order_value".into(), json_number(o.total.to_f64()));
            props.insert("currency".into(), o.total.currency.as_str().into());
            props.insert("items".into(), items(&o.line_items));
        }
        Event::ScheduleTick(t) => {
            props.insert("fired_at".into(), fact_json(&FactValue::Timestamp(t.fired_at)));
        }
        Event::CustomerUpserted(_)
        | Event::CartUpserted(_)
        | Event::ProductUpserted(_)
        | Event::Behaviour(_)
        | Event::Identified(_)
        | Event::ReviewPosted(_)
        | Event::LoyaltyChanged(_)
        | Event::Engagement(_) => {}
    }
    props
}

/// The event's value, time and the key that makes a trigger event's `unique_id` deterministic.
fn event_anchor(event: &Event, now: Timestamp) -> (Option<nudge_model::Money>, Timestamp, String) {
    match event {
        Event::CheckoutAbandoned(ab) => (Some(ab.checkout.total), ab.idle_since, ab.checkout.token.clone()),
        Event::CheckoutUpserted(c) => (Some(c.total), c.updated_at, c.token.clone()),
        Event::OrderUpserted(o) => {
            (Some(o.total), o.updated_at, format!("{}:{}", o.id, o.updated_at.unix_timestamp()))
        }
        Event::OrderCancelled(o) => (Some(o.total), o.updated_at, format!("{}:cancelled", o.id)),
        Event::CustomerUpserted(c) => {
            (None, c.updated_at, format!("customer:{}", c.updated_at.unix_timestamp()))
        }
        Event::CartUpserted(c) => {
            (None, c.updated_at, format!("{}:{}", c.token, c.updated_at.unix_timestamp()))
        }
        Event::ProductUpserted(_) => (None, now, format!("at:{}", now.unix_timestamp())),
        // One per customer and firing.
        Event::ScheduleTick(t) => {
            (None, t.fired_at, format!("{}:{}", t.fired_at.unix_timestamp(), t.customer))
        }
        Event::Behaviour(b) => {
            let key = b
                .message_id
                .clone()
                .unwrap_or_else(|| format!("{}:{}", b.kind.as_str(), b.at.unix_timestamp()));
            (b.value, b.at, format!("behaviour:{key}"))
        }
        Event::Identified(i) => (None, i.at, format!("identified:{}", i.at.unix_timestamp())),
        Event::ReviewPosted(r) => {
            (None, r.updated_at, format!("review:{}:{}", r.review_id, r.updated_at.unix_timestamp()))
        }
        Event::LoyaltyChanged(l) => {
            (None, l.updated_at, format!("loyalty:{}:{}", l.member_id, l.updated_at.unix_timestamp()))
        }
        Event::Engagement(e) => (None, e.at, format!("engagement:{}:{}", e.platform, e.event_id)),
    }
}

fn event_email(event: &Event) -> Option<String> {
    event.email().map(str::to_string)
}

/// Whether the customer may receive email marketing: their stored consent is `subscribed`, or nothing is
/// stored and the triggering order or checkout says the buyer accepts marketing (Shopify's
/// `buyer_accepts_marketing`, ticked at checkout). A stored refusal always wins.
pub fn email_consent(state: &CustomerState, event: Option<&Event>) -> bool {
    match state.consent {
        MarketingConsent::Subscribed => true,
        MarketingConsent::Unknown => {
            let accepts = match event {
                Some(Event::CheckoutAbandoned(ab)) => ab.checkout.accepts_marketing,
                Some(Event::CheckoutUpserted(c)) => c.accepts_marketing,
                Some(Event::OrderUpserted(o)) | Some(Event::OrderCancelled(o)) => o.accepts_marketing,
                _ => None,
            };
            accepts == Some(true)
        }
        _ => false,
    }
}

/// The values a condition sees. No email, phone, name or address is among them: conditions (and the
/// audit of their inputs) only ever hold identifiers, counts, money, times, consent and scores.
pub fn facts_of(event: &Event, state: &CustomerState, scores: &ScoreSet, now: Timestamp) -> Facts {
    let s = state.summary();
    let money = |m: Option<nudge_model::Money>| FactValue::Double(m.map_or(0.0, |m| m.to_f64()));
    let time = |t: Option<Timestamp>| t.map_or(FactValue::Null, FactValue::Timestamp);
    let mut customer = BTreeMap::new();
    customer.insert("id".into(), FactValue::Text(state.customer.to_string()));
    customer.insert("email_consent".into(), FactValue::Bool(email_consent(state, Some(event))));
    customer.insert("sms_consent".into(), FactValue::Bool(state.sms_consent == MarketingConsent::Subscribed));
    customer.insert("orders_count".into(), FactValue::Int(i64::from(s.order_count)));
    customer.insert("total_spent".into(), money(s.spend));
    customer.insert("aov".into(), money(s.average_order_value));
    customer.insert("first_order_at".into(), time(s.first_order_at));
    customer.insert("last_order_at".into(), time(s.last_order_at));
    customer.insert(
        "days_since_last_order".into(),
        s.last_order_at.map_or(FactValue::Null, |t| FactValue::Double((now - t).as_seconds_f64() / 86_400.0)),
    );
    customer.insert("tags".into(), FactValue::TextList(state.tags.clone()));
    customer
        .insert("segments".into(), FactValue::TextList(scores.adopted_segments.clone().unwrap_or_default()));
    let open: f64 = state.open_checkouts.values().map(|c| c.total.to_f64()).sum();
    customer.insert("open_checkout_value".into(), FactValue::Double(open));
    signal_facts(&mut customer, state, now);

    let mut sc = BTreeMap::new();
    for score in &scores.scores {
        sc.insert(score.name.clone(), FactValue::Double(score.value));
    }
    for (name, label) in &scores.labels {
        sc.insert(name.clone(), FactValue::Text(label.clone()));
    }
    sc.insert("segment".into(), FactValue::Text(scores.segment.as_str().into()));
    sc.insert("model_version".into(), FactValue::Text(scores.model_version.clone()));

    let mut ev = BTreeMap::new();
    ev.insert("kind".into(), FactValue::Text(event.kind().into()));
    let (value, currency, order_id, checkout_token, products) = match event {
        Event::OrderUpserted(o) | Event::OrderCancelled(o) => (
            Some(o.total),
            Some(o.total.currency),
            Some(o.id.clone()),
            o.checkout_token.clone(),
            &o.line_items,
        ),
        Event::CheckoutUpserted(c) => {
            (Some(c.total), Some(c.total.currency), None, Some(c.token.clone()), &c.line_items)
        }
        Event::CheckoutAbandoned(ab) => (
            Some(ab.checkout.total),
            Some(ab.checkout.total.currency),
            None,
            Some(ab.checkout.token.clone()),
            &ab.checkout.line_items,
        ),
        Event::CartUpserted(c) => (None, None, None, None, &c.line_items),
        Event::CustomerUpserted(_)
        | Event::ProductUpserted(_)
        | Event::ScheduleTick(_)
        | Event::Behaviour(_)
        | Event::Identified(_)
        | Event::ReviewPosted(_)
        | Event::LoyaltyChanged(_)
        | Event::Engagement(_) => (None, None, None, None, &Vec::new()),
    };
    ev.insert("value".into(), money(value));
    ev.insert("currency".into(), currency.map_or(FactValue::Null, |c| FactValue::Text(c.as_str().into())));
    ev.insert("order_id".into(), order_id.map_or(FactValue::Null, FactValue::Text));
    ev.insert("checkout_token".into(), checkout_token.map_or(FactValue::Null, FactValue::Text));
    ev.insert(
        "product_ids".into(),
        FactValue::TextList(products.iter().filter_map(|li| li.product_id.clone()).collect()),
    );
    signal_event_facts(&mut ev, event, state);
    Facts { event: ev, customer, scores: sc }
}

/// The customer's behaviour, reviews, loyalty and engagement as facts; absent (`Null`) where the customer
/// has no such signal.
fn signal_facts(customer: &mut BTreeMap<String, FactValue>, state: &CustomerState, now: Timestamp) {
    use nudge_state::BrowseKind;
    let week_ago = now - time::Duration::days(7);
    let opt_f = |v: Option<f64>| v.map_or(FactValue::Null, FactValue::Double);
    customer.insert(
        "viewed_products_7d".into(),
        FactValue::TextList(state.browsed_products(BrowseKind::Viewed, week_ago)),
    );
    customer.insert(
        "added_to_cart_7d".into(),
        FactValue::TextList(state.browsed_products(BrowseKind::Added, week_ago)),
    );
    let r = state.review_summary();
    customer.insert(
        "last_review_rating".into(),
        r.last_rating.map_or(FactValue::Null, |v| FactValue::Int(i64::from(v))),
    );
    customer.insert("last_review_sentiment".into(), opt_f(r.last_sentiment));
    customer.insert("negative_reviews".into(), FactValue::Int(i64::from(r.negative)));
    let l = state.loyalty.as_ref();
    customer
        .insert("loyalty_points".into(), l.and_then(|l| l.points).map_or(FactValue::Null, FactValue::Int));
    customer.insert(
        "loyalty_tier".into(),
        l.and_then(|l| l.tier.clone()).map_or(FactValue::Null, FactValue::Text),
    );
    customer.insert("email_open_rate_90d".into(), opt_f(state.engagement.open_rate_90d(now)));
    customer.insert("email_click_rate_90d".into(), opt_f(state.engagement.click_rate_90d(now)));
    customer.insert(
        "last_engaged_at".into(),
        state.engagement.last_engaged_at.map_or(FactValue::Null, FactValue::Timestamp),
    );
    customer.insert("suppressed".into(), FactValue::Bool(state.engagement.suppressed));
}

/// The event fields of behaviour, review and loyalty events; absent for other events.
fn signal_event_facts(ev: &mut BTreeMap<String, FactValue>, event: &Event, state: &CustomerState) {
    let text = |v: Option<String>| v.map_or(FactValue::Null, FactValue::Text);
    let (name, query, rating, sentiment, points_change) = match event {
        Event::Behaviour(b) => (Some(b.name.clone()), b.query.clone(), None, None, None),
        Event::ReviewPosted(r) => {
            (None, None, r.rating.map(i64::from), r.sentiment.as_ref().map(|s| s.compound), None)
        }
        Event::LoyaltyChanged(_) => {
            (None, None, None, None, state.loyalty.as_ref().and_then(|l| l.last_points_change))
        }
        _ => (None, None, None, None, None),
    };
    ev.insert("name".into(), text(name));
    ev.insert("query".into(), text(query));
    ev.insert("rating".into(), rating.map_or(FactValue::Null, FactValue::Int));
    ev.insert("sentiment".into(), sentiment.map_or(FactValue::Null, FactValue::Double));
    ev.insert("points_change".into(), points_change.map_or(FactValue::Null, FactValue::Int));
    if let Event::Behaviour(b) = event {
        ev.insert(
            "product_ids".into(),
            FactValue::TextList(b.products.iter().filter_map(|p| p.product_id.clone()).collect()),
        );
    }
}

/// The facts a condition reads, as JSON for the audit.
fn inputs_of(c: &Condition, facts: &Facts) -> BTreeMap<String, serde_json::Value> {
    c.input_paths()
        .iter()
        .map(|path| {
            let v = lookup(facts, path).map_or(serde_json::Value::Null, fact_json);
            (path.clone(), v)
        })
        .collect()
}

fn lookup<'a>(facts: &'a Facts, path: &str) -> Option<&'a FactValue> {
    let (var, field) = path.split_once('.')?;
    match var {
        "event" => facts.event.get(field),
        "customer" => facts.customer.get(field),
        "scores" => facts.scores.get(field),
        _ => None,
    }
}

/// A fact as JSON.
pub fn fact_json(v: &FactValue) -> serde_json::Value {
    match v {
        FactValue::Bool(b) => (*b).into(),
        FactValue::Int(i) => (*i).into(),
        FactValue::Double(d) => json_number(*d),
        FactValue::Text(s) => s.clone().into(),
        FactValue::Timestamp(t) => t
            .format(&time::format_description::well_known::Rfc3339)
            .map(serde_json::Value::String)
            .unwrap_or(serde_json::Value::Null),
        FactValue::TextList(l) => l.clone().into(),
        FactValue::Null => serde_json::Value::Null,
    }
}

/// What `nudge flows test` shows: one flow evaluated for one customer now, term by term, with every check
/// that would follow; nothing is decided or sent.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub flow: String,
    pub flow_version: String,
    pub trigger: Trigger,
    pub mode: Mode,
    pub condition: String,
    /// Each top-level term of the condition with its value.
    pub terms: Vec<(String, String)>,
    pub matched: Result<bool, String>,
    pub inputs: BTreeMap<String, serde_json::Value>,
    pub baseline: Option<bool>,
    pub held_out: bool,
    pub consent: bool,
    /// The cap's verdict, when the flow has one.
    pub cap: Option<String>,
    /// What would happen, in words.
    pub verdict: String,
    /// The actions, as `type → destination`.
    pub actions: Vec<String>,
}

/// The customer a dry run is about, as of `now`.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    pub state: &'a CustomerState,
    pub scores: &'a ScoreSet,
    pub history: &'a FlowHistory,
    /// The triggering event, when there is one; without it the event's fields are absent.
    pub event: Option<&'a Event>,
    pub now: Timestamp,
    pub policy: &'a PolicyConfig,
}

impl FlowSet {
    /// Evaluates flow `name` for a customer as if its trigger fired now. The event's own fields are
    /// absent (null) unless `event` is given.
    pub fn dry_run(&self, name: &str, subject: &Subject<'_>) -> Option<DryRun> {
        let Subject { state, scores, history, event, now, policy } = *subject;
        let f = self.get(name)?;
        let spec = &f.spec;
        let facts = match event {
            Some(ev) => facts_of(ev, state, scores, now),
            None => {
                // No event: its fields are absent, its kind is the trigger's.
                let placeholder = Event::ProductUpserted(nudge_model::Product {
                    id: String::new(),
                    title: String::new(),
                    category: None,
                    vendor: None,
                    updated_at: now,
                    url: None,
                    image_url: None,
                    price: None,
                    currency: None,
                    available: None,
                    tags: Vec::new(),
                });
                let mut facts = facts_of(&placeholder, state, scores, now);
                facts.event.insert("kind".into(), FactValue::Text(spec.trigger.as_str().into()));
                facts
            }
        };
        let explanation = f.when.explain(&facts);
        let held_out = in_holdout(&spec.name, &state.customer, spec.holdout_percent);
        let consent = email_consent(state, event) || !spec.actions.iter().any(ActionSpec::is_marketing);
        let cap = f.cap.map(|cap| {
            let since = now.unix_timestamp() - cap.window_secs;
            let recent = history.get(&spec.name).map_or(0, |v| v.iter().filter(|&&t| t > since).count());
            format!(
                "{} used of {} in the window ({})",
                recent,
                cap.count,
                if recent as u32 >= cap.count { "capped" } else { "room left" }
            )
        });
        let capped = f.cap.is_some_and(|cap| {
            let since = now.unix_timestamp() - cap.window_secs;
            history.get(&spec.name).map_or(0, |v| v.iter().filter(|&&t| t > since).count()) as u32
                >= cap.count
        });
        let shadow = spec.mode == Mode::Shadow || policy.shadow;
        let verdict = match &explanation.result {
            Err(e) => format!("the condition fails at run time: {e}"),
            Ok(false) => "nothing: the condition is false".to_string(),
            Ok(true) if held_out => {
                format!("nothing: the customer is in the {}% holdout group", spec.holdout_percent)
            }
            Ok(true) if !consent => "nothing: no email marketing consent".to_string(),
            Ok(true) if capped => "nothing: the frequency cap is reached".to_string(),
            Ok(true) if shadow => "the decision would be recorded (shadow), nothing sent".to_string(),
            Ok(true) if spec.mode == Mode::Approval => {
                format!("{} action(s) would wait for approval", spec.actions.len())
            }
            Ok(true) if spec.approval.as_ref().is_some_and(|a| a.first_n > 0) => format!(
                "{} action(s) would be sent, or wait for approval while the flow is within its first {} decisions",
                spec.actions.len(),
                spec.approval.as_ref().map_or(0, |a| a.first_n)
            ),
            Ok(true) => format!("{} action(s) would be sent", spec.actions.len()),
        };
        Some(DryRun {
            flow: spec.name.clone(),
            flow_version: self.version.clone(),
            trigger: spec.trigger,
            mode: spec.mode,
            condition: spec.when.clone().unwrap_or_else(|| "true".into()),
            terms: explanation.terms.iter().map(|t| (t.text.clone(), t.value.clone())).collect(),
            matched: explanation.result.clone(),
            inputs: inputs_of(&f.when, &facts),
            baseline: f.baseline.as_ref().map(|b| b.eval(&facts).unwrap_or(false)),
            held_out,
            consent,
            cap,
            verdict,
            actions: spec.actions.iter().map(ActionSpec::describe).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_text_can_only_read_fields_without_personal_data() {
        let schema = Schema::flows_default();
        for var in ["event", "customer", "scores"] {
            for (field, _) in schema.fields(var) {
                for personal in ["email", "phone", "name", "address", "zip", "city", "birth"] {
                    let consent_flag = field.ends_with("_consent");
                    // The name of a storefront event as sent (`Product Viewed`), not a person's.
                    let event_name = var == "event" && field == "name";
                    // Rates of engagement with email messages.
                    let email_rate = field.starts_with("email_") && field.ends_with("_rate_90d");
                    assert!(
                        !field.contains(personal) || consent_flag || event_name || email_rate,
                        "{var}.{field} looks personal"
                    );
                }
            }
        }
    }

    #[test]
    fn slack_alert_text_is_compiled_and_routed_by_kind() {
        let spec = |dest: &str, text: &str| -> FlowSpec {
            serde_json::from_value(serde_json::json!({"name": "a", "trigger": "order_placed",
                "actions": [{"type": "slack_alert", "destination": dest, "text": text}]}))
            .unwrap()
        };
        let dests = ["klaviyo", "slack", "webhook:crm"];
        FlowSet::compile(&[spec("slack", "'order ' + event.order_id")], &dests).unwrap();
        FlowSet::compile(&[spec("webhook:crm", "scores.churn_risk")], &dests).unwrap();
        let e = FlowSet::compile(&[spec("slack", "'order ' + event.nope")], &dests).unwrap_err();
        assert_eq!(e.path, "flows[0].actions[0].text");
        let e = FlowSet::compile(&[spec("klaviyo", "'x'")], &dests).unwrap_err();
        assert_eq!(e.path, "flows[0].actions[0].type");
        let defaults = FlowSet::default_specs(&dests, &PolicyConfig::default());
        assert!(defaults.iter().flat_map(|f| &f.actions).all(|a| a.destination() == "klaviyo"));
    }
    use nudge_model::{Checkout, CheckoutAbandoned, Money, Order, Score, Segment};
    use time::macros::datetime;

    const NOW: Timestamp = datetime!(2026-05-02 10:00 UTC);

    fn customer() -> nudge_model::CustomerId {
        "shopify:42".parse().unwrap()
    }

    fn scores(churn: f64) -> ScoreSet {
        let s = |name: &str, value: f64| Score {
            name: name.into(),
            value,
            model_id: "btyd".into(),
            model_version: "v1".into(),
            explanation: String::new(),
        };
        ScoreSet {
            scores: vec![s("churn_risk", churn), s("p_alive", 1.0 - churn / 100.0)],
            segment: Segment::Active,
            model_version: "v1".into(),
            labels: Default::default(),
            products: Vec::new(),
            scored_at: NOW,
            adopted_segments: None,
        }
    }

    fn checkout(accepts: Option<bool>) -> Checkout {
        Checkout {
            token: "tok1".into(),
            cart_token: None,
            customer: Some(customer()),
            email: Some("a@example.org".into()),
            created_at: datetime!(2026-05-01 9:00 UTC),
            updated_at: datetime!(2026-05-01 9:05 UTC),
            completed_at: None,
            total: Money::parse("84.90", "EUR").unwrap(),
            line_items: vec![],
            recovery_url: Some("https://shop/r/tok1".into()),
            accepts_marketing: accepts,
        }
    }

    fn abandoned(accepts: Option<bool>) -> Event {
        let c = checkout(accepts);
        Event::CheckoutAbandoned(CheckoutAbandoned {
            customer: customer(),
            email: None,
            idle_since: c.updated_at,
            checkout: c,
        })
    }

    fn order(id: &str, day: u8) -> Event {
        let at = datetime!(2026-04-01 12:00 UTC) + time::Duration::days(i64::from(day));
        Event::OrderUpserted(Order {
            id: id.into(),
            name: None,
            customer: Some(customer()),
            email: Some("a@example.org".into()),
            created_at: at,
            updated_at: at,
            cancelled_at: None,
            total: Money::parse("40.00", "EUR").unwrap(),
            financial_status: None,
            line_items: vec![],
            checkout_token: None,
            cart_token: None,
            accepts_marketing: None,
        })
    }

    fn spec(toml_text: &str) -> FlowSpec {
        #[derive(Deserialize)]
        struct One {
            flows: Vec<FlowSpec>,
        }
        let one: One = toml_from(toml_text);
        one.flows.into_iter().next().unwrap()
    }

    /// A tiny TOML reader is not a dependency here: flows are written as JSON in the tests.
    fn toml_from<T: for<'de> Deserialize<'de>>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    fn state_after(events: &[Event], consent: MarketingConsent) -> CustomerState {
        let mut st = CustomerState::new(customer());
        st.email = Some("a@example.org".into());
        st.consent = consent;
        for e in events {
            st.apply(e);
        }
        st
    }

    fn decide(
        set: &FlowSet,
        ev: &Event,
        st: &CustomerState,
        triggers: &[Trigger],
        history: &FlowHistory,
    ) -> Vec<FlowOutcome> {
        set.decide(&DecideContext {
            event: ev,
            triggers,
            state: st,
            scores: &scores(72.5),
            history,
            now: NOW,
            policy: &PolicyConfig::default(),
            approvals_so_far: &no_approvals,
            learners: &crate::offers::NO_LEARNERS,
        })
    }

    #[test]
    fn built_in_flows_keep_the_abandoned_checkout_trigger_and_the_profile_sync() {
        let cfg = PolicyConfig::default();
        let set = FlowSet::compile(&FlowSet::default_specs(&["klaviyo"], &cfg), &["klaviyo"]).unwrap();
        let ev = abandoned(None);
        let st =
            state_after(&[Event::CheckoutUpserted(checkout(None)), ev.clone()], MarketingConsent::Subscribed);
        let out = decide(&set, &ev, &st, &Trigger::of_event(&ev, true), &FlowHistory::new());
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|o| o.status == Status::Live), "{out:?}");
        let track = out.iter().find(|o| o.flow == "checkout_abandoned").unwrap();
        match &track.actions[0] {
            (dest, Action::TriggerEvent { name, unique_id, properties, .. }) => {
                assert_eq!(dest, "klaviyo");
                assert_eq!(name, "AI Checkout Abandoned");
                assert_eq!(unique_id, "nudge:checkout-abandoned:tok1");
                assert_eq!(properties["recovery_url"], "https://shop/r/tok1");
                assert_eq!(properties["currency"], "EUR");
                assert_eq!(properties["ai_churn_risk"], 72.5);
            }
            other => panic!("{other:?}"),
        }
        let sync = out.iter().find(|o| o.flow == "profile_sync").unwrap();
        assert!(
            matches!(&sync.actions[0].1, Action::UpsertProfile { attributes, .. } if attributes.contains_key("ai_segment"))
        );
    }

    #[test]
    fn generate_copy_names_a_configured_prompt_and_leaves_a_request_on_the_trigger_events() {
        let flow = |actions: &str| {
            spec(&format!(
                r#"{{"flows":[{{"name":"winback","trigger":"checkout_abandoned","actions":[{actions}]}}]}}"#
            ))
        };
        let track = r#"{"type":"track_event","destination":"klaviyo","metric":"AI Winback"}"#;
        let prompts = [("winback", 1), ("winback", 2), ("welcome", 1)];
        let err = |actions: &str| {
            FlowSet::compile_with_prompts(&[flow(actions)], &["klaviyo"], &prompts).unwrap_err()
        };
        let e = err(&format!(r#"{track},{{"type":"generate_copy","prompt":"nope"}}"#));
        assert_eq!(e.path, "flows[0].actions[1].prompt");
        assert!(e.message.contains("configured: winback, welcome"), "{e}");
        let e = err(&format!(r#"{{"type":"generate_copy","prompt":"winback","version":3}},{track}"#));
        assert_eq!(e.path, "flows[0].actions[0].version");
        assert!(e.message.contains("no version 3 (configured: 1, 2)"), "{e}");
        let e = err(
            r#"{"type":"generate_copy","prompt":"winback"},{"type":"sync_profile","destination":"klaviyo"}"#,
        );
        assert_eq!(e.path, "flows[0].actions[0].type");
        assert!(e.message.contains("add a track_event"), "{e}");
        let e = FlowSet::compile(
            &[flow(&format!(r#"{track},{{"type":"generate_copy","prompt":"winback"}}"#))],
            &["klaviyo"],
        )
        .unwrap_err();
        assert!(e.message.contains("no [[prompts]] is configured"), "{e}");
        let e = err(&format!(
            r#"{track},{{"type":"generate_copy","prompt":"winback"}},{{"type":"generate_copy","prompt":"welcome"}}"#
        ));
        assert_eq!(e.path, "flows[0].actions[2].type");

        // Without a version: the newest. Each trigger event carries the request, nothing else does.
        let set = FlowSet::compile_with_prompts(
            &[flow(&format!(
                r#"{{"type":"generate_copy","prompt":"winback"}},{track},{{"type":"sync_profile","destination":"klaviyo"}}"#
            ))],
            &["klaviyo"],
            &prompts,
        )
        .unwrap();
        assert_eq!(set.flows[0].copy, Some(("winback".to_string(), 2)));
        let ev = abandoned(None);
        let st =
            state_after(&[Event::CheckoutUpserted(checkout(None)), ev.clone()], MarketingConsent::Subscribed);
        let out = decide(&set, &ev, &st, &Trigger::of_event(&ev, true), &FlowHistory::new());
        assert_eq!(out[0].status, Status::Live, "{out:?}");
        assert_eq!(out[0].actions.len(), 2, "the track_event and the profile sync");
        let Action::TriggerEvent { properties, .. } = &out[0].actions[0].1 else { panic!("{out:?}") };
        let request = nudge_model::CopyRequest::pending_in(properties).unwrap().unwrap();
        assert_eq!((request.prompt_key(), request.target.as_str()), ("winback@2".to_string(), "ai_copy"));
        assert_eq!(request.scores["churn_risk"], 72.5);
        let text = serde_json::to_string(&request).unwrap();
        assert!(!text.contains("a@example.org"), "{text}");
        assert!(
            !matches!(&out[0].actions[1].1, Action::UpsertProfile { attributes, .. } if attributes.keys().any(|k| k.contains("copy")))
        );
    }

    #[test]
    fn a_flow_sees_the_state_after_its_event_and_records_its_inputs_without_pii() {
        let f = spec(
            r#"{"flows":[{"name":"first_order","trigger":"order_placed",
            "when":"customer.orders_count >= 1 && scores.churn_risk >= 60.0",
            "actions":[{"type":"track_event","destination":"klaviyo","metric":"AI First Order",
                        "properties":{"tier":"scores.segment","orders":"customer.orders_count"}}]}]}"#,
        );
        let set = FlowSet::compile(&[f], &["klaviyo"]).unwrap();
        let ev = order("1001", 0);
        let st = state_after(std::slice::from_ref(&ev), MarketingConsent::Subscribed);
        let triggers = Trigger::of_event(&ev, false);
        assert!(triggers.contains(&Trigger::OrderPlaced));
        let out = decide(&set, &ev, &st, &triggers, &FlowHistory::new());
        assert_eq!(out[0].status, Status::Live, "{out:?}");
        assert_eq!(out[0].inputs["customer.orders_count"], 1);
        let audit = serde_json::to_string(&out[0]).unwrap();
        assert!(!audit.contains("a@example.org"), "{audit}");
        match &out[0].actions[0].1 {
            Action::TriggerEvent { properties, unique_id, .. } => {
                assert_eq!(properties["tier"], "active");
                assert_eq!(properties["orders"], 1);
                assert!(unique_id.starts_with("nudge:first-order:1001:"), "{unique_id}");
            }
            other => panic!("{other:?}"),
        }
        // The second delivery of the same order is an update, not a new order.
        assert!(Trigger::of_event(&ev, true).contains(&Trigger::OrderUpdated));
        // A cancellation fires once, whether it comes as orders/updated or orders/cancelled first.
        let Event::OrderUpserted(mut o) = ev.clone() else { unreachable!() };
        o.cancelled_at = Some(o.updated_at);
        let cancelled_update = Event::OrderUpserted(o.clone());
        assert_eq!(Trigger::of_change(&cancelled_update, true, false)[0], Trigger::OrderCancelled);
        assert_eq!(
            Trigger::of_change(&Event::OrderCancelled(o.clone()), true, true),
            [Trigger::StateChanged]
        );
        assert_eq!(Trigger::of_change(&Event::OrderCancelled(o), true, false)[0], Trigger::OrderCancelled);
        // An order placed long before nudge first sees it is not a new order.
        let Event::OrderUpserted(mut old) = ev.clone() else { unreachable!() };
        old.updated_at = old.created_at + time::Duration::days(30);
        assert_eq!(Trigger::of_change(&Event::OrderUpserted(old), false, false)[0], Trigger::OrderUpdated);
    }

    #[test]
    fn holdout_consent_cap_and_shadow_are_applied_in_order() {
        let base = r#"{"name":"nudge_it","trigger":"checkout_abandoned","when":"scores.churn_risk > 50.0",
            "actions":[{"type":"track_event","destination":"klaviyo","metric":"AI Nudge"}]"#;
        let set_of = |extra: &str| {
            FlowSet::compile(&[spec(&format!(r#"{{"flows":[{base}{extra}}}]}}"#))], &["klaviyo"]).unwrap()
        };
        let ev = abandoned(None);
        let triggers = Trigger::of_event(&ev, true);
        let subscribed =
            state_after(&[Event::CheckoutUpserted(checkout(None)), ev.clone()], MarketingConsent::Subscribed);
        let none = FlowHistory::new();

        let out = decide(&set_of(r#","holdout_percent":100"#), &ev, &subscribed, &triggers, &none);
        assert_eq!(out[0].status, Status::HeldOut);
        assert!(out[0].actions.is_empty());

        let unknown =
            state_after(&[Event::CheckoutUpserted(checkout(None)), ev.clone()], MarketingConsent::Unknown);
        let out = decide(&set_of(""), &ev, &unknown, &triggers, &none);
        assert_eq!(out[0].status, Status::NoConsent, "{out:?}");
        // The buyer ticked "email me" at checkout: consent.
        let ticked = abandoned(Some(true));
        let out = decide(&set_of(""), &ticked, &unknown, &triggers, &none);
        assert_eq!(out[0].status, Status::Live, "{out:?}");
        // A stored refusal wins over the checkout's flag.
        let refused = state_after(&[], MarketingConsent::Unsubscribed);
        assert_eq!(decide(&set_of(""), &ticked, &refused, &triggers, &none)[0].status, Status::NoConsent);

        let capped = set_of(r#","frequency_cap":"1/7d""#);
        let recent: FlowHistory = [("nudge_it".to_string(), vec![NOW.unix_timestamp() - 3 * 86_400])].into();
        assert_eq!(decide(&capped, &ev, &subscribed, &triggers, &recent)[0].status, Status::Capped);
        let old: FlowHistory = [("nudge_it".to_string(), vec![NOW.unix_timestamp() - 8 * 86_400])].into();
        assert_eq!(decide(&capped, &ev, &subscribed, &triggers, &old)[0].status, Status::Live);

        let shadow = decide(&set_of(r#","mode":"shadow""#), &ev, &subscribed, &triggers, &none);
        assert_eq!(shadow[0].status, Status::Shadow);
        assert_eq!(shadow[0].actions.len(), 1, "a shadow decision keeps what it would have sent");
        assert!(shadow[0].acted());

        let low = set_of("");
        let calm = decide(&low, &ev, &subscribed, &triggers, &none);
        assert_eq!(calm[0].status, Status::Live);
        let out = low.decide(&DecideContext {
            event: &ev,
            triggers: &triggers,
            state: &subscribed,
            scores: &scores(10.0),
            history: &none,
            now: NOW,
            policy: &PolicyConfig::default(),
            approvals_so_far: &no_approvals,
            learners: &crate::offers::NO_LEARNERS,
        });
        assert_eq!(out[0].status, Status::NotMatched);
        assert_eq!(out[0].reason, "condition is false");
    }

    #[test]
    fn bad_flows_are_config_errors_with_key_paths() {
        let err = |json: &str, dests: &[&str]| {
            let specs: Vec<FlowSpec> = serde_json::from_str::<serde_json::Value>(json)
                .map(|v| serde_json::from_value(v["flows"].clone()).unwrap())
                .unwrap();
            FlowSet::compile(&specs, dests).unwrap_err()
        };
        let ok = r#"{"name":"a","trigger":"order_placed","actions":[{"type":"sync_profile","destination":"klaviyo"}]}"#;
        let e = err(&format!(r#"{{"flows":[{ok},{ok}]}}"#), &["klaviyo"]);
        assert_eq!(e.path, "flows[1].name");
        assert!(e.message.contains("twice"), "{e}");
        let e = err(&format!(r#"{{"flows":[{ok}]}}"#), &[]);
        assert_eq!(e.path, "flows[0].actions[0].destination");
        assert!(e.message.contains("no destination is configured"), "{e}");
        let e = err(
            r#"{"flows":[{"name":"b","trigger":"order_placed","when":"customer.orders_count >=\n  scores.nope"}]}"#,
            &["klaviyo"],
        );
        assert_eq!(e.path, "flows[0].when");
        assert!(e.message.contains("flow `b`") && e.message.contains("line 2"), "{e}");
        let e = err(
            r#"{"flows":[{"name":"c","trigger":"order_placed","frequency_cap":"weekly"}]}"#,
            &["klaviyo"],
        );
        assert_eq!(e.path, "flows[0].frequency_cap");
        let e = err(r#"{"flows":[{"name":"Bad-Name","trigger":"order_placed"}]}"#, &["klaviyo"]);
        assert_eq!(e.path, "flows[0].name");
        let e = err(&format!(r#"{{"flows":[{ok},{{"name":"d","trigger":"schedule"}}]}}"#), &["klaviyo"]);
        assert_eq!(e.path, "flows[1].schedule");
        assert!(e.message.contains("needs a schedule"), "{e}");
        let e =
            err(r#"{"flows":[{"name":"d","trigger":"order_placed","schedule":"0 9 * * *"}]}"#, &["klaviyo"]);
        assert_eq!(e.path, "flows[0].schedule");
        assert!(e.message.contains("only a flow with trigger = \"schedule\""), "{e}");
        let e = err(r#"{"flows":[{"name":"d","trigger":"schedule","schedule":"0 9 * 13 *"}]}"#, &["klaviyo"]);
        assert_eq!(e.path, "flows[0].schedule");
        assert!(e.message.contains("flow `d`") && e.message.contains("field 4 (month) `13`"), "{e}");
        let e = err(r#"{"flows":[{"name":"d","trigger":"schedule","schedule":"0 0 30 2 *"}]}"#, &["klaviyo"]);
        assert_eq!(e.path, "flows[0].schedule");
        assert!(e.message.contains("never fires"), "{e}");
        let e =
            err(r#"{"flows":[{"name":"e","trigger":"order_placed","holdout_percent":120}]}"#, &["klaviyo"]);
        assert_eq!(e.path, "flows[0].holdout_percent");
    }

    fn tick(flow: &str) -> Event {
        Event::ScheduleTick(nudge_model::ScheduleTick {
            customer: customer(),
            flow: flow.into(),
            fired_at: datetime!(2026-05-04 09:00 UTC),
        })
    }

    #[test]
    fn a_schedule_tick_is_decided_by_its_own_flow_only() {
        let flows: Vec<FlowSpec> = serde_json::from_str(
            r#"[
            {"name":"weekly","trigger":"schedule","schedule":"0 9 * * 1","when":"event.kind == \"schedule\" && customer.orders_count >= 1",
             "actions":[{"type":"track_event","destination":"klaviyo","metric":"AI Weekly"}]},
            {"name":"daily","trigger":"schedule","schedule":"0 6 * * *",
             "actions":[{"type":"track_event","destination":"klaviyo","metric":"AI Daily"}]},
            {"name":"sync","trigger":"state_changed","actions":[{"type":"sync_profile","destination":"klaviyo"}]}
        ]"#,
        )
        .unwrap();
        let set = FlowSet::compile(&flows, &["klaviyo"]).unwrap();
        let names: Vec<&str> = set.schedules().map(|(n, _)| n).collect();
        assert_eq!(names, ["weekly", "daily"]);
        let (_, weekly) = set.schedules().next().unwrap();
        assert_eq!(weekly.next_after(datetime!(2026-05-01 0:00 UTC)), Some(datetime!(2026-05-04 09:00 UTC)));

        let ev = tick("weekly");
        let triggers = Trigger::of_event(&ev, true);
        assert_eq!(triggers, [Trigger::Schedule], "a firing changes no state");
        let st = state_after(&[order("1001", 0)], MarketingConsent::Subscribed);
        let ctx = DecideContext {
            event: &ev,
            triggers: &triggers,
            state: &st,
            scores: &scores(40.0),
            history: &FlowHistory::new(),
            now: NOW,
            policy: &PolicyConfig::default(),
            approvals_so_far: &no_approvals,
            learners: &crate::offers::NO_LEARNERS,
        };
        // Deciding by trigger would fire every schedule flow; a firing decides its own flow.
        assert_eq!(set.decide(&ctx).len(), 2);
        let out = set.decide_flow("weekly", &ctx).unwrap();
        assert_eq!((out.flow.as_str(), out.status), ("weekly", Status::Live), "{out:?}");
        assert_eq!(out.inputs["event.kind"], "schedule");
        match &out.actions[0].1 {
            Action::TriggerEvent { name, unique_id, time, properties, .. } => {
                assert_eq!(name, "AI Weekly");
                assert_eq!(*time, datetime!(2026-05-04 09:00 UTC));
                assert_eq!(unique_id, &format!("nudge:weekly:{}:shopify:42", time.unix_timestamp()));
                assert_eq!(properties["fired_at"], "2026-05-04T09:00:00Z");
            }
            other => panic!("{other:?}"),
        }
        // A flow removed (or not a schedule flow) decides nothing.
        assert!(set.decide_flow("gone", &ctx).is_none());
        assert!(set.decide_flow("sync", &ctx).is_none());
        // The condition still applies: a customer without orders is not matched.
        let empty = state_after(&[], MarketingConsent::Subscribed);
        let out = set.decide_flow("weekly", &DecideContext { state: &empty, ..ctx }).unwrap();
        assert_eq!(out.status, Status::NotMatched);
        // Events never fire schedule flows.
        let placed = order("1002", 1);
        assert!(
            set.decide(&DecideContext {
                event: &placed,
                triggers: &Trigger::of_event(&placed, false),
                ..ctx
            })
            .iter()
            .all(|o| o.flow == "sync")
        );
    }

    #[test]
    fn approval_mode_and_first_n_hold_decisions_then_go_live() {
        let base = r#"{"name":"nudge_it","trigger":"checkout_abandoned",
            "actions":[{"type":"track_event","destination":"klaviyo","metric":"AI Nudge"}]"#;
        let set_of = |extra: &str| {
            FlowSet::compile(&[spec(&format!(r#"{{"flows":[{base}{extra}}}]}}"#))], &["klaviyo"]).unwrap()
        };
        let ev = abandoned(None);
        let triggers = Trigger::of_event(&ev, true);
        let st =
            state_after(&[Event::CheckoutUpserted(checkout(None)), ev.clone()], MarketingConsent::Subscribed);
        let none = FlowHistory::new();
        let with_count = |set: &FlowSet, n: u64, policy: &PolicyConfig| {
            let count = move |flow: &str| if flow == "nudge_it" { n } else { 0 };
            set.decide(&DecideContext {
                event: &ev,
                triggers: &triggers,
                state: &st,
                scores: &scores(72.5),
                history: &none,
                now: NOW,
                policy,
                approvals_so_far: &count,
                learners: &crate::offers::NO_LEARNERS,
            })
        };
        let policy = PolicyConfig::default();
        // Approval mode: every decision waits, whatever the count, with its actions kept.
        let approval = set_of(r#","mode":"approval","approval":{"expires_after":"7d"}"#);
        for n in [0, 5, 1000] {
            let out = with_count(&approval, n, &policy);
            assert_eq!(out[0].status, Status::AwaitingApproval, "{out:?}");
            assert_eq!(out[0].actions.len(), 1);
            assert!(out[0].acted(), "a waiting decision counts toward the frequency cap");
        }
        assert_eq!(Status::AwaitingApproval.as_str(), "awaiting_approval");
        assert_eq!(approval.approval_expiry_secs("nudge_it"), 7 * 86_400);
        // Live with first_n = 2: the first two wait, then live.
        let first = set_of(r#","approval":{"first_n":2}"#);
        assert!(first.uses_first_n("nudge_it"));
        assert_eq!(first.approval_expiry_secs("nudge_it"), 48 * 3600);
        assert_eq!(with_count(&first, 0, &policy)[0].status, Status::AwaitingApproval);
        assert_eq!(with_count(&first, 1, &policy)[0].status, Status::AwaitingApproval);
        let live = with_count(&first, 2, &policy);
        assert_eq!(live[0].status, Status::Live);
        assert_eq!(live[0].actions.len(), 1);
        // pipeline.shadow wins: nothing waits, nothing is sent.
        let shadow = PolicyConfig { shadow: true, ..PolicyConfig::default() };
        assert_eq!(with_count(&approval, 0, &shadow)[0].status, Status::Shadow);
        assert_eq!(with_count(&first, 0, &shadow)[0].status, Status::Shadow);
        // A held-out customer never waits.
        let held = set_of(r#","mode":"approval","holdout_percent":100"#);
        assert_eq!(with_count(&held, 0, &policy)[0].status, Status::HeldOut);
    }

    #[test]
    fn bad_approval_settings_are_config_errors() {
        let err = |extra: &str| {
            let json = format!(
                r#"{{"name":"f","trigger":"order_placed","actions":[{{"type":"sync_profile","destination":"klaviyo"}}]{extra}}}"#
            );
            let spec: FlowSpec = serde_json::from_str(&json).unwrap();
            FlowSet::compile(&[spec], &["klaviyo"]).unwrap_err()
        };
        let e = err(r#","mode":"shadow","approval":{"first_n":3}"#);
        assert_eq!(e.path, "flows[0].approval.first_n");
        assert!(e.message.contains("shadow"), "{e}");
        let e = err(r#","mode":"approval","approval":{"first_n":3}"#);
        assert_eq!(e.path, "flows[0].approval.first_n");
        let e = err(r#","mode":"approval","approval":{"expires_after":"two days"}"#);
        assert_eq!(e.path, "flows[0].approval.expires_after");
        let e = err(r#","approval":{"first_n":1,"expires_after":"0h"}"#);
        assert_eq!(e.path, "flows[0].approval.expires_after");
        let e = err(r#","approval":{"expires_after":"1h"}"#);
        assert_eq!(e.path, "flows[0].approval");
        let ok = |extra: &str| {
            let json = format!(
                r#"{{"name":"f","trigger":"order_placed","actions":[{{"type":"sync_profile","destination":"klaviyo"}}]{extra}}}"#
            );
            let spec: FlowSpec = serde_json::from_str(&json).unwrap();
            FlowSet::compile(&[spec], &["klaviyo"]).is_ok()
        };
        assert!(ok(r#","mode":"approval""#));
        assert!(ok(r#","mode":"approval","approval":{"expires_after":"2h"}"#));
        assert!(ok(r#","approval":{"first_n":50}"#));
    }

    #[test]
    fn the_version_follows_the_content_and_scores_fingerprints_ignore_noise() {
        let a = spec(r#"{"flows":[{"name":"a","trigger":"order_placed"}]}"#);
        let mut b = a.clone();
        b.when = Some("customer.orders_count >= 2".into());
        let va = FlowSet::compile(std::slice::from_ref(&a), &[]).unwrap().version;
        assert_eq!(va, FlowSet::compile(&[a], &[]).unwrap().version);
        assert_ne!(va, FlowSet::compile(&[b], &[]).unwrap().version);
        assert_eq!(scores_fingerprint(&scores(72.4)), scores_fingerprint(&scores(72.3)));
        assert_ne!(scores_fingerprint(&scores(72.4)), scores_fingerprint(&scores(75.0)));
        assert_eq!(FrequencyCap::parse("3/24h").unwrap(), FrequencyCap { count: 3, window_secs: 86_400 });
        assert!(FrequencyCap::parse("0/1d").is_err());
    }

    #[test]
    fn a_customer_record_first_seen_is_created_only_when_it_is_new() {
        let record = |created_days_before: Option<i64>| {
            let updated_at = datetime!(2026-05-01 12:00 UTC);
            Event::CustomerUpserted(nudge_model::Customer {
                id: customer(),
                email: None,
                first_name: None,
                last_name: None,
                created_at: created_days_before.map(|d| updated_at - time::Duration::days(d)),
                updated_at,
                email_consent: MarketingConsent::Unknown,
                tags: vec![],
                sms_consent: MarketingConsent::Unknown,
            })
        };
        // New at the platform: created, even when nudge knew the customer from an order first.
        assert_eq!(Trigger::of_event(&record(Some(0)), false)[0], Trigger::CustomerCreated);
        assert_eq!(Trigger::of_event(&record(None), false)[0], Trigger::CustomerCreated);
        // Created years ago, first seen now: an update of a customer who existed before nudge listened.
        assert_eq!(Trigger::of_event(&record(Some(700)), false)[0], Trigger::CustomerUpdated);
        assert_eq!(Trigger::of_event(&record(Some(0)), true)[0], Trigger::CustomerUpdated);
    }
}

#[cfg(test)]
#[path = "flows_signals_tests.rs"]
mod signals_tests;
