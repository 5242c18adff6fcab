//! The API contract, `openapi.yaml` at the repository root, against the code and the two other
//! places that list the routes:
//! - the HttpApi events of the functions in `template.yaml` (what deploys);
//! - the `[workspace.metadata.lambda.watch.router]` table of the root `Cargo.toml` (what
//!   `cargo lambda watch` serves locally);
//! - the problem codes of `crates/domain/src/error.rs`, and the field names and limits of the
//!   domain's API shapes.
//!
//! A failure names what drifted and where, so the fix is to edit whichever side is wrong.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Value as Json};
use serde_norway::Value as Yaml;
use tether_domain::api::{
    AbortRule, CancelJobRequest, CommandPayload, CreateCommandRequest, CreateJobRequest,
    CreatedJob, DeviceConnectivity, ExecutionRecord, FailureType, InvocationRecord, InvokeRequest,
    InvokeResponse, JobExecutionView, JobView, Page, RetryRule, Rollout, StartExecutionsRequest,
    StartExecutionsResponse, StartedExecution, TimelineEntry, UpdateCommandRequest,
};
use tether_domain::jobs::{JobExecutionStatus, JobStatus};
use tether_domain::topics::TargetKind;
use tether_domain::{ExecutionStatus, InvocationStatus, Problem, StatusReason};

const OPENAPI: &str = "openapi.yaml";
const TEMPLATE: &str = "template.yaml";
const CARGO: &str = "Cargo.toml";
const ERRORS: &str = "crates/domain/src/error.rs";

const OPENAPI_ROUTES: &str = "openapi.yaml (paths)";
const TEMPLATE_ROUTES: &str = "template.yaml (HttpApi events)";
const ROUTER_ROUTES: &str = "Cargo.toml ([workspace.metadata.lambda.watch.router])";

/// `(METHOD, path)`, e.g. `("POST", "/devices/{deviceId}/invoke")`.
type Route = (String, String);

fn read(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `openapi.yaml` as JSON (it has no YAML tags), so that `$ref`s resolve as JSON pointers.
fn openapi() -> Json {
    serde_norway::from_str(&read(OPENAPI))
        .unwrap_or_else(|e| panic!("{OPENAPI} is not valid YAML: {e}"))
}

/// A `#/...` reference's target.
fn resolve<'a>(doc: &'a Json, reference: &str) -> Option<&'a Json> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Follows a `$ref`, if the value is one.
fn deref<'a>(doc: &'a Json, value: &'a Json) -> &'a Json {
    match value.get("$ref").and_then(Json::as_str) {
        Some(reference) => resolve(doc, reference)
            .unwrap_or_else(|| panic!("{OPENAPI}: {reference} does not resolve")),
        None => value,
    }
}

fn schema<'a>(doc: &'a Json, name: &str) -> &'a Json {
    doc.pointer(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("{OPENAPI} has no components.schemas.{name}"))
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every `(method, path, operation)` of the document.
fn operations(doc: &Json) -> Vec<(String, String, &Json)> {
    let paths = doc["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("{OPENAPI}: `paths` is not a mapping"));
    let mut found = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.push((method.to_ascii_uppercase(), path.clone(), operation));
            }
        }
    }
    found
}

fn openapi_routes() -> BTreeSet<Route> {
    operations(&openapi())
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

fn text<'a>(value: &'a Yaml, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Yaml::as_str)
}

