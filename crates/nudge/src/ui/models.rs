//! Model versions with their metrics, the holdout plot, and activation (rolling back is activating an
//! older version) through [`crate::models_cli::activate`], as `nudge models activate` does (`Models`).

use super::{Page, Signed, Ui, fields, problem, render, store_failed, svg_response};
use crate::access::Permission;
use crate::models_cli::{self, Activation, VersionBody};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use nudge_store::ModelVersion;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// One version as the list shows it.
pub struct VersionRow {
    pub id: String,
    pub family: String,
    pub kind: String,
    pub created: String,
    pub active: bool,
    pub customers: String,
    pub converged: String,
    pub sufficiency: String,
    pub metrics: String,
    /// Whether it can be activated at all (a bandit record cannot).
    pub activatable: bool,
}

#[derive(Template)]
#[template(path = "ui/models.html")]
struct ModelsPage {
    page: Page,
    versions: Vec<VersionRow>,
    may_activate: bool,
}

fn row(v: &ModelVersion) -> VersionRow {
    let e = models_cli::list_entry(v);
    let sufficiency = match e.pointer("/sufficiency/ok").and_then(Value::as_bool) {
        Some(true) => "ok".to_string(),
        Some(false) => format!(
            "not met: {}",
            e.pointer("/sufficiency/reason").and_then(Value::as_str).unwrap_or("insufficient data")
        ),
        None => "-".into(),
    };
    let mut metrics = Vec::new();
    if let Some(reason) = e["misfit"].as_str() {
        metrics.push(format!("misfit: {reason}"));
    }
    if let Some(auc) = e["holdout_auc"].as_object() {
        metrics.extend(
            auc.iter().filter_map(|(head, a)| a.as_f64().map(|a| format!("holdout AUC {head} {a:.3}"))),
        );
    }
    if let Some(q) = e["lift_quality"].as_f64() {
        metrics.push(format!("holdout quality {:.0}%", 100.0 * q));
    }
    VersionRow {
        id: v.id.clone(),
        family: v.family.clone(),
        kind: v.kind().to_string(),
        created: super::fmt_ms(v.created_at_ms),
        active: v.active,
        customers: e["customers"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
        converged: match e["converged"].as_bool() {
            Some(true) => "yes".into(),
            Some(false) => "no".into(),
            None => "-".into(),
        },
        sufficiency,
        metrics: metrics.join("; "),
        activatable: v.family != nudge_decide::families::BANDIT,
    }
}

/// `GET /ui/models`: every version, newest first.
pub async fn list(State(ui): State<Arc<Ui>>, signed: Signed) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadReports).await {
        return r;
    }
    let versions = match ui.shared.store.model_versions().await {
        Ok(v) => v,
        Err(e) => return store_failed(&signed, e),
    };
    let page = ModelsPage {
        page: signed.page("Models", "models"),
        versions: versions.iter().map(row).collect(),
        may_activate: signed.may(Permission::Models),
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "ui/model.html")]
struct ModelPage {
    page: Page,
    v: VersionRow,
    body: String,
    plot: bool,
    may_activate: bool,
}

async fn find(ui: &Ui, signed: &Signed, id: &str) -> Result<ModelVersion, Response> {
    match ui.shared.store.model_versions().await {
        Ok(vs) => vs.into_iter().find(|v| v.id == id).ok_or_else(|| {
            problem(signed, StatusCode::NOT_FOUND, "No such model version", format!("No model version {id}."))
        }),
        Err(e) => Err(store_failed(signed, e)),
    }
}

/// The fit report of a BTYD version with something to plot.
fn plottable(v: &ModelVersion) -> Option<VersionBody> {
    let body: VersionBody = serde_json::from_value(v.body.clone()).ok()?;
    (body.tracking.is_some() || !body.diagnostics.is_empty()).then_some(body)
}

/// `GET /ui/models/{id}`: the version's metrics (its registry body) and its holdout plot.
pub async fn detail(State(ui): State<Arc<Ui>>, signed: Signed, Path(id): Path<String>) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadReports).await {
        return r;
    }
    let v = match find(&ui, &signed, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let page = ModelPage {
        page: signed.page(format!("Model version {id}"), "models"),
        plot: plottable(&v).is_some(),
        body: serde_json::to_string_pretty(&v.body).unwrap_or_default(),
        v: row(&v),
        may_activate: signed.may(Permission::Models),
    };
    render(StatusCode::OK, &page)
}

/// `GET /ui/models/{id}/plot.svg`: the holdout report's charts (tracking, frequency, calibration).
pub async fn plot(State(ui): State<Arc<Ui>>, signed: Signed, Path(id): Path<String>) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadReports).await {
        return r;
    }
    let v = match find(&ui, &signed, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match plottable(&v) {
        Some(body) => svg_response(crate::model_report::svg(&v.id, &body)),
        None => problem(
            &signed,
            StatusCode::NOT_FOUND,
            "No plot",
            format!("Model version {id} has nothing to plot."),
        ),
    }
}

/// `POST /ui/models/{id}/activate` (CSRF token; `Models`; `force=on` activates a version that failed its
/// checks).
pub async fn activate(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    Path(id): Path<String>,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = fields(form);
    if let Err(r) = signed.authorize_form(&ui, &form, Permission::Models).await {
        return r;
    }
    let force = form.get("force").is_some_and(|f| f == "on" || f == "true");
    let (status, message) = match models_cli::activate(&*ui.shared.store, &id, force).await {
        Ok(Activation::AlreadyActive) => (StatusCode::OK, format!("Model version {id} is already active.")),
        Ok(Activation::Activated { family, previous }) => (
            StatusCode::OK,
            match previous {
                Some(p) => format!("Model version {id} ({family}) is active, replacing {p}."),
                None => format!("Model version {id} ({family}) is active."),
            },
        ),
        Err(e) => (StatusCode::CONFLICT, format!("{e:#}")),
    };
    signed.audit_change(&ui, Permission::Models, status).await;
    signed.done(&ui, message, "/ui/models")
}
