//! A fake external scorer (`POST /score`), enforcing the request contract of nudge's HTTP scorer client
//! (`nudge_custom::http`):
//! - `Content-Type: application/json`; the body a JSON object with exactly `model` (a non-empty string),
//!   `customer` (a pseudonym `ps_customer_` + 24 lowercase hex digits: never a raw id or an email),
//!   `scored_at` (an RFC 3339 time) and `features` (an object of numbers, `null`s and arrays of them);
//!   anything else is a 400 with the reason, recorded.
//!
//! A valid request is answered `{"scores": {NAME: VALUE}}` for each configured output name, with VALUE a
//! deterministic function of the features: the logistic of (sum of the numbers / 100), in (0, 1).
//!
//! Failures on demand ([`FakeScorerHandle::set_mode`]): hang, 500, a 200 whose body is not JSON, a 200 of
//! another shape, values out of range, and latency added to every answer.

use crate::TestkitError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;

/// How the fake answers a valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScorerMode {
    #[default]
    Ok,
    /// Never answers.
    Hang,
    /// 500 with a JSON error.
    ServerError,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with JSON of another shape (`{"score": 0.5}`).
    WrongShape,
    /// 200 with every value 7.5 (outside a probability's range).
    OutOfRange,
}

#[derive(Debug, Clone)]
pub struct FakeScorerConfig {
    /// The keys of the answer's `scores`.
    pub outputs: Vec<String>,
}

impl Default for FakeScorerConfig {
    fn default() -> Self {
        FakeScorerConfig { outputs: vec!["churn".into()] }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct ScorerRequest {
    pub body: String,
    pub status: u16,
    /// Why a 400 was answered.
    pub violation: Option<String>,
}

#[derive(Default)]
struct FakeState {
    mode: ScorerMode,
    latency: Duration,
    requests: Vec<ScorerRequest>,
}

struct Shared {
    config: FakeScorerConfig,
    state: Mutex<FakeState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakeScorer;

impl FakeScorer {
    pub async fn start(config: FakeScorerConfig) -> Result<FakeScorerHandle, TestkitError> {
        let shared = Arc::new(Shared { config, state: Mutex::new(FakeState::default()) });
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| run(listener, state, stop)).await?;
        Ok(FakeScorerHandle { server, shared })
    }

    /// Serves on `listener` until `shutdown`, in `mode` with `latency`; for `nudge dev fake --kind scorer`.
    pub async fn serve(
        listener: TcpListener,
        config: FakeScorerConfig,
        mode: ScorerMode,
        latency: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TestkitError> {
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(FakeState { mode, latency, ..FakeState::default() }),
        });
        run(listener, shared, shutdown).await
    }
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TestkitError> {
    let app = Router::new().fallback(handle).with_state(shared);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(TestkitError::Serve)
}

/// Checks a request against the contract; the features on success.
pub fn check_request(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, String> {
    if method != Method::POST || path != "/score" {
        return Err(format!("{method} {path}: only POST /score is served"));
    }
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(format!("content-type `{ct}` is not application/json"));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the body is not a JSON object")?;
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys != ["customer", "features", "model", "scored_at"] {
        return Err(format!("the body's keys are {keys:?}, not customer, features, model, scored_at"));
    }
    if obj["model"].as_str().is_none_or(str::is_empty) {
        return Err("`model` is not a non-empty string".into());
    }
    let customer = obj["customer"].as_str().ok_or("`customer` is not a string")?;
    let hex = customer.strip_prefix("ps_customer_").unwrap_or("");
    if hex.len() != 24 || !hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        return Err(format!("`customer` `{customer}` is not a customer pseudonym (ps_customer_ + 24 hex)"));
    }
    let at = obj["scored_at"].as_str().ok_or("`scored_at` is not a string")?;
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("`scored_at` `{at}` is not an RFC 3339 time"))?;
    let features = obj["features"].as_object().ok_or("`features` is not an object")?;
    if features.is_empty() {
        return Err("`features` is empty".into());
    }
    for (k, f) in features {
        let ok = |x: &Value| x.is_number() || x.is_null();
        let valid = match f {
            Value::Array(items) => !items.is_empty() && items.iter().all(ok),
            other => ok(other),
        };
        if !valid {
            return Err(format!("feature `{k}` is not a number, null or an array of them"));
        }
    }
    Ok(features.clone())
}

/// The deterministic score of a valid request's features.
pub fn score_of(features: &Map<String, Value>) -> f64 {
    let sum: f64 = features
        .values()
        .flat_map(|v| match v {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        })
        .filter_map(|v| v.as_f64())
        .sum();
    1.0 / (1.0 + (-sum / 100.0).exp())
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let checked = check_request(&method, uri.path(), &headers, &body);
    let (mode, latency) = {
        let s = shared.lock();
        (s.mode, s.latency)
    };
    let (status, text) = match &checked {
        Err(reason) => (400, json!({"error": reason}).to_string()),
        Ok(features) => match mode {
            ScorerMode::Ok => {
                let v = score_of(features);
                let scores: Map<String, Value> =
                    shared.config.outputs.iter().map(|o| (o.clone(), json!(v))).collect();
                (200, json!({ "scores": scores }).to_string())
            }
            ScorerMode::Hang => (200, String::new()),
            ScorerMode::ServerError => (500, json!({"error": "internal error"}).to_string()),
            ScorerMode::Garbage => (200, "<html>oops</html>".to_string()),
            ScorerMode::WrongShape => (200, json!({"score": 0.5}).to_string()),
            ScorerMode::OutOfRange => {
                let scores: Map<String, Value> =
                    shared.config.outputs.iter().map(|o| (o.clone(), json!(7.5))).collect();
                (200, json!({ "scores": scores }).to_string())
            }
        },
    };
    shared.lock().requests.push(ScorerRequest {
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
        violation: checked.err(),
    });
    if mode == ScorerMode::Hang && status == 200 {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(text))
        .expect("a response builds")
}

/// A running fake scorer.
pub struct FakeScorerHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeScorerHandle {
    /// The `http.url` to configure (`http://127.0.0.1:PORT/score`).
    pub fn url(&self) -> String {
        format!("http://{}/score", self.server.addr())
    }

