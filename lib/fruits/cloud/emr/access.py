"""Ways into a running cluster: SSM port forwarding by default, SSH from one address on request.

Default, no inbound rule at all
    Session Manager port forwarding (``AWS-StartPortForwardingSession``) from ``localhost`` to
    JupyterHub (9443) or Livy (8998) on the primary node. The node's SSM Agent dials out to the
    Systems Manager endpoints, so its security groups need no inbound rule; the instance role
    carries ``AmazonSSMManagedInstanceCore`` (``fruits emr setup``). Command format:
    https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-specify-session-document.html

Opt-in, ``fruits emr create-cluster --ssh-from CIDR``
    Since December 2020 the EMR-managed primary group (``ElasticMapReduce-master``) has no SSH
    rule (https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-connect-ssh-prereqs.html).
    Instead of editing that group (shared by every later cluster in the VPC, where a forgotten rule
    outlives the cluster), the project keeps its own group ``fruits-emr-ssh`` in the subnet's VPC
    with exactly one rule, tcp 22 from the given address, and passes it as
    ``AdditionalMasterSecurityGroups``, which EMR attaches to the primary node and never modifies
    (https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-sg-specify.html). The group is
    tagged ``for-use-with-amazon-emr-managed-policies=true`` because ``AmazonEMRServicePolicy_v2``
    launches instances only into tagged security groups. Addresses wider than a /24 (IPv4) or a
    /64 (IPv6) are refused: EMR's Block Public Access lets port 22 through from ``0.0.0.0/0`` by
    default, so this check is the one that stops it.
"""

from __future__ import annotations

import ipaddress
import json

from fruits.cloud.platform import LIVY_PORT  # noqa: F401 - Livy's port on the primary node, as everywhere

#: JupyterHub's port on the EMR primary node.
JUPYTERHUB_PORT = 9443
SSH_GROUP_NAME = "fruits-emr-ssh"
SSH_GROUP_DESCRIPTION = "fruits-emr: SSH (tcp 22) to the primary node from one address, nothing else"
PORT_FORWARDING_DOCUMENT = "AWS-StartPortForwardingSession"
PLUGIN_HELP = ("https://docs.aws.amazon.com/systems-manager/latest/userguide/"
               "session-manager-working-with-install-plugin.html")
#: The narrowest networks ``--ssh-from`` accepts are at least this specific.
WIDEST_PREFIX = {4: 24, 6: 64}
_TAGS = [{"Key": "project", "Value": "fruits-emr"},
         {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}]


def check_ssh_cidr(cidr: str) -> str:
    """The CIDR that ``--ssh-from`` may open port 22 to, normalized (a bare address becomes /32 or /128).

    Raises
    ------
    ValueError
        Not an address or network, host bits set, or wider than a /24 (IPv4) or /64 (IPv6),
        ``0.0.0.0/0`` and ``::/0`` included.

    Examples
    --------
    >>> check_ssh_cidr("203.0.113.7")
    '203.0.113.7/32'
    """
    text = (cidr or "").strip()
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            loose = ipaddress.ip_network(text, strict=False)
            raise ValueError(f"--ssh-from {cidr!r} has host bits set: did you mean {loose} "
                             f"(or {text.split('/')[0]} alone for that one address)?") from None
        raise ValueError(f"--ssh-from must be an IP address or CIDR such as 203.0.113.7/32, got {cidr!r}") from None
    widest = WIDEST_PREFIX[network.version]
    if network.prefixlen < widest:
        everyone = " (that is the whole internet)" if network.prefixlen == 0 else ""
        raise ValueError(
            f"--ssh-from {network} is refused{everyone}: port 22 may be opened to one address or at most "
            f"a /{widest}. Give your own public address (for example from `curl https://checkip.amazonaws.com`), "
            "or use `fruits tunnel --cluster-id ...`, which needs no open port at all.")
    return str(network)


def ssh_permission(cidr: str) -> dict:
    """The one ``IpPermissions`` entry: tcp 22 from ``cidr``."""
    network = ipaddress.ip_network(check_ssh_cidr(cidr))
    source = ({"IpRanges": [{"CidrIp": str(network), "Description": "fruits-emr --ssh-from"}]}
              if network.version == 4 else
              {"Ipv6Ranges": [{"CidrIpv6": str(network), "Description": "fruits-emr --ssh-from"}]})
    return {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, **source}


def check_ssh_options(*, ssh_from: str, subnet_id: str | None, key_name: str | None) -> str:
    """Validate ``--ssh-from`` with the options it needs; returns the normalized CIDR."""
    cidr = check_ssh_cidr(ssh_from)
    if not key_name:
        raise ValueError("--ssh-from opens port 22 for SSH with a key pair: give --key-name too "
                         "(or leave both out and use `fruits tunnel --cluster-id ...`, which needs no open port)")
    if not subnet_id:
        raise ValueError("--ssh-from needs --subnet-id: the rule's security group is created in that subnet's VPC")
    return cidr


def group_placeholder(subnet_id: str) -> str:
    return f"<GroupId of {SSH_GROUP_NAME} in the VPC of {subnet_id}>"


