//! The behaviour language: what a simulated device does with a request, per method.
//!
//! A rule is `METHOD=BEHAVIOUR`; `METHOD` is a method name or `*`, the default for every method
//! without a rule of its own (and for Commands requests whose JSON payload has no top-level
//! `"method"` string). Without any `*` rule the default is `echo`.
//!
//! | behaviour | what the device does |
//! |---|---|
//! | `echo` | answers SUCCEEDED at once; the result is the request payload |
//! | `delay:MS` · `delay:MIN..MAX` | like `echo`, after MS milliseconds, or a random time in [MIN, MAX] |
//! | `fail[:CODE[:DESCRIPTION]]` | answers FAILED with that statusReason (default code `DEVICE_FAILED`) |
//! | `reject[:CODE[:DESCRIPTION]]` | answers REJECTED with that statusReason (default code `DEVICE_REJECTED`) |
//! | `progress[:MS]` | Commands: IN_PROGRESS at once, SUCCEEDED MS later (default 200); direct invocation has no progress report, so only the delay |
//! | `never` | receives the request and never answers |
//! | `twice` | answers SUCCEEDED twice |
//! | `late[:MARGIN_MS]` | waits until the request's deadline has certainly passed, plus MARGIN_MS (default 500), then answers like `echo` (see [`Behaviour::Late`]) |
//! | `disconnect[:OFFLINE_MS]` | drops the connection on receipt without answering (no MQTT DISCONNECT, like a device losing power), stays offline OFFLINE_MS (default 1000), then reconnects |
//!
//! Reason codes follow the AWS IoT rule (1–64 characters of `[A-Z0-9_-]`); a description may
//! contain colons.
//!
//! The same rules answer AWS IoT Jobs: a job's method is the top-level `"operation"` string of
//! its job document, and each behaviour becomes job execution updates with `statusDetails`
//! (`progress` reports IN_PROGRESS first, `fail` / `reject` put the reason in `statusDetails`,
//! `never` leaves the execution to the cloud's timeout); [`crate::jobs`] has the table.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tether_domain::status::ReasonError;
use tether_domain::{IdError, MethodName, StatusReason};

/// The method key of the default rule.
pub const DEFAULT_METHOD: &str = "*";

/// The behaviour names, for error messages.
const KNOWN: &str = "echo, delay, fail, reject, progress, never, twice, late, disconnect";

const DEFAULT_FAIL_CODE: &str = "DEVICE_FAILED";
const DEFAULT_REJECT_CODE: &str = "DEVICE_REJECTED";
const DEFAULT_PROGRESS: Duration = Duration::from_millis(200);
const DEFAULT_LATE_MARGIN: Duration = Duration::from_millis(500);
const DEFAULT_OFFLINE: Duration = Duration::from_millis(1000);

/// What a device does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer SUCCEEDED at once; the result is the request payload.
    Echo,
    /// Answer like [`Behaviour::Echo`] after a pause.
    Delay(Pause),
    /// Answer FAILED with this reason.
    Fail(StatusReason),
    /// Answer REJECTED with this reason.
    Reject(StatusReason),
    /// Commands: IN_PROGRESS at once, then SUCCEEDED (echo) after this long. Direct invocation
    /// has no progress report, so there it is only the pause.
    Progress(Duration),
    /// Receive and never answer.
    Never,
    /// Answer SUCCEEDED (echo) twice.
    Twice,
    /// Wait until the request's deadline has certainly passed, plus this margin, then answer like
    /// [`Behaviour::Echo`]. The deadline is read from the message expiry, which travels in
    /// whole seconds and which brokers round down when they forward it, so the real deadline
    /// can be up to a second later than it says: the device waits expiry + 1 s. A broker drops
    /// the property when less than a second is left, so a request without one counts as
    /// expiring within that second.
    Late(Duration),
    /// Drop the connection without answering, stay offline this long, then reconnect.
    Disconnect(Duration),
}

