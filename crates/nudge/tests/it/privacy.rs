//! Erasure end to end: Shopify webhooks → profiles pushed to the Klaviyo and Braze fakes →
//! `customers/redact` → the erasure completes → neither the data directory (both SQLite files with their
//! WAL and SHM) nor nudge's log output holds the person's email, name, phone or platform id, and neither
//! fake holds the profile; another customer is untouched. Also: a half-done erasure resumes after a
//! restart, and the API's export holds only the person asked for.

use crate::*;
use nudge_ingest::shopify::fixtures::{self, CustomerFixture, LineItemFixture, OrderFixture};
use nudge_store::{ErasureStatus, NewPrivacyJob, PrivacyJobKind};
use nudge_testkit::shopify_sender::Delivery;
use nudge_testkit::{FakeBraze, FakeBrazeConfig};
use std::io::Write;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

const BRAZE_KEY: &str = "braze-privacy-key-0001";
/// Distinctive values, so a byte search cannot hit them by chance.
const PERSON_ID: u64 = 7_364_019_283_746;
const EMAIL: &str = "zelda.quixote-erase@example.org";
const FIRST: &str = "Zeldaqx";
const LAST: &str = "Quixoterra";
const PHONE: &str = "+4915112345678";
const OTHER_ID: u64 = 7_364_019_283_999;

fn order(id: u64, cust: u64, email: &str) -> OrderFixture {
    let mut c =
        CustomerFixture::new(cust, Some(email), OffsetDateTime::now_utc()).consent(Some("subscribed"));
    if cust == PERSON_ID {
        c = c.name(Some(FIRST), Some(LAST)).phone(PHONE);
    }
    let mut o = OrderFixture::new(id, OffsetDateTime::now_utc()).customer(c).line_item(LineItemFixture::new(
        9_100_000_001,
        "Organic Tee",
        1,
        "39.95",
    ));
    o.buyer_accepts_marketing = true;
    o
}

fn flows() -> Vec<nudge_policy::flows::FlowSpec> {
    serde_json::from_str(
        r#"[{"name":"sync","trigger":"state_changed",
             "actions":[{"type":"sync_profile","destination":"klaviyo"},{"type":"sync_profile","destination":"braze"}]}]"#,
    )
    .unwrap()
}

