//! The API's error type and its one mapping to HTTP: RFC 9457 `application/problem+json` with a
//! stable upper-snake `code`. A client error is never a 500; a 500 never says why.

use serde::{Deserialize, Serialize};

/// Every way an API call can fail, as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or breaks a rule (400).
    #[error("{0}")]
    Validation(String),
    /// A `nextToken` that this API did not issue for this list (400).
    #[error("nextToken is not valid for this list")]
    InvalidNextToken,
    /// The body is over a size limit (413).
    #[error("payload is {size} bytes; the limit is {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    /// The body is not JSON (415).
    #[error("expected Content-Type application/json")]
    UnsupportedMediaType,
    /// No route has this path (404).
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// The path exists but not with this method (405).
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// The device is known to be offline (404), so nothing was sent.
    #[error("device {0} is not connected")]
    DeviceNotConnected(String),
    /// The device did not answer before the deadline (504).
    #[error("device {device} did not answer request {request_id} within {timeout_ms} ms")]
    DeviceTimeout {
        device: String,
        request_id: String,
        timeout_ms: u64,
        /// Whether the device's MQTT client acknowledged the request (PUBACK); `None` where
        /// the delivery cannot be known (iot-data Publish).
        delivered: Option<bool>,
    },
    /// `waitMs` passed before every started execution had a final status (504).
    #[error("{open} of {total} executions had no final status after {wait_ms} ms")]
    ExecutionsPending {
        open: usize,
        total: usize,
        wait_ms: u64,
    },
    /// A record or resource does not exist (404); `what` names it (`COMMAND`, `EXECUTION`, ...).
    #[error("{what} {id} not found")]
    NotFound { what: Resource, id: String },
    /// The command is deprecated and cannot start executions (409).
    #[error("command {0} is deprecated")]
    CommandDeprecated(String),
    /// The request conflicts with the current state, e.g. an idempotency key reused with
    /// another body (409).
    #[error("{0}")]
    Conflict(String),
    /// Too many requests (429).
    #[error("too many requests; retry after {retry_after_s} s")]
    Throttled { retry_after_s: u32 },
    /// A target of a fan-out was not started: the request's time budget ran out before its
    /// turn (503, per target). A retry with the same `Idempotency-Key` starts only these.
    #[error("not started: the request ran out of time before this target's turn; retry with the same Idempotency-Key to start it")]
    NotStarted,
    /// A dependency (DynamoDB, AWS IoT) is unavailable (503).
    #[error("a dependency is unavailable; retry after {retry_after_s} s")]
    UpstreamUnavailable { retry_after_s: u32 },
    /// Anything unexpected (500). The cause goes to the log, never to the caller.
    #[error("internal error")]
    Internal,
}

/// Kinds of things a caller can look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Command,
    Execution,
    Invocation,
    Device,
    Job,
}

impl Resource {
    fn code(self) -> &'static str {
        match self {
            Resource::Command => "COMMAND_NOT_FOUND",
            Resource::Execution => "EXECUTION_NOT_FOUND",
            Resource::Invocation => "INVOCATION_NOT_FOUND",
            Resource::Device => "DEVICE_NOT_FOUND",
            Resource::Job => "JOB_NOT_FOUND",
        }
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resource::Command => "command",
            Resource::Execution => "execution",
            Resource::Invocation => "invocation",
            Resource::Device => "device",
            Resource::Job => "job",
        })
    }
}

