//! Conventions every command follows: exit codes and progress on stderr.
//!
//! Exit codes: 0 when the command did what was asked, 1 when it failed (a store, a destination, a file),
//! 2 when it was asked wrongly: a usage error (an unknown option, a malformed argument, a name that is not
//! configured) or an invalid configuration. [`exit_code`] classifies an error.
//!
//! Progress: long commands show a bar (or a spinner while the length is unknown) on stderr, drawn only
//! when stderr is a terminal, so logs, pipes and CI output stay clean.

use indicatif::{ProgressBar, ProgressStyle};
use std::borrow::Cow;
use std::io::IsTerminal;
use std::time::Duration;

/// A command asked for something it cannot do as asked (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit code 2: a usage error or an invalid configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit code 1: the command failed.
pub const EXIT_FAILED: u8 = 1;

/// The exit code of a command that ended with `e`: [`EXIT_USAGE`] for the usage and configuration errors
/// of every command, [`EXIT_FAILED`] for anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let usage = e.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<crate::config::ConfigError>()
            || cause.is::<crate::prompts_cli::UsageError>()
            || cause.is::<crate::segments_cli::UsageError>()
            || cause.is::<crate::campaigns_cli::UsageError>()
            || cause.is::<crate::digest::UsageError>()
            || matches!(cause.downcast_ref(), Some(crate::push::PushError::Usage(_)))
            || cause.downcast_ref::<crate::report_cli::ReportError>().is_some_and(|r| r.is_usage())
    });
    if usage { EXIT_USAGE } else { EXIT_FAILED }
}

/// Whether progress is drawn: only when a person is watching stderr.
pub fn progress_enabled() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar over `len` items on stderr (hidden when stderr is not a terminal).
pub fn bar(len: u64, message: impl Into<Cow<'static, str>>) -> ProgressBar {
    if !progress_enabled() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(len).with_style(style).with_message(message)
}

/// A spinner with the elapsed time for work of unknown length (hidden when stderr is not a terminal);
/// `finish_and_clear` it when done.
pub fn spinner(message: impl Into<Cow<'static, str>>) -> ProgressBar {
    if !progress_enabled() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let s = ProgressBar::new_spinner().with_style(style).with_message(message);
    s.enable_steady_tick(Duration::from_millis(120));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_configuration_errors_exit_2_and_failures_1() {
        let usage = anyhow::Error::new(UsageError("no such destination".into()));
        assert_eq!(exit_code(&usage), EXIT_USAGE);
        assert_eq!(exit_code(&usage.context("replaying dead letters")), EXIT_USAGE);
        let report = anyhow::Error::new(crate::report_cli::ReportError::BadInput("window".into()));
        assert_eq!(exit_code(&report), EXIT_USAGE);
        let push = anyhow::Error::new(crate::push::PushError::Usage("unknown destination".into()));
        assert_eq!(exit_code(&push), EXIT_USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("the store is locked")), EXIT_FAILED);
        let io = anyhow::Error::new(std::io::Error::other("disk full"));
        assert_eq!(exit_code(&io), EXIT_FAILED);
    }

    #[test]
    fn progress_is_hidden_without_a_terminal() {
        // The test harness captures stderr: no terminal, nothing drawn.
        if !progress_enabled() {
            assert!(bar(10, "items").is_hidden());
            assert!(spinner("working").is_hidden());
        }
    }
}
