"""``fruits emr setup``: the project's IAM roles, created idempotently, tested on moto's IAM server.

moto accepts any policy, so the least-privilege checks read the documents themselves: the
instance role reaches one bucket, the service role trusts EMR for this account only and may pass
only the project's instance role, the caller policy passes exactly the two roles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from fruits.cloud.emr import iam as emr_iam
from tests.conftest import moto_server

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "fruits-setup-bucket"
MOTO_ACCOUNT = "123456789012"  # moto's default account id
def reset(endpoint: str) -> None:
    """Empty every moto backend, so a test starts from a fresh account."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).read()


@pytest.fixture(scope="module")
def moto_iam():
    """A moto server that knows the AWS managed policies (AmazonEMRServicePolicy_v2, ...)."""
    with moto_server(MOTO_IAM_LOAD_MANAGED_POLICIES="true") as endpoint:
        yield endpoint


@pytest.fixture
def fresh_account(moto_iam):
    reset(moto_iam)
    return moto_iam


def fruits(*args):
    return subprocess.run([sys.executable, "-m", "fruits.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


def subnet_in_new_vpc():
    import boto3

    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    return ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"], vpc


def iam_state():
    """Everything setup may create, as comparable data."""
    import boto3

    iam = boto3.client("iam")
    roles = sorted(r["RoleName"] for r in iam.list_roles()["Roles"])
    state = {"roles": roles,
             "profiles": sorted((p["InstanceProfileName"], tuple(r["RoleName"] for r in p["Roles"]))
                                for p in iam.list_instance_profiles()["InstanceProfiles"])}
    for name in roles:
        state[name] = {
            "trust": iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"],
            "inline": {p: iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
                       for p in iam.list_role_policies(RoleName=name)["PolicyNames"]},
            "attached": sorted(p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]),
        }
    return state


def statements(document):
    return document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]


def as_list(value):
    return value if isinstance(value, list) else [value]


def test_setup_creates_both_roles_the_profile_and_the_tags(fresh_account):
    import boto3

    subnet, vpc = subnet_in_new_vpc()
    result = fruits("emr", "setup", "--bucket", BUCKET, "--subnet-id", subnet)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "created:" in result.stdout and "iam:PassRole" in result.stdout
    state = iam_state()
    instance, service = state[emr_iam.INSTANCE_ROLE], state[emr_iam.SERVICE_ROLE]
    assert state["profiles"] == [(emr_iam.INSTANCE_ROLE, (emr_iam.INSTANCE_ROLE,))]

    assert [s["Principal"] for s in statements(instance["trust"])] == [{"Service": "ec2.amazonaws.com"}]
    assert instance["attached"] == [emr_iam.SSM_CORE_ARN]
    bucket_policy = instance["inline"][emr_iam.INSTANCE_POLICY_NAME]
    assert {r for s in statements(bucket_policy) for r in as_list(s["Resource"])} == {
        f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*", secret_arns(MOTO_ACCOUNT)}

    (trust,) = statements(service["trust"])
    assert trust["Principal"] == {"Service": "elasticmapreduce.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": MOTO_ACCOUNT},
                                  "ArnLike": {"aws:SourceArn": f"arn:aws:elasticmapreduce:*:{MOTO_ACCOUNT}:*"}}
    assert service["attached"] == [emr_iam.EMR_SERVICE_V2_ARN]
    (pass_role,) = statements(service["inline"][emr_iam.PASS_ROLE_POLICY_NAME])
    assert pass_role["Action"] == "iam:PassRole"
    assert pass_role["Resource"] == f"arn:aws:iam::{MOTO_ACCOUNT}:role/{emr_iam.INSTANCE_ROLE}"
    assert pass_role["Condition"] == {"StringLike": {"iam:PassedToService": "ec2.amazonaws.com*"}}

    ec2 = boto3.client("ec2")
    tag = {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}
    assert tag in ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["Tags"]
    assert tag in ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Tags"]


