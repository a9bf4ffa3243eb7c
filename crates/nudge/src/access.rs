//! Who may do what on the admin API: the roles, the permissions, the one matrix between them ([`allows`]),
//! the permission each `/api` route needs ([`permission_for`]), and the tokens that carry a role.
//!
//! The roles are cumulative, in the order the issue lists them, each adding to the one before:
//! `viewer` ⊂ `marketer` ⊂ `data_engineer` ⊂ `compliance` ⊂ `admin`. A data engineer can therefore also
//! approve and reload flows, and compliance can also fit models and replay: every role above `viewer` is
//! trusted staff, and a strict ladder is one rule to read and to test instead of a matrix of exceptions.
//! Should separation of duties be wanted later (compliance without marketing approvals), it is a change to
//! [`allows`] alone.
//!
//! A token is `nudge_` followed by 32 random bytes in hex. It is shown once, when created; the store keeps
//! its SHA-256 ([`hash_token`]) and looks requests up by that hash. Neither the token nor its hash is ever
//! logged, audited or returned: the audit trail names tokens by their name.

use axum::http::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// A token's role. Ordered: each role holds every permission of the roles before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Role {
    /// Reads the audit trail (by trace), flows, approvals and reports.
    Viewer,
    /// + approves and rejects, reloads flows.
    Marketer,
    /// + models and replay.
    DataEngineer,
    /// + every customer's audit trail, privacy export and erasure.
    Compliance,
    /// Everything, tokens included.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] =
        [Role::Viewer, Role::Marketer, Role::DataEngineer, Role::Compliance, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Marketer => "marketer",
            Role::DataEngineer => "data_engineer",
            Role::Compliance => "compliance",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a role may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// One trace's audit trail.
    ReadAudit,
    /// Every customer's audit trail.
    ReadCustomerAudit,
    /// Flows and the approval queue.
    ReadFlows,
    /// Shadow and lift reports.
    ReadReports,
    /// Approve or reject queued actions.
    Approve,
    /// Reload the flow definitions.
    ReloadFlows,
    /// Fit, activate and roll back model versions.
    Models,
    /// Replay quarantined deliveries and dead letters.
    Replay,
    /// Privacy export and erasure.
    Privacy,
    /// Create, list and revoke API tokens.
    Tokens,
    /// A customer's recommended products (catalogue facts only; what a send-time content feed reads).
    ReadRecs,
    /// Adopt a proposed segment under a name (what flows then target).
    AdoptSegments,
    /// Read the API's own description (`GET /api/openapi.json`): what routes exist and what they take.
    ReadApi,
}

