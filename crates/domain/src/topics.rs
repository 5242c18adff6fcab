//! Every MQTT topic Tether publishes or listens to, built from validated ids and parsed back.
//!
//! Builders take only validated ids, so a built topic always has exactly the levels intended.
//! Parsers are strict: a topic with a wrong level count, a wrong fixed level or an invalid id is
//! an error, never a best guess.

use std::fmt;

use crate::ids::{CommandId, DeviceId, ExecutionId, IdError, IdProblem, MethodName, RequestId};
use crate::status::{ExecutionStatus, Lifecycle};

/// Why a topic could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic {topic:?} is not a {expected} topic")]
    Unexpected {
        topic: String,
        expected: &'static str,
    },
    #[error("topic {topic:?}: {source}")]
    BadId {
        topic: String,
        #[source]
        source: IdError,
    },
    #[error(
        "topic prefix {0:?} must be one or more levels of [a-zA-Z0-9_-] and must not start with $"
    )]
    BadPrefix(String),
}

fn unexpected(topic: &str, expected: &'static str) -> TopicError {
    TopicError::Unexpected {
        topic: topic.to_owned(),
        expected,
    }
}

fn id<T>(topic: &str, parsed: Result<T, IdError>) -> Result<T, TopicError> {
    parsed.map_err(|source| TopicError::BadId {
        topic: topic.to_owned(),
        source,
    })
}

/// The reply space of one waiting `invoke` instance: its MQTT client id, and the last level of
/// the reply topics it hands devices (`{prefix}/replies/{deviceId}/{requestId}/{inbox}`), so
/// each instance subscribes to its own replies only. `tether-invoke-` and 1 to 32 lower-case
/// letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Inbox(String);

impl Inbox {
    /// Every inbox, and so every instance's client id, starts with this.
    pub const CLIENT_PREFIX: &'static str = "tether-invoke-";

    /// A fresh inbox: the prefix and 20 random hex digits.
    pub fn random() -> Self {
        let hex = uuid::Uuid::new_v4().simple().to_string();
        Self(format!("{}{}", Self::CLIENT_PREFIX, &hex[..20]))
    }

    pub fn parse(text: &str) -> Result<Self, IdError> {
        let fail = |reason| IdError {
            kind: "inbox",
            reason,
        };
        let Some(rest) = text.strip_prefix(Self::CLIENT_PREFIX) else {
            return Err(fail(IdProblem::BadCharacter {
                allowed: "tether-invoke- and [a-z0-9]",
                position: 0,
            }));
        };
        if rest.is_empty() {
            return Err(fail(IdProblem::Empty));
        }
        if rest.len() > 32 {
            return Err(fail(IdProblem::TooLong {
                max: Self::CLIENT_PREFIX.len() + 32,
            }));
        }
        if let Some(at) = rest
            .bytes()
            .position(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit()))
        {
            return Err(fail(IdProblem::BadCharacter {
                allowed: "[a-z0-9]",
                position: Self::CLIENT_PREFIX.len() + at,
            }));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The direct-invocation topics under a configurable prefix (default `tether`):
/// - request: `{prefix}/devices/{deviceId}/invoke/{method}/{requestId}`
/// - reply:   `{prefix}/replies/{deviceId}/{requestId}`, or with the [`Inbox`] of the waiting
///   instance as a last level: `{prefix}/replies/{deviceId}/{requestId}/{inbox}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeTopics {
    prefix: String,
    prefix_levels: usize,
}

impl Default for InvokeTopics {
    fn default() -> Self {
        Self {
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            prefix_levels: 1,
        }
    }
}

/// A parsed direct-invocation request topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTopic {
    pub device: DeviceId,
    pub method: MethodName,
    pub request_id: RequestId,
}

/// A parsed direct-invocation reply topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTopic {
    pub device: DeviceId,
    pub request_id: RequestId,
    /// The waiting instance's inbox, when the reply went to it.
    pub inbox: Option<Inbox>,
}

impl InvokeTopics {
    pub const DEFAULT_PREFIX: &'static str = "tether";

