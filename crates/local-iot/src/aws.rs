//! AWS error shapes and ARNs as the emulated services use them.

/// An AWS service error: the HTTP status, the error type (sent in `x-amzn-ErrorType`, which the
/// SDKs read as the error code) and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct AwsError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl AwsError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "ResourceNotFoundException", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "ConflictException", message)
    }

    /// iot-data's name for a bad request.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidRequestException", message)
    }
}

/// Region and account the emulator pretends to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub region: String,
    pub id: String,
}

impl Default for Account {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            id: "000000000000".into(),
        }
    }
}

impl Account {
    pub fn arn(&self, resource: &str) -> String {
        format!("arn:aws:iot:{}:{}:{resource}", self.region, self.id)
    }
}

/// The resource part of an IoT ARN (`command/x`, `thing/y`), whatever the region and account.
pub fn arn_resource(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("iot"), Some(_region), Some(_account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    resource.split_once('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_resources_are_split() {
        assert_eq!(
            arn_resource("arn:aws:iot:us-east-1:123:command/open"),
            Some(("command", "open"))
        );
        assert_eq!(
            arn_resource("arn:aws:iot:eu-west-1:1:thing/car-1"),
            Some(("thing", "car-1"))
        );
        assert_eq!(arn_resource("arn:aws:s3:::bucket/x"), None);
        assert_eq!(arn_resource("command/open"), None);
    }
}
