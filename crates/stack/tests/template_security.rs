//! Least privilege in `template.yaml`, checked on every change: no wildcard action in any
//! Allow, a `*` resource only for an action AWS gives no resource for, each function's role
//! holding exactly its own list of actions, DynamoDB actions only on the table and its indexes,
//! functions publishing only to the request topic space, Commands only on Tether's command-id
//! prefix, every route behind IAM, and a device policy that confines each thing to its own
//! client id and topics. Also what bounds abuse: a dead-letter queue that parks what keeps
//! failing, TLS-only queues, a reply rule that never spreads a device's payload into the event,
//! reserved concurrency for ingest and waiting routes throttled below what their functions
//! reserve.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_norway::Value as Yaml;

/// Actions that AWS authorizes on no resource (`Resource: "*"` is the only form it accepts).
const NO_RESOURCE_ACTIONS: [&str; 2] = ["iot:ListCommands", "iot:ListJobs"];

/// Every action each role may take, by the logical id of its function (or role): all of them,
/// sorted, `!If` branches included. A new action is a decision to make here, in review.
const ROLE_ACTIONS: [(&str, &[&str]); 7] = [
    (
        "InvokeFunction",
        &[
            "dynamodb:ConditionCheckItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "iot:Connect",
            "iot:GetConnection",
            "iot:Publish",
            "iot:Receive",
            "iot:SendDirectMessage",
            "iot:Subscribe",
        ],
    ),
    (
        "CommandsFunction",
        &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "iot:CreateCommand",
            "iot:DeleteCommand",
            "iot:GetCommand",
            "iot:ListCommands",
            "iot:StartCommandExecution",
            "iot:UpdateCommand",
        ],
    ),
    (
        "IngestFunction",
        &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "iot:DescribeJobExecution",
            "iot:GetCommandExecution",
        ],
    ),
    (
        "RedriveFunction",
        &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "iot:DescribeJobExecution",
            "iot:GetCommandExecution",
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
        ],
    ),
    (
        "JobsFunction",
        &[
            "dynamodb:Query",
            "iot:CancelJob",
            "iot:CreateJob",
            "iot:DeleteJob",
            "iot:DescribeJob",
            "iot:GetJobDocument",
            "iot:ListJobExecutionsForJob",
            "iot:ListJobExecutionsForThing",
            "iot:ListJobs",
        ],
    ),
    ("StatusFunction", &["dynamodb:GetItem", "dynamodb:Query"]),
    ("RuleErrorRole", &["sqs:SendMessage"]),
];

/// The thing-name policy variable, as written in a `!Sub` string.
const THING: &str = "${!iot:Connection.Thing.ThingName}";

/// The longest an invoke call holds an instance: the longest wait (`timeoutMs` 25 s) and about
/// a second for the checks, the record and the publish.
const INVOKE_HOLD_SECONDS: u64 = 26;
/// The longest a start-executions call holds an instance: up to the function's 29 s timeout.
const START_EXECUTIONS_HOLD_SECONDS: u64 = 29;

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

fn is_allow(s: &Yaml) -> bool {
    s["Effect"].as_str() == Some("Allow")
}

/// No Allow grants a wildcard action or a wildcard principal. Only Allow statements are held to
/// it: a Deny with `sqs:*` to `"*"` (the queues' TLS-only policy) takes rights away. No
/// statement of either effect uses `NotAction`, `NotResource` or `NotPrincipal`.
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
        for negated in ["NotAction", "NotResource", "NotPrincipal"] {
            assert!(s.get(negated).is_none(), "{at}: {negated}");
        }
        if !is_allow(s) {
            continue;
        }
        for action in strings(&s["Action"]) {
            assert!(!action.contains('*'), "{at}: wildcard action {action}");
        }
        let principal = &s["Principal"];
        let principals = match principal.get("AWS") {
            Some(aws) => strings(aws),
            None if principal.is_null() || principal.is_mapping() => Vec::new(),
            None => strings(principal),
        };
        assert!(
            !principals.iter().any(|p| p == "*"),
            "{at}: allows the wildcard principal"
        );
    }
}

