//! Reading a SAM template: the topic rules it declares, and the function that consumes its
//! dead-letter queue.

use std::collections::HashMap;

use serde_norway::Mapping;

use super::{parse_sql, sql_error, Rule, RuleError};

/// Replaces `${Name}` with the template parameter's default (for `!Sub` strings).
fn substitute(text: &str, defaults: &HashMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (name, value) in defaults {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    out
}

/// A template string: plain, `!Sub "..."` or `Fn::Sub: "..."` (parameters take their defaults).
fn template_string(
    value: &serde_norway::Value,
    defaults: &HashMap<String, String>,
) -> Option<String> {
    match value {
        serde_norway::Value::String(text) => Some(text.clone()),
        serde_norway::Value::Tagged(tagged) if tagged.tag == "Sub" => {
            tagged.value.as_str().map(|t| substitute(t, defaults))
        }
        serde_norway::Value::Mapping(map) if map.len() == 1 => map
            .get("Fn::Sub")
            .and_then(|v| v.as_str())
            .map(|t| substitute(t, defaults)),
        _ => None,
    }
}

/// The logical id named by `!GetAtt X.Arn` or `Fn::GetAtt: [X, Arn]`.
fn get_att_arn(value: &serde_norway::Value) -> Option<String> {
    match value {
        serde_norway::Value::Tagged(tagged) if tagged.tag == "GetAtt" => match &tagged.value {
            serde_norway::Value::String(text) => text.strip_suffix(".Arn").map(str::to_owned),
            serde_norway::Value::Sequence(parts)
                if parts.len() == 2 && parts[1].as_str() == Some("Arn") =>
            {
                parts[0].as_str().map(str::to_owned)
            }
            _ => None,
        },
        serde_norway::Value::Mapping(map) => match map.get("Fn::GetAtt") {
            Some(serde_norway::Value::Sequence(parts))
                if parts.len() == 2 && parts[1].as_str() == Some("Arn") =>
            {
                parts[0].as_str().map(str::to_owned)
            }
            Some(serde_norway::Value::String(text)) => text.strip_suffix(".Arn").map(str::to_owned),
            _ => None,
        },
        _ => None,
    }
}

/// The `Default` of each template parameter, as text (what `!Sub` puts in its place).
fn parameter_defaults(doc: &serde_norway::Value) -> HashMap<String, String> {
    let mut defaults = HashMap::new();
    if let Some(serde_norway::Value::Mapping(parameters)) = doc.get("Parameters") {
        for (name, spec) in parameters {
            if let (Some(name), Some(default)) = (name.as_str(), spec.get("Default")) {
                let text = match default {
                    serde_norway::Value::String(s) => s.clone(),
                    other => serde_norway::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                defaults.insert(name.to_owned(), text);
            }
        }
    }
    defaults
}

/// A function resource's `Metadata.BuildProperties.Binary`.
fn binary_name(resource: &serde_norway::Value) -> Option<&str> {
    resource
        .get("Metadata")
        .and_then(|m| m.get("BuildProperties"))
        .and_then(|b| b.get("Binary"))
        .and_then(|b| b.as_str())
}

/// The name the Invoke API knows a function of the template by: its binary name, else its
/// logical id. `None` when `logical_id` is not an `AWS::Serverless::Function`.
fn function_name(resources: &Mapping, logical_id: &str) -> Option<String> {
    let resource = resources.get(logical_id)?;
    if resource.get("Type").and_then(|t| t.as_str()) != Some("AWS::Serverless::Function") {
        return None;
    }
    Some(binary_name(resource).unwrap_or(logical_id).to_owned())
}

/// The rules of one `AWS::IoT::TopicRule`: one per Lambda action on a function of the template,
/// none when the rule is disabled.
fn topic_rule_rules(
    resources: &Mapping,
    logical_id: &str,
    resource: &serde_norway::Value,
    defaults: &HashMap<String, String>,
) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    let payload = resource
        .get("Properties")
        .and_then(|p| p.get("TopicRulePayload"));
    if payload
        .and_then(|p| p.get("RuleDisabled"))
        .and_then(|d| d.as_bool())
        == Some(true)
    {
        return Ok(rules);
    }
    let sql = payload
        .and_then(|p| p.get("Sql"))
        .and_then(|s| template_string(s, defaults))
        .ok_or_else(|| {
            sql_error(
                logical_id,
                "TopicRulePayload.Sql must be a string or !Sub string",
            )
        })?;
    let (select, filter) = parse_sql(logical_id, &sql)?;
    let actions = payload
        .and_then(|p| p.get("Actions"))
        .and_then(|a| a.as_sequence())
        .cloned()
        .unwrap_or_default();
    for action in actions {
        let Some(target) = action
            .get("Lambda")
            .and_then(|l| l.get("FunctionArn"))
            .and_then(get_att_arn)
        else {
            tracing::warn!(
                rule = logical_id,
                "only Lambda actions on the template's functions are emulated; skipping an action"
            );
            continue;
        };
        let function = function_name(resources, &target).ok_or_else(|| {
            sql_error(
                logical_id,
                format!("action targets {target}, which is not a function of this template"),
            )
        })?;
        rules.push(Rule {
            name: logical_id.to_owned(),
            function,
            filter: filter.clone(),
            select: select.clone(),
        });
    }
    Ok(rules)
}

/// The rules of one `AWS::Serverless::Function`: one per `IoTRule` event.
fn function_event_rules(
    resources: &Mapping,
    logical_id: &str,
    resource: &serde_norway::Value,
    defaults: &HashMap<String, String>,
) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    let function = function_name(resources, logical_id).unwrap_or_else(|| logical_id.to_owned());
    let Some(serde_norway::Value::Mapping(events)) =
        resource.get("Properties").and_then(|p| p.get("Events"))
    else {
        return Ok(rules);
    };
    for (event_name, event) in events {
        if event.get("Type").and_then(|t| t.as_str()) != Some("IoTRule") {
            continue;
        }
        let name = format!("{logical_id}.{}", event_name.as_str().unwrap_or_default());
        let sql = event
            .get("Properties")
            .and_then(|p| p.get("Sql"))
            .and_then(|s| template_string(s, defaults))
            .ok_or_else(|| sql_error(&name, "Properties.Sql must be a string or !Sub string"))?;
        let (select, filter) = parse_sql(&name, &sql)?;
        rules.push(Rule {
            name,
            function: function.clone(),
            filter,
            select,
        });
    }
    Ok(rules)
}