impl Permission {
    pub const ALL: [Permission; 13] = [
        Permission::ReadAudit,
        Permission::ReadCustomerAudit,
        Permission::ReadFlows,
        Permission::ReadReports,
        Permission::Approve,
        Permission::ReloadFlows,
        Permission::Models,
        Permission::Replay,
        Permission::Privacy,
        Permission::Tokens,
        Permission::ReadRecs,
        Permission::AdoptSegments,
        Permission::ReadApi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ReadAudit => "read_audit",
            Permission::ReadCustomerAudit => "read_customer_audit",
            Permission::ReadFlows => "read_flows",
            Permission::ReadReports => "read_reports",
            Permission::Approve => "approve",
            Permission::ReloadFlows => "reload_flows",
            Permission::Models => "models",
            Permission::Replay => "replay",
            Permission::Privacy => "privacy",
            Permission::Tokens => "tokens",
            Permission::ReadRecs => "read_recs",
            Permission::AdoptSegments => "adopt_segments",
            Permission::ReadApi => "read_api",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role × permission matrix, the only one: whether `role` holds `p`. Each permission names the least
/// role that holds it; the roles above hold it too (see the module's documentation).
pub fn allows(role: Role, p: Permission) -> bool {
    let least = match p {
        Permission::ReadAudit
        | Permission::ReadFlows
        | Permission::ReadReports
        | Permission::ReadRecs
        | Permission::ReadApi => Role::Viewer,
        Permission::Approve | Permission::ReloadFlows | Permission::AdoptSegments => Role::Marketer,
        Permission::Models | Permission::Replay => Role::DataEngineer,
        Permission::ReadCustomerAudit | Permission::Privacy => Role::Compliance,
        Permission::Tokens => Role::Admin,
    };
    role >= least
}

/// One `/api` route and the permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRoute {
    /// `GET` or `POST` (a `GET` route answers `HEAD` too).
    pub method: &'static str,
    /// The path as axum spells it; `{name}` matches one non-empty segment.
    pub path: &'static str,
    pub permission: Permission,
}

const fn route(method: &'static str, path: &'static str, permission: Permission) -> ApiRoute {
    ApiRoute { method, path, permission }
}

/// Every `/api` route, served or announced (the flow and report routes are in the table before their
/// handlers: until then they answer 404 to a caller whose role holds their permission, and 403 to any
/// other). A request for a route not in this table is answered 404 once its token is checked, whether or
/// not a handler exists: a handler added without a row here is unreachable, never unguarded.
pub const API_ROUTES: &[ApiRoute] = &[
    route("GET", "/api/audit/events/{trace_id}", Permission::ReadAudit),
    route("GET", "/api/audit/customers/{customer_id}", Permission::ReadCustomerAudit),
    route("GET", "/api/flows", Permission::ReadFlows),
    route("POST", "/api/flows/reload", Permission::ReloadFlows),
    route("GET", "/api/approvals", Permission::ReadFlows),
    route("POST", "/api/approvals/{id}/approve", Permission::Approve),
    route("POST", "/api/approvals/{id}/reject", Permission::Approve),
    route("POST", "/api/approvals/bulk", Permission::Approve),
    route("GET", "/api/reports/shadow", Permission::ReadReports),
    route("GET", "/api/reports/lift", Permission::ReadReports),
    route("POST", "/api/privacy/erase", Permission::Privacy),
    route("GET", "/api/privacy/export/{customer_id}", Permission::Privacy),
    route("GET", "/api/privacy/status", Permission::Privacy),
    route("GET", "/api/recs/{customer_id}", Permission::ReadRecs),
    route("GET", "/api/segments", Permission::ReadReports),
    route("GET", "/api/segments/proposals", Permission::ReadReports),
    route("POST", "/api/segments/proposals/{id}/adopt", Permission::AdoptSegments),
    route("GET", "/api/campaigns/hypotheses", Permission::ReadReports),
    route("GET", "/api/digest", Permission::ReadReports),
    route("GET", "/api/openapi.json", Permission::ReadApi),
];

/// Whether `path` (as requested, without the query) fits a route template.
fn matches_template(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) => {
                let param = ts.starts_with('{') && ts.ends_with('}');
                if (param && ps.is_empty()) || (!param && ts != ps) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The route of [`API_ROUTES`] a request is for.
pub fn route_for(method: &Method, path: &str) -> Option<&'static ApiRoute> {
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    API_ROUTES.iter().find(|r| r.method == method && matches_template(r.path, path))
}

/// The permission a request needs; `None` for a request no route of [`API_ROUTES`] serves.
pub fn permission_for(method: &Method, path: &str) -> Option<Permission> {
    route_for(method, path).map(|r| r.permission)
}

/// The path as the audit trail and the logs show it: a route whose template names a customer
/// (`{customer_id}`) is shown as its template, since a customer's key is personal data (and must be gone
/// after an erasure); any other path as requested.
pub fn shown_path(method: &Method, path: &str) -> String {
    match route_for(method, path) {
        Some(r) if r.path.contains("{customer_id}") => r.path.to_string(),
        _ => path.to_string(),
    }
}

/// Whether some route serves `path` with another method (then the answer is 405, not 404).
pub fn path_is_routed(path: &str) -> bool {
    API_ROUTES.iter().any(|r| matches_template(r.path, path))
}

/// Who made an authenticated `/api` request: put into the request's extensions by the HTTP layer, so a
/// handler can attribute what it does (`Extension<Caller>`). Carries no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub token_id: i64,
    pub token_name: String,
    pub role: Role,
}

/// What every token starts with (so a leaked one is recognisable, e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "nudge_";

