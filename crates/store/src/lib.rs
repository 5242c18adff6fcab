//! Tether's DynamoDB store (aws-sdk-dynamodb), one table for everything.
//!
//! Layout:
//! - [`schema`]: the table's shape, read from `template.yaml`, its creation on a local endpoint,
//!   and the names of the items' attributes;
//! - `keys`: the partition, sort and index keys of records and timeline entries;
//! - [`records`]: execution and invocation records with their timelines: conditional,
//!   idempotent, order-safe status writes; reads; per-device and per-command listings;
//! - [`jobs`]: the history of AWS IoT Jobs from their events;
//! - [`presence`]: device connectivity from presence events;
//! - `token`: opaque, partition-bound pagination tokens;
//! - [`error`]: the store's error type and its mapping to API errors.

pub mod error;
mod item;
pub mod jobs;
mod keys;
pub mod presence;
pub mod records;
pub mod schema;
mod token;

pub use error::{FailureKind, StoreError};
pub use jobs::JobHistory;
pub use presence::PresenceEvent;
pub use records::{
    Begin, ListBy, Outcome, RecordKey, RecordMeta, StatusChange, Store, DELIVERED, INVALID_REPLY,
};
pub use schema::TableSchema;
