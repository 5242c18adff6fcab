//! The whole of Tether on one machine, as `make run` starts it and the end-to-end tests use it:
//! the local DynamoDB endpoint, `local-iot` (broker, AWS IoT REST operations, topic rules), the
//! functions under `cargo lambda watch` on the deployed API paths, and simulated devices.
//!
//! Layout:
//! - [`dynamo`]: the local DynamoDB endpoint (`tether-local-dynamodb`, in process) and the
//!   table from `template.yaml`;
//! - [`functions`]: `cargo lambda watch` and the functions' readiness;
//! - [`gateway`]: the API port, in front of `cargo lambda watch` as API Gateway is in front of
//!   the functions;
//! - [`demo`]: the guided scenario (`make demo` runs it and fails on the first wrong answer).

pub mod demo;
pub use tether_local_dynamodb as dynamo;
pub mod functions;
pub mod gateway;
pub mod procs;
pub mod sigv4;
pub mod soak;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tether_device::{Behaviours, Fleet, FleetConfig};
use tether_local_iot::rules::{redrive_function_from_template, rules_from_template};
use tether_local_iot::LocalIot;

use crate::dynamo::LocalDynamo;
use crate::functions::Functions;
use crate::gateway::Gateway;

/// What to start.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The repository root (template.yaml, scripts/, .venv/).
    pub root: PathBuf,
    /// API port (cargo lambda watch); 0 picks a free one.
    pub api_port: u16,
    /// MQTT and AWS IoT REST ports of local-iot (0: free ports).
    pub mqtt_port: u16,
    pub iot_port: u16,
    /// Local DynamoDB port (0: a free one).
    pub dynamo_port: u16,
    pub table: String,
    /// Simulated devices `{prefix}1..{prefix}{count}`, with their behaviour rules.
    pub devices: usize,
    pub device_prefix: String,
    pub behaviours: Vec<String>,
    /// Rebuild and restart functions when the code changes.
    pub reload: bool,
    /// Build and run the functions with the release profile (the benchmarks do).
    pub release: bool,
    /// Instances of each function that may serve requests at once.
    pub concurrency: usize,
    /// Logs of the parts go here (functions.log, dead-letters.jsonl).
    pub log_dir: PathBuf,
    /// How long the first start may take (it compiles the functions).
    pub ready_timeout: Duration,
    /// The API requires SigV4 signatures made with the local credentials ([`LOCAL_KEY`]),
    /// as a deployed API's IAM authorization does (`make run AUTH=sigv4`).
    pub sigv4: bool,
    /// How long a minute of AWS IoT Jobs lasts in local-iot (rollout rates, job timeouts): a
    /// minute, as in AWS; tests shorten it to see timeouts happen.
    pub jobs_minute: Duration,
}

/// The local stack's AWS credentials (access key id and secret alike) and region: what its
/// parts are configured with, what `stack.env` exports, and what its SigV4 check accepts.
pub const LOCAL_KEY: &str = "local";
pub const LOCAL_REGION: &str = "us-east-1";

impl StackConfig {
    /// The defaults of `make run`, for a repository root.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            log_dir: root.join(".local"),
            root,
            api_port: 9000,
            mqtt_port: 1883,
            iot_port: 4566,
            dynamo_port: 0,
            table: "tether-local".into(),
            devices: 3,
            device_prefix: "dev-".into(),
            behaviours: default_behaviours(),
            reload: true,
            release: false,
            concurrency: 8,
            ready_timeout: Duration::from_secs(900),
            sigv4: false,
            jobs_minute: Duration::from_secs(60),
        }
    }
}

