//! Paging and ordering of the List operations: `maxResults`, `nextToken`, `sortOrder`.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::aws::AwsError;

/// Pages a sorted list by the id of the last item returned.
pub(crate) fn paginate<T>(
    items: Vec<T>,
    id: impl Fn(&T) -> &str,
    max: usize,
    token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let start = match token {
        Some(token) => {
            let last = BASE64
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AwsError::validation("invalid nextToken"))?;
            items
                .iter()
                .position(|i| id(i) == last)
                .map(|p| p + 1)
                .ok_or_else(|| AwsError::validation("invalid nextToken"))?
        }
        None => 0,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = (start + page.len() < total)
        .then(|| page.last().map(|i| BASE64.encode(id(i))))
        .flatten();
    Ok((page, next))
}

pub(crate) fn max_results(query: &HashMap<String, String>) -> Result<usize, AwsError> {
    match query.get("maxResults") {
        None => Ok(100),
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|m| (1..=100).contains(m))
            .ok_or_else(|| AwsError::validation("maxResults must be between 1 and 100")),
    }
}

pub(crate) fn descending(sort: Option<&str>) -> Result<bool, AwsError> {
    match sort {
        None | Some("ASCENDING") => Ok(false),
        Some("DESCENDING") => Ok(true),
        Some(other) => Err(AwsError::validation(format!(
            "sortOrder {other} is not ASCENDING or DESCENDING"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_last_id() {
        let items: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
        let (first, next) = paginate(items.clone(), |s| s.as_str(), 2, None).unwrap();
        assert_eq!(first, ["c0", "c1"]);
        let (second, next) = paginate(items.clone(), |s| s.as_str(), 2, next.as_deref()).unwrap();
        assert_eq!(second, ["c2", "c3"]);
        let (third, next) = paginate(items.clone(), |s| s.as_str(), 2, next.as_deref()).unwrap();
        assert_eq!(third, ["c4"]);
        assert_eq!(next, None);
        assert!(paginate(items, |s| s.as_str(), 2, Some("garbage!")).is_err());
    }
}
