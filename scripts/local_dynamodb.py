#!/usr/bin/env python3
"""Local DynamoDB endpoint for Tether: moto's server, bound to 127.0.0.1.

Requests are served one at a time. moto's backend does not lock, so two concurrent conditional
writes to one item could both pass their condition; real DynamoDB makes each conditional write
atomic, and serving requests in turn keeps that guarantee locally.

TransactWriteItems is replaced by a cheaper equivalent (see `_transactions_with_an_undo_log`):
moto backs up the whole table, deep-copied, for every item of every transaction, which makes
each transaction cost as much as the table is large and, under load, grew the server past
20 GiB until the kernel killed it.

Faults can be injected for the reliability tests: `POST /_tether/faults` with
`{"operations": ["UpdateItem", ...], "status": 503, "code": "ServiceUnavailable"}` makes the named
operations (all of them when the list is empty or missing) answer that DynamoDB error until
`DELETE /_tether/faults`; `GET /_tether/faults` says what is set and how many requests failed.

Prints one line `port=<N>` on stdout once it accepts connections, then serves until it gets
SIGTERM/SIGINT, or until the process given by --parent-pid is gone (so a test run that is
killed never leaves it behind).

Usage: local_dynamodb.py [--port N] [--parent-pid PID]   (port 0, the default, picks a free one)
"""

import argparse
import io
import json
import os
import signal
import sys
import threading

import copy

import moto.dynamodb.models as dynamodb_models
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


def _transactions_with_an_undo_log() -> None:
    """TransactWriteItems with the same semantics, undone item by item.

    moto's own implementation deep-copies every table a transaction names, to restore it if the
    transaction is cancelled. Requests are served one at a time here, so it is enough to remember
    the items the transaction names and to put them back (or delete them) on cancellation. The
    table copy is skipped by handing moto a `copy` whose deepcopy returns tables as they are; its
    own rollback then restores the same objects, and the undo log does the real work.
    """
    backend_class = dynamodb_models.DynamoDBBackend
    original = backend_class.transact_write_items

    class _NoTableCopy:
        def __getattr__(self, name):
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value, memo=None):
            if isinstance(value, dynamodb_models.Table):
                return value
            return copy.deepcopy(value, memo)

    dynamodb_models.copy = _NoTableCopy()

    def transact_write_items(self, transact_items):
        undo = []
        for entry in transact_items:
            if len(entry) != 1:
                break  # moto refuses it before writing anything
            _, op = next(iter(entry.items()))
            table_name = op.get("TableName")
            if table_name not in self.tables:
                continue
            table = self.tables[table_name]
            key = op.get("Key")
            if key is None and "Item" in op:
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs.get(table.hash_key_attr)}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs.get(table.range_key_attr)
            if key is None or any(v is None for v in key.values()):
                continue
            try:
                before = self.get_item(table_name, key)
            except Exception:  # noqa: BLE001 - moto raises its own validation errors later
                continue
            undo.append((table_name, key, None if before is None else before.to_json()["Attributes"]))
        try:
            return original(self, transact_items)
        except Exception:
            for table_name, key, attrs in reversed(undo):
                if attrs is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attrs)
            raise

    backend_class.transact_write_items = transact_write_items


class Faults:
    """WSGI middleware: answers DynamoDB errors for chosen operations, as the tests ask."""

    PATH = "/_tether/faults"

    def __init__(self, app):
        self.app = app
        self.setting = None  # {"operations": set, "status": int, "code": str} while active
        self.failed = 0

    def __call__(self, environ, start_response):
        body = _read_body(environ)
        if environ.get("PATH_INFO") == self.PATH:
            return self._control(environ.get("REQUEST_METHOD", "GET"), body, start_response)
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
        setting = self.setting
        if setting is not None and (not setting["operations"] or operation in setting["operations"]):
            self.failed += 1
            error = {
                "__type": f"com.amazonaws.dynamodb.v20120810#{setting['code']}",
                "message": f"injected fault: {operation} answers {setting['code']}",
            }
            return _json(start_response, setting["status"], error, "application/x-amz-json-1.0")
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)

    def _control(self, method, body, start_response):
        if method == "POST":
            try:
                asked = json.loads(body or b"{}")
                setting = {
                    "operations": set(asked.get("operations") or []),
                    "status": int(asked.get("status", 503)),
                    "code": str(asked.get("code", "ServiceUnavailable")),
                }
            except (ValueError, TypeError, AttributeError) as err:
                return _json(start_response, 400, {"error": f"bad fault: {err}"})
            if not 400 <= setting["status"] <= 599:
                return _json(start_response, 400, {"error": "status must be 4xx or 5xx"})
            self.setting, self.failed = setting, 0
            print(f"fault injected: {asked}", file=sys.stderr, flush=True)
        elif method == "DELETE":
            self.setting = None
            print(f"fault cleared after {self.failed} failed requests", file=sys.stderr, flush=True)
        setting = self.setting
        return _json(
            start_response,
            200,
            {
                "active": setting is not None,
                "operations": sorted(setting["operations"]) if setting else [],
                "failed": self.failed,
            },
        )


def _read_body(environ) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _json(start_response, status, value, content_type="application/json"):
    data = json.dumps(value).encode()
    start_response(
        f"{status} {'OK' if status == 200 else 'Error'}",
        [("Content-Type", content_type), ("Content-Length", str(len(data)))],
    )
    return [data]


def main() -> int:
    _transactions_with_an_undo_log()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args()

    app = Faults(DomainDispatcherApplication(create_backend_app))
    server = make_server(
        "127.0.0.1", args.port, app, threaded=False, request_handler=MotoRequestHandler
    )
    print(f"port={server.server_port}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        if args.parent_pid and not _alive(args.parent_pid):
            break
    server.shutdown()
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if __name__ == "__main__":
    sys.exit(main())
