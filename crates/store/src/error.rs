//! The store's error type, how it reaches a caller, and which DynamoDB errors are only a
//! failed condition.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use tether_domain::ApiError;

/// A failed store operation. SDK errors are kept whole as the source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A DynamoDB call failed; `kind` says whether a retry may help.
    #[error("DynamoDB {operation} failed ({kind:?})")]
    Dynamo {
        operation: &'static str,
        kind: FailureKind,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored item does not have the shape this code writes.
    #[error("stored item {key} is malformed: {problem}")]
    Corrupt { key: String, problem: String },
    /// A `nextToken` this store did not issue for this list.
    #[error("nextToken is not valid for this list")]
    InvalidToken,
    /// The table definition could not be read from the template.
    #[error("table definition: {0}")]
    Schema(String),
}

/// What kind of failure a DynamoDB error is, for retries and for the API's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Throttled by DynamoDB: retry later.
    Throttled,
    /// DynamoDB could not be reached or failed on its side: retry later.
    Unavailable,
    /// A request DynamoDB refused (validation, missing table...): a bug or a misconfiguration.
    Rejected,
}

impl StoreError {
    /// Classifies an SDK error from `operation`.
    pub(crate) fn dynamo<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let kind = match &err {
            SdkError::ServiceError(service) => match service.err().code() {
                Some(
                    "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "LimitExceededException",
                ) => FailureKind::Throttled,
                Some("InternalServerError" | "ServiceUnavailable") => FailureKind::Unavailable,
                _ if service.raw().status().is_server_error() => FailureKind::Unavailable,
                _ => FailureKind::Rejected,
            },
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ResponseError(_) => FailureKind::Unavailable,
            _ => FailureKind::Rejected,
        };
        StoreError::Dynamo {
            operation,
            kind,
            source: Box::new(err),
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Dynamo {
                kind: FailureKind::Throttled | FailureKind::Unavailable,
                ..
            }
        )
    }

    /// The answer an API caller gets. Internal causes stay in the log.
    pub fn to_api(&self) -> ApiError {
        match self {
            StoreError::Dynamo {
                kind: FailureKind::Throttled | FailureKind::Unavailable,
                ..
            } => ApiError::UpstreamUnavailable { retry_after_s: 1 },
            StoreError::InvalidToken => ApiError::InvalidNextToken,
            _ => ApiError::Internal,
        }
    }
}

/// Whether a conditional write failed its condition (and nothing else went wrong).
pub(crate) fn is_condition_failure<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// A transaction cancelled because a condition failed (and nothing else went wrong).
pub(crate) fn is_transaction_condition_failure(
    err: &SdkError<TransactWriteItemsError, HttpResponse>,
) -> bool {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
            let reasons = e.cancellation_reasons();
            reasons.is_empty()
                || reasons
                    .iter()
                    .any(|r| r.code() == Some("ConditionalCheckFailed"))
        }
        _ => false,
    }
}

impl tether_domain::error::Upstream for StoreError {
    fn to_api(&self) -> ApiError {
        StoreError::to_api(self)
    }
}
