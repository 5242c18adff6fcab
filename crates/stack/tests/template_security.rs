//! Least privilege in `template.yaml`, checked on every change: no wildcard action anywhere,
//! a `*` resource only for an action AWS gives no resource for, DynamoDB actions only on the
//! table and its indexes, functions publishing only to the request topic space, every route
//! behind IAM, and a device policy that confines each thing to its own client id and topics.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;

use serde_norway::Value as Yaml;

/// Actions that AWS authorizes on no resource (`Resource: "*"` is the only form it accepts).
const NO_RESOURCE_ACTIONS: [&str; 1] = ["iot:ListCommands"];

fn template() -> Yaml {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A value as text: a plain string, or `!Tag <text of its value>` for intrinsic functions.
fn render(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        Yaml::Tagged(tagged) => format!("{} {}", tagged.tag, render(&tagged.value)),
        Yaml::Sequence(items) => items.iter().map(render).collect::<Vec<_>>().join(" "),
        other => serde_norway::to_string(other).unwrap().trim().to_owned(),
    }
}

fn strings(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::Sequence(items) => items.iter().map(render).collect(),
        other => vec![render(other)],
    }
}

/// Every IAM or IoT policy statement under `value`, with where it was found. `!If` branches
/// are both walked.
fn statements<'a>(value: &'a Yaml, at: String, found: &mut Vec<(String, &'a Yaml)>) {
    match value {
        Yaml::Mapping(map) => {
            for (key, inner) in map {
                let key = key.as_str().unwrap_or("?");
                if key == "Statement" {
                    for (i, s) in inner.as_sequence().into_iter().flatten().enumerate() {
                        collect_statement(s, format!("{at}.Statement[{i}]"), found);
                    }
                } else {
                    statements(inner, format!("{at}.{key}"), found);
                }
            }
        }
        Yaml::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                statements(item, format!("{at}[{i}]"), found);
            }
        }
        Yaml::Tagged(tagged) => statements(&tagged.value, at, found),
        _ => {}
    }
}

fn collect_statement<'a>(s: &'a Yaml, at: String, found: &mut Vec<(String, &'a Yaml)>) {
    match s {
        // `!If [condition, statement, statement-or-NoValue]`
        Yaml::Tagged(tagged) => {
            for (i, branch) in tagged
                .value
                .as_sequence()
                .into_iter()
                .flatten()
                .enumerate()
                .skip(1)
            {
                collect_statement(branch, format!("{at}!If[{i}]"), found);
            }
        }
        Yaml::Mapping(_) if s.get("Effect").is_some() => found.push((at, s)),
        _ => {}
    }
}

fn all_statements(doc: &Yaml) -> Vec<(String, &Yaml)> {
    let mut found = Vec::new();
    statements(&doc["Resources"], "Resources".into(), &mut found);
    found
}

#[test]
fn no_statement_allows_a_wildcard_action() {
    let doc = template();
    let found = all_statements(&doc);
    assert!(
        found.len() >= 15,
        "the walker found only {} statements",
        found.len()
    );
    for (at, s) in found {
        for action in strings(&s["Action"]) {
            assert!(!action.contains('*'), "{at}: wildcard action {action}");
        }
        assert!(s.get("NotAction").is_none(), "{at}: NotAction");
    }
}

#[test]
fn a_star_resource_is_only_for_actions_aws_scopes_to_no_resource() {
    let doc = template();
    for (at, s) in all_statements(&doc) {
        let resources = strings(&s["Resource"]);
        if resources.iter().any(|r| r == "*") {
            for action in strings(&s["Action"]) {
                assert!(
                    NO_RESOURCE_ACTIONS.contains(&action.as_str()),
                    "{at}: {action} on Resource \"*\""
                );
            }
        }
    }
}

#[test]
fn dynamodb_actions_reach_only_the_table_and_its_indexes() {
    let doc = template();
    for (at, s) in all_statements(&doc) {
        let actions = strings(&s["Action"]);
        if !actions.iter().any(|a| a.starts_with("dynamodb:")) {
            continue;
        }
        assert!(
            actions.iter().all(|a| a.starts_with("dynamodb:")),
            "{at}: mixed services"
        );
        for resource in strings(&s["Resource"]) {
            let table = resource == "!GetAtt Table.Arn" || resource == "!Sub ${Table.Arn}/index/*";
            assert!(table, "{at}: DynamoDB on {resource}");
        }
    }
}

#[test]
fn functions_publish_only_to_the_request_topic_space() {
    let doc = template();
    for (at, s) in all_statements(&doc) {
        if at.contains("DevicePolicy") || !strings(&s["Action"]).contains(&"iot:Publish".into()) {
            continue;
        }
        for resource in strings(&s["Resource"]) {
            assert!(
                resource.ends_with(":topic/${TopicPrefix}/devices/*"),
                "{at}: publish on {resource}"
            );
        }
    }
}

#[test]
fn every_route_requires_iam_authorization() {
    let doc = template();
    let api = &doc["Resources"]["HttpApi"]["Properties"]["Auth"];
    assert_eq!(api["DefaultAuthorizer"].as_str(), Some("AWS_IAM"));
    assert_eq!(api["EnableIamAuthorizer"].as_bool(), Some(true));
    let mut routes = 0;
    for (name, resource) in doc["Resources"].as_mapping().unwrap() {
        let events = resource["Properties"]["Events"].as_mapping();
        for (event, body) in events.into_iter().flatten() {
            if body["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            routes += 1;
            let auth = &body["Properties"]["Auth"];
            assert!(
                auth.is_null() || auth["Authorizer"].as_str() == Some("AWS_IAM"),
                "{name:?}.{event:?} overrides the authorizer: {auth:?}"
            );
        }
    }
    assert!(routes >= 12, "found {routes} routes");
}

#[test]
fn the_device_policy_confines_a_thing_to_its_own_client_id_and_topics() {
    let doc = template();
    let policy = &doc["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]["Statement"];
    let statements = policy.as_sequence().unwrap();
    assert!(!statements.is_empty());
    for s in statements {
        assert_eq!(s["Effect"].as_str(), Some("Allow"));
        for resource in strings(&s["Resource"]) {
            assert!(
                resource.contains("${!iot:Connection.Thing.ThingName}"),
                "not scoped to the connected thing: {resource}"
            );
        }
    }
}

/// checkov runs in `make lint`; a check may be skipped only with a reason a reviewer can weigh.
#[test]
fn every_checkov_suppression_says_why() {
    let doc = template();
    let mut skipped = 0;
    for (name, resource) in doc["Resources"].as_mapping().unwrap() {
        let skips = &resource["Metadata"]["checkov"]["skip"];
        for skip in skips.as_sequence().into_iter().flatten() {
            skipped += 1;
            let id = skip["id"].as_str().unwrap_or_default();
            let comment = skip["comment"].as_str().unwrap_or_default();
            assert!(
                id.starts_with("CKV_") && comment.split_whitespace().count() >= 8,
                "{name:?}: skipping {id:?} needs a reason of a sentence or more, got {comment:?}"
            );
        }
    }
    assert!(
        skipped > 0,
        "no suppressions found: has the Metadata layout changed?"
    );
}
