//! `POST /devices/{deviceId}/invoke`: the body, checked into an [`Invocation`], and the answer.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{invalid, present, DEFAULT_TIMEOUT_MS, MAX_PAYLOAD_BYTES, TIMEOUT_MS};
use crate::error::ApiError;
use crate::ids::MethodName;
use crate::status::{InvocationStatus, StatusReason};

/// `POST /devices/{deviceId}/invoke` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvokeRequest {
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_ms: Option<u64>,
    /// How long to wait for a device that is not connected to connect (at most `timeoutMs`);
    /// absent or 0: a device that is not connected is refused at once.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout_ms: Option<u64>,
}

/// A direct invocation that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub method: MethodName,
    /// The payload as it will be published (JSON text; `{}` when none was given).
    pub payload: String,
    pub timeout_ms: u64,
    /// 0: no wait for the device to connect.
    pub connect_timeout_ms: u64,
}

impl InvokeRequest {
    pub fn validate(self) -> Result<Invocation, ApiError> {
        let method = MethodName::parse(self.method)?;
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !TIMEOUT_MS.contains(&timeout_ms) {
            return Err(invalid(format!(
                "timeoutMs must be between {} and {}",
                TIMEOUT_MS.start(),
                TIMEOUT_MS.end()
            )));
        }
        let connect_timeout_ms = self.connect_timeout_ms.unwrap_or(0);
        if connect_timeout_ms > timeout_ms {
            return Err(invalid(format!(
                "connectTimeoutMs ({connect_timeout_ms}) must not exceed timeoutMs ({timeout_ms})"
            )));
        }
        let payload = match self.payload {
            Some(value) => {
                serde_json::to_string(&value).map_err(|_| invalid("payload is not valid JSON"))?
            }
            None => "{}".to_owned(),
        };
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(ApiError::PayloadTooLarge {
                size: payload.len(),
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        Ok(Invocation {
            method,
            payload,
            timeout_ms,
            connect_timeout_ms,
        })
    }
}

/// `POST /devices/{deviceId}/invoke` answer (200).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvokeResponse {
    pub request_id: String,
    pub device_id: String,
    pub method: String,
    pub status: InvocationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<StatusReason>,
    pub elapsed_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tests::invoke;
    use serde_json::json;

    #[test]
    fn invoke_defaults_timeout_and_payload() {
        let ok = invoke(json!({"method": "reboot"})).unwrap();
        assert_eq!(ok.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(ok.payload, "{}");
    }

    #[test]
    fn invoke_refuses_out_of_range_timeouts() {
        for t in [0, 99, 25_001, u64::MAX] {
            assert!(
                invoke(json!({"method": "m", "timeoutMs": t})).is_err(),
                "{t}"
            );
        }
        for t in [100, 25_000] {
            assert!(
                invoke(json!({"method": "m", "timeoutMs": t})).is_ok(),
                "{t}"
            );
        }
    }

    #[test]
    fn invoke_payload_at_the_limit_passes_and_over_it_is_413() {
        let filler = |n: usize| json!("x".repeat(n));
        // A JSON string of n characters serializes to n + 2 bytes.
        assert!(invoke(json!({"method": "m", "payload": filler(MAX_PAYLOAD_BYTES - 2)})).is_ok());
        let err =
            invoke(json!({"method": "m", "payload": filler(MAX_PAYLOAD_BYTES - 1)})).unwrap_err();
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn invoke_refuses_unknown_fields_and_hostile_methods() {
        assert!(invoke(json!({"method": "m", "extra": 1})).is_err());
        for bad in ["a/b", "+", "#", "$sys", "a b", "", "nul\u{0}"] {
            let err = invoke(json!({"method": bad})).unwrap_err();
            assert_eq!(err.code(), "VALIDATION_ERROR", "{bad:?}");
        }
    }
}
