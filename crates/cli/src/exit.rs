//! Exit codes a script can branch on, and the one-line errors behind them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; a device answered `SUCCEEDED`; every target of `run --wait` succeeded |
//! | 1 | unexpected: the service failed (500) or answered something this tool cannot read |
//! | 2 | bad input: refused here before any request, or by the API (400, 413, 415) |
//! | 3 | the device answered `FAILED` or `REJECTED` (for `run`: at least one target did) |
//! | 4 | the deadline passed: no answer in time (504), or `run --wait` ended with targets still running or timed out |
//! | 5 | the device is not connected |
//! | 6 | not found: no such device record, invocation, command or execution |
//! | 7 | unavailable: the service or a dependency is down, throttled, or not reachable; retry later |
//! | 8 | refused: the request was not authorized (401, 403; a SigV4 signature that does not verify) |
//! | 9 | conflict: the command is deprecated, or the request conflicts with another |

use std::process::ExitCode;

use serde_json::Value;

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Ok = 0,
    Unexpected = 1,
    BadInput = 2,
    DeviceFailed = 3,
    Deadline = 4,
    NotConnected = 5,
    NotFound = 6,
    Unavailable = 7,
    Refused = 8,
    Conflict = 9,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Why a command did not do what was asked, said in one line on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Refused here, before anything was sent.
    #[error("{0}")]
    BadInput(String),
    /// The API answered with an error (a problem document, or API Gateway's own `message`);
    /// `body` is the answer as it came, for `--output json`.
    #[error("{line}")]
    Api {
        exit: Exit,
        line: String,
        body: Value,
    },
    /// No answer: the API could not be reached or the connection broke.
    #[error("{0}")]
    Unreachable(String),
    /// Anything else (configuration, credentials, an answer that is not JSON).
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn bad_input(text: impl Into<String>) -> Self {
        Self::BadInput(text.into())
    }

    pub fn exit(&self) -> Exit {
        match self {
            CliError::BadInput(_) => Exit::BadInput,
            CliError::Api { exit, .. } => *exit,
            CliError::Unreachable(_) => Exit::Unavailable,
            CliError::Other(_) => Exit::Unexpected,
        }
    }

    /// The error an API answer stands for: its problem's title, detail and code in one line.
    pub fn from_answer(status: u16, body: &Value) -> Self {
        let text = |name: &str| body.get(name).and_then(Value::as_str);
        let code = text("code");
        let line = match (text("title"), code) {
            (Some(title), Some(code)) => {
                let detail = text("detail").unwrap_or_default();
                let mut line = format!("{title}: {detail} ({code})");
                if let Some(request) = text("requestId") {
                    line.push_str(&format!("; request {request}"));
                }
                line
            }
            // API Gateway's own answers (IAM authorization, throttling) carry only a message.
            _ => format!(
                "HTTP {status}: {}",
                text("message").map_or_else(|| body.to_string(), str::to_owned)
            ),
        };
        CliError::Api {
            exit: exit_for(status, code),
            line,
            body: body.clone(),
        }
    }
}

/// The exit code of an error answer, by its stable code first and its status second.
pub fn exit_for(status: u16, code: Option<&str>) -> Exit {
    match code {
        Some("DEVICE_NOT_CONNECTED") => return Exit::NotConnected,
        Some("DEVICE_TIMEOUT" | "EXECUTIONS_PENDING") => return Exit::Deadline,
        Some("COMMAND_DEPRECATED" | "CONFLICT") => return Exit::Conflict,
        _ => {}
    }
    match status {
        400 | 405 | 413 | 415 | 422 => Exit::BadInput,
        401 | 403 => Exit::Refused,
        404 => Exit::NotFound,
        409 => Exit::Conflict,
        429 | 502 | 503 => Exit::Unavailable,
        504 => Exit::Deadline,
        _ => Exit::Unexpected,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn codes_decide_before_statuses() {
        assert_eq!(
            exit_for(404, Some("DEVICE_NOT_CONNECTED")),
            Exit::NotConnected
        );
        assert_eq!(exit_for(404, Some("COMMAND_NOT_FOUND")), Exit::NotFound);
        assert_eq!(exit_for(504, Some("DEVICE_TIMEOUT")), Exit::Deadline);
        assert_eq!(exit_for(409, Some("COMMAND_DEPRECATED")), Exit::Conflict);
        assert_eq!(
            exit_for(503, Some("UPSTREAM_UNAVAILABLE")),
            Exit::Unavailable
        );
        assert_eq!(exit_for(400, Some("VALIDATION_ERROR")), Exit::BadInput);
        assert_eq!(exit_for(403, None), Exit::Refused);
        assert_eq!(exit_for(500, Some("INTERNAL")), Exit::Unexpected);
    }

    #[test]
    fn a_problem_is_one_line_with_its_code() {
        let err = CliError::from_answer(
            504,
            &json!({"title": "Device did not answer", "detail": "no reply in 200 ms",
                    "code": "DEVICE_TIMEOUT", "status": 504, "requestId": "r-1"}),
        );
        assert_eq!(
            err.to_string(),
            "Device did not answer: no reply in 200 ms (DEVICE_TIMEOUT); request r-1"
        );
        assert_eq!(err.exit(), Exit::Deadline);
        let gateway =
            CliError::from_answer(403, &json!({"message": "Missing Authentication Token"}));
        assert_eq!(
            gateway.to_string(),
            "HTTP 403: Missing Authentication Token"
        );
        assert_eq!(gateway.exit(), Exit::Refused);
    }
}