    /// Checks the prefix: levels of `[a-zA-Z0-9_-]`, so it can never hold a wildcard or start
    /// a reserved `$` topic.
    pub fn new(prefix: &str) -> Result<Self, TopicError> {
        let levels: Vec<&str> = prefix.split('/').collect();
        let ok = levels.iter().all(|level| {
            !level.is_empty()
                && level
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        if !ok {
            return Err(TopicError::BadPrefix(prefix.to_owned()));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            prefix_levels: levels.len(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn request(
        &self,
        device: &DeviceId,
        method: &MethodName,
        request_id: &RequestId,
    ) -> String {
        format!(
            "{}/devices/{device}/invoke/{method}/{request_id}",
            self.prefix
        )
    }

    /// What a device subscribes to for its own requests.
    pub fn request_filter(&self, device: &DeviceId) -> String {
        format!("{}/devices/{device}/invoke/+/+", self.prefix)
    }

    /// The reply topic of a request: the topic-derived one (MQTT 3.1.1 devices answer there),
    /// or the one that also reaches the waiting instance's `inbox`.
    pub fn reply(&self, device: &DeviceId, request_id: &RequestId) -> String {
        format!("{}/replies/{device}/{request_id}", self.prefix)
    }

    /// The response topic a request names when an instance waits on `inbox`.
    pub fn reply_to(&self, device: &DeviceId, request_id: &RequestId, inbox: &Inbox) -> String {
        format!("{}/replies/{device}/{request_id}/{inbox}", self.prefix)
    }

    /// What the reply rule selects: every device's replies, with or without an inbox.
    pub fn reply_filter(&self) -> String {
        format!("{}/replies/+/+/#", self.prefix)
    }

    /// What an instance subscribes to: the replies sent to its inbox, from any device.
    pub fn inbox_filter(&self, inbox: &Inbox) -> String {
        format!("{}/replies/+/+/{inbox}", self.prefix)
    }

    /// The levels after the prefix, or `None` when the prefix does not match.
    fn rest<'t>(&self, topic: &'t str) -> Option<Vec<&'t str>> {
        let levels: Vec<&str> = topic.split('/').collect();
        if levels.len() < self.prefix_levels
            || levels[..self.prefix_levels].join("/") != self.prefix
        {
            return None;
        }
        Some(levels[self.prefix_levels..].to_vec())
    }

    pub fn parse_request(&self, topic: &str) -> Result<RequestTopic, TopicError> {
        match self.rest(topic).as_deref() {
            Some(["devices", device, "invoke", method, request_id]) => Ok(RequestTopic {
                device: id(topic, DeviceId::parse(*device))?,
                method: id(topic, MethodName::parse(*method))?,
                request_id: id(topic, RequestId::parse(*request_id))?,
            }),
            _ => Err(unexpected(topic, "direct-invoke request")),
        }
    }

    pub fn parse_reply(&self, topic: &str) -> Result<ReplyTopic, TopicError> {
        match self.rest(topic).as_deref() {
            Some(["replies", device, request_id]) => Ok(ReplyTopic {
                device: id(topic, DeviceId::parse(*device))?,
                request_id: id(topic, RequestId::parse(*request_id))?,
                inbox: None,
            }),
            Some(["replies", device, request_id, inbox]) => Ok(ReplyTopic {
                device: id(topic, DeviceId::parse(*device))?,
                request_id: id(topic, RequestId::parse(*request_id))?,
                inbox: Some(id(topic, Inbox::parse(inbox))?),
            }),
            _ => Err(unexpected(topic, "direct-invoke reply")),
        }
    }
}

/// Whether a Commands target is a registered thing or a bare MQTT client.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    #[default]
    Thing,
    Client,
}

impl TargetKind {
    /// The topic level: `things` or `clients`.
    pub fn topic_level(self) -> &'static str {
        match self {
            TargetKind::Thing => "things",
            TargetKind::Client => "clients",
        }
    }

    /// The ARN resource type: `thing` or `client`.
    pub fn arn_type(self) -> &'static str {
        match self {
            TargetKind::Thing => "thing",
            TargetKind::Client => "client",
        }
    }

