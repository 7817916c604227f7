"""Every policy the project prints covers exactly what its command calls (issue 24).

Each command (``setup``, ``upload``, ``create-cluster``, ``run``, ``users``, ``status``,
``tunnel``, ``doctor``, ``terminate``) runs against moto with botocore's ``before-parameter-build`` event
recording every API request it sends (:mod:`tests.record_aws_calls`). Each request becomes the
IAM actions and resource ARNs AWS authorizes it against (:func:`iam_requests`), plus the actions
AWS authorizes *inside* some calls, which moto cannot show (:data:`IMPLIED`, each with its AWS
page). The test then asserts that the policy for that role grants each of them
(:mod:`tests.iam_policy`: IAM's wildcard matching; conditions are asserted by their own tests),
that no policy grants ``*`` actions, that ``"Resource": "*"`` appears only where AWS offers no
resource-level permission (:data:`RESOURCE_STAR_JUSTIFIED`), and that each granted action is
either called or listed, with its reason, in :data:`GRANTED_NOT_CALLED`.

Roles and the policies that speak for them:
- the administrator running ``setup``: ``fruits emr setup --print-policy setup``;
- the person who uploads, launches, runs, tunnels: ``--print-policy caller``;
- the cluster instances: ``emr-config/iam-instance-policy.json`` (bootstrap downloads, and the
  doctor's bucket probe, run here through s3fs with the same event hook);
- the EMR service role: ``AmazonEMRServicePolicy_v2`` (AWS's) plus our pass-role statement.

What moto cannot serve, recorded as what would be called: ``fruits tunnel`` shells out to
``aws ssm start-session`` (StartSession on the instance and the document, then the Session
Manager plugin opens the data channel: ``ssmmessages:OpenDataChannel``, and ends it with
``ssm:TerminateSession``), and the bootstrap's ``aws s3 cp`` runs on the nodes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fruits.cloud.emr import iam as emr_iam
from tests.conftest import moto_server
from tests.iam_policy import allowing, as_list, check_shape, statements

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "fruits-coverage-bucket"
ACCOUNT = "123456789012"  # moto's account
REGION = "eu-west-3"
ME = "203.0.113.7"
#: The ids of resources a call creates, known only after it (AWS authorizes against the new ARN).
NEW = "NEW"

#: Actions AWS authorizes inside a call, which a recorder of requests cannot see.
IMPLIED = {
    # RunJobFlow with Tags needs AddTags on the new cluster (EMR, April 2023):
    # https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-plan-access-iam.html
    ("elasticmapreduce", "RunJobFlow", "Tags"): [("elasticmapreduce:AddTags", "cluster")],
    # The request always carries an AutoTerminationPolicy: EMR checks PutAutoTerminationPolicy
    # (https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-auto-termination-policy.html).
    ("elasticmapreduce", "RunJobFlow", "AutoTerminationPolicy"): [
        ("elasticmapreduce:PutAutoTerminationPolicy", "cluster")],
    # Naming a role passes it: iam:PassRole on each
    # (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html).
    ("elasticmapreduce", "RunJobFlow", "ServiceRole"): [("iam:PassRole", "ServiceRole")],
    ("elasticmapreduce", "RunJobFlow", "JobFlowRole"): [("iam:PassRole", "JobFlowRole")],
    ("iam", "AddRoleToInstanceProfile", "RoleName"): [("iam:PassRole", "RoleName")],
    # Tags given at creation are authorized as tagging actions too.
    ("iam", "CreateRole", "Tags"): [("iam:TagRole", "RoleName")],
    ("iam", "CreateInstanceProfile", "Tags"): [("iam:TagInstanceProfile", "InstanceProfileName")],
    ("secretsmanager", "CreateSecret", "Tags"): [("secretsmanager:TagResource", "Name")],
    ("ec2", "CreateSecurityGroup", "TagSpecifications"): [("ec2:CreateTags", "security-group")],
}

#: ``"Resource": "*"`` only for these actions, and why (Service Authorization Reference:
#: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html and
#: .../list_amazonelasticmapreduce.html, column "Resource types" empty for them).
RESOURCE_STAR_JUSTIFIED = {
    "ec2:DescribeSubnets": "EC2 Describe* actions support no resource-level permissions",
    "ec2:DescribeVpcs": "EC2 Describe* actions support no resource-level permissions",
    "ec2:DescribeSecurityGroups": "EC2 Describe* actions support no resource-level permissions",
    "ec2:DescribeSecurityGroupRules": "EC2 Describe* actions support no resource-level permissions",
    "ec2:DescribeRouteTables": "EC2 Describe* actions support no resource-level permissions",
    "elasticmapreduce:RunJobFlow": "no resource type: the cluster does not exist yet (scoped by request tags)",
}

#: Granted but not called by any command here, and why each stays.
GRANTED_NOT_CALLED = {
    "caller": {
        "elasticmapreduce:ListBootstrapActions": "read a cluster's bootstrap (aws emr list-bootstrap-actions)",
        "elasticmapreduce:ListSteps": "follow `fruits emr run` (its message names aws emr describe-step)",
        "elasticmapreduce:DescribeStep": "follow `fruits emr run`: its message prints aws emr describe-step",
        "iam:CreateServiceLinkedRole": "EMR creates AWSServiceRoleForEMRCleanup at an account's first RunJobFlow",
        "s3:GetBucketLocation": "the AWS CLI and s3fs ask it before reaching a bucket in another region",
        "s3:GetObject": "read the reports and outputs a run wrote (report.html, manifest.json)",
        "s3:DeleteObject": "remove an upload or run output from the bucket",
        "s3:AbortMultipartUpload": "upload_file uses multipart above 8 MB and aborts a failed one",
        "s3:ListMultipartUploadParts": "upload_file's multipart uploads above 8 MB",
        "ssm:ResumeSession": "the Session Manager plugin resumes a dropped port forward",
        "ec2:RevokeSecurityGroupIngress": "`--ssh-from` with a new address replaces the old rule",
        "s3:ListBucket": "list the outputs of a run (aws s3 ls)",
    },
    "setup": {
        "iam:UpdateAssumeRolePolicy": "a trust policy from an older version is updated in place",
    },
    "instance": {
        "s3:AbortMultipartUpload": "Spark's S3 committer aborts failed multipart writes",
        "s3:ListMultipartUploadParts": "Spark's S3 committer lists the parts of multipart writes",
        "s3:GetBucketLocation": "S3A and the AWS CLI ask it before reaching the bucket",
        "secretsmanager:GetSecretValue": "the JupyterHub users step (bootstrap/jupyterhub-users.sh) reads passwords",
    },
}


def cluster_arn(cluster_id: str) -> str:
    return f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/{cluster_id}"


def ec2_arn(resource_id: str) -> str:
    kind = {"subnet": "subnet", "vpc": "vpc", "sg": "security-group", "i": "instance"}[resource_id.split("-")[0]]
    return f"arn:aws:ec2:{REGION}:{ACCOUNT}:{kind}/{resource_id}"


S3_ACTIONS = {  # operation -> (IAM action, on the bucket or on the object)
    "PutObject": ("s3:PutObject", "object"), "CreateMultipartUpload": ("s3:PutObject", "object"),
    "UploadPart": ("s3:PutObject", "object"), "CompleteMultipartUpload": ("s3:PutObject", "object"),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", "object"), "ListParts": ("s3:ListMultipartUploadParts", "object"),
    "GetObject": ("s3:GetObject", "object"), "HeadObject": ("s3:GetObject", "object"),
    "DeleteObject": ("s3:DeleteObject", "object"), "CopyObject": ("s3:PutObject", "object"),
    "ListObjectsV2": ("s3:ListBucket", "bucket"), "ListObjects": ("s3:ListBucket", "bucket"),
    "HeadBucket": ("s3:ListBucket", "bucket"), "GetBucketLocation": ("s3:GetBucketLocation", "bucket"),
}


def iam_requests(call: dict) -> list[tuple[str, str | None]]:
    """The (IAM action, resource ARN or None for "not resource-scoped") pairs one API call needs."""
    service, operation, params = call["service"], call["operation"], call["params"]
    if service == "sts" and operation == "GetCallerIdentity":
        return []  # "No permissions are required to perform this operation" (STS API reference)
    action = f"{service}:{operation}"
    if service == "s3":
        action, on = S3_ACTIONS[operation]
        bucket = f"arn:aws:s3:::{params['Bucket']}"
        needed = [(action, bucket if on == "bucket" else f"{bucket}/{params['Key']}")]
    elif service == "elasticmapreduce":
        ids = as_list(params.get("ClusterId") or params.get("JobFlowId") or params.get("JobFlowIds") or [])
        needed = [(action, cluster_arn(i)) for i in ids] or [(action, None)]
    elif service == "iam":
        if "InstanceProfileName" in params:
            needed = [(action, f"arn:aws:iam::{ACCOUNT}:instance-profile/{params['InstanceProfileName']}")]
        else:
            needed = [(action, f"arn:aws:iam::{ACCOUNT}:role/{params['RoleName']}")]
    elif service == "secretsmanager":
        name = params.get("SecretId") or params["Name"]
        needed = [(action, f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf")]
    elif service == "ec2":
        if operation.startswith("Describe"):
            needed = [(action, None)]
        elif operation == "CreateTags":
            needed = [(action, ec2_arn(r)) for r in params["Resources"]]
        elif operation == "CreateSecurityGroup":
            needed = [(action, ec2_arn(f"sg-{NEW}")), (action, ec2_arn(params["VpcId"]))]
        else:  # rules of one group
            needed = [(action, ec2_arn(params["GroupId"]))]
    else:
        raise AssertionError(f"no IAM mapping for {service}.{operation}: add it")
    for (svc, op, key), implied in IMPLIED.items():
        if (svc, op) == (service, operation) and key in params:
            for implied_action, what in implied:
                needed.append((implied_action, implied_resource(what, params)))
    return needed


def implied_resource(what: str, params: dict) -> str:
    if what == "cluster":
        return cluster_arn(f"j-{NEW}")
    if what in ("ServiceRole", "JobFlowRole", "RoleName"):
        return f"arn:aws:iam::{ACCOUNT}:role/{params[what]}"
    if what == "InstanceProfileName":
        return f"arn:aws:iam::{ACCOUNT}:instance-profile/{params[what]}"
    if what == "Name":
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{params['Name']}-AbCdEf"
    if what == "security-group":
        return ec2_arn(f"sg-{NEW}")
    raise AssertionError(what)


def ssm_port_forward_requests(command: list[str]) -> list[tuple[str, str | None]]:
    """What ``aws ssm start-session`` and the Session Manager plugin call, from the printed command.

    https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-restrict-access-quickstart.html
    """
    assert command[:3] == ["aws", "ssm", "start-session"], command
    target = command[command.index("--target") + 1]
    document = command[command.index("--document-name") + 1]
    session = f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/AIDACALLER-0123456789abcdef0"
    return [("ssm:StartSession", ec2_arn(target)),
            ("ssm:StartSession", f"arn:aws:ssm:{REGION}::document/{document}"),
            ("ssmmessages:OpenDataChannel", session),
            ("ssm:TerminateSession", session)]


@pytest.fixture(scope="module")
def moto():
    with moto_server(MOTO_IAM_LOAD_MANAGED_POLICIES="true") as endpoint:
        yield endpoint


def recorded(tmp_path: Path, *command: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    out = tmp_path / f"calls-{len(list(tmp_path.glob('calls-*')))}.jsonl"
    result = subprocess.run([sys.executable, "-m", "tests.record_aws_calls", str(out), *command], cwd=ROOT,
                            capture_output=True, text=True, env=dict(os.environ), timeout=300)
    calls = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return result, calls


@pytest.fixture(scope="module")
def calls_by_command(moto, tmp_path_factory):
    """Every command run once on a fresh moto account; {command: [(role, action, resource), ...]}."""
    import boto3

    tmp = tmp_path_factory.mktemp("calls")
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.70.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.70.1.0/24")["Subnet"]["SubnetId"]
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    found: dict[str, list[tuple[str, str, str | None]]] = {}

    def run(name: str, role: str, *command: str) -> subprocess.CompletedProcess:
        result, calls = recorded(tmp, *command)
        assert result.returncode == 0, (command, result.stderr[-3000:])
        found.setdefault(name, []).extend((role, a, r) for call in calls for a, r in iam_requests(call))
        found.setdefault(f"{name} (API calls)", []).extend((role, f"{c['service']}.{c['operation']}", None)
                                                           for c in calls)
        return result

    run("setup", "setup", "emr", "setup", "--bucket", BUCKET, "--subnet-id", subnet)
    run("setup", "setup", "emr", "setup", "--bucket", BUCKET, "--subnet-id", subnet)  # the second run reads only
    run("upload", "caller", "emr", "upload", "--bucket", BUCKET, "--users", "alice")
    created = run("create-cluster", "caller", "emr", "create-cluster", "--bucket", BUCKET, "--subnet-id", subnet,
                  "--users", "alice", "--key-name", "k", "--ssh-from", ME)
    cluster_id = re.search(r"^cluster (j-\S+) starting", created.stdout, re.M).group(1)
    run("run", "caller", "emr", "run", "--cluster-id", cluster_id, "--bucket", BUCKET,
        "--input", f"s3://{BUCKET}/images", "--output", f"s3://{BUCKET}/runs/one")
    run("users", "caller", "emr", "users", "--bucket", BUCKET, "--users", "bob", "--cluster-id", cluster_id)
    run("users", "caller", "emr", "users", "--bucket", BUCKET, "--show", "alice")
    run("users", "caller", "emr", "users", "--bucket", BUCKET, "--rotate", "alice")
    run("status", "caller", "emr", "status", "--cluster-id", cluster_id)
    tunnel = run("tunnel", "caller", "tunnel", "--cluster-id", cluster_id, "--dry-run")
    found["tunnel"] += [("caller", a, r) for a, r in ssm_port_forward_requests(shlex.split(tunnel.stdout.splitlines()[0]))]
    doctor, doctor_calls = recorded(tmp, "emr", "doctor", "--bucket", BUCKET, "--livy", "http://127.0.0.1:9")
    assert doctor.returncode == 1 and "FAIL  Livy answers at http://127.0.0.1:9" in doctor.stdout
    assert doctor_calls == [], "the doctor reaches the cluster through Livy only; the caller makes no AWS call"
    found["doctor"] = [("instance", a, r) for a, r in doctor_bucket_probe()]
    found["bootstrap"] = [("instance", a, r) for a, r in bootstrap_downloads(created_wheel())]
    run("terminate", "caller", "emr", "terminate", "--cluster-id", cluster_id)
    found["emr service (passes the instance role to EC2)"] = [
        ("service", "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/{emr_iam.INSTANCE_ROLE}")]
    return found


def created_wheel() -> str:
    from fruits import __version__
    from fruits.cloud.emr.cluster import wheel_name

    return wheel_name(__version__)


def bootstrap_downloads(wheel: str) -> list[tuple[str, str]]:
    """``aws s3 cp`` of ``bootstrap/install-fruits.sh`` on every node (the instance role), read from the script."""
    script = (ROOT / "bootstrap" / "install-fruits.sh").read_text()
    names = re.findall(r'aws s3 cp [^\n]*"\$artifacts/([^"]+)"', script)
    assert len(names) >= 3, names
    files = [name.replace("$wheel", wheel) for name in names]
    base = f"arn:aws:s3:::{BUCKET}/fruits"
    # EMR itself fetches the bootstrap script, and writes the logs, with the instance profile too.
    return ([("s3:GetObject", f"{base}/dist/{name}") for name in files]
            + [("s3:GetObject", f"{base}/bootstrap/install-fruits.sh"), ("s3:PutObject", f"{base}/logs/j-1/node.log")])


def doctor_bucket_probe() -> list[tuple[str, str | None]]:
    """The doctor's bucket checks, run here against moto through s3fs with the before-call hook."""
    import s3fs

    from fruits.cloud import doctor

    calls: list[dict] = []
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.connect()
    fs.s3.meta.events.register("before-parameter-build", lambda model, params, **_: calls.append(
        {"service": model.service_model.endpoint_prefix, "operation": model.name, "params": params}))
    doctor._readable(f"s3://{BUCKET}/fruits")
    doctor._writable(f"s3://{BUCKET}/fruits")
    assert calls, "s3fs sent nothing through the hooked client"
    return [pair for call in calls for pair in iam_requests(call)]