/// The simulated devices' default behaviours: every method answers at once (`echo`), and a
/// few method names show the other outcomes.
pub fn default_behaviours() -> Vec<String> {
    [
        "*=echo",
        "slow=delay:1500",
        "fail=fail:BULB_BROKEN:the bulb is broken",
        "reject=reject:BUSY",
        "silent=never",
        "late=late:300",
        "progress=progress:300",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Where everything listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub api: String,
    pub mqtt: String,
    /// MQTT over WebSocket: `ws://127.0.0.1:{port}/mqtt`.
    pub mqtt_ws: String,
    pub iot: String,
    pub dynamodb: String,
    pub table: String,
    /// The API checks SigV4 signatures (`stack.env` says `TETHER_SIGN=1`).
    pub sigv4: bool,
}

impl Endpoints {
    /// The lines of the env file a user can `source`.
    pub fn env_file(&self) -> String {
        format!(
            "# Tether local stack (written by tether-local). `source` this file.\n\
             export TETHER_API={api}\n\
             export TETHER_MQTT={mqtt}\n\
             export TETHER_MQTT_WS={mqtt_ws}\n\
             export TETHER_TABLE={table}\n\
             export AWS_ENDPOINT_URL_DYNAMODB={dynamodb}\n\
             export AWS_ENDPOINT_URL_IOT={iot}\n\
             export AWS_ENDPOINT_URL_IOT_DATA_PLANE={iot}\n\
             export AWS_ENDPOINT_URL_IOT_JOBS_DATA_PLANE={iot}\n\
             export AWS_REGION=us-east-1\n\
             export AWS_DEFAULT_REGION=us-east-1\n\
             export AWS_ACCESS_KEY_ID={LOCAL_KEY}\n\
             export AWS_SECRET_ACCESS_KEY={LOCAL_KEY}\n\
             {sign}",
            sign = if self.sigv4 {
                "# The API checks SigV4 signatures: `tether` signs with the keys above.\nexport TETHER_SIGN=1\n"
            } else {
                ""
            },
            api = self.api,
            mqtt = self.mqtt,
            mqtt_ws = self.mqtt_ws,
            table = self.table,
            dynamodb = self.dynamodb,
            iot = self.iot,
        )
    }
}

/// The running stack. [`Stack::shutdown`] stops everything it started.
pub struct Stack {
    pub endpoints: Endpoints,
    fleet: Option<Fleet>,
    gateway: Option<Gateway>,
    functions: Option<Functions>,
    iot: Option<LocalIot>,
    dynamo: Option<LocalDynamo>,
    /// What it was started with, and the functions' port, for [`Stack::restart_functions`].
    config: StackConfig,
    watch_port: u16,
}

/// Polls `GET /devices/{id}` until every device shows as connected.
pub async fn wait_connected(
    api: &str,
    ids: &[tether_domain::DeviceId],
    timeout: Duration,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let deadline = std::time::Instant::now() + timeout;
    for id in ids {
        loop {
            let answer = http.get(format!("{api}/devices/{id}")).send().await;
            let connected = match answer {
                Ok(response) => response
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["connected"] == true),
                Err(_) => false,
            };
            if connected {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "{id} connected but its presence was not recorded within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Creates the log directory and removes a previous run's `stack.env`, which would say "ready"
/// while this one is still starting, and its `functions.log` (a run appends to its own across
/// [`Stack::restart_functions`]).
fn prepare_log_dir(log_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    for stale in ["stack.env", "functions.log"] {
        let file = log_dir.join(stale);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("removing {}", file.display())),
        }
    }
    Ok(())
}

/// Starts `local-iot` with the topic rules of `template.yaml`, delivering to the functions
/// through the Lambda Invoke API of the watcher on `watch_port`.
async fn start_iot(config: &StackConfig, watch_port: u16) -> anyhow::Result<LocalIot> {
    tracing::info!("starting local-iot");
    let template = std::fs::read_to_string(config.root.join("template.yaml"))
        .context("reading template.yaml")?;
    LocalIot::start(tether_local_iot::Config {
        mqtt_port: config.mqtt_port,
        http_port: config.iot_port,
        rules: rules_from_template(&template)?,
        redrive_function: redrive_function_from_template(&template)?,
        // The Lambda Invoke API of the watcher (rules do not go through API Gateway).
        lambda_endpoint: format!("http://127.0.0.1:{watch_port}"),
        dead_letter_file: Some(config.log_dir.join("dead-letters.jsonl")),
        jobs_minute: config.jobs_minute,
        ..tether_local_iot::Config::default()
    })
    .await
}

/// The functions' environment: the table, the template's defaults and the local endpoints
/// (the benchmarks use it too).
pub fn function_env(endpoints: &Endpoints) -> Vec<(String, String)> {
    [
        ("TABLE_NAME", endpoints.table.as_str()),
        ("TOPIC_PREFIX", "tether"),
        // The template's defaults: SendDirectMessage with confirmation (CONNECTIVITY_CHECK is
        // for DELIVERY=publish).
        ("DELIVERY", "direct"),
        ("CONNECTIVITY_CHECK", "presence"),
        // The template's default CommandIdPrefix: the API's ids map into AWS IoT as there.
        ("COMMAND_ID_PREFIX", "tether-"),
        // The template's default JobIdPrefix, and local-iot's account.
        ("JOB_ID_PREFIX", "tether-"),
        ("ACCOUNT_ID", "000000000000"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        // Each invoke instance's inbox: replies straight to the waiting call, over MQTT over
        // WebSocket as deployed (there with TLS and SigV4).
        ("REPLY_INBOX", endpoints.mqtt_ws.as_str()),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoints.dynamodb.as_str()),
        ("AWS_ENDPOINT_URL_IOT", endpoints.iot.as_str()),
        ("AWS_ENDPOINT_URL_IOT_DATA_PLANE", endpoints.iot.as_str()),
        (
            "AWS_ENDPOINT_URL_IOT_JOBS_DATA_PLANE",
            endpoints.iot.as_str(),
        ),
        ("RUST_LOG", "info"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    // One trust-store bundle, as the template sets it (there: Amazon Linux's path).
    .chain(
        Path::new(DEBIAN_CA_BUNDLE)
            .exists()
            .then(|| ("SSL_CERT_FILE".to_owned(), DEBIAN_CA_BUNDLE.to_owned())),
    )
    .collect()
}

/// Debian's bundle of the system's trusted certificates.
const DEBIAN_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builds the functions, starts `cargo lambda watch` on `watch_port` with `env` for the
/// functions and waits until it serves.
async fn start_functions(
    config: &StackConfig,
    watch_port: u16,
    env: &[(String, String)],
) -> anyhow::Result<Functions> {
    tracing::info!("building the functions (the first time takes a few minutes)");
    functions::prebuild(&config.root, config.release).await?;
    tracing::info!("starting cargo lambda watch");
    let mut functions = Functions::start(
        &config.root,
        watch_port,
        env,
        functions::Serving {
            reload: config.reload,
            release: config.release,
            concurrency: config.concurrency,
        },
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.log_dir.join("functions.log"))
            .context("opening functions.log")?,
    )?;
    functions.wait_ready(config.ready_timeout).await?;
    Ok(functions)
}

/// Connects the simulated devices, if any, and waits until the API shows each connected.
async fn start_fleet(
    config: &StackConfig,
    iot: &LocalIot,
    api: &str,
) -> anyhow::Result<Option<Fleet>> {
    if config.devices == 0 {
        return Ok(None);
    }
    tracing::info!(count = config.devices, "connecting simulated devices");
    let mut behaviours = Behaviours::default();
    behaviours.apply_rules(config.behaviours.iter().map(String::as_str))?;
    let ids = tether_device::config::numbered(&config.device_prefix, config.devices)?;
    let fleet =
        Fleet::start(FleetConfig::local(iot.mqtt_addr(), ids.clone()).with_behaviours(behaviours))
            .await?;
    // Presence travels broker -> rule -> ingest -> DynamoDB; invoke refuses a device
    // until it is recorded, so wait for that too.
    wait_connected(api, &ids, Duration::from_secs(60)).await?;
    Ok(Some(fleet))
}

impl Stack {
    /// Starts every part and returns once each answers.
    pub async fn start(config: StackConfig) -> anyhow::Result<Self> {
        prepare_log_dir(&config.log_dir)?;
        let root = config.root.as_path();

        tracing::info!("starting the local DynamoDB endpoint");
        let dynamo = LocalDynamo::from_env_or_start(config.dynamo_port)?;
        dynamo.create_table(root, &config.table).await?;

        // The rules must know the watcher's port before it starts; the API port is the
        // gateway's.
        let watch_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let gateway =
            Gateway::start(config.api_port, &format!("http://127.0.0.1:{watch_port}")).await?;
        let iot = start_iot(&config, watch_port).await?;

        let endpoints = Endpoints {
            api: gateway.url(),
            mqtt: format!("mqtt://{}", iot.mqtt_addr()),
            mqtt_ws: iot
                .ws_addr()
                .map(|addr| format!("ws://{addr}/mqtt"))
                .unwrap_or_default(),
            iot: iot.endpoint_url(),
            dynamodb: dynamo.endpoint().to_owned(),
            table: config.table.clone(),
            sigv4: config.sigv4,
        };

        let functions = start_functions(&config, watch_port, &function_env(&endpoints)).await?;
        if config.sigv4 {
            gateway.require_sigv4(sigv4::Verifier::local(LOCAL_KEY, LOCAL_KEY, LOCAL_REGION));
        }
        gateway.open();
        let fleet = start_fleet(&config, &iot, &endpoints.api).await?;

        std::fs::write(config.log_dir.join("stack.env"), endpoints.env_file())
            .context("writing stack.env")?;
        Ok(Self {
            endpoints,
            fleet,
            gateway: Some(gateway),
            functions: Some(functions),
            iot: Some(iot),
            dynamo: Some(dynamo),
            config,
            watch_port,
        })
    }

    /// Stops the functions and starts them again on the same port with their environment
    /// changed: each `(name, value)` sets a variable, an empty value removes it. The benchmarks
    /// measure the invoke paths side by side this way (`REPLY_INBOX` empty: the rule and
    /// polling path). Returns once the functions answer again.
    pub async fn restart_functions(&mut self, changes: &[(&str, &str)]) -> anyhow::Result<()> {
        if let Some(functions) = self.functions.take() {
            tokio::task::spawn_blocking(move || functions.stop()).await?;
        }
        let mut env = function_env(&self.endpoints);
        for (name, value) in changes {
            env.retain(|(n, _)| n != name);
            if !value.is_empty() {
                env.push(((*name).to_owned(), (*value).to_owned()));
            }
        }
        self.functions = Some(start_functions(&self.config, self.watch_port, &env).await?);
        Ok(())
    }

    /// The AWS IoT Core emulator.
    pub fn iot(&self) -> Option<&LocalIot> {
        self.iot.as_ref()
    }

    /// The simulated devices, if any.
    pub fn fleet(&self) -> Option<&Fleet> {
        self.fleet.as_ref()
    }

    /// Waits until a part of the stack stops by itself (`cargo lambda watch` exiting, the
    /// DynamoDB endpoint's thread ending) and says which; never returns while all run.
    pub async fn part_stopped(&mut self) -> String {
        loop {
            if let Some(status) = self.functions.as_mut().and_then(Functions::exited) {
                return format!("cargo lambda watch (the functions) exited with {status}");
            }
            if self.dynamo.as_ref().is_some_and(|d| !d.is_running()) {
                return "the local DynamoDB endpoint stopped".into();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops the devices, the API gateway, the functions, local-iot and the DynamoDB endpoint,
    /// in that order.
    pub async fn shutdown(mut self) {
        if let Some(fleet) = self.fleet.take() {
            fleet.shutdown().await;
        }
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await;
        }
        if let Some(functions) = self.functions.take() {
            let _ = tokio::task::spawn_blocking(move || functions.stop()).await;
        }
        if let Some(iot) = self.iot.take() {
            iot.shutdown().await;
        }
        self.dynamo.take();
    }
}
