//! The handler with fake ports.

use std::sync::Mutex;

use tether_domain::api::ExecutionRecord;

use lambda_http::Body;

use super::*;

#[derive(Default)]
struct Fake {
    deprecated: bool,
    /// Targets whose start fails.
    refuse: Vec<&'static str>,
    /// Status the records read as (none: no record).
    record_status: Option<&'static str>,
    starts: Mutex<Vec<(String, Option<String>)>>,
    recorded: Mutex<Vec<ExecutionId>>,
    deleted_status: u16,
    /// Wait rounds: each reads every record in one batch.
    batch_reads: Mutex<usize>,
}

impl Ports for Fake {
    async fn create(
        &self,
        id: &str,
        _: &CreateCommandRequest,
        _: CommandDocument,
    ) -> Result<Value, ApiError> {
        Ok(json!({"commandId": id, "commandArn": format!("arn:aws:iot:us-east-1:1:command/{id}")}))
    }

    async fn get(&self, id: &str) -> Result<CommandResource, ApiError> {
        if id == "missing" {
            return Err(ApiError::NotFound {
                what: Resource::Command,
                id: id.into(),
            });
        }
        Ok(CommandResource {
            command_id: id.into(),
            command_arn: Some(format!("arn:aws:iot:us-east-1:1:command/{id}")),
            deprecated: self.deprecated,
            ..CommandResource::default()
        })
    }

    async fn list(&self, _: u32, _: Option<String>) -> Result<Page<CommandResource>, ApiError> {
        Ok(Page {
            items: vec![],
            next_token: None,
        })
    }

    async fn update(&self, id: &str, _: &UpdateCommandRequest) -> Result<Value, ApiError> {
        Ok(json!({"commandId": id}))
    }

    async fn delete(&self, _: &str) -> Result<u16, ApiError> {
        Ok(self.deleted_status)
    }

    async fn start(
        &self,
        _: &str,
        target_arn: &str,
        _: Option<&Map<String, Value>>,
        _: Option<u64>,
        token: Option<String>,
    ) -> Result<String, ApiError> {
        if self
            .refuse
            .iter()
            .any(|t| target_arn.ends_with(&format!("/{t}")))
        {
            return Err(ApiError::Throttled { retry_after_s: 1 });
        }
        let mut starts = self.starts.lock().unwrap();
        starts.push((target_arn.to_owned(), token));
        Ok(format!("exec-{}", starts.len()))
    }

    async fn record_created(
        &self,
        execution: &ExecutionId,
        _: &RecordMeta,
        _: i64,
    ) -> Result<(), ApiError> {
        self.recorded.lock().unwrap().push(execution.clone());
        Ok(())
    }

    async fn execution(&self, id: &ExecutionId) -> Result<Option<ExecutionRecord>, ApiError> {
        Ok(self.record_status.map(|status| ExecutionRecord {
            execution_id: id.to_string(),
            command_id: "c".into(),
            target: "t".into(),
            status: ExecutionStatus::parse(status).unwrap(),
            status_reason: None,
            result: Some(json!({"ok": {"B": true}})),
            parameters: None,
            created_at: "x".into(),
            updated_at: "x".into(),
            completed_at: None,
            timeline: None,
            timeline_truncated: false,
        }))
    }

    async fn execution_records(
        &self,
        ids: &[ExecutionId],
    ) -> Result<Vec<Option<ExecutionRecord>>, ApiError> {
        *self.batch_reads.lock().unwrap() += 1;
        let mut records = Vec::new();
        for id in ids {
            records.push(self.execution(id).await?);
        }
        Ok(records)
    }
}

fn request(method: &str, uri: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let body = body
        .map(|b| Body::Text(b.to_string()))
        .unwrap_or(Body::Empty);
    let request = builder.body(body).unwrap();
    tether_adapters::http::with_uri_query(request)
}

async fn call(
    fake: &Fake,
    method: &str,
    uri: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value, HttpResponse) {
    let response = handle(fake, request(method, uri, body, headers)).await;
    let value = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
    (response.status().as_u16(), value, response)
}

