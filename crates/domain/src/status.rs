//! Statuses and how they change.
//!
//! Two vocabularies share one ordering:
//! - [`ExecutionStatus`], the AWS IoT Commands statuses, with the machine of
//!   `docs/aws-iot-reference.md` §2.3 ([`check_transition`]);
//! - [`InvocationStatus`], the direct-invocation statuses (PENDING, then a device answer or
//!   Tether's own timeout).
//!
//! Both map onto a [`Phase`]. Events can arrive late, twice or out of order (IoT rules make no
//! promise), so a store does not replay the machine; it keeps the event with the highest
//! [`Precedence`] and never leaves a terminal phase. For any sequence the machine accepts in
//! order, precedence rises along the sequence, so keeping the highest one ends where in-order
//! delivery ends, whatever the arrival order (proved by the property test below and, against
//! DynamoDB, in the store's tests).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The reason code AWS IoT puts on a cloud-side timeout. Tether uses it for its own
/// direct-invocation timeouts too.
pub const NO_RESPONSE_FROM_DEVICE: &str = "$NO_RESPONSE_FROM_DEVICE";

/// Who set a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// AWS IoT or Tether (creation, cloud-side timeout).
    Cloud,
    /// The device's own report.
    Device,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cloud => "cloud",
            Source::Device => "device",
        }
    }

    /// Who set a TIMED_OUT, judged the way AWS IoT marks it: a cloud timeout carries
    /// [`NO_RESPONSE_FROM_DEVICE`]; any other reason (or none) came from the device.
    pub fn of_timeout(reason: Option<&StatusReason>) -> Source {
        match reason {
            Some(r) if r.reason_code == NO_RESPONSE_FROM_DEVICE => Source::Cloud,
            _ => Source::Device,
        }
    }
}

/// Where a status stands in a record's life. Ordered: a record only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Created (Commands) or pending (direct invocation): nobody has heard from the device.
    Created = 0,
    /// The device said it is working on it (repeatable).
    InProgress = 1,
    /// The cloud gave up waiting. Not final: a late device report still completes the record.
    CloudTimedOut = 2,
    /// The device's final word. Never left.
    Terminal = 3,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        self == Phase::Terminal
    }
}

/// Why a status was set, as AWS IoT shapes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusReason {
    pub reason_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_description: Option<String>,
}

/// Why a device-supplied [`StatusReason`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReasonError {
    #[error("statusReason.reasonCode must be 1-64 characters of [A-Z0-9_-]")]
    BadCode,
    #[error(
        "statusReason.reasonDescription must be at most 1024 characters without control characters"
    )]
    BadDescription,
}

impl StatusReason {
    pub fn new(code: impl Into<String>, description: Option<String>) -> Self {
        Self {
            reason_code: code.into(),
            reason_description: description,
        }
    }

    /// The cloud-side timeout reason.
    pub fn no_response_from_device() -> Self {
        Self::new(NO_RESPONSE_FROM_DEVICE, None)
    }

    /// Checks a reason sent by a device against the AWS IoT rules: `reasonCode` is 1–64 of
    /// `[A-Z0-9_-]`; `reasonDescription` is at most 1024 characters with no control characters.
    pub fn validate_from_device(&self) -> Result<(), ReasonError> {
        let code = &self.reason_code;
        let code_ok = !code.is_empty()
            && code.len() <= 64
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !code_ok {
            return Err(ReasonError::BadCode);
        }
        if let Some(text) = &self.reason_description {
            if text.chars().count() > 1024 || text.chars().any(char::is_control) {
                return Err(ReasonError::BadDescription);
            }
        }
        Ok(())
    }
}

/// A status name that maps onto a [`Phase`]; implemented by both vocabularies.
pub trait Lifecycle: Copy + Eq + fmt::Display {
    /// The phase this status puts a record in, given who set it.
    fn phase(self, source: Source) -> Phase;
    /// The status as stored and shown (`SUCCEEDED`, ...).
    fn as_str(self) -> &'static str;
}

