//! `nudge prompts test`: renders a prompt with one customer's pseudonymised context (their stored state,
//! scored as the server would) and, with `--call`, asks the configured LLM and shows the completion, its
//! tokens and whether it validated (or the fallback copy and why). Nothing is sent to a destination; the
//! tokens a call uses count toward the month's budget like any other generation.

use crate::config::Config;
use crate::pipeline::Scoring;
use clap::Subcommand;
use nudge_llm::{CopyContext, LlmClient, PromptSpec, render};
use nudge_model::CustomerId;
use nudge_state::CustomerState;
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum PromptsCmd {
    /// Render a prompt for one customer (and, with --call, generate its copy).
    Test {
        /// The prompt's name (`[[prompts]] name`).
        #[arg(long)]
        prompt: String,
        /// The prompt's version (default: the newest configured).
        #[arg(long)]
        version: Option<u32>,
        /// The customer, as `source:id` (`shopify:880012`).
        #[arg(long)]
        customer: String,
        /// Call the configured LLM (`[llm]`) and show the completion and its validation.
        #[arg(long)]
        call: bool,
        #[arg(long)]
        json: bool,
    },
}

/// A mistake in what was asked (an unknown prompt or customer, no `[llm]` for `--call`): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The prompt `name` at `version`, or its newest version.
pub fn find_prompt<'a>(
    cfg: &'a Config,
    name: &str,
    version: Option<u32>,
) -> Result<&'a PromptSpec, UsageError> {
    let versions: Vec<&PromptSpec> = cfg.prompts.iter().filter(|p| p.name == name).collect();
    if versions.is_empty() {
        let mut names: Vec<&str> = cfg.prompts.iter().map(|p| p.name.as_str()).collect();
        names.dedup();
        return Err(UsageError(if names.is_empty() {
            format!("no prompt named `{name}`: the configuration has no [[prompts]]")
        } else {
            format!("no prompt named `{name}`; the prompts are: {}", names.join(", "))
        }));
    }
    match version {
        None => Ok(versions.iter().max_by_key(|p| p.version).copied().expect("not empty")),
        Some(v) => versions.iter().find(|p| p.version == v).copied().ok_or_else(|| {
            let vs: Vec<String> = versions.iter().map(|p| p.version.to_string()).collect();
            UsageError(format!("prompt `{name}` has no version {v} (configured: {})", vs.join(", ")))
        }),
    }
}