def policies() -> dict[str, dict]:
    documents = emr_iam.policy_documents(bucket=BUCKET, account=ACCOUNT)
    return {"caller": emr_iam.caller_policy(bucket=BUCKET, account=ACCOUNT),
            "setup": emr_iam.setup_policy(account=ACCOUNT),
            "instance": documents["iam-instance-policy"],
            "service": documents["iam-service-pass-instance-role"]}


VARIABLES = {"aws:userid": "AIDACALLER"}
COMMANDS = ["setup", "upload", "create-cluster", "run", "users", "status", "tunnel", "doctor", "bootstrap",
            "terminate", "emr service (passes the instance role to EC2)"]


@pytest.mark.parametrize("command", COMMANDS)
def test_each_policy_grants_what_its_command_calls(calls_by_command, command):
    documents = policies()
    missing = [(role, action, resource) for role, action, resource in calls_by_command[command]
               if not allowing(documents[role], action, resource, variables=VARIABLES)]
    assert not missing, f"{command}: the {missing[0][0]} policy does not grant {missing}"


def test_the_printed_policies_are_the_ones_checked(moto):
    for role in ("caller", "setup"):
        printed = subprocess.run([sys.executable, "-m", "fruits.cli", "emr", "setup", "--bucket", BUCKET,
                                  "--account-id", ACCOUNT, "--print-policy", role], cwd=ROOT, capture_output=True,
                                 text=True, env=dict(os.environ), timeout=120)
        assert printed.returncode == 0, printed.stderr
        assert json.loads(printed.stdout) == policies()[role]


