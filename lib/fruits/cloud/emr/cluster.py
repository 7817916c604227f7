"""AWS EMR requests built from ``emr-config/``: upload, create a cluster, run a notebook step.

Every request is a plain dict built here and printed as is by ``--dry-run``, so what
would be sent to AWS can be read, diffed and tested without touching anything. The
templates in ``emr-config/`` hold ``${BUCKET}``, ``${PREFIX}`` and ``${WHEEL}``
placeholders; nothing in them is a secret (EMR prints configurations back in
plaintext), and credentials come from the usual AWS chain, never from the repo.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from fruits import config
from fruits.report import CLOUD_NOTEBOOK

#: Where JupyterHub on EMR keeps the default user's notebooks when S3 persistence is on.
JUPYTER_PREFIX = "jupyter/jovyan"
#: Notebooks of each JupyterHub user: ``s3://BUCKET/jupyter/<user>/``
#: (https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-jupyterhub-s3.html).
JUPYTER_USER_PREFIX = "jupyter/{user}"
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


def emr_config_dir() -> Path:
    """The ``emr-config/`` folder of the checkout (``FRUITS_EMR_CONFIG`` overrides)."""
    import os

    return Path(os.environ.get("FRUITS_EMR_CONFIG", config.project_root() / "emr-config"))


def render(template: Any, values: Mapping[str, str]) -> Any:
    """Replace ``${NAME}`` placeholders in every string of a JSON-like structure.

    Raises
    ------
    ValueError
        A placeholder has no value.
    """
    if isinstance(template, dict):
        return {key: render(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, values) for value in template]
    if isinstance(template, str):
        def substitute(match):
            name = match.group(1)
            if name not in values:
                raise ValueError(f"no value for ${{{name}}} in the EMR templates")
            return values[name]
        return _PLACEHOLDER.sub(substitute, template)
    return template


def load_template(name: str) -> Any:
    with open(emr_config_dir() / name, encoding="utf-8") as handle:
        return json.load(handle)


def check_bucket(bucket: str) -> None:
    """A bucket name, not a URI (EMR's jupyter-s3-conf wants the bare name)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket or ""):
        raise ValueError(f"bucket must be a bare S3 bucket name (no s3://, no slash), got {bucket!r}")


def wheel_name(version: str) -> str:
    return f"fruits_emr-{version}-py3-none-any.whl"


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
    ``fruits.emr_access``). ``steps`` run once the applications are up (``--users``: the JupyterHub
    users step of ``fruits.emr_users``, which a bootstrap action could not be: those run before
    the applications are installed).
    """
    check_bucket(bucket)
    if not 60 <= idle_timeout <= 604800:
        raise ValueError(f"idle_timeout must be between 60 and 604800 seconds, got {idle_timeout}")
    values = {"BUCKET": bucket, "PREFIX": prefix.strip("/"), "WHEEL": wheel}
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


def notebook_step_request(*, cluster_id: str, bucket: str, prefix: str, input_path: str, output: str,
                          parameters: Mapping[str, Any], name: str = "fruits run") -> dict:
    """The ``emr.add_job_flow_steps`` request that runs the cloud notebook through the cluster's Livy.

    The step runs on the primary node, next to Livy (``localhost:8998``):
    ``fruits run --livy`` executes ``02-featurize-emr`` with papermill in sparkmagic's
    PySpark kernel, exactly as a JupyterHub user runs it, and writes the executed
    notebook and the HTML report (figures included) to ``output``. A step, rather than a
    run from the user's machine through a tunnel, keeps going when the laptop sleeps,
    needs no port forwarded and leaves its log in the cluster's S3 log folder.
    ``FRUITS_PYTHON`` and ``FRUITS_LIVY_URL`` may override the interpreter and the Livy
    address where the command is run elsewhere (the tests run it against the Livy double).
    """
    check_bucket(bucket)
    if not output.startswith("s3://"):
        raise ValueError(f"output must be an s3:// URI on EMR, got {output!r}")
    notebook = f"s3://{bucket}/{prefix.strip('/')}/notebooks/{CLOUD_NOTEBOOK}"
    arguments = ["--livy", "LIVY", "--notebook", notebook, "--input", input_path, "--output", output]
    for key, value in parameters.items():
        arguments += ["-p", key, json.dumps(value) if not isinstance(value, str) else value]
    command = " ".join(shlex.quote(a) for a in arguments).replace("LIVY", '"$livy"', 1)
    script = "\n".join([
        "set -euo pipefail",
        'python="${FRUITS_PYTHON:-/usr/bin/python3.11}"',
        'livy="${FRUITS_LIVY_URL:-http://localhost:8998}"',
        f'"$python" -m fruits.cli run {command}',
    ])
    if len(script) > 10_000:
        raise ValueError("the step's command is longer than EMR allows (10,240 characters)")
    return {
        "JobFlowId": cluster_id,
        "Steps": [{
            "Name": name,
            "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["bash", "-c", script]},
        }],
    }


def build_wheel(target: Path) -> Path:
    """Build the project's wheel into ``target`` and return its path."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(target),
                    str(config.project_root())], check=True)
    wheels = sorted(target.glob("fruits_emr-*.whl"))
    if not wheels:
        raise RuntimeError(f"no wheel was built in {target}")
    return wheels[-1]