/// The HttpApi events of the template's functions, each with the binary that serves it.
fn template_routes() -> BTreeMap<Route, String> {
    let doc: Yaml = serde_norway::from_str(&read(TEMPLATE))
        .unwrap_or_else(|e| panic!("{TEMPLATE} is not valid YAML: {e}"));
    let resources = doc
        .get("Resources")
        .and_then(Yaml::as_mapping)
        .unwrap_or_else(|| panic!("{TEMPLATE} has no Resources"));
    let mut routes = BTreeMap::new();
    for (name, resource) in resources {
        if text(resource, "Type") != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap_or("?");
        let binary = resource
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| text(b, "Binary"))
            .unwrap_or_else(|| panic!("{TEMPLATE}: {name} has no Metadata.BuildProperties.Binary"));
        let Some(events) = resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Yaml::as_mapping)
        else {
            continue;
        };
        for (event, body) in events {
            if text(body, "Type") != Some("HttpApi") {
                continue;
            }
            let event = event.as_str().unwrap_or("?");
            let properties = body.get("Properties");
            if properties.is_some_and(|p| p.get("Path").is_none() && p.get("Method").is_none()) {
                // The API's default route: checked by its own test.
                continue;
            }
            let field = |key| {
                properties.and_then(|p| text(p, key)).unwrap_or_else(|| {
                    panic!("{TEMPLATE}: {name}.Events.{event} has no plain-text {key}")
                })
            };
            let route = (
                field("Method").to_ascii_uppercase(),
                field("Path").to_owned(),
            );
            if let Some(other) = routes.insert(route.clone(), binary.to_owned()) {
                panic!(
                    "{TEMPLATE}: {} {} is declared twice ({other} and {binary})",
                    route.0, route.1
                );
            }
        }
    }
    routes
}

/// The `cargo lambda watch` router: each `(method, path)` with the function that serves it,
/// and the function of the catch-all entry (no methods), if any.
fn router() -> (BTreeMap<Route, String>, Vec<(String, String)>) {
    let cargo: toml::Table =
        toml::from_str(&read(CARGO)).unwrap_or_else(|e| panic!("{CARGO} is not valid TOML: {e}"));
    let cargo = toml::Value::Table(cargo);
    let router = ["workspace", "metadata", "lambda", "watch", "router"]
        .iter()
        .try_fold(&cargo, |value, key| value.get(key))
        .and_then(toml::Value::as_array)
        .unwrap_or_else(|| panic!("{CARGO} has no [workspace.metadata.lambda.watch] router list"));
    let mut routes = BTreeMap::new();
    let mut catch_all = Vec::new();
    for entry in router {
        let field = |key| {
            entry
                .get(key)
                .and_then(toml::Value::as_str)
                .unwrap_or_else(|| panic!("{CARGO}: a router entry has no text `{key}`: {entry}"))
        };
        let (path, function) = (field("path"), field("function"));
        let Some(methods) = entry.get("methods") else {
            catch_all.push((path.to_owned(), function.to_owned()));
            continue;
        };
        for method in methods.as_array().into_iter().flatten() {
            let method = method
                .as_str()
                .unwrap_or_else(|| panic!("{CARGO}: a method of {path} is not text"));
            assert_eq!(
                method,
                method.to_ascii_uppercase(),
                "{CARGO}: cargo lambda matches methods as written; {method} never matches"
            );
            let route = (method.to_owned(), path.to_owned());
            if let Some(other) = routes.insert(route.clone(), function.to_owned()) {
                panic!(
                    "{CARGO}: router {} {} is declared twice (also for {other})",
                    route.0, route.1
                );
            }
        }
    }
    (routes, catch_all)
}

/// The router's routes of the API: those the template deploys, or that go to another function
/// than `status` (which answers every other request with a 405 or 404).
fn router_routes() -> BTreeMap<Route, String> {
    let template = template_routes();
    router()
        .0
        .into_iter()
        .filter(|(route, function)| template.contains_key(route) || function != "status")
        .collect()
}

