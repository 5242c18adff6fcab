//! `device`: run simulated devices (or one real device agent) until Ctrl-C, SIGTERM or
//! `--exit-after-ms`, then print what they received and answered.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tether_device::config::numbered;
use tether_device::{Behaviours, BrokerUrl, Fleet, FleetConfig, JobsTransport, TlsFiles};
use tether_domain::topics::{InvokeTopics, TargetKind};
use tether_domain::DeviceId;

const EXAMPLES: &str = "\
BEHAVIOURS (--behaviour METHOD=BEHAVIOUR, repeatable; METHOD is a method name or * for the rest)
  echo                         answer SUCCEEDED at once; result = the request payload
  delay:MS | delay:MIN..MAX    like echo, after MS ms or a random time in [MIN, MAX]
  fail[:CODE[:DESCRIPTION]]    answer FAILED with that statusReason (default DEVICE_FAILED)
  reject[:CODE[:DESCRIPTION]]  answer REJECTED with that statusReason (default DEVICE_REJECTED)
  progress[:MS]                IN_PROGRESS at once, then SUCCEEDED MS later (default 200); a
                               direct invocation's progress carries statusReason PROGRESS 50%
  never                        receive and never answer
  twice                        answer SUCCEEDED twice
  late[:MARGIN_MS]             answer once the request's deadline has surely passed: its message
                               expiry + 1 s (brokers round it down) + MARGIN_MS (default 500)
  disconnect[:OFFLINE_MS]      drop the connection without answering (no MQTT DISCONNECT), come
                               back OFFLINE_MS later (default 1000)
  Reason codes are 1-64 characters of [A-Z0-9_-]. Without a * rule every other method echoes.
  A Commands request's method is the top-level \"method\" string of its JSON payload; without
  one, the * behaviour answers. Commands results are {\"payload\": {\"s\": <request payload>}}.

AWS IOT JOBS (--jobs-transport mqtt, the default; https; off)
  Each device takes one job at a time. Over MQTT it subscribes to
  $aws/things/{thing}/jobs/notify-next and the answers to its requests, asks start-next on every
  connection (jobs queued while it was offline) and when notified, runs the job, and publishes
  $aws/things/{thing}/jobs/{jobId}/update (status, statusDetails, expectedVersion). Over HTTPS it
  polls StartNextPendingJobExecution every --jobs-poll-ms and calls UpdateJobExecution; the
  endpoint, region and credentials come from the AWS SDK's environment
  (AWS_ENDPOINT_URL_IOT_JOBS_DATA_PLANE, AWS_REGION, AWS_ACCESS_KEY_ID, ...). On AWS IoT Core
  the device policy must allow the Jobs topics (or use --jobs-transport off).
  The job document's top-level \"operation\" string picks the behaviour, as a method does:
  echo, delay                  SUCCEEDED {\"progress\": \"100%\"} (after the delay)
  progress:MS                  IN_PROGRESS {\"progress\": \"50%\"}, then SUCCEEDED MS later
  fail:CODE:DESCRIPTION        FAILED {\"reasonCode\": CODE, \"reasonDescription\": DESCRIPTION}
  reject:CODE:DESCRIPTION      REJECTED, with the same statusDetails
  never                        left IN_PROGRESS until the cloud times it out or cancels it
  twice                        SUCCEEDED twice (the cloud refuses the second)
  late[:MARGIN_MS]             SUCCEEDED once the execution's timeout has passed
  disconnect[:OFFLINE_MS]      drops the connection; SUCCEEDED when handed the job again

CONFIG FILE (--config fleet.yaml; --behaviour rules given on the command line win)
  behaviours:
    \"*\": echo
    reboot: delay:200
    update: fail:LOW_BATTERY:battery below 10%

EXAMPLES
  # three devices on the local emulator (cargo run -p tether-local-iot)
  device --count 3 --behaviour 'reboot=delay:200' --behaviour '*=echo'
  # jobs over HTTPS on the local emulator; jobs with {\"operation\": \"upgrade\"} fail
  AWS_ENDPOINT_URL_IOT_JOBS_DATA_PLANE=http://127.0.0.1:4566 AWS_REGION=us-east-1 \\
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \\
      device --count 3 --jobs-transport https --behaviour 'upgrade=fail:LOW_BATTERY:below 10%'
  # one real device on AWS IoT Core
  device --id my-thing --broker mqtts://$(aws iot describe-endpoint --endpoint-type iot:Data-ATS \\
      --query endpointAddress --output text):8883 \\
      --cert my-thing.cert.pem --key my-thing.private.key --ca AmazonRootCA1.pem

On exit (Ctrl-C, SIGTERM, or --exit-after-ms) a summary of what was received and answered is
printed on stdout; once every device is connected and subscribed, one line
'ready devices=N broker=URL' is printed there too. Logs go to stderr (RUST_LOG=debug for more).";

/// Tether's device simulator and reference device agent.
///
/// Connects one or many devices over MQTT 5 (client id = thing name) and answers Tether direct
/// invocations (tether/devices/{deviceId}/invoke/{method}/{requestId}, replied on the MQTT 5
/// response topic with the correlation data) and AWS IoT Commands executions
/// ($aws/commands/things/{thing}/executions/{id}/request/...), each with a scripted behaviour
/// chosen by method, and processes AWS IoT Jobs over MQTT or HTTPS, the behaviour chosen by the
/// job document's "operation".
#[derive(Debug, Parser)]
#[command(name = "device", version, after_help = EXAMPLES)]
struct Args {
    /// Broker: mqtt://HOST:PORT (plain TCP, e.g. local-iot; port 1883 if left out) or
    /// mqtts://HOST:PORT (TLS, AWS IoT Core: the iot:Data-ATS endpoint, port 8883 if left out;
    /// port 443 uses ALPN x-amzn-mqtt-ca).
    #[arg(long, env = "DEVICE_BROKER", default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// Device certificate (PEM) for mqtts://.
    #[arg(long, env = "DEVICE_CERT", requires_all = ["key", "ca"])]
    cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "DEVICE_KEY", requires_all = ["cert", "ca"])]
    key: Option<PathBuf>,
    /// CA certificate(s) to trust (PEM), e.g. AmazonRootCA1.pem.
    #[arg(long, env = "DEVICE_CA", requires_all = ["cert", "key"])]
    ca: Option<PathBuf>,
    /// Run one device with this id (thing name and MQTT client id).
    #[arg(long, conflicts_with_all = ["count", "prefix"])]
    id: Option<String>,
    /// Run this many devices: {prefix}1 ... {prefix}N, one MQTT connection each.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Prefix of the numbered device ids.
    #[arg(long, default_value = "dev-")]
    prefix: String,
    /// How a method is answered: METHOD=BEHAVIOUR (repeatable; see BEHAVIOURS below).
    #[arg(
        long = "behaviour",
        visible_alias = "behavior",
        value_name = "METHOD=BEHAVIOUR",
        value_parser = parse_rule
    )]
    behaviours: Vec<String>,
    /// YAML file with behaviours (see CONFIG FILE below).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Direct-invocation topic prefix.
    #[arg(long, default_value = InvokeTopics::DEFAULT_PREFIX)]
    topic_prefix: String,
    /// Commands target type the devices answer as.
    #[arg(long, value_enum, default_value_t = Target::Thing)]
    commands_target: Target,
    /// How the devices take AWS IoT Jobs (see AWS IOT JOBS below).
    #[arg(long, env = "DEVICE_JOBS_TRANSPORT", value_enum, default_value_t = Jobs::Mqtt)]
    jobs_transport: Jobs,
    /// HTTPS jobs: milliseconds between two StartNextPendingJobExecution calls when nothing is
    /// pending.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    jobs_poll_ms: u64,
    /// MQTT jobs: milliseconds to wait for the answer to a Jobs request before giving up on it
    /// (and asking start-next again).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    jobs_reply_timeout_ms: u64,
    /// MQTT keep-alive in seconds (at least 5).
    #[arg(long, default_value_t = 30)]
    keep_alive_secs: u64,
    /// How long to wait for every device to be connected and subscribed before giving up.
    #[arg(long, default_value_t = 30_000)]
    ready_timeout_ms: u64,
    /// Stop after this many milliseconds (for scripts); otherwise run until Ctrl-C or SIGTERM.
    #[arg(long)]
    exit_after_ms: Option<u64>,
    /// Format of the exit summary.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    summary: SummaryFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Target {
    /// $aws/commands/things/{thing}/...
    Thing,
    /// $aws/commands/clients/{clientId}/...
    Client,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Jobs {
    /// $aws/things/{thing}/jobs/... on the device's MQTT connection
    Mqtt,
    /// iot-jobs-data over HTTPS (aws-sdk-iotjobsdataplane), polled
    Https,
    /// no Jobs
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SummaryFormat {
    Text,
    Json,
}

/// Checks a rule when the command line is parsed, so a typo is reported with clap's usage.
fn parse_rule(rule: &str) -> Result<String, String> {
    Behaviours::parse_rule(rule)
        .map(|_| rule.to_owned())
        .map_err(|err| err.to_string())
}

fn fleet_config(args: &Args) -> anyhow::Result<FleetConfig> {
    let broker: BrokerUrl = args.broker.parse()?;
    let devices = match &args.id {
        Some(id) => vec![DeviceId::parse(id.as_str()).with_context(|| format!("--id {id:?}"))?],
        None => numbered(&args.prefix, args.count)?,
    };
    let mut behaviours = Behaviours::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the behaviours file {}", path.display()))?;
        behaviours.apply_yaml(&path.display().to_string(), &text)?;
    }
    behaviours.apply_rules(args.behaviours.iter().map(String::as_str))?;
    let mut config = FleetConfig::new(broker, devices).with_behaviours(behaviours);
    config.topics = InvokeTopics::new(&args.topic_prefix)?;
    config.commands_target = match args.commands_target {
        Target::Thing => TargetKind::Thing,
        Target::Client => TargetKind::Client,
    };
    config.jobs.transport = match args.jobs_transport {
        Jobs::Mqtt => JobsTransport::Mqtt,
        Jobs::Https => JobsTransport::Https,
        Jobs::Off => JobsTransport::Off,
    };
    config.jobs.poll_interval = Duration::from_millis(args.jobs_poll_ms);
    config.jobs.reply_timeout = Duration::from_millis(args.jobs_reply_timeout_ms);
    config.keep_alive = Duration::from_secs(args.keep_alive_secs);
    config.ready_timeout = Duration::from_millis(args.ready_timeout_ms);
    if let (Some(cert), Some(key), Some(ca)) = (&args.cert, &args.key, &args.ca) {
        config.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        });
    }
    config.validate()?;
    Ok(config)
}

async fn until_told_to_stop(exit_after: Option<Duration>) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let timer = async {
        match exit_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
        _ = timer => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tether_logging::init("info,rumqttc=warn");
    let args = Args::parse();
    let config = fleet_config(&args)?;
    for rule in config.behaviours.rules() {
        tracing::info!(%rule, "behaviour");
    }
    tracing::info!(transport = ?config.jobs.transport, "jobs");
    let broker = config.broker.clone();
    let devices = config.devices.len();
    let fleet = Fleet::start(config).await?;
    println!("ready devices={devices} broker={broker}");

    until_told_to_stop(args.exit_after_ms.map(Duration::from_millis)).await?;
    tracing::info!("shutting down");
    let summary = fleet.shutdown().await;
    match args.summary {
        SummaryFormat::Text => println!("{summary}"),
        SummaryFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
    }
    Ok(())
}
