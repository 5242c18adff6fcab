//! The functions' configuration: read once at start from the environment; a missing or
//! malformed variable stops the function before it takes any event.

use std::time::Duration;

use tether_domain::topics::InvokeTopics;
use tether_domain::{CommandScope, JobScope};

/// How `invoke` decides that a device is offline before publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectivityCheck {
    /// The presence record that `ingest` keeps from presence events (default).
    Presence,
    /// iot-data GetConnection (where the region offers it).
    Iot,
    /// No check: publish and wait.
    Off,
}

/// How `invoke` hands a request to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// iot-data SendDirectMessage with confirmation (default): straight to the device's MQTT
    /// client, answered once the client acknowledged it (PUBACK); a client that is not
    /// connected is known at once, without a presence read.
    Direct,
    /// iot-data Publish on the request topic, after the connectivity check: for regions or
    /// accounts without direct messaging. Whether the device got the request is not known.
    Publish,
}

/// Why the configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {problem}")]
    Invalid { name: &'static str, problem: String },
}

/// Everything the functions read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `TABLE_NAME`: the DynamoDB table.
    pub table: String,
    /// `TOPIC_PREFIX` (default `tether`): the direct-invocation topics.
    pub topics: InvokeTopics,
    /// `CONNECTIVITY_CHECK`: `presence` (default), `iot` or `off` (with `DELIVERY=publish`).
    pub connectivity: ConnectivityCheck,
    /// `DELIVERY`: `direct` (default) or `publish`.
    pub delivery: Delivery,
    /// `RETENTION_DAYS` (default 30): how long records are kept.
    pub retention: Duration,
    /// `COMMAND_ID_PREFIX` (default empty): where Tether's commands live in AWS IoT.
    pub commands: CommandScope,
    /// `JOB_ID_PREFIX` (default empty): where Tether's jobs live in AWS IoT.
    pub jobs: JobScope,
    /// `arn:aws:iot:{AWS_REGION}:{ACCOUNT_ID}`, to name things in AWS IoT; `None` without
    /// `ACCOUNT_ID` (only the `jobs` function needs it).
    pub iot_arn_prefix: Option<String>,
    /// `REPLY_INBOX` (unset: none): where each `invoke` instance opens its MQTT inbox, which
    /// replies reach directly (`mqtt://host:port`); without it, replies come by the reply rule
    /// and the record is polled.
    pub reply_inbox: Option<String>,
    /// `WARM_UP` (`on`, the default, or `off`): whether `invoke` opens its connections to
    /// DynamoDB and iot-data during init with a request whose answer it ignores, so the first
    /// call does not pay their TCP and TLS handshakes.
    pub warm_up: bool,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let table = lookup("TABLE_NAME")
            .filter(|t| !t.is_empty())
            .ok_or(ConfigError::Missing("TABLE_NAME"))?;
        let prefix =
            lookup("TOPIC_PREFIX").unwrap_or_else(|| InvokeTopics::DEFAULT_PREFIX.to_owned());
        let topics = InvokeTopics::new(&prefix).map_err(|e| ConfigError::Invalid {
            name: "TOPIC_PREFIX",
            problem: e.to_string(),
        })?;
        let connectivity = match lookup("CONNECTIVITY_CHECK").as_deref() {
            None | Some("presence") => ConnectivityCheck::Presence,
            Some("iot") => ConnectivityCheck::Iot,
            Some("off") => ConnectivityCheck::Off,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "CONNECTIVITY_CHECK",
                    problem: format!("{other:?} is not presence, iot or off"),
                })
            }
        };
        let delivery = match lookup("DELIVERY").as_deref() {
            None | Some("direct") => Delivery::Direct,
            Some("publish") => Delivery::Publish,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "DELIVERY",
                    problem: format!("{other:?} is not direct or publish"),
                })
            }
        };
        let retention_days: u64 = match lookup("RETENTION_DAYS") {
            None => 30,
            Some(text) => {
                text.parse()
                    .ok()
                    .filter(|d| *d >= 1)
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "RETENTION_DAYS",
                        problem: format!("{text:?} is not a whole number of days >= 1"),
                    })?
            }
        };
        let commands = CommandScope::new(&lookup("COMMAND_ID_PREFIX").unwrap_or_default())
            .map_err(|e| ConfigError::Invalid {
                name: "COMMAND_ID_PREFIX",
                problem: e.to_string(),
            })?;
        let jobs = JobScope::new(&lookup("JOB_ID_PREFIX").unwrap_or_default()).map_err(|e| {
            ConfigError::Invalid {
                name: "JOB_ID_PREFIX",
                problem: e.to_string(),
            }
        })?;
        let iot_arn_prefix = match lookup("ACCOUNT_ID").filter(|a| !a.is_empty()) {
            None => None,
            Some(account) if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) => {
                let region = lookup("AWS_REGION").ok_or(ConfigError::Missing("AWS_REGION"))?;
                Some(format!("arn:aws:iot:{region}:{account}"))
            }
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "ACCOUNT_ID",
                    problem: format!("{other:?} is not a 12-digit AWS account id"),
                })
            }
        };
        let reply_inbox = lookup("REPLY_INBOX").filter(|v| !v.is_empty());
        let warm_up = match lookup("WARM_UP").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "WARM_UP",
                    problem: format!("{other:?} is not on or off"),
                })
            }
        };
        Ok(Self {
            reply_inbox,
            warm_up,
            table,
            topics,
            connectivity,
            delivery,
            retention: Duration::from_secs(retention_days * 24 * 3600),
            commands,
            jobs,
            iot_arn_prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_need_only_the_table() {
        let config = from(&[("TABLE_NAME", "t")]).unwrap();
        assert_eq!(config.topics.prefix(), "tether");
        assert_eq!(config.connectivity, ConnectivityCheck::Presence);
        assert_eq!(config.delivery, Delivery::Direct);
        assert_eq!(config.retention, Duration::from_secs(30 * 86_400));
        assert!(config.warm_up);
    }

    #[test]
    fn missing_and_malformed_variables_are_named() {
        assert_eq!(from(&[]).unwrap_err(), ConfigError::Missing("TABLE_NAME"));
        let bad_prefix = from(&[("TABLE_NAME", "t"), ("TOPIC_PREFIX", "a/+")]).unwrap_err();
        assert!(bad_prefix.to_string().contains("TOPIC_PREFIX"));
        assert!(from(&[("TABLE_NAME", "t"), ("CONNECTIVITY_CHECK", "maybe")]).is_err());
        assert!(from(&[("TABLE_NAME", "t"), ("RETENTION_DAYS", "0")]).is_err());
        assert!(from(&[("TABLE_NAME", "t"), ("DELIVERY", "carrier-pigeon")]).is_err());
        let publish = from(&[("TABLE_NAME", "t"), ("DELIVERY", "publish")]).unwrap();
        assert_eq!(publish.delivery, Delivery::Publish);
        assert!(from(&[("TABLE_NAME", "t"), ("COMMAND_ID_PREFIX", "a/b")]).is_err());
        let scoped = from(&[("TABLE_NAME", "t"), ("COMMAND_ID_PREFIX", "tether-")]).unwrap();
        assert_eq!(scoped.commands.prefix(), "tether-");
        let jobs = from(&[
            ("TABLE_NAME", "t"),
            ("JOB_ID_PREFIX", "tj-"),
            ("ACCOUNT_ID", "123456789012"),
            ("AWS_REGION", "eu-west-1"),
        ])
        .unwrap();
        assert_eq!(jobs.jobs.prefix(), "tj-");
        assert_eq!(
            jobs.iot_arn_prefix.as_deref(),
            Some("arn:aws:iot:eu-west-1:123456789012")
        );
        assert!(from(&[("TABLE_NAME", "t"), ("ACCOUNT_ID", "12")]).is_err());
        let cold = from(&[("TABLE_NAME", "t"), ("WARM_UP", "off")]).unwrap();
        assert!(!cold.warm_up);
        let bad_warm_up = from(&[("TABLE_NAME", "t"), ("WARM_UP", "maybe")]).unwrap_err();
        assert!(bad_warm_up.to_string().contains("WARM_UP"));
    }
}
