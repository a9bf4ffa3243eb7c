//! `nudge tokens`: create, list and revoke the API tokens of the admin API. Works on the data directory
//! directly, with or without a running server (a running server sees a new or revoked token on its next
//! request: tokens are looked up per request, not cached).
//!
//! A token is printed once, by `create`, and never again: the store keeps its SHA-256 only. Creating and
//! revoking are audited (stage `api_access`, with the token's name and role and the operating-system user
//! who ran the command), never with the token.

use crate::access::{self, Role};
use crate::config::Config;
use clap::Subcommand;
use nudge_model::{AuditRecord, AuditStage, TraceId};
use nudge_store::{Store, StoreError, TokenRecord, TokenRef};

#[derive(Subcommand)]
pub enum TokensCmd {
    /// Create a token for a colleague or a system and print it (once: only its hash is kept).
    Create {
        /// A unique name: the audit trail attributes every use of the token to it (letters, digits, `.`,
        /// `_`, `-`, `@`; at most 64).
        #[arg(long)]
        name: String,
        /// What the token may do: each role adds to the one before it.
        #[arg(long, value_enum)]
        role: Role,
    },
    /// List tokens: name, role, when created, last used and revoked (never the tokens).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name (or by the id `list` shows): requests with it are refused from now on.
    Revoke { name: String },
}

pub async fn run(cfg: &Config, cmd: TokensCmd) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg).await?;
    match cmd {
        TokensCmd::Create { name, role } => {
            let token = create(&*store, &name, role).await?;
            audit(&*store, "create_token", &name, role.as_str()).await?;
            println!("{token}");
            eprintln!(
                "created token `{name}` (role {role}). It is shown this once: store it now. Send it as \
                 `Authorization: Bearer <token>`."
            );
        }
        TokensCmd::List { json } => {
            let tokens = store.list_tokens().await?;
            if json {
                let v: Vec<serde_json::Value> = tokens.iter().map(token_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", list_text(&tokens));
            }
        }
        TokensCmd::Revoke { name } => {
            let before = find(&*store, &name).await?;
            let after = store.revoke_token(TokenRef::Id(before.id)).await?;
            match before.revoked_at_ms {
                Some(at) => println!("token `{}` was already revoked on {}", after.name, fmt_ms(at)),
                None => {
                    audit(&*store, "revoke_token", &after.name, &after.role).await?;
                    println!(
                        "revoked token `{}` (role {}): requests with it are refused from now on",
                        after.name, after.role
                    );
                }
            }
        }
    }
    Ok(())
}

/// Creates a token named `name` with `role` and returns it: the only time it exists outside the caller's
/// hands. (Tests create tokens through this too.)
pub async fn create(store: &dyn Store, name: &str, role: Role) -> anyhow::Result<String> {
    access::check_token_name(name).map_err(anyhow::Error::msg)?;
    let token = access::generate_token();
    match store.create_token(name, role.as_str(), &access::hash_token(&token)).await {
        Ok(_) => Ok(token),
        Err(StoreError::Conflict(msg)) => Err(anyhow::anyhow!("{msg}")),
        Err(e) => Err(e.into()),
    }
}

/// The token `name` names: by name, or else by id when `name` is a number.
async fn find(store: &dyn Store, name: &str) -> anyhow::Result<TokenRecord> {
    let tokens = store.list_tokens().await?;
    let by_id = name.parse::<i64>().ok();
    tokens
        .iter()
        .find(|t| t.name == name)
        .or_else(|| by_id.and_then(|id| tokens.iter().find(|t| t.id == id)))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no token named `{name}` (`nudge tokens list` shows them)"))
}

/// Records a change to the tokens in the audit trail: what, which token (by name), and who ran it.
async fn audit(store: &dyn Store, action: &str, name: &str, role: &str) -> anyhow::Result<()> {
    let os_user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).ok();
    let record = AuditRecord {
        trace_id: TraceId::new(),
        customer: None,
        stage: AuditStage::ApiAccess,
        at: time::OffsetDateTime::now_utc(),
        detail: serde_json::json!({
            "action": action,
            "via": "cli",
            "token_name": name,
            "role": role,
            "os_user": os_user,
        }),
    };
    store.append_audit(vec![record]).await?;
    Ok(())
}

fn fmt_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

fn token_json(t: &TokenRecord) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "name": t.name,
        "role": t.role,
        "created_at": fmt_ms(t.created_at_ms),
        "last_used_at": t.last_used_at_ms.map(fmt_ms),
        "revoked_at": t.revoked_at_ms.map(fmt_ms),
        "active": t.revoked_at_ms.is_none(),
    })
}

fn list_text(tokens: &[TokenRecord]) -> String {
    if tokens.is_empty() {
        return "no tokens (create one with `nudge tokens create --name NAME --role ROLE`)\n".into();
    }
    let rows: Vec<[String; 6]> = tokens
        .iter()
        .map(|t| {
            [
                t.id.to_string(),
                t.name.clone(),
                t.role.clone(),
                fmt_ms(t.created_at_ms),
                t.last_used_at_ms.map(fmt_ms).unwrap_or_else(|| "never".into()),
                t.revoked_at_ms.map(fmt_ms).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let head = ["ID", "NAME", "ROLE", "CREATED", "LAST USED", "REVOKED"].map(String::from);
    let mut widths = [0usize; 6];
    for r in std::iter::once(&head).chain(&rows) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        let cells: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_a_table_without_secrets() {
        let t = |id, name: &str, revoked| TokenRecord {
            id,
            name: name.into(),
            role: "viewer".into(),
            created_at_ms: 1_700_000_000_000,
            revoked_at_ms: revoked,
            last_used_at_ms: None,
        };
        let text = list_text(&[t(1, "ci", None), t(2, "alice@example.org", Some(1_700_000_060_000))]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID  NAME") && lines[0].ends_with("REVOKED"), "{text}");
        assert!(lines[1].contains("ci") && lines[1].contains("never") && lines[1].ends_with('-'), "{text}");
        assert!(lines[2].contains("2023-11-14T22:14:20Z"), "{text}");
        assert!(list_text(&[]).starts_with("no tokens"));
        let j = token_json(&t(2, "x", Some(5)));
        assert_eq!(j["active"], false);
        assert_eq!(j.as_object().unwrap().len(), 7);
    }
}