def jupyter_prefixes(users: list[str] | None = None) -> list[str]:
    """JupyterHub's S3 folders to fill: each named user's, or the default ``jovyan``'s when none is named."""
    if not users:
        return [JUPYTER_PREFIX]
    from fruits.emr_users import check_user

    return [JUPYTER_USER_PREFIX.format(user=check_user(user)) for user in users]


def upload_plan(*, bucket: str, prefix: str, wheel: Path, users: list[str] | None = None) -> list[tuple[str, str]]:
    """(local file, s3 key) pairs that ``fruits emr upload`` copies.

    Only the cloud notebook goes where JupyterHub shows notebooks (``jupyter/jovyan/``, or
    ``jupyter/<user>/`` for each of ``users``): JupyterHub's Python 3 kernel runs in a container
    without ``fruits`` or Spark, so the local notebook could not run there. Its ``.py`` source
    also goes under ``PREFIX/notebooks/`` for headless runs (``fruits emr run``).
    """
    check_bucket(bucket)
    root, base = config.project_root(), prefix.strip("/")
    plan = [
        (str(wheel), f"{base}/dist/{wheel.name}"),
        (str(root / "requirements" / "constraints.txt"), f"{base}/dist/constraints.txt"),
        (str(root / "requirements" / "sparkmagic.txt"), f"{base}/dist/sparkmagic.txt"),
        (str(root / "bootstrap" / "install-fruits.sh"), f"{base}/bootstrap/install-fruits.sh"),
        (str(root / "bootstrap" / "jupyterhub-users.sh"), f"{base}/bootstrap/jupyterhub-users.sh"),
    ]
    plan += [(str(p), f"{base}/emr-config/{p.name}") for p in sorted(emr_config_dir().glob("*.json"))]
    notebook = config.notebooks_dir() / CLOUD_NOTEBOOK
    plan.append((str(notebook), f"{base}/notebooks/{notebook.name}"))
    shown = notebook.with_suffix(".ipynb")
    plan += [(str(shown), f"{folder}/{base}/{shown.name}") for folder in jupyter_prefixes(users)]
    return plan


def folder_markers(*, prefix: str, users: list[str] | None = None) -> list[str]:
    """Empty objects that make JupyterHub's S3 contents manager list the notebook folder.

    s3contents (the S3 ContentsManager EMR's JupyterHub uses) shows a folder only when it
    holds a ``.s3keep`` object; one per user's folder (``jovyan``'s when no user is named).
    """
    return [f"{folder}/{prefix.strip('/')}/.s3keep" for folder in jupyter_prefixes(users)]


def client(service: str):
    """A boto3 client; endpoint and credentials come from the standard AWS environment."""
    import boto3

    return boto3.client(service)
