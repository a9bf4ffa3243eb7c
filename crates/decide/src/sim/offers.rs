//! (being written)

use super::{SimArgs, SimReport};

/// Runs the scenario and evaluates the models on it.
pub fn evaluate(args: &SimArgs) -> SimReport {
    let _ = args;
    SimReport { scenario: "offers", text: String::new(), json: serde_json::Value::Null }
}