/// A fixed pause or a random one within bounds (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    Fixed(Duration),
    Between(Duration, Duration),
}

impl Pause {
    /// The pause to wait this time.
    pub fn pick(&self) -> Duration {
        match *self {
            Pause::Fixed(d) => d,
            Pause::Between(min, max) => {
                let (min, max) = (millis_of(min), millis_of(max));
                Duration::from_millis(fastrand::u64(min..=max.max(min)))
            }
        }
    }
}

fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Why a behaviour or a rule could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BehaviourError {
    #[error("empty behaviour; expected one of: {KNOWN}")]
    Empty,
    #[error("unknown behaviour {0:?}; expected one of: {KNOWN}")]
    Unknown(String),
    #[error("{behaviour} takes no argument (got {argument:?})")]
    UnexpectedArgument {
        behaviour: &'static str,
        argument: String,
    },
    #[error("{behaviour} needs {expected}, e.g. {example}")]
    MissingArgument {
        behaviour: &'static str,
        expected: &'static str,
        example: &'static str,
    },
    #[error("{behaviour}: {text:?} is not a whole number of milliseconds")]
    BadMillis {
        behaviour: &'static str,
        text: String,
    },
    #[error("delay: {min}..{max} is an empty range (the first number must not exceed the second)")]
    EmptyRange { min: u64, max: u64 },
    #[error("{behaviour}: {source}")]
    BadReason {
        behaviour: &'static str,
        #[source]
        source: ReasonError,
    },
    #[error("{rule:?} is not METHOD=BEHAVIOUR (e.g. reboot=delay:200 or '*=echo')")]
    NotARule { rule: String },
    #[error("{rule:?}: {source} (use * for the default)")]
    BadMethod {
        rule: String,
        #[source]
        source: IdError,
    },
    #[error("{rule:?}: {source}")]
    InRule {
        rule: String,
        #[source]
        source: Box<BehaviourError>,
    },
}

impl FromStr for Behaviour {
    type Err = BehaviourError;

    fn from_str(spec: &str) -> Result<Self, BehaviourError> {
        let spec = spec.trim();
        let (name, argument) = match spec.split_once(':') {
            Some((name, argument)) => (name, Some(argument)),
            None => (spec, None),
        };
        match name {
            "" => Err(BehaviourError::Empty),
            "echo" => no_argument("echo", argument, Behaviour::Echo),
            "never" => no_argument("never", argument, Behaviour::Never),
            "twice" => no_argument("twice", argument, Behaviour::Twice),
            "delay" => {
                let argument = argument.ok_or(BehaviourError::MissingArgument {
                    behaviour: "delay",
                    expected: "milliseconds or a MIN..MAX range",
                    example: "delay:200 or delay:100..500",
                })?;
                Ok(Behaviour::Delay(pause(argument)?))
            }
            "fail" => Ok(Behaviour::Fail(reason(
                "fail",
                argument,
                DEFAULT_FAIL_CODE,
            )?)),
            "reject" => Ok(Behaviour::Reject(reason(
                "reject",
                argument,
                DEFAULT_REJECT_CODE,
            )?)),
            "progress" => Ok(Behaviour::Progress(optional_millis(
                "progress",
                argument,
                DEFAULT_PROGRESS,
            )?)),
            "late" => Ok(Behaviour::Late(optional_millis(
                "late",
                argument,
                DEFAULT_LATE_MARGIN,
            )?)),
            "disconnect" => Ok(Behaviour::Disconnect(optional_millis(
                "disconnect",
                argument,
                DEFAULT_OFFLINE,
            )?)),
            other => Err(BehaviourError::Unknown(other.to_owned())),
        }
    }
}

fn no_argument(
    behaviour: &'static str,
    argument: Option<&str>,
    value: Behaviour,
) -> Result<Behaviour, BehaviourError> {
    match argument {
        None => Ok(value),
        Some(argument) => Err(BehaviourError::UnexpectedArgument {
            behaviour,
            argument: argument.to_owned(),
        }),
    }
}

