//! `tether-soak` (`make soak`): the local stack under mixed traffic and a fault schedule for a
//! bounded time, then the invariants; writes SOAK.md and a JSON report, and exits non-zero
//! when an invariant was broken.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tether_stack::soak::{self, report, SoakConfig};
use tether_stack::{Stack, StackConfig};

#[derive(Debug, Parser)]
#[command(name = "tether-soak", version)]
struct Args {
    /// Repository root (template.yaml, .venv/).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// How long the traffic runs: seconds, or with s / m / h.
    #[arg(long, default_value = "10m", value_parser = duration)]
    duration: Duration,
    /// Devices that stay connected.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Devices that the fault schedule disconnects and reconnects.
    #[arg(long, default_value_t = 10)]
    flappers: usize,
    /// Callers working at once.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Time between faults: seconds, or with s / m.
    #[arg(long, default_value = "20s", value_parser = duration)]
    fault_every: Duration,
    /// The faults to inject, in turn (comma-separated, or none): gateway-outage,
    /// device-flap, dynamodb-unavailable, dynamodb-refused, ingest-write-fails.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gateway-outage,device-flap,dynamodb-unavailable,dynamodb-refused,ingest-write-fails",
        value_parser = soak::faults::parse_kind
    )]
    faults: Vec<&'static str>,
    /// Seed of the callers' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Build and run the functions in release mode.
    #[arg(long)]
    release: bool,
    /// The Markdown report (relative to --root).
    #[arg(long, default_value = "SOAK.md")]
    markdown: PathBuf,
    /// The JSON report (relative to --root).
    #[arg(long, default_value = "soak/results.json")]
    json: PathBuf,
}

fn duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: a whole number with s, m or h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?}: the unit is s, m or h")),
    };
    if seconds == 0 {
        return Err("must be at least 1s".into());
    }
    Ok(Duration::from_secs(seconds))
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    tether_logging::init("info,rmqtt=warn,tether_device=warn");
    let args = Args::parse();
    let root = args.root.canonicalize()?;
    let mut config = StackConfig::new(&root);
    config.api_port = 0;
    config.mqtt_port = 0;
    config.iot_port = 0;
    config.devices = 0;
    config.reload = false;
    config.release = args.release;
    config.concurrency = 16;
    config.log_dir = root.join(".local/soak");
    let stack = Stack::start(config).await?;
    let outcome = soak::run(
        &stack,
        SoakConfig {
            duration: args.duration,
            devices: args.devices,
            flappers: args.flappers,
            workers: args.workers,
            fault_every: args.fault_every,
            faults: args.faults,
            seed: args.seed,
        },
    )
    .await;
    stack.shutdown().await;
    let outcome = outcome?;

    let markdown = root.join(&args.markdown);
    let json = root.join(&args.json);
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let figures = report::Figures::of(&outcome);
    let text = report::markdown(&outcome, &figures);
    std::fs::write(&markdown, &text).with_context(|| format!("writing {}", markdown.display()))?;
    let data = serde_json::to_string_pretty(&report::json(&outcome, &figures))?;
    std::fs::write(&json, data).with_context(|| format!("writing {}", json.display()))?;
    println!("{text}");
    println!("written: {} and {}", markdown.display(), json.display());
    Ok(if figures.passed {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
