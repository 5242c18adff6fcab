"""A second SDK against local-iot: boto3 creates a command, starts an execution, reads both
back and lists executions. Exits non-zero (with the exception) on any wire-shape mismatch.

Usage: boto3_wire.py ENDPOINT_URL
"""

import json
import sys

import boto3


def main(endpoint: str) -> None:
    common = dict(
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    iot = boto3.client("iot", **common)
    jobs = boto3.client("iot-jobs-data", **common)
    data = boto3.client("iot-data", **common)

    created = iot.create_command(
        commandId="py-unlock",
        displayName="Unlock from Python",
        payload={"content": json.dumps({"door": "rear"}).encode(), "contentType": "application/json"},
    )
    assert created["commandId"] == "py-unlock", created
    assert created["commandArn"].endswith(":command/py-unlock"), created

    got = iot.get_command(commandId="py-unlock")
    assert got["displayName"] == "Unlock from Python", got
    assert json.loads(got["payload"]["content"]) == {"door": "rear"}, got
    assert got["deprecated"] is False and got["pendingDeletion"] is False, got
    assert got["createdAt"].year >= 2024, got

    target = "arn:aws:iot:us-east-1:000000000000:thing/py-car"
    started = jobs.start_command_execution(
        targetArn=target, commandArn=created["commandArn"], executionTimeoutSeconds=60, clientToken="py-token"
    )
    again = jobs.start_command_execution(
        targetArn=target, commandArn=created["commandArn"], executionTimeoutSeconds=60, clientToken="py-token"
    )
    assert started["executionId"] == again["executionId"], (started, again)

    execution = iot.get_command_execution(executionId=started["executionId"], targetArn=target)
    assert execution["status"] == "CREATED", execution
    assert execution["executionTimeoutSeconds"] == 60, execution

    listed = iot.list_command_executions(targetArn=target)
    assert [e["executionId"] for e in listed["commandExecutions"]] == [started["executionId"]], listed

    data.publish(topic="py/hello", qos=1, payload=b"{}")
    try:
        iot.get_command(commandId="missing")
        raise AssertionError("GetCommand of a missing command succeeded")
    except iot.exceptions.ResourceNotFoundException:
        pass
    print("boto3 wire check passed")


if __name__ == "__main__":
    main(sys.argv[1])
