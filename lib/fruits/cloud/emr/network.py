"""Where a cluster launches: a tagged subnet and the project's own EMR-managed security groups.

``AmazonEMRServicePolicy_v2`` (the service role's policy, :mod:`fruits.cloud.emr.iam`) lets EMR
call ``ec2:RunInstances`` only in subnets and security groups tagged
``for-use-with-amazon-emr-managed-policies=true`` (its ``CreateInTaggedNetwork`` statement:
https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonEMRServicePolicy_v2.html).
A default VPC's subnet carries no such tag, and EMR reuses the VPC's ``ElasticMapReduce-master``
/ ``-slave`` groups where they exist, which it does not tag for you when they predate the v2
policies (https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-managed-iam-policies.html#manually-tagged-resources).
So a launch without a tagged subnet would fail inside EMR, minutes later, as a cluster in
``TERMINATED_WITH_ERRORS``.

Hence:

- ``fruits emr setup --subnet-id S`` tags the subnet and its VPC, and creates in that VPC three
  project-owned groups, tagged at creation, with **no inbound rule** (EMR adds the rules its
  nodes need between these groups when it launches; their default egress stays, the nodes
  need it): ``fruits-emr-primary``, ``fruits-emr-core`` and ``fruits-emr-service-access``
  (the last one EMR requires in a private subnet only).
- ``fruits emr create-cluster --subnet-id S`` refuses a missing or untagged subnet, names
  those groups explicitly (``EmrManagedMasterSecurityGroup``, ``EmrManagedSlaveSecurityGroup``
  and, in a private subnet, ``ServiceAccessSecurityGroup``:
  https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-sg-specify.html), so EMR never
  falls back on an untagged ``ElasticMapReduce-*`` group, and refuses a group that has an
  inbound rule open to the world.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

MANAGED_POLICY_TAG = {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}
PROJECT_TAG = {"Key": "project", "Value": "fruits-emr"}
#: The project's EMR-managed security groups: request key -> (group name, description).
GROUPS = {
    "EmrManagedMasterSecurityGroup": ("fruits-emr-primary",
                                      "fruits-emr: EMR-managed group of the primary node; no rule open to the world"),
    "EmrManagedSlaveSecurityGroup": ("fruits-emr-core",
                                     "fruits-emr: EMR-managed group of core and task nodes; no rule open to the world"),
    "ServiceAccessSecurityGroup": ("fruits-emr-service-access",
                                   "fruits-emr: EMR service access in a private subnet; no rule open to the world"),
}
#: Only a cluster in a private subnet takes a service access group.
PRIVATE_ONLY = "ServiceAccessSecurityGroup"
SETUP_HINT = "fruits emr setup --bucket BUCKET --subnet-id {subnet}"


def check_subnet_id(subnet_id: str | None) -> str:
    """The ``--subnet-id`` a cluster launches in; there is no launch without one.

    Raises
    ------
    ValueError
        None given, or not a subnet id; the message names the fix.
    """
    if not subnet_id:
        raise ValueError(
            "create-cluster needs --subnet-id: AmazonEMRServicePolicy_v2 lets EMR launch only into a subnet "
            "tagged for-use-with-amazon-emr-managed-policies=true, which a default VPC's subnet is not. Run "
            f"`{SETUP_HINT.format(subnet='subnet-...')}` once (it tags the subnet and its VPC and creates the "
            "project's security groups there), then pass the same --subnet-id here.")
    if not subnet_id.startswith("subnet-"):
        raise ValueError(f"--subnet-id must look like subnet-..., got {subnet_id!r}")
    return subnet_id


def tagged(resource: dict, tag: dict = MANAGED_POLICY_TAG) -> bool:
    """Whether an EC2 description (subnet, VPC, group) carries ``tag``."""
    return any(t.get("Key") == tag["Key"] and t.get("Value") == tag["Value"] for t in resource.get("Tags") or [])


def world_open_rules(group: dict) -> list[str]:
    """The group's inbound rules open to every address (``0.0.0.0/0``, ``::/0``), described."""
    found = []
    for permission in group.get("IpPermissions") or []:
        ranges = [r.get("CidrIp") for r in permission.get("IpRanges") or []]
        ranges += [r.get("CidrIpv6") for r in permission.get("Ipv6Ranges") or []]
        for cidr in ranges:
            if cidr and ipaddress.ip_network(cidr, strict=False).prefixlen == 0:
                ports = f"{permission.get('FromPort', 'all')}-{permission.get('ToPort', 'all')}"
                found.append(f"{permission.get('IpProtocol')} {ports} from {cidr}")
    return found