    fn from_topic_level(level: &str) -> Option<Self> {
        match level {
            "things" => Some(TargetKind::Thing),
            "clients" => Some(TargetKind::Client),
            _ => None,
        }
    }
}

/// The target of an IoT ARN (`arn:aws:iot:{region}:{account}:thing/{name}` or `.../client/{id}`),
/// when its id is a valid device id.
pub fn target_from_arn(arn: &str) -> Option<(TargetKind, DeviceId)> {
    let resource = arn
        .splitn(6, ':')
        .nth(5)
        .filter(|_| arn.starts_with("arn:") && arn.split(':').nth(2) == Some("iot"))?;
    let (kind, id) = resource.split_once('/')?;
    let kind = match kind {
        "thing" => TargetKind::Thing,
        "client" => TargetKind::Client,
        _ => return None,
    };
    Some((kind, DeviceId::parse(id).ok()?))
}

/// How a Commands request payload is labelled: it picks the request topic's last level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// `application/json`: `.../request/json`
    Json,
    /// `application/cbor`: `.../request/cbor`
    Cbor,
    /// Anything else: `.../request`, the type travels only as the MQTT 5 content type.
    Other,
}

impl PayloadFormat {
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        let essence = content_type
            .map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        match essence.as_str() {
            "application/json" => PayloadFormat::Json,
            "application/cbor" => PayloadFormat::Cbor,
            _ => PayloadFormat::Other,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            PayloadFormat::Json => "/json",
            PayloadFormat::Cbor => "/cbor",
            PayloadFormat::Other => "",
        }
    }
}

/// The encodings a device may answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    Json,
    Cbor,
}

/// What a `$aws/commands/...` topic is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandAction {
    Request(PayloadFormat),
    Response(ResponseFormat),
    Accepted,
    Rejected,
}

/// A parsed `$aws/commands/{things|clients}/{id}/executions/{executionId}/...` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTopic {
    pub kind: TargetKind,
    pub device: DeviceId,
    pub execution: ExecutionId,
    pub action: CommandAction,
}

impl CommandTopic {
    pub fn new(
        kind: TargetKind,
        device: DeviceId,
        execution: ExecutionId,
        action: CommandAction,
    ) -> Self {
        Self {
            kind,
            device,
            execution,
            action,
        }
    }

    /// Where the cloud publishes a request, or where the device answers.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let levels: Vec<&str> = topic.split('/').collect();
        let (kind, device, execution, tail) = match levels.as_slice() {
            ["$aws", "commands", kind, device, "executions", execution, tail @ ..] => {
                (*kind, *device, *execution, tail)
            }
            _ => return Err(unexpected(topic, "AWS IoT Commands")),
        };
        let kind = TargetKind::from_topic_level(kind)
            .ok_or_else(|| unexpected(topic, "AWS IoT Commands"))?;
        let action = match tail {
            ["request"] => CommandAction::Request(PayloadFormat::Other),
            ["request", "json"] => CommandAction::Request(PayloadFormat::Json),
            ["request", "cbor"] => CommandAction::Request(PayloadFormat::Cbor),
            ["response", "json"] => CommandAction::Response(ResponseFormat::Json),
            ["response", "cbor"] => CommandAction::Response(ResponseFormat::Cbor),
            ["response", "accepted", "json"] => CommandAction::Accepted,
            ["response", "rejected", "json"] => CommandAction::Rejected,
            _ => return Err(unexpected(topic, "AWS IoT Commands")),
        };
        let device = match kind {
            // A client id is not a thing name, but Tether only addresses clients whose ids
            // follow the thing-name rules, so one type serves both.
            TargetKind::Thing | TargetKind::Client => id(topic, DeviceId::parse(device))?,
        };
        let execution = id(topic, ExecutionId::parse(execution))?;
        Ok(Self {
            kind,
            device,
            execution,
            action,
        })
    }

    /// The filter a device subscribes to for all its requests, in every format.
    pub fn request_filter(kind: TargetKind, device: &DeviceId) -> String {
        format!(
            "$aws/commands/{}/{device}/executions/+/request/#",
            kind.topic_level()
        )
    }

    /// The filters for the accepted and rejected acknowledgements of all executions.
    pub fn ack_filters(kind: TargetKind, device: &DeviceId) -> [String; 2] {
        let base = format!(
            "$aws/commands/{}/{device}/executions/+/response",
            kind.topic_level()
        );
        [
            format!("{base}/accepted/json"),
            format!("{base}/rejected/json"),
        ]
    }

    /// A topic for another action on the same execution.
    pub fn with_action(&self, action: CommandAction) -> Self {
        Self {
            action,
            ..self.clone()
        }
    }
}

