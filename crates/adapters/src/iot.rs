//! The IoT gateway: iot-data Publish and GetConnection.

use aws_sdk_iotdataplane::config::http::HttpResponse;
use aws_sdk_iotdataplane::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iotdataplane::primitives::Blob;
use aws_sdk_iotdataplane::types::PayloadFormatIndicator;
use aws_sdk_iotdataplane::Client;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use tether_domain::ApiError;

/// A failed IoT call.
#[derive(Debug, thiserror::Error)]
#[error("AWS IoT {operation} failed (throttled: {throttled}, transient: {transient})")]
pub struct GatewayError {
    pub operation: &'static str,
    pub throttled: bool,
    pub transient: bool,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl GatewayError {
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = err
            .as_service_error()
            .and_then(|e| e.code())
            .unwrap_or_default()
            .to_owned();
        let throttled = code.contains("Throttl") || code == "LimitExceededException";
        let transient = throttled
            || matches!(
                err,
                SdkError::DispatchFailure(_)
                    | SdkError::TimeoutError(_)
                    | SdkError::ResponseError(_)
            )
            || matches!(&err, SdkError::ServiceError(s) if s.raw().status().is_server_error());
        GatewayError {
            operation,
            throttled,
            transient,
            source: Box::new(err),
        }
    }

    /// The API answer: 429 when throttled, 503 when unavailable, 500 otherwise.
    pub fn to_api(&self) -> ApiError {
        if self.throttled {
            ApiError::Throttled { retry_after_s: 1 }
        } else if self.transient {
            ApiError::UpstreamUnavailable { retry_after_s: 1 }
        } else {
            ApiError::Internal
        }
    }
}

impl tether_domain::error::Upstream for GatewayError {
    fn to_api(&self) -> ApiError {
        GatewayError::to_api(self)
    }
}

/// A direct-invocation request as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRequest {
    pub topic: String,
    pub payload: String,
    pub response_topic: String,
    /// The request id; sent base64-encoded, as iot-data expects correlation data.
    pub correlation: String,
    pub expiry_s: i64,
}

/// What a direct message with confirmation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectOutcome {
    /// The device's MQTT client acknowledged it (PUBACK).
    Delivered,
    /// The client is not connected: nothing was sent.
    NotConnected,
    /// Sent, but no PUBACK within the confirmation timeout.
    NotAcknowledged,
}

/// The client id [`IotGateway::warm_up`] sends to: never a device's (thing names have no `.`).
pub const WARM_UP_CLIENT: &str = "tether.warm-up";

/// iot-data, as the functions use it.
#[derive(Debug, Clone)]
pub struct IotGateway {
    client: Client,
}

impl IotGateway {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Publishes a request with QoS 1 and its MQTT 5 properties.
    pub async fn publish(&self, request: &DeviceRequest) -> Result<(), GatewayError> {
        self.client
            .publish()
            .topic(&request.topic)
            .qos(1)
            .payload(Blob::new(request.payload.as_bytes()))
            .content_type("application/json")
            .payload_format_indicator(PayloadFormatIndicator::Utf8Data)
            .response_topic(&request.response_topic)
            .correlation_data(BASE64.encode(&request.correlation))
            .message_expiry(request.expiry_s.max(1))
            .send()
            .await
            .map_err(|e| GatewayError::from_sdk("Publish", e))?;
        Ok(())
    }

    /// SendDirectMessage to the client `client_id` (the device id) with confirmation: QoS 1,
    /// the MQTT 5 properties of [`IotGateway::publish`], and the answer once the client sent
    /// PUBACK or `confirm_s` (1-15) passed.
    pub async fn send_direct(
        &self,
        client_id: &str,
        request: &DeviceRequest,
        confirm_s: i32,
    ) -> Result<DirectOutcome, GatewayError> {
        let confirm_s = confirm_s.clamp(1, 15);
        // One attempt: a retry after a missing PUBACK would send the device the request again.
        // The attempt may last the confirmation window and a margin, not the shared 2 s. The
        // connect timeout is the shared one: it selects the HTTP connector, and another
        // connector would open another connection (and TLS handshake) instead of using the one
        // the client holds, which `invoke` opened during init.
        let window = std::time::Duration::from_secs(confirm_s as u64 + 2);
        let once = aws_sdk_iotdataplane::config::Builder::default()
            .retry_config(aws_sdk_iotdataplane::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_iotdataplane::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(crate::aws::CONNECT_TIMEOUT)
                    .operation_attempt_timeout(window)
                    .operation_timeout(window)
                    .build(),
            );
        let sent = self
            .client
            .send_direct_message()
            .client_id(client_id)
            .topic(&request.topic)
            .payload(Blob::new(request.payload.as_bytes()))
            .content_type("application/json")
            .payload_format_indicator(PayloadFormatIndicator::Utf8Data)
            .response_topic(&request.response_topic)
            .correlation_data(BASE64.encode(&request.correlation))
            .confirmation(true)
            .timeout(confirm_s)
            .customize()
            .config_override(once)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(DirectOutcome::Delivered),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(DirectOutcome::NotConnected)
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_gateway_timeout_exception()) =>
            {
                Ok(DirectOutcome::NotAcknowledged)
            }
            Err(err) => Err(GatewayError::from_sdk("SendDirectMessage", err)),
        }
    }

    /// Opens the client's connection to iot-data before the first call needs it (during
    /// `invoke`'s init) with a request of the kind the hot path makes, whose answer does not
    /// matter: with `direct`, an unconfirmed SendDirectMessage to [`WARM_UP_CLIENT`], which is
    /// never connected (a `.` is not allowed in a thing name, so no device has it; AWS IoT
    /// answers 404); with `publish`, a QoS 0 Publish on that client's request topic, which no
    /// device may subscribe to. Both are in the request space the function's role allows.
    pub async fn warm_up(&self, direct: bool, prefix: &str) -> Result<(), GatewayError> {
        let topic = format!("{prefix}/devices/{WARM_UP_CLIENT}/invoke/warm-up");
        if direct {
            let sent = self
                .client
                .send_direct_message()
                .client_id(WARM_UP_CLIENT)
                .topic(topic)
                .confirmation(false)
                .send()
                .await;
            return match sent {
                Ok(_) => Ok(()),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    Ok(())
                }
                Err(err) => Err(GatewayError::from_sdk("SendDirectMessage", err)),
            };
        }
        self.client
            .publish()
            .topic(topic)
            .qos(0)
            .send()
            .await
            .map_err(|e| GatewayError::from_sdk("Publish", e))?;
        Ok(())
    }

    /// Whether the client is connected now; `None` when AWS IoT has never seen it.
    pub async fn is_connected(&self, client_id: &str) -> Result<Option<bool>, GatewayError> {
        match self
            .client
            .get_connection()
            .client_id(client_id)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.connected())),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(err) => Err(GatewayError::from_sdk("GetConnection", err)),
        }
    }
}