def ssh_group_requests(*, subnet_id: str, cidr: str) -> list[dict]:
    """The EC2 requests ``--ssh-from`` makes on first use, for ``--dry-run`` (ids not yet known are shown in <>)."""
    group = group_placeholder(subnet_id)
    return [
        {"operation": "ec2.describe_subnets", "request": {"SubnetIds": [subnet_id]}},
        {"operation": "ec2.create_security_group", "request": {
            "GroupName": SSH_GROUP_NAME, "Description": SSH_GROUP_DESCRIPTION,
            "VpcId": f"<VpcId of {subnet_id}>",
            "TagSpecifications": [{"ResourceType": "security-group", "Tags": _TAGS}]}},
        {"operation": "ec2.revoke_security_group_egress", "request": {
            "GroupId": group, "SecurityGroupRuleIds": ["<ids of the default egress rules of the new group>"]}},
        {"operation": "ec2.authorize_security_group_ingress", "request": {
            "GroupId": group, "IpPermissions": [ssh_permission(cidr)]}},
    ]


def _rule_matches(rule: dict, cidr: str) -> bool:
    return (rule.get("IpProtocol") == "tcp" and rule.get("FromPort") == 22 and rule.get("ToPort") == 22
            and cidr in (rule.get("CidrIpv4"), rule.get("CidrIpv6")))


def ensure_ssh_group(ec2, *, subnet_id: str, cidr: str, echo=print) -> str:
    """Create or bring back ``fruits-emr-ssh`` to exactly one rule, tcp 22 from ``cidr``; return its id.

    Idempotent: an existing group with that one rule is left as it is. Other rules found in the
    group (an address from an earlier run, the default allow-all egress, which the EMR-managed
    groups already provide) are revoked by rule id.
    """
    cidr = check_ssh_cidr(cidr)
    vpc_id = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["VpcId"]
    found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [SSH_GROUP_NAME]},
                                                  {"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]
    if found:
        group_id = found[0]["GroupId"]
    else:
        group_id = ec2.create_security_group(
            GroupName=SSH_GROUP_NAME, Description=SSH_GROUP_DESCRIPTION, VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": _TAGS}])["GroupId"]
        echo(f"created security group {group_id} ({SSH_GROUP_NAME}) in {vpc_id}")
    rules = ec2.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group_id]}])["SecurityGroupRules"]
    egress = [r["SecurityGroupRuleId"] for r in rules if r.get("IsEgress")]
    ingress = [r for r in rules if not r.get("IsEgress")]
    stale = [r["SecurityGroupRuleId"] for r in ingress if not _rule_matches(r, cidr)]
    if egress:
        ec2.revoke_security_group_egress(GroupId=group_id, SecurityGroupRuleIds=egress)
    if stale:
        ec2.revoke_security_group_ingress(GroupId=group_id, SecurityGroupRuleIds=stale)
        echo(f"revoked {len(stale)} other inbound rule(s) from {SSH_GROUP_NAME}")
    if any(_rule_matches(r, cidr) for r in ingress):
        echo(f"{SSH_GROUP_NAME} ({group_id}) already allows only tcp 22 from {cidr}")
    else:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[ssh_permission(cidr)])
        echo(f"{SSH_GROUP_NAME} ({group_id}) now allows tcp 22 from {cidr}, and nothing else")
    return group_id


def primary_instance_id(emr_client, cluster_id: str) -> str:
    """The EC2 instance id of the cluster's running primary node.

    Raises
    ------
    ValueError
        No running primary instance (the cluster is still starting, or has ended).
    """
    pages = emr_client.get_paginator("list_instances").paginate(
        ClusterId=cluster_id, InstanceGroupTypes=["MASTER"], InstanceStates=["RUNNING"])
    ids = [i["Ec2InstanceId"] for page in pages for i in page["Instances"] if i.get("Ec2InstanceId")]
    if not ids:
        raise ValueError(f"cluster {cluster_id} has no running primary instance yet (or it has ended): "
                         f"wait for WAITING in `fruits emr status --cluster-id {cluster_id}`")
    return ids[0]


def ssm_port_forward_command(instance_id: str, *, port: int = JUPYTERHUB_PORT, local_port: int | None = None,
                             region: str | None = None) -> list[str]:
    """The ``aws ssm start-session`` command forwarding ``localhost:local_port`` to ``port`` on the node.

    Examples
    --------
    >>> ssm_port_forward_command("i-0123456789abcdef0")[-1]
    '{"portNumber": ["9443"], "localPortNumber": ["9443"]}'
    """
    if not instance_id.startswith(("i-", "mi-")):
        raise ValueError(f"not an instance id: {instance_id!r}")
    for name, value in (("port", port), ("local port", local_port if local_port is not None else port)):
        if not 1 <= int(value) <= 65535:
            raise ValueError(f"{name} must be between 1 and 65535, got {value}")
    parameters = {"portNumber": [str(port)], "localPortNumber": [str(local_port if local_port else port)]}
    command = ["aws", "ssm", "start-session", "--target", instance_id,
               "--document-name", PORT_FORWARDING_DOCUMENT]
    if region:
        command += ["--region", region]
    return command + ["--parameters", json.dumps(parameters)]
