//! `local-iot`: a local AWS IoT Core emulator, so Tether runs and is tested on one offline
//! machine. What it must match is in `docs/aws-iot-reference.md`.
//!
//! Layout:
//! - [`broker`]: the embedded MQTT 5 broker (rmqtt) and its connect/disconnect hooks;
//! - [`link`]: the emulator's own MQTT connections to that broker;
//! - [`presence`]: presence events and the connection table behind GetConnection;
//! - [`commands`]: AWS IoT Commands (resources, executions, device topics, timeouts, events);
//! - [`jobs`]: AWS IoT Jobs (control plane, device API over MQTT and HTTPS, rollout, timeouts,
//!   abort, events);
//! - [`http`]: the AWS REST operations (iot, iot-jobs-data, iot-data) for the real SDKs;
//! - [`rules`]: the topic-rule engine that invokes the functions of `template.yaml`;
//! - [`aws`]: AWS error shapes and ARNs.

pub mod aws;
pub mod broker;
pub mod commands;
pub mod http;
pub mod jobs;
pub mod link;
pub mod presence;
pub mod rules;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::aws::Account;
use crate::broker::Broker;
use crate::commands::Commands;
use crate::jobs::Jobs;
use crate::link::Link;
use crate::presence::Connections;
use crate::rules::{DeadLetters, Delivery, Rule};

/// How to start the emulator.
#[derive(Debug, Clone)]
pub struct Config {
    /// MQTT port on 127.0.0.1 (0: a free one).
    pub mqtt_port: u16,
    /// MQTT over WebSocket (path `/mqtt`) on 127.0.0.1 (0: a free one; `None`: not served).
    pub ws_port: Option<u16>,
    /// HTTP port on 127.0.0.1 for the AWS REST operations (0: a free one).
    pub http_port: u16,
    pub account: Account,
    /// The rules to run (see [`rules::rules_from_template`]).
    pub rules: Vec<Rule>,
    /// The function a replay of the dead letters goes to (see
    /// [`rules::redrive_function_from_template`]); `None`: the function that failed.
    pub redrive_function: Option<String>,
    /// Where the functions' Lambda Invoke API is (`cargo lambda watch`: `http://127.0.0.1:9000`).
    pub lambda_endpoint: String,
    /// Rule delivery retries after the first attempt, and the first wait between them.
    pub rule_retries: u32,
    pub rule_backoff: Duration,
    /// Append undeliverable rule events here (JSON lines), besides keeping them in memory.
    pub dead_letter_file: Option<PathBuf>,
    /// How long a command must have been deprecated before DeleteCommand removes it at once
    /// (AWS: 12 h).
    pub deletion_grace: Duration,
    /// How long a Jobs minute lasts: rollout rates (`maximumPerMinute`) and the in-progress and
    /// step timeouts count in it. One minute; tests shorten it.
    pub jobs_minute: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mqtt_port: 0,
            ws_port: Some(0),
            http_port: 0,
            account: Account::default(),
            rules: Vec::new(),
            redrive_function: None,
            lambda_endpoint: "http://127.0.0.1:9000".into(),
            rule_retries: 2,
            rule_backoff: Duration::from_secs(1),
            dead_letter_file: None,
            deletion_grace: Duration::from_secs(12 * 3600),
            jobs_minute: Duration::from_secs(60),
        }
    }
}

/// A running emulator. [`LocalIot::shutdown`] (or dropping it) stops everything it started.
pub struct LocalIot {
    broker: Broker,
    http_addr: SocketAddr,
    http_stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    links: Vec<Link>,
    delivery: Delivery,
}

impl LocalIot {
    /// Starts the broker, the internal links, the rule engine and the HTTP server, and returns
    /// once all of them accept work.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let (conn_tx, conn_rx) = mpsc::unbounded_channel();
        let (jobs_tx, mut jobs_rx) = mpsc::unbounded_channel();
        let broker = Broker::start(config.mqtt_port, config.ws_port, conn_tx, jobs_tx)
            .await
            .context("starting the MQTT broker")?;
        let mqtt = broker.addr();

        let (publisher, _) = Link::connect(mqtt, "publisher", &[]).await?;
        let connections = Connections::default();
        let mut tasks = vec![tokio::spawn(presence::run(
            conn_rx,
            connections.clone(),
            publisher.clone(),
        ))];
        let mut links = vec![publisher.clone()];

