//! SigV4 checking for the local gateway (`make run AUTH=sigv4`): what API Gateway's `AWS_IAM`
//! authorization does before a request reaches a function, so that signed clients (the
//! `tether` CLI) are exercised end to end without an account.
//!
//! Written from the SigV4 specification, independently of the signer the CLI uses (the AWS
//! SDK's `aws-sigv4`): each checks the other, and both are held to AWS's published test
//! vectors. Refusals are API Gateway's own: 403 with `{"message": …}` and `x-amzn-ErrorType`.
//! Not covered: presigned URLs (query-string signatures), session tokens' validity (a token
//! is only part of what is signed), SigV4a.

use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's `x-amz-date` may be from now (AWS: 15 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The one identity the local API accepts.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    pub service: String,
}

/// Why a request is refused, in API Gateway's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header (API Gateway: `MissingAuthenticationTokenException`).
    Missing,
    /// An access key the API does not know.
    UnknownKey,
    /// The signature does not match, or the header cannot be read.
    Mismatch,
    /// Signed for another region or service.
    Scope(String),
    /// `x-amz-date` too far from now.
    Expired(String),
}

impl Refusal {
    /// `x-amzn-ErrorType` and the `message` of the 403.
    pub fn error(&self) -> (&'static str, String) {
        match self {
            Refusal::Missing => (
                "MissingAuthenticationTokenException",
                "Missing Authentication Token".into(),
            ),
            Refusal::UnknownKey => (
                "UnrecognizedClientException",
                "The security token included in the request is invalid.".into(),
            ),
            Refusal::Mismatch => (
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. \
                 Check your AWS Secret Access Key and signing method. Consult the service \
                 documentation for details."
                    .into(),
            ),
            Refusal::Scope(message) | Refusal::Expired(message) => {
                ("InvalidSignatureException", message.clone())
            }
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization<'a> {
    key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => return None,
        }
    }
    let mut scope = credential?.split('/');
    let auth = Authorization {
        key: scope.next()?,
        date: scope.next()?,
        region: scope.next()?,
        service: scope.next()?,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    };
    (scope.next()? == "aws4_request" && scope.next().is_none()).then_some(auth)
}

impl Verifier {
    /// The local stack's identity: its credentials, us-east-1, `execute-api`.
    pub fn local(access_key_id: &str, secret_access_key: &str, region: &str) -> Self {
        Self {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            region: region.to_owned(),
            service: "execute-api".to_owned(),
        }
    }

