//! `tether-local`: start the whole local stack, print where it is and a guided demo, and serve
//! until Ctrl-C; or, with `--demo`, run the demo scenario once and exit with its result.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tether_stack::demo::Demo;
use tether_stack::{Stack, StackConfig, LOCAL_KEY, LOCAL_REGION};

/// Tether on one machine: a local DynamoDB endpoint, local-iot (MQTT 5 broker, AWS IoT REST
/// operations, topic rules), the Lambda functions under `cargo lambda watch` on the deployed API
/// paths, and simulated devices. Everything listens on 127.0.0.1 and stops on Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "tether-local", version)]
struct Args {
    /// Repository root (template.yaml, .venv/).
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
    /// Serve without running the guided demo first.
    #[arg(long, conflicts_with = "demo")]
    no_demo: bool,
    /// Where this stack keeps its env file and logs (relative to --root). A second stack
    /// beside a running one needs a folder of its own.
    #[arg(long, default_value = ".local")]
    state_dir: PathBuf,
    /// What the API requires of a request: nothing (none), or a SigV4 signature made with the
    /// local credentials, as a deployed API's IAM authorization does (sigv4; the demo, which
    /// does not sign, is then left out: call with `tether`, which does).
    #[arg(long, value_enum, default_value_t = Auth::None)]
    auth: Auth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Auth {
    None,
    Sigv4,
}

/// Ctrl-C (SIGINT) or SIGTERM: to this process or to its process group.
async fn stop_signal() -> &'static str {
    let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tether_logging::init("info,rmqtt=warn");
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
    config.sigv4 = args.auth == Auth::Sigv4;
    anyhow::ensure!(
        !(config.sigv4 && args.demo),
        "--demo does not sign its requests: it cannot run with --auth sigv4"
    );

    config.log_dir = root.join(&args.state_dir);
    let state_dir = config.log_dir.clone();

    // Signals are handled from the start: stopped while it starts (a build can take minutes),
    // the stack drops what it has started, and every process of it ends.
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut stack = tokio::select! {
        started = Stack::start(config) => started?,
        signal = &mut stop => {
            eprintln!("{signal} while starting: stopped");
            return Ok(());
        }
    };
    let e = stack.endpoints.clone();
    println!("\nTether is running locally.");
    println!("  API            {}", e.api);
    println!("  MQTT           {}", e.mqtt);
    println!("  AWS IoT (local-iot) {}", e.iot);
    println!("  DynamoDB       {}  table {}", e.dynamodb, e.table);
    println!("  env file       {}", state_dir.join("stack.env").display());
    println!("  logs           {}", state_dir.display());

    if args.auth == Auth::Sigv4 {
        println!("  auth           SigV4 (access key {LOCAL_KEY}, {LOCAL_REGION}, execute-api)");
        println!("\nThe demo does not sign its requests: try `tether invoke dev-1 ping` instead.");
    } else if !args.no_demo {
        let mut demo = Demo::new(&e.api);
        demo.mqtt = Some(e.mqtt.clone());
        let outcome = tokio::select! {
            outcome = demo.run() => outcome,
            signal = &mut stop => {
                println!("{signal}: stopping…");
                stack.shutdown().await;
                return Ok(());
            }
        };
        if args.demo {
            stack.shutdown().await;
            return outcome;
        }
        if let Err(err) = &outcome {
            eprintln!("\nThe demo did not pass: {err:#}");
        }
    }
    println!("\nready — serving until Ctrl-C");
    let failed = tokio::select! {
        signal = &mut stop => {
            println!("{signal}: stopping…");
            None
        }
        part = stack.part_stopped() => Some(part),
    };
    stack.shutdown().await;
    match failed {
        // A part that dies stops the stack, and says so.
        Some(part) => anyhow::bail!("{part}; the stack is stopped"),
        None => Ok(()),
    }
}