pub async fn run(cfg: &Config, cmd: PromptsCmd) -> anyhow::Result<()> {
    let PromptsCmd::Test { prompt, version, customer, call, json: json_out } = cmd;
    let spec = find_prompt(cfg, &prompt, version)?.clone();
    if call && cfg.llm.is_none() {
        return Err(
            UsageError("--call needs [llm] in the configuration (base_url, model, api_key)".into()).into()
        );
    }
    let id: CustomerId = customer
        .parse()
        .map_err(|e| UsageError(format!("`{customer}` is not a customer id (source:id): {e}")))?;
    let store = crate::app::open_store(cfg).await?;
    let stored = store.load_states(std::slice::from_ref(&id)).await?;
    let state: CustomerState = match stored.first() {
        Some(s) => {
            CustomerState::decode(&s.state).map_err(|e| anyhow::anyhow!("the stored state of {id}: {e}"))?
        }
        None => {
            return Err(UsageError(format!(
                "customer {id} is not known to nudge (no event or imported order has named them)"
            ))
            .into());
        }
    };
    let scoring = Scoring::new(nudge_scoring::RulesScorer { thresholds: cfg.segments.clone() });
    crate::models_cli::load_active_scorer(&*store, &scoring, cfg).await?;
    crate::decision_models::load(&*store, &scoring).await?;
    let (scores, _) = scoring.score(&state, time::OffsetDateTime::now_utc());
    let context = CopyContext::from_scores(&scores);
    let rendered = render(&spec, &context);
    let mut doc = json!({
        "prompt": spec.name, "version": spec.version, "customer": id.to_string(),
        "context": context.vars(), "system": rendered.system, "user": rendered.user,
    });
    if !json_out {
        println!(
            "prompt {}@{} for {id} (segment {}, scored by {})",
            spec.name,
            spec.version,
            scores.segment.as_str(),
            scores.model_version
        );
        println!("\n--- system ---\n{}\n--- user ---\n{}", rendered.system, rendered.user);
    }
    if call {
        let stage = crate::copy::CopyStage::from_config(store.clone(), cfg).await?;
        let client: &LlmClient = stage.client().expect("[llm] is configured");
        let started = std::time::Instant::now();
        let g = client.generate(&spec, &context).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let month = crate::copy::month_of(time::OffsetDateTime::now_utc());
        store
            .store_generated_copy(nudge_store::CopyFill {
                usage: Some(nudge_store::LlmUsage {
                    month,
                    tokens: g.tokens,
                    generations: 1,
                    fallbacks: u64::from(g.fallback_used),
                }),
                ..Default::default()
            })
            .await?;
        let budget = client.budget_status();
        let validation = match &g.reason {
            None => "valid: every slot present and within its max_chars".to_string(),
            Some(r) => format!("fallback copy used: {r}"),
        };
        doc["completion"] = json!({
            "slots": g.slots, "fallback": g.fallback_used, "reason": g.reason.as_ref().map(ToString::to_string),
            "validation": validation, "tokens": g.tokens, "attempts": g.attempts, "request_id": g.request_id,
            "elapsed_ms": (elapsed_ms * 10.0).round() / 10.0,
            "tokens_this_month": budget.used, "monthly_token_budget": budget.budget,
        });
        if !json_out {
            println!("\n--- completion ({}) ---", if g.fallback_used { "fallback" } else { "generated" });
            for (slot, text) in &g.slots {
                let max = spec.slots.get(slot).and_then(|s| s.max_chars).unwrap_or(0);
                println!("{slot} ({}/{max} chars): {text}", text.chars().count());
            }
            println!("\n{validation}");
            println!(
                "{} tokens, {} attempt(s), {elapsed_ms:.0} ms; {} tokens this month{}",
                g.tokens,
                g.attempts,
                budget.used,
                budget.budget.map(|b| format!(" of {b}")).unwrap_or_default()
            );
        }
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(dir: &std::path::Path) -> Config {
        let mut cfg = Config::from_toml("", &BTreeMap::new()).unwrap();
        cfg.storage.data_dir = dir.to_path_buf();
        for version in [1, 3] {
            cfg.prompts.push(
                serde_json::from_value(json!({
                    "name": "winback", "version": version, "system": "Copy for {{segment}}.",
                    "user": "Scores {{scores}}; products {{products}}.",
                    "slots": {"subject": {"max_chars": 40}}, "fallback": {"subject": "Hello again"}
                }))
                .unwrap(),
            );
        }
        cfg
    }

    fn test_cmd(prompt: &str, version: Option<u32>, customer: &str, call: bool) -> PromptsCmd {
        PromptsCmd::Test { prompt: prompt.into(), version, customer: customer.into(), call, json: true }
    }

    #[tokio::test]
    async fn unknown_prompts_versions_and_customers_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = cfg(dir.path());
        assert_eq!(find_prompt(&cfg, "winback", None).unwrap().version, 3, "the newest by default");
        assert_eq!(find_prompt(&cfg, "winback", Some(1)).unwrap().version, 1);
        let usage =
            |e: anyhow::Error| e.downcast::<UsageError>().map(|u| u.0).unwrap_or_else(|e| panic!("{e}"));
        let e = usage(run(&cfg, test_cmd("nope", None, "shopify:1", false)).await.unwrap_err());
        assert!(e.contains("the prompts are: winback"), "{e}");
        let e = usage(run(&cfg, test_cmd("winback", Some(2), "shopify:1", false)).await.unwrap_err());
        assert!(e.contains("no version 2 (configured: 1, 3)"), "{e}");
        let e = usage(run(&cfg, test_cmd("winback", None, "shopify:1", true)).await.unwrap_err());
        assert!(e.contains("--call needs [llm]"), "{e}");
        let e = usage(run(&cfg, test_cmd("winback", None, "shopify:404", false)).await.unwrap_err());
        assert!(e.contains("not known to nudge"), "{e}");
        let e = usage(run(&cfg, test_cmd("winback", None, "no-colon", false)).await.unwrap_err());
        assert!(e.contains("not a customer id"), "{e}");
    }
}
