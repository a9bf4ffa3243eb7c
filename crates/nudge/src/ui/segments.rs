//! Proposed and adopted segments: the latest discovery's proposals with how each differs from the rest,
//! the adopted segments with their members and stability, and adopting a proposal under a name through
//! [`crate::segment_adoption`], as `nudge segments adopt` and the API do (`AdoptSegments`). The members are
//! computed in the background; the page shows them once the refresh is done.

use super::{Page, Signed, Ui, fields, render, store_failed};
use crate::access::Permission;
use crate::segment_adoption::{self as adoption, AdoptError};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::HashMap;
use std::sync::Arc;

/// One proposal as the page shows it.
pub struct ProposalRow {
    pub id: String,
    pub size: usize,
    pub share: String,
    pub suggested_name: String,
    pub defining: Vec<String>,
    pub adopted_as: Option<String>,
}

/// One adopted segment as the page shows it.
pub struct AdoptedRow {
    pub name: String,
    pub proposal: String,
    pub members: u64,
    pub joined: u64,
    pub left: u64,
    pub stability: String,
    pub refreshed: String,
    pub adopted_by: String,
    pub lists: String,
}

#[derive(Template)]
#[template(path = "ui/segments.html")]
struct SegmentsPage {
    page: Page,
    proposals: Vec<ProposalRow>,
    adopted: Vec<AdoptedRow>,
    may_adopt: bool,
}

/// `GET /ui/segments`.
pub async fn page(State(ui): State<Arc<Ui>>, signed: Signed) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadReports).await {
        return r;
    }
    let store = &*ui.shared.store;
    let proposals = match adoption::proposals(store, None).await {
        Ok(p) => p,
        Err(e) => {
            return super::problem(
                &signed,
                StatusCode::SERVICE_UNAVAILABLE,
                "Store unavailable",
                format!("{e:#}"),
            );
        }
    };
    let adopted = match store.adopted_segments().await {
        Ok(a) => a,
        Err(e) => return store_failed(&signed, e),
    };
    let page = SegmentsPage {
        page: signed.page("Segments", "segments"),
        proposals: proposals
            .into_iter()
            .map(|p| ProposalRow {
                id: p.id,
                size: p.size,
                share: format!("{:.1} %", p.share * 100.0),
                suggested_name: p.suggested_name,
                defining: p.defining,
                adopted_as: p.adopted_as,
            })
            .collect(),
        adopted: adopted
            .into_iter()
            .map(|a| AdoptedRow {
                proposal: format!("{}-{}", a.discovery_id, a.proposal + 1),
                members: a.members,
                joined: a.last_joined,
                left: a.last_left,
                stability: a.last_stability.map_or("-".into(), |s| format!("{:.1} %", s * 100.0)),
                refreshed: a.refreshed_at_ms.map_or("not yet".into(), super::fmt_ms),
                adopted_by: a.adopted_by,
                lists: a
                    .lists
                    .iter()
                    .map(|l| format!("{}:{}", l.destination, l.list_id))
                    .collect::<Vec<_>>()
                    .join(", "),
                name: a.name,
            })
            .collect(),
        may_adopt: signed.may(Permission::AdoptSegments),
    };
    render(StatusCode::OK, &page)
}

/// `POST /ui/segments/{id}/adopt` (CSRF token; `AdoptSegments`; field `name`).
pub async fn adopt(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    Path(id): Path<String>,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = fields(form);
    if let Err(r) = signed.authorize_form(&ui, &form, Permission::AdoptSegments).await {
        return r;
    }
    let name = form.get("name").map(|n| n.trim().to_string()).unwrap_or_default();
    let by = format!("token:{}", signed.name);
    let (status, message) = match adoption::adopt(&*ui.shared.store, &id, &name, &by, Vec::new()).await {
        Ok(seg) => {
            adoption::refresh_in_background(ui.shared.store.clone(), ui.shared.scoring.clone());
            (
                StatusCode::CREATED,
                format!(
                    "Proposal {id} is adopted as `{}`; its members are being computed (flows read it as \"{}\" in customer.segments).",
                    seg.name, seg.name
                ),
            )
        }
        Err(AdoptError::Usage(e)) => (StatusCode::BAD_REQUEST, e.to_string()),
        Err(AdoptError::NotFound(m)) => (StatusCode::NOT_FOUND, m),
        Err(AdoptError::Conflict(m)) => (StatusCode::CONFLICT, m),
        Err(AdoptError::Other(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    };
    signed.audit_change(&ui, Permission::AdoptSegments, status).await;
    signed.done(&ui, message, "/ui/segments")
}