/// Log output, collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacted_customer_is_gone_from_nudge_its_logs_and_the_destinations() {
    // nextest runs each test in a process of its own: this subscriber sees all of nudge's logs.
    let logs = Captured::default();
    let writer = logs.clone();
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer().with_writer(move || writer.clone()).with_ansi(false).with_filter(
            tracing_subscriber::filter::filter_fn(|m| {
                m.target().starts_with("nudge")
                    && !m.target().starts_with("nudge_testkit")
                    && *m.level() <= tracing::Level::DEBUG
            }),
        ),
    );
    let _ = tracing::subscriber::set_global_default(subscriber);

    nudge_testkit::ensure_crypto_provider();
    let braze = FakeBraze::start(FakeBrazeConfig::new(BRAZE_KEY)).await.unwrap();
    let braze_url = braze.base_url();
    let t = spawn_app(|c| {
        c.destinations.braze = Some(nudge_deliver::BrazeConfig::new(BRAZE_KEY, braze_url).allowing_private());
        c.flows = Some(flows());
    })
    .await;
    let person = format!("shopify:{PERSON_ID}");
    let other = format!("shopify:{OTHER_ID}");
    for (i, (cust, email)) in
        [(PERSON_ID, EMAIL), (OTHER_ID, "other-kept@example.org")].into_iter().enumerate()
    {
        let r = t
            .sender
            .send(&Delivery::new("orders/create", order(5_550_000 + i as u64, cust, email).to_bytes()))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(
        eventually(20, async || t.fake.profile_by_email(EMAIL).is_some() && braze.user(&person).is_some())
            .await,
        "both tools hold the person"
    );
    assert!(eventually(20, async || t.app.store().backlog().await.unwrap() == (0, 0)).await);

    // The export holds the person and no one else, and no secret.
    let token = api_token(&t, "privacy-officer", nudge::access::Role::Compliance).await;
    let export = api_get(&t, &format!("/api/privacy/export/{person}"), &token).await;
    assert_eq!(export.status(), 200);
    let text = export.text().await.unwrap();
    assert!(text.contains(EMAIL) && text.contains(&person), "the export holds the person");
    assert!(!text.contains("other-kept@example.org") && !text.contains(&other), "and no one else");
    for secret in [KEY, BRAZE_KEY, SECRET] {
        assert!(!text.contains(secret), "no secret in the export");
    }
    let viewer = api_token(&t, "viewer", nudge::access::Role::Viewer).await;
    assert_eq!(api_get(&t, &format!("/api/privacy/export/{person}"), &viewer).await.status(), 403);

    // Shopify asks for the erasure.
    let body = fixtures::customers_redact_json(fixtures::DEMO_SHOP, PERSON_ID, EMAIL, &[5_550_000]);
    let r = t.sender.send(&Delivery::new("customers/redact", fixtures::to_bytes(&body))).await.unwrap();
    assert_eq!(r.status, 200, "acknowledged at once");
    let store = t.app.store().clone();
    assert!(
        eventually(30, async || {
            let jobs = store.privacy_jobs(false, None).await.unwrap();
            !jobs.is_empty() && jobs.iter().all(|j| j.done)
        })
        .await,
        "the erasure finishes: {:?}",
        store.privacy_jobs(false, None).await.unwrap()
    );
    let job = store.privacy_jobs(false, None).await.unwrap().remove(0);
    assert_eq!(job.kind, PrivacyJobKind::Erase);
    let by: Vec<(&str, ErasureStatus)> =
        job.destinations.iter().map(|d| (d.destination.as_str(), d.status)).collect();
    assert_eq!(by, [("braze", ErasureStatus::Done), ("klaviyo", ErasureStatus::Done)], "{job:?}");
    assert!(t.fake.profile_by_email(EMAIL).is_none(), "Klaviyo no longer holds the person");
    assert!(braze.user(&person).is_none(), "Braze no longer holds the person");
    assert!(t.fake.profile_by_email("other-kept@example.org").is_some() && braze.user(&other).is_some());
    assert_eq!(
        store.load_states(&[other.parse().unwrap()]).await.unwrap().len(),
        1,
        "the other customer stays"
    );
    let status = api_get(&t, &format!("/api/privacy/status?customer={person}"), &token).await;
    let status: serde_json::Value = status.json().await.unwrap();
    assert_eq!(status["jobs"][0]["destinations"][0]["status"], "done");

    let dir = t._dir.path().to_path_buf();
    t.app.shutdown().await;
    let id_text = PERSON_ID.to_string();
    let needles: [&[u8]; 5] =
        [EMAIL.as_bytes(), FIRST.as_bytes(), LAST.as_bytes(), PHONE.as_bytes(), id_text.as_bytes()];
    let all = files(&dir);
    assert!(all.iter().any(|p| p.ends_with("nudge.db")) && all.iter().any(|p| p.ends_with("ingest.db")));
    for f in &all {
        let bytes = std::fs::read(f).unwrap();
        for n in needles {
            assert!(!contains(&bytes, n), "{} still holds `{}`", f.display(), String::from_utf8_lossy(n));
        }
    }
    // The other customer is still there, byte for byte (the search does find what is kept).
    let main = std::fs::read(dir.join("nudge.db")).unwrap();
    assert!(contains(&main, OTHER_ID.to_string().as_bytes()), "the search finds kept data");
    let logged = logs.0.lock().unwrap().clone();
    assert!(!logged.is_empty(), "logs were captured");
    for n in needles {
        assert!(!contains(&logged, n), "the logs hold `{}`", String::from_utf8_lossy(n));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_left_half_done_resumes_after_a_restart() {
    nudge_testkit::ensure_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let braze = FakeBraze::start(FakeBrazeConfig::new(BRAZE_KEY)).await.unwrap();
    let client = nudge_deliver::BrazeClient::new(
        nudge_deliver::BrazeConfig::new(BRAZE_KEY, braze.base_url()).allowing_private(),
    )
    .unwrap();
    let person: nudge_model::CustomerId = "shopify:4242".parse().unwrap();
    let upsert = nudge_model::Action::UpsertProfile {
        customer: person.clone(),
        email: Some("half@example.org".into()),
        first_name: None,
        last_name: None,
        attributes: Default::default(),
    };
    use nudge_deliver::Destination;
    assert!(client.deliver(&upsert).await.is_delivered());
    // The job is recorded (nudge.db erased) and the process dies before anything else happens.
    {
        let mut cfg = nudge::config::Config::from_toml("", &Default::default()).unwrap();
        cfg.storage.data_dir = data.clone();
        let store = nudge::app::open_store(&cfg).await.unwrap();
        store
            .submit_privacy_job(NewPrivacyJob {
                kind: PrivacyJobKind::Erase,
                customers: vec![person.clone()],
                email: Some("half@example.org".into()),
                phone: None,
                pseudonym: "ps_customer_000000000000000000004242".into(),
                reference: None,
                requested_by: "test".into(),
                trace_id: nudge_model::TraceId::new(),
                at_ms: 1,
                destinations: vec!["braze".into()],
            })
            .await
            .unwrap();
    }
    let braze_url = braze.base_url();
    let t = spawn_app(|c| {
        c.storage.data_dir = data.clone();
        c.destinations.braze = Some(nudge_deliver::BrazeConfig::new(BRAZE_KEY, braze_url).allowing_private());
    })
    .await;
    let store = t.app.store().clone();
    assert!(
        eventually(20, async || store.privacy_jobs(true, None).await.unwrap().is_empty()).await,
        "the job resumes and finishes"
    );
    assert!(braze.user(&person.to_string()).is_none(), "the destination's request was made");
    let job = store.privacy_jobs(false, None).await.unwrap().remove(0);
    assert!(job.done && job.log_erased && job.email.is_none());
    t.app.shutdown().await;
}
