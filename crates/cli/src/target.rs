//! Where the API is, and whether requests to it are signed.
//!
//! In order: `--api URL`, then `TETHER_API`, then `--stack NAME` (the CloudFormation stack's
//! `ApiUrl` output, read with the AWS SDK), then the local stack that is running
//! (`.local/stack.env`, looked for in this directory and its parents). A deployed API is
//! IAM-authorized: requests to it are signed with SigV4 (`execute-api`) from the standard AWS
//! credential chain. The local stack is unsigned unless it was started with SigV4 checking
//! (`make run AUTH=sigv4`), which its `stack.env` says with `TETHER_SIGN=1`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exit::CliError;

/// Where the local stack writes what it runs on, below the repository root.
pub const STACK_ENV: &str = ".local/stack.env";

/// How to reach the AWS side: the profile and region the user chose.
#[derive(Debug, Clone, Default)]
pub struct Aws {
    pub profile: Option<String>,
    pub region: Option<String>,
}

/// The API to call.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `https://…` or `http://127.0.0.1:9000`, without a trailing slash.
    pub base: String,
    pub signing: Option<Signing>,
}

/// How requests are signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Signing {
    /// The region of the signature's scope; `None`: the one the AWS configuration gives.
    pub region: Option<String>,
    /// Fixed credentials (the local stack's); `None`: the standard credential chain.
    pub credentials: Option<(String, String)>,
}

/// Resolves the target from the flags (`api` already holds `TETHER_API` when the flag is absent).
pub async fn resolve(
    api: Option<&str>,
    stack: Option<&str>,
    sign: bool,
    aws: &Aws,
) -> Result<Target, CliError> {
    let chain = || Signing {
        region: aws.region.clone(),
        credentials: None,
    };
    if let Some(api) = api {
        let base = base_url(api)?;
        let signing = (sign || !is_local(&base)).then(chain);
        return Ok(Target { base, signing });
    }
    if let Some(stack) = stack {
        let base = base_url(&stack_api_url(stack, aws).await?)?;
        return Ok(Target {
            base,
            signing: Some(chain()),
        });
    }
    let here = std::env::current_dir().context("the current directory")?;
    let file = find_stack_env(&here).ok_or_else(|| {
        CliError::bad_input(
            "no API: give --api URL, set TETHER_API, give --stack NAME, or start the local stack \
             (make run) and call from inside the repository",
        )
    })?;
    local_target(&file, sign, aws)
}

/// The target the local stack's `stack.env` describes.
pub fn local_target(file: &Path, sign: bool, aws: &Aws) -> Result<Target, CliError> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let vars = parse_env_file(&text);
    let api = vars
        .get("TETHER_API")
        .ok_or_else(|| CliError::bad_input(format!("{} has no TETHER_API", file.display())))?;
    let stack_signs = vars.get("TETHER_SIGN").is_some_and(|v| v == "1");
    let signing = (sign || stack_signs).then(|| Signing {
        region: aws
            .region
            .clone()
            .or_else(|| vars.get("AWS_REGION").cloned()),
        credentials: vars
            .get("AWS_ACCESS_KEY_ID")
            .zip(vars.get("AWS_SECRET_ACCESS_KEY"))
            .map(|(id, secret)| (id.clone(), secret.clone())),
    });
    Ok(Target {
        base: base_url(api)?,
        signing,
    })
}

/// `export KEY=VALUE` lines (and plain `KEY=VALUE`); comments and other lines are skipped.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            Some((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

/// `.local/stack.env` in `dir` or the nearest parent that has one.
pub fn find_stack_env(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join(STACK_ENV))
        .find(|candidate| candidate.is_file())
}

fn base_url(text: &str) -> Result<String, CliError> {
    let base = text.trim().trim_end_matches('/');
    let ok = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
    if !ok {
        return Err(CliError::bad_input(format!(
            "the API URL {text:?} is not an http:// or https:// URL"
        )));
    }
    Ok(base.to_owned())
}

/// A URL on this machine (the local stack), where nothing is signed by default.
fn is_local(base: &str) -> bool {
    let Some(rest) = base.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    matches!(host, "127.0.0.1" | "localhost" | "[::1]") || rest.starts_with("[::1]")
}

/// The `ApiUrl` output of a deployed stack.
async fn stack_api_url(stack: &str, aws: &Aws) -> Result<String, CliError> {
    let config = crate::api::aws_config(aws).await;
    let client = aws_sdk_cloudformation::Client::new(&config);
    let out = client
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            CliError::Other(anyhow::anyhow!(
                "reading stack {stack}: {}",
                aws_sdk_cloudformation::error::DisplayErrorContext(e)
            ))
        })?;
    out.stacks()
        .first()
        .and_then(|s| {
            s.outputs()
                .iter()
                .find(|o| o.output_key() == Some("ApiUrl"))
        })
        .and_then(|o| o.output_value())
        .map(str::to_owned)
        .ok_or_else(|| CliError::bad_input(format!("stack {stack} has no ApiUrl output")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls_are_unsigned_unless_asked() {
        assert!(is_local("http://127.0.0.1:9000"));
        assert!(is_local("http://localhost"));
        assert!(!is_local("https://abc.execute-api.eu-west-1.amazonaws.com"));
        assert!(!is_local("http://example.com"));
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("https://").is_err());
        assert_eq!(
            base_url("https://x.example/ ").unwrap(),
            "https://x.example"
        );
    }

    #[test]
    fn the_local_stack_env_gives_the_api_and_says_when_to_sign() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::create_dir_all(dir.path().join(".local")).unwrap();
        let file = dir.path().join(STACK_ENV);
        std::fs::write(
            &file,
            "# comment\nexport TETHER_API=http://127.0.0.1:9100\nexport AWS_REGION=us-east-1\n\
             export AWS_ACCESS_KEY_ID=local\nexport AWS_SECRET_ACCESS_KEY=local\n",
        )
        .unwrap();
        assert_eq!(find_stack_env(&nested), Some(file.clone()));
        let plain = local_target(&file, false, &Aws::default()).unwrap();
        assert_eq!(plain.base, "http://127.0.0.1:9100");
        assert_eq!(plain.signing, None);
        std::fs::write(
            &file,
            std::fs::read_to_string(&file).unwrap() + "export TETHER_SIGN=1\n",
        )
        .unwrap();
        let signed = local_target(&file, false, &Aws::default()).unwrap();
        assert_eq!(
            signed.signing,
            Some(Signing {
                region: Some("us-east-1".into()),
                credentials: Some(("local".into(), "local".into())),
            })
        );
    }
}
