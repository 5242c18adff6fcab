//! Tether's domain: everything the functions and tools agree on, with no AWS SDK types.
//!
//! Layout:
//! - [`ids`]: validated identifiers (device, method, command, execution, request). Anything that
//!   could change the meaning of an MQTT topic (`/`, `+`, `#`, `$`, NUL, whitespace) is refused
//!   here, so no unchecked text ever reaches a topic name.
//! - [`status`]: the execution status machine of AWS IoT Commands, the direct-invocation
//!   statuses, and the precedence rule that makes out-of-order delivery converge.
//! - [`jobs`]: AWS IoT Jobs: job-execution statuses, their transitions, the device topics
//!   under `$aws/things/{thing}/jobs/` and the job event topics.
//! - [`topics`]: builders and parsers for every topic Tether publishes or listens to.
//! - [`api`]: the HTTP API's request and response shapes, and their limits.
//! - [`page_token`]: the opaque `nextToken` of the lists, and the check that it names the
//!   partition being listed.
//! - [`reply`]: what devices send back (direct-invoke replies, Commands responses).
//! - [`error`]: the API error type and its RFC 9457 problem+json form.
//! - [`clock`]: epoch milliseconds and RFC 3339 text.
//! - [`percent`]: RFC 3986 percent-encoding.

pub mod api;
pub mod clock;
pub mod error;
pub mod ids;
pub mod jobs;
pub mod page_token;
pub mod parameter;
pub mod percent;
pub mod reply;
pub mod rule_event;
pub mod status;
pub mod topics;

pub use error::{ApiError, Problem};
pub use ids::{
    CommandId, CommandScope, DeviceId, ExecutionId, IdError, JobId, JobScope, MethodName, RequestId,
};
pub use status::{ExecutionStatus, InvocationStatus, Phase, Source, StatusReason};
