//! HTTP API plumbing shared by the HTTP functions: routing by method and path, JSON bodies with
//! their size and content-type checks, and the one place where an [`ApiError`] becomes an RFC
//! 9457 problem+json response.

use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tether_domain::error::Upstream;
use tether_domain::ids::{is_idempotency_key, IDEMPOTENCY_KEY_RULE};
use tether_domain::ApiError;

pub type HttpResponse = Response<Body>;

/// The problem+json response for an error. Internal errors say nothing of their cause; log it
/// where it happens, with [`internal`].
pub fn problem(err: &ApiError) -> HttpResponse {
    let body = serde_json::to_string(&err.to_problem())
        .unwrap_or_else(|_| r#"{"code":"INTERNAL"}"#.to_owned());
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() =
        StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(seconds) = err.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Logs an unexpected error with its whole chain of causes and turns it into an opaque 500.
pub fn internal(err: &(dyn std::error::Error + 'static)) -> ApiError {
    tracing::error!(error = %error_chain(err), "internal error");
    ApiError::Internal
}

/// What the API answers for a dependency's failure ([`Upstream`]): an unexpected one is
/// logged with its causes ([`internal`]) and answered as an opaque 500; a throttled or
/// unavailable dependency is logged at `warn` and answered as it maps (429 / 503).
pub fn upstream<E: Upstream>(err: E) -> ApiError {
    match err.to_api() {
        ApiError::Internal => internal(&err),
        other => {
            tracing::warn!(error = %error_chain(&err), code = other.code(), "a dependency is throttled or unavailable");
            other
        }
    }
}

/// An error and its causes as one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        chain.push_str(": ");
        chain.push_str(&next.to_string());
        cause = next.source();
    }
    chain
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    match serde_json::to_string(value) {
        Ok(body) => {
            let mut response = Response::new(Body::Text(body));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(err) => problem(&internal(&err)),
    }
}

/// A response without a body.
pub fn empty(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}

/// Turns a handler's result into the response: errors become problem+json.
pub fn respond(result: Result<HttpResponse, ApiError>) -> HttpResponse {
    result.unwrap_or_else(|err| problem(&err))
}

fn body_bytes(request: &Request) -> &[u8] {
    match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// Parses a JSON body of at most `max_bytes`: 415 for a non-JSON content type, 413 when too
/// large, 400 when missing or malformed (with serde's description, which names the field).
pub fn json_body<T: DeserializeOwned>(request: &Request, max_bytes: usize) -> Result<T, ApiError> {
    if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
        let essence = content_type
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let is_json = essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let bytes = body_bytes(request);
    if bytes.len() > max_bytes {
        return Err(ApiError::PayloadTooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Validation("a JSON body is required".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::Validation(format!("invalid body: {e}")))
}

/// Matches a path against a pattern like `/devices/{deviceId}/invoke`, returning the captured
/// segments in order. Segments are not percent-decoded: no id may contain `%`, so an encoded
/// `/` stays a character that id validation refuses.
pub fn match_path<'a>(pattern: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let path: Vec<&str> = path
        .trim_end_matches('/')
        .trim_start_matches('/')
        .split('/')
        .collect();
    if pattern.len() != path.len() {
        return None;
    }
    let mut captured = Vec::new();
    for (p, s) in pattern.iter().zip(&path) {
        if p.starts_with('{') && p.ends_with('}') {
            if s.is_empty() {
                return None;
            }
            captured.push(*s);
        } else if p != s {
            return None;
        }
    }
    Some(captured)
}

/// A function that serves the HTTP API, by its binary name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Invoke,
    Commands,
    Status,
    Jobs,
}

impl Function {
    /// The binary (and `cargo lambda watch` function) name.
    pub fn binary(self) -> &'static str {
        match self {
            Function::Invoke => "invoke",
            Function::Commands => "commands",
            Function::Status => "status",
            Function::Jobs => "jobs",
        }
    }
}

/// Every route of the HTTP API, declared once: its method, its path pattern and the function
/// that serves it. Handlers match on the variants; the contract test checks `openapi.yaml`,
/// `template.yaml` and the watch router in `Cargo.toml` against [`Route::ALL`], so a route
/// added here and nowhere else fails it. Requests no route takes reach `status`, which answers
/// 405 (with `Allow`) or 404 from this table ([`unrouted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Invoke,
    GetInvocation,
    GetDevice,
    ListDeviceExecutions,
    ListCommands,
    CreateCommand,
    GetCommand,
    UpdateCommand,
    DeleteCommand,
    ListCommandExecutions,
    StartExecutions,
    GetExecution,
    CreateJob,
    ListJobs,
    GetJob,
    DeleteJob,
    CancelJob,
    ListJobExecutions,
    ListDeviceJobs,
}

impl Route {
    pub const ALL: [Route; 19] = [
        Route::Invoke,
        Route::GetInvocation,
        Route::GetDevice,
        Route::ListDeviceExecutions,
        Route::ListCommands,
        Route::CreateCommand,
        Route::GetCommand,
        Route::UpdateCommand,
        Route::DeleteCommand,
        Route::ListCommandExecutions,
        Route::StartExecutions,
        Route::GetExecution,
        Route::CreateJob,
        Route::ListJobs,
        Route::GetJob,
        Route::DeleteJob,
        Route::CancelJob,
        Route::ListJobExecutions,
        Route::ListDeviceJobs,
    ];

    /// Method, path pattern and serving function.
    fn spec(self) -> (Method, &'static str, Function) {
        use Function::{Commands, Invoke, Jobs, Status};
        match self {
            Route::Invoke => (Method::POST, "/devices/{deviceId}/invoke", Invoke),
            Route::GetInvocation => (Method::GET, "/invocations/{requestId}", Status),
            Route::GetDevice => (Method::GET, "/devices/{deviceId}", Status),
            Route::ListDeviceExecutions => (Method::GET, "/devices/{deviceId}/executions", Status),
            Route::ListCommands => (Method::GET, "/commands", Commands),
            Route::CreateCommand => (Method::POST, "/commands", Commands),
            Route::GetCommand => (Method::GET, "/commands/{commandId}", Commands),
            Route::UpdateCommand => (Method::PATCH, "/commands/{commandId}", Commands),
            Route::DeleteCommand => (Method::DELETE, "/commands/{commandId}", Commands),
            Route::ListCommandExecutions => {
                (Method::GET, "/commands/{commandId}/executions", Status)
            }
            Route::StartExecutions => (Method::POST, "/commands/{commandId}/executions", Commands),
            Route::GetExecution => (Method::GET, "/executions/{executionId}", Status),
            Route::CreateJob => (Method::POST, "/jobs", Jobs),
            Route::ListJobs => (Method::GET, "/jobs", Jobs),
            Route::GetJob => (Method::GET, "/jobs/{jobId}", Jobs),
            Route::DeleteJob => (Method::DELETE, "/jobs/{jobId}", Jobs),
            Route::CancelJob => (Method::POST, "/jobs/{jobId}/cancel", Jobs),
            Route::ListJobExecutions => (Method::GET, "/jobs/{jobId}/executions", Jobs),
            Route::ListDeviceJobs => (Method::GET, "/devices/{deviceId}/jobs", Jobs),
        }
    }

    pub fn method(self) -> Method {
        self.spec().0
    }

    /// The path pattern, e.g. `/devices/{deviceId}/invoke`.
    pub fn pattern(self) -> &'static str {
        self.spec().1
    }

    pub fn function(self) -> Function {
        self.spec().2
    }
}

