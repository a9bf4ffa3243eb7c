//! `[llm]` and `[[prompts]]` as read from TOML: defaults, and errors that name the key.

use nudge_llm::{LlmConfig, PromptSpec};
use std::time::Duration;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    llm: Option<LlmConfig>,
    #[serde(default)]
    prompts: Vec<PromptSpec>,
}

fn prompt_error(toml_text: &str) -> String {
    let f: File = toml::from_str(toml_text).unwrap();
    f.prompts[0].check().unwrap_err().to_string()
}

const GOOD: &str = r#"
name = "winback"
version = 1
system = "Retail copy."
"#;

#[test]
fn llm_defaults_and_checks() {
    let f: File = toml::from_str(
        "[llm]\nbase_url = \"http://127.0.0.1:11434/v1\"\nmodel = \"small\"\napi_key = \"ollama\"\nprovider = \"ollama\"\n",
    )
    .unwrap();
    let llm = f.llm.unwrap();
    llm.check().unwrap();
    assert_eq!(llm.timeout, Duration::from_secs(10));
    assert_eq!(llm.max_retries, 2);
    assert_eq!(llm.endpoint(), "http://127.0.0.1:11434/v1/chat/completions");

    let f: File = toml::from_str(
        "[llm]\nbase_url = \"https://api.example.test/v1\"\nmodel = \"m\"\napi_key = \"k\"\ntimeout = \"750ms\"\ntemperature = 0.7\nmonthly_token_budget = 2000000\n",
    )
    .unwrap();
    assert_eq!(f.llm.unwrap().timeout, Duration::from_millis(750));

    let unknown = toml::from_str::<File>(
        "[llm]\nbase_url = \"http://x/v1\"\nmodel = \"m\"\napi_key = \"k\"\nmax_token = 3\n",
    );
    assert!(unknown.err().unwrap().to_string().contains("max_token"));
    let mut llm = nudge_llm::LlmConfig::new("http://x/v1", "m", "k");
    llm.temperature = Some(2.5);
    assert_eq!(llm.check().unwrap_err().key, "llm.temperature");
    llm.temperature = None;
    llm.base_url = "x.example/v1".into();
    assert_eq!(llm.check().unwrap_err().key, "llm.base_url");
}

#[test]
fn prompt_errors_name_the_key() {
    let unknown_var = format!(
        "[[prompts]]{GOOD}user = \"Hi {{{{email}}}}\"\nslots = {{ subject = {{ max_chars = 60 }} }}\nfallback = {{ subject = \"Hello\" }}\n"
    );
    let e = prompt_error(&unknown_var);
    assert!(e.starts_with("prompts[winback].user: unknown variable `{{email}}`"), "{e}");

    let no_limit = format!(
        "[[prompts]]{GOOD}user = \"{{{{segment}}}}\"\nslots = {{ subject = {{}} }}\nfallback = {{ subject = \"Hello\" }}\n"
    );
    assert_eq!(
        prompt_error(&no_limit),
        "prompts[winback].slots.subject.max_chars: every slot needs a length limit"
    );

    let no_fallback = format!(
        "[[prompts]]{GOOD}user = \"{{{{segment}}}}\"\nslots = {{ subject = {{ max_chars = 60 }}, body = {{ max_chars = 400 }} }}\nfallback = {{ subject = \"Hello\" }}\n"
    );
    assert_eq!(prompt_error(&no_fallback), "prompts[winback].fallback.body: every slot needs fallback copy");

    let long_fallback = format!(
        "[[prompts]]{GOOD}user = \"{{{{segment}}}}\"\nslots = {{ subject = {{ max_chars = 5 }} }}\nfallback = {{ subject = \"Hello there\" }}\n"
    );
    assert!(prompt_error(&long_fallback).starts_with("prompts[winback].fallback.subject: 11 characters"));

    let unknown_key =
        format!("[[prompts]]{GOOD}user = \"x\"\nslots = {{}}\nfallback = {{}}\nmodel = \"x\"\n");
    assert!(toml::from_str::<File>(&unknown_key).err().unwrap().to_string().contains("model"));

    let ok = format!(
        "[[prompts]]{GOOD}user = \"{{{{ segment }}}} {{{{score.churn_risk}}}} {{{{product_1}}}}\"\nslots = {{ subject = {{ max_chars = 60 }} }}\nfallback = {{ subject = \"Hello\" }}\n"
    );
    let f: File = toml::from_str(&ok).unwrap();
    f.prompts[0].check().unwrap();
}

/// The commented `[llm]` and `[[prompts]]` examples of the reference file load and pass their checks.
#[test]
fn the_reference_file_examples_are_valid() {
    let text = include_str!("../../../nudge.example.toml");
    let block = |header: &str| -> String {
        let start = text.find(&format!("# {header}\n")).unwrap_or_else(|| panic!("{header} is documented"));
        text[start..]
            .lines()
            .take_while(|l| l.starts_with("# "))
            .map(|l| l.trim_start_matches("# "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let toml_text = format!("{}\n{}\n", block("[llm]"), block("[[prompts]]"))
        .replace("${NUDGE_LLM_API_KEY}", "sk-example");
    let f: File = toml::from_str(&toml_text).unwrap();
    let llm = f.llm.unwrap();
    llm.check().unwrap();
    assert_eq!(llm.timeout, Duration::from_secs(10));
    f.prompts[0].check().unwrap();
}