fn millis(behaviour: &'static str, text: &str) -> Result<u64, BehaviourError> {
    let text = text.trim();
    // `u64::from_str` accepts a leading `+`; a number of milliseconds is digits only.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BehaviourError::BadMillis {
            behaviour,
            text: text.to_owned(),
        });
    }
    text.parse().map_err(|_| BehaviourError::BadMillis {
        behaviour,
        text: text.to_owned(),
    })
}

fn optional_millis(
    behaviour: &'static str,
    argument: Option<&str>,
    default: Duration,
) -> Result<Duration, BehaviourError> {
    match argument {
        None => Ok(default),
        Some(text) => Ok(Duration::from_millis(millis(behaviour, text)?)),
    }
}

fn pause(argument: &str) -> Result<Pause, BehaviourError> {
    match argument.split_once("..") {
        None => Ok(Pause::Fixed(Duration::from_millis(millis(
            "delay", argument,
        )?))),
        Some((min, max)) => {
            let (min, max) = (millis("delay", min)?, millis("delay", max)?);
            if min > max {
                return Err(BehaviourError::EmptyRange { min, max });
            }
            Ok(Pause::Between(
                Duration::from_millis(min),
                Duration::from_millis(max),
            ))
        }
    }
}

fn reason(
    behaviour: &'static str,
    argument: Option<&str>,
    default_code: &str,
) -> Result<StatusReason, BehaviourError> {
    let reason = match argument {
        None => StatusReason::new(default_code, None),
        Some(argument) => match argument.split_once(':') {
            None => StatusReason::new(argument.trim(), None),
            Some((code, description)) => {
                StatusReason::new(code.trim(), Some(description.to_owned()))
            }
        },
    };
    reason
        .validate_from_device()
        .map_err(|source| BehaviourError::BadReason { behaviour, source })?;
    Ok(reason)
}

/// The same text [`Behaviour::from_str`] reads, so a parsed behaviour prints back as written
/// (defaults made explicit).
impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = |f: &mut fmt::Formatter<'_>, name: &str, r: &StatusReason| {
            write!(f, "{name}:{}", r.reason_code)?;
            match &r.reason_description {
                Some(description) => write!(f, ":{description}"),
                None => Ok(()),
            }
        };
        match self {
            Behaviour::Echo => f.write_str("echo"),
            Behaviour::Delay(Pause::Fixed(d)) => write!(f, "delay:{}", millis_of(*d)),
            Behaviour::Delay(Pause::Between(min, max)) => {
                write!(f, "delay:{}..{}", millis_of(*min), millis_of(*max))
            }
            Behaviour::Fail(r) => reason(f, "fail", r),
            Behaviour::Reject(r) => reason(f, "reject", r),
            Behaviour::Progress(d) => write!(f, "progress:{}", millis_of(*d)),
            Behaviour::Never => f.write_str("never"),
            Behaviour::Twice => f.write_str("twice"),
            Behaviour::Late(d) => write!(f, "late:{}", millis_of(*d)),
            Behaviour::Disconnect(d) => write!(f, "disconnect:{}", millis_of(*d)),
        }
    }
}

/// The behaviour of every method: rules by method name and the default (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviours {
    default: Behaviour,
    by_method: BTreeMap<String, Behaviour>,
}

impl Default for Behaviours {
    /// Every method echoes.
    fn default() -> Self {
        Self::new(Behaviour::Echo)
    }
}

/// Why a behaviours file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BehavioursFileError {
    #[error("{path}: not a behaviours file: {source}")]
    Yaml {
        path: String,
        #[source]
        source: serde_norway::Error,
    },
    #[error("{path}: {source}")]
    Rule {
        path: String,
        #[source]
        source: BehaviourError,
    },
}

