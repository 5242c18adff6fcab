//! How Tether's tool binaries log: human-readable lines on stderr, filtered by `RUST_LOG`.
//!
//! stdout stays free for what a tool prints for people and scripts (the demo's steps, the
//! benchmark table). The Lambda functions do not use this: they log through the runtime's own
//! subscriber (`lambda_runtime::tracing`), as Lambda expects.

use tracing_subscriber::EnvFilter;

/// Installs the process's subscriber: `RUST_LOG` if it is set and valid, else `default_filter`
/// (an `EnvFilter` directive such as `"info,rmqtt=warn"`). Call it once, first thing in `main`.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
