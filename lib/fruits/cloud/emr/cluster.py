"""``fruits emr create-cluster``: the ``emr.run_job_flow`` request, from ``emr-config/cluster.json``.

The request is a plain dict (printed as is by ``--dry-run``): ``cluster.json`` with
``configurations.json`` and the caller's options, rendered for one bucket. See
:mod:`fruits.cloud.emr.templates` for the placeholders and :mod:`fruits.cloud.emr.iam` for
the roles it names.
"""

from __future__ import annotations

from fruits.cloud.emr.aws import check_bucket
from fruits.cloud.emr.templates import load_template, render


def wheel_name(version: str) -> str:
    """The file name ``pip wheel`` gives the project's wheel (the bootstrap action installs it by name)."""
    return f"fruits_emr-{version}-py3-none-any.whl"


def livy_session_timeout(idle_timeout: int) -> str:
    """``livy.server.session.timeout`` for a cluster that auto-terminates after ``idle_timeout`` seconds.

    EMR (6.4 and later) counts a cluster idle only while no YARN application is active
    (https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-auto-termination-policy.html),
    and every open Livy session is one: a notebook left open would keep the cluster up for
    Livy's whole timeout before the idle clock even starts (8 h before: about 9 h in all).
    Livy ends a session after this long without a statement, the same length as the idle
    timeout, so a forgotten cluster costs at most about twice ``idle_timeout`` after its last
    cell. ``timeout-check.skip-busy`` (configurations.json) keeps a session whose statement is
    still running from being ended mid-run (Livy's default, false, would end it).
    """
    return f"{int(idle_timeout)}s"


def run_job_flow_request(*, bucket: str, prefix: str, wheel: str, key_name: str | None = None,
                         subnet_id: str | None = None, spot_task: bool = False,
                         idle_timeout: int = 3600,
                         additional_master_security_groups: list[str] | None = None,
                         steps: list[dict] | None = None) -> dict:
    """The ``emr.run_job_flow`` request: cluster.json with configurations.json and our options.

    The roles are the project's own (``fruits emr setup``), and the cluster carries the tag
    ``for-use-with-amazon-emr-managed-policies=true`` without which ``AmazonEMRServicePolicy_v2``
    may not launch anything
    (https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-iam-role.html). No inbound rule is
    added unless ``additional_master_security_groups`` names one (``--ssh-from``, see
    ``fruits.cloud.emr.access``). ``steps`` run once the applications are up (``--users``: the JupyterHub
    users step of ``fruits.cloud.emr.users``, which a bootstrap action could not be: those run before
    the applications are installed).
    """
    check_bucket(bucket)
    if not 60 <= idle_timeout <= 604800:
        raise ValueError(f"idle_timeout must be between 60 and 604800 seconds, got {idle_timeout}")
    values = {"BUCKET": bucket, "PREFIX": prefix.strip("/"), "WHEEL": wheel,
              "LIVY_SESSION_TIMEOUT": livy_session_timeout(idle_timeout)}
    request = render(load_template("cluster.json"), values)
    request["Configurations"] = render(load_template("configurations.json"), values)
    request["AutoTerminationPolicy"] = {"IdleTimeout": idle_timeout}
    if key_name:
        request["Instances"]["Ec2KeyName"] = key_name
    if subnet_id:
        request["Instances"]["Ec2SubnetId"] = subnet_id
    if additional_master_security_groups:
        request["Instances"]["AdditionalMasterSecurityGroups"] = list(additional_master_security_groups)
    if spot_task:
        for group in request["Instances"]["InstanceGroups"]:
            if group["InstanceRole"] == "TASK":
                group["Market"] = "SPOT"
    if steps:
        request["Steps"] = list(steps)
    return request