def test_no_policy_grants_wildcard_actions_or_resources_it_does_not_need():
    for role, document in policies().items():
        check_shape(document)
        for statement in statements(document):
            actions = as_list(statement["Action"])
            assert not [a for a in actions if "*" in a or "?" in a], (role, statement)
            if "*" in as_list(statement["Resource"]):
                unjustified = [a for a in actions if a not in RESOURCE_STAR_JUSTIFIED]
                assert not unjustified, f"{role}: Resource * for {unjustified} ({statement.get('Sid')})"


def test_every_granted_action_is_called_or_its_reason_listed(calls_by_command):
    called: dict[str, set[str]] = {}
    for command, entries in calls_by_command.items():
        for role, action, _ in entries:
            called.setdefault(role, set()).add(action.lower())
    for role, document in policies().items():
        granted = {a for s in statements(document) for a in as_list(s["Action"])}
        unused = {a for a in granted if a.lower() not in called.get(role, set())}
        assert unused == set(GRANTED_NOT_CALLED.get(role, {})), (
            f"{role}: granted but never called (remove, or list with its reason): "
            f"{sorted(unused - set(GRANTED_NOT_CALLED.get(role, {})))}; "
            f"listed but now called or no longer granted: {sorted(set(GRANTED_NOT_CALLED.get(role, {})) - unused)}")


def test_the_recorder_sees_the_calls_of_every_command(calls_by_command):
    """A recorder that saw nothing would make every coverage test pass: each command's calls are seen."""
    api = {name: {action for _, action, _ in entries}
           for name, entries in calls_by_command.items() if name.endswith("(API calls)")}
    assert {"ec2.DescribeVpcs", "ec2.CreateSecurityGroup", "iam.CreateRole"} <= api["setup (API calls)"]
    assert "s3.PutObject" in api["upload (API calls)"]
    assert {"elasticmapreduce.RunJobFlow", "ec2.DescribeSubnets", "secretsmanager.CreateSecret"} <= api[
        "create-cluster (API calls)"]
    assert api["run (API calls)"] == {"elasticmapreduce.AddJobFlowSteps"}
    assert api["terminate (API calls)"] == {"elasticmapreduce.TerminateJobFlows"}
    assert api["tunnel (API calls)"] == {"elasticmapreduce.ListInstances"}
