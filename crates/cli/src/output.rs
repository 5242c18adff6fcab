//! What `tether` prints: readable text for a terminal, or the API's own JSON (`--output json`)
//! for scripts; nothing on stdout with `--quiet`. Errors always go to stderr, one line each.

use std::io::Write;

use clap::ValueEnum;
use serde_json::Value;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables and summaries for people.
    Text,
    /// The API's JSON, unchanged (lists with `--all` as one `{"items": [...]}`).
    Json,
}

/// Where results go.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub format: Format,
    pub quiet: bool,
}

impl Out {
    /// Prints a result: `text` renders it for people, JSON prints it as the API gave it.
    pub fn show(&self, value: &Value, text: impl FnOnce(&Value) -> String) {
        if self.quiet {
            return;
        }
        let rendered = match self.format {
            Format::Json => serde_json::to_string_pretty(value).unwrap_or_default(),
            Format::Text => text(value),
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", rendered.trim_end());
    }
}

/// A JSON value's text: strings without quotes, absent as `-`.
pub fn field(value: &Value, name: &str) -> String {
    match value.get(name) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `name: value` lines, names aligned; rows whose value is `-` are left out.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    rows.iter()
        .filter(|(_, v)| v != "-")
        .map(|(name, value)| format!("{name:<width$}  {value}\n"))
        .collect()
}

/// A table with a header row, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ");
        text.truncate(text.trim_end().len());
        text + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// A record's timeline as a table (status, time, source, reason).
pub fn timeline(record: &Value) -> String {
    let Some(entries) = record.get("timeline").and_then(Value::as_array) else {
        return String::new();
    };
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                field(e, "at"),
                field(e, "status"),
                field(e, "source"),
                reason(e),
            ]
        })
        .collect();
    let mut text = format!("\n{}", table(&["AT", "STATUS", "SOURCE", "REASON"], &rows));
    if record.get("timelineTruncated") == Some(&Value::Bool(true)) {
        text.push_str(
            "(the history is longer than one answer carries: these are its oldest entries)\n",
        );
    }
    text
}

/// `CODE: description` of a `statusReason`, or `-`.
pub fn reason(value: &Value) -> String {
    let Some(reason) = value.get("statusReason") else {
        return "-".into();
    };
    match (
        reason.get("reasonCode").and_then(Value::as_str),
        reason.get("reasonDescription").and_then(Value::as_str),
    ) {
        (Some(code), Some(text)) => format!("{code}: {text}"),
        (Some(code), None) => code.to_owned(),
        _ => reason.to_string(),
    }
}

/// Pretty JSON under a heading, for results and payloads.
pub fn block(heading: &str, value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(value) => format!(
            "\n{heading}:\n{}\n",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_pad_columns_and_trim_lines() {
        let text = table(
            &["ID", "STATUS"],
            &[
                vec!["a-long-id".into(), "OK".into()],
                vec!["b".into(), "-".into()],
            ],
        );
        assert_eq!(text, "ID         STATUS\na-long-id  OK\nb          -\n");
    }

    #[test]
    fn pairs_leave_out_what_is_absent() {
        let v = json!({"a": "x", "n": 3});
        let text = pairs(&[
            ("alpha", field(&v, "a")),
            ("n", field(&v, "n")),
            ("gone", field(&v, "zz")),
        ]);
        assert_eq!(text, "alpha  x\nn      3\n");
    }

    #[test]
    fn reasons_read_code_and_description() {
        let v = json!({"statusReason": {"reasonCode": "LOW_BATTERY", "reasonDescription": "12 %"}});
        assert_eq!(reason(&v), "LOW_BATTERY: 12 %");
        assert_eq!(reason(&json!({})), "-");
    }
}
