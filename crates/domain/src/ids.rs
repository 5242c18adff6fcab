//! Validated identifiers.
//!
//! Every id that can end up in a topic name is a newtype that can only be built through
//! validation. The character sets are the AWS ones (thing names, command and execution ids), which
//! exclude every MQTT topic metacharacter (`/`, `+`, `#`), `$`, NUL and whitespace.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a piece of text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {reason}")]
pub struct IdError {
    /// Which kind of id was being validated (`deviceId`, `method`, ...).
    pub kind: &'static str,
    /// What is wrong with it.
    pub reason: IdProblem,
}

/// The ways an identifier can be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdProblem {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters long")]
    TooLong { max: usize },
    #[error("contains a character outside {allowed} at position {position}")]
    BadCharacter {
        allowed: &'static str,
        position: usize,
    },
}

/// The rules of one kind of identifier.
struct Rule {
    kind: &'static str,
    max: usize,
    allowed: &'static str,
    extra: &'static [u8],
}

impl Rule {
    fn check(&self, text: &str) -> Result<(), IdError> {
        let fail = |reason| IdError {
            kind: self.kind,
            reason,
        };
        if text.is_empty() {
            return Err(fail(IdProblem::Empty));
        }
        // Counted in bytes: every allowed character is ASCII, so a non-ASCII id fails on its
        // first non-ASCII byte below with the right position anyway.
        if text.len() > self.max {
            return Err(fail(IdProblem::TooLong { max: self.max }));
        }
        match text
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || self.extra.contains(&b)))
        {
            Some(position) => Err(fail(IdProblem::BadCharacter {
                allowed: self.allowed,
                position,
            })),
            None => Ok(()),
        }
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal, $allowed:literal, $extra:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            const RULE: Rule = Rule { kind: $kind, max: $max, allowed: $allowed, extra: $extra };

            /// Validates `text` and wraps it.
            pub fn parse(text: impl Into<String>) -> Result<Self, IdError> {
                let text = text.into();
                Self::RULE.check(&text)?;
                Ok(Self(text))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text, moved out.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Self::parse(text)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A device: an AWS IoT thing name, which is also the device's MQTT client id.
    /// 1–128 characters of `[a-zA-Z0-9:_-]`.
    DeviceId, "deviceId", 128, "[a-zA-Z0-9:_-]", b":_-"
);
id_type!(
    /// A direct-invocation method name, one topic level: 1–64 characters of `[a-zA-Z0-9_-]`.
    MethodName, "method", 64, "[a-zA-Z0-9_-]", b"_-"
);
id_type!(
    /// An AWS IoT command id: 1–64 characters of `[a-zA-Z0-9_-]`.
    CommandId, "commandId", 64, "[a-zA-Z0-9_-]", b"_-"
);
id_type!(
    /// An AWS IoT command execution id: 1–64 characters of `[a-zA-Z0-9_-]`.
    ExecutionId, "executionId", 64, "[a-zA-Z0-9_-]", b"_-"
);
id_type!(
    /// A direct invocation's id (also its MQTT 5 correlation data): 1–64 characters of
    /// `[a-zA-Z0-9_-]`.
    RequestId, "requestId", 64, "[a-zA-Z0-9_-]", b"_-"
);

id_type!(
    /// An AWS IoT job id: 1–64 characters of `[a-zA-Z0-9_-]`.
    JobId, "jobId", 64, "[a-zA-Z0-9_-]", b"_-"
);

/// Where Tether's commands live in the account's AWS IoT Commands: the API's `commandId` is
/// stored in AWS IoT as `{prefix}{commandId}` (`COMMAND_ID_PREFIX`, the template's
/// `CommandIdPrefix`), so the commands role can be scoped to `command/{prefix}*` and Tether
/// never lists, changes or records the account's other commands. An empty prefix maps ids
/// unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandScope {
    prefix: String,
}

impl CommandScope {
    /// Longest prefix: it takes from the 64 characters of an AWS command id.
    pub const MAX_PREFIX: usize = 20;

    /// A prefix of at most [`Self::MAX_PREFIX`] characters of `[a-zA-Z0-9_-]`.
    pub fn new(prefix: &str) -> Result<Self, IdError> {
        if prefix.is_empty() {
            return Ok(Self::default());
        }
        Rule {
            kind: "command id prefix",
            max: Self::MAX_PREFIX,
            allowed: "[a-zA-Z0-9_-]",
            extra: b"_-",
        }
        .check(prefix)?;
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The AWS IoT command id of an API command id; an id that would be too long for AWS
    /// with the prefix is refused (400).
    pub fn aws_id(&self, id: &CommandId) -> Result<String, crate::ApiError> {
        let aws = format!("{}{id}", self.prefix);
        if aws.len() > 64 {
            return Err(crate::ApiError::Validation(format!(
                "commandId must be at most {} characters (64 less the deployment's {}-character command id prefix)",
                64 - self.prefix.len(),
                self.prefix.len()
            )));
        }
        Ok(aws)
    }

    /// The API command id of an AWS IoT command id; `None` for a command outside the scope.
    pub fn api_id(&self, aws_id: &str) -> Option<CommandId> {
        aws_id
            .strip_prefix(&self.prefix)
            .and_then(|id| CommandId::parse(id).ok())
    }
}

/// Where Tether's jobs live in the account's AWS IoT Jobs, like [`CommandScope`] for commands:
/// the API's `jobId` is `{prefix}{jobId}` in AWS IoT (`JOB_ID_PREFIX`, the template's
/// `JobIdPrefix`), so the jobs role can be scoped to `job/{prefix}*` and Tether never lists or
/// changes the account's other jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobScope {
    prefix: String,
}

