//! `local-iot`: run the local AWS IoT Core emulator.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tether_local_iot::aws::Account;
use tether_local_iot::rules::{redrive_function_from_template, rules_from_template};
use tether_local_iot::{Config, LocalIot};

/// A local AWS IoT Core for developing and testing Tether offline: an MQTT 5 broker, the AWS
/// IoT Commands / Publish / GetConnection REST operations, presence events, and the topic rules
/// of a SAM template delivered to functions served by `cargo lambda watch`.
///
/// Point the AWS SDKs at it with AWS_ENDPOINT_URL_IOT, AWS_ENDPOINT_URL_IOT_DATA_PLANE and
/// AWS_ENDPOINT_URL_IOT_JOBS_DATA_PLANE set to the printed HTTP endpoint (any credentials
/// work; signatures are not checked). Devices connect to the printed MQTT address.
#[derive(Debug, Parser)]
#[command(name = "local-iot", version)]
struct Args {
    /// MQTT port on 127.0.0.1 (0 picks a free port).
    #[arg(long, env = "LOCAL_IOT_MQTT_PORT", default_value_t = 1883)]
    mqtt_port: u16,
    /// MQTT over WebSocket (path /mqtt) port on 127.0.0.1 (0 picks a free port).
    #[arg(long, env = "LOCAL_IOT_WS_PORT", default_value_t = 8083)]
    ws_port: u16,
    /// HTTP port on 127.0.0.1 for the AWS REST operations (0 picks a free port).
    #[arg(long, env = "LOCAL_IOT_HTTP_PORT", default_value_t = 4566)]
    http_port: u16,
    /// SAM template whose topic rules (and functions' IoTRule events) run; they need
    /// --lambda-endpoint.
    #[arg(long, env = "LOCAL_IOT_TEMPLATE", requires = "lambda_endpoint")]
    template: Option<PathBuf>,
    /// The Lambda Invoke API that rules deliver to (cargo lambda watch, e.g.
    /// http://127.0.0.1:9001). No default: a standalone emulator delivers nowhere unless told,
    /// so it never feeds another stack's functions by accident.
    #[arg(long, env = "LOCAL_IOT_LAMBDA_ENDPOINT")]
    lambda_endpoint: Option<String>,
    /// Retries of a failed rule delivery (Lambda's asynchronous invoke retries twice).
    #[arg(long, default_value_t = 2)]
    rule_retries: u32,
    /// First wait between rule delivery attempts, in milliseconds (doubles each retry).
    #[arg(long, default_value_t = 1000)]
    rule_backoff_ms: u64,
    /// Append undeliverable rule events to this file as JSON lines.
    #[arg(long)]
    dead_letter_file: Option<PathBuf>,
    /// Seconds a command must have been deprecated before DeleteCommand deletes it at once
    /// (AWS: 43200); until then DeleteCommand answers 202 and the command is pending deletion.
    #[arg(long, default_value_t = 43_200)]
    deletion_grace_seconds: u64,
    /// How many seconds a Jobs minute lasts (rollout rates, job timeouts); shorten it to watch
    /// timeouts and rollouts happen quickly.
    #[arg(long, default_value_t = 60.0)]
    jobs_minute_seconds: f64,
    /// Region and account id used in ARNs.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    #[arg(long, default_value = "000000000000")]
    account_id: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tether_logging::init("info,rmqtt=warn");
    let args = Args::parse();
    let (rules, redrive_function) = match &args.template {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            (
                rules_from_template(&text)?,
                redrive_function_from_template(&text)?,
            )
        }
        None => (Vec::new(), None),
    };
    let iot = LocalIot::start(Config {
        mqtt_port: args.mqtt_port,
        ws_port: Some(args.ws_port),
        http_port: args.http_port,
        account: Account {
            region: args.region,
            id: args.account_id,
        },
        rules,
        redrive_function,
        lambda_endpoint: args.lambda_endpoint.unwrap_or_default(),
        rule_retries: args.rule_retries,
        rule_backoff: Duration::from_millis(args.rule_backoff_ms),
        dead_letter_file: args.dead_letter_file,
        deletion_grace: Duration::from_secs(args.deletion_grace_seconds),
        jobs_minute: Duration::from_secs_f64(args.jobs_minute_seconds),
    })
    .await?;
    // One line on stdout for scripts: where everything is.
    println!(
        "ready mqtt=mqtt://{} http={} ws={}",
        iot.mqtt_addr(),
        iot.endpoint_url(),
        iot.ws_addr()
            .map(|addr| format!("ws://{addr}/mqtt"))
            .unwrap_or_default()
    );

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
    iot.shutdown().await;
    Ok(())
}