/// Reads the topic rules of a SAM template: every `AWS::IoT::TopicRule` whose actions invoke a
/// function of the template, and every `IoTRule` event of an `AWS::Serverless::Function`. A
/// function is reached by its binary name (`Metadata.BuildProperties.Binary`, as
/// `cargo lambda watch` serves it), else by its logical id.
pub fn rules_from_template(template: &str) -> Result<Vec<Rule>, RuleError> {
    let doc: serde_norway::Value =
        serde_norway::from_str(template).map_err(|e| RuleError::Template(e.to_string()))?;
    let defaults = parameter_defaults(&doc);
    let mut rules = Vec::new();
    let Some(serde_norway::Value::Mapping(resources)) = doc.get("Resources") else {
        return Ok(rules);
    };
    for (logical_id, resource) in resources {
        let logical_id = logical_id.as_str().unwrap_or_default();
        match resource.get("Type").and_then(|t| t.as_str()) {
            Some("AWS::IoT::TopicRule") => rules.extend(topic_rule_rules(
                resources, logical_id, resource, &defaults,
            )?),
            Some("AWS::Serverless::Function") => rules.extend(function_event_rules(
                resources, logical_id, resource, &defaults,
            )?),
            _ => {}
        }
    }
    rules.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rules)
}

/// The function that consumes the dead-letter queue: the one an `AWS::Lambda::EventSourceMapping`
/// of the template names (`FunctionName: !Ref X`), by its binary name. `None` when the template
/// has no such mapping (dead letters are then replayed to the function that failed on them).
pub fn redrive_function_from_template(template: &str) -> Result<Option<String>, RuleError> {
    let doc: serde_norway::Value =
        serde_norway::from_str(template).map_err(|e| RuleError::Template(e.to_string()))?;
    let Some(serde_norway::Value::Mapping(resources)) = doc.get("Resources") else {
        return Ok(None);
    };
    for (_, resource) in resources {
        if resource.get("Type").and_then(|t| t.as_str()) != Some("AWS::Lambda::EventSourceMapping")
        {
            continue;
        }
        let target = match resource
            .get("Properties")
            .and_then(|p| p.get("FunctionName"))
        {
            Some(serde_norway::Value::Tagged(tagged)) if tagged.tag == "Ref" => {
                tagged.value.as_str().map(str::to_owned)
            }
            Some(serde_norway::Value::Mapping(map)) => {
                map.get("Ref").and_then(|r| r.as_str()).map(str::to_owned)
            }
            _ => None,
        };
        let Some(target) = target else { continue };
        let function = resources.get(target.as_str()).ok_or_else(|| {
            RuleError::Template(format!(
                "the event source mapping names {target}, which is not a resource"
            ))
        })?;
        let binary = binary_name(function).unwrap_or(target.as_str());
        return Ok(Some(binary.to_owned()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One function with an `IoTRule` event (and an event and a resource that are not rules);
    /// `tests/rules.rs` runs the emulator on the same template.
    const INGEST_TEMPLATE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ingest-template.yaml"
    ));

    #[test]
    fn the_redrive_function_is_the_event_source_mappings() {
        let template = r#"
Resources:
  RedriveFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: redrive
  DeadLetterRedrive:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !Ref RedriveFunction
"#;
        assert_eq!(
            redrive_function_from_template(template).unwrap().as_deref(),
            Some("redrive")
        );
        assert_eq!(
            redrive_function_from_template("Resources: {}").unwrap(),
            None
        );
    }

    #[test]
    fn rules_come_from_the_functions_in_a_template() {
        let template = INGEST_TEMPLATE;
        let rules = rules_from_template(template).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules_from_template(&template.replace("Binary: ingest", "Binary: other")).unwrap()[0]
                .function,
            "other"
        );
        assert_eq!(rules[0].name, "IngestFunction.Replies");
        assert_eq!(rules[0].function, "ingest");
        assert_eq!(rules[0].filter, "tether/replies/+/+");
    }
}