#[tokio::test]
async fn creating_a_command_answers_201_with_its_location() {
    let (status, body, response) = call(
        &Fake::default(),
        "POST",
        "/commands",
        Some(json!({"commandId": "unlock", "payload": {"content": {"door": "front"}}})),
        &[],
    )
    .await;

    assert_eq!(status, 201);
    assert_eq!(body["commandId"], "unlock");
    assert_eq!(response.headers()[header::LOCATION], "/commands/unlock");
}

#[tokio::test]
async fn executions_start_per_target_and_report_each_outcome() {
    let fake = Fake {
        refuse: vec!["car-2"],
        ..Fake::default()
    };

    let (status, body, _) = call(
        &fake,
        "POST",
        "/commands/unlock/executions",
        Some(json!({"targets": ["car-1", "car-2", "car-3"]})),
        &[],
    )
    .await;

    assert_eq!(status, 202);
    let executions = body["executions"].as_array().unwrap();
    let targets: Vec<&str> = executions
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["car-1", "car-2", "car-3"], "in request order");
    assert!(executions[0]["executionId"].is_string());
    assert_eq!(executions[1]["error"]["code"], "THROTTLED");
    assert_eq!(
        fake.recorded.lock().unwrap().len(),
        2,
        "every started execution is recorded at once"
    );
    let starts = fake.starts.lock().unwrap();
    assert!(starts
        .iter()
        .any(|(arn, _)| arn == "arn:aws:iot:us-east-1:1:thing/car-1"));
    assert!(starts.iter().all(|(_, token)| token.is_none()));
}

#[tokio::test]
async fn targets_whose_turn_comes_after_the_time_budget_are_answered_not_started() {
    let fake = Fake::default();
    let body = json!({"targets": ["car-1", "car-2"]});
    let request = request("POST", "/commands/unlock/executions", Some(body), &[]);
    let command = CommandId::parse("unlock").unwrap();
    let now = Instant::now();

    let response = start(&fake, &request, &command, now, now).await.unwrap();

    assert_eq!(response.status(), 202);
    let body: Value = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        other => panic!("{other:?}"),
    };
    for execution in body["executions"].as_array().unwrap() {
        assert_eq!(execution["error"]["code"], "NOT_STARTED", "{execution}");
        assert!(execution["executionId"].is_null());
    }
    assert!(
        fake.starts.lock().unwrap().is_empty(),
        "nothing was started"
    );
    assert!(
        start_budget(&request, now) > now,
        "a request has a budget to start with"
    );
}

#[test]
fn the_start_budget_keeps_clear_of_the_functions_deadline() {
    use lambda_http::RequestExt;
    let now = Instant::now();
    let with_deadline = |left_ms: i64| {
        let mut context = lambda_http::Context::default();
        context.deadline = u64::try_from(now_ms() + left_ms).unwrap();
        request("POST", "/commands/c/executions", None, &[]).with_lambda_context(context)
    };
    let budget = |left_ms| start_budget(&with_deadline(left_ms), now).duration_since(now);

    assert_eq!(
        budget(29_000),
        START_BUDGET,
        "a 29 s function starts for 18 s"
    );
    let short = budget(6_000);
    assert!(
        short <= Duration::from_millis(4_000) && short >= Duration::from_millis(3_800),
        "{short:?}"
    );
    assert_eq!(
        budget(-1_000),
        START_BUDGET,
        "a deadline already past is not a deadline"
    );
}

#[tokio::test]
async fn a_keyed_request_gives_each_target_a_stable_client_token() {
    let first = Fake::default();
    let again = Fake::default();
    let body = json!({"targets": ["car-1", "car-2"], "targetType": "client"});

    call(
        &first,
        "POST",
        "/commands/unlock/executions",
        Some(body.clone()),
        &[("idempotency-key", "k-1")],
    )
    .await;
    call(
        &again,
        "POST",
        "/commands/unlock/executions",
        Some(body),
        &[("idempotency-key", "k-1")],
    )
    .await;

    let (a, b) = (
        first.starts.lock().unwrap().clone(),
        again.starts.lock().unwrap().clone(),
    );
    let tokens = |s: &Vec<(String, Option<String>)>| {
        let mut t: Vec<(String, String)> = s
            .iter()
            .map(|(arn, t)| (arn.clone(), t.clone().unwrap()))
            .collect();
        t.sort();
        t
    };
    assert_eq!(tokens(&a), tokens(&b));
    assert!(a.iter().all(|(arn, _)| arn.contains(":client/")));
    assert_ne!(tokens(&a)[0].1, tokens(&a)[1].1, "one token per target");
    assert!(tokens(&a)[0].1.len() <= 64);
}

