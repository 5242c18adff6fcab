//! `tether invoke`, `tether device`, `tether invocation`.

use std::time::Duration;

use clap::Args;
use reqwest::Method;
use serde_json::Value;
use tether_domain::api::InvokeRequest;
use tether_domain::DeviceId;

use super::{device_id, domain, exit_of, idempotency_key};
use crate::api::Client;
use crate::exit::{CliError, Exit};
use crate::input;
use crate::output::{self, field, pairs, Out};

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The device (its thing name and MQTT client id).
    device: String,
    /// The method the device runs.
    method: String,
    /// The request's payload: JSON, @FILE, or - for stdin (default {}).
    #[arg(long, value_name = "JSON|@FILE|-")]
    payload: Option<String>,
    /// How long the device has to answer: 100ms to 25s (default 10s).
    #[arg(long, value_parser = input::duration, value_name = "DURATION")]
    timeout: Option<Duration>,
    /// Wait up to this long for a device that is not connected to connect (at most --timeout);
    /// without it such a device is refused at once.
    #[arg(long, value_parser = input::duration, value_name = "DURATION")]
    connect_timeout: Option<Duration>,
    /// A retry with the same key returns the first call's answer instead of calling again.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

pub struct Invoke {
    device: DeviceId,
    body: Value,
    key: Option<String>,
}

impl InvokeArgs {
    pub fn check(&self) -> Result<Invoke, CliError> {
        let device = device_id(&self.device)?;
        let payload = match &self.payload {
            Some(argument) => Some(input::json_argument("--payload", argument)?),
            None => None,
        };
        let request = InvokeRequest {
            method: self.method.clone(),
            payload,
            timeout_ms: self.timeout.map(|t| t.as_millis() as u64),
            connect_timeout_ms: self.connect_timeout.map(|t| t.as_millis() as u64),
        };
        request.clone().validate().map_err(domain)?;
        let body = serde_json::to_value(&request).map_err(anyhow::Error::from)?;
        Ok(Invoke {
            device,
            body,
            key: idempotency_key(&self.idempotency_key)?,
        })
    }
}

impl Invoke {
    pub(super) async fn run(self, client: &Client, out: Out) -> Result<Exit, CliError> {
        let path = format!("/devices/{}/invoke", self.device);
        let answer = client
            .call(Method::POST, &path, Some(&self.body), self.key.as_deref())
            .await?;
        out.show(&answer.body, |v| {
            let mut text = format!(
                "{}  {} {}  {} ms  request {}\n",
                field(v, "status"),
                field(v, "deviceId"),
                field(v, "method"),
                field(v, "elapsedMs"),
                field(v, "requestId"),
            );
            if v.get("statusReason").is_some() {
                text.push_str(&format!("reason  {}\n", output::reason(v)));
            }
            text + &output::block("result", v.get("result"))
        });
        Ok(exit_of(&field(&answer.body, "status")))
    }
}

pub(super) fn show_device(v: &Value) -> String {
    pairs(&[
        ("device", field(v, "deviceId")),
        ("connected", field(v, "connected")),
        ("since", field(v, "since")),
        ("last seen", field(v, "lastSeen")),
        ("disconnect reason", field(v, "disconnectReason")),
    ])
}

pub(super) fn show_invocation(v: &Value) -> String {
    pairs(&[
        ("request", field(v, "requestId")),
        ("device", field(v, "deviceId")),
        ("method", field(v, "method")),
        ("status", field(v, "status")),
        ("reason", output::reason(v)),
        ("created", field(v, "createdAt")),
        ("completed", field(v, "completedAt")),
    ]) + &output::block("result", v.get("result"))
        + &output::timeline(v)
}
