//! `tether-local`: start the whole local stack, print where it is and a guided demo, and serve
//! until Ctrl-C; or, with `--demo`, run the demo scenario once and exit with its result.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tether_stack::demo::Demo;
use tether_stack::{Stack, StackConfig};

/// Tether on one machine: a local DynamoDB endpoint, local-iot (MQTT 5 broker, AWS IoT REST
/// operations, topic rules), the Lambda functions under `cargo lambda watch` on the deployed API
/// paths, and simulated devices. Everything listens on 127.0.0.1 and stops on Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "tether-local", version)]
struct Args {
    /// Repository root (template.yaml, scripts/, .venv/).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// API port (the functions, on the deployed paths).
    #[arg(long, default_value_t = 9000)]
    api_port: u16,
    /// MQTT port of local-iot.
    #[arg(long, default_value_t = 1883)]
    mqtt_port: u16,
    /// AWS IoT REST port of local-iot.
    #[arg(long, default_value_t = 4566)]
    iot_port: u16,
    /// Simulated devices dev-1..dev-N.
    #[arg(long, default_value_t = 3)]
    devices: usize,
    /// Extra device behaviour rules, METHOD=BEHAVIOUR (see `device --help`).
    #[arg(long = "behaviour")]
    behaviours: Vec<String>,
    /// Do not rebuild the functions when the code changes.
    #[arg(long)]
    no_reload: bool,
    /// Run the demo scenario once and exit (non-zero if a step fails).
    #[arg(long)]
    demo: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rmqtt=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let root = args.root.canonicalize()?;
    let mut config = StackConfig::new(&root);
    config.api_port = args.api_port;
    config.mqtt_port = args.mqtt_port;
    config.iot_port = args.iot_port;
    config.devices = args.devices;
    config.behaviours.extend(args.behaviours);
    config.reload = !args.no_reload && !args.demo;
    config.ready_timeout = Duration::from_secs(900);

    let stack = Stack::start(config).await?;
    let e = stack.endpoints.clone();
    println!("\nTether is running locally.");
    println!("  API            {}", e.api);
    println!("  MQTT           {}", e.mqtt);
    println!("  AWS IoT (local-iot) {}", e.iot);
    println!("  DynamoDB       {}  table {}", e.dynamodb, e.table);
    println!(
        "  env file       {}",
        root.join(".local/stack.env").display()
    );
    println!("  logs           {}", root.join(".local").display());

    let outcome = Demo::new(&e.api).run().await;
    if args.demo {
        stack.shutdown().await;
        return outcome;
    }
    if let Err(err) = &outcome {
        eprintln!("\nThe demo did not pass: {err:#}");
    }
    println!("\nready — serving until Ctrl-C");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    println!("stopping…");
    stack.shutdown().await;
    Ok(())
}
