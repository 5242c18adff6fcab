#!/usr/bin/env python3
"""Local DynamoDB endpoint for Tether: moto's server, bound to 127.0.0.1.

Requests are served one at a time. moto's backend does not lock, so two concurrent conditional
writes to one item could both pass their condition; real DynamoDB makes each conditional write
atomic, and serving requests in turn keeps that guarantee locally.

Prints one line `port=<N>` on stdout once it accepts connections, then serves until it gets
SIGTERM/SIGINT, or until the process given by --parent-pid is gone (so a test run that is
killed never leaves it behind).

Usage: local_dynamodb.py [--port N] [--parent-pid PID]   (port 0, the default, picks a free one)
"""

import argparse
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args()

    app = DomainDispatcherApplication(create_backend_app)
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
