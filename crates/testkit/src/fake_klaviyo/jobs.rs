//! Bulk profile import jobs as the fake runs them: a job accepted by `POST /api/profile-bulk-import-jobs`
//! stays `queued` for the configured delay, is `processing` for the same delay again, and then its
//! profiles are upserted into the store exactly as profile-import would (`complete`). Jobs advance lazily,
//! whenever the fake handles a request or a test reads its state, so no timer task is needed.
//!
//! Per-profile failures are injected by email ([`super::FakeKlaviyoHandle::fail_bulk_email`]); a failed
//! profile is not stored and becomes an `import-error` resource (`code`, `title`, `detail`,
//! `source.pointer` to the profile in the job, `original_payload` = the profile as sent), as Klaviyo's
//! `GetImportErrorResponseCollection` describes. A profile whose identifiers name two stored profiles
//! fails the same way. A job marked for cancellation goes from `queued` to `cancelled` without storing
//! anything.

use super::store::Store;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

/// Where a bulk import job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkJobStatus {
    Queued,
    Processing,
    Complete,
    Cancelled,
}

impl BulkJobStatus {
    /// The `status` attribute as Klaviyo spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkJobStatus::Queued => "queued",
            BulkJobStatus::Processing => "processing",
            BulkJobStatus::Complete => "complete",
            BulkJobStatus::Cancelled => "cancelled",
        }
    }
}

/// What a test can see of one bulk import job.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkJobInfo {
    pub id: String,
    pub status: BulkJobStatus,
    /// Profiles the job carried.
    pub total_count: usize,
    /// Profiles stored.
    pub completed_count: usize,
    /// Profiles that failed (each with an import error).
    pub failed_count: usize,
    /// Lists the job adds its profiles to.
    pub lists: Vec<String>,
}

pub(crate) struct Job {
    pub(crate) info: BulkJobInfo,
    created: Instant,
    created_at: OffsetDateTime,
    started_at: Option<OffsetDateTime>,
    completed_at: Option<OffsetDateTime>,
    /// The profile resources as sent; emptied once processed.
    profiles: Vec<Value>,
    cancel: bool,
    /// `import-error` resources, in profile order.
    pub(crate) errors: Vec<Value>,
}

impl Job {
    pub(crate) fn new(profiles: Vec<Value>, lists: Vec<String>, cancel: bool, now: OffsetDateTime) -> Self {
        let hex = uuid::Uuid::now_v7().simple().to_string().to_uppercase();
        Job {
            info: BulkJobInfo {
                id: format!("01{}", &hex[..24]),
                status: BulkJobStatus::Queued,
                total_count: profiles.len(),
                completed_count: 0,
                failed_count: 0,
                lists,
            },
            created: Instant::now(),
            created_at: now,
            started_at: None,
            completed_at: None,
            profiles,
            cancel,
            errors: Vec::new(),
        }
    }

    /// Moves the job on by the time passed since it was created: `queued` for `delay`, `processing` for
    /// another `delay`, then processed.
    pub(crate) fn advance(
        &mut self,
        store: &mut Store,
        failing_emails: &HashSet<String>,
        delay: Duration,
        now: OffsetDateTime,
    ) {
        let elapsed = self.created.elapsed();
        if self.info.status == BulkJobStatus::Queued && elapsed >= delay {
            if self.cancel {
                self.info.status = BulkJobStatus::Cancelled;
                self.completed_at = Some(now);
                self.profiles.clear();
                return;
            }
            self.info.status = BulkJobStatus::Processing;
            self.started_at = Some(now);
        }
        if self.info.status == BulkJobStatus::Processing && elapsed >= delay * 2 {
            self.process(store, failing_emails, now);
            self.info.status = BulkJobStatus::Complete;
            self.completed_at = Some(now);
        }
    }

    fn process(&mut self, store: &mut Store, failing_emails: &HashSet<String>, now: OffsetDateTime) {
        let profiles = std::mem::take(&mut self.profiles);
        for (i, profile) in profiles.into_iter().enumerate() {
            let attrs = profile.get("attributes").and_then(Value::as_object).cloned().unwrap_or_default();
            let email = attrs.get("email").and_then(Value::as_str).map(|e| e.trim().to_lowercase());
            let pointer = format!("/data/attributes/profiles/data/{i}");
            if email.as_ref().is_some_and(|e| failing_emails.contains(e)) {
                self.fail(
                    "invalid",
                    "Invalid input.",
                    "This profile could not be imported: the email address was refused.",
                    format!("{pointer}/attributes/email"),
                    profile,
                );
                continue;
            }
            let id = profile.get("id").and_then(Value::as_str);
            match store.upsert_profile(id, &attrs, now) {
                Ok((_, stored)) => {
                    for list in &self.info.lists {
                        store.add_to_list(list, &[stored.id.as_str()]);
                    }
                    self.info.completed_count += 1;
                }
                Err(_) => self.fail(
                    "duplicate_profile",
                    "Conflict.",
                    "The identifiers given belong to different profiles.",
                    format!("{pointer}/attributes"),
                    profile,
                ),
            }
        }
    }

    fn fail(&mut self, code: &str, title: &str, detail: &str, pointer: String, original: Value) {
        self.info.failed_count += 1;
        self.errors.push(json!({
            "type": "import-error",
            "id": uuid::Uuid::new_v4().to_string(),
            "attributes": {
                "code": code,
                "title": title,
                "detail": detail,
                "source": {"pointer": pointer},
                "original_payload": original,
            }
        }));
    }

    /// The `profile-bulk-import-job` resource document.
    pub(crate) fn resource(&self, base: &str) -> Value {
        let fmt = |t: Option<OffsetDateTime>| {
            t.and_then(|t| t.format(&Rfc3339).ok()).map_or(Value::Null, Value::String)
        };
        let id = &self.info.id;
        let this = format!("{base}/api/profile-bulk-import-jobs/{id}");
        let lists: Vec<Value> = self.info.lists.iter().map(|l| json!({"type": "list", "id": l})).collect();
        json!({
            "data": {
                "type": "profile-bulk-import-job",
                "id": id,
                "attributes": {
                    "status": self.info.status.as_str(),
                    "created_at": fmt(Some(self.created_at)),
                    "total_count": self.info.total_count,
                    "completed_count": self.info.completed_count,
                    "failed_count": self.info.failed_count,
                    "started_at": fmt(self.started_at),
                    "completed_at": fmt(self.completed_at),
                    "expires_at": fmt(Some(self.created_at + time::Duration::days(7))),
                },
                "relationships": {
                    "lists": {"data": lists},
                    "import-errors": {"links": {"related": format!("{this}/import-errors")}},
                },
                "links": {"self": this},
            },
            "links": {"self": this},
        })
    }

    /// One page of the job's import errors, from `offset`, at most `size`; `links.next` when more follow.
    pub(crate) fn errors_page(&self, base: &str, offset: usize, size: usize) -> Value {
        let path = format!("{base}/api/profile-bulk-import-jobs/{}/import-errors", self.info.id);
        let page: Vec<Value> = self.errors.iter().skip(offset).take(size).cloned().collect();
        let mut links = json!({"self": format!("{path}?page[size]={size}&page[cursor]={offset}")});
        if offset + size < self.errors.len() {
            links["next"] = Value::String(format!("{path}?page[size]={size}&page[cursor]={}", offset + size));
        }
        json!({"data": page, "links": links})
    }
}
