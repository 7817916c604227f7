"""``fruits emr setup | upload | create-cluster | users | run | status | terminate``.

Every command takes ``--dry-run``: it prints the exact API requests as JSON and
touches nothing. Credentials and region come from the standard AWS environment
(profile, instance role, ``AWS_ENDPOINT_URL`` for an S3-compatible test server).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from fruits import __version__, emr, emr_access


def add_parser(commands) -> None:
    parser = commands.add_parser("emr", help="AWS EMR: setup, upload, create-cluster, users, run, status, terminate")
    verbs = parser.add_subparsers(dest="emr_command", required=True)

    def verb(name: str, help_text: str):
        sub = verbs.add_parser(name, help=help_text)
        sub.add_argument("--dry-run", action="store_true", help="print the API requests, touch nothing")
        return sub

    upload = verb("upload", "build the wheel; upload it, the bootstrap, configs and notebooks to S3")
    create = verb("create-cluster", "create the cluster described by emr-config/")
    run = verb("run", "add a step that runs the cloud notebook through the cluster's Livy (papermill, PySpark kernel)")
    for sub in (upload, create, run):
        sub.add_argument("--bucket", required=True, help="bucket name (not a URI)")
        sub.add_argument("--prefix", default="fruits", help="key prefix in the bucket (default: fruits)")
    create.add_argument("--key-name", help="EC2 key pair, only for opt-in SSH (--ssh-from)")
    create.add_argument("--subnet-id", help="subnet to launch in (a private subnet with SSM is best)")
    create.add_argument("--spot-task", action="store_true", help="buy the task node on the spot market")
    create.add_argument("--idle-timeout", type=int, default=3600, help="auto-terminate after idle seconds")
    users = verb("users", "JupyterHub logins: passwords in Secrets Manager; --show NAME prints one; "
                          "--cluster-id adds the step that creates the users on a running cluster")
    users.add_argument("--bucket", required=True, help="bucket name (not a URI): the passwords belong to its clusters")
    users.add_argument("--prefix", default="fruits", help="key prefix in the bucket (default: fruits)")
    users.add_argument("--show", metavar="NAME",
                       help="print the password of NAME (from Secrets Manager) and nothing else")
    users.add_argument("--cluster-id", help="also add the users step to this running cluster")
    for sub in (upload, create, users):
        sub.add_argument("--users", metavar="A,B",
                         help="JupyterHub users (comma-separated): a login each, jovyan locked; "
                              "upload puts the cloud notebook in each one's folder")
        sub.add_argument("--users-file", metavar="PATH", help="JupyterHub users, one name per line (# comments)")
    create.add_argument("--ssh-from", metavar="CIDR",
                        help="opt-in: allow SSH (tcp 22) to the primary node from this one address (/32, at most "
                             "a /24); needs --key-name and --subnet-id. Default: no inbound rule, use fruits tunnel")
    doctor = verb("doctor", "check a live cluster through its Livy: Python, fruits, executors, engine, bucket")
    doctor.add_argument("--bucket", required=True, help="bucket name (not a URI) the cluster must read and write")
    doctor.add_argument("--prefix", default="fruits", help="key prefix the probe is written under (default: fruits)")
    doctor.add_argument("--livy", default="http://localhost:8998",
                        help="Livy URL (default: http://localhost:8998, i.e. through "
                             "`fruits tunnel --cluster-id J --port 8998`)")
    setup = verb("setup", "create the project's IAM roles and instance profile (idempotent)")
    setup.add_argument("--bucket", required=True, help="the one bucket the cluster instances may use")
    setup.add_argument("--prefix", default="fruits", help="key prefix in the bucket (default: fruits)")
    setup.add_argument("--subnet-id", help="also tag this subnet and its VPC for AmazonEMRServicePolicy_v2")
    setup.add_argument("--account-id", help="account id for the policies (default: from STS)")
    setup.add_argument("--print-policy", choices=["caller", "setup"],
                       help="print the IAM policy a cluster user (caller) or the administrator running "
                            "setup needs, rendered for this bucket and account; change nothing")
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


def _users(args) -> list[str]:
    from fruits.emr_users import parse_users

    return parse_users(getattr(args, "users", None), getattr(args, "users_file", None))


def _users_command(args) -> int:
    """``fruits emr users``: see ``fruits.emr_users``."""
    from fruits import emr_users

    emr.check_bucket(args.bucket)
    users = _users(args)
    if args.show:
        if users or args.cluster_id:
            raise ValueError("--show NAME prints one password and takes no --users or --cluster-id")
        name = emr_users.secret_name(args.bucket, args.show)
        if args.dry_run:
            _show("secretsmanager.get_secret_value", {"SecretId": name})
            return 0
        print(emr_users.show_password(emr.client("secretsmanager"), bucket=args.bucket, user=args.show))
        return 0
    if not users:
        raise ValueError("name the users (--users A,B or --users-file PATH), or --show NAME")

    def step_request(region: str) -> dict:
        return emr_users.add_step_request(cluster_id=args.cluster_id, bucket=args.bucket, prefix=args.prefix,
                                          region=region, users=users)

    if args.dry_run:
        print(json.dumps(emr_users.dry_run_operations(bucket=args.bucket, users=users)
                         + ([{"operation": "emr.add_job_flow_steps", "request": step_request(emr_users.region_name())}]
                            if args.cluster_id else []), indent=2))
        return 0
    secrets_client = emr.client("secretsmanager")
    emr_users.ensure_secrets(secrets_client, bucket=args.bucket, users=users)
    if args.cluster_id:
        step = step_request(secrets_client.meta.region_name)
        step_id = emr.client("emr").add_job_flow_steps(**step)["StepIds"][0]
        print(f"step {step_id} added to {args.cluster_id}: creates {', '.join(users)} in JupyterHub, jovyan locked "
              f"(aws emr describe-step --cluster-id {args.cluster_id} --step-id {step_id})")
    print(f"each password: fruits emr users --bucket {args.bucket} --show NAME")
    return 0


def _doctor(args) -> int:
    from fruits import doctor

    emr.check_bucket(args.bucket)
    target = f"s3://{args.bucket}/{args.prefix.strip('/')}"
    if args.dry_run:
        _show("livy.statement", {"livy": args.livy, "session": doctor.SESSION,
                                 "code": doctor.statement_code(target, __version__)})
        return 0
    print(f"Checking the cluster behind {args.livy} (a small Livy session; takes a minute or two)...", flush=True)
    return 0 if doctor.print_verdicts(doctor.diagnose(args.livy, target)) else 1


def _dispatch(args) -> int:
    from fruits.cli import parse_value

    if args.emr_command == "setup":
        return _setup(args)
    if args.emr_command == "doctor":
        return _doctor(args)
    if args.emr_command == "users":
        return _users_command(args)
    if args.emr_command == "upload":
        with tempfile.TemporaryDirectory() as scratch:
            wheel = emr.build_wheel(Path(scratch))
            users = _users(args)
            plan = emr.upload_plan(bucket=args.bucket, prefix=args.prefix, wheel=wheel, users=users)
            requests = [{"Filename": local, "Bucket": args.bucket, "Key": key} for local, key in plan]
            markers = [{"Bucket": args.bucket, "Key": key, "Body": ""}
                       for key in emr.folder_markers(prefix=args.prefix, users=users)]
            if args.dry_run:
                _show("s3.upload_file", requests)
                _show("s3.put_object", markers)
                return 0
            s3 = emr.client("s3")
            for request in requests:
                s3.upload_file(**request)
                print(f"uploaded s3://{args.bucket}/{request['Key']}")
            for marker in markers:
                s3.put_object(**marker)
                print(f"folder marker s3://{args.bucket}/{marker['Key']}")
        return 0
    if args.emr_command == "create-cluster":
        from fruits import emr_users

        users = _users(args)
        emr.check_bucket(args.bucket)
        steps = [emr_users.users_step(bucket=args.bucket, prefix=args.prefix, region=emr_users.region_name(),
                                      users=users)] if users else None
        ssh_cidr = ssh_group = None
        if args.ssh_from:
            ssh_cidr = emr_access.check_ssh_options(ssh_from=args.ssh_from, subnet_id=args.subnet_id,
                                                    key_name=args.key_name)
            ssh_group = emr_access.group_placeholder(args.subnet_id)
        request = emr.run_job_flow_request(
            bucket=args.bucket, prefix=args.prefix, wheel=emr.wheel_name(__version__),
            key_name=args.key_name, subnet_id=args.subnet_id, spot_task=args.spot_task,
            idle_timeout=args.idle_timeout, additional_master_security_groups=[ssh_group] if ssh_group else None,
            steps=steps)
        if args.dry_run:
            if ssh_cidr or users:  # several calls: one JSON list of {"operation", "request"}
                ssh = emr_access.ssh_group_requests(subnet_id=args.subnet_id, cidr=ssh_cidr) if ssh_cidr else []
                print(json.dumps(ssh + emr_users.dry_run_operations(bucket=args.bucket, users=users)
                                 + [{"operation": "emr.run_job_flow", "request": request}], indent=2))
            else:
                _show("emr.run_job_flow", request)
            return 0
        if users:  # before the cluster: its step reads them, in the region they are created in
            secrets_client = emr.client("secretsmanager")
            emr_users.ensure_secrets(secrets_client, bucket=args.bucket, users=users)
            request["Steps"] = [emr_users.users_step(bucket=args.bucket, prefix=args.prefix,
                                                     region=secrets_client.meta.region_name, users=users)]
        if ssh_cidr:
            group_id = emr_access.ensure_ssh_group(emr.client("ec2"), subnet_id=args.subnet_id, cidr=ssh_cidr)
            request["Instances"]["AdditionalMasterSecurityGroups"] = [group_id]
        cluster_id = emr.client("emr").run_job_flow(**request)["JobFlowId"]
        print(f"cluster {cluster_id} starting; it terminates itself after {args.idle_timeout} s idle.")
        print(f"When it is WAITING (fruits emr status --cluster-id {cluster_id}): "
              f"fruits tunnel --cluster-id {cluster_id}, then open https://localhost:9443")
        if ssh_cidr:
            print(f"SSH is open from {ssh_cidr} only: fruits tunnel --key KEY.pem --host PRIMARY_DNS")
        if users:
            print(f"JupyterHub logins: {', '.join(users)} (jovyan is locked); each password: "
                  f"fruits emr users --bucket {args.bucket} --show NAME")
        if not args.subnet_id:
            print("note: no --subnet-id, so EMR picks a default-VPC subnet; AmazonEMRServicePolicy_v2 launches "
                  "only into a subnet and VPC tagged for-use-with-amazon-emr-managed-policies=true "
                  "(fruits emr setup --subnet-id tags them)")
        return 0
    if args.emr_command == "run":
        from fruits.storage.publish import new_run_id

        parameters = {name: parse_value(value) for name, value in args.parameter}
        parameters.setdefault("run_id", new_run_id())  # the run's folder: OUTPUT/runs/<run_id>/
        request = emr.notebook_step_request(
            cluster_id=args.cluster_id, bucket=args.bucket, prefix=args.prefix, input_path=args.input,
            output=args.output, parameters=parameters)
        if args.dry_run:
            _show("emr.add_job_flow_steps", request)
            return 0
        step = emr.client("emr").add_job_flow_steps(**request)["StepIds"][0]
        print(f"step {step} added to {args.cluster_id}; report: "
              f"{args.output.rstrip('/')}/runs/{parameters['run_id']}/report.html "
              f"(follow it: aws emr describe-step --cluster-id {args.cluster_id} --step-id {step})")
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


def _setup(args) -> int:
    """``fruits emr setup``: see ``fruits.emr_setup``."""
    from fruits import emr_setup

    emr.check_bucket(args.bucket)
    account = args.account_id
    if not account:
        try:
            account = emr_setup.account_id()
        except Exception as exc:  # no credentials: a dry run can still show the requests
            if not (args.dry_run or args.print_policy):
                raise ValueError(f"cannot tell the AWS account ({exc}); give --account-id or set credentials")
            account = emr_setup.UNKNOWN_ACCOUNT
            print(f"note: no AWS credentials ({exc.__class__.__name__}); the account id is shown as {account}",
                  file=sys.stderr)
    if args.print_policy:
        policy = (emr_setup.caller_policy(bucket=args.bucket, account=account) if args.print_policy == "caller"
                  else emr_setup.setup_policy(account=account))
        print(json.dumps(policy, indent=2))
        return 0
    if args.dry_run:
        steps = emr_setup.plan(bucket=args.bucket, prefix=args.prefix, account=account, subnet_id=args.subnet_id)
        print(json.dumps([{"operation": s.operation, "request": s.request} for s in steps], indent=2))
        return 0
    steps = emr_setup.plan(bucket=args.bucket, prefix=args.prefix, account=account, iam=emr.client("iam"),
                           ec2=emr.client("ec2") if args.subnet_id else None, subnet_id=args.subnet_id)
    try:
        changed = emr_setup.run(steps)
    except Exception as exc:  # botocore's ClientError, e.g. AccessDenied: say what to grant
        error = getattr(exc, "response", {}).get("Error")
        if not error:
            raise
        print(f"error: {error.get('Code')}: {error.get('Message')}\nThe administrator running setup needs: "
              f"fruits emr setup --bucket {args.bucket} --print-policy setup", file=sys.stderr)
        return 1
    if changed:
        print(f"{changed} change(s) made. Clusters use instance profile {emr_setup.INSTANCE_ROLE} and service "
              f"role {emr_setup.SERVICE_ROLE} (emr-config/cluster.json).")
    else:
        print("Nothing changed: every role, policy and profile was already in place.")
    print("People who launch clusters need iam:PassRole on both roles: "
          f"fruits emr setup --bucket {args.bucket} --print-policy caller")
    return 0
