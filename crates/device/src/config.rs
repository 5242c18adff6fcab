//! What a fleet needs to start: where the broker is, how to authenticate, which devices, which
//! topics and behaviours, how the devices reach AWS IoT Jobs, and the timings of readiness and
//! reconnection.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tether_domain::topics::{InvokeTopics, TargetKind};
use tether_domain::{DeviceId, IdError};

use crate::behaviour::Behaviours;

/// The shortest keep-alive rumqttc accepts.
pub const MIN_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("broker {url:?}: {problem} (expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT])")]
    BadBrokerUrl { url: String, problem: &'static str },
    #[error("broker {0} uses TLS (mqtts://): give --cert, --key and --ca")]
    TlsFilesMissing(String),
    #[error("certificate files were given but broker {0} is plain TCP: use mqtts://")]
    TlsFilesUnused(String),
    #[error("keep-alive {0:?} is too short: MQTT clients here need at least 5 s (AWS IoT Core allows 30 s to 1200 s)")]
    KeepAliveTooShort(Duration),
    #[error("no devices to start")]
    NoDevices,
    #[error("device {0} is listed twice (two connections with one client id evict each other)")]
    DuplicateDevice(DeviceId),
    #[error("the Jobs {what} must be longer than zero")]
    ZeroJobsTiming { what: &'static str },
    #[error("device id {text:?} from prefix and number: {source}")]
    BadDeviceId {
        text: String,
        #[source]
        source: IdError,
    },
}

/// The broker to connect to: `mqtt://HOST[:PORT]` (plain TCP, default port 1883) or
/// `mqtts://HOST[:PORT]` (TLS, default port 8883). A bare `HOST:PORT` is plain TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerUrl {
    /// A plain-TCP broker at `addr` (a local broker, e.g. `local-iot`'s).
    pub fn tcp(addr: SocketAddr) -> Self {
        Self {
            host: addr.ip().to_string(),
            port: addr.port(),
            tls: false,
        }
    }
}

impl FromStr for BrokerUrl {
    type Err = ConfigError;

