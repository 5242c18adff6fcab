//! HTTP API plumbing shared by the HTTP functions: routing by method and path, JSON bodies with
//! their size and content-type checks, and the one place where an [`ApiError`] becomes an RFC
//! 9457 problem+json response.

use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
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
    let mut chain = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        chain.push_str(": ");
        chain.push_str(&next.to_string());
        cause = next.source();
    }
    tracing::error!(error = %chain, "internal error");
    ApiError::Internal
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

/// Every route of the HTTP API, as `openapi.yaml` declares them (a contract test keeps the
/// two in step). The function behind the API's default route uses it to tell a method the
/// path does not take (405) from a path the API does not have (404).
pub const API_ROUTES: [(Method, &str); 12] = [
    (Method::POST, "/devices/{deviceId}/invoke"),
    (Method::GET, "/invocations/{requestId}"),
    (Method::GET, "/devices/{deviceId}"),
    (Method::GET, "/devices/{deviceId}/executions"),
    (Method::GET, "/commands"),
    (Method::POST, "/commands"),
    (Method::GET, "/commands/{commandId}"),
    (Method::PATCH, "/commands/{commandId}"),
    (Method::DELETE, "/commands/{commandId}"),
    (Method::GET, "/commands/{commandId}/executions"),
    (Method::POST, "/commands/{commandId}/executions"),
    (Method::GET, "/executions/{executionId}"),
];

/// The answer to a request that no route of the API takes: 405 with an `Allow` header when
/// the path exists with other methods, else 404 (both problem+json).
pub fn unrouted(method: &Method, path: &str) -> HttpResponse {
    let err = match route(&API_ROUTES, method, path) {
        // The route exists, but was sent to a function that does not serve it.
        Ok(_) => ApiError::RouteNotFound(format!("{method} {path}")),
        Err(err) => err,
    };
    let mut response = problem(&err);
    if matches!(err, ApiError::MethodNotAllowed(_)) {
        let allowed: Vec<&str> = API_ROUTES
            .iter()
            .filter(|(_, pattern)| match_path(pattern, path).is_some())
            .map(|(m, _)| m.as_str())
            .collect();
        if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
            response.headers_mut().insert(header::ALLOW, value);
        }
    }
    response
}

/// Finds the route for a request among `(method, pattern)` pairs: `Ok((index, captures))`, or
/// 405 when the path exists with other methods, or 404.
pub fn route<'a>(
    routes: &[(Method, &str)],
    method: &Method,
    path: &'a str,
) -> Result<(usize, Vec<&'a str>), ApiError> {
    let mut path_known = false;
    for (i, (m, pattern)) in routes.iter().enumerate() {
        if let Some(captures) = match_path(pattern, path) {
            if m == method {
                return Ok((i, captures));
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
            Some(key)
                if (1..=128).contains(&key.len())
                    && key.bytes().all(|b| (0x21..=0x7e).contains(&b)) =>
            {
                Ok(Some(key))
            }
            _ => Err(ApiError::Validation(
                "Idempotency-Key must be 1-128 printable ASCII characters".into(),
            )),
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
        let routes = [
            (Method::GET, "/invocations/{id}"),
            (Method::GET, "/devices/{id}"),
        ];
        assert_eq!(
            route(&routes, &Method::GET, "/devices/d").unwrap(),
            (1, vec!["d"])
        );
        assert_eq!(
            route(&routes, &Method::POST, "/devices/d")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(
            route(&routes, &Method::GET, "/nothing")
                .unwrap_err()
                .status(),
            404
        );
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
