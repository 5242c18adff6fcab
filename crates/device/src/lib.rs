//! `device`: Tether's device simulator and reference device agent.
//!
//! Each simulated device is one MQTT 5 connection whose client id is its thing name. It answers
//! Tether's direct invocations (`{prefix}/devices/{deviceId}/invoke/{method}/{requestId}`, reply
//! on the MQTT 5 response topic with the request's correlation data) and AWS IoT Commands
//! executions (`$aws/commands/things/{thing}/executions/{executionId}/request/...`, answer on
//! `.../response/json`), each request with a scripted [`Behaviour`] picked by its method.
//!
//! Tests and benchmarks start devices in-process with [`Fleet::start`]; the `device` binary is
//! the same fleet behind a command line.
//!
//! Layout:
//! - [`behaviour`]: the behaviour language (`reboot=delay:200`, `*=echo`) and its YAML file;
//! - [`config`]: what a fleet needs to start (broker URL, TLS files, device ids, timings);
//! - [`tls`]: the rustls client configuration for mutual TLS with AWS IoT Core;
//! - [`answer`]: what a behaviour sends for one request, as a plan of steps (no I/O);
//! - [`device`]: one device's connection: connect, subscribe, reconnect with backoff, dispatch
//!   (`device/receive.rs`: what a message is recorded as, and the plan that answers a request);
//! - [`report`]: counters, the log of received messages and the exit summary;
//! - [`fleet`]: many devices in one process, readiness and shutdown.

pub mod answer;
pub mod behaviour;
pub mod config;
pub mod device;
pub mod fleet;
pub mod report;
pub mod tls;

pub use behaviour::{Behaviour, BehaviourError, Behaviours, Pause};
pub use config::{Backoff, BrokerUrl, ConfigError, FleetConfig, TlsFiles};
pub use fleet::{Fleet, FleetError};
pub use report::{Counters, Kind, Received, Sent, Summary};
