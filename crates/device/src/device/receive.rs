//! What a device does with a message: records it, and turns a request into the plan that
//! answers it; a message on the device's Jobs topics goes to its Jobs task instead.

use rumqttc::v5::mqttbytes::v5::Publish;
use serde_json::Value;
use tether_domain::jobs::JobTopic;
use tether_domain::topics::{CommandAction, CommandTopic, RequestTopic, ResponseFormat};
use tokio::time::Instant;

use super::jobs::JobInput;
use super::{Context, Plan};
use crate::answer::{self, ReplyTo, Request};
use crate::report::{Kind, Received};

/// What a request needs from its MQTT 5 properties.
fn request_of(publish: &Publish) -> Request {
    Request {
        payload: publish.payload.clone(),
        received_at: Instant::now(),
        message_expiry: publish
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval),
    }
}

fn received(ctx: &Context, publish: &Publish, topic: &str, kind: Kind, id: String) -> Received {
    let properties = publish.properties.clone().unwrap_or_default();
    Received {
        device: ctx.id.clone(),
        kind,
        topic: topic.to_owned(),
        method: None,
        id,
        behaviour: None,
        payload: publish.payload.clone(),
        response_topic: properties.response_topic,
        correlation_data: properties.correlation_data,
        message_expiry: properties.message_expiry_interval,
        content_type: properties.content_type,
        at: std::time::Instant::now(),
    }
}

/// Records a message and returns the plan that answers it, if it is a request.
pub(super) fn receive(ctx: &Context, publish: Publish) -> Option<Plan> {
    let topic = String::from_utf8_lossy(&publish.topic).into_owned();
    let id = &ctx.id;

    if let Ok(request) = ctx.topics.parse_request(&topic) {
        if request.device != *id {
            ctx.recorder.count(id, |c| c.connection.ignored += 1);
            return None;
        }
        return Some(receive_invoke(ctx, &publish, &topic, request));
    }

    if let Ok(job_topic) = JobTopic::parse(&topic) {
        match &ctx.jobs {
            Some(jobs) if job_topic.thing == *id => {
                let _ = jobs.send(JobInput::Message {
                    topic,
                    payload: publish.payload.clone(),
                });
            }
            _ => ctx.recorder.count(id, |c| c.connection.ignored += 1),
        }
        return None;
    }

    let command = match CommandTopic::parse(&topic) {
        Ok(command) if command.device == *id && command.kind == ctx.target => command,
        _ => {
            tracing::debug!(device = %id, %topic, "ignoring a message on an unexpected topic");
            ctx.recorder.count(id, |c| c.connection.ignored += 1);
            return None;
        }
    };
    let execution = command.execution.to_string();
    match command.action {
        CommandAction::Request(_) => {
            Some(receive_command(ctx, &publish, &topic, &command, execution))
        }
        CommandAction::Accepted => {
            let log = received(ctx, &publish, &topic, Kind::Accepted, execution);
            ctx.recorder.receive(log, |c| c.commands.accepted += 1);
            None
        }
        CommandAction::Rejected => {
            receive_rejected(ctx, &publish, &topic, execution);
            None
        }
        CommandAction::Response(_) => {
            ctx.recorder.count(id, |c| c.connection.ignored += 1);
            None
        }
    }
}

/// A direct invocation addressed to this device: recorded, and planned by its behaviour.
fn receive_invoke(ctx: &Context, publish: &Publish, topic: &str, request: RequestTopic) -> Plan {
    let id = &ctx.id;
    let method = request.method.as_str();
    let behaviour = ctx.behaviours.for_method(Some(method));
    let properties = publish.properties.clone().unwrap_or_default();
    let reply_to = ReplyTo::of(&ctx.topics, id, &request.request_id, &properties);
    let steps = answer::invoke(behaviour, &request_of(publish), &reply_to);
    tracing::debug!(device = %id, method, request_id = %request.request_id, %behaviour, "direct invocation");
    let mut log = received(
        ctx,
        publish,
        topic,
        Kind::Invoke,
        request.request_id.to_string(),
    );
    log.method = Some(method.to_owned());
    log.behaviour = Some(behaviour.to_string());
    let unanswered = !answer::answers(&steps);
    ctx.recorder.receive(log, |c| {
        c.invoke.received += 1;
        c.invoke.unanswered += u64::from(unanswered);
    });
    Plan {
        kind: Kind::Invoke,
        id: request.request_id.into_string(),
        fallback: reply_to.fallback,
        steps,
    }
}

/// A Commands request for this device: recorded, and planned by the behaviour of the method
/// its payload names.
fn receive_command(
    ctx: &Context,
    publish: &Publish,
    topic: &str,
    command: &CommandTopic,
    execution: String,
) -> Plan {
    let id = &ctx.id;
    let method = answer::command_method(&publish.payload);
    let behaviour = ctx.behaviours.for_method(method.as_deref());
    let response = command
        .with_action(CommandAction::Response(ResponseFormat::Json))
        .to_string();
    let steps = answer::command(behaviour, &request_of(publish), &response);
    tracing::debug!(device = %id, %execution, method = method.as_deref().unwrap_or("*"), %behaviour, "command execution");
    let mut log = received(ctx, publish, topic, Kind::Command, execution.clone());
    log.method = method;
    log.behaviour = Some(behaviour.to_string());
    let unanswered = !answer::answers(&steps);
    ctx.recorder.receive(log, |c| {
        c.commands.received += 1;
        c.commands.unanswered += u64::from(unanswered);
    });
    Plan {
        kind: Kind::Command,
        id: execution,
        fallback: false,
        steps,
    }
}

/// The cloud rejected one of this device's responses: recorded, counted by its error code.
fn receive_rejected(ctx: &Context, publish: &Publish, topic: &str, execution: String) {
    let code = serde_json::from_slice::<Value>(&publish.payload)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    tracing::info!(device = %ctx.id, %execution, error = %code, "the cloud rejected a response");
    let log = received(ctx, publish, topic, Kind::Rejected, execution);
    ctx.recorder.receive(log, |c| {
        *c.commands.rejected.entry(code).or_default() += 1;
    });
}
