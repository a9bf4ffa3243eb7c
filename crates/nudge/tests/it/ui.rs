//! The web console over HTTP, as a browser without JavaScript uses it: sign-in with a token (good, bad,
//! revoked, expired), the session cookie's attributes, every page with seeded data, approving from the
//! console (one push), role checks on forms a page does not show, CSRF and Origin checks, escaping of
//! stored and reflected text, the localhost rule, and the audit records of all of it.

use crate::*;
use nudge::access::Role;
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_model::{AuditStage, TraceId};
use nudge_store::DeadLetterFilter;
use nudge_testkit::fake_klaviyo::FakeMode;
use nudge_testkit::shopify_sender::Delivery;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// A browser: its own cookie jar (the `nudge_session` cookie as the server set it), no redirects
/// followed, so each answer is seen as it is.
struct Browser {
    http: reqwest::Client,
    base: String,
    session: Option<String>,
}

/// One answer, read whole.
struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Option<String>,
    trace: Option<TraceId>,
    body: String,
}

fn form_encode(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

impl Browser {
    fn new(t: &TestApp) -> Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { http, base: t.base.clone(), session: None }
    }

    async fn read(&mut self, resp: reqwest::Response) -> Page {
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let location = header(LOCATION);
        let set_cookie = header(SET_COOKIE);
        let trace =
            header(reqwest::header::HeaderName::from_static("x-nudge-trace-id")).map(|t| t.parse().unwrap());
        if let Some(c) = &set_cookie {
            let value =
                c.split(';').next().unwrap().strip_prefix("nudge_session=").expect("the session cookie");
            self.session = (!value.is_empty()).then(|| value.to_string());
        }
        let status = resp.status();
        Page { status, location, set_cookie, trace, body: resp.text().await.unwrap() }
    }

    fn with_cookie(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.session {
            Some(s) => req.header(COOKIE, format!("nudge_session={s}")),
            None => req,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.with_cookie(self.http.get(format!("{}{path}", self.base)));
        let resp = req.send().await.unwrap();
        self.read(resp).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let req = self
            .with_cookie(self.http.post(format!("{}{path}", self.base)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(fields));
        let resp = req.send().await.unwrap();
        self.read(resp).await
    }

    async fn sign_in(&mut self, token: &str) -> Page {
        let p = self.post("/ui/login", &[("token", token)]).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        assert_eq!(p.location.as_deref(), Some("/ui/"));
        p
    }

    /// The CSRF token a page's forms carry.
    async fn csrf(&mut self) -> String {
        let p = self.get("/ui/").await;
        assert_eq!(p.status, 200, "{}", p.body);
        csrf_of(&p.body)
    }
}

fn csrf_of(body: &str) -> String {
    let at = body.find(r#"name="csrf" value=""#).expect("a form with a CSRF token")
        + r#"name="csrf" value=""#.len();
    body[at..].split('"').next().unwrap().to_string()
}

/// The one script element a page has: the console's own.
const CONSOLE_SCRIPT: &str = r#"<script src="/ui/static/console.js" defer></script>"#;

/// Whether `page` shows `text` HTML-escaped (by name or by number: `&lt;` or `&#60;`).
fn escaped(page: &str, text: &str) -> bool {
    let named = text.replace('<', "&lt;").replace('>', "&gt;");
    let numbered = text.replace('<', "&#60;").replace('>', "&#62;");
    page.contains(&named) || page.contains(&numbered)
}

fn order(id: u64, cust: u64, first_name: &str) -> OrderFixture {
    let c = CustomerFixture::new(cust, Some(&format!("c{cust}@example.org")), OffsetDateTime::now_utc())
        .consent(Some("subscribed"))
        .name(Some(first_name), Some("Berg"));
    let mut o = OrderFixture::new(id, OffsetDateTime::now_utc()).customer(c).line_item(LineItemFixture::new(
        9_100_000_001,
        "Organic Tee",
        1,
        "39.95",
    ));
    o.buyer_accepts_marketing = true;
    o
}

/// A flow in approval mode: every decision waits for a person.
fn approval_flow(metric: &str) -> nudge_policy::flows::FlowSpec {
    serde_json::from_value(serde_json::json!({
        "name": "first_orders", "trigger": "order_placed", "mode": "approval",
        "actions": [{ "type": "track_event", "destination": "klaviyo", "metric": metric }],
    }))
    .unwrap()
}

async fn pending_ids(t: &TestApp) -> Vec<i64> {
    let filter = nudge_store::ApprovalFilter {
        flow: Some("first_orders".into()),
        status: Some(nudge_store::ApprovalStatus::Pending),
        limit: 0,
    };
    t.app.store().list_approvals(filter).await.unwrap().iter().map(|a| a.id).collect()
}

/// Sends orders and waits until each waits for approval; returns their traces.
async fn seed_orders(t: &TestApp, orders: &[(u64, u64, &str)]) -> Vec<TraceId> {
    let mut traces = Vec::new();
    for (id, cust, name) in orders {
        let r =
            t.sender.send(&Delivery::new("orders/create", order(*id, *cust, name).to_bytes())).await.unwrap();
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        traces.push(v["trace_id"].as_str().unwrap().parse().unwrap());
    }
    assert!(eventually(10, async || pending_ids(t).await.len() == orders.len()).await, "items are queued");
    traces
}

/// The audit record a response names.
async fn audited(t: &TestApp, page: &Page) -> serde_json::Value {
    let trace = page.trace.expect("the response names its audit record");
    let view = t.app.store().trace(trace).await.unwrap().expect("the record is stored");
    assert_eq!(view.records.len(), 1);
    assert_eq!(view.records[0].stage, AuditStage::ApiAccess);
    view.records[0].detail.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_takes_a_live_token_and_sessions_end() {
    let t = spawn_app(|_| {}).await;
    let token = api_token(&t, "mia", Role::Marketer).await;
    let mut b = Browser::new(&t);

    // No session: every page sends the browser to the sign-in form.
    for path in ["/ui/", "/ui/approvals", "/ui/audit?trace=x", "/ui/customers"] {
        let p = b.get(path).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(p.location.as_deref(), Some("/ui/login"), "{path}");
    }
    let p = b.post("/ui/approvals/1/approve", &[("csrf", "x")]).await;
    assert_eq!((p.status, p.location.as_deref()), (StatusCode::SEE_OTHER, Some("/ui/login")));
    let form = b.get("/ui/login").await;
    assert_eq!(form.status, 200);
    assert!(
        form.body.contains(r#"<label for="token">"#) && form.body.contains(r#"name="token""#),
        "{}",
        form.body
    );
    assert!(!form.body.contains("Sign out"), "no session, no navigation");

    // A wrong token: the form again, 401, with an error; audited without the token.
    let bad = b.post("/ui/login", &[("token", "nudge_0000")]).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.body.contains("unknown or revoked") && bad.body.contains(r#"name="token""#), "{}", bad.body);
    assert!(bad.set_cookie.is_none() && b.session.is_none());
    let d = audited(&t, &bad).await;
    assert_eq!(
        (d["via"].as_str(), d["outcome"].as_str(), d["status"].as_u64()),
        (Some("ui"), Some("denied"), Some(401))
    );
    assert!(!d.to_string().contains("nudge_0000"), "{d}");

    // The right one: a session cookie with every attribute, then the overview.
    let ok = b.sign_in(&token).await;
    let cookie = ok.set_cookie.clone().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Secure"] {
        assert!(cookie.split("; ").any(|a| a == attr), "{attr} in {cookie}");
    }
    let d = audited(&t, &ok).await;
    assert_eq!(
        (d["outcome"].as_str(), d["token_name"].as_str(), d["role"].as_str()),
        (Some("signed_in"), Some("mia"), Some("marketer"))
    );
    let overview = b.get("/ui/").await;
    assert_eq!(overview.status, 200);
    assert!(
        overview.body.contains("<h1>Overview</h1>") && overview.body.contains("mia (marketer)"),
        "{}",
        overview.body
    );
    let headers = t
        .http
        .get(format!("{}/ui/", t.base))
        .header(COOKIE, format!("nudge_session={}", b.session.clone().unwrap()))
        .send()
        .await
        .unwrap();
    let csp = headers.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");

    // A request outside `/ui` (a browser asks for `/favicon.ico` after every page) is a plain 404 that
    // leaves the session cookie alone.
    let icon = t.http.get(format!("{}/favicon.ico", t.base)).send().await.unwrap();
    assert_eq!(icon.status(), StatusCode::NOT_FOUND);
    assert!(icon.headers().get(SET_COOKIE).is_none(), "{:?}", icon.headers());

    // A made-up session id is no session.
    let mut forged = Browser::new(&t);
    forged.session = Some("0".repeat(64));
    assert_eq!(forged.get("/ui/").await.location.as_deref(), Some("/ui/login"));

    // Sign out: needs the CSRF token; then the cookie is cleared and the session is gone server side.
    let csrf = b.csrf().await;
    let session = b.session.clone();
    assert_eq!(b.post("/ui/logout", &[]).await.status, StatusCode::FORBIDDEN);
    let out = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.location.as_deref()), (StatusCode::SEE_OTHER, Some("/ui/login")));
    assert!(out.set_cookie.as_deref().unwrap().contains("Max-Age=0"));
    assert_eq!(audited(&t, &out).await["outcome"], "signed_out");
    b.session = session;
    assert_eq!(b.get("/ui/").await.location.as_deref(), Some("/ui/login"), "the old cookie no longer works");

    // Revoking the token ends its sessions at the next request.
    b.sign_in(&token).await;
    assert_eq!(b.get("/ui/").await.status, 200);
    t.app.store().revoke_token(nudge_store::TokenRef::Name("mia".into())).await.unwrap();
    assert_eq!(b.get("/ui/").await.location.as_deref(), Some("/ui/login"));
    assert_eq!(b.post("/ui/login", &[("token", &token)]).await.status, StatusCode::UNAUTHORIZED);
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_expires_and_the_secure_flag_is_configurable() {
    let t = spawn_app(|c| {
        c.server.ui_session_idle = nudge::config::HumanDuration(Duration::from_millis(700));
        c.server.ui_secure_cookie = false;
    })
    .await;
    let token = api_token(&t, "vic", Role::Viewer).await;
    let mut b = Browser::new(&t);
    let ok = b.sign_in(&token).await;
    assert!(!ok.set_cookie.unwrap().contains("Secure"));
    // Used within the idle time, it lives on.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(b.get("/ui/").await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let p = b.get("/ui/flows").await;
    assert_eq!((p.status, p.location.as_deref()), (StatusCode::SEE_OTHER, Some("/ui/login")));
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_seeded_data_with_text_escaped() {
    let t = spawn_app(|c| c.flows = Some(vec![approval_flow("First <script>alert(2)</script> order")])).await;
    let traces = seed_orders(&t, &[(7101, 701, "<script>alert(1)</script>"), (7102, 702, "Lena")]).await;
    // The customer's record names them with markup.
    let record = CustomerFixture::new(701, Some("c701@example.org"), OffsetDateTime::now_utc())
        .consent(Some("subscribed"))
        .name(Some("<script>alert(1)</script>"), Some("Berg"));
    let r = t.sender.send(&Delivery::new("customers/update", record.to_bytes())).await.unwrap();
    assert_eq!(r.status, 200);
    let named = async || {
        let s = t.app.store().load_states(&["shopify:701".parse().unwrap()]).await.unwrap();
        s.first().is_some_and(|s| {
            let state = nudge_state::CustomerState::decode(&s.state).unwrap();
            serde_json::to_string(&state).unwrap().contains("alert(1)")
        })
    };
    assert!(eventually(10, named).await, "the name is stored");
    let version = nudge_store::ModelVersion {
        id: "bgnbd-ui-1".into(),
        family: "bgnbd".into(),
        created_at_ms: 1_700_000_000_000,
        active: false,
        body: serde_json::json!({ "customers": 42 }),
    };
    t.app.store().save_model_version(version).await.unwrap();
    let token = api_token(&t, "ada", Role::Admin).await;
    let mut b = Browser::new(&t);
    b.sign_in(&token).await;

    let expect = async |b: &mut Browser, path: &str, needles: &[&str]| {
        let p = b.get(path).await;
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        for n in needles {
            assert!(p.body.contains(n), "{path} shows {n:?}: {}", p.body);
        }
        // Well-formed enough for the browser tests to come: one document, the layout closed.
        assert!(p.body.starts_with("<!DOCTYPE html>") && p.body.trim_end().ends_with("</html>"), "{path}");
        p.body
    };
    let overview = expect(
        &mut b,
        "/ui/",
        &["Deliveries received", "Approvals waiting", "3 acknowledged since the start; latency p50"],
    )
    .await;
    assert!(overview.contains(r#"href="/ui/approvals">2</a>"#), "{overview}");
    let chart = b.get("/ui/charts/terminal.svg").await;
    assert_eq!(chart.status, 200);
    assert!(chart.body.starts_with("<svg"));
    assert!(b.get("/ui/charts/outbox.svg").await.body.starts_with("<svg"));

    let trace = traces[0].to_string();
    expect(
        &mut b,
        &format!("/ui/audit?trace={trace}"),
        &["Trace ", "received", "decided", "not yet: still in progress"],
    )
    .await;
    expect(&mut b, "/ui/audit?customer=shopify:701", &["Customer shopify:701", &trace]).await;
    let approvals = expect(
        &mut b,
        "/ui/approvals",
        &["Flow first_orders", "klaviyo: trigger_event", "Approve all 2 pending", "in 1d 23h"],
    )
    .await;
    assert!(approvals.contains("c701@example.org"), "an admin sees the personal fields");
    expect(&mut b, "/ui/flows", &["first_orders", "order_placed", "approval"]).await;
    let flow = expect(&mut b, "/ui/flows/first_orders", &["Configuration", "Shadow", "Lift"]).await;
    expect(&mut b, "/ui/models", &["bgnbd-ui-1", "42", "Activate"]).await;
    expect(&mut b, "/ui/models/bgnbd-ui-1", &["What the registry recorded"]).await;
    expect(&mut b, "/ui/dead-letters", &["Dead letters", "Quarantine", "Replay dead letters"]).await;
    let customer = expect(
        &mut b,
        "/ui/customers?id=shopify:701",
        &["Customer shopify:701", "Scores now", "c701@example.org", "7101"],
    )
    .await;

    // Stored text with markup is shown as text: a customer's name, a flow's metric, a reflected filter.
    assert!(escaped(&customer, "<script>alert(1)</script>"), "{customer}");
    assert!(escaped(&approvals, "First <script>alert(2)</script> order"), "{approvals}");
    assert!(escaped(&flow, "First <script>alert(2)</script> order"), "{flow}");
    let reflected = b.get("/ui/approvals?flow=%3Cscript%3Ealert(3)%3C/script%3E").await;
    assert_eq!(reflected.status, 200);
    assert!(escaped(&reflected.body, "<script>alert(3)</script>"), "{}", reflected.body);
    for page in [&customer, &approvals, &flow, &reflected.body] {
        let data = page.replace(CONSOLE_SCRIPT, "");
        assert!(!data.contains("<script"), "no markup from data: {page}");
    }

    // The email lookup answers with the customer's page by id; the email is in no URL.
    let csrf = csrf_of(&customer);
    let found = b.post("/ui/customers/email", &[("csrf", &csrf), ("email", " C702@example.org ")]).await;
    assert_eq!(
        (found.status, found.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/ui/customers?id=shopify:702"))
    );
    let found = b.post("/ui/audit/email", &[("csrf", &csrf), ("email", "c701@example.org")]).await;
    assert_eq!(found.location.as_deref(), Some("/ui/audit?customer=shopify:701"));
    let missing = b.post("/ui/audit/email", &[("csrf", &csrf), ("email", "nobody@example.org")]).await;
    assert_eq!(missing.location.as_deref(), Some("/ui/audit"));
    let after = b.get("/ui/audit").await;
    assert!(
        after.body.contains("No customer is stored under that email.") && !after.body.contains("nobody@"),
        "{}",
        after.body
    );

    // Unknown things are 404 pages in the layout; bad input is 400.
    assert_eq!(b.get("/ui/flows/nope").await.status, 404);
    assert_eq!(b.get("/ui/models/nope").await.status, 404);
    assert_eq!(b.get("/ui/customers?id=shopify:999").await.status, 404);
    assert_eq!(b.get("/ui/nothing-here").await.status, 404);
    assert_eq!(b.get("/ui/audit?trace=not-a-uuid").await.status, 400);

    // Activation goes through the CLI's checks: this version has no scorer, so it is refused, and says so.
    let models = b.get("/ui/models").await;
    let r = b.post("/ui/models/bgnbd-ui-1/activate", &[("csrf", &csrf_of(&models.body))]).await;
    assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/ui/models")));
    let after = b.get("/ui/models").await;
    assert!(after.body.contains("carries no scorer"), "{}", after.body);
    assert!(!t.app.store().model_versions().await.unwrap()[0].active);
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_from_the_console_sends_exactly_one_push() {
    let t = spawn_app(|c| c.flows = Some(vec![approval_flow("AI First Order")])).await;
    let traces = seed_orders(&t, &[(7201, 801, "Lena"), (7202, 802, "Ola"), (7203, 803, "Per")]).await;
    let ids = pending_ids(&t).await;
    let token = api_token(&t, "mia", Role::Marketer).await;
    let mut b = Browser::new(&t);
    b.sign_in(&token).await;
    let page = b.get("/ui/approvals?flow=first_orders").await;
    assert!(page.body.contains(&format!(r#"action="/ui/approvals/{}/approve""#, ids[0])), "{}", page.body);
    assert!(
        page.body.contains("(redacted)") && !page.body.contains("@example.org"),
        "a marketer sees no email"
    );
    let csrf = csrf_of(&page.body);

    let r = b
        .post(&format!("/ui/approvals/{}/approve", ids[0]), &[("csrf", &csrf), ("flow", "first_orders")])
        .await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/ui/approvals?flow=first_orders"))
    );
    let after = b.get("/ui/approvals?flow=first_orders").await;
    assert!(after.body.contains(&format!("Item {} approved.", ids[0])), "{}", after.body);
    assert!(
        !after.body.contains(&format!("/ui/approvals/{}/approve", ids[0])),
        "no button for a decided item"
    );
    // The flash is shown once.
    assert!(!b.get("/ui/approvals").await.body.contains("approved."));
    assert!(eventually(10, async || t.fake.events().len() == 1).await, "{:?}", t.fake.events());
    // Approving it again (a second click, a replayed form) sends nothing more.
    b.post(&format!("/ui/approvals/{}/approve", ids[0]), &[("csrf", &csrf), ("flow", "first_orders")]).await;
    assert!(b.get("/ui/approvals").await.body.contains("is already approved; nothing changed"));
    let unique = t.fake.events()[0].clone();
    let view = t.app.store().trace(traces[0]).await.unwrap().unwrap();
    let rec = view.records.iter().find(|r| r.stage == AuditStage::Approval).expect("approval audited");
    assert_eq!(
        (rec.detail["by"].as_str(), rec.detail["status"].as_str()),
        (Some("token:mia"), Some("approved"))
    );

    // Reject one, then reject the rest of the flow in bulk: nothing more is sent.
    b.post(&format!("/ui/approvals/{}/reject", ids[1]), &[("csrf", &csrf)]).await;
    let bulk = b
        .post("/ui/approvals/bulk", &[("csrf", &csrf), ("flow", "first_orders"), ("decision", "reject")])
        .await;
    assert_eq!(bulk.status, StatusCode::SEE_OTHER);
    assert!(b.get("/ui/approvals").await.body.contains("Flow first_orders: 1 rejected, 0 expired."));
    assert!(pending_ids(&t).await.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.fake.events().len(), 1, "exactly one push: {:?} (first {unique:?})", t.fake.events());
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_action_buttons_and_posting_the_forms_is_refused() {
    let t = spawn_app(|c| c.flows = Some(vec![approval_flow("AI First Order")])).await;
    seed_orders(&t, &[(7301, 901, "Lena")]).await;
    let id = pending_ids(&t).await[0];
    let token = api_token(&t, "vic", Role::Viewer).await;
    let mut b = Browser::new(&t);
    b.sign_in(&token).await;
    let approvals = b.get("/ui/approvals").await;
    assert_eq!(approvals.status, 200);
    assert!(
        approvals.body.contains(&format!("<th scope=\"row\">{id}</th>")),
        "the item is listed: {}",
        approvals.body
    );
    assert!(
        !approvals.body.contains("/approve\"") && !approvals.body.contains("Approve all"),
        "{}",
        approvals.body
    );
    let dead = b.get("/ui/dead-letters").await;
    assert!(!dead.body.contains("/ui/dead-letters/replay"), "{}", dead.body);
    assert!(!b.get("/ui/").await.body.contains("/ui/customers"), "no customers page in the navigation");
    let csrf = csrf_of(&approvals.body);

    // The forms posted directly, with a valid CSRF token: 403, audited with the permission missing.
    let r = b.post(&format!("/ui/approvals/{id}/approve"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let d = audited(&t, &r).await;
    assert_eq!(
        (d["outcome"].as_str(), d["permission"].as_str(), d["token_name"].as_str()),
        (Some("denied"), Some("approve"), Some("vic"))
    );
    assert_eq!(d["via"], "ui");
    for (path, fields) in [
        (
            "/ui/approvals/bulk",
            vec![("csrf", csrf.as_str()), ("flow", "first_orders"), ("decision", "approve")],
        ),
        ("/ui/dead-letters/replay", vec![("csrf", csrf.as_str()), ("what", "dead_letters")]),
        ("/ui/models/any/activate", vec![("csrf", csrf.as_str())]),
        ("/ui/customers/email", vec![("csrf", csrf.as_str()), ("email", "c901@example.org")]),
    ] {
        let r = b.post(path, &fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert!(r.trace.is_some(), "{path} refusal audited");
    }
    // Pages about every customer are not a viewer's either.
    assert_eq!(b.get("/ui/customers?id=shopify:901").await.status, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/ui/audit?customer=shopify:901").await.status, StatusCode::FORBIDDEN);
    assert_eq!(pending_ids(&t).await, vec![id]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(t.fake.events().is_empty());
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_its_csrf_token_or_from_another_site_is_refused() {
    let t = spawn_app(|c| c.flows = Some(vec![approval_flow("AI First Order")])).await;
    seed_orders(&t, &[(7401, 911, "Lena")]).await;
    let id = pending_ids(&t).await[0];
    let token = api_token(&t, "mia", Role::Marketer).await;
    let (mut b, mut other) = (Browser::new(&t), Browser::new(&t));
    b.sign_in(&token).await;
    other.sign_in(&token).await;
    let csrf = b.csrf().await;
    let others = other.csrf().await;
    assert_ne!(csrf, others, "each session has its own token");
    let path = format!("/ui/approvals/{id}/approve");
    for fields in [vec![], vec![("csrf", "")], vec![("csrf", "00")], vec![("csrf", others.as_str())]] {
        let r = b.post(&path, &fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{fields:?}");
        let d = audited(&t, &r).await;
        assert_eq!(d["reason"], "missing or wrong CSRF token");
    }
    // The right token from a page of another site (a cross-site form post): refused by its Origin.
    let r = b
        .with_cookie(b.http.post(format!("{}{path}", b.base)))
        .header("origin", "https://shop.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[("csrf", &csrf)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(pending_ids(&t).await, vec![id], "nothing was decided");
    // With its token (and a same-origin Origin) the form works.
    let r = b
        .with_cookie(b.http.post(format!("{}{path}", b.base)))
        .header("origin", b.base.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[("csrf", &csrf)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(pending_ids(&t).await.is_empty());
    t.app.shutdown().await;
}

/// Without `server.admin_from_any_address` the console, like `/api`, answers loopback peers only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_answers_non_loopback_peers_only_when_allowed() {
    let local = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.123:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip());
    let ip = match local {
        Ok(ip) if !ip.is_loopback() && !ip.is_unspecified() => ip,
        other => {
            eprintln!("skipped: no non-loopback address to test from ({other:?})");
            return;
        }
    };
    for any in [false, true] {
        let t = spawn_app_on("0.0.0.0:0", |c| c.server.admin_from_any_address = any).await;
        let url = format!("http://{ip}:{}/ui/login", t.app.addr.port());
        let resp = t.http.get(&url).send().await.unwrap();
        if any {
            assert_eq!(resp.status(), 200);
        } else {
            assert_eq!(resp.status(), 403);
            let trace: TraceId = resp.headers()["x-nudge-trace-id"].to_str().unwrap().parse().unwrap();
            let view = t.app.store().trace(trace).await.unwrap().unwrap();
            assert_eq!(view.records[0].detail["peer"], ip.to_string());
            assert!(resp.text().await.unwrap().contains("only answers on localhost"));
        }
        assert_eq!(t.http.get(format!("{}/ui/login", t.base)).send().await.unwrap().status(), 200);
        t.app.shutdown().await;
    }
}

/// The overview's live parts, with this file's browser.
#[path = "ui_overview.rs"]
mod overview;

/// A compliance user's customer page: the scores the pipeline recorded over time (a table, and the chart
/// of the same figures), the privacy export (the API's document, as a download) and the erasure (the id
/// typed again, with the form's CSRF token), which the pipeline then carries out. No other role reaches
/// any of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compliance_user_sees_scores_over_time_and_exports_and_erases_a_customer() {
    let t = spawn_app(|_| {}).await;
    let id: nudge_model::CustomerId = "shopify:1001".parse().unwrap();
    let r =
        t.sender.send(&Delivery::new("orders/create", order(7501, 1001, "Lena").to_bytes())).await.unwrap();
    assert_eq!(r.status, 200);
    let record = CustomerFixture::new(1001, Some("c1001@example.org"), OffsetDateTime::now_utc())
        .consent(Some("subscribed"))
        .name(Some("Lena"), Some("Berg"));
    let r = t.sender.send(&Delivery::new("customers/update", record.to_bytes())).await.unwrap();
    assert_eq!(r.status, 200);
    let store = t.app.store().clone();
    let scored = async || {
        let records = store.customer_audit(&id, 200).await.unwrap();
        records.into_iter().filter(|r| r.stage == AuditStage::Scored).collect::<Vec<_>>()
    };
    assert!(eventually(10, async || scored().await.len() >= 2).await, "both events are scored");
    let newest = scored().await.pop().unwrap();
    let score_name = newest.detail["scores"][0]["name"].as_str().unwrap().to_string();
    let model = newest.detail["model_version"].as_str().unwrap().to_string();

    // Other roles reach neither the page nor its chart, the export or the erasure.
    for role in [Role::Viewer, Role::Marketer] {
        let token = api_token(&t, &format!("{role}-user"), role).await;
        let mut b = Browser::new(&t);
        b.sign_in(&token).await;
        let csrf = b.csrf().await;
        assert!(!b.get("/ui/").await.body.contains("/ui/customers/"), "{role}");
        for path in ["/ui/customers?id=shopify:1001", "/ui/customers/scores.svg?id=shopify:1001"] {
            assert_eq!(b.get(path).await.status, StatusCode::FORBIDDEN, "{role} {path}");
        }
        let r = b.get("/ui/customers/export?id=shopify:1001").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}");
        assert!(!r.body.contains("c1001@example.org"));
        assert_eq!(audited(&t, &r).await["permission"], "privacy");
        let fields = [("csrf", csrf.as_str()), ("id", "shopify:1001"), ("confirm", "shopify:1001")];
        let r = b.post("/ui/customers/erase", &fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}");
        assert_eq!(audited(&t, &r).await["permission"], "privacy");
    }

    let token = api_token(&t, "cleo", Role::Compliance).await;
    let mut b = Browser::new(&t);
    b.sign_in(&token).await;
    let p = b.get("/ui/customers?id=shopify:1001").await;
    assert_eq!(p.status, 200, "{}", p.body);
    for needle in [
        "Scores over time",
        &format!(r#"<th scope="col">{score_name}</th>"#),
        &format!("<td>{model}</td>"),
        "/ui/customers/scores.svg?id=",
        "the table above has the same figures",
        r#"action="/ui/customers/export""#,
        r#"action="/ui/customers/erase""#,
        r#"name="confirm" required"#,
    ] {
        assert!(p.body.contains(needle), "the page shows {needle:?}: {}", p.body);
    }
    assert!(!p.body.contains("Privacy requests"), "no privacy job yet");
    let chart = b.get("/ui/customers/scores.svg?id=shopify:1001").await;
    assert_eq!(chart.status, 200);
    assert!(chart.body.starts_with("<svg") && chart.body.contains(&format!("{score_name} over time")));
    assert_eq!(b.get("/ui/customers/scores.svg?id=shopify:1999").await.status, 404, "nothing scored");
    assert_eq!(b.get("/ui/customers/scores.svg?id=nonsense").await.status, 400);

    // The export is the API's document, as a file.
    let resp = b.with_cookie(b.http.get(format!("{}/ui/customers/export?id=shopify:1001", b.base))).send();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let header = |name: &str| resp.headers()[name].to_str().unwrap().to_string();
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("content-disposition"), r#"attachment; filename="nudge-export-shopify_1001.json""#);
    assert_eq!(header("cache-control"), "no-store");
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(doc["format"], "nudge-export-v1");
    let api: serde_json::Value =
        api_get(&t, "/api/privacy/export/shopify:1001", &token).await.json().await.unwrap();
    let without_time = |mut d: serde_json::Value| {
        d.as_object_mut().unwrap().remove("generated_at");
        d
    };
    assert_eq!(without_time(doc.clone()), without_time(api), "the same document as the API's");
    assert!(doc.to_string().contains("c1001@example.org"));

    // The erasure needs the form's CSRF token and the id typed again; neither refusal erases anything.
    let csrf = csrf_of(&p.body);
    let r = b.post("/ui/customers/erase", &[("id", "shopify:1001"), ("confirm", "shopify:1001")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(audited(&t, &r).await["reason"], "missing or wrong CSRF token");
    for confirm in ["", "shopify:1002", "1001"] {
        let fields = [("csrf", csrf.as_str()), ("id", "shopify:1001"), ("confirm", confirm)];
        let r = b.post("/ui/customers/erase", &fields).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{confirm:?}");
        assert!(r.body.contains("Nothing was erased"), "{}", r.body);
    }
    assert!(store.privacy_jobs(false, None).await.unwrap().is_empty());
    assert_eq!(store.load_states(std::slice::from_ref(&id)).await.unwrap().len(), 1);

    let fields = [("csrf", csrf.as_str()), ("id", "shopify:1001"), ("confirm", " shopify:1001 ")];
    let r = b.post("/ui/customers/erase", &fields).await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/ui/customers?id=shopify:1001")),
        "{}",
        r.body
    );
    let next = b.get("/ui/customers?id=shopify:1001").await;
    assert!(next.body.contains("Erasure of shopify:1001 accepted"), "{}", next.body);
    assert!(next.body.contains("nudge privacy status"), "{}", next.body);
    assert!(
        eventually(30, async || {
            let jobs = store.privacy_jobs(false, None).await.unwrap();
            jobs.len() == 1 && jobs[0].done
        })
        .await,
        "the erasure finishes: {:?}",
        store.privacy_jobs(false, None).await.unwrap()
    );
    let job = store.privacy_jobs(false, None).await.unwrap().remove(0);
    assert_eq!(job.kind, nudge_store::PrivacyJobKind::Erase);
    assert!(store.load_states(std::slice::from_ref(&id)).await.unwrap().is_empty(), "the customer is gone");
    // The page of an erased customer still follows the job.
    let after = b.get("/ui/customers?id=shopify:1001").await;
    assert_eq!(after.status, 404);
    assert!(after.body.contains("Privacy requests") && after.body.contains("done"), "{}", after.body);
    assert!(!after.body.contains("c1001@example.org"), "{}", after.body);
    t.app.shutdown().await;
}

/// How many dead letters a page lists (each row has its own replay button for a replaying role).
fn replay_buttons(body: &str) -> usize {
    body.matches(r#"aria-label="Replay item "#).count()
}

/// How many rows of a page's dead-letter list are of `destination`.
fn rows_of(body: &str, destination: &str) -> usize {
    body.matches(&format!("<td>{destination}</td>")).count()
}

/// The href of a page's "Older dead letters" link.
fn older_link(body: &str) -> Option<String> {
    let end = body.find(r#"" rel="next">Older dead letters"#)?;
    let start = body[..end].rfind("href=\"")? + "href=\"".len();
    Some(body[start..end].replace("&amp;", "&").replace("&#38;", "&"))
}

/// Dead letters written straight into the store for `destination` (one per customer, each its own trace),
/// the first with `first_error` and the rest with a plain one; returns them oldest first. For a
/// destination that is not configured: no worker takes them meanwhile.
async fn seed_dead_letters(
    store: &Arc<dyn nudge_store::Store>,
    destination: &str,
    n: u32,
    first_error: &str,
) -> Vec<nudge_store::OutboxItem> {
    let outcomes = (0..n)
        .map(|i| {
            let trace = TraceId::new();
            nudge_store::ProcessOutcome {
                trace_id: Some(trace),
                outbox: vec![nudge_store::NewOutboxItem {
                    trace_id: trace,
                    customer: format!("shopify:{}", 2000 + i).parse().unwrap(),
                    destination: destination.into(),
                    action_json: format!(r#"{{"kind":"update_profile","n":{i}}}"#),
                    origin_us: 0,
                }],
                ..Default::default()
            }
        })
        .collect();
    store.commit_processing(outcomes).await.unwrap();
    let items = store.due_outbox_for(destination, i64::MAX / 2, n as usize + 1).await.unwrap();
    assert_eq!(items.len(), n as usize);
    let attempts = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let error = if i == 0 { first_error.to_string() } else { "503 from upstream".to_string() };
            nudge_store::AttemptRecord {
                item_id: item.id,
                trace_id: item.trace_id,
                audit: nudge_model::AuditRecord {
                    trace_id: item.trace_id,
                    customer: Some(item.customer.clone()),
                    stage: AuditStage::DeliveryAttempt,
                    at: OffsetDateTime::now_utc(),
                    detail: serde_json::json!({ "error": error }),
                },
                result: nudge_store::AttemptResult::DeadLettered(error),
                at_ms: 1,
            }
        })
        .collect();
    store.record_attempts(attempts).await.unwrap();
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_one_by_one_filtered_paged_and_replayed_one_at_a_time() {
    // Klaviyo is down: with one attempt allowed, each order's push is dead at once.
    let t = spawn_app(|c| c.pipeline.max_attempts = 1).await;
    t.fake.set_mode(FakeMode::Down);
    for i in 0..2 {
        let r = t
            .sender
            .send(&Delivery::new("orders/create", order(7400 + i, 1400 + i, "Lena").to_bytes()))
            .await;
        assert_eq!(r.unwrap().status, 200);
    }
    let bad = br#"{"id": 5, "total_price": "5x", "created_at": "2026-01-01T00:00:00Z"}"#.to_vec();
    assert_eq!(t.sender.send(&Delivery::new("orders/create", bad)).await.unwrap().status, 200);
    let store = t.app.store().clone();
    let settled = async || {
        let s = store.stats().await.unwrap();
        s.outbox_dead == 2 && s.outbox_pending == 0 && s.quarantined == 1
    };
    assert!(eventually(20, settled).await, "{:?}", store.stats().await.unwrap());
    // More than a page of them for a destination that was configured once (Braze): the newest, added last,
    // failed with an answer that quoted markup.
    let error = "<script>alert(5)</script> upstream said no";
    let braze = seed_dead_letters(&store, "braze", 60, "503 from upstream").await;
    let newest = seed_dead_letters(&store, "braze", 1, error).await.remove(0);
    let total = 2 + braze.len() + 1;

    let token = api_token(&t, "ada", Role::Admin).await;
    let mut b = Browser::new(&t);
    b.sign_in(&token).await;
    let first = b.get("/ui/dead-letters").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let body = &first.body;
    assert!(escaped(body, error) && !body.contains("<script>alert"), "the error is shown as text: {body}");
    assert!(body.contains(&format!(r#"href="/ui/audit?trace={}""#, newest.trace_id)), "{body}");
    assert!(body.contains(&format!("Action of item {}", newest.id)), "an admin sees the action");
    let unquoted = body.replace("&#34;", "\"").replace("&quot;", "\"");
    assert!(unquoted.contains("{\n  \"kind\": \"update_profile\",\n  \"n\": 0\n}"), "pretty-printed: {body}");
    assert!(body.contains("Quarantined deliveries, newest first") && body.contains("<td>orders/create</td>"));
    assert_eq!(rows_of(body, "braze") + rows_of(body, "klaviyo"), 50, "one page");
    assert_eq!(replay_buttons(body), 0, "Braze is not configured: none of its rows can be replayed");
    let older = older_link(body).expect("a link to the older page");
    assert!(older.starts_with("/ui/dead-letters?before="), "{older}");
    let second = b.get(&older).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(rows_of(&second.body, "braze") + rows_of(&second.body, "klaviyo"), total - 50, "the rest");
    assert_eq!(replay_buttons(&second.body), 2, "the oldest are Klaviyo's: {}", second.body);
    assert!(older_link(&second.body).is_none(), "the last page");
    assert!(!second.body.contains(&format!("Action of item {}<", newest.id)), "no row twice");

    // Filtered by destination: only its rows, and the filter is kept in the form and the next page's link.
    let only = b.get("/ui/dead-letters?destination=klaviyo").await;
    assert_eq!(only.status, 200, "{}", only.body);
    assert_eq!((rows_of(&only.body, "klaviyo"), rows_of(&only.body, "braze")), (2, 0), "{}", only.body);
    assert!(only.body.contains(r#"<option value="klaviyo" selected>"#), "{}", only.body);
    assert!(older_link(&only.body).is_none());
    let only = b.get("/ui/dead-letters?destination=braze").await;
    assert_eq!((rows_of(&only.body, "klaviyo"), rows_of(&only.body, "braze")), (0, 50));
    let older = older_link(&only.body).expect("a next page");
    assert!(older.starts_with("/ui/dead-letters?destination=braze&before="), "{older}");
    assert_eq!(rows_of(&b.get(&older).await.body, "braze"), 11);

    // Bad filters are refused.
    for bad in ["?before=abc", "?qbefore=1x", "?destination=nowhere", "?destination=%3Cb%3E"] {
        let p = b.get(&format!("/ui/dead-letters{bad}")).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{bad}: {}", p.body);
        assert!(!p.body.contains("<b>"), "{}", p.body);
    }

    // Replaying one row puts back exactly that item, with Klaviyo up again.
    t.fake.set_mode(FakeMode::Normal);
    let klaviyo = DeadLetterFilter { destination: Some("klaviyo".into()), ..Default::default() };
    let target = store.dead_letters(klaviyo, None, 1).await.unwrap().remove(0);
    let form_of = format!(
        "<input type=\"hidden\" name=\"trace\" value=\"{}\">\n<input type=\"hidden\" name=\"destination\" value=\"klaviyo\">",
        target.trace_id
    );
    assert!(
        second.body.contains(&form_of),
        "the row's form names its trace and destination: {}",
        second.body
    );
    let ids = async || -> Vec<i64> {
        store
            .dead_letters(DeadLetterFilter::default(), None, 500)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect()
    };
    let before = ids().await;
    let fields = [
        ("csrf", csrf_of(body)),
        ("what", "dead_letters".into()),
        ("trace", target.trace_id.to_string()),
        ("destination", "klaviyo".into()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = b.post("/ui/dead-letters/replay", &fields).await;
    assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/ui/dead-letters")));
    let expected: Vec<i64> = before.iter().copied().filter(|id| *id != target.id).collect();
    assert_eq!(ids().await, expected, "only that item left the dead letters");
    let stats = store.stats().await.unwrap();
    let k = stats.outbox_by_destination.iter().find(|d| d.destination == "klaviyo").unwrap();
    assert_eq!((k.dead, k.pending + k.delivered), (1, 1), "it is pending again (or sent already)");
    let flash = b.get("/ui/dead-letters").await;
    assert!(flash.body.contains("1 dead-lettered pushes to klaviyo queued for delivery."), "{}", flash.body);
    let sent = async || {
        let s = store.stats().await.unwrap();
        s.outbox_by_destination.iter().any(|d| d.destination == "klaviyo" && d.delivered == 1)
    };
    assert!(eventually(10, sent).await, "{:?}", store.stats().await.unwrap());
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_dead_letters_without_replay_buttons_or_the_customers_details() {
    let t = spawn_app(|c| c.pipeline.max_attempts = 1).await;
    t.fake.set_mode(FakeMode::Down);
    let r =
        t.sender.send(&Delivery::new("orders/create", order(7501, 1501, "Lena").to_bytes())).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let trace = v["trace_id"].as_str().unwrap().to_string();
    assert!(eventually(20, async || t.app.store().stats().await.unwrap().outbox_dead == 1).await);
    let item = t.app.store().dead_letters(DeadLetterFilter::default(), None, 1).await.unwrap().remove(0);
    assert!(item.last_error.is_some(), "the reason is kept");

    let token = api_token(&t, "vic", Role::Viewer).await;
    let mut b = Browser::new(&t);
    b.sign_in(&token).await;
    let p = b.get("/ui/dead-letters").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains(&format!(r#"<a href="/ui/audit?trace={trace}">{trace}</a>"#)), "{}", p.body);
    assert!(p.body.contains("<td>klaviyo</td>") && p.body.contains("<td>shopify:1501</td>"), "{}", p.body);
    assert!(!p.body.contains("/ui/dead-letters/replay") && replay_buttons(&p.body) == 0, "{}", p.body);
    assert!(!p.body.contains("Action of item"), "no customer details for a viewer: {}", p.body);
    assert!(!p.body.contains("/ui/customers?id="), "{}", p.body);

    // A data engineer may replay it, still without the customer's details.
    let token = api_token(&t, "dee", Role::DataEngineer).await;
    let mut b = Browser::new(&t);
    b.sign_in(&token).await;
    let p = b.get("/ui/dead-letters").await;
    assert_eq!(replay_buttons(&p.body), 1, "{}", p.body);
    assert!(!p.body.contains("Action of item"), "{}", p.body);
    t.app.shutdown().await;
}
