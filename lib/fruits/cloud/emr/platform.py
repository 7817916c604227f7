"""AWS EMR as a :class:`~fruits.cloud.platform.SparkPlatform`: ``fruits emr upload | create-cluster | run | ...``.

Every verb takes ``--dry-run``: it prints the exact API requests as JSON and touches
nothing. Credentials and region come from the standard AWS environment (profile, instance
role, ``AWS_ENDPOINT_URL`` for an S3-compatible test server). The requests are built by
the modules beside this one, one job each:

- :mod:`~fruits.cloud.emr.deploy`: what ``upload`` copies, and where;
- :mod:`~fruits.cloud.emr.cluster`: the ``create-cluster`` request; :mod:`~fruits.cloud.emr.cost`: what
  featurizing N images on it costs (``--images``);
- :mod:`~fruits.cloud.emr.steps`: the step that runs the cloud notebook (``run``);
- :mod:`~fruits.cloud.emr.access`: ways into the primary node (SSM, opt-in SSH);
- :mod:`~fruits.cloud.emr.iam` and :mod:`~fruits.cloud.emr.users`: the account's roles and the
  JupyterHub logins, administered by the EMR-only verbs ``setup`` and ``users``
  (:mod:`~fruits.cloud.emr.account`).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from fruits import __version__
from fruits.cloud.emr import access, account, cluster, cost, deploy, network, steps, users
from fruits.cloud.emr.aws import check_bucket, client
from fruits.cloud.platform import SparkPlatform, show_request
from fruits.storage.publish import new_run_id


class EmrPlatform(SparkPlatform):
    """AWS EMR 7 with JupyterHub, Livy and the project's bootstrap action."""

    name = "emr"
    summary = "AWS EMR: setup, upload, create-cluster, users, run, status, terminate, doctor"
    verb_help = {
        **SparkPlatform.verb_help,
        "upload": "build the wheel; upload it, the bootstrap, configs and notebooks to S3",
        "create-cluster": "create the cluster described by emr-config/",
        "run": "add a step that runs the cloud notebook through the cluster's Livy (papermill, PySpark kernel)",
        "status": "status a cluster",
        "terminate": "terminate a cluster",
        "doctor": "check a live cluster through its Livy: Python, fruits, executors, engine, bucket",
    }

    def add_options(self, parsers, verbs) -> None:
        upload, create, run, doctor = (parsers[v] for v in ("upload", "create-cluster", "run", "doctor"))
        for sub in (upload, create, run):
            sub.add_argument("--bucket", required=True, help="bucket name (not a URI)")
            sub.add_argument("--prefix", default="fruits", help="key prefix in the bucket (default: fruits)")
        create.add_argument("--key-name", help="EC2 key pair, only for opt-in SSH (--ssh-from)")
        create.add_argument("--subnet-id",
                            help="required: the subnet to launch in, tagged by `fruits emr setup --subnet-id` "
                                 "(a private subnet with SSM is best)")
        create.add_argument("--spot-task", action="store_true", help="buy the task node on the spot market")
        create.add_argument("--idle-timeout", type=int, default=3600,
                            help="auto-terminate after this many idle seconds (default 3600); Livy ends a notebook "
                                 "session after as long without a statement, so a forgotten cluster ends within "
                                 "about twice this")
        create.add_argument("--images", type=int, metavar="N",
                            help="print what featurizing N images costs on this cluster (and 1 M, 10 M), on stderr: "
                                 "hours and USD from a recorded run and emr-config/prices.json")
        create.add_argument("--measurement", metavar="JSON", action="append",
                            help="a recorded run the rate comes from, repeatable: the range spans the fastest "
                                 "and the slowest given (default: "
                                 f"{' and '.join(path for path, _ in cost.MEASUREMENTS)})")
        create.add_argument("--prices", metavar="JSON", help="the price file (default: emr-config/prices.json)")
        create.add_argument("--ssh-from", metavar="CIDR",
                            help="opt-in: allow SSH (tcp 22) to the primary node from this one address (/32, at "
                                 "most a /24); needs --key-name and --subnet-id. Default: no inbound rule, use "
                                 "fruits tunnel")
        doctor.add_argument("--bucket", required=True, help="bucket name (not a URI) the cluster must read and write")
        doctor.add_argument("--prefix", default="fruits",
                            help="key prefix the probe is written under (default: fruits)")
        for sub in (upload, create):
            account.add_user_options(sub)
        account.add_verbs(verbs)

    def verbs(self):
        return {**super().verbs(), "setup": account.setup, "users": account.users_command}

    def storage_location(self, args) -> str:
        check_bucket(args.bucket)
        return f"s3://{args.bucket}/{args.prefix.strip('/')}"

    def deploy(self, args) -> int:
        with tempfile.TemporaryDirectory() as scratch:
            wheel = deploy.build_wheel(Path(scratch))
            names = account.named_users(args)
            plan = deploy.upload_plan(bucket=args.bucket, prefix=args.prefix, wheel=wheel, scratch=Path(scratch),
                                      users=names)
            requests = [{"Filename": local, "Bucket": args.bucket, "Key": key} for local, key in plan]
            markers = [{"Bucket": args.bucket, "Key": key, "Body": ""}
                       for key in deploy.folder_markers(prefix=args.prefix, users=names)]
            if args.dry_run:
                show_request("s3.upload_file", requests)
                show_request("s3.put_object", markers)
                return 0
            s3 = client("s3")
            for request in requests:
                s3.upload_file(**request)
                print(f"uploaded s3://{args.bucket}/{request['Key']}")
            for marker in markers:
                s3.put_object(**marker)
                print(f"folder marker s3://{args.bucket}/{marker['Key']}")
        return 0

    def create_cluster(self, args) -> int:
        names = account.named_users(args)
        check_bucket(args.bucket)
        network.check_subnet_id(args.subnet_id)  # before anything is printed or created
        users_steps = [users.users_step(bucket=args.bucket, prefix=args.prefix, region=users.region_name(),
                                        users=names)] if names else None
        ssh_cidr = ssh_group = None
        if args.ssh_from:
            ssh_cidr = access.check_ssh_options(ssh_from=args.ssh_from, subnet_id=args.subnet_id,
                                                key_name=args.key_name)
            ssh_group = access.group_placeholder(args.subnet_id)
        request = cluster.run_job_flow_request(
            bucket=args.bucket, prefix=args.prefix, wheel=cluster.wheel_name(__version__),
            key_name=args.key_name, subnet_id=args.subnet_id, spot_task=args.spot_task,
            idle_timeout=args.idle_timeout, additional_master_security_groups=[ssh_group] if ssh_group else None,
            steps=users_steps)
        request["Instances"].update({"Ec2SubnetId": args.subnet_id, **network.group_placeholders(args.subnet_id)})
        estimate = self.cost_estimate(args, request) if args.images is not None else None
        if args.dry_run:
            if ssh_cidr or names:  # several calls: one JSON list of {"operation", "request"}
                ssh = access.ssh_group_requests(subnet_id=args.subnet_id, cidr=ssh_cidr) if ssh_cidr else []
                print(json.dumps(ssh + users.dry_run_operations(bucket=args.bucket, users=names)
                                 + [{"operation": "emr.run_job_flow", "request": request}], indent=2))
            else:
                show_request("emr.run_job_flow", request)
            if estimate:
                print(estimate, file=sys.stderr)
            return 0
        if estimate:
            print(estimate, file=sys.stderr)
        ec2 = client("ec2")
        for key in network.GROUPS:  # the placeholders shown by --dry-run
            request["Instances"].pop(key, None)
        request["Instances"].update(network.launch_network(ec2, args.subnet_id).instance_attributes())
        if names:  # before the cluster: its step reads them, in the region they are created in
            secrets_client = client("secretsmanager")
            users.ensure_secrets(secrets_client, bucket=args.bucket, users=names)
            request["Steps"] = [users.users_step(bucket=args.bucket, prefix=args.prefix,
                                                 region=secrets_client.meta.region_name, users=names)]
        if ssh_cidr:
            group_id = access.ensure_ssh_group(ec2, subnet_id=args.subnet_id, cidr=ssh_cidr)
            request["Instances"]["AdditionalMasterSecurityGroups"] = [group_id]
        cluster_id = client("emr").run_job_flow(**request)["JobFlowId"]
        print(f"cluster {cluster_id} starting; it terminates itself after {args.idle_timeout} s idle.")
        print(f"When it is WAITING (fruits emr status --cluster-id {cluster_id}): "
              f"fruits tunnel --cluster-id {cluster_id}, then open https://localhost:9443")
        if ssh_cidr:
            print(f"SSH is open from {ssh_cidr} only: fruits tunnel --key KEY.pem --host PRIMARY_DNS")
        if names:
            print(f"JupyterHub logins: {', '.join(names)} (jovyan is locked); each password: "
                  f"fruits emr users --bucket {args.bucket} --show NAME")
        return 0

    @staticmethod
    def cost_estimate(args, request: dict) -> str:
        """The ``--images`` estimate for ``request`` (stderr: stdout stays the request's JSON)."""
        if args.images <= 0:
            raise ValueError(f"--images must be a positive number of images, got {args.images}")
        found = cost.estimate(request, cost.sizes(args.images), measurements=cost.read_measurements(args.measurement),
                              prices=cost.load_prices(args.prices))
        return cost.render(found)

    def run_notebook(self, args) -> int:

        input_path, output, parameters = self.run_parameters(args)
        parameters.setdefault("run_id", new_run_id())  # the run's folder: OUTPUT/runs/<run_id>/
        request = steps.notebook_step_request(
            cluster_id=args.cluster_id, bucket=args.bucket, prefix=args.prefix, input_path=input_path,
            output=output, parameters=parameters)
        if args.dry_run:
            show_request("emr.add_job_flow_steps", request)
            return 0
        step = client("emr").add_job_flow_steps(**request)["StepIds"][0]
        print(f"step {step} added to {args.cluster_id}; report: "
              f"{output.rstrip('/')}/runs/{parameters['run_id']}/report.html "
              f"(follow it: aws emr describe-step --cluster-id {args.cluster_id} --step-id {step})")
        return 0

    def status(self, args) -> int:
        request = {"ClusterId": args.cluster_id}
        if args.dry_run:
            show_request("emr.describe_cluster", request)
            return 0
        described = client("emr").describe_cluster(**request)["Cluster"]
        print(json.dumps({"state": described["Status"]["State"],
                          "primary_dns": described.get("MasterPublicDnsName"),
                          "release": described.get("ReleaseLabel")}, indent=2))
        return 0

    def terminate(self, args) -> int:
        request = {"JobFlowIds": [args.cluster_id]}
        if args.dry_run:
            show_request("emr.terminate_job_flows", request)
            return 0
        client("emr").terminate_job_flows(**request)
        print(f"cluster {args.cluster_id} terminating")
        return 0

    def forward_command(self, cluster_id: str, *, port: int, local_port: int) -> list[str]:
        """An SSM Session Manager port forward to the primary node: no inbound rule, no key pair."""
        emr = client("emr")
        instance = access.primary_instance_id(emr, cluster_id)
        return access.ssm_port_forward_command(instance, port=port, local_port=local_port,
                                               region=emr.meta.region_name)
