"""AWS's own clients against local-iot's IoT Jobs: boto3 (`iot`, `iot-jobs-data`) for the control
plane and the device's HTTPS API, and the AWS IoT Device SDK v2 for Python (`awsiotsdk`:
`awsiot.iotjobs.IotJobsClientV2` over an `awscrt.mqtt5.Client`) for the device's MQTT API.

The SDK's v2 client subscribes to `.../accepted` and `.../rejected` (as `.../+`) for each
request, correlates the answer by `clientToken`, parses times as epoch seconds, and its CRT
sends an SDK metrics username on CONNECT. A second, plain MQTT 5 client taps
`$aws/things/{thing}/jobs/#`; when a check fails, what it saw is printed with the exception.

`$next` is described over MQTT too (`describe_next`): the SDK's subscription to
`.../jobs/$next/get/+` was refused by the broker until local-iot escaped such levels.

Exits non-zero on any mismatch; prints "jobs sdk check passed" at the end.

Usage: jobs_sdk.py ENDPOINT_URL MQTT_HOST:PORT
"""

import datetime
import json
import queue
import sys
import threading
import time
import traceback
from concurrent.futures import Future

import boto3
from awscrt import mqtt5, mqtt_request_response
from awsiot import ServiceStreamOptions, V2ServiceException, iotjobs

WAIT = 15.0
ACCOUNT = "000000000000"
MQTT_THING = "py-sdk-device"
HTTPS_THING = "py-https-device"


def thing_arn(thing: str) -> str:
    return f"arn:aws:iot:us-east-1:{ACCOUNT}:thing/{thing}"


class Tap:
    """A plain MQTT 5 client subscribed to `topic_filter`: every message it sees, for the report.
    (The broker routes nothing on `.../jobs/$next/...` topics, so those never show here.)"""

    def __init__(self, host: str, port: int, client_id: str, topic_filter: str):
        self.seen: list = []
        self._lock = threading.Lock()
        self.client = connect(host, port, client_id, on_publish=self._on_publish)
        suback = self.client.subscribe(
            mqtt5.SubscribePacket(subscriptions=[mqtt5.Subscription(topic_filter, mqtt5.QoS.AT_LEAST_ONCE)])
        ).result(WAIT)
        assert suback.reason_codes[0] in (mqtt5.SubackReasonCode.GRANTED_QOS_0, mqtt5.SubackReasonCode.GRANTED_QOS_1), suback

    def _on_publish(self, data: mqtt5.PublishReceivedData) -> None:
        packet = data.publish_packet
        with self._lock:
            self.seen.append((time.strftime("%H:%M:%S"), packet.topic, bytes(packet.payload or b"").decode(errors="replace")))

    def dump(self) -> str:
        with self._lock:
            return "\n".join(f"  {at} {topic} {payload}" for at, topic, payload in self.seen)


def connect(host: str, port: int, client_id: str, on_publish=None, metrics: bool = False) -> mqtt5.Client:
    """An MQTT 5 client over plain TCP, started and connected. The SDK's builders
    (`awsiot.mqtt5_client_builder`) insist on TLS, so the client is built here; with `metrics`
    it carries the same SDK metrics the builders attach (the CRT puts them into the CONNECT
    username)."""
    connected: Future = Future()
    options = mqtt5.ClientOptions(
        host_name=host,
        port=port,
        connect_options=mqtt5.ConnectPacket(client_id=client_id, keep_alive_interval_sec=30),
        on_publish_callback_fn=on_publish,
        on_lifecycle_event_connection_success_fn=lambda data: connected.done() or connected.set_result(data),
        on_lifecycle_event_connection_failure_fn=lambda data: connected.done()
        or connected.set_exception(RuntimeError(f"{client_id} could not connect: {data.exception}")),
    )
    if metrics:
        from awsiot._iot_metrics import _build_sdk_metrics  # what mqtt5_client_builder attaches

        options.metrics = _build_sdk_metrics()
    client = mqtt5.Client(options)
    client.start()
    success = connected.result(WAIT)
    assert success.connack_packet.reason_code == mqtt5.ConnectReasonCode.SUCCESS, success.connack_packet
    return client


def stop(client: mqtt5.Client) -> None:
    client.stop(mqtt5.DisconnectPacket())


