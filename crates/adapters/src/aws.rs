//! The AWS SDK configuration every function shares.
//!
//! Endpoints come from the standard variables (`AWS_ENDPOINT_URL_DYNAMODB`,
//! `AWS_ENDPOINT_URL_IOT_DATA_PLANE`, ...), so the same binary talks to AWS or to the local
//! stack. Retries are bounded and each attempt has a timeout, so a synchronous call can keep
//! its deadline even when a dependency hangs.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// How long a new connection may take. Every client and every per-call override uses this
/// one value: the connect timeout selects the HTTP connector, and another connector would open
/// another connection (and its TLS handshake) instead of using the one already open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The HTTPS client every SDK client of the functions uses: hyper and rustls with *ring*. The
/// SDK's default picks aws-lc-rs, whose first use in a process costs about 23 ms of CPU on the
/// benchmark machine (a first handshake with *ring* about 1 ms) — paid by a cold instance's
/// first request, and at 128 MB on a fraction of a vCPU. Trusts the system's roots
/// (`SSL_CERT_FILE` when set).
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Loads the shared SDK configuration from the environment.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .load()
        .await
}