#[tokio::test]
async fn waiting_answers_200_when_settled_and_504_with_what_is_open() {
    let done = Fake {
        record_status: Some("SUCCEEDED"),
        ..Fake::default()
    };
    let open = Fake {
        record_status: Some("IN_PROGRESS"),
        ..Fake::default()
    };
    let body = json!({"targets": ["car-1"], "waitMs": 100});

    let (status, settled, _) = call(
        &done,
        "POST",
        "/commands/unlock/executions",
        Some(body.clone()),
        &[],
    )
    .await;
    let (late_status, pending, response) = call(
        &open,
        "POST",
        "/commands/unlock/executions",
        Some(body),
        &[],
    )
    .await;

    assert_eq!(status, 200);
    assert_eq!(settled["executions"][0]["status"], "SUCCEEDED");
    assert_eq!(
        settled["executions"][0]["result"],
        json!({"ok": {"B": true}})
    );
    assert_eq!(late_status, 504);
    assert_eq!(pending["code"], "EXECUTIONS_PENDING");
    assert_eq!(pending["executions"][0]["status"], "IN_PROGRESS");
    assert_eq!(
        *done.batch_reads.lock().unwrap(),
        1,
        "one batch read settles it"
    );
    assert!(
        *open.batch_reads.lock().unwrap() >= 2,
        "a batch read every round"
    );
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
}

#[tokio::test]
async fn deprecated_missing_and_hostile_requests_start_nothing() {
    let deprecated = Fake {
        deprecated: true,
        ..Fake::default()
    };
    let fake = Fake::default();

    let (d, dep, _) = call(
        &deprecated,
        "POST",
        "/commands/old/executions",
        Some(json!({"targets": ["a"]})),
        &[],
    )
    .await;
    let (m, missing, _) = call(
        &fake,
        "POST",
        "/commands/missing/executions",
        Some(json!({"targets": ["a"]})),
        &[],
    )
    .await;
    let (h, hostile, _) = call(
        &fake,
        "POST",
        "/commands/unlock/executions",
        Some(json!({"targets": ["a/#"]})),
        &[],
    )
    .await;
    let (e, empty_targets, _) = call(
        &fake,
        "POST",
        "/commands/unlock/executions",
        Some(json!({"targets": []})),
        &[],
    )
    .await;
    let (i, bad_id, _) = call(
        &fake,
        "POST",
        "/commands/bad$id/executions",
        Some(json!({"targets": ["a"]})),
        &[],
    )
    .await;

    assert_eq!((d, dep["code"].as_str()), (409, Some("COMMAND_DEPRECATED")));
    assert_eq!(
        (m, missing["code"].as_str()),
        (404, Some("COMMAND_NOT_FOUND"))
    );
    assert_eq!(
        (h, hostile["code"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    assert_eq!(
        (e, empty_targets["code"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    assert_eq!(
        (i, bad_id["code"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    assert!(deprecated.starts.lock().unwrap().is_empty() && fake.starts.lock().unwrap().is_empty());
}

#[tokio::test]
async fn delete_answers_as_aws_does_and_lists_check_their_query() {
    let scheduled = Fake {
        deleted_status: 202,
        ..Fake::default()
    };
    let gone = Fake {
        deleted_status: 204,
        ..Fake::default()
    };

    assert_eq!(
        call(&scheduled, "DELETE", "/commands/c", None, &[]).await.0,
        202
    );
    assert_eq!(call(&gone, "DELETE", "/commands/c", None, &[]).await.0, 204);
    assert_eq!(
        call(&gone, "GET", "/commands?limit=101", None, &[]).await.0,
        400
    );
    assert_eq!(
        call(&gone, "GET", "/commands?limit=2", None, &[]).await.0,
        200
    );
    assert_eq!(
        call(&gone, "PATCH", "/commands/c", Some(json!({})), &[])
            .await
            .0,
        400
    );
    assert_eq!(call(&gone, "PUT", "/commands/c", None, &[]).await.0, 405);
}