/// The YAML file: `behaviours: {METHOD: BEHAVIOUR, ...}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BehavioursFile {
    #[serde(default, alias = "behaviors")]
    behaviours: BTreeMap<String, String>,
}

impl Behaviours {
    /// Every method behaves as `default` until a rule says otherwise.
    pub fn new(default: Behaviour) -> Self {
        Self {
            default,
            by_method: BTreeMap::new(),
        }
    }

    /// Sets the behaviour of `method` (`*`: the default). The method must be a valid method
    /// name.
    pub fn set(&mut self, method: &str, behaviour: Behaviour) -> Result<(), BehaviourError> {
        if method == DEFAULT_METHOD {
            self.default = behaviour;
            return Ok(());
        }
        let method = MethodName::parse(method).map_err(|source| BehaviourError::BadMethod {
            rule: format!("{method}={behaviour}"),
            source,
        })?;
        self.by_method.insert(method.into_string(), behaviour);
        Ok(())
    }

    /// [`Behaviours::set`] for builders: `Behaviours::default().with("reboot", Behaviour::Never)?`.
    pub fn with(mut self, method: &str, behaviour: Behaviour) -> Result<Self, BehaviourError> {
        self.set(method, behaviour)?;
        Ok(self)
    }

    /// Parses one `METHOD=BEHAVIOUR` rule.
    pub fn parse_rule(rule: &str) -> Result<(String, Behaviour), BehaviourError> {
        let (method, spec) = rule
            .split_once('=')
            .ok_or_else(|| BehaviourError::NotARule {
                rule: rule.to_owned(),
            })?;
        let method = method.trim();
        if method != DEFAULT_METHOD {
            MethodName::parse(method).map_err(|source| BehaviourError::BadMethod {
                rule: rule.to_owned(),
                source,
            })?;
        }
        let behaviour = spec
            .parse::<Behaviour>()
            .map_err(|source| BehaviourError::InRule {
                rule: rule.to_owned(),
                source: Box::new(source),
            })?;
        Ok((method.to_owned(), behaviour))
    }

