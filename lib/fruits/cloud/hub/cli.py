"""``fruits hub``: the command line of :class:`~fruits.cloud.hub.runner.LocalHub`.

Starts everything, prints where to log in and each user's password (the person running it is
the caller who may read them, as with ``fruits emr users --show``), then waits; Ctrl-C or
``SIGTERM`` stops it and removes its processes and mounts.
"""

from __future__ import annotations

import signal
import sys
import threading

from fruits.cloud.emr.users import parse_users
from fruits.cloud.hub.container import HubUnavailable, check_prerequisites
from fruits.cloud.hub.runner import DEFAULT_BUCKET, LocalHub, check_proxy
from fruits.spark.settings import LOCAL_MASTER

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(commands) -> None:
    hub = commands.add_parser(
        "hub", help="JupyterHub as on EMR, on this machine: https://localhost:9443 (root; docs/jupyterhub.md)")
    hub.add_argument("--users", default="alice,bob", help="JupyterHub users, comma-separated (default: alice,bob)")
    hub.add_argument("--port", type=int, default=9443, help="HTTPS port on 127.0.0.1 (default 9443, EMR's)")
    hub.add_argument("--state", default="output/hub",
                     help="state folder: the bucket and secrets between runs, the container (default output/hub)")
    hub.add_argument("--bucket", default=None, help="bucket name in the hub's S3 (default fruits-local-hub)")
    hub.add_argument("--endpoint-url", default=None,
                     help="use this S3 / Secrets Manager endpoint (e.g. a moto server you run) instead of the "
                          "hub's own; its bucket then outlives the hub")
    hub.add_argument("--livy", default=None, metavar="URL",
                     help="a running Livy server for the PySpark kernel (default: the hub starts the Livy double)")
    hub.add_argument("--master", default=LOCAL_MASTER, help=f"Spark master of the Livy double's sessions (default {LOCAL_MASTER})")


def run_command(args) -> int:
    users = parse_users(args.users)
    try:
        check_prerequisites()
        check_proxy()
    except HubUnavailable as exc:
        print(f"fruits hub: {exc}", file=sys.stderr)
        return EXIT_FAILED
    hub = LocalHub(args.state, users=users, port=args.port, bucket=args.bucket or DEFAULT_BUCKET,
                   endpoint_url=args.endpoint_url, livy_url=args.livy, livy_master=args.master,
                   echo=lambda line: print(line, flush=True))
    stop = threading.Event()

    def on_signal(number, frame):  # SIGTERM like Ctrl-C: leave the wait, then stop in order
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        hub.start()
        print(f"\nJupyterHub (as on EMR) at https://localhost:{args.port} (self-signed certificate: your browser "
              f"warns once). The default jovyan/jupyter is locked.", flush=True)
        for user in users:
            print(f"  log in as {user:<12} password {hub.password(user)}", flush=True)
        print(f"Notebooks in s3://{hub.bucket}/jupyter/<user>/ of {hub.endpoint_url}; PySpark kernel -> Livy at "
              f"{hub.livy_url}.\nA password again: AWS_ENDPOINT_URL={hub.endpoint_url} AWS_ACCESS_KEY_ID=testing "
              f"AWS_SECRET_ACCESS_KEY=testing fruits emr users --bucket {hub.bucket} --show NAME\n"
              f"Ctrl-C stops the hub (the bucket and passwords stay in {hub.state.root}).", flush=True)
        while not stop.is_set() and hub.container is not None and hub.container.running():
            stop.wait(1)
        if not stop.is_set():
            print("JupyterHub exited; see " + str(hub.state.hub_dir / "jupyterhub.log"), file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK
    finally:
        print("stopping the hub ...", flush=True)
        hub.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)
