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