class Stream:
    """A v2 streaming operation (notify / notify-next): its events in a queue."""

    def __init__(self, create, request, name: str):
        self.name = name
        self.events: queue.Queue = queue.Queue()
        self.failures: list = []
        self.subscribed = threading.Event()

        def status(event: mqtt_request_response.SubscriptionStatusEvent) -> None:
            if event.type == mqtt_request_response.SubscriptionStatusEventType.SUBSCRIPTION_ESTABLISHED:
                self.subscribed.set()
            else:
                self.failures.append(f"{name} subscription: {event.type!r} {event.error!r}")

        def failure(event) -> None:
            self.failures.append(f"{name}: could not parse {event.payload!r}: {event.inner_error!r}")

        self.operation = create(
            request,
            ServiceStreamOptions(
                incoming_event_listener=self.events.put,
                subscription_status_listener=status,
                deserialization_failure_listener=failure,
            ),
        )
        self.operation.open()

    def established(self) -> None:
        assert self.subscribed.wait(WAIT), f"{self.name}: no SUBSCRIPTION_ESTABLISHED"

    def next(self):
        try:
            return self.events.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"{self.name}: nothing within {WAIT} s; parse failures: {self.failures}")

    def quiet(self, seconds: float = 1.0) -> None:
        """Nothing more arrives for `seconds`."""
        try:
            extra = self.events.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"{self.name}: unexpected {extra!r}")

    def check(self) -> None:
        assert not self.failures, self.failures


def rejected(future: Future) -> iotjobs.V2ErrorResponse:
    """The modeled rejection of a v2 request that must fail."""
    try:
        answer = future.result(WAIT)
    except V2ServiceException as err:
        assert err.modeled_error is not None, f"not a modeled rejection: {err.message} {err.inner_error!r}"
        return err.modeled_error
    raise AssertionError(f"accepted, expected a rejection: {answer!r}")


def describe_next(jobs: "iotjobs.IotJobsClientV2", expected_job: str) -> None:
    """DescribeJobExecution of `$next` over MQTT: the SDK subscribes to
    `$aws/things/{thing}/jobs/$next/get/+`, a `$` level after the first, which the broker once
    refused (SUBACK 0x80); local-iot now grants it and answers the requester directly."""
    answer = jobs.describe_job_execution(
        iotjobs.DescribeJobExecutionRequest(thing_name=MQTT_THING, job_id="$next")
    ).result(WAIT)
    assert answer.execution.job_id == expected_job, answer


def epoch(value) -> None:
    """A time the SDK parsed from epoch seconds: a recent datetime."""
    assert isinstance(value, datetime.datetime), value
    assert abs(value.timestamp() - time.time()) < 3600, value


def seconds(value) -> None:
    """An iot-jobs-data time: whole epoch seconds (the model's `long`, not a timestamp)."""
    assert isinstance(value, int) and abs(value - time.time()) < 3600, value


