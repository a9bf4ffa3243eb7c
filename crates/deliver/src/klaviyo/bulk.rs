//! Batch runs push profiles through Klaviyo's bulk profile import jobs
//! ([`crate::Destination::push_profiles`]) instead of one profile-import call per customer.
//!
//! One push goes like this:
//!
//! 1. Each [`Action::UpsertProfile`] is checked as for profile-import and must be at most 100 KB
//!    serialised; one that fails is `Rejected` alone, without a request. Other kinds of action are sent
//!    the usual way ([`crate::Destination::deliver`]).
//! 2. The profiles are packed, in order, into as few jobs as the limits allow (`bulk_size`, at most
//!    10,000 profiles, and at most 5 MB per job) and each job is created with
//!    `POST /api/profile-bulk-import-jobs` after the job-creation rate limiter (`bulk_jobs_limit`).
//!    A failed creation settles that job's records: 429, 5xx, timeouts and connection failures are
//!    `Retry` (a 429 also stops the creation of the push's further jobs, which come back as `Retry`
//!    with the same wait, unsent); any other 4xx is `Rejected` with Klaviyo's JSON:API detail.
//! 3. Every created job is polled with `GET /api/profile-bulk-import-jobs/{id}` (after the read rate
//!    limiter, `bulk_job_reads_limit`): first after `bulk_poll_interval`, then each wait half as long
//!    again up to `bulk_poll_max_interval`, never sooner than a 429's `Retry-After`, until its `status` is
//!    `complete` or `cancelled`. 5xx, timeouts and 429s while polling only delay the next poll.
//! 4. `complete` with `failed_count = 0`: every record is `Delivered`. With failures, the job's
//!    `/import-errors` are read (100 per page, following `links.next`, only ever on the configured host)
//!    and each import error is matched back to its record by the `external_id` (nudge's customer id) or
//!    else the email in its `original_payload`, or else by the index in its `source.pointer`
//!    (`/data/attributes/profiles/data/{n}…`); those records are `Rejected` with Klaviyo's code and
//!    detail, the rest `Delivered`. Should some failures not be matched to a record, the records not
//!    named are `Retry` rather than claimed delivered.
//! 5. `cancelled`: every record of the job is `Retry`.
//! 6. No answer within `bulk_poll_timeout` of the push's jobs being created (the bound covers all of
//!    them), a refused poll (4xx) or unreadable import errors: the job's records are `Retry` with the
//!    reason.
//!
//! Giving records back as `Retry` while their job may still finish is safe: a bulk import is an upsert
//! by identifiers, like profile-import, so importing the same profiles again changes nothing more.

use super::client::{KlaviyoClient, error_object_text, invalid_text};
use super::request::{self, BulkProfile, Endpoint, KlaviyoRequest};
use crate::{Destination, Outcome};
use nudge_model::Action;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// How much of a job resource answer is read; it is a few hundred bytes.
const MAX_JOB_BODY_BYTES: usize = 1024 * 1024;
/// How much of one page of import errors is read: 100 errors, each carrying its profile as sent (at
/// most 100 KB).
const MAX_ERRORS_PAGE_BYTES: usize = 12 * 1024 * 1024;
/// Most pages of import errors read for one job: 10,000 errors at 100 a page, and some slack.
const MAX_ERROR_PAGES: usize = 110;

fn create_label() -> String {
    Endpoint::BulkImportJobs.label().to_string()
}

/// How a job that was created ended.
enum JobEnd {
    Complete { failed: u64 },
    Cancelled,
}

impl KlaviyoClient {
    /// [`crate::Destination::push_profiles`] for Klaviyo; see the module documentation.
    pub(super) async fn push_profiles_in_jobs(&self, actions: &[Action]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; actions.len()];
        let mut profiles: Vec<(usize, BulkProfile)> = Vec::new();
        for (i, action) in actions.iter().enumerate() {
            match action {
                Action::UpsertProfile { .. } => match request::bulk_profile(action) {
                    Ok(profile) => profiles.push((i, profile)),
                    Err(e) => {
                        outcomes[i] = Some(Outcome::Rejected {
                            endpoint: create_label(),
                            status: None,
                            error: invalid_text(e),
                        })
                    }
                },
                _ => outcomes[i] = Some(self.deliver(action).await),
            }
        }

