//! `device`: Tether's device simulator and reference device agent.
//!
//! Each simulated device is one MQTT 5 connection whose client id is its thing name. It answers
//! Tether's direct invocations (`{prefix}/devices/{deviceId}/invoke/{method}/{requestId}`, reply
//! on the MQTT 5 response topic with the request's correlation data) and AWS IoT Commands
//! executions (`$aws/commands/things/{thing}/executions/{executionId}/request/...`, answer on
//! `.../response/json`), each request with a scripted [`Behaviour`] picked by its method.
//!
//! It also processes AWS IoT Jobs ([`jobs`]), one at a time: over MQTT by default
//! (`$aws/things/{thing}/jobs/notify-next` → `start-next` → run → `jobs/{jobId}/update`, asking
//! `start-next` on every connection so jobs queued while it was offline are picked up), or over
//! HTTPS ([`JobsTransport::Https`], `--jobs-transport https`: StartNextPendingJobExecution and
//! UpdateJobExecution through `aws-sdk-iotjobsdataplane`, polled). The job document's
//! `"operation"` string picks the behaviour as a method name does: `echo` and `delay` succeed,
//! `progress` reports IN_PROGRESS with `statusDetails` first, `fail` and `reject` end FAILED and
//! REJECTED with the reason in `statusDetails`, `never` leaves the execution IN_PROGRESS for the
//! cloud's timeout. What the devices did with jobs is counted in [`Counters::jobs`] and logged
//! as [`Kind::Job`] (taken on), [`Kind::JobNotify`], [`Kind::JobAccepted`] and
//! [`Kind::JobRejected`]; their updates enter the [`Sent`] log.
//!
//! Tests and benchmarks start devices in-process with [`Fleet::start`]; the `device` binary is
//! the same fleet behind a command line.
//!
//! Layout:
//! - [`behaviour`]: the behaviour language (`reboot=delay:200`, `*=echo`) and its YAML file;
//! - [`config`]: what a fleet needs to start (broker URL, TLS files, device ids, timings);
//! - [`tls`]: the rustls client configuration for mutual TLS with AWS IoT Core;
//! - [`answer`]: what a behaviour sends for one request or job, as a plan of steps (no I/O);
//! - [`jobs`]: job executions, the Jobs topics, and the MQTT Jobs agent (a state machine, no
//!   I/O);
//! - [`device`]: one device's connection: connect, subscribe, reconnect with backoff, dispatch
//!   (`device/receive.rs`: what a message is recorded as, and the plan that answers a request;
//!   `device/jobs.rs`: the Jobs task, MQTT or HTTPS);
//! - [`report`]: counters, the log of received messages and the exit summary;
//! - [`fleet`]: many devices in one process, readiness and shutdown.

pub mod answer;
pub mod behaviour;
pub mod config;
pub mod device;
pub mod fleet;
pub mod jobs;
pub mod report;
pub mod tls;

pub use behaviour::{Behaviour, BehaviourError, Behaviours, Pause};
pub use config::{
    Backoff, BrokerUrl, ConfigError, FleetConfig, JobsConfig, JobsTransport, TlsFiles,
};
pub use fleet::{Fleet, FleetError};
pub use report::{Counters, JobCounters, Kind, Received, Sent, Summary};