impl fmt::Display for CommandTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$aws/commands/{}/{}/executions/{}/",
            self.kind.topic_level(),
            self.device,
            self.execution
        )?;
        match self.action {
            CommandAction::Request(format) => write!(f, "request{}", format.suffix()),
            CommandAction::Response(ResponseFormat::Json) => f.write_str("response/json"),
            CommandAction::Response(ResponseFormat::Cbor) => f.write_str("response/cbor"),
            CommandAction::Accepted => f.write_str("response/accepted/json"),
            CommandAction::Rejected => f.write_str("response/rejected/json"),
        }
    }
}

/// `$aws/events/commandExecution/{commandId}/{status}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionEventTopic {
    pub command: CommandId,
    pub status: ExecutionStatus,
}

impl ExecutionEventTopic {
    /// What the execution-events rule selects.
    pub const FILTER: &'static str = "$aws/events/commandExecution/+/#";

    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        match topic.split('/').collect::<Vec<_>>().as_slice() {
            ["$aws", "events", "commandExecution", command, status] => Ok(Self {
                command: id(topic, CommandId::parse(*command))?,
                status: ExecutionStatus::parse(status)
                    .ok_or_else(|| unexpected(topic, "command execution event"))?,
            }),
            _ => Err(unexpected(topic, "command execution event")),
        }
    }
}

impl fmt::Display for ExecutionEventTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$aws/events/commandExecution/{}/{}",
            self.command,
            self.status.as_str()
        )
    }
}

/// Whether a presence event reports a connect or a disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Connected,
    Disconnected,
}

/// `$aws/events/presence/{connected|disconnected}/{clientId}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceTopic {
    pub presence: Presence,
    pub client: DeviceId,
}

impl PresenceTopic {
    /// What the presence rule selects.
    pub const FILTER: &'static str = "$aws/events/presence/+/+";

    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let presence = |level: &str| match level {
            "connected" => Some(Presence::Connected),
            "disconnected" => Some(Presence::Disconnected),
            _ => None,
        };
        match topic.split('/').collect::<Vec<_>>().as_slice() {
            ["$aws", "events", "presence", kind, client] => Ok(Self {
                presence: presence(kind).ok_or_else(|| unexpected(topic, "presence event"))?,
                client: id(topic, DeviceId::parse(*client))?,
            }),
            _ => Err(unexpected(topic, "presence event")),
        }
    }
}

impl fmt::Display for PresenceTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.presence {
            Presence::Connected => "connected",
            Presence::Disconnected => "disconnected",
        };
        write!(f, "$aws/events/presence/{kind}/{}", self.client)
    }
}

