//! AWS's own clients against the emulator's IoT Jobs: boto3 (`iot`, `iot-jobs-data`) for the
//! control plane and the device's HTTPS API, and the AWS IoT Device SDK v2 for Python
//! (`awsiot.iotjobs.IotJobsClientV2` over MQTT 5) for the device's MQTT API
//! (`tests/jobs_sdk.py`).
//!
//! The interpreter is `.venv-device` (`make venv`, from `requirements-device.txt`):
//! `awsiotsdk` cannot be installed into the project's `.venv`. Every release pins `awscrt`
//! exactly (1.31.0: `awscrt==0.36.1`), while `aws-sam-cli==1.170.0` pins `boto3[crt]`, whose
//! `botocore[crt]` pins another `awscrt`. `TETHER_DEVICE_PYTHON` names another interpreter.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;
use std::time::Duration;

use tether_local_iot::{Config, LocalIot};

#[tokio::test]
async fn aws_device_sdk_and_boto3_run_jobs() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("TETHER_DEVICE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../../.venv-device/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run `make venv`",
        python.display()
    );
    let iot = LocalIot::start(Config {
        jobs_minute: Duration::from_secs(60),
        ..Config::default()
    })
    .await
    .unwrap();

    let run = tokio::process::Command::new(&python)
        .arg(root.join("tests/jobs_sdk.py"))
        .arg(iot.endpoint_url())
        .arg(iot.mqtt_addr().to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("jobs_sdk.py finishes within 3 minutes")
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "jobs sdk check failed:\n{stdout}\n{stderr}"
    );
    print!("{stdout}");
    assert!(
        stdout.contains("jobs sdk check passed"),
        "{stdout}\n{stderr}"
    );
    iot.shutdown().await;
}
