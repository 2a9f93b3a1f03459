//! Logging set-up.

use tracing_subscriber::EnvFilter;

/// Installs the global `tracing` subscriber, writing to stderr.
///
/// The level comes from `RUST_LOG` when set, otherwise from `default_filter`
/// (for example `info` or `maxwin_coach=debug`).
pub fn init(default_filter: &str, json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