impl JobScope {
    /// A prefix of at most [`CommandScope::MAX_PREFIX`] characters of `[a-zA-Z0-9_-]`.
    pub fn new(prefix: &str) -> Result<Self, IdError> {
        CommandScope::new(prefix).map(|scope| Self {
            prefix: scope.prefix,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The AWS IoT job id of an API job id; too long with the prefix is a 400.
    pub fn aws_id(&self, id: &JobId) -> Result<String, crate::ApiError> {
        let aws = format!("{}{id}", self.prefix);
        if aws.len() > 64 {
            return Err(crate::ApiError::Validation(format!(
                "jobId must be at most {} characters (64 less the deployment's {}-character job id prefix)",
                64 - self.prefix.len(),
                self.prefix.len()
            )));
        }
        Ok(aws)
    }

    /// The API job id of an AWS IoT job id; `None` for a job outside the scope.
    pub fn api_id(&self, aws_id: &str) -> Option<JobId> {
        aws_id
            .strip_prefix(&self.prefix)
            .and_then(|id| JobId::parse(id).ok())
    }
}

impl RequestId {
    /// A fresh random request id: 32 lower-case hex digits (a v4 UUID without dashes).
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl JobId {
    /// A fresh random job id, a v4 UUID.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }
}

impl ExecutionId {
    /// A fresh random execution id, a v4 UUID like the ones AWS IoT hands out.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }
}

/// What an `Idempotency-Key` may be: 1 to 128 printable ASCII characters.
pub const IDEMPOTENCY_KEY_RULE: &str = "Idempotency-Key must be 1-128 printable ASCII characters";

/// Whether `key` is a valid `Idempotency-Key` ([`IDEMPOTENCY_KEY_RULE`]).
pub fn is_idempotency_key(key: &str) -> bool {
    (1..=128).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_device_ids_are_accepted() {
        for good in [
            "dev-1",
            "a",
            "Thing_01:kitchen",
            &"x".repeat(128),
            "0-9_A:z",
        ] {
            assert!(DeviceId::parse(good).is_ok(), "{good:?} should be valid");
        }
    }

    #[test]
    fn hostile_device_ids_are_refused() {
        let long = "x".repeat(129);
        for bad in [
            "",
            "a/b",
            "a+",
            "#",
            "$aws",
            "dev 1",
            "dev\t1",
            "dev\n",
            "nul\0",
            "dev.1",
            "dév",
            "../x",
            "a/+/#",
            "dev\u{202e}",
            &long,
            "$share/g/x",
            "a*b",
            "a?b",
            "日本",
        ] {
            assert!(DeviceId::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn method_and_command_ids_refuse_colons_and_topic_characters() {
        for bad in ["a:b", "a/b", "+", "#", "$x", "a b", "", &"m".repeat(65)] {
            assert!(MethodName::parse(bad).is_err(), "method {bad:?}");
            assert!(CommandId::parse(bad).is_err(), "command {bad:?}");
            assert!(ExecutionId::parse(bad).is_err(), "execution {bad:?}");
            assert!(RequestId::parse(bad).is_err(), "request {bad:?}");
        }
        assert!(MethodName::parse("setLight_v2-beta").is_ok());
        assert!(CommandId::parse("m".repeat(64)).is_ok());
    }

    #[test]
    fn a_command_scope_maps_ids_both_ways_and_keeps_out_what_is_not_its_own() {
        let scope = CommandScope::new("tether-").unwrap();
        let id = CommandId::parse("reboot").unwrap();
        assert_eq!(scope.aws_id(&id).unwrap(), "tether-reboot");
        assert_eq!(scope.api_id("tether-reboot"), Some(id));
        assert_eq!(scope.api_id("reboot"), None, "another team's command");
        assert_eq!(scope.api_id("tether-"), None);
        assert!(scope
            .aws_id(&CommandId::parse("m".repeat(57)).unwrap())
            .is_ok());
        assert!(scope
            .aws_id(&CommandId::parse("m".repeat(58)).unwrap())
            .is_err());
        let open = CommandScope::new("").unwrap();
        assert_eq!(open.api_id("reboot").unwrap().as_str(), "reboot");
        for bad in ["a/b", "a b", &"p".repeat(21)] {
            assert!(CommandScope::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_say_which_id_and_what_is_wrong() {
        let err = DeviceId::parse("a/b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "deviceId contains a character outside [a-zA-Z0-9:_-] at position 1"
        );
        let err = MethodName::parse("").unwrap_err();
        assert_eq!(err.to_string(), "method must not be empty");
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<DeviceId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<DeviceId>("\"no/slash\"").is_err());
    }

    #[test]
    fn random_ids_are_valid_and_distinct() {
        let a = RequestId::random();
        let b = RequestId::random();
        assert_ne!(a, b);
        assert!(RequestId::parse(a.as_str()).is_ok());
        let e = ExecutionId::random();
        assert_eq!(e.as_str().len(), 36);
        assert!(ExecutionId::parse(e.as_str()).is_ok());
    }
}