/// A new token: [`TOKEN_PREFIX`] and 32 bytes from the operating system's random source, in hex.
pub fn generate_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// What the store keeps of a token: its SHA-256, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A token's name is how the audit trail and the logs name whoever used it: 1 to 64 characters among
/// letters, digits, `.`, `_`, `-` and `@`.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) {
        return Err(format!(
            "`{name}` is not a usable token name: use 1 to 64 letters, digits, `.`, `_`, `-` or `@`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrix written out in full, row by row, so a change to [`allows`] shows up here as a decision.
    #[test]
    fn the_matrix_is_as_documented() {
        use Permission::*;
        let expected: [(Role, &[Permission]); 5] = [
            (Role::Viewer, &[ReadAudit, ReadFlows, ReadReports, ReadRecs, ReadApi]),
            (
                Role::Marketer,
                &[ReadAudit, ReadFlows, ReadReports, ReadRecs, ReadApi, Approve, ReloadFlows, AdoptSegments],
            ),
            (
                Role::DataEngineer,
                &[
                    ReadAudit,
                    ReadFlows,
                    ReadReports,
                    ReadRecs,
                    ReadApi,
                    Approve,
                    ReloadFlows,
                    AdoptSegments,
                    Models,
                    Replay,
                ],
            ),
            (
                Role::Compliance,
                &[
                    ReadAudit,
                    ReadFlows,
                    ReadReports,
                    ReadRecs,
                    ReadApi,
                    Approve,
                    ReloadFlows,
                    AdoptSegments,
                    Models,
                    Replay,
                    ReadCustomerAudit,
                    Privacy,
                ],
            ),
            (Role::Admin, &Permission::ALL),
        ];
        for (role, granted) in expected {
            for p in Permission::ALL {
                assert_eq!(allows(role, p), granted.contains(&p), "{role} × {p}");
            }
        }
    }

    /// Each role holds everything the role before it holds; only admin manages tokens.
    #[test]
    fn roles_are_cumulative() {
        for w in Role::ALL.windows(2) {
            for p in Permission::ALL {
                assert!(!allows(w[0], p) || allows(w[1], p), "{} has {p} but {} has not", w[0], w[1]);
            }
        }
        assert!(Role::ALL.iter().all(|r| allows(*r, Permission::Tokens) == (*r == Role::Admin)));
    }

    #[test]
    fn role_names_round_trip_through_serde_clap_and_parse() {
        use clap::ValueEnum;
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["viewer", "marketer", "data_engineer", "compliance", "admin"]);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!(r.as_str()));
            assert_eq!(r.to_possible_value().unwrap().get_name(), r.as_str());
        }
        assert_eq!(Role::parse("data-engineer"), None);
    }

    #[test]
    fn routes_map_to_their_permissions() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(permission_for(&get, "/api/audit/events/0190-abc"), Some(Permission::ReadAudit));
        assert_eq!(permission_for(&Method::HEAD, "/api/audit/events/x"), Some(Permission::ReadAudit));
        assert_eq!(
            permission_for(&get, "/api/audit/customers/shopify:880012"),
            Some(Permission::ReadCustomerAudit)
        );
        assert_eq!(permission_for(&get, "/api/flows"), Some(Permission::ReadFlows));
        assert_eq!(permission_for(&get, "/api/approvals"), Some(Permission::ReadFlows));
        assert_eq!(permission_for(&post, "/api/approvals/17/approve"), Some(Permission::Approve));
        assert_eq!(permission_for(&post, "/api/approvals/17/reject"), Some(Permission::Approve));
        assert_eq!(permission_for(&post, "/api/approvals/bulk"), Some(Permission::Approve));
        assert_eq!(permission_for(&get, "/api/reports/shadow"), Some(Permission::ReadReports));
        assert_eq!(permission_for(&get, "/api/reports/lift"), Some(Permission::ReadReports));
        // Wrong method, unknown path, empty parameter, extra segment.
        assert_eq!(permission_for(&post, "/api/flows"), None);
        assert!(path_is_routed("/api/flows"));
        assert_eq!(permission_for(&get, "/api/nothing"), None);
        assert!(!path_is_routed("/api/nothing"));
        assert_eq!(permission_for(&get, "/api/audit/events/"), None);
        assert_eq!(permission_for(&get, "/api/audit/events/a/b"), None);
        assert_eq!(permission_for(&get, "/api/flows/"), None);
        assert_eq!(permission_for(&post, "/api/approvals//approve"), None);
    }

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64, "{a}");
        let h = hash_token(&a);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&a[TOKEN_PREFIX.len()..]));
        assert_eq!(h, hash_token(&a));
        // SHA-256 of "abc".
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn token_names_are_checked() {
        for ok in ["ci", "alice@example.org", "data-team_1.2"] {
            assert!(check_token_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "tab\t", "ünï", &"x".repeat(65), "a/b"] {
            assert!(check_token_name(bad).is_err(), "{bad:?}");
        }
    }
}
