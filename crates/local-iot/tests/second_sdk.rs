//! boto3 (from the project's venv) against the emulator: a second SDK proves the wire shapes.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;

use tether_local_iot::{Config, LocalIot};

#[tokio::test]
async fn boto3_creates_a_command_and_starts_an_execution() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("TETHER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../../.venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run `make venv`",
        python.display()
    );
    let iot = LocalIot::start(Config::default()).await.unwrap();

    let output = tokio::process::Command::new(&python)
        .arg(root.join("tests/boto3_wire.py"))
        .arg(iot.endpoint_url())
        .output()
        .await
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "boto3 check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("boto3 wire check passed"));
    iot.shutdown().await;
}