def find_groups(ec2, vpc_id: str) -> dict[str, dict]:
    """The project's groups in ``vpc_id`` by group name (those that exist)."""
    names = [name for name, _ in GROUPS.values()]
    found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": names},
                                                  {"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]
    return {group["GroupName"]: group for group in found}


def is_private(ec2, subnet: dict) -> bool:
    """No route to an internet gateway from the subnet (its own route table, else the VPC's main one).

    EMR's definition of a private subnet, the one that needs a service access group:
    https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-clusters-in-a-vpc.html
    """
    tables = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id",
                                                 "Values": [subnet["SubnetId"]]}])["RouteTables"]
    if not tables:
        tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [subnet["VpcId"]]},
                                                    {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
    return not any(str(route.get("GatewayId", "")).startswith("igw-")
                   for table in tables for route in table.get("Routes") or [])


def group_placeholders(subnet_id: str) -> dict[str, str]:
    """What ``--dry-run`` shows for the groups (their ids are read at launch)."""
    shown = {key: f"<GroupId of {name} in the VPC of {subnet_id}>" for key, (name, _) in GROUPS.items()}
    shown[PRIVATE_ONLY] += " (only if the subnet is private)"
    return shown


@dataclass
class LaunchNetwork:
    """A checked subnet and the security group ids a cluster in it names."""

    subnet_id: str
    vpc_id: str
    private: bool
    groups: dict[str, str]

    def instance_attributes(self) -> dict[str, str]:
        """The ``Instances`` keys of ``emr.run_job_flow``."""
        return {"Ec2SubnetId": self.subnet_id, **self.groups}


def launch_network(ec2, subnet_id: str) -> LaunchNetwork:
    """Check the subnet and the project's groups in its VPC before ``run_job_flow``.

    Raises
    ------
    ValueError
        The subnet or its VPC is untagged, a group is missing, untagged or open to the world;
        each message names the fix.
    """
    check_subnet_id(subnet_id)
    subnets = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
    subnet = subnets[0]
    fix = SETUP_HINT.format(subnet=subnet_id)
    if not tagged(subnet):
        raise ValueError(f"subnet {subnet_id} is not tagged {MANAGED_POLICY_TAG['Key']}=true, so "
                         f"AmazonEMRServicePolicy_v2 may not launch instances in it: run `{fix}` first")
    private = is_private(ec2, subnet)
    found = find_groups(ec2, subnet["VpcId"])
    groups: dict[str, str] = {}
    for key, (name, _) in GROUPS.items():
        if key == PRIVATE_ONLY and not private:
            continue
        group = found.get(name)
        if group is None:
            raise ValueError(f"no security group {name} in {subnet['VpcId']} (the VPC of {subnet_id}): run `{fix}`")
        if not tagged(group):
            raise ValueError(f"security group {name} ({group['GroupId']}) is not tagged "
                             f"{MANAGED_POLICY_TAG['Key']}=true: run `{fix}`")
        open_rules = world_open_rules(group)
        if open_rules:
            raise ValueError(f"security group {name} ({group['GroupId']}) has inbound rules open to the world "
                             f"({'; '.join(open_rules)}): remove them (aws ec2 revoke-security-group-ingress) "
                             "and use `fruits tunnel`, or --ssh-from for one address")
        groups[key] = group["GroupId"]
    return LaunchNetwork(subnet_id=subnet_id, vpc_id=subnet["VpcId"], private=private, groups=groups)


def group_request(name: str, description: str, vpc_id: str) -> dict:
    """``ec2.create_security_group`` for one project group, tagged at creation (no untagged moment)."""
    return {"GroupName": name, "Description": description, "VpcId": vpc_id,
            "TagSpecifications": [{"ResourceType": "security-group", "Tags": [PROJECT_TAG, MANAGED_POLICY_TAG]}]}