/// The actions `policies` (a role's `Policies`, or a function's) allow, each with where.
fn allowed_actions(policies: &Yaml, at: &str) -> BTreeMap<String, String> {
    for (i, policy) in policies.as_sequence().into_iter().flatten().enumerate() {
        let document = policy.get("PolicyDocument").unwrap_or(policy);
        assert!(
            document.get("Statement").is_some(),
            "{at}.Policies[{i}] is no inline policy document (a SAM policy template or a \
             managed policy grants actions this test cannot see): {policy:?}"
        );
    }
    let mut found = Vec::new();
    statements(policies, at.to_owned(), &mut found);
    let mut actions = BTreeMap::new();
    for (place, s) in found {
        assert!(
            is_allow(s),
            "{place}: a role policy holds only Allow statements"
        );
        for action in strings(&s["Action"]) {
            actions.entry(action).or_insert_with(|| place.clone());
        }
    }
    actions
}

#[test]
fn each_role_holds_exactly_its_own_list_of_actions() {
    let doc = template();
    let resources = doc["Resources"].as_mapping().unwrap();
    let table: BTreeMap<&str, &[&str]> = ROLE_ACTIONS.into_iter().collect();
    for (name, resource) in resources {
        let name = name.as_str().unwrap();
        if resource["Type"].as_str() == Some("AWS::Serverless::Function") {
            assert!(
                table.contains_key(name),
                "{name}: a function with no row in ROLE_ACTIONS; list the actions its role needs"
            );
        }
    }
    for (name, expected) in ROLE_ACTIONS {
        let resource = &doc["Resources"][name];
        assert!(
            !resource.is_null(),
            "ROLE_ACTIONS names {name}, which the template lacks"
        );
        let policies = &resource["Properties"]["Policies"];
        assert!(policies.is_sequence(), "{name} has no Policies list");
        let actual = allowed_actions(policies, name);
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        for (action, at) in &actual {
            assert!(
                expected.contains(action.as_str()),
                "{name}: its role allows {action} ({at}), which is not in its row of ROLE_ACTIONS"
            );
        }
        for action in expected {
            assert!(
                actual.contains_key(action),
                "{name}: its role no longer allows {action}; remove it from ROLE_ACTIONS"
            );
        }
    }
}

#[test]
fn commands_are_reached_only_under_tethers_command_id_prefix() {
    let doc = template();
    let mut seen = 0;
    for (at, s) in all_statements(&doc) {
        for resource in strings(&s["Resource"]) {
            if resource.contains(":command/") {
                seen += 1;
                assert!(
                    resource.ends_with(":command/${CommandIdPrefix}*"),
                    "{at}: a command resource outside Tether's prefix: {resource}"
                );
            }
        }
    }
    // CommandResources and StartOnCommandsAndTargets (commands), ExecutionResults (ingest and
    // redrive).
    assert!(seen >= 4, "found only {seen} command resources");
    for name in ["CommandsFunction", "IngestFunction", "RedriveFunction"] {
        let env = &doc["Resources"][name]["Properties"]["Environment"]["Variables"];
        assert_eq!(
            render(&env["COMMAND_ID_PREFIX"]),
            "!Ref CommandIdPrefix",
            "{name} does not get COMMAND_ID_PREFIX"
        );
    }
}