/// AWS IoT Commands execution statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Created,
    InProgress,
    Succeeded,
    Failed,
    Rejected,
    TimedOut,
}

impl ExecutionStatus {
    pub const ALL: [ExecutionStatus; 6] = [
        ExecutionStatus::Created,
        ExecutionStatus::InProgress,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::Rejected,
        ExecutionStatus::TimedOut,
    ];

    /// Parses the upper-case wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl Lifecycle for ExecutionStatus {
    fn phase(self, source: Source) -> Phase {
        match (self, source) {
            (ExecutionStatus::Created, _) => Phase::Created,
            (ExecutionStatus::InProgress, _) => Phase::InProgress,
            (ExecutionStatus::TimedOut, Source::Cloud) => Phase::CloudTimedOut,
            _ => Phase::Terminal,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Created => "CREATED",
            ExecutionStatus::InProgress => "IN_PROGRESS",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::Rejected => "REJECTED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
        }
    }
}

/// Direct-invocation statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InvocationStatus {
    /// Published; no answer yet.
    Pending,
    /// The device said it is working on it (repeatable; not an answer).
    InProgress,
    Succeeded,
    Failed,
    Rejected,
    /// Tether's deadline passed (cloud side): a late reply still completes the record.
    TimedOut,
}

impl InvocationStatus {
    pub const ALL: [InvocationStatus; 6] = [
        InvocationStatus::Pending,
        InvocationStatus::InProgress,
        InvocationStatus::Succeeded,
        InvocationStatus::Failed,
        InvocationStatus::Rejected,
        InvocationStatus::TimedOut,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl Lifecycle for InvocationStatus {
    fn phase(self, source: Source) -> Phase {
        match (self, source) {
            (InvocationStatus::Pending, _) => Phase::Created,
            (InvocationStatus::InProgress, _) => Phase::InProgress,
            (InvocationStatus::TimedOut, Source::Cloud) => Phase::CloudTimedOut,
            _ => Phase::Terminal,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            InvocationStatus::Pending => "PENDING",
            InvocationStatus::InProgress => "IN_PROGRESS",
            InvocationStatus::Succeeded => "SUCCEEDED",
            InvocationStatus::Failed => "FAILED",
            InvocationStatus::Rejected => "REJECTED",
            InvocationStatus::TimedOut => "TIMED_OUT",
        }
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(Lifecycle::as_str(*self))
            }
        }

        /// A status equals its wire name (`status == "SUCCEEDED"`).
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                Lifecycle::as_str(*self) == *other
            }
        }
    )*};
}
display_as_str!(ExecutionStatus, InvocationStatus);

/// Why a status report is refused by the in-order machine. The names are the error codes
/// AWS IoT answers on `.../response/rejected/json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("Command Execution status cannot be updated to {to} since execution has already completed with status {current}.")]
    TerminalStateReached {
        current: ExecutionStatus,
        to: ExecutionStatus,
    },
    #[error("Command Execution status cannot be updated from {from} to {to}.")]
    InvalidStateTransition {
        from: ExecutionStatus,
        to: ExecutionStatus,
    },
}

impl TransitionError {
    /// The error code of the rejected topic.
    pub fn code(&self) -> &'static str {
        match self {
            TransitionError::TerminalStateReached { .. } => "TerminalStateReached",
            TransitionError::InvalidStateTransition { .. } => "InvalidStateTransition",
        }
    }
}

