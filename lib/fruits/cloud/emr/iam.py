"""``fruits emr setup``: the two IAM roles a fruits-emr cluster launches with, made idempotently.

The project creates its own roles instead of relying on the account's defaults:

``fruits-emr-ec2`` (role and instance profile of the same name)
    Trusted by ``ec2.amazonaws.com``. Its inline policy is ``emr-config/iam-instance-policy.json``
    rendered for one bucket (list the bucket, read/write its objects, read the JupyterHub password
    *hashes* ``fruits-emr/<bucket>/jupyterhub/*`` of ``fruits.cloud.emr.users``, never the plaintexts
    of ``.../jupyterhub-password/*``, nothing else), replacing
    ``EMR_EC2_DefaultRole``'s ``s3:*`` on every bucket. ``AmazonSSMManagedInstanceCore`` is attached
    so that Session Manager can port-forward to JupyterHub with no inbound rule at all.
    EMR refuses an instance profile whose name differs from its role's ("invalid instance
    profile"): https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-iam-roles-custom.html

``fruits-emr-service``
    Trusted by ``elasticmapreduce.amazonaws.com`` only for this account's EMR resources
    (``aws:SourceAccount`` / ``aws:SourceArn``, as AWS documents against the confused-deputy
    problem), with the AWS managed ``AmazonEMRServicePolicy_v2`` attached:
    https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-iam-role.html
    That policy lets the service pass only ``EMR_EC2_DefaultRole`` to EC2 (its ``PassRoleForEC2``
    statement), so a cluster with our instance profile could not start under the account's
    ``EMR_DefaultRole_V2``; our service role adds one inline statement passing ``fruits-emr-ec2``
    to EC2, and the account's shared default role is left untouched.

``AmazonEMRServicePolicy_v2`` only acts on resources tagged
``for-use-with-amazon-emr-managed-policies = true``: ``emr-config/cluster.json`` carries the tag
(EMR propagates it to the instances it creates), and ``--subnet-id`` tags the subnet and its VPC,
which EMR does not create, and creates the project's own EMR-managed security groups in that VPC,
tagged, with no inbound rule (:mod:`fruits.cloud.emr.network`; ``create-cluster`` names them,
so EMR never reuses an untagged ``ElasticMapReduce-*`` group:
https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-managed-iam-policies.html#manually-tagged-resources).

Every step reads first and writes only what differs, so a second run changes nothing and says
so; ``--dry-run`` prints the write requests of a first run and touches nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from fruits.cloud.emr import network
from fruits.cloud.emr.aws import check_bucket, client
from fruits.cloud.emr.templates import load_template, render

INSTANCE_ROLE = "fruits-emr-ec2"
SERVICE_ROLE = "fruits-emr-service"
INSTANCE_POLICY_NAME = "fruits-emr-bucket"
PASS_ROLE_POLICY_NAME = "fruits-emr-pass-instance-role"
SSM_CORE_ARN = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
EMR_SERVICE_V2_ARN = "arn:aws:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
MANAGED_POLICY_TAG = network.MANAGED_POLICY_TAG
PROJECT_TAG = network.PROJECT_TAG
#: Shown instead of the account id when ``--dry-run`` runs without AWS credentials.
UNKNOWN_ACCOUNT = "<your-account-id>"


@dataclass
class Step:
    """One idempotent change: ``in_place()`` reads whether it is already done, ``apply()`` does it."""

    operation: str
    request: dict
    what: str
    in_place: Callable[[], bool] = field(repr=False, default=lambda: False)
    apply: Callable[[], Any] | None = field(repr=False, default=None)
    done: str = "created"


def _values(*, bucket: str, prefix: str, account: str) -> dict[str, str]:
    return {"BUCKET": bucket, "PREFIX": prefix.strip("/"), "ACCOUNT": account,
            "INSTANCE_ROLE": INSTANCE_ROLE, "SERVICE_ROLE": SERVICE_ROLE}


def policy_documents(*, bucket: str, prefix: str = "fruits", account: str) -> dict[str, dict]:
    """The four policy documents of the setup, rendered from ``emr-config/``."""
    check_bucket(bucket)
    values = _values(bucket=bucket, prefix=prefix, account=account)
    return {name: render(load_template(f"{name}.json"), values)
            for name in ("iam-instance-trust", "iam-instance-policy", "iam-service-trust",
                         "iam-service-pass-instance-role")}


def caller_policy(*, bucket: str, account: str) -> dict:
    """``emr-config/caller-policy.json`` rendered: what a person needs to upload, launch, run, tunnel."""
    check_bucket(bucket)
    return render(load_template("caller-policy.json"), _values(bucket=bucket, prefix="", account=account))


def setup_policy(*, account: str) -> dict:
    """``emr-config/setup-policy.json`` rendered: what the administrator running ``fruits emr setup`` needs."""
    return render(load_template("setup-policy.json"),
                      _values(bucket="unused-bucket", prefix="", account=account))


def normalized(document: Any) -> Any:
    """A policy document in a canonical form: one-element lists as scalars, lists sorted.

    IAM may hand a document back with ``"Action": "x"`` where ``["x"]`` was sent (or keys in
    another order); both mean the same policy, and neither should count as a change.
    """
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return document
    if isinstance(document, dict):
        return {key: normalized(value) for key, value in sorted(document.items())}
    if isinstance(document, list):
        items = [normalized(item) for item in document]
        if len(items) == 1:
            return items[0]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return document


def _not_found(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in {"NoSuchEntity", "NoSuchEntityException", "InvalidSubnetID.NotFound"}


def plan(*, bucket: str, prefix: str = "fruits", account: str, iam=None, ec2=None,
         subnet_id: str | None = None) -> list[Step]:
    """The steps of ``fruits emr setup``; with ``iam=None`` they can be printed but not checked or applied.

    Raises
    ------
    ValueError
        A bad bucket name or subnet id.
    """
    if subnet_id is not None and not subnet_id.startswith("subnet-"):
        raise ValueError(f"--subnet-id must look like subnet-..., got {subnet_id!r}")
    docs = policy_documents(bucket=bucket, prefix=prefix, account=account)
    steps: list[Step] = []

    def role(name: str, trust: dict, description: str) -> None:
        request = {"RoleName": name, "AssumeRolePolicyDocument": json.dumps(trust),
                   "Description": description, "Tags": [PROJECT_TAG]}

        def in_place() -> bool:
            try:
                current = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
            except Exception as exc:  # botocore ClientError; botocore stays a lazy import
                if _not_found(exc):
                    return False
                raise
            if normalized(current) != normalized(trust):
                steps.append(Step("iam.update_assume_role_policy",
                                  {"RoleName": name, "PolicyDocument": json.dumps(trust)},
                                  f"trust policy of role {name}",
                                  apply=lambda: iam.update_assume_role_policy(
                                      RoleName=name, PolicyDocument=json.dumps(trust)),
                                  done="updated"))
            return True

        steps.append(Step("iam.create_role", request, f"role {name}", in_place,
                          lambda: iam.create_role(**request)))

    def inline(role_name: str, policy_name: str, document: dict) -> None:
        request = {"RoleName": role_name, "PolicyName": policy_name, "PolicyDocument": json.dumps(document)}
        step = Step("iam.put_role_policy", request, f"inline policy {policy_name} of role {role_name}",
                    apply=lambda: iam.put_role_policy(**request))

        def in_place() -> bool:
            try:
                current = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
            except Exception as exc:
                if _not_found(exc):
                    return False
                raise
            step.done = "updated"  # put_role_policy replaces a policy of that name
            return normalized(current) == normalized(document)

        step.in_place = in_place
        steps.append(step)

    def managed(role_name: str, arn: str) -> None:
        request = {"RoleName": role_name, "PolicyArn": arn}

        def in_place() -> bool:
            pages = iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name)
            return any(p["PolicyArn"] == arn for page in pages for p in page["AttachedPolicies"])

        steps.append(Step("iam.attach_role_policy", request, f"{arn.rsplit('/', 1)[1]} on role {role_name}",
                          in_place, lambda: iam.attach_role_policy(**request)))

    role(INSTANCE_ROLE, docs["iam-instance-trust"],
         f"fruits-emr cluster instances: bucket {bucket} only, plus SSM Session Manager")
    inline(INSTANCE_ROLE, INSTANCE_POLICY_NAME, docs["iam-instance-policy"])
    managed(INSTANCE_ROLE, SSM_CORE_ARN)

    profile_request = {"InstanceProfileName": INSTANCE_ROLE, "Tags": [PROJECT_TAG]}

    def profile_roles() -> list[str] | None:
        try:
            profile = iam.get_instance_profile(InstanceProfileName=INSTANCE_ROLE)["InstanceProfile"]
        except Exception as exc:
            if _not_found(exc):
                return None
            raise
        return [r["RoleName"] for r in profile["Roles"]]

    steps.append(Step("iam.create_instance_profile", profile_request, f"instance profile {INSTANCE_ROLE}",
                      lambda: profile_roles() is not None, lambda: iam.create_instance_profile(**profile_request)))
    add_request = {"InstanceProfileName": INSTANCE_ROLE, "RoleName": INSTANCE_ROLE}

    def role_in_profile() -> bool:
        roles = profile_roles() or []
        if roles and INSTANCE_ROLE not in roles:
            raise ValueError(f"instance profile {INSTANCE_ROLE} holds role {roles[0]}, not {INSTANCE_ROLE}; "
                             "EMR needs the profile and its role to share one name. Remove that role "
                             "from the profile (iam remove-role-from-instance-profile) and run setup again.")
        return INSTANCE_ROLE in roles

    steps.append(Step("iam.add_role_to_instance_profile", add_request,
                      f"role {INSTANCE_ROLE} in instance profile {INSTANCE_ROLE}", role_in_profile,
                      lambda: iam.add_role_to_instance_profile(**add_request)))

    role(SERVICE_ROLE, docs["iam-service-trust"],
         f"EMR service role for fruits-emr clusters; may pass only {INSTANCE_ROLE} to EC2")
    managed(SERVICE_ROLE, EMR_SERVICE_V2_ARN)
    inline(SERVICE_ROLE, PASS_ROLE_POLICY_NAME, docs["iam-service-pass-instance-role"])

    if subnet_id:
        steps += network_steps(subnet_id, ec2)
    return steps


def network_steps(subnet_id: str, ec2) -> list[Step]:
    """What ``--subnet-id`` adds: the subnet a cluster may launch in (:mod:`fruits.cloud.emr.network`).

    The subnet and its VPC are tagged, and the project's three EMR-managed security groups are
    created in that VPC, tagged, with no inbound rule.
    """
    steps = [_tag_network_step(subnet_id, ec2)]
    for name, description in network.GROUPS.values():
        steps.append(_group_step(subnet_id, name, description, ec2))
    return steps


def _group_step(subnet_id: str, name: str, description: str, ec2) -> Step:
    """Create one project security group unless it exists; refuse one that is untagged or open to the world."""
    shown = network.group_request(name, description, f"<VpcId of {subnet_id}>")
    step = Step("ec2.create_security_group", shown, f"security group {name} in the VPC of {subnet_id}")

    def vpc_id() -> str:
        return ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["VpcId"]

    def in_place() -> bool:
        vpc = vpc_id()
        step.request = network.group_request(name, description, vpc)
        group = network.find_groups(ec2, vpc).get(name)
        if group is None:
            return False
        if not network.tagged(group):
            raise ValueError(f"security group {name} ({group['GroupId']}) exists in {vpc} without the tag "
                             f"{MANAGED_POLICY_TAG['Key']}=true: delete it (setup then creates it tagged) or tag it")
        open_rules = network.world_open_rules(group)
        if open_rules:
            raise ValueError(f"security group {name} ({group['GroupId']}) has inbound rules open to the world "
                             f"({'; '.join(open_rules)}): revoke them; the project opens no port to the world")
        return True

    step.in_place = in_place
    step.apply = lambda: ec2.create_security_group(**step.request)
    return step


def _tag_network_step(subnet_id: str, ec2) -> Step:
    """Tag the subnet and its VPC so AmazonEMRServicePolicy_v2 may launch into them."""
    shown = {"Resources": [subnet_id, f"<VpcId of {subnet_id}>"], "Tags": [MANAGED_POLICY_TAG]}
    step = Step("ec2.create_tags", shown, f"tag {MANAGED_POLICY_TAG['Key']}=true on {subnet_id} and its VPC")

    def untagged() -> list[str]:
        subnet = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
        vpc = ec2.describe_vpcs(VpcIds=[subnet["VpcId"]])["Vpcs"][0]
        step.request = {"Resources": [subnet_id, subnet["VpcId"]], "Tags": [MANAGED_POLICY_TAG]}
        return [resource_id for resource_id, tags in ((subnet_id, subnet.get("Tags", [])),
                                                      (vpc["VpcId"], vpc.get("Tags", [])))
                if MANAGED_POLICY_TAG not in [{"Key": t["Key"], "Value": t["Value"]} for t in tags]]

    step.in_place = lambda: not untagged()
    step.apply = lambda: ec2.create_tags(Resources=untagged(), Tags=[MANAGED_POLICY_TAG])
    return step


def run(steps: list[Step], *, echo=print) -> int:
    """Apply every step that is not in place; return how many changed (0 on a second run)."""
    changed = 0
    index = 0
    while index < len(steps):  # a check may append a follow-up step (an outdated trust policy)
        step = steps[index]
        index += 1
        if step.in_place():
            echo(f"in place:  {step.what}")
            continue
        step.apply()
        changed += 1
        echo(f"{step.done + ':':<10} {step.what}")
    return changed


def account_id(sts=None) -> str:
    """The caller's account id, from STS (a read-only call that needs no permission)."""
    sts = sts or client("sts")
    return sts.get_caller_identity()["Account"]