def test_a_second_setup_changes_nothing_and_says_so(fresh_account):
    subnet, _ = subnet_in_new_vpc()
    first = fruits("emr", "setup", "--bucket", BUCKET, "--subnet-id", subnet)
    assert first.returncode == 0, first.stderr[-3000:]
    before = iam_state()
    second = fruits("emr", "setup", "--bucket", BUCKET, "--subnet-id", subnet)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Nothing changed" in second.stdout
    assert "created:" not in second.stdout and "updated:" not in second.stdout
    assert second.stdout.count("in place:") == 12  # 8 IAM steps, the network tags and 3 security groups
    assert iam_state() == before


def test_an_outdated_trust_policy_is_updated_not_duplicated(fresh_account):
    import boto3

    iam = boto3.client("iam")
    old = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                   "Principal": {"Service": "elasticmapreduce.amazonaws.com"}}]}
    iam.create_role(RoleName=emr_iam.SERVICE_ROLE, AssumeRolePolicyDocument=json.dumps(old))
    result = fruits("emr", "setup", "--bucket", BUCKET)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line.split() for line in result.stdout.splitlines() if line.startswith("updated:")] == [
        ["updated:", "trust", "policy", "of", "role", emr_iam.SERVICE_ROLE]]
    (trust,) = statements(iam_state()[emr_iam.SERVICE_ROLE]["trust"])
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": MOTO_ACCOUNT}
    assert "Nothing changed" in fruits("emr", "setup", "--bucket", BUCKET).stdout