#[test]
fn jobs_are_reached_only_under_tethers_job_id_prefix() {
    let doc = template();
    let mut seen = 0;
    for (at, s) in all_statements(&doc) {
        for resource in strings(&s["Resource"]) {
            if resource.contains(":job/") {
                seen += 1;
                assert!(
                    resource.ends_with(":job/${JobIdPrefix}*"),
                    "{at}: a job resource outside Tether's prefix: {resource}"
                );
            }
        }
    }
    // JobsAndTheirTargets and TetherJobs (jobs), JobExecutionDetails (ingest and redrive).
    assert!(seen >= 4, "found only {seen} job resources");
    // The events of jobs are mapped back to API ids with the same prefix.
    for name in ["JobsFunction", "IngestFunction", "RedriveFunction"] {
        let env = &doc["Resources"][name]["Properties"]["Environment"]["Variables"];
        assert_eq!(
            render(&env["JOB_ID_PREFIX"]),
            "!Ref JobIdPrefix",
            "{name} does not get JOB_ID_PREFIX"
        );
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

/// Direct messages go to device client ids, and only on the request topics.
#[test]
fn direct_messages_go_only_to_the_request_topic_space() {
    let doc = template();
    let mut seen = 0;
    for (at, s) in all_statements(&doc) {
        if !strings(&s["Action"]).contains(&"iot:SendDirectMessage".into()) {
            continue;
        }
        seen += 1;
        for resource in strings(&s["Resource"]) {
            assert!(resource.ends_with(":client/*"), "{at}: on {resource}");
        }
        assert_eq!(
            render(&s["Condition"]["StringLike"]["iot:Topic"]),
            "!Sub ${TopicPrefix}/devices/*/invoke/*",
            "{at}: without the request-topic condition"
        );
    }
    assert_eq!(seen, 1, "one SendDirectMessage statement");
}

#[test]
fn the_invoke_inbox_connects_subscribes_and_receives_only_in_its_own_reply_space() {
    let doc = template();
    let policies = &doc["Resources"]["InvokeFunction"]["Properties"]["Policies"];
    let mut expected: BTreeMap<&str, &str> = [
        ("iot:Connect", ":client/tether-invoke-*"),
        (
            "iot:Subscribe",
            ":topicfilter/${TopicPrefix}/replies/+/+/tether-invoke-*",
        ),
        (
            "iot:Receive",
            ":topic/${TopicPrefix}/replies/*/*/tether-invoke-*",
        ),
    ]
    .into_iter()
    .collect();
    let mut found = Vec::new();
    statements(policies, "InvokeFunction".into(), &mut found);
    for (at, s) in found {
        for action in strings(&s["Action"]) {
            if let Some(suffix) = expected.remove(action.as_str()) {
                let resources = strings(&s["Resource"]);
                assert_eq!(resources.len(), 1, "{at}: {resources:?}");
                assert!(
                    resources[0].ends_with(suffix),
                    "{at}: {action} on {}",
                    resources[0]
                );
                assert!(s["Condition"].is_null(), "{at}");
            }
        }
    }
    assert!(
        expected.is_empty(),
        "missing inbox statements: {expected:?}"
    );
    // The inbox's client ids are not devices' (whose policy confines them to their thing name).
    let inbox = doc["Parameters"]["ReplyInbox"]["AllowedPattern"]
        .as_str()
        .unwrap();
    assert!(inbox.starts_with("^$|^wss://"), "{inbox}");
}

/// IAM's `StringLike` and resource matching: `*` is any run of characters, `?` one.
fn glob_matches(pattern: &str, text: &str) -> bool {
    match pattern.chars().next() {
        None => text.is_empty(),
        Some('*') => (0..=text.len())
            .filter(|at| text.is_char_boundary(*at))
            .any(|at| glob_matches(&pattern[1..], &text[at..])),
        Some(c) => {
            text.chars().next().is_some_and(|t| c == '?' || c == t)
                && glob_matches(
                    &pattern[c.len_utf8()..],
                    &text[text.chars().next().map_or(0, char::len_utf8)..],
                )
        }
    }
}

/// `invoke`'s init warm-up (an unconfirmed SendDirectMessage, or with Delivery=publish a QoS 0
/// Publish) stays inside what its role allows for requests, so it is never an AccessDenied,
/// and its client id is one no thing can have (a thing name has no `.`).
#[test]
fn the_invoke_warm_up_is_inside_the_request_grants_and_reaches_no_thing() {
    use tether_adapters::iot::WARM_UP_CLIENT;
    let doc = template();
    let topic = format!("tether/devices/{WARM_UP_CLIENT}/invoke/warm-up");
    let arn = "arn:aws:iot:eu-west-1:123456789012";
    let sub = |text: &str| {
        text.trim_start_matches("!Sub ")
            .replace("${TopicPrefix}", "tether")
            .replace("${AWS::Partition}", "aws")
            .replace("${AWS::Region}", "eu-west-1")
            .replace("${AWS::AccountId}", "123456789012")
    };
    let (mut direct, mut publish) = (false, false);
    for (at, s) in all_statements(&doc) {
        if !at.contains("InvokeFunction") || !is_allow(s) {
            continue;
        }
        let actions = strings(&s["Action"]);
        let resources: Vec<String> = strings(&s["Resource"]).iter().map(|r| sub(r)).collect();
        if actions.contains(&"iot:SendDirectMessage".into()) {
            let condition = sub(&render(&s["Condition"]["StringLike"]["iot:Topic"]));
            direct |= glob_matches(&condition, &topic)
                && resources
                    .iter()
                    .any(|r| glob_matches(r, &format!("{arn}:client/{WARM_UP_CLIENT}")));
        }
        if actions.contains(&"iot:Publish".into()) {
            publish |= resources
                .iter()
                .any(|r| glob_matches(r, &format!("{arn}:topic/{topic}")));
        }
    }
    assert!(direct, "no grant covers the warm-up's SendDirectMessage");
    assert!(publish, "no grant covers the warm-up's Publish");
    assert!(tether_domain::DeviceId::parse(WARM_UP_CLIENT).is_err());
    assert!(glob_matches("a*b?d", "axxbcd") && !glob_matches("a*b?d", "axxbd"));
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

/// The topic levels that come before the thing name in a device's topics, and what may follow
/// it, by action.
fn device_topic_shapes(action: &str) -> &'static [(&'static str, &'static str)] {
    match action {
        "iot:Subscribe" | "iot:Receive" => &[
            ("${TopicPrefix}/devices/", "/invoke/"),
            ("$aws/commands/things/", "/executions/"),
            ("$aws/things/", "/jobs/"),
        ],
        "iot:Publish" => &[
            ("${TopicPrefix}/replies/", "/"),
            ("$aws/commands/things/", "/executions/"),
            ("$aws/things/", "/jobs/"),
        ],
        _ => &[],
    }
}

/// Not only that the thing name appears, but where: the whole client id for Connect; for a
/// topic, the one level right after the fixed levels (`{TopicPrefix}/devices/<thing>/invoke/…`,
/// `{TopicPrefix}/replies/<thing>/…`, `$aws/commands/things/<thing>/executions/…`), so no
/// wildcard or other level can stand before it. Connect also requires the certificate to be
/// attached to the thing.
#[test]
fn the_device_policy_confines_a_thing_to_its_own_client_id_and_topics() {
    let doc = template();
    let policy = &doc["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]["Statement"];
    let statements = policy.as_sequence().unwrap();
    assert!(!statements.is_empty());
    let arn = "!Sub arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:";
    let mut actions = BTreeSet::new();
    for s in statements {
        assert_eq!(s["Effect"].as_str(), Some("Allow"));
        for action in strings(&s["Action"]) {
            actions.insert(action.clone());
            for resource in strings(&s["Resource"]) {
                assert_eq!(
                    resource.matches(THING).count(),
                    1,
                    "{action}: the thing name must appear once in {resource}"
                );
                let rest = resource
                    .strip_prefix(arn)
                    .unwrap_or_else(|| panic!("{action}: not an ARN of this account: {resource}"));
                if action == "iot:Connect" {
                    assert_eq!(
                        rest,
                        format!("client/{THING}"),
                        "Connect: the thing name must be the whole client id"
                    );
                    continue;
                }
                if action.starts_with("iotjobsdata:") {
                    assert_eq!(
                        rest,
                        format!("thing/{THING}"),
                        "{action}: only the device's own thing"
                    );
                    continue;
                }
                let kind = if action == "iot:Subscribe" {
                    "topicfilter/"
                } else {
                    "topic/"
                };
                let topic = rest
                    .strip_prefix(kind)
                    .unwrap_or_else(|| panic!("{action}: not a {kind} resource: {resource}"));
                let placed = device_topic_shapes(&action).iter().any(|(before, after)| {
                    topic
                        .strip_prefix(before)
                        .and_then(|t| t.strip_prefix(THING))
                        .is_some_and(|t| t.starts_with(after))
                });
                assert!(
                    placed,
                    "{action}: the thing name is not the level right after the fixed levels in \
                     {resource}"
                );
            }
        }
        if strings(&s["Action"]).contains(&"iot:Connect".to_owned()) {
            assert_eq!(
                render(&s["Condition"]["Bool"]["iot:Connection.Thing.IsAttached"]),
                "true",
                "Connect must require the certificate to be attached to the thing"
            );
        }
    }
    let expected: BTreeSet<String> = [
        "iot:Connect",
        "iot:Publish",
        "iot:Receive",
        "iot:Subscribe",
        "iotjobsdata:DescribeJobExecution",
        "iotjobsdata:GetPendingJobExecutions",
        "iotjobsdata:StartNextPendingJobExecution",
        "iotjobsdata:UpdateJobExecution",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(actions, expected, "the device policy's actions");
}

fn resources_of_type<'a>(doc: &'a Yaml, kind: &str) -> Vec<(&'a str, &'a Yaml)> {
    doc["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(name, r)| (name.as_str().unwrap(), r))
        .collect()
}

/// A dead letter the redrive keeps failing is received a bounded number of times, then parked
/// in a queue that nothing consumes automatically.
#[test]
fn the_dead_letter_queue_parks_what_keeps_failing() {
    let doc = template();
    let resources = &doc["Resources"];
    let redrive = &resources["DeadLetterQueue"]["Properties"]["RedrivePolicy"];
    let max = &redrive["maxReceiveCount"];
    assert!(
        max.as_u64().is_some_and(|n| n >= 1) || render(max).starts_with("!Ref "),
        "DeadLetterQueue: no maxReceiveCount in {redrive:?}"
    );
    if let Some(parameter) = render(max).strip_prefix("!Ref ") {
        let parameter = &doc["Parameters"][parameter];
        assert_eq!(parameter["Type"].as_str(), Some("Number"));
        assert!(parameter["MinValue"].as_u64().is_some_and(|n| n >= 1));
    }
    let target = render(&redrive["deadLetterTargetArn"]);
    let parked = target
        .strip_prefix("!GetAtt ")
        .and_then(|t| t.strip_suffix(".Arn"))
        .unwrap_or_else(|| {
            panic!("DeadLetterQueue: the target is no queue of the stack: {target}")
        });
    assert_eq!(
        resources[parked]["Type"].as_str(),
        Some("AWS::SQS::Queue"),
        "{parked} is not a queue"
    );
    for (name, mapping) in resources_of_type(&doc, "AWS::Lambda::EventSourceMapping") {
        assert_ne!(
            render(&mapping["Properties"]["EventSourceArn"]),
            target,
            "{name} consumes {parked}, which must be inspected by hand"
        );
    }
    // The dead-letter queue itself is read by the redrive function alone (never by ingest).
    let readers: Vec<String> = resources_of_type(&doc, "AWS::Lambda::EventSourceMapping")
        .into_iter()
        .filter(|(_, m)| {
            render(&m["Properties"]["EventSourceArn"]) == "!GetAtt DeadLetterQueue.Arn"
        })
        .map(|(_, m)| render(&m["Properties"]["FunctionName"]))
        .collect();
    assert_eq!(readers, ["!Ref RedriveFunction"]);
}

/// Every queue has a policy refusing any request not made over TLS.
#[test]
fn every_queue_refuses_requests_without_tls() {
    let doc = template();
    let queues = resources_of_type(&doc, "AWS::SQS::Queue");
    assert!(queues.len() >= 2, "found {} queues", queues.len());
    let policies = resources_of_type(&doc, "AWS::SQS::QueuePolicy");
    for (queue, _) in queues {
        let tls_only = policies.iter().any(|(_, policy)| {
            let properties = &policy["Properties"];
            let covers = strings(&properties["Queues"]).contains(&format!("!Ref {queue}"));
            let statements = properties["PolicyDocument"]["Statement"].as_sequence();
            covers
                && statements.into_iter().flatten().any(|s| {
                    s["Effect"].as_str() == Some("Deny")
                        && render(&s["Principal"]) == "*"
                        && strings(&s["Action"]) == ["sqs:*"]
                        && strings(&s["Resource"]).contains(&format!("!GetAtt {queue}.Arn"))
                        && render(&s["Condition"]["Bool"]["aws:SecureTransport"]) == "false"
                })
        });
        assert!(tls_only, "{queue}: no policy denying requests without TLS");
    }
}

fn rule_sql(doc: &Yaml, rule: &str) -> String {
    let sql = render(&doc["Resources"][rule]["Properties"]["TopicRulePayload"]["Sql"]);
    sql.strip_prefix("!Sub ").map(str::to_owned).unwrap_or(sql)
}

/// A device's payload never shares a namespace with the fields Tether relies on: the reply rule
/// passes it whole, base64-encoded, as `payload`. `SELECT *` stays only where AWS IoT authors
/// the payload, on reserved `$aws/events` topics no device can publish to.
#[test]
fn no_rule_spreads_a_device_payload_into_the_event() {
    use tether_local_iot::rules::{parse_sql, Select};
    let doc = template();
    let replies = rule_sql(&doc, "RepliesRule");
    // The same SQL reader `local-iot` runs the rules with.
    let (items, _) = parse_sql("RepliesRule", &replies).unwrap();
    assert!(
        items.contains(&Select::EncodedPayload {
            alias: "payload".into()
        }),
        "RepliesRule: {replies}"
    );
    assert!(!items.contains(&Select::All), "RepliesRule: {replies}");
    let rules = resources_of_type(&doc, "AWS::IoT::TopicRule");
    assert!(rules.len() >= 3, "found {} rules", rules.len());
    for (name, _) in rules {
        let sql = rule_sql(&doc, name);
        let (items, filter) = parse_sql(name, &sql).unwrap();
        if items.contains(&Select::All) {
            assert!(
                filter.starts_with("$aws/events/"),
                "{name}: SELECT * on a topic a device may publish to: {sql}"
            );
        }
    }
}

#[test]
fn only_iot_rules_of_this_account_may_assume_the_rule_error_role() {
    let doc = template();
    let trust =
        &doc["Resources"]["RuleErrorRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"];
    let statements = trust.as_sequence().unwrap();
    assert!(!statements.is_empty());
    for s in statements {
        assert_eq!(render(&s["Principal"]["Service"]), "iot.amazonaws.com");
        let condition = &s["Condition"];
        assert_eq!(
            render(&condition["StringEquals"]["aws:SourceAccount"]),
            "!Ref AWS::AccountId"
        );
        assert_eq!(
            render(&condition["ArnLike"]["aws:SourceArn"]),
            "!Sub arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:rule/*"
        );
    }
}

fn parameter_default(doc: &Yaml, value: &Yaml) -> u64 {
    let rendered = render(value);
    match rendered.strip_prefix("!Ref ") {
        Some(name) => doc["Parameters"][name]["Default"]
            .as_u64()
            .unwrap_or_else(|| panic!("parameter {name} has no numeric Default")),
        None => value
            .as_u64()
            .unwrap_or_else(|| panic!("not a number: {rendered}")),
    }
}

/// Waiting callers can never starve ingest (it reserves concurrency of its own), and a waiting
/// route admits no more requests than its function reserves instances: burst + rate × the
/// longest hold stays under the reserved concurrency (with the parameters' defaults), so the
/// caller beyond it gets API Gateway's 429, not a Lambda throttle (500/503).
#[test]
fn ingest_reserves_concurrency_and_waiting_routes_stay_under_their_reserve() {
    let doc = template();
    let resources = &doc["Resources"];
    for name in [
        "IngestFunction",
        "InvokeFunction",
        "CommandsFunction",
        "RedriveFunction",
    ] {
        let reserved = &resources[name]["Properties"]["ReservedConcurrentExecutions"];
        assert!(
            !reserved.is_null(),
            "{name}: no ReservedConcurrentExecutions"
        );
        assert!(parameter_default(&doc, reserved) >= 1, "{name}");
    }
    let routes = &resources["HttpApi"]["Properties"]["RouteSettings"];
    for (route, function, hold) in [
        (
            "POST /devices/{deviceId}/invoke",
            "InvokeFunction",
            INVOKE_HOLD_SECONDS,
        ),
        (
            "POST /commands/{commandId}/executions",
            "CommandsFunction",
            START_EXECUTIONS_HOLD_SECONDS,
        ),
    ] {
        let settings = &routes[route];
        assert!(!settings.is_null(), "HttpApi: no RouteSettings for {route}");
        let rate = parameter_default(&doc, &settings["ThrottlingRateLimit"]);
        let burst = parameter_default(&doc, &settings["ThrottlingBurstLimit"]);
        let reserved = parameter_default(
            &doc,
            &resources[function]["Properties"]["ReservedConcurrentExecutions"],
        );
        assert!(
            burst + rate * hold <= reserved,
            "{route}: burst {burst} + rate {rate}/s x {hold} s exceeds {function}'s reserved \
             concurrency {reserved}"
        );
    }
    // Lambda requires 100 of the default account limit (1,000) to stay unreserved.
    let total: u64 = resources_of_type(&doc, "AWS::Serverless::Function")
        .into_iter()
        .map(|(_, f)| &f["Properties"]["ReservedConcurrentExecutions"])
        .filter(|r| !r.is_null())
        .map(|r| parameter_default(&doc, r))
        .sum();
    assert!(
        total <= 900,
        "the defaults reserve {total} of the default 1,000"
    );
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
            // CKV_AWS_115 is "no reserved concurrency": skipping it where concurrency is
            // reserved would be a stale reason.
            assert!(
                id != "CKV_AWS_115"
                    || resource["Properties"]["ReservedConcurrentExecutions"].is_null(),
                "{name:?}: skips CKV_AWS_115 but reserves concurrency"
            );
        }
    }
    assert!(
        skipped > 0,
        "no suppressions found: has the Metadata layout changed?"
    );
}