    pub fn set_mode(&self, mode: ScorerMode) {
        self.shared.lock().mode = mode;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    pub fn requests(&self) -> Vec<ScorerRequest> {
        self.shared.lock().requests.clone()
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(url: &str, body: &Value) -> (u16, String) {
        crate::ensure_crypto_provider();
        let r = reqwest::Client::new().post(url).json(body).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    fn valid() -> Value {
        json!({"model": "m", "customer": "ps_customer_0123456789abcdef01234567",
               "scored_at": "2026-03-01T10:00:00Z", "features": {"a": 50, "b": [25, null, 25]}})
    }

    #[tokio::test]
    async fn answers_valid_requests_and_rejects_the_rest() {
        let fake = FakeScorer::start(FakeScorerConfig::default()).await.unwrap();
        let (status, body) = post(&fake.url(), &valid()).await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let expected = 1.0 / (1.0 + (-1.0f64).exp());
        assert!((v["scores"]["churn"].as_f64().unwrap() - expected).abs() < 1e-12);

        let mut raw_id = valid();
        raw_id["customer"] = json!("shopify:1001");
        let mut extra = valid();
        extra["email"] = json!("ada@example.org");
        let mut bad_feature = valid();
        bad_feature["features"]["a"] = json!("three");
        for bad in [raw_id, extra, bad_feature] {
            let (status, _) = post(&fake.url(), &bad).await;
            assert_eq!(status, 400, "{bad}");
        }
        let reqs = fake.requests();
        assert_eq!(reqs.len(), 4);
        assert!(reqs[1].violation.as_deref().unwrap().contains("pseudonym"));
        assert!(reqs[2].violation.as_deref().unwrap().contains("keys"));

        fake.set_mode(ScorerMode::ServerError);
        assert_eq!(post(&fake.url(), &valid()).await.0, 500);
        fake.set_mode(ScorerMode::Garbage);
        let (status, body) = post(&fake.url(), &valid()).await;
        assert_eq!(status, 200);
        assert!(serde_json::from_str::<Value>(&body).is_err());
        fake.shutdown().await;
    }
}