/// A dependency's failure (DynamoDB, AWS IoT) and what the API answers for it: throttling
/// (429) and unavailability (503, `Retry-After`) pass through; anything else is
/// [`ApiError::Internal`], whose cause is logged, never answered.
pub trait Upstream: std::error::Error + 'static {
    fn to_api(&self) -> ApiError;
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, upper-snake: what clients branch on.
    pub code: String,
    /// Present on DEVICE_TIMEOUT: the invocation to poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// On DEVICE_TIMEOUT with direct delivery: whether the device acknowledged the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<bool>,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Validation(_) | ApiError::InvalidNextToken => 400,
            ApiError::DeviceNotConnected(_)
            | ApiError::NotFound { .. }
            | ApiError::RouteNotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::CommandDeprecated(_) | ApiError::Conflict(_) => 409,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::Throttled { .. } => 429,
            ApiError::Internal => 500,
            ApiError::UpstreamUnavailable { .. } | ApiError::NotStarted => 503,
            ApiError::DeviceTimeout { .. } | ApiError::ExecutionsPending { .. } => 504,
        }
    }

    /// The stable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "VALIDATION_ERROR",
            ApiError::InvalidNextToken => "INVALID_NEXT_TOKEN",
            ApiError::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::RouteNotFound(_) => "ROUTE_NOT_FOUND",
            ApiError::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            ApiError::DeviceNotConnected(_) => "DEVICE_NOT_CONNECTED",
            ApiError::DeviceTimeout { .. } => "DEVICE_TIMEOUT",
            ApiError::ExecutionsPending { .. } => "EXECUTIONS_PENDING",
            ApiError::NotFound { what, .. } => what.code(),
            ApiError::CommandDeprecated(_) => "COMMAND_DEPRECATED",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::Throttled { .. } => "THROTTLED",
            ApiError::UpstreamUnavailable { .. } => "UPSTREAM_UNAVAILABLE",
            ApiError::NotStarted => "NOT_STARTED",
            ApiError::Internal => "INTERNAL",
        }
    }

    /// Seconds for a `Retry-After` header, where the caller should retry.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            ApiError::Throttled { retry_after_s }
            | ApiError::UpstreamUnavailable { retry_after_s } => Some(*retry_after_s),
            ApiError::NotStarted => Some(1),
            _ => None,
        }
    }

    /// The problem+json body.
    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        let code = self.code();
        Problem {
            type_uri: format!(
                "urn:tether:problem:{}",
                code.to_ascii_lowercase().replace('_', "-")
            ),
            title: title(status).to_owned(),
            status,
            detail: self.to_string(),
            code: code.to_owned(),
            request_id: match self {
                ApiError::DeviceTimeout { request_id, .. } => Some(request_id.clone()),
                _ => None,
            },
            delivered: match self {
                ApiError::DeviceTimeout { delivered, .. } => *delivered,
                _ => None,
            },
        }
    }
}

fn title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Internal Server Error",
    }
}

impl From<crate::ids::IdError> for ApiError {
    fn from(err: crate::ids::IdError) -> Self {
        ApiError::Validation(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_4xx_and_only_internal_is_500() {
        let all = [
            ApiError::Validation("x".into()),
            ApiError::InvalidNextToken,
            ApiError::PayloadTooLarge { size: 2, limit: 1 },
            ApiError::UnsupportedMediaType,
            ApiError::RouteNotFound("/x".into()),
            ApiError::MethodNotAllowed("PUT".into()),
            ApiError::DeviceNotConnected("d".into()),
            ApiError::NotFound {
                what: Resource::Command,
                id: "c".into(),
            },
            ApiError::CommandDeprecated("c".into()),
            ApiError::Conflict("x".into()),
            ApiError::Throttled { retry_after_s: 1 },
        ];
        for err in all {
            assert!((400..500).contains(&err.status()), "{err:?}");
        }
        assert_eq!(ApiError::Internal.status(), 500);
    }

    #[test]
    fn internal_problem_says_nothing_about_the_cause() {
        let problem = ApiError::Internal.to_problem();
        assert_eq!(problem.detail, "internal error");
        assert_eq!(problem.code, "INTERNAL");
    }

    #[test]
    fn timeout_problem_carries_the_request_id() {
        let err = ApiError::DeviceTimeout {
            device: "d".into(),
            request_id: "r1".into(),
            timeout_ms: 200,
            delivered: Some(false),
        };
        let json = serde_json::to_value(err.to_problem()).unwrap();
        assert_eq!(json["delivered"], false);
        assert_eq!(json["status"], 504);
        assert_eq!(json["code"], "DEVICE_TIMEOUT");
        assert_eq!(json["requestId"], "r1");
        assert_eq!(json["type"], "urn:tether:problem:device-timeout");
    }

    #[test]
    fn not_found_codes_name_the_resource() {
        let err = ApiError::NotFound {
            what: Resource::Execution,
            id: "e".into(),
        };
        assert_eq!(err.code(), "EXECUTION_NOT_FOUND");
        assert_eq!(err.to_string(), "execution e not found");
    }
}
