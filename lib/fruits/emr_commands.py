"""``fruits emr upload | create-cluster | run | status | terminate``.

Every command takes ``--dry-run``: it prints the exact API requests as JSON and
touches nothing. Credentials and region come from the standard AWS environment
(profile, instance role, ``AWS_ENDPOINT_URL`` for an S3-compatible test server).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from fruits import __version__, emr


def add_parser(commands) -> None:
    parser = commands.add_parser("emr", help="AWS EMR: upload, create-cluster, run, status, terminate")
    verbs = parser.add_subparsers(dest="emr_command", required=True)

    def verb(name: str, help_text: str):
        sub = verbs.add_parser(name, help=help_text)
        sub.add_argument("--dry-run", action="store_true", help="print the API requests, touch nothing")
        return sub

    upload = verb("upload", "build the wheel; upload it, the bootstrap, configs and notebooks to S3")
    create = verb("create-cluster", "create the cluster described by emr-config/")
    run = verb("run", "add a step that runs the notebook with papermill on the cluster")
    for sub in (upload, create, run):
        sub.add_argument("--bucket", required=True, help="bucket name (not a URI)")
        sub.add_argument("--prefix", default="fruits", help="key prefix in the bucket (default: fruits)")
    create.add_argument("--key-name", help="EC2 key pair for SSH (tunnel) access")
    create.add_argument("--subnet-id", help="subnet to launch in (a private subnet with SSM is best)")
    create.add_argument("--spot-task", action="store_true", help="buy the task node on the spot market")
    create.add_argument("--idle-timeout", type=int, default=3600, help="auto-terminate after idle seconds")
    run.add_argument("--cluster-id", required=True)
    run.add_argument("--input", required=True, help="s3:// folder of class sub-folders")
    run.add_argument("--output", required=True, help="s3:// output folder")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    for name in ("status", "terminate"):
        verb(name, f"{name} a cluster").add_argument("--cluster-id", required=True)


def run_command(args) -> int:
    try:
        return _dispatch(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _show(operation: str, request) -> None:
    print(json.dumps({"operation": operation, "request": request}, indent=2))


def _dispatch(args) -> int:
    from fruits.cli import parse_value

    if args.emr_command == "upload":
        with tempfile.TemporaryDirectory() as scratch:
            wheel = emr.build_wheel(Path(scratch))
            plan = emr.upload_plan(bucket=args.bucket, prefix=args.prefix, wheel=wheel)
            requests = [{"Filename": local, "Bucket": args.bucket, "Key": key} for local, key in plan]
            if args.dry_run:
                _show("s3.upload_file", requests)
                return 0
            s3 = emr.client("s3")
            for request in requests:
                s3.upload_file(**request)
                print(f"uploaded s3://{args.bucket}/{request['Key']}")
        return 0
    if args.emr_command == "create-cluster":
        request = emr.run_job_flow_request(
            bucket=args.bucket, prefix=args.prefix, wheel=emr.wheel_name(__version__),
            key_name=args.key_name, subnet_id=args.subnet_id, spot_task=args.spot_task,
            idle_timeout=args.idle_timeout)
        if args.dry_run:
            _show("emr.run_job_flow", request)
            return 0
        cluster_id = emr.client("emr").run_job_flow(**request)["JobFlowId"]
        print(f"cluster {cluster_id} starting; it terminates itself after {args.idle_timeout} s idle.")
        print(f"When it is WAITING: fruits emr status --cluster-id {cluster_id}, then "
              "fruits tunnel --key KEY.pem --host PRIMARY_DNS and open https://localhost:9443")
        return 0
    if args.emr_command == "run":
        request = emr.notebook_step_request(
            cluster_id=args.cluster_id, bucket=args.bucket, prefix=args.prefix, input_path=args.input,
            output=args.output, parameters={name: parse_value(value) for name, value in args.parameter})
        if args.dry_run:
            _show("emr.add_job_flow_steps", request)
            return 0
        step = emr.client("emr").add_job_flow_steps(**request)["StepIds"][0]
        print(f"step {step} added to {args.cluster_id}; report: {args.output.rstrip('/')}/report.html")
        return 0
    if args.emr_command == "status":
        request = {"ClusterId": args.cluster_id}
        if args.dry_run:
            _show("emr.describe_cluster", request)
            return 0
        cluster = emr.client("emr").describe_cluster(**request)["Cluster"]
        print(json.dumps({"state": cluster["Status"]["State"],
                          "primary_dns": cluster.get("MasterPublicDnsName"),
                          "release": cluster.get("ReleaseLabel")}, indent=2))
        return 0
    request = {"JobFlowIds": [args.cluster_id]}
    if args.dry_run:
        _show("emr.terminate_job_flows", request)
        return 0
    emr.client("emr").terminate_job_flows(**request)
    print(f"cluster {args.cluster_id} terminating")
    return 0