/// The AWS IoT Commands machine (§2.3), applied in arrival order: may an execution in `from`
/// (set by `from_source`) move to `to` (set by `to_source`)?
///
/// - CREATED is set once, by the cloud, at creation.
/// - From CREATED or IN_PROGRESS: IN_PROGRESS (repeatable) or any final report.
/// - From a cloud TIMED_OUT: a device's SUCCEEDED / FAILED / REJECTED / TIMED_OUT, or the cloud's
///   TIMED_OUT again.
/// - Terminal states are never left.
pub fn check_transition(
    from: ExecutionStatus,
    from_source: Source,
    to: ExecutionStatus,
    to_source: Source,
) -> Result<(), TransitionError> {
    let current = from.phase(from_source);
    if current.is_terminal() {
        return Err(TransitionError::TerminalStateReached { current: from, to });
    }
    let invalid = || TransitionError::InvalidStateTransition { from, to };
    let cloud_may_set = matches!(to, ExecutionStatus::TimedOut);
    let device_may_set = !matches!(to, ExecutionStatus::Created);
    let allowed_source = match to_source {
        Source::Cloud => cloud_may_set,
        Source::Device => device_may_set,
    };
    if !allowed_source {
        return Err(invalid());
    }
    match (current, to.phase(to_source)) {
        (Phase::CloudTimedOut, Phase::InProgress) => Err(invalid()),
        _ => Ok(()),
    }
}

/// The total order in which status events win. Sorted as text, so a store can compare it in a
/// conditional write: `{phase}:{at_ms, 15 digits}:{fingerprint}`. The fingerprint separates two
/// different events in the same phase and millisecond, so even they resolve the same way in any
/// arrival order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Precedence(String);

impl Precedence {
    pub fn new(phase: Phase, at_ms: i64, fingerprint: u64) -> Self {
        Self(format!(
            "{}:{:015}:{:016x}",
            phase as u8,
            at_ms.max(0),
            fingerprint
        ))
    }