#[test]
fn openapi_yaml_is_an_openapi_3_1_document_whose_references_all_resolve() {
    let doc = openapi();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(
        version.starts_with("3.1."),
        "{OPENAPI}: openapi is {version:?}, not 3.1.x"
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let mut unresolved = Vec::new();
    let mut stack = vec![&doc];
    while let Some(value) = stack.pop() {
        match value {
            Json::Object(map) => {
                if let Some(reference) = map.get("$ref").and_then(Json::as_str) {
                    if resolve(&doc, reference).is_none() {
                        unresolved.push(reference.to_owned());
                    }
                }
                stack.extend(map.values());
            }
            Json::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    assert!(
        unresolved.is_empty(),
        "{OPENAPI}: these $refs do not resolve: {unresolved:?}"
    );

    let mut problems = Vec::new();
    let mut operation_ids = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let id = operation["operationId"].as_str().unwrap_or_default();
        if id.is_empty() || !operation_ids.insert(id.to_owned()) {
            problems.push(format!(
                "{method} {path}: operationId {id:?} is missing or not unique"
            ));
        }
        if operation["responses"]
            .as_object()
            .is_none_or(|r| r.is_empty())
        {
            problems.push(format!("{method} {path}: no responses"));
        }
        let declared: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| deref(&doc, p))
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        if declared != templated {
            problems.push(format!(
                "{method} {path}: path parameters {declared:?}, the path has {templated:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{OPENAPI}:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn openapi_template_and_watch_router_declare_the_same_routes() {
    let sources: [(&str, BTreeSet<Route>); 3] = [
        (OPENAPI_ROUTES, openapi_routes()),
        (TEMPLATE_ROUTES, template_routes().into_keys().collect()),
        (ROUTER_ROUTES, router_routes().into_keys().collect()),
    ];
    let every: BTreeSet<&Route> = sources.iter().flat_map(|(_, routes)| routes).collect();
    let mut drift = Vec::new();
    for route @ (method, path) in every {
        let (present, missing): (Vec<_>, Vec<_>) = sources
            .iter()
            .partition(|(_, routes)| routes.contains(route));
        if !missing.is_empty() {
            let names = |list: Vec<&(&str, _)>| {
                list.iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(" and ")
            };
            drift.push(format!(
                "{method} {path} is in {} but missing from {}",
                names(present),
                names(missing)
            ));
        }
    }
    assert!(
        drift.is_empty(),
        "the routes drifted apart ({} of them):\n  {}",
        drift.len(),
        drift.join("\n  ")
    );
}

#[test]
fn template_and_watch_router_send_each_route_to_the_same_function() {
    let template = template_routes();
    let mut mismatched = Vec::new();
    for ((method, path), function) in router_routes() {
        if let Some(binary) = template.get(&(method.clone(), path.clone())) {
            if *binary != function {
                mismatched.push(format!(
                    "{method} {path}: {TEMPLATE} sends it to `{binary}`, the watch router to `{function}`"
                ));
            }
        }
    }
    assert!(mismatched.is_empty(), "{}", mismatched.join("\n"));
}

/// What API Gateway's default route does deployed, the watch router does locally: every
/// method of a known path the API does not take, and every unknown path, reach `status`.
#[test]
fn requests_no_route_takes_reach_status_deployed_and_locally() {
    let doc: Yaml = serde_norway::from_str(&read(TEMPLATE)).unwrap();
    let mut defaults = Vec::new();
    for (name, resource) in doc["Resources"].as_mapping().unwrap() {
        let events = resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Yaml::as_mapping);
        for (_, body) in events.into_iter().flatten() {
            let properties = &body["Properties"];
            if text(body, "Type") == Some("HttpApi")
                && properties.get("Path").is_none()
                && properties.get("Method").is_none()
            {
                defaults.push(name.as_str().unwrap_or("?").to_owned());
            }
        }
    }
    assert_eq!(
        defaults,
        ["StatusFunction"],
        "{TEMPLATE}: one default route, to StatusFunction"
    );

    let (routes, catch_all) = router();
    assert_eq!(
        catch_all,
        ["/", "/{*path}"].map(|path| (path.to_owned(), "status".to_owned())),
        "{CARGO}: the root and the catch-all router entries, to status"
    );
    let paths: BTreeSet<&String> = routes.keys().map(|(_, path)| path).collect();
    let mut missing = Vec::new();
    for path in paths {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if !routes.contains_key(&(method.to_owned(), path.clone())) {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{CARGO}: without a router entry, cargo lambda answers these with its own 404 \
         (send them to status): {missing:?}"
    );
}

#[test]
fn the_route_table_of_the_code_is_the_contracts() {
    use tether_adapters::http::Route as CodeRoute;
    let code: BTreeSet<Route> = CodeRoute::ALL
        .iter()
        .map(|r| (r.method().to_string(), r.pattern().to_owned()))
        .collect();
    assert_eq!(
        code,
        openapi_routes(),
        "tether_adapters::http::Route::ALL and {OPENAPI_ROUTES}"
    );
    // Each route reaches the function the code says serves it, deployed and locally.
    let (template, router) = (template_routes(), router_routes());
    let mut wrong = Vec::new();
    for route in CodeRoute::ALL {
        let key = (route.method().to_string(), route.pattern().to_owned());
        let function = route.function().binary();
        for (source, routes) in [(TEMPLATE_ROUTES, &template), (ROUTER_ROUTES, &router)] {
            match routes.get(&key) {
                Some(binary) if binary == function => {}
                Some(binary) => wrong.push(format!(
                    "{route:?} ({} {}): the code says `{function}`, {source} sends it to `{binary}`",
                    key.0, key.1
                )),
                None => wrong.push(format!(
                    "{route:?} ({} {}) is missing from {source}",
                    key.0, key.1
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The upper-snake string literals of every `fn code(` match in `error.rs` (`ApiError::code` and
/// `Resource::code`): from each `fn code(` to the next `fn `, every `=> "CODE"`.
fn domain_codes() -> BTreeSet<String> {
    let source = read(ERRORS);
    let mut codes = BTreeSet::new();
    for (start, _) in source.match_indices("fn code(") {
        let body = &source[start + 1..];
        let body = &body[..body.find("fn ").unwrap_or(body.len())];
        for arm in body.split("=> \"").skip(1) {
            let literal = &arm[..arm.find('"').unwrap_or(0)];
            if !literal.is_empty()
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                codes.insert(literal.to_owned());
            }
        }
    }
    codes
}

fn strings(value: &Json) -> BTreeSet<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn every_problem_code_of_the_domain_is_in_the_openapi_code_enum_and_no_other() {
    let from_rust = domain_codes();
    assert!(
        from_rust.contains("INTERNAL") && from_rust.contains("COMMAND_NOT_FOUND"),
        "reading the codes out of {ERRORS} went wrong (found {from_rust:?})"
    );
    let doc = openapi();
    let from_openapi = strings(&schema(&doc, "ProblemCode")["enum"]);

    let missing: Vec<_> = from_rust.difference(&from_openapi).collect();
    let extra: Vec<_> = from_openapi.difference(&from_rust).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "components.schemas.ProblemCode.enum of {OPENAPI} and the codes of {ERRORS} differ:\n  \
         produced by the code but not in {OPENAPI}: {missing:?}\n  \
         in {OPENAPI} but never produced: {extra:?}"
    );
}

#[test]
fn every_code_a_response_names_is_in_the_openapi_code_enum() {
    let doc = openapi();
    let known = strings(&schema(&doc, "ProblemCode")["enum"]);
    let mut unknown = BTreeSet::new();
    let mut stack = vec![&doc];
    while let Some(value) = stack.pop() {
        match value {
            Json::Object(map) => {
                if let Some(code) = map.get("properties").and_then(|p| p.get("code")) {
                    let mut named = strings(&code["enum"]);
                    named.extend(code["const"].as_str().map(str::to_owned));
                    unknown.extend(named.difference(&known).cloned());
                }
                // Examples of problem documents.
                if map
                    .get("type")
                    .and_then(Json::as_str)
                    .is_some_and(|t| t.starts_with("urn:"))
                {
                    let code = map.get("code").and_then(Json::as_str).unwrap_or_default();
                    if !known.contains(code) {
                        unknown.insert(code.to_owned());
                    }
                }
                stack.extend(map.values());
            }
            Json::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    assert!(
        unknown.is_empty(),
        "{OPENAPI} names codes that are not in ProblemCode: {unknown:?}"
    );
}

/// Checks a schema's property names against what serde writes for a value with every optional
/// field set (`full`) and with none set (`minimal`, whose fields are the required ones), and that
/// a request body (`closed`) refuses unknown fields as `deny_unknown_fields` does.
fn check_shape(
    doc: &Json,
    name: &str,
    full: Json,
    minimal: Json,
    closed: bool,
    problems: &mut Vec<String>,
) {
    let keys = |value: &Json| -> BTreeSet<String> {
        value
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let schema = schema(doc, name);
    let properties = keys(&schema["properties"]);
    let required = strings(&schema["required"]);
    if properties != keys(&full) {
        problems.push(format!(
            "{name}: properties {properties:?}, serde writes {:?}",
            keys(&full)
        ));
    }
    if required != keys(&minimal) {
        problems.push(format!(
            "{name}: required {required:?}, serde always writes {:?}",
            keys(&minimal)
        ));
    }
    if closed && schema["additionalProperties"] != json!(false) {
        problems.push(format!(
            "{name}: a request body refuses unknown fields, so additionalProperties must be false"
        ));
    }
}

/// A value as serde writes it (a macro: this crate does not name `serde::Serialize`).
macro_rules! to_json {
    ($value:expr) => {
        serde_json::to_value(&$value).unwrap()
    };
}

#[test]
fn schemas_have_the_field_names_serde_writes_and_requests_refuse_unknown_fields() {
    let doc = openapi();
    let mut problems = Vec::new();
    let reason = || Some(StatusReason::new("BULB_BROKEN", Some("no light".into())));
    let problem = Problem {
        type_uri: "urn:tether:problem:conflict".into(),
        title: "Conflict".into(),
        status: 409,
        detail: "d".into(),
        code: "CONFLICT".into(),
        request_id: Some("r".into()),
        delivered: Some(true),
    };

    let requests = [
        (
            "InvokeRequest",
            to_json!(InvokeRequest {
                method: "m".into(),
                payload: Some(json!({})),
                timeout_ms: Some(100),
                connect_timeout_ms: Some(50),
            }),
            to_json!(InvokeRequest {
                method: "m".into(),
                payload: None,
                timeout_ms: None,
                connect_timeout_ms: None,
            }),
        ),
        (
            "CommandPayload",
            to_json!(CommandPayload {
                content: json!({}),
                content_type: Some("application/json".into()),
            }),
            to_json!(CommandPayload {
                content: json!({}),
                content_type: None,
            }),
        ),
        (
            "CreateCommandRequest",
            to_json!(CreateCommandRequest {
                command_id: Some("c".into()),
                display_name: Some("n".into()),
                description: Some("d".into()),
                payload: Some(CommandPayload {
                    content: json!({}),
                    content_type: None,
                }),
                payload_template: Some(json!({})),
                mandatory_parameters: Some(vec![json!({"name": "p"})]),
            }),
            to_json!(CreateCommandRequest {
                command_id: None,
                display_name: None,
                description: None,
                payload: None,
                payload_template: None,
                mandatory_parameters: None,
            }),
        ),
        (
            "UpdateCommandRequest",
            to_json!(UpdateCommandRequest {
                display_name: Some("n".into()),
                description: Some("d".into()),
                deprecated: Some(true),
            }),
            to_json!(UpdateCommandRequest::default()),
        ),
        (
            "StartExecutionsRequest",
            to_json!(StartExecutionsRequest {
                targets: vec!["dev-1".into()],
                target_type: Some(TargetKind::Thing),
                parameters: Some(serde_json::Map::new()),
                timeout_seconds: Some(1),
                wait_ms: Some(0),
            }),
            to_json!(StartExecutionsRequest {
                targets: vec!["dev-1".into()],
                target_type: None,
                parameters: None,
                timeout_seconds: None,
                wait_ms: None,
            }),
        ),
        (
            "CreateJobRequest",
            to_json!(CreateJobRequest {
                job_id: Some("j".into()),
                targets: vec!["dev-1".into()],
                document: json!({}),
                description: Some("d".into()),
                rollout: Some(Rollout {
                    maximum_per_minute: 1
                }),
                abort: Some(vec![AbortRule {
                    failure_type: FailureType::All,
                    threshold_percentage: 50.0,
                    min_executed: 1,
                }]),
                timeout_minutes: Some(1),
                retry: Some(vec![RetryRule {
                    failure_type: FailureType::Failed,
                    retries: 1,
                }]),
            }),
            to_json!(CreateJobRequest {
                job_id: None,
                targets: vec!["dev-1".into()],
                document: json!({}),
                description: None,
                rollout: None,
                abort: None,
                timeout_minutes: None,
                retry: None,
            }),
        ),
        (
            "CancelJobRequest",
            to_json!(CancelJobRequest {
                comment: Some("c".into()),
                force: true,
            }),
            json!({}),
        ),
    ];
    for (name, full, minimal) in requests {
        check_shape(&doc, name, full, minimal, true, &mut problems);
    }

    let timeline = |with_reason: bool| TimelineEntry {
        status: "SUCCEEDED".into(),
        at: "2026-11-23T18:00:00.000Z".into(),
        source: "device".into(),
        status_reason: if with_reason { reason() } else { None },
    };
    let execution = |full: bool| ExecutionRecord {
        execution_id: "e".into(),
        command_id: "c".into(),
        target: "dev-1".into(),
        status: ExecutionStatus::Succeeded,
        status_reason: if full { reason() } else { None },
        result: full.then(|| json!({})),
        parameters: full.then(|| json!({})),
        created_at: "t".into(),
        updated_at: "t".into(),
        completed_at: full.then(|| "t".into()),
        timeline: full.then(|| vec![timeline(true)]),
        timeline_truncated: full,
    };
    let started = |full: bool| StartedExecution {
        target: "dev-1".into(),
        execution_id: full.then(|| "e".into()),
        status: full.then_some(ExecutionStatus::Succeeded),
        status_reason: if full { reason() } else { None },
        result: full.then(|| json!({})),
        error: full.then(|| problem.clone()),
    };
    let job = |full: bool| JobView {
        job_id: "j".into(),
        status: JobStatus::Canceled,
        description: full.then(|| "d".into()),
        targets: full.then(|| vec!["dev-1".into()]),
        created_at: "t".into(),
        updated_at: full.then(|| "t".into()),
        completed_at: full.then(|| "t".into()),
        counts: full.then(|| BTreeMap::from([("QUEUED".to_owned(), 1)])),
        comment: full.then(|| "c".into()),
        reason_code: full.then(|| "$ABORTED".into()),
        force_canceled: full,
    };
    let job_execution = |full: bool| JobExecutionView {
        job_id: "j".into(),
        device_id: "dev-1".into(),
        status: JobExecutionStatus::Succeeded,
        status_details: full.then(|| BTreeMap::from([("k".to_owned(), "v".to_owned())])),
        queued_at: "t".into(),
        started_at: full.then(|| "t".into()),
        updated_at: "t".into(),
        completed_at: full.then(|| "t".into()),
        execution_number: 1,
        timeline: full.then(|| vec![timeline(false)]),
    };
    let responses = [
        ("Job", to_json!(job(true)), to_json!(job(false))),
        (
            "JobPage",
            to_json!(Page {
                items: vec![job(false)],
                next_token: Some("n".into()),
            }),
            to_json!(Page::<JobView> {
                items: vec![],
                next_token: None,
            }),
        ),
        (
            "JobExecution",
            to_json!(job_execution(true)),
            to_json!(job_execution(false)),
        ),
        (
            "JobExecutionPage",
            to_json!(Page {
                items: vec![job_execution(false)],
                next_token: Some("n".into()),
            }),
            to_json!(Page::<JobExecutionView> {
                items: vec![],
                next_token: None,
            }),
        ),
        (
            "JobCreated",
            to_json!(CreatedJob {
                job_id: "j".into(),
                job_arn: "a".into(),
            }),
            to_json!(CreatedJob {
                job_id: "j".into(),
                job_arn: "a".into(),
            }),
        ),
        (
            "InvokeResponse",
            to_json!(InvokeResponse {
                request_id: "r".into(),
                device_id: "d".into(),
                method: "m".into(),
                status: InvocationStatus::Succeeded,
                result: Some(json!({})),
                status_reason: reason(),
                elapsed_ms: 1,
            }),
            to_json!(InvokeResponse {
                request_id: "r".into(),
                device_id: "d".into(),
                method: "m".into(),
                status: InvocationStatus::Succeeded,
                result: None,
                status_reason: None,
                elapsed_ms: 1,
            }),
        ),
        (
            "InvocationRecord",
            to_json!(InvocationRecord {
                request_id: "r".into(),
                device_id: "d".into(),
                method: "m".into(),
                status: InvocationStatus::Succeeded,
                result: Some(json!({})),
                status_reason: reason(),
                created_at: "t".into(),
                completed_at: Some("t".into()),
                timeline: Some(vec![]),
                timeline_truncated: true,
            }),
            to_json!(InvocationRecord {
                request_id: "r".into(),
                device_id: "d".into(),
                method: "m".into(),
                status: InvocationStatus::Pending,
                result: None,
                status_reason: None,
                created_at: "t".into(),
                completed_at: None,
                timeline: None,
                timeline_truncated: false,
            }),
        ),
        (
            "ExecutionRecord",
            to_json!(execution(true)),
            to_json!(execution(false)),
        ),
        (
            "ExecutionPage",
            to_json!(Page {
                items: vec![execution(false)],
                next_token: Some("n".into()),
            }),
            to_json!(Page::<ExecutionRecord> {
                items: vec![],
                next_token: None,
            }),
        ),
        (
            "JobTimelineEntry",
            to_json!(timeline(true)),
            to_json!(timeline(false)),
        ),
        (
            "TimelineEntry",
            to_json!(timeline(true)),
            to_json!(timeline(false)),
        ),
        (
            "StatusReason",
            to_json!(reason()),
            to_json!(StatusReason::new("X", None)),
        ),
        (
            "DeviceConnectivity",
            to_json!(DeviceConnectivity {
                device_id: "d".into(),
                connected: false,
                since: Some("t".into()),
                last_seen: Some("t".into()),
                disconnect_reason: Some("CLIENT_INITIATED_DISCONNECT".into()),
            }),
            to_json!(DeviceConnectivity {
                device_id: "d".into(),
                connected: true,
                since: None,
                last_seen: None,
                disconnect_reason: None,
            }),
        ),
        (
            "StartedExecution",
            to_json!(started(true)),
            to_json!(started(false)),
        ),
        (
            "StartExecutionsResponse",
            to_json!(StartExecutionsResponse {
                executions: vec![started(false)],
            }),
            to_json!(StartExecutionsResponse { executions: vec![] }),
        ),
        (
            "Problem",
            to_json!(problem),
            to_json!(Problem {
                request_id: None,
                delivered: None,
                ..problem.clone()
            }),
        ),
    ];
    for (name, full, minimal) in responses {
        check_shape(&doc, name, full, minimal, false, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "{OPENAPI} and the serde shapes of tether_domain differ:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn openapi_limits_are_the_limits_the_domain_enforces() {
    use tether_domain::api::{
        DEFAULT_LIST_LIMIT, DEFAULT_TIMEOUT_MS, EXECUTION_TIMEOUT_S, JOB_RETRIES,
        JOB_TIMEOUT_MINUTES, LIST_LIMIT, MAX_JOB_TARGETS, MAX_JOB_TEXT, MAX_PAYLOAD_BYTES,
        MAX_TARGETS, ROLLOUT_PER_MINUTE, TIMEOUT_MS, WAIT_MS,
    };
    let doc = openapi();
    let at = |pointer: &str| -> Json {
        doc.pointer(pointer)
            .cloned()
            .unwrap_or_else(|| panic!("{OPENAPI} has nothing at {pointer}"))
    };
    let timeout = "/components/schemas/InvokeRequest/properties/timeoutMs";
    let start = "/components/schemas/StartExecutionsRequest/properties";
    let limit = "/components/parameters/Limit/schema";
    let job = "/components/schemas/CreateJobRequest/properties";
    let expected = [
        (format!("{timeout}/minimum"), json!(TIMEOUT_MS.start())),
        (format!("{timeout}/maximum"), json!(TIMEOUT_MS.end())),
        (format!("{timeout}/default"), json!(DEFAULT_TIMEOUT_MS)),
        (format!("{start}/targets/minItems"), json!(1)),
        (format!("{start}/targets/maxItems"), json!(MAX_TARGETS)),
        (format!("{start}/waitMs/minimum"), json!(WAIT_MS.start())),
        (format!("{start}/waitMs/maximum"), json!(WAIT_MS.end())),
        (
            format!("{start}/timeoutSeconds/minimum"),
            json!(EXECUTION_TIMEOUT_S.start()),
        ),
        (
            format!("{start}/timeoutSeconds/maximum"),
            json!(EXECUTION_TIMEOUT_S.end()),
        ),
        (format!("{job}/targets/maxItems"), json!(MAX_JOB_TARGETS)),
        (format!("{job}/description/maxLength"), json!(MAX_JOB_TEXT)),
        (
            format!("{job}/timeoutMinutes/minimum"),
            json!(JOB_TIMEOUT_MINUTES.start()),
        ),
        (
            format!("{job}/timeoutMinutes/maximum"),
            json!(JOB_TIMEOUT_MINUTES.end()),
        ),
        (
            "/components/schemas/Rollout/properties/maximumPerMinute/maximum".into(),
            json!(ROLLOUT_PER_MINUTE.end()),
        ),
        (
            "/components/schemas/RetryRule/properties/retries/maximum".into(),
            json!(JOB_RETRIES.end()),
        ),
        (format!("{limit}/minimum"), json!(LIST_LIMIT.start())),
        (format!("{limit}/maximum"), json!(LIST_LIMIT.end())),
        (format!("{limit}/default"), json!(DEFAULT_LIST_LIMIT)),
    ];
    let mut wrong: Vec<String> = expected
        .iter()
        .filter(|(pointer, value)| at(pointer) != *value)
        .map(|(pointer, value)| format!("{pointer} is {}, the code says {value}", at(pointer)))
        .collect();
    // The payload limit is in bytes of serialized JSON, which a schema cannot state: it is
    // written out where it applies.
    for pointer in [
        "/components/schemas/InvokeRequest/properties/payload/description",
        "/components/responses/PayloadTooLarge/description",
    ] {
        let text = at(pointer);
        if !text
            .as_str()
            .unwrap_or_default()
            .contains(&MAX_PAYLOAD_BYTES.to_string())
        {
            wrong.push(format!(
                "{pointer} does not give the limit, {MAX_PAYLOAD_BYTES} bytes"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
