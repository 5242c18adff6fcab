//! The topic-rule engine: the topic rules of `template.yaml` (`AWS::IoT::TopicRule` resources
//! with Lambda actions, and `IoTRule` events of the functions), evaluated
//! on the local broker's messages and delivered to the functions through the Lambda Invoke API
//! (as `cargo lambda watch` serves it), asynchronously, with retries and a dead-letter log.
//!
//! SQL subset (anything else is refused when the rules are loaded, never silently ignored):
//! `SELECT <items> FROM '<topic filter>'`, where an item is `*`, `encode(*, 'base64') AS name`
//! (the whole payload, whatever it is, as base64 text), `topic() AS name`, `topic(n) AS name`,
//! `timestamp() AS name`, `'text' AS name`, or a payload field path `a.b [AS name]`.
//!
//! Layout:
//! - `sql`: that SQL subset, parsed ([`parse_sql`]) and evaluated on a message ([`evaluate`]);
//! - `template`: the rules, and the dead-letter queue's consumer, read from a SAM template
//!   ([`rules_from_template`], [`redrive_function_from_template`]);
//! - `delivery`: each rule's subscription run ([`run`]), deliveries to the functions with
//!   retries, the [`DeadLetters`] and their replay.

mod delivery;
mod sql;
mod template;

pub use delivery::{run, DeadLetters, Delivery, Replay, DELIVERIES_IN_FLIGHT};
pub use sql::{evaluate, parse_sql, Select};
pub use template::{redrive_function_from_template, rules_from_template};

/// Why rules could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("template: {0}")]
    Template(String),
    #[error("rule {rule}: {problem}")]
    Sql { rule: String, problem: String },
}

/// One topic rule bound to a function.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `{FunctionLogicalId}.{EventName}`
    pub name: String,
    /// The function's name at the Invoke API (its binary name).
    pub function: String,
    pub filter: String,
    pub select: Vec<Select>,
}

fn sql_error(rule: &str, problem: impl Into<String>) -> RuleError {
    RuleError::Sql {
        rule: rule.to_owned(),
        problem: problem.into(),
    }
}