/// The answer to a request that no route of the API takes: 405 with an `Allow` header when
/// the path exists with other methods, else 404 (both problem+json).
pub fn unrouted(method: &Method, path: &str) -> HttpResponse {
    let err = match find(Route::ALL, method, path) {
        // The route exists, but was sent to a function that does not serve it.
        Ok(_) => ApiError::RouteNotFound(format!("{method} {path}")),
        Err(err) => err,
    };
    let mut response = problem(&err);
    if matches!(err, ApiError::MethodNotAllowed(_)) {
        let allowed: Vec<Method> = Route::ALL
            .iter()
            .filter(|r| match_path(r.pattern(), path).is_some())
            .map(|r| r.method())
            .collect();
        let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
            response.headers_mut().insert(header::ALLOW, value);
        }
    }
    response
}

/// Finds `function`'s route for a request: `Ok((route, captures))`, or 405 when the path is
/// one of its routes' with another method, or 404.
pub fn route<'a>(
    function: Function,
    method: &Method,
    path: &'a str,
) -> Result<(Route, Vec<&'a str>), ApiError> {
    find(
        Route::ALL.into_iter().filter(|r| r.function() == function),
        method,
        path,
    )
}

fn find<'a>(
    routes: impl IntoIterator<Item = Route>,
    method: &Method,
    path: &'a str,
) -> Result<(Route, Vec<&'a str>), ApiError> {
    let mut path_known = false;
    for route in routes {
        if let Some(captures) = match_path(route.pattern(), path) {
            if route.method() == method {
                return Ok((route, captures));
            }
            path_known = true;
        }
    }
    if path_known {
        Err(ApiError::MethodNotAllowed(method.to_string()))
    } else {
        Err(ApiError::RouteNotFound(format!("{method} {path}")))
    }
}

