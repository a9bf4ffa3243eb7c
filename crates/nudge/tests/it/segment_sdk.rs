//! The real analytics-python SDK (`segment-analytics-python` from PyPI) against a running nudge: every
//! message it sends is stored exactly once, through the retries that the first requests' injected 503s
//! cause. The SDK's directory (a `pip install --target` of it) comes from `NUDGE_SEGMENT_SDK_DIR`; without
//! it the test says so and passes without running.

use crate::spawn_app;
use nudge::config::SegmentSourceConfig;

const KEY: &str = "wk_sdk_test";

const SCRIPT: &str = r#"
import sys
from segment.analytics.client import Client
host, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
errors = []
c = Client(write_key=key, host=host, gzip=(sys.argv[4] == "gzip"), max_retries=10, upload_size=50,
           on_error=lambda e, batch: errors.append(repr(e)))
for i in range(n):
    if i % 10 == 0:
        c.identify(user_id=1000 + i, traits={"email": "p%d@example.org" % i, "phone": "+49 151 %07d" % i})
    else:
        c.track(anonymous_id="a-%d" % i, event="Product Viewed",
                properties={"product_id": 9100000000 + i, "price": 39.95, "currency": "EUR"})
c.flush()
c.shutdown()
if errors:
    print("SDK errors:", errors)
    sys.exit(1)
print("sent", n)
"#;

#[tokio::test]
async fn analytics_python_messages_are_stored_exactly_once_through_retries() {
    let Some(dir) = std::env::var_os("NUDGE_SEGMENT_SDK_DIR").filter(|d| !d.is_empty()) else {
        eprintln!(
            "SKIPPED analytics_python_messages_are_stored_exactly_once_through_retries: set \
             NUDGE_SEGMENT_SDK_DIR to a `pip install --target <dir> segment-analytics-python` directory"
        );
        return;
    };
    for (encoding, n) in [("plain", 300u64), ("gzip", 120)] {
        let t = spawn_app(|c| {
            c.sources.segment =
                Some(SegmentSourceConfig { write_keys: vec![KEY.into()], ..Default::default() })
        })
        .await;
        // The first three requests are answered 503 with Retry-After: the SDK must retry them.
        t.app.shared.segment.fail_next_requests(3);
        let out = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(&t.base)
            .arg(KEY)
            .arg(n.to_string())
            .arg(encoding)
            .env("PYTHONPATH", &dir)
            .output()
            .await
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "SDK run failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stats = t.app.shared.store.stats().await.unwrap();
        assert_eq!(stats.deliveries, n, "{encoding}: every message stored exactly once");
        let metrics = t.http.get(format!("{}/metrics", t.base)).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("nudge_segment_messages_total{outcome=\"accepted\"}"));
    }
}