/// Does an MQTT topic filter (with `+` and `#`) match a topic name? Topics starting with `$`
/// are matched only by filters that start with the same literal level, as MQTT requires.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && !filter.starts_with('$') {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

    #[test]
    fn invoke_topics_round_trip() {
        let topics = InvokeTopics::default();
        let (d, m, r) = (
            dev("dev-1"),
            MethodName::parse("reboot").unwrap(),
            RequestId::parse("r1").unwrap(),
        );
        let request = topics.request(&d, &m, &r);
        assert_eq!(request, "tether/devices/dev-1/invoke/reboot/r1");
        assert_eq!(
            topics.parse_request(&request).unwrap(),
            RequestTopic {
                device: d.clone(),
                method: m,
                request_id: r.clone()
            }
        );
        let reply = topics.reply(&d, &r);
        assert_eq!(reply, "tether/replies/dev-1/r1");
        assert_eq!(
            topics.parse_reply(&reply).unwrap(),
            ReplyTopic {
                device: d.clone(),
                request_id: r.clone(),
                inbox: None,
            }
        );
        assert!(filter_matches(&topics.request_filter(&d), &request));
        assert!(filter_matches(&topics.reply_filter(), &reply));

        let inbox = Inbox::parse("tether-invoke-0a1b2c").unwrap();
        let to_inbox = topics.reply_to(&d, &r, &inbox);
        assert_eq!(to_inbox, "tether/replies/dev-1/r1/tether-invoke-0a1b2c");
        assert_eq!(
            topics.parse_reply(&to_inbox).unwrap().inbox,
            Some(inbox.clone())
        );
        // The rule sees both; an instance sees only its own inbox's.
        assert!(filter_matches(&topics.reply_filter(), &to_inbox));
        assert!(filter_matches(&topics.inbox_filter(&inbox), &to_inbox));
        assert!(!filter_matches(&topics.inbox_filter(&inbox), &reply));
        let other = Inbox::random();
        assert!(!filter_matches(&topics.inbox_filter(&other), &to_inbox));
    }

    #[test]
    fn multi_level_prefix_round_trips() {
        let topics = InvokeTopics::new("acme/prod").unwrap();
        let reply = topics.reply(&dev("d"), &RequestId::parse("x").unwrap());
        assert_eq!(reply, "acme/prod/replies/d/x");
        assert!(topics.parse_reply(&reply).is_ok());
        assert!(topics.parse_reply("tether/replies/d/x").is_err());
    }

    #[test]
    fn hostile_prefixes_are_refused() {
        for bad in ["", "$aws", "a/+", "a/#", "a//b", "/a", "a/", "a b"] {
            assert!(InvokeTopics::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reply_parser_refuses_extra_levels_and_bad_ids() {
        let topics = InvokeTopics::default();
        assert!(topics.parse_reply("tether/replies/dev-1/r1/extra").is_err());
        assert!(topics
            .parse_reply("tether/replies/dev-1/r1/tether-invoke-a/b")
            .is_err());
        assert!(topics
            .parse_reply("tether/replies/dev-1/r1/tether-invoke-A")
            .is_err());
        assert!(topics.parse_reply("tether/replies/dev-1").is_err());
        assert!(topics.parse_reply("tether/replies/dev 1/r1").is_err());
        assert!(topics.parse_reply("tether/replies/dev-1/r.1").is_err());
        assert!(topics.parse_request("tether/devices/d/invoke/m").is_err());
    }

    #[test]
    fn command_topics_round_trip_in_every_action() {
        let exec = ExecutionId::parse("2bd65c51-4cfd").unwrap();
        for kind in [TargetKind::Thing, TargetKind::Client] {
            for action in [
                CommandAction::Request(PayloadFormat::Json),
                CommandAction::Request(PayloadFormat::Cbor),
                CommandAction::Request(PayloadFormat::Other),
                CommandAction::Response(ResponseFormat::Json),
                CommandAction::Response(ResponseFormat::Cbor),
                CommandAction::Accepted,
                CommandAction::Rejected,
            ] {
                let topic = CommandTopic::new(kind, dev("car-1"), exec.clone(), action);
                let text = topic.to_string();
                assert_eq!(CommandTopic::parse(&text).unwrap(), topic, "{text}");
            }
        }
        let req = CommandTopic::new(
            TargetKind::Thing,
            dev("car-1"),
            exec,
            CommandAction::Request(PayloadFormat::Json),
        );
        assert_eq!(
            req.to_string(),
            "$aws/commands/things/car-1/executions/2bd65c51-4cfd/request/json"
        );
    }

    #[test]
    fn request_filter_matches_every_format_and_no_response() {
        let filter = CommandTopic::request_filter(TargetKind::Thing, &dev("car-1"));
        assert!(filter_matches(
            &filter,
            "$aws/commands/things/car-1/executions/e1/request"
        ));
        assert!(filter_matches(
            &filter,
            "$aws/commands/things/car-1/executions/e1/request/json"
        ));
        assert!(filter_matches(
            &filter,
            "$aws/commands/things/car-1/executions/e1/request/cbor"
        ));
        assert!(!filter_matches(
            &filter,
            "$aws/commands/things/car-1/executions/e1/response/json"
        ));
        assert!(!filter_matches(
            &filter,
            "$aws/commands/things/car-2/executions/e1/request/json"
        ));
    }

    #[test]
    fn command_topic_parser_is_strict() {
        for bad in [
            "$aws/commands/things/car-1/executions/e1/response",
            "$aws/commands/robots/car-1/executions/e1/request",
            "$aws/commands/things/car 1/executions/e1/request",
            "$aws/commands/things/car-1/executions/e.1/request",
            "$aws/commands/things/car-1/executions/e1/request/xml",
            "aws/commands/things/car-1/executions/e1/request",
        ] {
            assert!(CommandTopic::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn execution_event_topics_round_trip() {
        let topic = ExecutionEventTopic {
            command: CommandId::parse("unlock").unwrap(),
            status: ExecutionStatus::TimedOut,
        };
        assert_eq!(
            topic.to_string(),
            "$aws/events/commandExecution/unlock/TIMED_OUT"
        );
        assert_eq!(
            ExecutionEventTopic::parse(&topic.to_string()).unwrap(),
            topic
        );
        assert!(filter_matches(
            ExecutionEventTopic::FILTER,
            &topic.to_string()
        ));
        assert!(ExecutionEventTopic::parse("$aws/events/commandExecution/unlock/DONE").is_err());
    }

    #[test]
    fn presence_topics_round_trip() {
        for presence in [Presence::Connected, Presence::Disconnected] {
            let topic = PresenceTopic {
                presence,
                client: dev("dev-9"),
            };
            assert_eq!(PresenceTopic::parse(&topic.to_string()).unwrap(), topic);
            assert!(filter_matches(PresenceTopic::FILTER, &topic.to_string()));
        }
        assert_eq!(
            PresenceTopic {
                presence: Presence::Connected,
                client: dev("d")
            }
            .to_string(),
            "$aws/events/presence/connected/d"
        );
    }

    #[test]
    fn wildcards_do_not_match_reserved_topics() {
        assert!(!filter_matches("#", "$aws/events/presence/connected/d"));
        assert!(!filter_matches("+/events/#", "$aws/events/x"));
        assert!(filter_matches("$aws/events/#", "$aws/events/x"));
        assert!(filter_matches("a/#", "a"));
        assert!(!filter_matches("a/+", "a"));
    }

    #[test]
    fn target_arns_name_a_thing_or_a_client() {
        assert_eq!(
            target_from_arn("arn:aws:iot:us-east-1:123:thing/car-1"),
            Some((TargetKind::Thing, dev("car-1")))
        );
        assert_eq!(
            target_from_arn("arn:aws:iot:eu-west-1:1:client/c_2"),
            Some((TargetKind::Client, dev("c_2")))
        );
        assert_eq!(target_from_arn("arn:aws:iot:eu-west-1:1:command/x"), None);
        assert_eq!(target_from_arn("arn:aws:s3:::thing/x"), None);
        assert_eq!(target_from_arn("arn:aws:iot:r:1:thing/a/b"), None);
    }

    #[test]
    fn content_types_pick_the_request_topic() {
        assert_eq!(
            PayloadFormat::from_content_type(Some("application/json; charset=utf-8")),
            PayloadFormat::Json
        );
        assert_eq!(
            PayloadFormat::from_content_type(Some("Application/CBOR")),
            PayloadFormat::Cbor
        );
        assert_eq!(
            PayloadFormat::from_content_type(Some("text/plain")),
            PayloadFormat::Other
        );
        assert_eq!(PayloadFormat::from_content_type(None), PayloadFormat::Other);
    }
}
