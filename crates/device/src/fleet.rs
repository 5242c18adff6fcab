//! Many simulated devices in one process, each with its own MQTT connection (and, with Jobs over
//! HTTPS, one shared iot-jobs-data client).
//!
//! [`Fleet::start`] returns once every device is connected and subscribed (each device's
//! SUBACK, not a guess of how long that takes); [`Fleet::wait_until`] waits for counters to
//! reach a condition; [`Fleet::shutdown`] disconnects everything and returns the summary.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::MqttOptions;
use rumqttc::{TlsConfiguration, Transport};
use tether_domain::DeviceId;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{ConfigError, FleetConfig, JobsTransport};
use crate::device::{self, DeviceSetup, DeviceState, JobsSetup};
use crate::report::{Received, Recorder, Sent, Summary};
use crate::tls::{self, TlsError};

/// Largest MQTT packet a device accepts: AWS IoT Core allows 128 KiB payloads; leave room for
/// the topic and properties.
const MAX_PACKET: u32 = 256 * 1024;

/// Why a fleet could not start, or a wait ended without its condition.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{not_ready} of {devices} devices were not connected and subscribed within {timeout:?}; {device} is {state}")]
    NotReady {
        devices: usize,
        not_ready: usize,
        timeout: Duration,
        /// The first device that was not ready, and where it stood.
        device: DeviceId,
        state: String,
    },
    #[error("device {device}: the broker refused a subscription: {reason} (on AWS IoT, check the device policy's iot:Subscribe and iot:Receive)")]
    SubscriptionRefused { device: DeviceId, reason: String },
    #[error("a device stopped while the fleet was waiting for it")]
    Stopped,
    #[error("the awaited condition did not hold within {timeout:?}; last counts:\n{summary}")]
    WaitTimedOut {
        timeout: Duration,
        summary: Box<Summary>,
    },
}

struct Member {
    id: DeviceId,
    state: watch::Receiver<DeviceState>,
    task: JoinHandle<()>,
}

/// Running devices. [`Fleet::shutdown`] stops them cleanly; dropping the fleet stops them too.
pub struct Fleet {
    members: Vec<Member>,
    recorder: Recorder,
    stop: watch::Sender<bool>,
}