def test_setup_dry_run_prints_the_requests_and_touches_nothing(fresh_account):
    subnet, _ = subnet_in_new_vpc()
    before = iam_state()
    result = fruits("emr", "setup", "--bucket", BUCKET, "--subnet-id", subnet, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout)
    assert [p["operation"] for p in printed] == [
        "iam.create_role", "iam.put_role_policy", "iam.attach_role_policy", "iam.create_instance_profile",
        "iam.add_role_to_instance_profile", "iam.create_role", "iam.attach_role_policy", "iam.put_role_policy",
        "ec2.create_tags", "ec2.create_security_group", "ec2.create_security_group", "ec2.create_security_group"]
    assert {p["request"].get("RoleName") for p in printed if p["operation"] == "iam.create_role"} == {
        emr_iam.INSTANCE_ROLE, emr_iam.SERVICE_ROLE}
    assert MOTO_ACCOUNT in printed[5]["request"]["AssumeRolePolicyDocument"]
    assert iam_state() == before == {"roles": [], "profiles": []}
    import boto3

    assert not boto3.client("ec2").describe_subnets(SubnetIds=[subnet])["Subnets"][0].get("Tags")
    assert not boto3.client("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["fruits-emr-primary"]}])["SecurityGroups"]


def secret_arns(account):
    """The JupyterHub passwords of the bucket (any region: IAM is global, the bucket name is unique)."""
    return f"arn:aws:secretsmanager:*:{account}:secret:fruits-emr/{BUCKET}/jupyterhub/*"


def test_instance_policy_grants_the_project_bucket_only():
    docs = emr_iam.policy_documents(bucket=BUCKET, account=MOTO_ACCOUNT)
    for statement in statements(docs["iam-instance-policy"]):
        actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
        assert statement["Effect"] == "Allow" and "Condition" not in statement
        if actions == ["secretsmanager:GetSecretValue"]:  # the JupyterHub users step
            assert resources == [secret_arns(MOTO_ACCOUNT)]
            continue
        assert all(a.startswith("s3:") and "*" not in a for a in actions), actions
        assert resources and all(r in (f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*") for r in resources)
    rest = json.dumps(docs["iam-instance-policy"]).replace(f"{BUCKET}/*", "").replace(secret_arns(MOTO_ACCOUNT), "")
    assert "*" not in rest


def test_service_role_trusts_emr_of_this_account_and_passes_only_the_instance_role():
    docs = emr_iam.policy_documents(bucket=BUCKET, account="111122223333")
    (trust,) = statements(docs["iam-service-trust"])
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == "111122223333"
    assert trust["Condition"]["ArnLike"]["aws:SourceArn"] == "arn:aws:elasticmapreduce:*:111122223333:*"
    (pass_role,) = statements(docs["iam-service-pass-instance-role"])
    assert pass_role["Resource"] == f"arn:aws:iam::111122223333:role/{emr_iam.INSTANCE_ROLE}"


def test_caller_policy_passes_exactly_the_two_project_roles():
    result = fruits("emr", "setup", "--bucket", BUCKET, "--account-id", "111122223333", "--print-policy", "caller")
    assert result.returncode == 0, result.stderr
    policy = json.loads(result.stdout)
    passes = [s for s in statements(policy) if "iam:PassRole" in as_list(s["Action"])]
    assert {(s["Resource"], s["Condition"]["StringLike"]["iam:PassedToService"]) for s in passes} == {
        (f"arn:aws:iam::111122223333:role/{emr_iam.SERVICE_ROLE}", "elasticmapreduce.amazonaws.com*"),
        (f"arn:aws:iam::111122223333:role/{emr_iam.INSTANCE_ROLE}", "ec2.amazonaws.com*")}
    (create,) = [s for s in statements(policy) if "elasticmapreduce:RunJobFlow" in as_list(s["Action"])]
    assert create["Condition"]["StringEquals"] == {"aws:RequestTag/for-use-with-amazon-emr-managed-policies": "true",
                                                   "aws:RequestTag/project": "fruits-emr"}
    s3 = [r for s in statements(policy) if any(a.startswith("s3:") for a in as_list(s["Action"]))
          for r in as_list(s["Resource"])]
    assert set(s3) == {f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"}
    setup = json.loads(fruits("emr", "setup", "--bucket", BUCKET, "--account-id", "111122223333",
                              "--print-policy", "setup").stdout)
    assert "${" not in json.dumps(setup) and "${" not in json.dumps(policy).replace("${aws:userid}", "")


def test_cluster_request_uses_the_setup_roles_and_the_managed_policy_tag():
    result = fruits("emr", "create-cluster", "--bucket", BUCKET, "--subnet-id", "subnet-1", "--dry-run")
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)["request"]
    assert request["JobFlowRole"] == emr_iam.INSTANCE_ROLE
    assert request["ServiceRole"] == emr_iam.SERVICE_ROLE
    assert {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"} in request["Tags"]


def test_a_new_bucket_updates_the_instance_policy_in_place(fresh_account):
    assert fruits("emr", "setup", "--bucket", BUCKET).returncode == 0
    moved = fruits("emr", "setup", "--bucket", "fruits-other-bucket")
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert [line.split()[1:4] for line in moved.stdout.splitlines() if line.startswith("updated:")] == [
        ["inline", "policy", emr_iam.INSTANCE_POLICY_NAME]]
    policy = iam_state()[emr_iam.INSTANCE_ROLE]["inline"][emr_iam.INSTANCE_POLICY_NAME]
    assert {r for s in statements(policy) for r in as_list(s["Resource"])} == {
        "arn:aws:s3:::fruits-other-bucket", "arn:aws:s3:::fruits-other-bucket/*",
        f"arn:aws:secretsmanager:*:{MOTO_ACCOUNT}:secret:fruits-emr/fruits-other-bucket/jupyterhub/*"}


def test_setup_creates_tagged_emr_managed_groups_and_create_cluster_names_them(fresh_account):
    """Issue 24, finding 2: project-owned EMR-managed groups, tagged, no rule open to the world, passed explicitly.

    EMR would otherwise reuse the VPC's ElasticMapReduce-master/-slave groups, which it does not tag
    when they predate the v2 managed policies; the service policy then may not launch into them.
    """
    import boto3

    from fruits.cloud.emr import network
    from tests.emr_network import prepared_subnet

    ec2 = boto3.client("ec2")
    for public, cidr in ((True, "10.60.0.0/16"), (False, "10.61.0.0/16")):
        subnet = prepared_subnet(cidr, public=public)
        vpc = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
        groups = network.find_groups(ec2, vpc)
        assert sorted(groups) == ["fruits-emr-core", "fruits-emr-primary", "fruits-emr-service-access"]
        for group in groups.values():
            assert {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"} in group["Tags"]
            assert {"Key": "project", "Value": "fruits-emr"} in group["Tags"]
            assert group["IpPermissions"] == [], "no inbound rule: EMR adds the ones between its groups"
        again = fruits("emr", "setup", "--bucket", BUCKET, "--subnet-id", subnet)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"in place:  security group fruits-emr-primary in the VPC of {subnet}" in again.stdout
        assert sorted(network.find_groups(ec2, vpc)) == sorted(groups), "no second copy"

        created = fruits("emr", "create-cluster", "--bucket", BUCKET, "--subnet-id", subnet)
        assert created.returncode == 0, created.stderr[-3000:]
        cluster_id = created.stdout.split()[1]
        attributes = boto3.client("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]["Ec2InstanceAttributes"]
        assert attributes["EmrManagedMasterSecurityGroup"] == groups["fruits-emr-primary"]["GroupId"]
        assert attributes["EmrManagedSlaveSecurityGroup"] == groups["fruits-emr-core"]["GroupId"]
        assert attributes.get("ServiceAccessSecurityGroup") == (
            None if public else groups["fruits-emr-service-access"]["GroupId"])

    # a rule open to the world on a project group: setup and create-cluster both refuse, naming it
    primary = groups["fruits-emr-primary"]["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=primary, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 9443, "ToPort": 9443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    for command in (("setup", "--bucket", BUCKET), ("create-cluster", "--bucket", BUCKET)):
        refused = fruits("emr", *command, "--subnet-id", subnet)
        assert refused.returncode != 0
        assert f"{primary}) has inbound rules open to the world (tcp 9443-9443 from 0.0.0.0/0)" in refused.stderr


def test_create_cluster_dry_run_names_the_project_groups():
    result = fruits("emr", "create-cluster", "--bucket", BUCKET, "--subnet-id", "subnet-1", "--dry-run")
    assert result.returncode == 0, result.stderr
    instances = json.loads(result.stdout)["request"]["Instances"]
    assert instances["Ec2SubnetId"] == "subnet-1"
    assert instances["EmrManagedMasterSecurityGroup"] == "<GroupId of fruits-emr-primary in the VPC of subnet-1>"
    assert instances["EmrManagedSlaveSecurityGroup"] == "<GroupId of fruits-emr-core in the VPC of subnet-1>"


def test_the_caller_may_give_new_clusters_their_auto_termination_policy():
    """Issue 24, finding 6: every run_job_flow request carries an AutoTerminationPolicy, which EMR
    authorizes as elasticmapreduce:PutAutoTerminationPolicy on the new cluster
    (https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-auto-termination-policy.html)."""
    from tests.iam_policy import allowing

    caller = emr_iam.caller_policy(bucket=BUCKET, account=MOTO_ACCOUNT)
    new_cluster = f"arn:aws:elasticmapreduce:eu-west-3:{MOTO_ACCOUNT}:cluster/j-NEW"
    (statement,) = allowing(caller, "elasticmapreduce:PutAutoTerminationPolicy", new_cluster)
    assert statement["Resource"] == f"arn:aws:elasticmapreduce:*:{MOTO_ACCOUNT}:cluster/*"
    assert not allowing(caller, "elasticmapreduce:RemoveAutoTerminationPolicy", new_cluster)
    request = json.loads(fruits("emr", "create-cluster", "--bucket", BUCKET, "--subnet-id", "subnet-1",
                                "--dry-run").stdout)["request"]
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