def control_plane(iot, jobs_data) -> None:
    """boto3: the control plane's shapes and the device's HTTPS API."""
    document = {"operation": "install", "version": "2.1"}
    created = iot.create_job(
        jobId="py-https-job",
        targets=[thing_arn(HTTPS_THING)],
        document=json.dumps(document),
        description="from boto3",
        timeoutConfig={"inProgressTimeoutInMinutes": 30},
        jobExecutionsRetryConfig={"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 1}]},
    )
    assert created["jobId"] == "py-https-job", created
    assert created["jobArn"] == f"arn:aws:iot:us-east-1:{ACCOUNT}:job/py-https-job", created
    try:
        iot.create_job(jobId="py-https-job", targets=[thing_arn(HTTPS_THING)], document="{}")
        raise AssertionError("a second CreateJob with the same id succeeded")
    except iot.exceptions.ResourceAlreadyExistsException:
        pass

    job = iot.describe_job(jobId="py-https-job")["job"]
    assert job["status"] == "IN_PROGRESS", job
    assert job["targets"] == [thing_arn(HTTPS_THING)], job
    assert job["targetSelection"] == "SNAPSHOT", job
    assert job["description"] == "from boto3", job
    assert job["timeoutConfig"] == {"inProgressTimeoutInMinutes": 30}, job
    assert job["jobExecutionsRetryConfig"]["criteriaList"] == [{"failureType": "FAILED", "numberOfRetries": 1}], job
    epoch(job["createdAt"])
    epoch(job["lastUpdatedAt"])
    details = job["jobProcessDetails"]
    assert details["numberOfQueuedThings"] == 1 and details["numberOfSucceededThings"] == 0, details
    assert json.loads(iot.get_job_document(jobId="py-https-job")["document"]) == document

    listed = iot.list_jobs()["jobs"]
    summary = next(j for j in listed if j["jobId"] == "py-https-job")
    assert summary["status"] == "IN_PROGRESS" and summary["targetSelection"] == "SNAPSHOT", summary
    epoch(summary["createdAt"])

    for_job = iot.list_job_executions_for_job(jobId="py-https-job")["executionSummaries"]
    assert [e["thingArn"] for e in for_job] == [thing_arn(HTTPS_THING)], for_job
    execution = for_job[0]["jobExecutionSummary"]
    assert execution["status"] == "QUEUED" and execution["executionNumber"] == 1, execution
    epoch(execution["queuedAt"])
    for_thing = iot.list_job_executions_for_thing(thingName=HTTPS_THING)["executionSummaries"]
    assert [e["jobId"] for e in for_thing] == ["py-https-job"], for_thing

    # The device over HTTPS.
    pending = jobs_data.get_pending_job_executions(thingName=HTTPS_THING)
    assert pending["inProgressJobs"] == [], pending
    assert [j["jobId"] for j in pending["queuedJobs"]] == ["py-https-job"], pending
    assert pending["queuedJobs"][0]["versionNumber"] == 1, pending
    described = jobs_data.describe_job_execution(thingName=HTTPS_THING, jobId="$next")["execution"]
    assert described["jobId"] == "py-https-job" and described["status"] == "QUEUED", described
    assert json.loads(described["jobDocument"]) == document, described
    seconds(described["queuedAt"])
    seconds(pending["queuedJobs"][0]["queuedAt"])

    started = jobs_data.start_next_pending_job_execution(
        thingName=HTTPS_THING, statusDetails={"step": "download"}, stepTimeoutInMinutes=10
    )["execution"]
    assert started["status"] == "IN_PROGRESS" and started["statusDetails"] == {"step": "download"}, started
    version = started["versionNumber"]
    seconds(started["startedAt"])
    assert 0 < started["approximateSecondsBeforeTimedOut"] <= 600, started

    updated = jobs_data.update_job_execution(
        thingName=HTTPS_THING,
        jobId="py-https-job",
        status="IN_PROGRESS",
        statusDetails={"step": "install"},
        expectedVersion=version,
        includeJobExecutionState=True,
        includeJobDocument=True,
    )
    assert updated["executionState"] == {
        "status": "IN_PROGRESS",
        "statusDetails": {"step": "install"},
        "versionNumber": version + 1,
    }, updated
    assert json.loads(updated["jobDocument"]) == document, updated
    try:
        jobs_data.update_job_execution(
            thingName=HTTPS_THING, jobId="py-https-job", status="SUCCEEDED", expectedVersion=version
        )
        raise AssertionError("an update with a stale expectedVersion succeeded")
    except jobs_data.exceptions.ConflictException:
        pass

    execution = iot.describe_job_execution(jobId="py-https-job", thingName=HTTPS_THING)["execution"]
    assert execution["status"] == "IN_PROGRESS", execution
    assert execution["thingArn"] == thing_arn(HTTPS_THING), execution
    assert execution["statusDetails"] == {"detailsMap": {"step": "install"}}, execution
    assert execution["versionNumber"] == version + 1 and execution["executionNumber"] == 1, execution
    assert execution["forceCanceled"] is False, execution
    epoch(execution["startedAt"])

    # IN_PROGRESS: CancelJobExecution needs force, then DeleteJob on a job still running too.
    try:
        iot.cancel_job_execution(jobId="py-https-job", thingName=HTTPS_THING)
        raise AssertionError("CancelJobExecution of an IN_PROGRESS execution without force succeeded")
    except iot.exceptions.InvalidStateTransitionException:
        pass
    iot.cancel_job_execution(jobId="py-https-job", thingName=HTTPS_THING, force=True)
    execution = iot.describe_job_execution(jobId="py-https-job", thingName=HTTPS_THING)["execution"]
    assert execution["status"] == "CANCELED" and execution["forceCanceled"] is True, execution
    try:
        jobs_data.describe_job_execution(thingName=HTTPS_THING, jobId="py-https-job")
        raise AssertionError("DescribeJobExecution of a CANCELED execution succeeded on the device API")
    except jobs_data.exceptions.TerminalStateException:
        pass
    assert "execution" not in jobs_data.start_next_pending_job_execution(thingName=HTTPS_THING)

    # Its only execution finished: the job is COMPLETED, and DeleteJob needs no force.
    job = iot.describe_job(jobId="py-https-job")["job"]
    assert job["status"] == "COMPLETED" and job["jobProcessDetails"]["numberOfCanceledThings"] == 1, job
    epoch(job["completedAt"])
    iot.delete_job(jobId="py-https-job")
    try:
        iot.describe_job(jobId="py-https-job")
        raise AssertionError("DescribeJob of a deleted job succeeded")
    except iot.exceptions.ResourceNotFoundException:
        pass
    assert iot.list_job_executions_for_thing(thingName=HTTPS_THING)["executionSummaries"] == []

    # CancelJob: the QUEUED executions are CANCELED; a job in progress is deleted only with force.
    targets = [thing_arn(HTTPS_THING), thing_arn("py-other-device")]
    iot.create_job(jobId="py-cancel-job", targets=targets, document=json.dumps({"operation": "noop"}))
    try:
        iot.delete_job(jobId="py-cancel-job")
        raise AssertionError("DeleteJob of a job in progress without force succeeded")
    except iot.exceptions.InvalidStateTransitionException:
        pass
    cancelled = iot.cancel_job(jobId="py-cancel-job", comment="enough", reasonCode="PY_TEST")
    assert cancelled["jobId"] == "py-cancel-job", cancelled
    assert cancelled["jobArn"] == f"arn:aws:iot:us-east-1:{ACCOUNT}:job/py-cancel-job", cancelled
    job = iot.describe_job(jobId="py-cancel-job")["job"]
    assert job["status"] == "CANCELED" and job["forceCanceled"] is False, job
    assert job["comment"] == "enough" and job["reasonCode"] == "PY_TEST", job
    assert job["jobProcessDetails"]["numberOfCanceledThings"] == 2, job
    executions = iot.list_job_executions_for_job(jobId="py-cancel-job", status="CANCELED")["executionSummaries"]
    assert sorted(e["thingArn"] for e in executions) == sorted(targets), executions
    assert jobs_data.get_pending_job_executions(thingName=HTTPS_THING)["queuedJobs"] == []
    iot.delete_job(jobId="py-cancel-job")
    try:
        iot.get_job_document(jobId="py-cancel-job")
        raise AssertionError("GetJobDocument of a deleted job succeeded")
    except iot.exceptions.ResourceNotFoundException:
        pass

    # Force: DeleteJob of a job in progress, its executions with it.
    iot.create_job(jobId="py-force-job", targets=[thing_arn(HTTPS_THING)], document="{}")
    iot.delete_job(jobId="py-force-job", force=True)
    assert iot.list_job_executions_for_thing(thingName=HTTPS_THING)["executionSummaries"] == []
    assert "py-force-job" not in [j["jobId"] for j in iot.list_jobs()["jobs"]]


def device_sdk(iot, host: str, port: int) -> None:
    """The AWS IoT Device SDK v2's Jobs client over MQTT 5."""
    client = connect(host, port, MQTT_THING, metrics=True)
    try:
        jobs = iotjobs.IotJobsClientV2(
            client,
            mqtt_request_response.ClientOptions(
                max_request_response_subscriptions=2,
                max_streaming_subscriptions=2,
                operation_timeout_in_seconds=int(WAIT),
            ),
        )
        device_jobs(iot, jobs)
    finally:
        stop(client)


def device_jobs(iot, jobs: "iotjobs.IotJobsClientV2") -> None:
    notify = Stream(
        jobs.create_job_executions_changed_stream,
        iotjobs.JobExecutionsChangedSubscriptionRequest(thing_name=MQTT_THING),
        "notify",
    )
    notify_next = Stream(
        jobs.create_next_job_execution_changed_stream,
        iotjobs.NextJobExecutionChangedSubscriptionRequest(thing_name=MQTT_THING),
        "notify-next",
    )
    notify.established()
    notify_next.established()

    # Nothing pending yet.
    pending = jobs.get_pending_job_executions(
        iotjobs.GetPendingJobExecutionsRequest(thing_name=MQTT_THING)
    ).result(WAIT)
    assert not pending.in_progress_jobs and not pending.queued_jobs, pending
    epoch(pending.timestamp)
    nothing = jobs.start_next_pending_job_execution(
        iotjobs.StartNextPendingJobExecutionRequest(thing_name=MQTT_THING)
    ).result(WAIT)
    assert nothing.execution is None, nothing

    # A job for the thing: notify-next names it (with its document), notify lists it.
    first_doc = {"operation": "reboot", "delaySeconds": 5}
    iot.create_job(jobId="py-mqtt-first", targets=[thing_arn(MQTT_THING)], document=json.dumps(first_doc))
    head = notify_next.next()
    assert head.execution is not None and head.execution.job_id == "py-mqtt-first", head
    assert head.execution.status == iotjobs.JobStatus.QUEUED, head
    assert head.execution.job_document == first_doc, head
    assert head.execution.thing_name == MQTT_THING and head.execution.version_number == 1, head
    epoch(head.execution.queued_at)
    epoch(head.timestamp)
    listed = notify.next()
    assert [s.job_id for s in listed.jobs["QUEUED"]] == ["py-mqtt-first"], listed
    epoch(listed.timestamp)

    # A second one: the list changes, the head does not.
    second_doc = {"operation": "update", "url": "https://example.com/fw.bin"}
    iot.create_job(jobId="py-mqtt-second", targets=[thing_arn(MQTT_THING)], document=json.dumps(second_doc))
    listed = notify.next()
    assert [s.job_id for s in listed.jobs["QUEUED"]] == ["py-mqtt-first", "py-mqtt-second"], listed
    notify_next.quiet()

    pending = jobs.get_pending_job_executions(
        iotjobs.GetPendingJobExecutionsRequest(thing_name=MQTT_THING)
    ).result(WAIT)
    assert [s.job_id for s in pending.queued_jobs] == ["py-mqtt-first", "py-mqtt-second"], pending
    assert not pending.in_progress_jobs, pending
    epoch(pending.queued_jobs[0].queued_at)
    assert pending.queued_jobs[0].version_number == 1 and pending.queued_jobs[0].execution_number == 1, pending

    describe_next(jobs, "py-mqtt-first")
    described = jobs.describe_job_execution(
        iotjobs.DescribeJobExecutionRequest(thing_name=MQTT_THING, job_id="py-mqtt-first")
    ).result(WAIT)
    assert described.execution.job_id == "py-mqtt-first", described
    assert described.execution.status == iotjobs.JobStatus.QUEUED, described
    assert described.execution.job_document == first_doc, described
    without_doc = jobs.describe_job_execution(
        iotjobs.DescribeJobExecutionRequest(thing_name=MQTT_THING, job_id="py-mqtt-second", include_job_document=False)
    ).result(WAIT)
    assert without_doc.execution.job_id == "py-mqtt-second" and without_doc.execution.job_document is None, without_doc

    # Start the head, step by step.
    started = jobs.start_next_pending_job_execution(
        iotjobs.StartNextPendingJobExecutionRequest(
            thing_name=MQTT_THING, status_details={"step": "download"}, step_timeout_in_minutes=10
        )
    ).result(WAIT)
    execution = started.execution
    assert execution.job_id == "py-mqtt-first" and execution.status == iotjobs.JobStatus.IN_PROGRESS, started
    assert execution.status_details == {"step": "download"} and execution.job_document == first_doc, started
    epoch(execution.started_at)
    version = execution.version_number
    assert version == 2, started
    # Starting moves no execution into or out of the pending list, and keeps the head.
    notify.quiet(0.5)
    notify_next.quiet(0.5)

    updated = jobs.update_job_execution(
        iotjobs.UpdateJobExecutionRequest(
            thing_name=MQTT_THING,
            job_id="py-mqtt-first",
            status=iotjobs.JobStatus.IN_PROGRESS,
            status_details={"step": "install"},
            expected_version=version,
            include_job_execution_state=True,
            include_job_document=True,
        )
    ).result(WAIT)
    state = updated.execution_state
    assert state.status == iotjobs.JobStatus.IN_PROGRESS and state.version_number == version + 1, updated
    assert state.status_details == {"step": "install"} and updated.job_document == first_doc, updated
    epoch(updated.timestamp)

    # A stale expectedVersion: rejected with VersionMismatch and the current state.
    mismatch = rejected(
        jobs.update_job_execution(
            iotjobs.UpdateJobExecutionRequest(
                thing_name=MQTT_THING,
                job_id="py-mqtt-first",
                status=iotjobs.JobStatus.SUCCEEDED,
                expected_version=version,
            )
        )
    )
    assert mismatch.code == iotjobs.RejectedErrorCode.VERSION_MISMATCH, mismatch
    assert mismatch.execution_state.version_number == version + 1, mismatch
    assert mismatch.execution_state.status == iotjobs.JobStatus.IN_PROGRESS, mismatch
    assert mismatch.message, mismatch
    epoch(mismatch.timestamp)

    missing = rejected(
        jobs.update_job_execution(
            iotjobs.UpdateJobExecutionRequest(thing_name=MQTT_THING, job_id="py-mqtt-missing", status="SUCCEEDED")
        )
    )
    assert missing.code == iotjobs.RejectedErrorCode.RESOURCE_NOT_FOUND, missing

    # Done: the head moves to the second job.
    done = jobs.update_job_execution(
        iotjobs.UpdateJobExecutionRequest(
            thing_name=MQTT_THING,
            job_id="py-mqtt-first",
            status=iotjobs.JobStatus.SUCCEEDED,
            status_details={"step": "done"},
            expected_version=version + 1,
        )
    ).result(WAIT)
    assert done.execution_state is None, done
    head = notify_next.next()
    assert head.execution is not None and head.execution.job_id == "py-mqtt-second", head
    assert head.execution.job_document == second_doc, head
    listed = notify.next()
    assert not listed.jobs.get("IN_PROGRESS"), listed
    assert [s.job_id for s in listed.jobs["QUEUED"]] == ["py-mqtt-second"], listed

    finished = rejected(
        jobs.describe_job_execution(iotjobs.DescribeJobExecutionRequest(thing_name=MQTT_THING, job_id="py-mqtt-first"))
    )
    assert finished.code == iotjobs.RejectedErrorCode.TERMINAL_STATE_REACHED, finished
    again = rejected(
        jobs.update_job_execution(
            iotjobs.UpdateJobExecutionRequest(
                thing_name=MQTT_THING, job_id="py-mqtt-first", status=iotjobs.JobStatus.IN_PROGRESS
            )
        )
    )
    assert again.code == iotjobs.RejectedErrorCode.INVALID_STATE_TRANSITION, again
    job = iot.describe_job(jobId="py-mqtt-first")["job"]
    assert job["status"] == "COMPLETED" and job["jobProcessDetails"]["numberOfSucceededThings"] == 1, job
    epoch(job["completedAt"])
    execution = iot.describe_job_execution(jobId="py-mqtt-first", thingName=MQTT_THING)["execution"]
    assert execution["status"] == "SUCCEEDED", execution
    assert execution["statusDetails"] == {"detailsMap": {"step": "done"}}, execution

    # Cancelling the second job empties the list: notify-next without an execution.
    iot.cancel_job(jobId="py-mqtt-second")
    head = notify_next.next()
    assert head.execution is None, head
    epoch(head.timestamp)
    listed = notify.next()
    assert not listed.jobs, listed

    iot.delete_job(jobId="py-mqtt-first")
    iot.delete_job(jobId="py-mqtt-second")
    assert iot.list_job_executions_for_thing(thingName=MQTT_THING)["executionSummaries"] == []
    notify.check()
    notify_next.check()


def main(endpoint: str, mqtt_addr: str) -> None:
    host, port = mqtt_addr.rsplit(":", 1)
    common = dict(
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    iot = boto3.client("iot", **common)
    jobs_data = boto3.client("iot-jobs-data", **common)

    control_plane(iot, jobs_data)

    tap = Tap(host, int(port), "py-jobs-tap", f"$aws/things/{MQTT_THING}/jobs/#")
    try:
        device_sdk(iot, host, int(port))
    except BaseException:
        traceback.print_exc()
        print(f"what the tap saw on $aws/things/{MQTT_THING}/jobs/#:\n{tap.dump()}", file=sys.stderr)
        sys.exit(1)
    finally:
        stop(tap.client)
    print("jobs sdk check passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
