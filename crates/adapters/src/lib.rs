//! What Tether's Lambda functions share at their edges.
//!
//! Layout:
//! - [`config`]: the typed configuration, read once from the environment (fail fast);
//! - [`aws`]: the shared AWS SDK configuration (endpoints from `AWS_ENDPOINT_URL_*`, retries,
//!   timeouts) and clients;
//! - [`iot`]: the IoT gateway (iot-data Publish, GetConnection) and its errors;
//! - [`commands`]: AWS IoT Commands (control plane and StartCommandExecution) in the API's JSON;
//! - [`jobs`]: AWS IoT Jobs (control plane) in the API's shapes;
//! - [`http`]: the HTTP API plumbing: routing by method and path, JSON bodies, and the one place
//!   where errors become problem+json responses.

pub mod aws;
pub mod commands;
pub mod config;
pub mod http;
pub mod iot;
pub mod jobs;