        let commands = Commands::new(
            config.account.clone(),
            publisher.clone(),
            config.deletion_grace,
        );
        let jobs = Jobs::new(
            config.account.clone(),
            publisher.clone(),
            broker.direct(),
            config.jobs_minute,
        );
        let jobs_handler = jobs.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(request) = jobs_rx.recv().await {
                // One request at a time per emulator keeps a device's requests in order.
                jobs_handler.device_request(request).await;
            }
        }));
        let (responses_link, responses_task) = hear_device_responses(mqtt, &commands).await?;
        links.push(responses_link);
        tasks.push(responses_task);

        let dead_letters = DeadLetters::new(config.dead_letter_file.clone());
        let delivery = Delivery::new(
            config.lambda_endpoint.clone(),
            config.rule_retries,
            config.rule_backoff,
            dead_letters.clone(),
        )
        .with_redrive_function(config.redrive_function.clone());
        for (i, rule) in config.rules.into_iter().enumerate() {
            let (link, messages) = Link::connect(
                mqtt,
                &format!("rule-{i}"),
                std::slice::from_ref(&rule.filter),
            )
            .await?;
            tracing::info!(rule = %rule.name, filter = %rule.filter, function = %rule.function, "rule active");
            links.push(link);
            tasks.push(tokio::spawn(rules::run(rule, messages, delivery.clone())));
        }

        let services = http::Services {
            commands,
            jobs,
            connections,
            publisher,
            direct: broker.direct(),
            delivery: delivery.clone(),
        };
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], config.http_port)))
                .await
                .context("binding the HTTP port")?;
        let http_addr = listener.local_addr()?;
        let (http_stop, stopped) = oneshot::channel::<()>();
        tasks.push(tokio::spawn(async move {
            let server =
                axum::serve(listener, http::router(services)).with_graceful_shutdown(async {
                    let _ = stopped.await;
                });
            if let Err(err) = server.await {
                tracing::error!(error = %err, "HTTP server stopped");
            }
        }));
        tracing::info!(mqtt = %mqtt, http = %http_addr, "local-iot ready");
        Ok(Self {
            broker,
            http_addr,
            http_stop: Some(http_stop),
            tasks,
            links,
            delivery,
        })
    }

    /// The MQTT listener.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.broker.addr()
    }

    /// The MQTT over WebSocket listener (`ws://{addr}/mqtt`), if served.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.broker.ws_addr()
    }

    /// `http://127.0.0.1:{port}`: the value for `AWS_ENDPOINT_URL_IOT`,
    /// `AWS_ENDPOINT_URL_IOT_DATA_PLANE` and `AWS_ENDPOINT_URL_IOT_JOBS_DATA_PLANE`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Rule events that could not be delivered.
    pub fn dead_letters(&self) -> Vec<serde_json::Value> {
        self.delivery.dead_letters.all()
    }

    /// Delivers the dead-lettered rule events once more (`POST /_local/dead-letters/replay`).
    pub async fn replay_dead_letters(&self) -> rules::Replay {
        self.delivery.replay_dead_letters().await
    }

    /// A device-gateway outage: every device connection is dropped and new ones are refused
    /// for `downtime`; the emulator's own connections (rules, Commands, Publish) stay up, as
    /// AWS IoT Core's services do when devices lose the gateway.
    pub async fn outage(&self, downtime: Duration) -> anyhow::Result<()> {
        self.broker
            .outage(Some(link::INTERNAL_CLIENT_PREFIX), downtime)
            .await
    }

    /// A broker restart: every connection is dropped, the emulator's own included, and new ones
    /// are refused for `downtime`. The emulator's connections come back by themselves and
    /// subscribe again; messages published while a consumer was away are lost, as on any
    /// broker restart without persistent sessions.
    pub async fn restart_broker(&self, downtime: Duration) -> anyhow::Result<()> {
        self.broker.outage(None, downtime).await
    }

    /// Stops the HTTP server, closes the internal connections and stops the broker.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        for link in &self.links {
            link.close().await;
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Connects the Commands service to the devices' response topics (things and clients, JSON
/// and CBOR): the connection, and the task that hands each response to the service.
async fn hear_device_responses(
    mqtt: SocketAddr,
    commands: &Commands,
) -> anyhow::Result<(Link, JoinHandle<()>)> {
    let response_filters = ["things", "clients"]
        .iter()
        .flat_map(|kind| {
            ["json", "cbor"]
                .map(|format| format!("$aws/commands/{kind}/+/executions/+/response/{format}"))
        })
        .collect::<Vec<_>>();
    let (responses_link, mut responses) =
        Link::connect(mqtt, "commands", &response_filters).await?;
    let handler = commands.clone();
    let task = tokio::spawn(async move {
        while let Some(message) = responses.recv().await {
            handler.device_response(&message).await;
        }
    });
    Ok((responses_link, task))
}

impl Drop for LocalIot {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
