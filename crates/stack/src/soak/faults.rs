//! The soak's fault schedule: one fault every so often, in turn — a device-gateway outage, a
//! flap of the flapping devices, DynamoDB answering errors, DynamoDB refusing connections, ingest's
//! record write failing — and a replay of the dead letters before each, as an operator
//! would redrive after an incident.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tether_device::{Fleet, FleetConfig};

use super::observed::Window;
use super::Clock;
use crate::dynamo::{set_fault, Fault};
use crate::Stack;

/// The faults, in the order the schedule injects them.
pub const KINDS: [&str; 5] = [
    "gateway-outage",
    "device-flap",
    "dynamodb-unavailable",
    "dynamodb-refused",
    "ingest-write-fails",
];

/// How long each fault lasts.
pub const DOWNTIME: Duration = Duration::from_secs(3);

/// How long ingest's record write fails: longer than local-iot's rule delivery retries (after
/// 1 s and 2 s more), so that the events of its first seconds end in the dead letters and the
/// next replay has work to do.
pub const INGEST_DOWNTIME: Duration = Duration::from_secs(8);

/// The devices that come and go, restarted as a fleet of their own on each flap; what each
/// incarnation received and sent is kept.
pub struct Flappers {
    config: FleetConfig,
    fleet: tokio::sync::Mutex<Option<Fleet>>,
    pub retired: Mutex<(Vec<tether_device::Received>, Vec<tether_device::Sent>)>,
}

impl Flappers {
    pub async fn start(config: FleetConfig) -> anyhow::Result<Self> {
        let fleet = if config.devices.is_empty() {
            None
        } else {
            Some(Fleet::start(config.clone()).await?)
        };
        Ok(Self {
            config,
            fleet: tokio::sync::Mutex::new(fleet),
            retired: Mutex::new((Vec::new(), Vec::new())),
        })
    }

    async fn retire(&self, fleet: Fleet) {
        {
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            retired.0.extend(fleet.received());
            retired.1.extend(fleet.sent());
        }
        fleet.shutdown().await;
    }

    /// Disconnects every flapping device, keeps them away for `offline`, connects them again.
    pub async fn flap(&self, offline: Duration) -> anyhow::Result<()> {
        let mut fleet = self.fleet.lock().await;
        let Some(old) = fleet.take() else {
            return Ok(());
        };
        self.retire(old).await;
        tokio::time::sleep(offline).await;
        *fleet = Some(Fleet::start(self.config.clone()).await?);
        Ok(())
    }

    /// Stops them for good; what every incarnation received and sent.
    pub async fn stop(&self) -> (Vec<tether_device::Received>, Vec<tether_device::Sent>) {
        if let Some(fleet) = self.fleet.lock().await.take() {
            self.retire(fleet).await;
        }
        std::mem::take(&mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Injects one fault of `kind` and returns its window once it is over.
async fn inject(
    kind: &'static str,
    stack: &Stack,
    flappers: &Flappers,
    clock: &Clock,
) -> anyhow::Result<Window> {
    let dynamodb = &stack.endpoints.dynamodb;
    let start = clock.now();
    let outage = kind != "device-flap";
    match kind {
        // Every device connection dropped and refused a while, as when AWS IoT's device
        // gateway fails; the rules engine and the Commands service stay, as they do in AWS.
        // (local-iot's `restart_broker` drops its own links too, which AWS has no counterpart
        // of: answers a device re-sends before those links are back are lost.)
        "gateway-outage" => {
            let iot = stack.iot().ok_or_else(|| anyhow::anyhow!("no local-iot"))?;
            iot.outage(DOWNTIME).await?;
        }
        "device-flap" => flappers.flap(DOWNTIME).await?,
        _ => {
            let fault = match kind {
                "dynamodb-unavailable" => Fault::unavailable(&[]),
                "dynamodb-refused" => Fault::refused(&[]),
                _ => Fault::unavailable(&["UpdateItem"]),
            };
            set_fault(dynamodb, Some(&fault)).await?;
            let downtime = if kind == "ingest-write-fails" {
                INGEST_DOWNTIME
            } else {
                DOWNTIME
            };
            tokio::time::sleep(downtime).await;
            set_fault(dynamodb, None).await?;
        }
    }
    Ok(Window {
        kind,
        start,
        end: clock.now(),
        outage,
    })
}

/// What the schedule did: the fault windows and the dead letters each replay delivered.
#[derive(Debug, Default)]
pub struct Schedule {
    pub windows: Vec<Window>,
    pub replayed: u64,
    pub replay_failed: u64,
}

/// Replays local-iot's dead letters; (delivered, still failing).
pub async fn replay(stack: &Stack) -> (u64, u64) {
    match stack.iot() {
        Some(iot) => {
            let replay = iot.replay_dead_letters().await;
            (replay.delivered as u64, replay.failed as u64)
        }
        None => (0, 0),
    }
}

/// One of [`KINDS`], by name, or `none`.
pub fn parse_kind(name: &str) -> Result<&'static str, String> {
    if name == "none" {
        return Ok("none");
    }
    KINDS
        .iter()
        .find(|known| **known == name)
        .copied()
        .ok_or_else(|| format!("{name:?} is not one of {}", KINDS.join(", ")))
}

/// Runs the schedule until `until`: every `every`, a replay of the dead letters and then the
/// next of `kinds`, in turn.
pub async fn run(
    stack: &Stack,
    flappers: &Flappers,
    clock: &Clock,
    kinds: &[&'static str],
    every: Duration,
    until: Instant,
) -> anyhow::Result<Schedule> {
    let mut schedule = Schedule::default();
    let kinds: Vec<&'static str> = kinds.iter().copied().filter(|k| *k != "none").collect();
    if kinds.is_empty() {
        tokio::time::sleep_until(until.into()).await;
    }
    for kind in kinds.iter().cycle() {
        if Instant::now() + every + INGEST_DOWNTIME >= until {
            break;
        }
        tokio::time::sleep(every).await;
        let (delivered, failed) = replay(stack).await;
        schedule.replayed += delivered;
        schedule.replay_failed += failed;
        tracing::info!(
            fault = kind,
            at = format!("{:.0}s", clock.now()),
            "injecting"
        );
        schedule
            .windows
            .push(inject(kind, stack, flappers, clock).await?);
    }
    Ok(schedule)
}
