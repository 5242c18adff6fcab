//! What the Jobs service keeps in memory, and the [`Jobs`] handle that holds it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value};

use tether_domain::jobs::{JobExecutionStatus, JobStatus};
use tether_domain::{DeviceId, JobId};

use crate::aws::Account;
use crate::broker::Direct;
use crate::link::{Link, Outgoing};

/// Which failures an abort or retry criterion counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailureType {
    Failed,
    Rejected,
    TimedOut,
    All,
}

impl FailureType {
    pub(super) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "FAILED" => Self::Failed,
            "REJECTED" => Self::Rejected,
            "TIMED_OUT" => Self::TimedOut,
            "ALL" => Self::All,
            _ => return None,
        })
    }

    pub(super) fn counts(self, status: JobExecutionStatus) -> bool {
        use JobExecutionStatus as S;
        match self {
            Self::Failed => status == S::Failed,
            Self::Rejected => status == S::Rejected,
            Self::TimedOut => status == S::TimedOut,
            Self::All => matches!(status, S::Failed | S::Rejected | S::TimedOut),
        }
    }
}

/// `abortConfig.criteriaList[]`: cancel the job once `threshold_percentage` of at least
/// `min_executed` finished executions failed this way.
#[derive(Debug, Clone)]
pub(super) struct AbortCriterion {
    pub(super) failure_type: FailureType,
    pub(super) threshold_percentage: f64,
    pub(super) min_executed: u64,
}

/// `jobExecutionsRetryConfig.criteriaList[]`: queue a failed execution again, at most
/// `retries` times.
#[derive(Debug, Clone)]
pub(super) struct RetryCriterion {
    pub(super) failure_type: FailureType,
    pub(super) retries: u32,
}

#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) id: JobId,
    pub(super) description: Option<String>,
    /// The job document: a JSON object.
    pub(super) document: Value,
    /// The targets as given (thing ARNs), and the things they name.
    pub(super) targets: Vec<String>,
    pub(super) things: Vec<DeviceId>,
    pub(super) status: JobStatus,
    pub(super) force_canceled: bool,
    pub(super) reason_code: Option<String>,
    pub(super) comment: Option<String>,
    /// `jobExecutionsRolloutConfig.maximumPerMinute`.
    pub(super) rollout_per_minute: Option<u32>,
    pub(super) abort: Vec<AbortCriterion>,
    pub(super) in_progress_timeout_minutes: Option<i64>,
    pub(super) retry: Vec<RetryCriterion>,
    /// The configurations as the request gave them, echoed by DescribeJob.
    pub(super) configs: Map<String, Value>,
    /// Things whose executions the rollout has not created yet (`processingTargets`).
    pub(super) unrolled: VecDeque<DeviceId>,
    pub(super) created_at: i64,
    pub(super) last_updated_at: i64,
    pub(super) completed_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub(super) struct Execution {
    pub(super) job: JobId,
    pub(super) thing: DeviceId,
    pub(super) status: JobExecutionStatus,
    pub(super) status_details: BTreeMap<String, String>,
    pub(super) force_canceled: bool,
    pub(super) queued_at: i64,
    pub(super) started_at: Option<i64>,
    pub(super) last_updated_at: i64,
    pub(super) version: i64,
    pub(super) number: i64,
    pub(super) retry_attempt: u32,
    /// When the in-progress timer and the step timer run out (epoch ms).
    pub(super) in_progress_deadline: Option<i64>,
    pub(super) step_deadline: Option<i64>,
    /// Creation order, to keep a thing's queue first in, first out.
    pub(super) seq: u64,
}

impl Execution {
    /// `approximateSecondsBeforeTimedOut`: until the nearer of the two timers.
    pub(super) fn seconds_before_timeout(&self, now: i64) -> Option<i64> {
        if self.status != JobExecutionStatus::InProgress {
            return None;
        }
        [self.in_progress_deadline, self.step_deadline]
            .into_iter()
            .flatten()
            .min()
            .map(|deadline| ((deadline - now).max(0) + 999) / 1000)
    }
}

/// What a thing was last told on `notify` and `notify-next`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Notified {
    /// The pending executions' jobs, sorted.
    pub(super) pending: Vec<JobId>,
    pub(super) next: Option<JobId>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) jobs: BTreeMap<JobId, Job>,
    /// Keyed by thing first, so a thing's executions are one range.
    pub(super) executions: BTreeMap<(DeviceId, JobId), Execution>,
    pub(super) notified: HashMap<DeviceId, Notified>,
    pub(super) seq: u64,
}

impl State {
    /// A thing's pending executions, in the order AWS IoT hands them out: IN_PROGRESS first,
    /// then QUEUED, each oldest first.
    pub(super) fn pending(&self, thing: &DeviceId) -> Vec<&Execution> {
        let mut pending: Vec<&Execution> = self
            .executions
            .range((thing.clone(), min_job())..)
            .take_while(|((t, _), _)| t == thing)
            .map(|(_, e)| e)
            .filter(|e| e.status.is_pending())
            .collect();
        pending.sort_by_key(|e| (e.status != JobExecutionStatus::InProgress, e.seq));
        pending
    }

    /// A job's executions.
    pub(super) fn executions_of<'a>(&'a self, job: &'a Job) -> impl Iterator<Item = &'a Execution> {
        job.things
            .iter()
            .filter_map(|thing| self.executions.get(&(thing.clone(), job.id.clone())))
    }
}

/// The smallest job id, to start a thing's range.
fn min_job() -> JobId {
    JobId::parse("-").expect("a valid job id")
}

/// The Jobs service.
#[derive(Clone)]
pub struct Jobs {
    state: Arc<Mutex<State>>,
    pub(super) account: Account,
    publisher: Link,
    pub(super) direct: Direct,
    /// How long a Jobs minute lasts (rollout rates, timeouts); tests shorten it.
    pub(super) minute: Duration,
}

impl Jobs {
    pub fn new(account: Account, publisher: Link, direct: Direct, minute: Duration) -> Self {
        Self {
            state: Arc::default(),
            account,
            publisher,
            direct,
            minute,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) async fn publish_all(&self, messages: Vec<Outgoing>) {
        self.publisher.publish_all(messages).await;
    }

    /// `minutes` of this service's clock, in milliseconds.
    pub(super) fn minutes_ms(&self, minutes: f64) -> i64 {
        (self.minute.as_secs_f64() * minutes * 1000.0) as i64
    }
}