    /// Checks a request as it arrived: `target` is its path and query as sent.
    pub fn verify(
        &self,
        method: &str,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let value = headers
            .get("authorization")
            .ok_or(Refusal::Missing)?
            .to_str()
            .map_err(|_| Refusal::Mismatch)?;
        let auth = parse_authorization(value).ok_or(Refusal::Mismatch)?;
        if auth.key != self.access_key_id {
            return Err(Refusal::UnknownKey);
        }
        if auth.region != self.region {
            return Err(Refusal::Scope(
                "Credential should be scoped to a valid region.".into(),
            ));
        }
        if auth.service != self.service {
            return Err(Refusal::Scope(format!(
                "Credential should be scoped to correct service: '{}'.",
                self.service
            )));
        }
        let amz_date = header(headers, "x-amz-date").ok_or(Refusal::Mismatch)?;
        let at = parse_amz_date(&amz_date).ok_or(Refusal::Mismatch)?;
        if !amz_date.starts_with(auth.date)
            || !auth.signed_headers.contains(&"host")
            || !auth.signed_headers.contains(&"x-amz-date")
        {
            return Err(Refusal::Mismatch);
        }
        let skew = now
            .duration_since(at)
            .or_else(|e| Ok::<_, ()>(e.duration()));
        if skew.map_or(true, |skew| skew > MAX_SKEW) {
            return Err(Refusal::Expired(format!(
                "Signature expired: {amz_date} is now earlier or later than 15 min. from {}",
                format_amz_date(now)
            )));
        }
        let canonical = canonical_request(method, target, headers, &auth.signed_headers, body)
            .ok_or(Refusal::Mismatch)?;
        let expected = self.signature(&amz_date, auth.date, &canonical);
        if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::Mismatch)
        }
    }

    /// The signature of a canonical request made at `amz_date` (scope date `date`).
    pub fn signature(&self, amz_date: &str, date: &str, canonical: &str) -> String {
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{}", self.secret_access_key).as_bytes(), date);
        for part in [self.region.as_str(), self.service.as_str(), "aws4_request"] {
            key = hmac(&key, part);
        }
        hex::encode(hmac(&key, &to_sign))
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC takes a key of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The canonical request of SigV4: method, URI (encoded once more, as every service but S3
/// expects), sorted query, the signed headers, their names, the payload's hash.
pub fn canonical_request(
    method: &str,
    target: &str,
    headers: &HeaderMap,
    signed_headers: &[&str],
    body: &[u8],
) -> Option<String> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut lines = format!(
        "{method}\n{}\n{}\n",
        encode(path, false),
        canonical_query(query)
    );
    for name in signed_headers {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| {
                v.to_str()
                    .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            })
            .collect::<Result<_, _>>()
            .ok()?;
        if values.is_empty() {
            return None;
        }
        lines.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    // The body's own hash, always: a stated `x-amz-content-sha256` must agree with it.
    let payload = hex::encode(Sha256::digest(body));
    if header(headers, "x-amz-content-sha256").is_some_and(|stated| stated != payload) {
        return None;
    }
    lines.push_str(&format!("\n{}\n{payload}", signed_headers.join(";")));
    Some(lines)
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
            (
                encode_bytes(&decode(k), true),
                encode_bytes(&decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes all but the unreserved characters (and `/` unless `slash` is encoded too).
fn encode(text: &str, slash: bool) -> String {
    let encoded = encode_bytes(text.as_bytes(), slash);
    if encoded.is_empty() {
        "/".into()
    } else {
        encoded
    }
}

fn encode_bytes(bytes: &[u8], slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (b == b'/' && !slash) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `20150830T123600Z` as a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let seconds = days_from_civil(y, m, d) * 86_400 + hh * 3_600 + mm * 60 + ss;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

fn format_amz_date(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use axum::http::HeaderValue;

    use super::*;

    fn vector_verifier() -> Verifier {
        Verifier {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
            service: "service".into(),
        }
    }

    fn vector_time() -> SystemTime {
        parse_amz_date("20150830T123600Z").unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    /// AWS's SigV4 test suite, `get-vanilla` and `post-x-www-form-urlencoded`: the published
    /// requests verify at their time, and not a byte of them can change.
    #[test]
    fn aws_published_test_vectors_verify() {
        let v = vector_verifier();
        let get = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ]);
        assert_eq!(v.verify("GET", "/", &get, b"", vector_time()), Ok(()));
        assert_eq!(
            v.verify("POST", "/", &get, b"", vector_time()),
            Err(Refusal::Mismatch)
        );
        let post = headers(&[
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "example.amazonaws.com"),
            ("content-length", "13"),
            ("x-amz-date", "20150830T123600Z"),
            ("x-amz-content-sha256", "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"),
        ]);
        assert_eq!(
            v.verify("POST", "/", &post, b"Param1=value1", vector_time()),
            Ok(())
        );
        assert_eq!(
            v.verify("POST", "/", &post, b"Param1=value2", vector_time()),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let v = vector_verifier();
        let at = vector_time();
        assert_eq!(
            v.verify("GET", "/", &HeaderMap::new(), b"", at),
            Err(Refusal::Missing)
        );
        let signed = |credential: &str| {
            headers(&[
                ("host", "example.amazonaws.com"),
                ("x-amz-date", "20150830T123600Z"),
                ("authorization", &format!("AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host;x-amz-date, Signature=00")),
            ])
        };
        assert_eq!(
            v.verify(
                "GET",
                "/",
                &signed("AKIDOTHER/20150830/us-east-1/service/aws4_request"),
                b"",
                at
            ),
            Err(Refusal::UnknownKey)
        );
        assert!(matches!(
            v.verify(
                "GET",
                "/",
                &signed("AKIDEXAMPLE/20150830/eu-west-1/service/aws4_request"),
                b"",
                at
            ),
            Err(Refusal::Scope(_))
        ));
        assert!(matches!(
            v.verify(
                "GET",
                "/",
                &signed("AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"),
                b"",
                at + Duration::from_secs(16 * 60)
            ),
            Err(Refusal::Expired(_))
        ));
        assert_eq!(
            v.verify(
                "GET",
                "/",
                &signed("AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"),
                b"",
                at
            ),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn dates_convert_both_ways() {
        for text in ["20150830T123600Z", "20261205T000000Z", "20000229T235959Z"] {
            assert_eq!(format_amz_date(parse_amz_date(text).unwrap()), text);
        }
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
    }

    #[test]
    fn queries_are_sorted_and_encoded_once() {
        assert_eq!(canonical_query("b=2&a=x%20y&a=1"), "a=1&a=x%20y&b=2");
        assert_eq!(canonical_query(""), "");
        assert_eq!(encode("/devices/dev%3A1", false), "/devices/dev%253A1");
    }
}