    fn from_str(url: &str) -> Result<Self, ConfigError> {
        let bad = |problem| ConfigError::BadBrokerUrl {
            url: url.to_owned(),
            problem,
        };
        let (tls, rest) = match url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => (false, rest),
            Some(("mqtts" | "ssl", rest)) => (true, rest),
            Some(_) => return Err(bad("unknown scheme")),
            None => (false, url),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(bad("only a host and a port are allowed"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        // An IPv6 literal is written in brackets: mqtt://[::1]:1883.
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in an IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after the IPv6 address")),
            };
            (host, port)
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port = match port {
            None => default_port,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The PEM files of mutual TLS with AWS IoT Core: the device certificate, its private key, and
/// the CA that signed the server certificate (Amazon Root CA 1 for `iot:Data-ATS` endpoints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Waits between reconnection attempts: `first`, doubling up to `max`, each with up to 25 %
/// random jitter so a fleet does not reconnect in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (0 for the first retry), jitter included.
    pub fn wait(&self, attempt: u32) -> Duration {
        let base = self
            .first
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(self.max);
        let jitter_ms = u64::try_from(base.as_millis() / 4).unwrap_or(0);
        base + Duration::from_millis(fastrand::u64(0..=jitter_ms))
    }
}

/// How the devices reach AWS IoT Jobs (`docs/aws-iot-reference.md` §3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JobsTransport {
    /// The MQTT device API on the devices' own connections: `$aws/things/{thing}/jobs/...`.
    #[default]
    Mqtt,
    /// The HTTPS device API (`iot-jobs-data`: StartNextPendingJobExecution,
    /// UpdateJobExecution), polled.
    Https,
    /// No Jobs: the devices neither subscribe to nor ask for jobs.
    Off,
}

/// The devices' Jobs settings.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    pub transport: JobsTransport,
    /// HTTPS: the AWS SDK configuration (endpoint, region, credentials). `None` loads the
    /// SDK's default chain: the environment (`AWS_ENDPOINT_URL_IOT_JOBS_DATA_PLANE`,
    /// `AWS_REGION`, credentials), the shared config files, and so on.
    pub sdk: Option<aws_config::SdkConfig>,
    /// HTTPS: how long a device waits before asking again when nothing was pending (or the
    /// service failed), and between two checks of an execution it does not finish.
    pub poll_interval: Duration,
    /// MQTT: how long a device waits for the answer to one of its Jobs requests before it gives
    /// up on it (and asks for the next pending job again).
    pub reply_timeout: Duration,
}

impl Default for JobsConfig {
    /// MQTT, a 1 s poll interval (for HTTPS) and a 10 s answer timeout.
    fn default() -> Self {
        Self {
            transport: JobsTransport::Mqtt,
            sdk: None,
            poll_interval: Duration::from_secs(1),
            reply_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything [`crate::Fleet::start`] needs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub broker: BrokerUrl,
    /// Required for an `mqtts://` broker, refused for `mqtt://`.
    pub tls: Option<TlsFiles>,
    /// One MQTT connection each; the id is the client id and the thing name.
    pub devices: Vec<DeviceId>,
    /// The direct-invocation topics (prefix `tether` by default).
    pub topics: InvokeTopics,
    /// Whether Commands address the devices as things or as bare MQTT clients.
    pub commands_target: TargetKind,
    pub behaviours: Behaviours,
    /// How the devices take AWS IoT Jobs (MQTT by default).
    pub jobs: JobsConfig,
    pub keep_alive: Duration,
    /// How long one connection attempt (TCP, TLS, CONNECT/CONNACK) may take.
    pub connect_timeout: Duration,
    /// How long [`crate::Fleet::start`] waits for every device to be connected and subscribed.
    pub ready_timeout: Duration,
    pub backoff: Backoff,
    /// How many received messages the fleet keeps for [`crate::Fleet::received`] (the oldest go
    /// first); counters are kept regardless.
    pub received_limit: usize,
}

impl FleetConfig {
    /// `devices` on `broker` with the defaults: prefix `tether`, Commands to things, Jobs over
    /// MQTT, every method echoing, 30 s keep-alive and readiness timeout.
    pub fn new(broker: BrokerUrl, devices: Vec<DeviceId>) -> Self {
        Self {
            broker,
            tls: None,
            devices,
            topics: InvokeTopics::default(),
            commands_target: TargetKind::Thing,
            behaviours: Behaviours::default(),
            jobs: JobsConfig::default(),
            keep_alive: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            ready_timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
            received_limit: 10_000,
        }
    }

    /// `devices` on a plain-TCP broker at `addr`, e.g. `LocalIot::mqtt_addr()`.
    pub fn local(addr: SocketAddr, devices: Vec<DeviceId>) -> Self {
        Self::new(BrokerUrl::tcp(addr), devices)
    }

    pub fn with_behaviours(mut self, behaviours: Behaviours) -> Self {
        self.behaviours = behaviours;
        self
    }

    /// Checks what can be checked before connecting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (self.broker.tls, &self.tls) {
            (true, None) => return Err(ConfigError::TlsFilesMissing(self.broker.to_string())),
            (false, Some(_)) => return Err(ConfigError::TlsFilesUnused(self.broker.to_string())),
            _ => {}
        }
        if self.keep_alive < MIN_KEEP_ALIVE {
            return Err(ConfigError::KeepAliveTooShort(self.keep_alive));
        }
        if self.devices.is_empty() {
            return Err(ConfigError::NoDevices);
        }
        if self.jobs.poll_interval.is_zero() {
            return Err(ConfigError::ZeroJobsTiming {
                what: "poll interval",
            });
        }
        if self.jobs.reply_timeout.is_zero() {
            return Err(ConfigError::ZeroJobsTiming {
                what: "answer timeout",
            });
        }
        let mut seen = std::collections::HashSet::new();
        for device in &self.devices {
            if !seen.insert(device) {
                return Err(ConfigError::DuplicateDevice(device.clone()));
            }
        }
        Ok(())
    }
}

/// `{prefix}1` to `{prefix}{count}`: `numbered("dev-", 3)` is dev-1, dev-2, dev-3.
pub fn numbered(prefix: &str, count: usize) -> Result<Vec<DeviceId>, ConfigError> {
    (1..=count)
        .map(|n| {
            let text = format!("{prefix}{n}");
            DeviceId::parse(text.clone())
                .map_err(|source| ConfigError::BadDeviceId { text, source })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> BrokerUrl {
        text.parse().unwrap()
    }

    #[test]
    fn broker_urls_give_scheme_host_and_default_ports() {
        assert_eq!(
            url("mqtt://127.0.0.1:1884"),
            BrokerUrl {
                host: "127.0.0.1".into(),
                port: 1884,
                tls: false
            }
        );
        assert_eq!(url("mqtt://localhost").port, 1883);
        let aws = url("mqtts://abc123-ats.iot.eu-west-1.amazonaws.com");
        assert!(aws.tls);
        assert_eq!(aws.port, 8883);
        assert_eq!(aws.host, "abc123-ats.iot.eu-west-1.amazonaws.com");
        assert!(!url("127.0.0.1:1883").tls);
        assert_eq!(url("mqtt://[::1]:1999").host, "::1");
        assert_eq!(url("mqtt://[::1]:1999").to_string(), "mqtt://[::1]:1999");
        assert_eq!(url("mqtts://h/").to_string(), "mqtts://h:8883");
    }

    #[test]
    fn bad_broker_urls_are_refused_with_the_reason() {
        for (text, problem) in [
            ("http://h:80", "unknown scheme"),
            ("mqtt://", "missing host"),
            ("mqtt://h:0", "the port must be"),
            ("mqtt://h:99999", "the port must be"),
            ("mqtt://h:1883/path", "only a host and a port"),
            ("mqtt://user@h", "only a host and a port"),
            ("mqtt://[::1", "unclosed ["),
        ] {
            let err = text.parse::<BrokerUrl>().unwrap_err().to_string();
            assert!(err.contains(problem), "{text}: {err}");
        }
    }

    #[test]
    fn tls_files_must_match_the_scheme() {
        let devices = numbered("d-", 1).unwrap();
        let files = TlsFiles {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            ca: "ca.pem".into(),
        };
        let tls_without_files = FleetConfig::new(url("mqtts://h"), devices.clone());
        let mut tcp_with_files = FleetConfig::new(url("mqtt://h"), devices.clone());
        tcp_with_files.tls = Some(files.clone());
        let mut good = FleetConfig::new(url("mqtts://h"), devices);
        good.tls = Some(files);

        assert_eq!(
            tls_without_files.validate(),
            Err(ConfigError::TlsFilesMissing("mqtts://h:8883".into()))
        );
        assert_eq!(
            tcp_with_files.validate(),
            Err(ConfigError::TlsFilesUnused("mqtt://h:1883".into()))
        );
        assert_eq!(good.validate(), Ok(()));
    }

    #[test]
    fn devices_are_numbered_from_one_and_must_be_distinct() {
        let devices = numbered("dev-", 3).unwrap();
        let mut twice = devices.clone();
        twice.push(devices[0].clone());

        assert_eq!(
            devices.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
            ["dev-1", "dev-2", "dev-3"]
        );
        assert!(matches!(
            numbered("bad/", 1),
            Err(ConfigError::BadDeviceId { .. })
        ));
        assert_eq!(
            FleetConfig::new(url("mqtt://h"), twice).validate(),
            Err(ConfigError::DuplicateDevice(devices[0].clone()))
        );
        assert_eq!(
            FleetConfig::new(url("mqtt://h"), Vec::new()).validate(),
            Err(ConfigError::NoDevices)
        );
    }

    #[test]
    fn jobs_go_over_mqtt_by_default_and_their_timings_must_not_be_zero() {
        let mut config = FleetConfig::new(url("mqtt://h"), numbered("d-", 1).unwrap());
        assert_eq!(config.jobs.transport, JobsTransport::Mqtt);

        config.jobs.poll_interval = Duration::ZERO;

        assert_eq!(
            config.validate(),
            Err(ConfigError::ZeroJobsTiming {
                what: "poll interval"
            })
        );
    }

    #[test]
    fn a_keep_alive_under_five_seconds_is_refused() {
        let mut config = FleetConfig::new(url("mqtt://h"), numbered("d-", 1).unwrap());
        config.keep_alive = Duration::from_secs(1);

        assert_eq!(
            config.validate(),
            Err(ConfigError::KeepAliveTooShort(Duration::from_secs(1)))
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum_with_bounded_jitter() {
        let backoff = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };

        let waits: Vec<Duration> = (0..6).map(|attempt| backoff.wait(attempt)).collect();

        let within = |d: Duration, base: u64| {
            (Duration::from_millis(base)..=Duration::from_millis(base + base / 4)).contains(&d)
        };
        assert!(within(waits[0], 100), "{waits:?}");
        assert!(within(waits[1], 200), "{waits:?}");
        assert!(within(waits[2], 400), "{waits:?}");
        assert!(waits[3..].iter().all(|d| within(*d, 500)), "{waits:?}");
    }
}