    /// Every precedence at or above this one is terminal.
    pub fn terminal_floor() -> Self {
        Self(format!("{}:", Phase::Terminal as u8))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a stored precedence.
    pub fn from_stored(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn is_terminal(&self) -> bool {
        *self >= Self::terminal_floor()
    }

    /// Whether an event with this precedence replaces a record whose current precedence is
    /// `current`: it must be higher, and the current one must not be terminal.
    pub fn supersedes(&self, current: Option<&Precedence>) -> bool {
        match current {
            None => true,
            Some(current) => !current.is_terminal() && self > current,
        }
    }
}

impl fmt::Display for Precedence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stable 64-bit FNV-1a hash of the given parts (separated so `["ab","c"]` ≠ `["a","bc"]`).
/// Used for fingerprints that must be the same in every process and release.
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// How long past its deadline a PENDING invocation reads as timed out. `invoke` writes the
/// timeout itself at the deadline; this covers the case where it could not (DynamoDB
/// unavailable then, or the function stopped), so that no invocation stays PENDING for good.
pub const OVERDUE_AFTER_MS: i64 = 5_000;

/// Whether an invocation stored as `status` with this deadline reads as TIMED_OUT
/// (`$NO_RESPONSE_FROM_DEVICE`) at `now`: still PENDING more than [`OVERDUE_AFTER_MS`] past
/// its deadline. A late reply still replaces it, as it replaces the timeout `invoke` writes.
pub fn is_overdue(status: InvocationStatus, deadline_ms: i64, now_ms: i64) -> bool {
    status == InvocationStatus::Pending && now_ms > deadline_ms.saturating_add(OVERDUE_AFTER_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_invocation_is_overdue_five_seconds_past_its_deadline() {
        let deadline = 1_000_000;
        assert!(!is_overdue(
            InvocationStatus::Pending,
            deadline,
            deadline + OVERDUE_AFTER_MS
        ));
        assert!(is_overdue(
            InvocationStatus::Pending,
            deadline,
            deadline + OVERDUE_AFTER_MS + 1
        ));
        assert!(!is_overdue(
            InvocationStatus::Succeeded,
            deadline,
            deadline + 60_000
        ));
        assert!(!is_overdue(InvocationStatus::Pending, i64::MAX, i64::MAX));
    }
    use ExecutionStatus::*;
    use Source::*;

    fn ok(from: ExecutionStatus, fs: Source, to: ExecutionStatus, ts: Source) -> bool {
        check_transition(from, fs, to, ts).is_ok()
    }

    #[test]
    fn every_transition_matches_the_aws_table() {
        // (from, from source) -> the (to, to source) pairs that are legal; all others are not.
        let states = [
            (Created, Cloud),
            (InProgress, Device),
            (TimedOut, Cloud),
            (TimedOut, Device),
            (Succeeded, Device),
            (Failed, Device),
            (Rejected, Device),
        ];
        let reports: Vec<(ExecutionStatus, Source)> = ExecutionStatus::ALL
            .into_iter()
            .flat_map(|s| [(s, Cloud), (s, Device)])
            .collect();
        for (from, fs) in states {
            for &(to, ts) in &reports {
                let expected = match (from, fs) {
                    (Created, _) | (InProgress, _) => match ts {
                        Cloud => to == TimedOut,
                        Device => to != Created,
                    },
                    (TimedOut, Cloud) => match ts {
                        Cloud => to == TimedOut,
                        Device => matches!(to, Succeeded | Failed | Rejected | TimedOut),
                    },
                    _ => false,
                };
                assert_eq!(
                    ok(from, fs, to, ts),
                    expected,
                    "{from}/{fs:?} -> {to}/{ts:?}"
                );
            }
        }
    }

    #[test]
    fn late_device_report_replaces_cloud_timeout() {
        assert!(ok(TimedOut, Cloud, Succeeded, Device));
        assert!(ok(TimedOut, Cloud, Rejected, Device));
        assert!(!ok(TimedOut, Cloud, InProgress, Device));
    }

    #[test]
    fn device_timeout_is_terminal() {
        let err = check_transition(TimedOut, Device, Succeeded, Device).unwrap_err();
        assert_eq!(err.code(), "TerminalStateReached");
    }

    #[test]
    fn report_after_terminal_names_both_statuses() {
        let err = check_transition(Failed, Device, Rejected, Device).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Command Execution status cannot be updated to REJECTED since execution has already completed with status FAILED."
        );
    }

    #[test]
    fn timeout_source_follows_the_reason_code() {
        assert_eq!(
            Source::of_timeout(Some(&StatusReason::no_response_from_device())),
            Cloud
        );
        assert_eq!(
            Source::of_timeout(Some(&StatusReason::new("WATCHDOG", None))),
            Device
        );
        assert_eq!(Source::of_timeout(None), Device);
    }

    #[test]
    fn invocation_phases() {
        assert_eq!(InvocationStatus::Pending.phase(Cloud), Phase::Created);
        assert_eq!(
            InvocationStatus::TimedOut.phase(Cloud),
            Phase::CloudTimedOut
        );
        assert_eq!(InvocationStatus::Succeeded.phase(Device), Phase::Terminal);
        assert_eq!(
            InvocationStatus::parse("PENDING"),
            Some(InvocationStatus::Pending)
        );
        assert_eq!(InvocationStatus::parse("CREATED"), None);
    }

    #[test]
    fn precedence_orders_by_phase_then_time() {
        let created = Precedence::new(Phase::Created, 900, 1);
        let working = Precedence::new(Phase::InProgress, 100, 1);
        let timeout = Precedence::new(Phase::CloudTimedOut, 50, 1);
        let done = Precedence::new(Phase::Terminal, 10, 1);
        assert!(working.supersedes(Some(&created)));
        assert!(timeout.supersedes(Some(&working)));
        assert!(done.supersedes(Some(&timeout)));
        assert!(!created.supersedes(Some(&working)));
        let later_done = Precedence::new(Phase::Terminal, 20, 1);
        assert!(
            !later_done.supersedes(Some(&done)),
            "a terminal record is never left"
        );
        assert!(done.is_terminal() && !timeout.is_terminal());
    }

    #[test]
    fn device_reasons_are_validated() {
        assert!(StatusReason::new("LOW_BATTERY-2", None)
            .validate_from_device()
            .is_ok());
        assert!(StatusReason::new("low", None)
            .validate_from_device()
            .is_err());
        assert!(StatusReason::new("", None).validate_from_device().is_err());
        assert!(StatusReason::new("X".repeat(65), None)
            .validate_from_device()
            .is_err());
        assert!(StatusReason::new("X", Some("line\nbreak".into()))
            .validate_from_device()
            .is_err());
        assert!(StatusReason::new("X", Some("d".repeat(1025)))
            .validate_from_device()
            .is_err());
        assert!(StatusReason::no_response_from_device()
            .validate_from_device()
            .is_err());
    }

    #[test]
    fn fingerprint_is_stable_and_separates_parts() {
        assert_eq!(fingerprint(&["a"]), fingerprint(&["a"]));
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        // Pinned: stored keys depend on it, so it must never change between releases.
        assert_eq!(fingerprint(&[]), 0xcbf2_9ce4_8422_2325);
    }

    mod convergence {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        struct Event {
            status: ExecutionStatus,
            source: Source,
            at: i64,
            reason: Option<&'static str>,
        }

        impl Event {
            fn precedence(&self) -> Precedence {
                let fp = fingerprint(&[
                    self.status.as_str(),
                    self.source.as_str(),
                    self.reason.unwrap_or(""),
                ]);
                Precedence::new(self.status.phase(self.source), self.at, fp)
            }
        }

        /// A sequence the machine accepts in order: CREATED, some IN_PROGRESS, maybe a cloud
        /// timeout, maybe a final device report; timestamps strictly increasing.
        fn valid_sequence() -> impl Strategy<Value = Vec<Event>> {
            (
                0usize..4,
                any::<bool>(),
                prop::option::of(0usize..4),
                1i64..50,
            )
                .prop_map(|(progress, timeout, last, step)| {
                    let mut at = 1_000;
                    let mut next = || {
                        at += step;
                        at
                    };
                    let mut events = vec![Event {
                        status: Created,
                        source: Cloud,
                        at: next(),
                        reason: None,
                    }];
                    for i in 0..progress {
                        let reason = ["STEP_A", "STEP_B", "STEP_C", "STEP_D"][i];
                        events.push(Event {
                            status: InProgress,
                            source: Device,
                            at: next(),
                            reason: Some(reason),
                        });
                    }
                    if timeout {
                        events.push(Event {
                            status: TimedOut,
                            source: Cloud,
                            at: next(),
                            reason: Some(NO_RESPONSE_FROM_DEVICE),
                        });
                    }
                    if let Some(i) = last {
                        let status = [Succeeded, Failed, Rejected, TimedOut][i];
                        events.push(Event {
                            status,
                            source: Device,
                            at: next(),
                            reason: None,
                        });
                    }
                    events
                })
        }

        fn fold_by_precedence(events: &[Event]) -> Option<Precedence> {
            let mut current: Option<Precedence> = None;
            for e in events {
                let p = e.precedence();
                if p.supersedes(current.as_ref()) {
                    current = Some(p);
                }
            }
            current
        }

        proptest! {
            #[test]
            fn the_machine_accepts_every_generated_sequence(events in valid_sequence()) {
                for pair in events.windows(2) {
                    prop_assert!(check_transition(pair[0].status, pair[0].source, pair[1].status, pair[1].source).is_ok());
                }
            }

            #[test]
            fn any_arrival_order_with_duplicates_ends_like_in_order_delivery(
                events in valid_sequence(),
                seed in any::<u64>(),
                dups in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            ) {
                let in_order = events.last().map(Event::precedence);
                let mut shuffled = events.clone();
                for d in &dups {
                    shuffled.push(events[d.index(events.len())].clone());
                }
                // Fisher–Yates with a small deterministic generator driven by the seed.
                let mut state = seed | 1;
                for i in (1..shuffled.len()).rev() {
                    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                    shuffled.swap(i, (state % (i as u64 + 1)) as usize);
                }
                prop_assert_eq!(fold_by_precedence(&shuffled), in_order);
            }
        }
    }
}