/// The query string's pairs (every value of a repeated key).
pub fn query_pairs(request: &Request) -> Vec<(String, String)> {
    let params = request.query_string_parameters();
    let mut pairs = Vec::new();
    for (key, _) in params.iter() {
        for value in params.all(key).unwrap_or_default() {
            pairs.push((key.to_owned(), value.to_owned()));
        }
    }
    pairs
}

/// The `Idempotency-Key` header, if sent: 1-128 printable ASCII characters, or a 400.
pub fn idempotency_key(request: &Request) -> Result<Option<&str>, ApiError> {
    match request.headers().get("idempotency-key") {
        None => Ok(None),
        Some(_) => match header_text(request, "idempotency-key") {
            Some(key) if is_idempotency_key(key) => Ok(Some(key)),
            _ => Err(ApiError::Validation(IDEMPOTENCY_KEY_RULE.into())),
        },
    }
}

/// Who called, as API Gateway's IAM authorizer saw it (the caller's ARN); empty where the API
/// has no authorizer (the local stack). Ids and client tokens derived from an
/// `Idempotency-Key` include it, so two callers who pick the same key never share a request.
pub fn caller(request: &Request) -> String {
    match request.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) => context
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Hex SHA-256 of the parts, each prefixed by its length so that no two lists collide: request
/// fingerprints, and ids and client tokens derived from an `Idempotency-Key`.
pub fn digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Copies a hand-built request's URI query into its query parameters, as API Gateway's event
/// carries them (`lambda_http` fills them only from the event): for handler tests.
pub fn with_uri_query(request: Request) -> Request {
    let mut query: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::new();
    for pair in request.uri().query().unwrap_or("").split('&') {
        if !pair.is_empty() {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            query.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    request.with_query_string_parameters(query)
}

/// A header as text, if present and valid.
pub fn header_text<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_is_the_iam_principal_or_nobody() {
        use lambda_http::aws_lambda_events::event::apigw::{
            ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription,
            ApiGatewayV2httpRequestContext,
        };
        let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
        iam.user_arn = Some("arn:aws:iam::123456789012:user/alice".into());
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.iam = Some(iam);
        let mut context = ApiGatewayV2httpRequestContext::default();
        context.authorizer = Some(authorizer);
        let signed = Request::new(Body::Empty)
            .with_request_context(lambda_http::request::RequestContext::ApiGatewayV2(context));

        assert_eq!(caller(&signed), "arn:aws:iam::123456789012:user/alice");
        assert_eq!(caller(&Request::new(Body::Empty)), "");
        assert_ne!(
            digest(&["idempotency", &caller(&signed), "dev-1", "k"]),
            digest(&["idempotency", "", "dev-1", "k"]),
            "the same key from two callers is two requests"
        );
    }

    #[test]
    fn paths_match_patterns_and_capture_ids() {
        assert_eq!(
            match_path("/devices/{deviceId}/invoke", "/devices/dev-1/invoke"),
            Some(vec!["dev-1"])
        );
        assert_eq!(
            match_path("/devices/{deviceId}/invoke", "/devices/dev-1/invoke/"),
            Some(vec!["dev-1"])
        );
        assert_eq!(
            match_path("/devices/{deviceId}/invoke", "/devices//invoke"),
            None
        );
        assert_eq!(
            match_path("/devices/{deviceId}/invoke", "/devices/a/b/invoke"),
            None
        );
        assert_eq!(
            match_path("/devices/{deviceId}", "/devices/a%2Fb"),
            Some(vec!["a%2Fb"])
        );
    }

    #[test]
    fn routing_tells_405_from_404() {
        assert_eq!(
            route(Function::Status, &Method::GET, "/devices/d").unwrap(),
            (Route::GetDevice, vec!["d"])
        );
        assert_eq!(
            route(Function::Status, &Method::POST, "/devices/d")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(
            route(Function::Status, &Method::GET, "/nothing")
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            route(Function::Commands, &Method::GET, "/commands/c-1/executions")
                .unwrap_err()
                .status(),
            405,
            "a function takes only its own routes"
        );
    }

    #[test]
    fn every_route_has_one_method_and_pattern_and_each_function_has_routes() {
        let mut seen = std::collections::BTreeSet::new();
        for route in Route::ALL {
            assert!(
                seen.insert((route.method().to_string(), route.pattern())),
                "{route:?} twice"
            );
            assert_eq!(
                find(Route::ALL, &route.method(), route.pattern()).map(|(r, _)| r),
                Ok(route),
                "{route:?} is found by its own method and pattern"
            );
        }
        for function in [Function::Invoke, Function::Commands, Function::Status] {
            assert!(Route::ALL.iter().any(|r| r.function() == function));
        }
    }

    #[test]
    fn requests_no_route_takes_are_a_405_with_allow_or_a_404() {
        let wrong_method = unrouted(&Method::PUT, "/commands/c-1");
        let unknown = unrouted(&Method::GET, "/nowhere/x");
        let misrouted = unrouted(&Method::GET, "/commands");

        assert_eq!(wrong_method.status(), 405);
        assert_eq!(wrong_method.headers()[header::ALLOW], "GET, PATCH, DELETE");
        assert_eq!(unknown.status(), 404);
        assert!(unknown.headers().get(header::ALLOW).is_none());
        assert_eq!(
            unknown.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(misrouted.status(), 404);
    }

    #[test]
    fn problems_are_problem_json_with_retry_after_when_retryable() {
        let response = problem(&ApiError::UpstreamUnavailable { retry_after_s: 2 });
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    fn request(content_type: Option<&str>, body: &str) -> Request {
        let mut builder = lambda_http::http::Request::builder()
            .method("POST")
            .uri("/x");
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        builder.body(Body::Text(body.to_owned())).unwrap()
    }

    #[test]
    fn json_bodies_are_checked_before_parsing() {
        let long = "1".repeat(17);
        let parse = |ct, body: &str| json_body::<serde_json::Value>(&request(ct, body), 16);
        assert_eq!(parse(Some("text/plain"), "{}").unwrap_err().status(), 415);
        assert_eq!(
            parse(Some("application/json"), &long).unwrap_err().status(),
            413
        );
        assert_eq!(
            parse(Some("application/json"), "").unwrap_err().status(),
            400
        );
        assert_eq!(parse(None, "{nope").unwrap_err().status(), 400);
        assert!(parse(Some("application/json; charset=utf-8"), "{}").is_ok());
        assert!(parse(Some("application/merge-patch+json"), "{}").is_ok());
    }
}