/// The MQTT options of one device: client id = thing name, clean start, TLS when configured.
fn options(
    config: &FleetConfig,
    id: &DeviceId,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> MqttOptions {
    let mut options = MqttOptions::new(id.as_str(), config.broker.host.clone(), config.broker.port);
    options.set_keep_alive(config.keep_alive);
    options.set_clean_start(true);
    options.set_max_packet_size(Some(MAX_PACKET));
    // rumqttc sizes its in-flight table by this bound, 65,535 entries by default (megabytes per
    // device); AWS IoT Core allows 100 unacknowledged QoS 1 publishes per connection.
    options.set_outgoing_inflight_upper_limit(100);
    options.set_connection_timeout(config.connect_timeout.as_secs().max(1));
    // A reply follows the PUBACK of its request at once: without TCP_NODELAY, Nagle's
    // algorithm holds it until the broker's delayed ACK, tens of milliseconds later.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    if let Some(tls) = tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    options
}

/// How the devices take jobs; for HTTPS one iot-jobs-data client for the fleet, from the
/// configured SDK settings or the SDK's default chain (the environment).
async fn jobs_setup(config: &FleetConfig) -> JobsSetup {
    let jobs = &config.jobs;
    match jobs.transport {
        JobsTransport::Off => JobsSetup::Off,
        JobsTransport::Mqtt => JobsSetup::Mqtt {
            reply_timeout: jobs.reply_timeout,
        },
        JobsTransport::Https => {
            let sdk = match &jobs.sdk {
                Some(sdk) => sdk.clone(),
                None => {
                    aws_config::defaults(aws_config::BehaviorVersion::latest())
                        .load()
                        .await
                }
            };
            JobsSetup::Https {
                client: aws_sdk_iotjobsdataplane::Client::new(&sdk),
                poll_interval: jobs.poll_interval,
            }
        }
    }
}

impl Fleet {
    /// Connects every device of `config` and returns once all are subscribed, or fails with
    /// where the first unready device stood after `config.ready_timeout`.
    pub async fn start(config: FleetConfig) -> Result<Fleet, FleetError> {
        config.validate()?;
        let tls = match &config.tls {
            Some(files) => {
                let alpn = (config.broker.port == 443).then_some(tls::AWS_IOT_ALPN_443);
                Some(Arc::new(tls::client_config(files, alpn)?))
            }
            None => None,
        };
        let jobs = jobs_setup(&config).await;
        let recorder = Recorder::new(&config.devices, config.received_limit);
        let behaviours = Arc::new(config.behaviours.clone());
        let (stop, _) = watch::channel(false);
        let members = config
            .devices
            .iter()
            .map(|id| {
                let setup = DeviceSetup {
                    id: id.clone(),
                    options: options(&config, id, tls.as_ref()),
                    topics: config.topics.clone(),
                    target: config.commands_target,
                    behaviours: behaviours.clone(),
                    recorder: recorder.clone(),
                    backoff: config.backoff,
                    jobs: jobs.clone(),
                };
                let (state, task) = device::spawn(setup, stop.subscribe());
                Member {
                    id: id.clone(),
                    state,
                    task,
                }
            })
            .collect();
        let fleet = Fleet {
            members,
            recorder,
            stop,
        };
        tracing::info!(devices = config.devices.len(), broker = %config.broker, "devices connecting");
        match fleet.wait_ready(config.ready_timeout).await {
            Ok(()) => Ok(fleet),
            Err(err) => {
                fleet.shutdown().await;
                Err(err)
            }
        }
    }

    /// Waits until every device is connected and subscribed (again, after a drop).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), FleetError> {
        let deadline = Instant::now() + timeout;
        for member in &self.members {
            let mut state = member.state.clone();
            let waited = tokio::time::timeout_at(
                deadline,
                state.wait_for(|s| matches!(s, DeviceState::Ready | DeviceState::Refused(_))),
            )
            .await;
            let outcome = match waited {
                Ok(Ok(seen)) => Ok(seen.clone()),
                Ok(Err(_)) => Err(FleetError::Stopped),
                Err(_) => Err(self.not_ready(timeout)),
            };
            if let DeviceState::Refused(reason) = outcome? {
                return Err(FleetError::SubscriptionRefused {
                    device: member.id.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }

    fn not_ready(&self, timeout: Duration) -> FleetError {
        let unready: Vec<(&DeviceId, DeviceState)> = self
            .members
            .iter()
            .map(|m| (&m.id, m.state.borrow().clone()))
            .filter(|(_, s)| *s != DeviceState::Ready)
            .collect();
        let (device, state) = unready
            .first()
            .map(|(id, s)| ((*id).clone(), s.to_string()))
            .unwrap_or_else(|| (self.members[0].id.clone(), DeviceState::Ready.to_string()));
        FleetError::NotReady {
            devices: self.members.len(),
            not_ready: unready.len(),
            timeout,
            device,
            state,
        }
    }

    /// The devices, in the order they were configured.
    pub fn ids(&self) -> Vec<DeviceId> {
        self.members.iter().map(|m| m.id.clone()).collect()
    }

    /// Where each device stands now.
    pub fn states(&self) -> Vec<(DeviceId, DeviceState)> {
        self.members
            .iter()
            .map(|m| (m.id.clone(), m.state.borrow().clone()))
            .collect()
    }

    /// The counters so far.
    pub fn summary(&self) -> Summary {
        self.recorder.summary()
    }

    /// The messages received so far (the newest `received_limit` of them), oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.recorder.received()
    }

    /// The answers the devices sent so far (the newest `received_limit` of them), oldest first.
    pub fn sent(&self) -> Vec<Sent> {
        self.recorder.sent()
    }

    /// Waits until `condition` holds for the counters, re-checking on every change; fails after
    /// `timeout` with the last counts.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Summary) -> bool,
    ) -> Result<Summary, FleetError> {
        let deadline = Instant::now() + timeout;
        let mut changes = self.recorder.changes();
        loop {
            // Marked before reading, so a change between the read and the wait is not missed.
            changes.mark_unchanged();
            let summary = self.recorder.summary();
            if condition(&summary) {
                return Ok(summary);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(FleetError::WaitTimedOut {
                        timeout,
                        summary: Box::new(self.recorder.summary()),
                    })
                }
            }
        }
    }

    /// Disconnects every device (MQTT DISCONNECT), waits for them to stop and returns the
    /// final counts.
    pub async fn shutdown(mut self) -> Summary {
        self.stop.send_replace(true);
        for member in std::mem::take(&mut self.members) {
            if let Err(err) = member.task.await {
                tracing::warn!(device = %member.id, error = %err, "device task ended badly");
            }
        }
        self.recorder.summary()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