        let mut created: Vec<(String, u16, Vec<usize>)> = Vec::new();
        let mut throttled: Option<Option<Duration>> = None;
        for job in request::bulk_import_jobs(&profiles, self.config().bulk_size) {
            if let Some(retry_after) = throttled {
                let held = Outcome::Retry {
                    endpoint: create_label(),
                    status: None,
                    error: "not sent: Klaviyo throttled an earlier bulk import job of this push".into(),
                    retry_after,
                };
                settle_all(&mut outcomes, &job.records, &held);
                continue;
            }
            match self.create_job(job.request).await {
                Ok((id, status)) => {
                    tracing::info!(job = %id, profiles = job.records.len(), "klaviyo bulk import job created");
                    created.push((id, status, job.records));
                }
                Err(failed) => {
                    if let Outcome::Retry { status: Some(429), retry_after, .. } = &failed {
                        throttled = Some(*retry_after);
                    }
                    settle_all(&mut outcomes, &job.records, &failed);
                }
            }
        }

        let by_record: HashMap<usize, &BulkProfile> = profiles.iter().map(|(i, p)| (*i, p)).collect();
        let deadline = Instant::now() + self.config().bulk_poll_timeout;
        for (id, status, records) in created {
            let settled = self.settle_job(&id, status, &records, &by_record, deadline).await;
            for (i, outcome) in records.iter().zip(settled) {
                outcomes[*i] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Outcome::Retry {
                    endpoint: create_label(),
                    status: None,
                    error: "the record was not settled by its bulk import job".into(),
                    retry_after: None,
                })
            })
            .collect()
    }

    /// Creates one job; its id and the answer's status, or the outcome for all of its records.
    async fn create_job(&self, req: KlaviyoRequest) -> Result<(String, u16), Outcome> {
        match self.send(req, MAX_JOB_BODY_BYTES).await {
            (Outcome::Delivered { status, .. }, body) => match job_of(&body) {
                Some(job) => Ok((job.id, status)),
                None => Err(Outcome::Retry {
                    endpoint: create_label(),
                    status: Some(status),
                    error: "Klaviyo accepted the bulk import job but answered without the job resource \
                            (data.id); importing the profiles again is safe"
                        .into(),
                    retry_after: None,
                }),
            },
            (failed, _) => Err(failed),
        }
    }

    /// Waits for job `id` and settles its `records` (indices into the push, in job order).
    async fn settle_job(
        &self,
        id: &str,
        created_status: u16,
        records: &[usize],
        profiles: &HashMap<usize, &BulkProfile>,
        deadline: Instant,
    ) -> Vec<Outcome> {
        let retry_all = |error: String| {
            let outcome = Outcome::Retry { endpoint: create_label(), status: None, error, retry_after: None };
            vec![outcome; records.len()]
        };
        let delivered = Outcome::Delivered { endpoint: create_label(), status: created_status };
        let failed = match self.wait_for(id, deadline).await {
            Err(reason) => return retry_all(reason),
            Ok(JobEnd::Cancelled) => {
                tracing::warn!(job = %id, "klaviyo cancelled a bulk import job");
                return retry_all(format!(
                    "Klaviyo cancelled bulk import job {id}; importing its profiles again is safe"
                ));
            }
            Ok(JobEnd::Complete { failed: 0 }) => return vec![delivered; records.len()],
            Ok(JobEnd::Complete { failed }) => failed,
        };
        tracing::info!(job = %id, failed, "klaviyo bulk import job finished with failed profiles");
        let errors = match self.import_errors(id, deadline).await {
            Ok(errors) => errors,
            Err(reason) => return retry_all(reason),
        };

        let mut by_external_id = HashMap::new();
        let mut by_email = HashMap::new();
        for (position, record) in records.iter().enumerate() {
            if let Some(profile) = profiles.get(record) {
                by_external_id.entry(profile.external_id.as_str()).or_insert(position);
                if let Some(email) = &profile.email {
                    by_email.entry(email.as_str()).or_insert(position);
                }
            }
        }
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut unmatched = 0usize;
        for error in &errors {
            let position = error
                .external_id
                .as_deref()
                .and_then(|e| by_external_id.get(e))
                .or_else(|| error.email.as_deref().and_then(|e| by_email.get(e.to_lowercase().as_str())))
                .copied()
                .or(error.index.filter(|i| *i < records.len()));
            match position {
                Some(position) => {
                    outcomes[position] = Some(Outcome::Rejected {
                        endpoint: create_label(),
                        status: Some(created_status),
                        error: format!("bulk import job {id}: {}", error.text),
                    })
                }
                None => unmatched += 1,
            }
        }
        let rejected = outcomes.iter().filter(|o| o.is_some()).count();
        let rest = if unmatched > 0 || (rejected as u64) < failed {
            tracing::warn!(job = %id, failed, rejected, unmatched, "klaviyo import errors not matched to records");
            Outcome::Retry {
                endpoint: create_label(),
                status: None,
                error: format!(
                    "bulk import job {id} reported {failed} failed profiles but only {rejected} could be matched \
                     to records, so this one may have failed too; importing it again is safe"
                ),
                retry_after: None,
            }
        } else {
            delivered
        };
        outcomes.into_iter().map(|o| o.unwrap_or_else(|| rest.clone())).collect()
    }

    /// Polls job `id` until it is `complete` or `cancelled`, or gives the reason for giving up.
    async fn wait_for(&self, id: &str, deadline: Instant) -> Result<JobEnd, String> {
        let config = self.config();
        let mut wait = config.bulk_poll_interval;
        let mut throttled = false;
        let mut last = "no answer yet".to_string();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || (throttled && wait > remaining) {
                return Err(format!(
                    "bulk import job {id} did not finish within {:?} (last poll: {last}); its profiles are \
                     upserts, so importing them again is safe",
                    config.bulk_poll_timeout
                ));
            }
            tokio::time::sleep(wait.min(remaining)).await;
            let req = request::bulk_job_status(id).map_err(invalid_text)?;
            let next = wait.mul_f64(1.5).min(config.bulk_poll_max_interval).max(config.bulk_poll_interval);
            throttled = false;
            match self.send(req, MAX_JOB_BODY_BYTES).await {
                (Outcome::Delivered { .. }, body) => {
                    match job_of(&body) {
                        Some(job) if job.id == id && job.attributes.status == "complete" => {
                            return Ok(JobEnd::Complete { failed: job.attributes.failed_count.unwrap_or(0) });
                        }
                        Some(job) if job.id == id && job.attributes.status == "cancelled" => {
                            return Ok(JobEnd::Cancelled);
                        }
                        Some(job) => last = format!("status {}", job.attributes.status),
                        None => last = "an answer without the job resource".into(),
                    }
                    wait = next;
                }
                (Outcome::Retry { error, retry_after, .. }, _) => {
                    last = error;
                    throttled = retry_after.is_some();
                    wait = retry_after.map_or(next, |floor| floor.max(next));
                }
                (Outcome::Rejected { error, .. }, _) => {
                    return Err(format!(
                        "polling bulk import job {id} was refused ({error}); importing its profiles again is safe"
                    ));
                }
            }
        }
    }

    /// Every import error of job `id`, following `links.next`.
    async fn import_errors(&self, id: &str, deadline: Instant) -> Result<Vec<ImportError>, String> {
        let config = self.config();
        let mut req = request::bulk_job_errors(id).map_err(invalid_text)?;
        let mut errors = Vec::new();
        let mut pages = 0;
        let mut wait = config.bulk_poll_interval;
        let unreadable = |why: String| {
            format!(
                "the import errors of bulk import job {id} could not be read ({why}); importing again is safe"
            )
        };
        loop {
            match self.send(req.clone(), MAX_ERRORS_PAGE_BYTES).await {
                (Outcome::Delivered { status, .. }, body) => {
                    let page = serde_json::from_slice::<ErrorsPage>(&body).map_err(|e| {
                        unreadable(format!("HTTP {status}: not an import-error collection: {e}"))
                    })?;
                    errors.extend(page.data.iter().map(ImportError::from));
                    pages += 1;
                    let Some(next) = page.links.and_then(|l| l.next).filter(|n| !n.is_empty()) else {
                        return Ok(errors);
                    };
                    if pages >= MAX_ERROR_PAGES {
                        return Err(unreadable(format!("more than {MAX_ERROR_PAGES} pages")));
                    }
                    req = self.next_page(&next).ok_or_else(|| {
                        unreadable(
                            "links.next points away from the configured Klaviyo host; not followed".into(),
                        )
                    })?;
                }
                (Outcome::Retry { error, retry_after, .. }, _) => {
                    let pause = retry_after.map_or(wait, |floor| floor.max(wait));
                    if Instant::now() + pause > deadline {
                        return Err(unreadable(error));
                    }
                    tokio::time::sleep(pause).await;
                    wait = wait.mul_f64(1.5).min(config.bulk_poll_max_interval);
                }
                (Outcome::Rejected { error, .. }, _) => return Err(unreadable(error)),
            }
        }
    }

    /// The request for a `links.next` URL, when it is on the configured host (the key goes with it).
    fn next_page(&self, next: &str) -> Option<KlaviyoRequest> {
        let path = match next.strip_prefix(self.base_url()) {
            Some(rest) => rest,
            None if next.starts_with('/') && !next.starts_with("//") => next,
            None => return None,
        };
        let ok = path.starts_with("/api/profile-bulk-import-jobs/")
            && !path.contains("..")
            && !path.contains('#')
            && path.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| KlaviyoRequest {
            endpoint: Endpoint::BulkImportErrors,
            path: path.to_string(),
            body: Vec::new(),
        })
    }
}

