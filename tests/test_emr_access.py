"""Ways into the cluster: SSM port forwarding by default (no inbound rule), ``--ssh-from`` opt-in (one rule).

Dry-run requests are checked as data (no ``0.0.0.0/0`` anywhere, one rule only with
``--ssh-from``); the security group and the primary-instance lookup run against moto's server.
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

from fruits.cloud.emr import access as emr_access
from tests.emr_network import prepared_subnet
from tests.test_emr_setup import moto_server, reset

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "fruits-access-bucket"
ME = "203.0.113.7/32"


@pytest.fixture(scope="module")
def moto():
    with moto_server() as endpoint:
        yield endpoint


def fruits(*args, **env):
    return subprocess.run([sys.executable, "-m", "fruits.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def all_strings(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from all_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_strings(item)
    elif isinstance(value, str):
        yield value


def open_to_the_world(requests) -> list[str]:
    return [s for s in all_strings(requests) if "0.0.0.0/0" in s or "::/0" in s]


def permissions(requests) -> list[dict]:
    return [p for r in requests if r["operation"] == "ec2.authorize_security_group_ingress"
            for p in r["request"]["IpPermissions"]]


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "0.0.0.0/1", "10.0.0.0/8", "203.0.113.0/23",
                                  "2001:db8::/48", "not-an-address", "", "203.0.113.7/24"])
def test_ssh_from_refuses_the_world_wide_networks_and_nonsense(cidr):
    with pytest.raises(ValueError, match="--ssh-from"):
        emr_access.check_ssh_cidr(cidr)


@pytest.mark.parametrize("cidr, expected", [("203.0.113.7", "203.0.113.7/32"), (ME, ME),
                                            ("203.0.113.0/24", "203.0.113.0/24"),
                                            ("2001:db8::1", "2001:db8::1/128"), ("2001:db8::/64", "2001:db8::/64")])
def test_ssh_from_accepts_one_address_or_a_small_network(cidr, expected):
    assert emr_access.check_ssh_cidr(cidr) == expected


def test_create_cluster_refuses_ssh_from_the_world_before_printing_anything():
    for world in ("0.0.0.0/0", "::/0"):
        result = fruits("emr", "create-cluster", "--bucket", BUCKET, "--key-name", "k", "--subnet-id", "subnet-1",
                        "--ssh-from", world, "--dry-run")
        assert result.returncode == 2 and result.stdout == ""
        assert "is refused" in result.stderr and "fruits tunnel --cluster-id" in result.stderr


def test_ssh_from_needs_a_key_pair_and_a_subnet():
    no_key = fruits("emr", "create-cluster", "--bucket", BUCKET, "--subnet-id", "subnet-1", "--ssh-from", ME,
                    "--dry-run")
    assert no_key.returncode == 2 and "--key-name" in no_key.stderr
    no_subnet = fruits("emr", "create-cluster", "--bucket", BUCKET, "--key-name", "k", "--ssh-from", ME, "--dry-run")
    assert no_subnet.returncode == 2 and "--subnet-id" in no_subnet.stderr


def test_without_ssh_from_no_inbound_rule_is_requested():
    result = fruits("emr", "create-cluster", "--bucket", BUCKET, "--subnet-id", "subnet-1", "--dry-run")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["operation"] == "emr.run_job_flow"
    instances = printed["request"]["Instances"]
    assert not {"AdditionalMasterSecurityGroups", "AdditionalSlaveSecurityGroups", "Ec2KeyName"} & set(instances)
    assert not open_to_the_world(printed)


def test_ssh_from_requests_exactly_one_rule_for_that_address():
    result = fruits("emr", "create-cluster", "--bucket", BUCKET, "--key-name", "k", "--subnet-id", "subnet-1",
                    "--ssh-from", "203.0.113.7", "--dry-run")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert [p["operation"] for p in printed] == ["ec2.describe_subnets", "ec2.create_security_group",
                                                 "ec2.revoke_security_group_egress",
                                                 "ec2.authorize_security_group_ingress", "emr.run_job_flow"]
    assert permissions(printed) == [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                     "IpRanges": [{"CidrIp": ME, "Description": "fruits-emr --ssh-from"}]}]
    create = printed[1]["request"]
    assert {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"} in create["TagSpecifications"][0]["Tags"]
    instances = printed[-1]["request"]["Instances"]
    assert instances["AdditionalMasterSecurityGroups"] == [emr_access.group_placeholder("subnet-1")]
    assert instances["Ec2KeyName"] == "k" and "AdditionalSlaveSecurityGroups" not in instances
    assert not open_to_the_world(printed)


def test_ssh_group_on_moto_holds_one_rule_and_follows_the_address(moto):
    import boto3

    reset(moto)
    ec2 = boto3.client("ec2")
    subnet = prepared_subnet("10.30.0.0/16")
    vpc = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]

    def group_rules():
        (group,) = ec2.describe_security_groups(Filters=[{"Name": "group-name",
                                                          "Values": [emr_access.SSH_GROUP_NAME]}])["SecurityGroups"]
        rules = ec2.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [group["GroupId"]]}])["SecurityGroupRules"]
        return group, rules

    created = fruits("emr", "create-cluster", "--bucket", BUCKET, "--key-name", "k", "--subnet-id", subnet,
                     "--ssh-from", ME)
    assert created.returncode == 0, created.stderr[-3000:]
    group, rules = group_rules()
    assert group["VpcId"] == vpc
    assert {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"} in group["Tags"]
    assert [(r["IsEgress"], r["IpProtocol"], r["FromPort"], r["ToPort"], r.get("CidrIpv4")) for r in rules] == [
        (False, "tcp", 22, 22, ME)]
    cluster_id = re.search(r"^cluster (j-\S+) starting", created.stdout, re.M).group(1)
    attributes = boto3.client("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]["Ec2InstanceAttributes"]
    assert attributes["AdditionalMasterSecurityGroups"] == [group["GroupId"]]
    assert f"fruits tunnel --cluster-id {cluster_id}" in created.stdout

    again = fruits("emr", "create-cluster", "--bucket", BUCKET, "--key-name", "k", "--subnet-id", subnet,
                   "--ssh-from", "198.51.100.9")
    assert again.returncode == 0, again.stderr[-3000:]
    same_group, rules = group_rules()
    assert same_group["GroupId"] == group["GroupId"]
    assert [(r["IsEgress"], r.get("CidrIpv4")) for r in rules] == [(False, "198.51.100.9/32")]


def test_tunnel_defaults_to_ssm_port_forwarding_to_the_primary_instance(moto):
    import boto3

    reset(moto)
    created = fruits("emr", "create-cluster", "--bucket", BUCKET, "--subnet-id", prepared_subnet())
    assert created.returncode == 0, created.stderr[-3000:]
    cluster_id = created.stdout.split()[1]
    (primary,) = boto3.client("emr").list_instances(ClusterId=cluster_id, InstanceGroupTypes=["MASTER"])["Instances"]

    for port, local, url in ((None, None, "https://localhost:9443"), ("8998", "18998", "http://localhost:18998")):
        options = (["--port", port, "--local-port", local] if port else [])
        result = fruits("tunnel", "--cluster-id", cluster_id, *options, "--dry-run")
        assert result.returncode == 0, result.stderr[-3000:]
        command = shlex.split(result.stdout.splitlines()[0])
        assert command[:8] == ["aws", "ssm", "start-session", "--target", primary["Ec2InstanceId"],
                               "--document-name", "AWS-StartPortForwardingSession", "--region"]
        assert command[-2] == "--parameters"
        assert json.loads(command[-1]) == {"portNumber": [port or "9443"], "localPortNumber": [local or "9443"]}
        assert url in result.stdout


def test_tunnel_needs_a_cluster_or_an_ssh_key_and_host(tmp_path):
    assert "--cluster-id" in fruits("tunnel", "--dry-run").stderr
    key = tmp_path / "k.pem"
    key.write_text("not a key")
    key.chmod(0o400)
    both = fruits("tunnel", "--cluster-id", "j-1", "--key", str(key), "--host", "h", "--dry-run")
    assert both.returncode == 2 and "not both" in both.stderr
    ssh = fruits("tunnel", "--key", str(key), "--host", "primary.example", "--port", "8998", "--dry-run")
    assert ssh.returncode == 0, ssh.stderr
    assert "-L 8998:localhost:8998 hadoop@primary.example" in ssh.stdout


def test_ssm_command_has_the_documented_parameter_format():
    command = emr_access.ssm_port_forward_command("i-0123456789abcdef0", port=8998, local_port=8999)
    assert command[:7] == ["aws", "ssm", "start-session", "--target", "i-0123456789abcdef0",
                           "--document-name", "AWS-StartPortForwardingSession"]
    assert json.loads(command[-1]) == {"portNumber": ["8998"], "localPortNumber": ["8999"]}
    with pytest.raises(ValueError, match="instance id"):
        emr_access.ssm_port_forward_command("primary.example")


def test_network_md_describes_what_the_code_does():
    text = (ROOT / "emr-config" / "NETWORK.md").read_text()
    for fact in ("fruits tunnel --cluster-id", emr_access.PORT_FORWARDING_DOCUMENT, "--ssh-from",
                 emr_access.SSH_GROUP_NAME, "AdditionalMasterSecurityGroups", "/24", "NAT gateway",
                 "gateway endpoint", "ssmmessages", "PyPI", "imagenet", "for-use-with-amazon-emr-managed-policies",
                 "fruits emr setup", "AmazonSSMManagedInstanceCore"):
        assert fact in text, fact
    assert "add no rules" not in text.lower()


def test_tunnel_to_an_unknown_cluster_is_a_clear_error(moto):
    result = fruits("tunnel", "--cluster-id", "j-NOSUCHCLUSTER", "--dry-run", AWS_MAX_ATTEMPTS="1")
    assert result.returncode == 2 and "j-NOSUCHCLUSTER" in result.stderr and "Traceback" not in result.stderr


def test_the_caller_policy_allows_port_forwarding_and_never_the_default_shell():
    """Issue 24, finding 4: without ssm:SessionDocumentAccessCheck, `aws ssm start-session` with no
    --document-name opens SSM-SessionManagerRunShell (a root-capable shell) although no statement
    names it: https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-sessiondocumentaccesscheck.html
    """
    from fruits.cloud.emr import iam as emr_iam
    from tests.iam_policy import allowing, statements

    caller = emr_iam.caller_policy(bucket=BUCKET, account="123456789012")
    starts = [s for s in statements(caller) if "ssm:StartSession" in json.dumps(s["Action"])]
    assert len(starts) == 2
    for statement in starts:
        assert statement["Condition"]["BoolIfExists"] == {"ssm:SessionDocumentAccessCheck": "true"}, statement
    instance = "arn:aws:ec2:eu-west-3:123456789012:instance/i-0123456789abcdef0"
    assert allowing(caller, "ssm:StartSession", instance)
    assert allowing(caller, "ssm:StartSession", "arn:aws:ssm:eu-west-3::document/AWS-StartPortForwardingSession")
    for document in ("SSM-SessionManagerRunShell", "AWS-StartInteractiveCommand", "AWS-StartSSHSession",
                     "AWS-StartPortForwardingSessionToRemoteHost", "AWS-StartNonInteractiveCommand"):
        for arn in (f"arn:aws:ssm:eu-west-3::document/{document}",
                    f"arn:aws:ssm:eu-west-3:123456789012:document/{document}"):
            assert not allowing(caller, "ssm:StartSession", arn), arn
    own = "arn:aws:ssm:eu-west-3:123456789012:session/AIDACALLER-0a1b2c3d4e5f"
    other = "arn:aws:ssm:eu-west-3:123456789012:session/AIDAOTHER-0a1b2c3d4e5f"
    assert allowing(caller, "ssmmessages:OpenDataChannel", own, variables={"aws:userid": "AIDACALLER"})
    assert not allowing(caller, "ssmmessages:OpenDataChannel", other, variables={"aws:userid": "AIDACALLER"})
    command = emr_access.ssm_port_forward_command("i-0123456789abcdef0")
    assert command[command.index("--document-name") + 1] == "AWS-StartPortForwardingSession"