    /// Applies `METHOD=BEHAVIOUR` rules in order (a later rule for the same method wins).
    pub fn apply_rules<'r>(
        &mut self,
        rules: impl IntoIterator<Item = &'r str>,
    ) -> Result<(), BehaviourError> {
        for rule in rules {
            let (method, behaviour) = Self::parse_rule(rule)?;
            self.set(&method, behaviour)?;
        }
        Ok(())
    }

    /// Reads the rules of a YAML behaviours file (`path` only names it in errors):
    ///
    /// ```yaml
    /// behaviours:
    ///   "*": echo
    ///   reboot: delay:200
    /// ```
    pub fn apply_yaml(&mut self, path: &str, text: &str) -> Result<(), BehavioursFileError> {
        let file: BehavioursFile =
            serde_norway::from_str(text).map_err(|source| BehavioursFileError::Yaml {
                path: path.to_owned(),
                source,
            })?;
        let rules: Vec<String> = file
            .behaviours
            .iter()
            .map(|(method, spec)| format!("{method}={spec}"))
            .collect();
        self.apply_rules(rules.iter().map(String::as_str))
            .map_err(|source| BehavioursFileError::Rule {
                path: path.to_owned(),
                source,
            })
    }

    /// The behaviour for a method; `None` or an unknown method gets the default.
    pub fn for_method(&self, method: Option<&str>) -> &Behaviour {
        method
            .and_then(|m| self.by_method.get(m))
            .unwrap_or(&self.default)
    }

    /// The default behaviour (`*`).
    pub fn default_behaviour(&self) -> &Behaviour {
        &self.default
    }

    /// The rules as `METHOD=BEHAVIOUR` lines, the default first.
    pub fn rules(&self) -> Vec<String> {
        std::iter::once(format!("{DEFAULT_METHOD}={}", self.default))
            .chain(self.by_method.iter().map(|(m, b)| format!("{m}={b}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Behaviour {
        spec.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn every_behaviour_parses_with_its_arguments() {
        let cases = [
            ("echo", Behaviour::Echo),
            ("delay:200", Behaviour::Delay(Pause::Fixed(ms(200)))),
            (
                "delay:100..500",
                Behaviour::Delay(Pause::Between(ms(100), ms(500))),
            ),
            (
                "fail:LOW_BATTERY:battery below 10%: charge first",
                Behaviour::Fail(StatusReason::new(
                    "LOW_BATTERY",
                    Some("battery below 10%: charge first".into()),
                )),
            ),
            (
                "reject:BUSY",
                Behaviour::Reject(StatusReason::new("BUSY", None)),
            ),
            ("progress:50", Behaviour::Progress(ms(50))),
            ("never", Behaviour::Never),
            ("twice", Behaviour::Twice),
            ("late:250", Behaviour::Late(ms(250))),
            ("disconnect:0", Behaviour::Disconnect(ms(0))),
            ("  echo  ", Behaviour::Echo),
        ];

        for (spec, expected) in cases {
            assert_eq!(parse(spec), expected, "{spec}");
        }
    }

    #[test]
    fn optional_arguments_take_documented_defaults() {
        assert_eq!(
            parse("fail"),
            Behaviour::Fail(StatusReason::new("DEVICE_FAILED", None))
        );
        assert_eq!(
            parse("reject"),
            Behaviour::Reject(StatusReason::new("DEVICE_REJECTED", None))
        );
        assert_eq!(parse("progress"), Behaviour::Progress(ms(200)));
        assert_eq!(parse("late"), Behaviour::Late(ms(500)));
        assert_eq!(parse("disconnect"), Behaviour::Disconnect(ms(1000)));
    }

    #[test]
    fn a_behaviour_prints_back_as_text_that_parses_to_it() {
        for spec in [
            "echo",
            "delay:7",
            "delay:1..9",
            "fail",
            "fail:E1:a: b",
            "reject:NO",
            "progress",
            "never",
            "twice",
            "late:3",
            "disconnect",
        ] {
            let behaviour = parse(spec);

            let again = parse(&behaviour.to_string());

            assert_eq!(again, behaviour, "{spec} -> {behaviour}");
        }
    }

    #[test]
    fn mistakes_are_refused_with_a_message_that_says_what_to_write() {
        let cases = [
            ("", "empty behaviour; expected one of: echo, delay"),
            ("sleep:5", "unknown behaviour \"sleep\"; expected one of"),
            ("echo:5", "echo takes no argument (got \"5\")"),
            (
                "delay",
                "delay needs milliseconds or a MIN..MAX range, e.g. delay:200",
            ),
            (
                "delay:soon",
                "delay: \"soon\" is not a whole number of milliseconds",
            ),
            ("delay:-5", "is not a whole number"),
            ("delay:+5", "is not a whole number"),
            ("delay:9..1", "delay: 9..1 is an empty range"),
            ("delay:1..", "delay: \"\" is not a whole number"),
            ("late:1.5", "late: \"1.5\" is not a whole number"),
            (
                "fail:low",
                "fail: statusReason.reasonCode must be 1-64 characters of [A-Z0-9_-]",
            ),
            ("reject:", "reject: statusReason.reasonCode"),
            (
                "fail:OK:bad\u{7}bell",
                "fail: statusReason.reasonDescription must be",
            ),
        ];

        for (spec, expected) in cases {
            let err = spec.parse::<Behaviour>().unwrap_err();

            assert!(
                err.to_string().contains(expected),
                "{spec:?}: {err} (expected {expected:?})"
            );
        }
    }

    #[test]
    fn a_rule_names_a_method_or_the_default() {
        assert_eq!(
            Behaviours::parse_rule("reboot=delay:200").unwrap(),
            ("reboot".to_owned(), Behaviour::Delay(Pause::Fixed(ms(200))))
        );
        assert_eq!(
            Behaviours::parse_rule("*=never").unwrap(),
            ("*".to_owned(), Behaviour::Never)
        );
    }

    #[test]
    fn bad_rules_say_which_rule_and_why() {
        let missing = Behaviours::parse_rule("reboot").unwrap_err().to_string();
        let method = Behaviours::parse_rule("re/boot=echo")
            .unwrap_err()
            .to_string();
        let inner = Behaviours::parse_rule("reboot=wait")
            .unwrap_err()
            .to_string();

        assert_eq!(
            missing,
            "\"reboot\" is not METHOD=BEHAVIOUR (e.g. reboot=delay:200 or '*=echo')"
        );
        assert!(
            method.starts_with("\"re/boot=echo\": method contains a character outside"),
            "{method}"
        );
        assert!(
            inner.starts_with("\"reboot=wait\": unknown behaviour \"wait\""),
            "{inner}"
        );
    }

    #[test]
    fn methods_without_a_rule_get_the_default_and_later_rules_win() {
        let mut behaviours = Behaviours::default();

        behaviours
            .apply_rules(["reboot=never", "*=twice", "reboot=fail"])
            .unwrap();

        assert_eq!(
            behaviours.for_method(Some("reboot")),
            &Behaviour::Fail(StatusReason::new("DEVICE_FAILED", None))
        );
        assert_eq!(behaviours.for_method(Some("other")), &Behaviour::Twice);
        assert_eq!(behaviours.for_method(None), &Behaviour::Twice);
        assert_eq!(behaviours.rules(), ["*=twice", "reboot=fail:DEVICE_FAILED"]);
    }

    #[test]
    fn the_default_is_echo() {
        let behaviours = Behaviours::default();

        assert_eq!(behaviours.for_method(Some("anything")), &Behaviour::Echo);
    }

    #[test]
    fn a_yaml_file_sets_rules_and_command_line_rules_applied_after_it_win() {
        let yaml = "behaviours:\n  \"*\": delay:5..10\n  reboot: progress:300\n  update: 'fail:LOW_BATTERY:below 10%'\n";
        let mut behaviours = Behaviours::default();

        behaviours.apply_yaml("fleet.yaml", yaml).unwrap();
        behaviours.apply_rules(["reboot=never"]).unwrap();

        assert_eq!(
            behaviours.for_method(None),
            &Behaviour::Delay(Pause::Between(ms(5), ms(10)))
        );
        assert_eq!(behaviours.for_method(Some("reboot")), &Behaviour::Never);
        assert_eq!(
            behaviours.for_method(Some("update")),
            &Behaviour::Fail(StatusReason::new("LOW_BATTERY", Some("below 10%".into())))
        );
    }

    #[test]
    fn a_bad_yaml_file_names_the_file_and_the_problem() {
        let mut behaviours = Behaviours::default();

        let unknown_key = behaviours
            .apply_yaml("a.yaml", "behavours:\n  x: echo\n")
            .unwrap_err()
            .to_string();
        let bad_rule = behaviours
            .apply_yaml("b.yaml", "behaviours:\n  x: explode\n")
            .unwrap_err()
            .to_string();

        assert!(
            unknown_key.starts_with("a.yaml: not a behaviours file: unknown field `behavours`"),
            "{unknown_key}"
        );
        assert!(
            bad_rule.starts_with("b.yaml: \"x=explode\": unknown behaviour \"explode\""),
            "{bad_rule}"
        );
    }

    #[test]
    fn a_random_delay_stays_within_its_bounds() {
        let pause = Pause::Between(ms(10), ms(12));

        let picks: Vec<Duration> = (0..200).map(|_| pause.pick()).collect();

        assert!(picks.iter().all(|d| (ms(10)..=ms(12)).contains(d)));
        assert_eq!(Pause::Fixed(ms(3)).pick(), ms(3));
    }
}
