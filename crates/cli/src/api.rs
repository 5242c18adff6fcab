//! The HTTP client: JSON in and out, SigV4 where the target says so, errors as [`CliError`].

use std::time::{Duration, SystemTime};

use anyhow::Context;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use reqwest::Method;
use serde_json::Value;

use crate::exit::CliError;
use crate::target::{Aws, Signing, Target};

/// The service name API Gateway's IAM authorization signs with.
pub const SERVICE: &str = "execute-api";

/// The AWS configuration of the user's profile and region.
pub async fn aws_config(aws: &Aws) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(profile) = &aws.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &aws.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    loader.load().await
}

/// Signs requests with SigV4 for `execute-api`.
pub struct Signer {
    region: String,
    credentials: SharedCredentialsProvider,
}

impl Signer {
    /// The signer a target asks for: its fixed credentials, or the standard chain.
    pub async fn new(signing: &Signing, aws: &Aws) -> Result<Self, CliError> {
        if let Some((id, secret)) = &signing.credentials {
            let region = signing.region.clone().unwrap_or_else(|| "us-east-1".into());
            let credentials = Credentials::new(id, secret, None, None, "stack.env");
            return Ok(Self {
                region,
                credentials: SharedCredentialsProvider::new(credentials),
            });
        }
        let config = aws_config(aws).await;
        let region = signing
            .region
            .clone()
            .or_else(|| config.region().map(|r| r.to_string()))
            .ok_or_else(|| {
                CliError::bad_input("no AWS region to sign with: give --region or set AWS_REGION")
            })?;
        let credentials = config.credentials_provider().ok_or_else(|| {
            CliError::bad_input("no AWS credentials to sign with (see `aws configure`)")
        })?;
        Ok(Self {
            region,
            credentials,
        })
    }

    /// A signer with fixed credentials.
    pub fn with_credentials(region: &str, credentials: Credentials) -> Self {
        Self {
            region: region.to_owned(),
            credentials: SharedCredentialsProvider::new(credentials),
        }
    }

    /// The headers that sign `method url` with these `headers` and `body` at `time`
    /// (`authorization`, `x-amz-date`, and `x-amz-security-token` for temporary credentials).
    pub async fn headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, CliError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| CliError::Other(anyhow::anyhow!("AWS credentials: {e}")))?;
        let identity: Identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .context("SigV4 parameters")?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .context("the request to sign")?;
        let (instructions, _signature) = sign(request, &params)
            .context("signing the request")?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect())
    }
}

/// The API client.
pub struct Client {
    base: String,
    http: reqwest::Client,
    signer: Option<Signer>,
}

/// A successful answer: its status and JSON body (`null` when it has none).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Client {
    pub async fn new(target: &Target, aws: &Aws) -> Result<Self, CliError> {
        let signer = match &target.signing {
            Some(signing) => Some(Signer::new(signing, aws).await?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("tether-cli/", env!("CARGO_PKG_VERSION")))
            // Above the longest wait the API has (25 s) and the gateway's 30 s.
            .timeout(Duration::from_secs(60))
            .build()
            .context("the HTTP client")?;
        Ok(Self {
            base: target.base.clone(),
            http,
            signer,
        })
    }

    /// `GET path`: [`Client::call`] without a body or key.
    pub async fn get(&self, path: &str) -> Result<Answer, CliError> {
        self.call(Method::GET, path, None, None).await
    }

    /// Sends `method path` with an optional JSON body and `Idempotency-Key`; a 2xx answer is
    /// returned, anything else is the error it stands for.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<Answer, CliError> {
        let url = format!("{}{path}", self.base);
        let bytes = match body {
            Some(body) => serde_json::to_vec(body).context("encoding the body")?,
            None => Vec::new(),
        };
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        if let Some(key) = key {
            headers.push(("idempotency-key", key));
        }
        let mut request = self.http.request(method.clone(), &url);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        if let Some(signer) = &self.signer {
            let signed = signer
                .headers(method.as_str(), &url, &headers, &bytes, SystemTime::now())
                .await?;
            for (name, value) in signed {
                request = request.header(name, value);
            }
        }
        if body.is_some() {
            request = request.body(bytes);
        }
        let response = request.send().await.map_err(|e| {
            CliError::Unreachable(format!("cannot reach {url}: {}", root_cause(&e)))
        })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| CliError::Unreachable(format!("{url}: the answer broke off: {e}")))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(value) => value,
                Err(_) if !(200..300).contains(&status) => {
                    serde_json::json!({ "message": text.trim() })
                }
                Err(e) => {
                    return Err(CliError::Other(anyhow::anyhow!(
                        "{method} {path} answered {status} with a body that is not JSON: {e}"
                    )))
                }
            }
        };
        if (200..300).contains(&status) {
            Ok(Answer { status, body })
        } else {
            Err(CliError::from_answer(status, &body))
        }
    }

    /// GET every page of a list (`nextToken`), items in order.
    pub async fn all_pages(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Vec<Value>, CliError> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut pairs = query.to_vec();
            if let Some(token) = &token {
                pairs.push(("nextToken".into(), token.clone()));
            }
            let page = self.get(&with_query(path, &pairs)).await?;
            if let Some(page_items) = page.body.get("items").and_then(Value::as_array) {
                items.extend(page_items.iter().cloned());
            }
            token = page
                .body
                .get("nextToken")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if token.is_none() {
                return Ok(items);
            }
        }
    }
}

/// `path?k=v&…` with the values percent-encoded.
pub fn with_query(path: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return path.to_owned();
    }
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!("{path}?{}", query.join("&"))
}

pub use tether_domain::percent::encode;

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published SigV4 test suite, case `get-vanilla`: `GET /` to
    /// `example.amazonaws.com`, service `service`, us-east-1, 2015-08-30T12:36:00Z.
    #[tokio::test]
    async fn the_signature_matches_aws_published_test_vector() {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let identity: Identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("service")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let request = SignableRequest::new(
            "GET",
            "https://example.amazonaws.com/",
            [("host", "example.amazonaws.com")].into_iter(),
            SignableBody::Bytes(&[]),
        )
        .unwrap();
        let (_, signature) = sign(request, &params).unwrap().into_parts();
        assert_eq!(
            signature,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[tokio::test]
    async fn signed_headers_name_the_scope_and_the_service() {
        let signer = Signer::with_credentials(
            "eu-west-1",
            Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"),
        );
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let headers = signer
            .headers("GET", "https://api.example/devices/d1", &[], b"", time)
            .await
            .unwrap();
        let authorization = &headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/execute-api/aws4_request"
            ),
            "{authorization}"
        );
        assert!(headers
            .iter()
            .any(|(n, v)| n == "x-amz-date" && v == "20150830T123600Z"));
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            with_query(
                "/x",
                &[
                    ("status".into(), "IN PROGRESS".into()),
                    ("a".into(), "b/c".into())
                ]
            ),
            "/x?status=IN%20PROGRESS&a=b%2Fc"
        );
        assert_eq!(with_query("/x", &[]), "/x");
    }
}
