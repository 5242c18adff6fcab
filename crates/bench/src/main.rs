//! `make bench`: Tether's speed, measured on the local stack against floors, side by side in
//! one run. Writes `bench/results.json` and `BENCHMARKS.md` and prints the table.
//!
//! Layout:
//! - [`invoke`]: end-to-end latency and throughput, the unavoidable hops, the blog sample's
//!   connect-per-call baseline, deadline precision;
//! - [`ingest`]: events through the `ingest` handler against raw conditional PutItem calls;
//! - [`cli`]: the `tether` command line's whole-process time beside curl and awscurl;
//! - [`coldstart`]: init time, peak RSS and zipped size of each function against a
//!   hello-world `lambda_runtime` binary;
//! - [`stats`]: percentiles, figures over repeated runs, goals;
//! - [`suite`]: the order of a run, one function a benchmark, and the goals;
//! - [`report`]: the table, the JSON and the Markdown.

mod cli;
mod coldstart;
mod cpu;
mod ingest;
mod invoke;
mod jobs;
mod mqtt;
mod report;
mod stats;
mod suite;
mod wait;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tether_stack::{Stack, StackConfig};

/// Measures Tether on the local stack; see BENCHMARKS.md for what each figure means.
#[derive(Debug, Parser)]
#[command(name = "tether-bench")]
struct Args {
    /// Repository root.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// How many times each benchmark is repeated (figures are the median of the runs).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Simulated devices (the concurrency-64 and load benchmarks spread their calls over them).
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Skip the load benchmark (500 calls at once over the devices; it runs last).
    #[arg(long)]
    no_load: bool,
    /// Where the release builds of the functions are (the stack builds them there);
    /// `hello-lambda` is taken from beside this program.
    #[arg(long)]
    functions_dir: PathBuf,
    /// The release build of the `tether` command line, timed beside curl and awscurl
    /// (left out when not given).
    #[arg(long)]
    cli: Option<PathBuf>,
}

/// What the benchmarks share: the running stack's endpoints and clients.
pub struct Env {
    pub api: String,
    pub mqtt: String,
    pub table: String,
    pub devices: usize,
    pub http: reqwest::Client,
    pub iot_data: aws_sdk_iotdataplane::Client,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub ingest: tether_ingest::Deps,
    /// The variables the functions run with.
    pub function_env: Vec<(String, String)>,
}

impl Env {
    async fn new(stack: &Stack, devices: usize) -> anyhow::Result<Self> {
        let e = &stack.endpoints;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local", "local", None, None, "bench",
            ))
            .load()
            .await;
        let dynamo = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(&e.dynamodb)
                .build(),
        );
        let iot = aws_sdk_iot::Client::from_conf(
            aws_sdk_iot::config::Builder::from(&sdk)
                .endpoint_url(&e.iot)
                .build(),
        );
        let jobs = aws_sdk_iotjobsdataplane::Client::from_conf(
            aws_sdk_iotjobsdataplane::config::Builder::from(&sdk)
                .endpoint_url(&e.iot)
                .build(),
        );
        let iot_data = aws_sdk_iotdataplane::Client::from_conf(
            aws_sdk_iotdataplane::config::Builder::from(&sdk)
                .endpoint_url(&e.iot)
                .build(),
        );
        let store = tether_store::Store::new(dynamo.clone(), &e.table);
        let ingest = tether_ingest::Deps {
            store,
            commands: tether_adapters::commands::CommandsGateway::new(iot, jobs),
            topics: tether_domain::topics::InvokeTopics::new("tether")?,
            jobs: tether_domain::JobScope::new("tether-")?,
        };
        // The functions' environment as the stack gives it, without its log level (the
        // cold-start measurements time the functions' own work).
        let function_env = tether_stack::function_env(e)
            .into_iter()
            .filter(|(name, _)| name != "RUST_LOG")
            .collect();
        Ok(Self {
            api: e.api.clone(),
            mqtt: e.mqtt.clone(),
            table: e.table.clone(),
            devices,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(128)
                .build()?,
            iot_data,
            dynamo,
            ingest,
            function_env,
        })
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    tether_logging::init("warn,tether_stack=info");
    let args = Args::parse();
    let root = args.root.canonicalize().context("the repository root")?;
    let started = Instant::now();

    let mut config = StackConfig::new(&root);
    config.api_port = 0;
    config.mqtt_port = 0;
    config.iot_port = 0;
    config.reload = false;
    config.release = true;
    config.concurrency = 16;
    config.devices = args.devices;
    config.log_dir = root.join(".local/bench");
    eprintln!(
        "starting the local stack (release build of the functions; the first time takes a while)"
    );
    let mut stack = Stack::start(config).await?;
    let outcome = async {
        let env = Env::new(&stack, args.devices).await?;
        suite::run(
            &env,
            &mut stack,
            &root,
            &args.functions_dir,
            args.cli.as_deref(),
            args.runs.max(1),
            !args.no_load,
        )
        .await
    }
    .await;
    stack.shutdown().await;
    let (figures, goals) = outcome?;

    let report = report::Report::new(&root, figures, goals, started.elapsed())?;
    print!("{}", report.table());
    report.write(&root)?;
    eprintln!("wrote bench/results.json and BENCHMARKS.md");
    Ok(())
}
