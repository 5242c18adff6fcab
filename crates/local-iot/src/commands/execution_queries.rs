//! The operations on recorded executions: GetCommandExecution, ListCommandExecutions and
//! DeleteCommandExecution, and the execution JSON they answer with.

use std::collections::HashMap;

use serde_json::{json, Value};

use tether_domain::clock::parse_rfc3339;
use tether_domain::status::Lifecycle;
use tether_domain::ExecutionStatus;

use super::paging::{descending, max_results, paginate};
use super::secs;
use super::state::{Commands, Execution};
use crate::aws::{arn_resource, AwsError};

/// A time filter of ListCommandExecutions: (after, before), epoch ms, both inclusive.
type Window = (Option<i64>, Option<i64>);

/// The filters of a ListCommandExecutions body.
struct ExecutionFilter<'a> {
    target: Option<&'a str>,
    command: Option<&'a str>,
    status: Option<ExecutionStatus>,
    started: Option<Window>,
    completed: Option<Window>,
}

/// A `startedTimeFilter` or `completedTimeFilter`, whose bounds are `yyyy-MM-ddTHH:mm` (UTC).
fn time_window(body: &Value, name: &str) -> Result<Option<Window>, AwsError> {
    let Some(filter) = body.get(name).filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    let bound = |key: &str| {
        filter
            .get(key)
            .and_then(Value::as_str)
            .map(|t| {
                parse_rfc3339(&format!("{t}:00Z")).ok_or_else(|| {
                    AwsError::validation(format!("{name}.{key} must look like yyyy-MM-ddTHH:mm"))
                })
            })
            .transpose()
    };
    Ok(Some((bound("after")?, bound("before")?)))
}

fn within(at: Option<i64>, window: Option<Window>) -> bool {
    match window {
        None => true,
        Some((after, before)) => {
            at.is_some_and(|t| after.is_none_or(|a| t >= a) && before.is_none_or(|b| t <= b))
        }
    }
}

impl<'a> ExecutionFilter<'a> {
    fn parse(body: &'a Value) -> Result<Self, AwsError> {
        let field = |name: &str| body.get(name).and_then(Value::as_str);
        let (target, command) = (field("targetArn"), field("commandArn"));
        if target.is_some() && command.is_some() {
            return Err(AwsError::validation(
                "give targetArn or commandArn, not both",
            ));
        }
        let status = field("status")
            .map(|s| {
                ExecutionStatus::parse(s)
                    .ok_or_else(|| AwsError::validation(format!("status {s} is not valid")))
            })
            .transpose()?;
        let started = time_window(body, "startedTimeFilter")?;
        let completed = time_window(body, "completedTimeFilter")?;
        if started.is_some() && completed.is_some() {
            return Err(AwsError::validation(
                "give startedTimeFilter or completedTimeFilter, not both",
            ));
        }
        Ok(Self {
            target,
            command,
            status,
            started,
            completed,
        })
    }

    fn matches(&self, e: &Execution) -> bool {
        self.target.is_none_or(|t| e.target_arn == t)
            && self
                .command
                .is_none_or(|c| arn_resource(c) == Some(("command", e.command_id.as_str())))
            && self.status.is_none_or(|s| e.status == s)
            && within(e.started_at, self.started)
            && within(e.completed_at, self.completed)
    }
}

impl Commands {
    fn find_execution(&self, id: &str, target_arn: Option<&str>) -> Result<Execution, AwsError> {
        let target_arn = target_arn.ok_or_else(|| AwsError::validation("targetArn is required"))?;
        let state = self.lock();
        state
            .executions
            .get(id)
            .filter(|e| e.target_arn == target_arn)
            .cloned()
            .ok_or_else(|| {
                AwsError::not_found(format!("execution {id} not found for {target_arn}"))
            })
    }

    /// GetCommandExecution.
    pub fn get_execution(
        &self,
        id: &str,
        query: &HashMap<String, String>,
    ) -> Result<Value, AwsError> {
        let execution = self.find_execution(id, query.get("targetArn").map(String::as_str))?;
        let include = query.get("includeResult").is_some_and(|v| v == "true");
        Ok(self.execution_json(&execution, include))
    }

    /// DeleteCommandExecution: only a terminal execution can be deleted.
    pub fn delete_execution(
        &self,
        id: &str,
        query: &HashMap<String, String>,
    ) -> Result<(), AwsError> {
        let execution = self.find_execution(id, query.get("targetArn").map(String::as_str))?;
        if !execution.status.phase(execution.source).is_terminal() {
            return Err(AwsError::conflict(format!(
                "execution {id} is not in a terminal state"
            )));
        }
        self.lock().executions.remove(id);
        Ok(())
    }

    /// ListCommandExecutions (iot): `POST /command-executions` with filters in the body.
    pub fn list_executions(
        &self,
        query: &HashMap<String, String>,
        body: &Value,
    ) -> Result<Value, AwsError> {
        let max = max_results(query)?;
        let desc = descending(body.get("sortOrder").and_then(Value::as_str))?;
        let filter = ExecutionFilter::parse(body)?;
        let state = self.lock();
        let mut executions: Vec<&Execution> = state
            .executions
            .values()
            .filter(|e| filter.matches(e))
            .collect();
        executions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        if desc {
            executions.reverse();
        }
        let (page, next) = paginate(
            executions,
            |e| e.id.as_str(),
            max,
            query.get("nextToken").map(String::as_str),
        )?;
        let summaries: Vec<Value> = page.iter().map(|e| self.execution_summary(e)).collect();
        let mut out = json!({ "commandExecutions": summaries });
        if let Some(next) = next {
            out["nextToken"] = json!(next);
        }
        Ok(out)
    }

    /// One execution as ListCommandExecutions lists it.
    fn execution_summary(&self, e: &Execution) -> Value {
        let full = self.execution_json(e, false);
        json!({
            "commandArn": full["commandArn"], "executionId": e.id, "targetArn": e.target_arn,
            "status": e.status.as_str(), "createdAt": full["createdAt"],
            "startedAt": full.get("startedAt"), "completedAt": full.get("completedAt"),
        })
    }

    fn execution_json(&self, e: &Execution, include_result: bool) -> Value {
        let mut out = json!({
            "executionId": e.id,
            "commandArn": self.account.arn(&format!("command/{}", e.command_id)),
            "targetArn": e.target_arn,
            "status": e.status.as_str(),
            "executionTimeoutSeconds": e.timeout_s,
            "createdAt": secs(e.created_at),
            "lastUpdatedAt": secs(e.last_updated_at),
            "timeToLive": secs(e.created_at + 182 * 24 * 3600 * 1000),
        });
        let o = out.as_object_mut().expect("object");
        if let Some(r) = &e.reason {
            o.insert("statusReason".into(), json!(r));
        }
        if let Some(p) = &e.parameters {
            o.insert("parameters".into(), p.clone());
        }
        if let Some(t) = e.started_at {
            o.insert("startedAt".into(), secs(t));
        }
        if let Some(t) = e.completed_at {
            o.insert("completedAt".into(), secs(t));
        }
        if include_result {
            if let Some(result) = &e.result {
                o.insert(
                    "result".into(),
                    Value::Object(
                        result
                            .iter()
                            .map(|(k, v)| (k.clone(), v.to_api()))
                            .collect(),
                    ),
                );
            }
        }
        out
    }
}