fn settle_all(outcomes: &mut [Option<Outcome>], records: &[usize], outcome: &Outcome) {
    for &i in records {
        outcomes[i] = Some(outcome.clone());
    }
}

/// A `profile-bulk-import-job` resource document; unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct JobDocument {
    data: JobResource,
}

#[derive(Debug, Deserialize)]
struct JobResource {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    attributes: JobAttributes,
}

#[derive(Debug, Deserialize)]
struct JobAttributes {
    status: String,
    #[serde(default)]
    failed_count: Option<u64>,
}

fn job_of(body: &[u8]) -> Option<JobResource> {
    let doc: JobDocument = serde_json::from_slice(body).ok()?;
    (doc.data.kind == "profile-bulk-import-job" && !doc.data.id.trim().is_empty()).then_some(doc.data)
}

/// One page of `GetImportErrorResponseCollection`.
#[derive(Debug, Deserialize)]
struct ErrorsPage {
    data: Vec<ErrorResource>,
    #[serde(default)]
    links: Option<PageLinks>,
}

#[derive(Debug, Deserialize)]
struct PageLinks {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorResource {
    #[serde(default)]
    attributes: Value,
}

/// An import error reduced to what settles a record.
#[derive(Debug, Clone, PartialEq)]
struct ImportError {
    external_id: Option<String>,
    email: Option<String>,
    /// The profile's index in the job, from `source.pointer`.
    index: Option<usize>,
    /// Code, detail and pointer, as for any Klaviyo error.
    text: String,
}

impl From<&ErrorResource> for ImportError {
    fn from(resource: &ErrorResource) -> Self {
        let attrs = &resource.attributes;
        let payload = attrs.get("original_payload").unwrap_or(&Value::Null);
        // The payload is the profile as sent ({"type","attributes"}); its attributes alone, or wrapped in
        // `data`, are accepted too.
        let identifier = |key: &str| {
            [format!("/attributes/{key}"), format!("/{key}"), format!("/data/attributes/{key}")]
                .iter()
                .find_map(|p| payload.pointer(p).and_then(Value::as_str))
                .map(str::to_string)
        };
        let pointer = attrs.pointer("/source/pointer").and_then(Value::as_str);
        let index = pointer
            .and_then(|p| p.strip_prefix("/data/attributes/profiles/data/"))
            .and_then(|rest| rest.split('/').next())
            .and_then(|n| n.parse().ok());
        let text = error_object_text(attrs);
        ImportError { external_id: identifier("external_id"), email: identifier("email"), index, text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn import_error(attributes: Value) -> ImportError {
        ImportError::from(&ErrorResource { attributes })
    }

    #[test]
    fn an_import_error_names_its_profile_and_keeps_the_detail() {
        let e = import_error(json!({
            "code": "invalid", "title": "Invalid input.", "detail": "The email address was refused.",
            "source": {"pointer": "/data/attributes/profiles/data/7/attributes/email"},
            "original_payload": {"type": "profile", "attributes": {"email": "Lena@Example.org", "external_id": "shopify:1"}},
        }));
        assert_eq!(e.external_id.as_deref(), Some("shopify:1"));
        assert_eq!(e.email.as_deref(), Some("Lena@Example.org"));
        assert_eq!(e.index, Some(7));
        assert_eq!(
            e.text,
            "invalid: The email address was refused. (at /data/attributes/profiles/data/7/attributes/email)"
        );
        let bare = import_error(json!({"code": "x", "title": "T", "detail": "D", "source": {},
            "original_payload": {"email": "a@b.c"}}));
        assert_eq!((bare.email.as_deref(), bare.external_id, bare.index), (Some("a@b.c"), None, None));
        let nothing =
            import_error(json!({"detail": "D", "source": {"pointer": "/data"}, "original_payload": null}));
        assert_eq!((nothing.email, nothing.external_id, nothing.index), (None, None, None));
        assert_eq!(nothing.text, "D (at /data)");
    }

    #[test]
    fn the_job_resource_is_read_and_unknown_fields_ignored() {
        let body =
            br#"{"data":{"type":"profile-bulk-import-job","id":"01JOB","attributes":{"status":"complete",
            "failed_count":2,"total_count":9,"new_field":1},"links":{"self":"x"}},"links":{}}"#;
        let job = job_of(body).unwrap();
        assert_eq!(
            (job.id.as_str(), job.attributes.status.as_str(), job.attributes.failed_count),
            ("01JOB", "complete", Some(2))
        );
        let no_count = br#"{"data":{"type":"profile-bulk-import-job","id":"01JOB","attributes":{"status":"queued","failed_count":null}}}"#;
        assert_eq!(job_of(no_count).unwrap().attributes.failed_count, None);
        assert!(
            job_of(br#"{"data":{"type":"profile","id":"01JOB","attributes":{"status":"complete"}}}"#)
                .is_none()
        );
        assert!(job_of(b"").is_none());
    }
}
