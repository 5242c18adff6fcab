//! The guided scenario: what `make run` shows a newcomer and `make demo` checks. Each step is
//! an HTTP call a user can copy (printed as `curl`), with the answer it must get.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};

/// One HTTP exchange.
struct Call {
    status: u16,
    body: Value,
    location: Option<String>,
}

/// Runs the scenario against `api`; prints every step; fails on the first wrong answer.
pub struct Demo {
    api: String,
    http: reqwest::Client,
    /// Print the curl lines (off in tests).
    pub verbose: bool,
    /// The broker (`mqtt://host:port`) where the Jobs scene connects a device that was offline
    /// when the job was created; without it that scene is left out.
    pub mqtt: Option<String>,
}

impl Demo {
    pub fn new(api: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .build()
            .unwrap_or_default();
        Self {
            api: api.trim_end_matches('/').to_owned(),
            http,
            verbose: true,
            mqtt: None,
        }
    }

    fn say(&self, text: &str) {
        if self.verbose {
            println!("{text}");
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Call> {
        let url = format!("{}{path}", self.api);
        self.say(&curl_line(method, &url, body.as_ref()));
        let request = match method {
            "GET" => self.http.get(&url),
            "PATCH" => self.http.patch(&url).json(&body.unwrap_or(Value::Null)),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body.unwrap_or(Value::Null)),
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await?;
        let body: Value = serde_json::from_str(&text)
            .with_context(|| format!("{method} {url} answered non-JSON: {text}"))?;
        self.say(&format!("    -> {status} {body}"));
        Ok(Call {
            status,
            body,
            location,
        })
    }

    /// The whole scenario: each scene in turn, stopping at the first wrong answer.
    pub async fn run(&self) -> anyhow::Result<()> {
        self.presence().await?;
        self.synchronous_call().await?;
        self.device_failure().await?;
        self.silent_device().await?;
        self.late_answer().await?;
        self.refusals().await?;
        let command_id = format!("demo-blink-{}", std::process::id());
        let executions = self.command_on_three_devices(&command_id).await?;
        self.history(&command_id, &executions).await?;
        self.deprecation(&command_id).await?;
        if let Some(mqtt) = &self.mqtt {
            self.job_with_a_late_device(mqtt).await?;
        }
        self.say("\nDemo passed.");
        Ok(())
    }

    /// Scene 1: the device's presence, as ingest recorded it.
    async fn presence(&self) -> anyhow::Result<()> {
        self.say("\n1. Is dev-1 online? (presence events, recorded by ingest)");
        let device = self.call("GET", "/devices/dev-1", None).await?;
        ensure!(
            device.status == 200 && device.body["connected"] == true,
            "dev-1 should be connected"
        );
        Ok(())
    }

    /// Scene 2: a synchronous call the device answers.
    async fn synchronous_call(&self) -> anyhow::Result<()> {
        self.say("\n2. Call a method synchronously: dev-1 echoes the payload back");
        let answered = self
            .call("POST", "/devices/dev-1/invoke", Some(json!({"method": "setLight", "payload": {"on": true, "level": 80}, "timeoutMs": 5000})))
            .await?;
        ensure!(answered.status == 200, "the call should succeed");
        ensure!(
            answered.body["status"] == "SUCCEEDED",
            "the device answers SUCCEEDED"
        );
        ensure!(
            answered.body["result"] == json!({"on": true, "level": 80}),
            "the result is the echoed payload"
        );
        Ok(())
    }

    /// Scene 3: a call the device fails.
    async fn device_failure(&self) -> anyhow::Result<()> {
        self.say(
            "\n3. A method the device fails: still a 200, with the device's status and reason",
        );
        let failed = self
            .call(
                "POST",
                "/devices/dev-1/invoke",
                Some(json!({"method": "fail", "timeoutMs": 5000})),
            )
            .await?;
        ensure!(
            failed.status == 200 && failed.body["status"] == "FAILED",
            "the device answers FAILED"
        );
        ensure!(
            failed.body["statusReason"]["reasonCode"] == "BULB_BROKEN",
            "with its reason"
        );
        Ok(())
    }

    /// Scene 4: a device that never answers, and the record the 504 points to.
    async fn silent_device(&self) -> anyhow::Result<()> {
        self.say("\n4. A device that never answers: 504 at the deadline, with where to look later");
        let started = Instant::now();
        let silent = self
            .call(
                "POST",
                "/devices/dev-2/invoke",
                Some(json!({"method": "silent", "timeoutMs": 500})),
            )
            .await?;
        ensure!(
            silent.status == 504 && silent.body["code"] == "DEVICE_TIMEOUT",
            "a 504 DEVICE_TIMEOUT"
        );
        ensure!(
            started.elapsed() < Duration::from_secs(5),
            "the 504 comes at the deadline, not seconds later"
        );
        let location = silent.location.context("a 504 carries Location")?;
        let record = self.call("GET", &location, None).await?;
        ensure!(
            record.body["status"] == "TIMED_OUT",
            "the record shows TIMED_OUT"
        );
        Ok(())
    }

    /// Scene 5: a reply after the 504 completes the record.
    async fn late_answer(&self) -> anyhow::Result<()> {
        self.say("\n5. A late answer still completes the record after the 504");
        let late = self
            .call(
                "POST",
                "/devices/dev-3/invoke",
                Some(json!({"method": "late", "timeoutMs": 300})),
            )
            .await?;
        ensure!(late.status == 504, "a 504 first");
        ensure!(
            late.body["delivered"] == true,
            "the 504 says the device got the request"
        );
        let location = late.location.context("a 504 carries Location")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let record = self.call("GET", &location, None).await?;
            if record.body["status"] == "SUCCEEDED" {
                let timeline: Vec<&str> = record.body["timeline"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["status"].as_str())
                    .collect();
                ensure!(
                    timeline == ["PENDING", "DELIVERED", "TIMED_OUT", "SUCCEEDED"],
                    "the history shows it all (DELIVERED: the device acknowledged the request): {timeline:?}"
                );
                // (`late` answers 300 ms after the deadline, long after its PUBACK.)
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the late reply did not complete the record");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Scenes 6 and 7: what is refused at once (an unknown device, bad input).
    async fn refusals(&self) -> anyhow::Result<()> {
        self.say("\n6. An unknown or offline device is refused at once");
        let ghost = self
            .call(
                "POST",
                "/devices/ghost-1/invoke",
                Some(json!({"method": "ping"})),
            )
            .await?;
        ensure!(
            ghost.status == 404 && ghost.body["code"] == "DEVICE_NOT_CONNECTED",
            "404 DEVICE_NOT_CONNECTED"
        );

        self.say("\n7. Bad input is a 400 with a stable code, and nothing is sent");
        let hostile = self
            .call(
                "POST",
                "/devices/dev-1/invoke",
                Some(json!({"method": "a/+/#"})),
            )
            .await?;
        ensure!(
            hostile.status == 400 && hostile.body["code"] == "VALIDATION_ERROR",
            "400 VALIDATION_ERROR"
        );
        Ok(())
    }

    /// Scene 8: an AWS IoT command run on the three devices, waiting for all of them; returns
    /// the executions the answer lists.
    async fn command_on_three_devices(&self, command_id: &str) -> anyhow::Result<Vec<Value>> {
        self.say(
            "\n8. Create an AWS IoT command, then run it on three devices and wait for all of them",
        );
        let created = self
            .call("POST", "/commands", Some(json!({"commandId": command_id, "displayName": "Blink", "payload": {"content": {"blink": 3}}})))
            .await?;
        ensure!(created.status == 201, "the command is created");
        let started = self
            .call(
                "POST",
                &format!("/commands/{command_id}/executions"),
                Some(json!({"targets": ["dev-1", "dev-2", "dev-3"], "timeoutSeconds": 10, "waitMs": 8000})),
            )
            .await?;
        ensure!(
            started.status == 200,
            "all three executions finish within waitMs"
        );
        let executions = started.body["executions"]
            .as_array()
            .context("executions")?;
        ensure!(executions.len() == 3, "one execution per target");
        ensure!(
            executions.iter().all(|e| e["status"] == "SUCCEEDED"),
            "every device answered SUCCEEDED"
        );
        Ok(executions.clone())
    }

    /// Scene 9: the history of the first execution, and the command's executions a page at a
    /// time.
    async fn history(&self, command_id: &str, executions: &[Value]) -> anyhow::Result<()> {
        self.say("\n9. History: one execution with its timeline, and the command's executions, newest first");
        let first = executions[0]["executionId"]
            .as_str()
            .context("an execution id")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let one = self
                .call("GET", &format!("/executions/{first}"), None)
                .await?;
            let timeline: Vec<&str> = one.body["timeline"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["status"].as_str())
                .collect();
            if one.body["result"].is_object() && timeline.last() == Some(&"SUCCEEDED") {
                ensure!(
                    timeline.first() == Some(&"CREATED"),
                    "the history starts at CREATED: {timeline:?}"
                );
                break;
            }
            if Instant::now() > deadline {
                bail!("the execution's result was not recorded: {}", one.body);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let listed = self
            .call(
                "GET",
                &format!("/commands/{command_id}/executions?status=SUCCEEDED&limit=2"),
                None,
            )
            .await?;
        ensure!(
            listed.status == 200 && listed.body["items"].as_array().map(Vec::len) == Some(2),
            "two per page"
        );
        ensure!(
            listed.body["nextToken"].is_string(),
            "and a token for the third"
        );
        Ok(())
    }

    /// Scene 10: a deprecated command starts nothing more.
    async fn deprecation(&self, command_id: &str) -> anyhow::Result<()> {
        self.say("\n10. Deprecate the command: it starts nothing more");
        let deprecated = self
            .call(
                "PATCH",
                &format!("/commands/{command_id}"),
                Some(json!({"deprecated": true})),
            )
            .await?;
        ensure!(
            deprecated.status == 200 && deprecated.body["deprecated"] == true,
            "deprecated"
        );
        let refused = self
            .call(
                "POST",
                &format!("/commands/{command_id}/executions"),
                Some(json!({"targets": ["dev-1"]})),
            )
            .await?;
        ensure!(
            refused.status == 409 && refused.body["code"] == "COMMAND_DEPRECATED",
            "409 COMMAND_DEPRECATED"
        );
        Ok(())
    }
}

impl Demo {
    /// Scene 11: an AWS IoT job over three devices, one of them offline until later: the two
    /// online ones run it at once, the third runs it when it connects.
    async fn job_with_a_late_device(&self, mqtt: &str) -> anyhow::Result<()> {
        let late = format!("demo-late-{}", std::process::id());
        let job_id = format!("demo-firmware-{}", std::process::id());
        self.say(&format!(
            "\n11. An AWS IoT job for dev-1, dev-2 and {late}, which is offline: the job waits for it"
        ));
        let created = self
            .call(
                "POST",
                "/jobs",
                Some(json!({"jobId": job_id, "targets": ["dev-1", "dev-2", late],
                            "document": {"operation": "upgrade", "version": "1.2.0"},
                            "description": "firmware 1.2.0", "timeoutMinutes": 30})),
            )
            .await?;
        ensure!(created.status == 201, "the job is created");
        let job = self
            .until(&format!("/jobs/{job_id}"), |j| {
                j["counts"]["SUCCEEDED"] == 2 && j["counts"]["QUEUED"] == 1
            })
            .await?;
        ensure!(job["status"] == "IN_PROGRESS", "the job waits for {late}");

        self.say(&format!("    ({late} connects now)"));
        let broker: tether_device::BrokerUrl = mqtt.parse()?;
        let config =
            tether_device::FleetConfig::new(broker, vec![tether_domain::DeviceId::parse(&late)?]);
        let device = tether_device::Fleet::start(config).await?;
        let finished = self
            .until(&format!("/jobs/{job_id}"), |j| j["status"] == "COMPLETED")
            .await;
        device.shutdown().await;
        ensure!(
            finished?["counts"]["SUCCEEDED"] == 3,
            "every device ran the job"
        );
        let executions = self
            .until(&format!("/jobs/{job_id}/executions"), |page| {
                page["items"].as_array().is_some_and(|items| {
                    items.len() == 3
                        && items
                            .iter()
                            .all(|e| e["timeline"].as_array().is_some_and(|t| !t.is_empty()))
                })
            })
            .await?;
        ensure!(
            executions["items"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|e| e["status"] == "SUCCEEDED"),
            "each execution SUCCEEDED, with its history"
        );
        Ok(())
    }

    /// GETs `path` until `done` holds (15 s at most); the last answer is printed.
    async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let verbose = self.verbose;
        let quiet = Self {
            api: self.api.clone(),
            http: self.http.clone(),
            verbose: false,
            mqtt: None,
        };
        loop {
            let answer = quiet.call("GET", path, None).await?;
            if answer.status == 200 && done(&answer.body) {
                if verbose {
                    self.call("GET", path, None).await?;
                }
                return Ok(answer.body);
            }
            if Instant::now() > deadline {
                bail!("{path} stayed at {}", answer.body);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// A shell line that makes the same call, quoted so that it can be pasted as it is (a `&` in
/// a query string would otherwise send the command to the background).
fn curl_line(method: &str, url: &str, body: Option<&Value>) -> String {
    let quote = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
    match body {
        Some(body) => format!(
            "  $ curl -s -X {method} {} -H 'content-type: application/json' -d {}",
            quote(url),
            quote(&body.to_string())
        ),
        None => format!("  $ curl -s {}", quote(url)),
    }
}

#[cfg(test)]
mod curl_tests {
    use super::*;

    #[test]
    fn printed_curl_lines_paste_into_a_shell_as_they_are() {
        assert_eq!(
            curl_line(
                "GET",
                "http://127.0.0.1:9000/executions?status=SUCCEEDED&limit=2",
                None
            ),
            "  $ curl -s 'http://127.0.0.1:9000/executions?status=SUCCEEDED&limit=2'"
        );
        let body = serde_json::json!({"note": "it's"});
        assert_eq!(
            curl_line("POST", "http://h/x", Some(&body)),
            r#"  $ curl -s -X POST 'http://h/x' -H 'content-type: application/json' -d '{"note":"it'\''s"}'"#
        );
    }
}
