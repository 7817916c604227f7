"""Named JupyterHub users on the cluster, their passwords kept in AWS Secrets Manager.

JupyterHub on EMR starts with one administrator, ``jovyan``, password ``jupyter``, which AWS
"strongly recommend[s]" replacing
(https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-jupyterhub-user-access.html). Here:

- each named user gets a password generated on the caller's machine (Python's ``secrets``) and
  stored in Secrets Manager as ``fruits-emr/<bucket>/jupyterhub/<user>``, once: later clusters of
  the same bucket reuse it, as they reuse the user's notebooks in ``s3://<bucket>/jupyter/<user>/``;
- an EMR step (``bootstrap/jupyterhub-users.sh``, run by ``command-runner.jar`` on the primary node
  after the applications are installed) locks ``jovyan``, creates the users inside the
  ``jupyterhub`` container with ``useradd`` + ``chpasswd`` as AWS documents for PAM users
  (https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-jupyterhub-pam-users.html) and registers
  them with the Hub's REST API. The step reads the passwords on the node with
  ``aws secretsmanager get-secret-value``; only the instance role (``emr-config/iam-instance-policy.json``)
  and the people given the caller policy may read that prefix.

Locking ``jovyan`` rather than deleting it: a locked password (``usermod -L``) makes PAM refuse the
login, which is all that matters, is reversible (``usermod -U``) and keeps the account, its uid and
its home directory that EMR's image and configuration (``admin_users``) expect; deleting a user that
EMR's configuration names is a change whose effect on the Hub we could not check without a cluster.

No password is ever in this repository, in a request printed by ``--dry-run`` (shown as
:data:`REDACTED`), in the step's arguments (they carry the secret prefix and the names only) or in
its log. ``fruits emr users --show NAME`` prints one password, on demand, from Secrets Manager.
"""

from __future__ import annotations

import re
import secrets
import shlex
from pathlib import Path
from typing import Callable, Iterable

from fruits.cloud.emr.aws import check_bucket

#: The step script, uploaded by ``fruits emr upload`` next to the bootstrap action.
STEP_SCRIPT = "jupyterhub-users.sh"
#: What ``--dry-run`` shows instead of a generated password.
REDACTED = "<redacted: generated with Python's secrets module, sent only to Secrets Manager, only if absent>"
PROJECT_TAG = {"Key": "project", "Value": "fruits-emr"}
#: Names that are not people: the container's own accounts and the default administrator.
RESERVED = frozenset({"root", "jovyan", "hadoop", "daemon", "bin", "sys", "sync", "games", "man", "lp",
                      "mail", "news", "uucp", "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody",
                      "systemd-network", "systemd-resolve", "messagebus", "sshd", "ubuntu"})
_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def check_user(name: str) -> str:
    """A user name the container's ``useradd`` and JupyterHub both accept, and that is a person's.

    Raises
    ------
    ValueError
        Not a lowercase POSIX login name of at most 32 characters, or a reserved account.
    """
    if not _NAME.fullmatch(name or ""):
        raise ValueError(f"user name must be lowercase letters, digits, '_' or '-' (at most 32, not starting "
                         f"with a digit or '-'), got {name!r}")
    if name in RESERVED:
        raise ValueError(f"user name {name!r} is reserved (a system account, or the default jovyan this locks)")
    return name


def parse_users(users: str | None = None, users_file: str | Path | None = None) -> list[str]:
    """Names from ``--users a,b`` and/or ``--users-file`` (one per line, ``#`` comments): checked, once each."""
    names: list[str] = []
    if users:
        names += [n.strip() for n in users.split(",") if n.strip()]
    if users_file:
        for line in Path(users_file).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                names.append(line)
    return list(dict.fromkeys(check_user(n) for n in names))


def secret_prefix(bucket: str) -> str:
    """``fruits-emr/<bucket>/jupyterhub/``: the only secrets the instance role may read."""
    check_bucket(bucket)
    return f"fruits-emr/{bucket}/jupyterhub/"


def secret_name(bucket: str, user: str) -> str:
    return secret_prefix(bucket) + check_user(user)


def generate_password() -> str:
    """24 URL-safe characters (144 bits): no ``:`` or newline, so ``chpasswd`` takes it as is."""
    return secrets.token_urlsafe(18)


def create_secret_request(*, bucket: str, user: str, password: str) -> dict:
    return {"Name": secret_name(bucket, user),
            "Description": f"JupyterHub password of {user} on fruits-emr clusters of bucket {bucket}",
            "SecretString": password, "Tags": [PROJECT_TAG]}


def redacted(request: dict) -> dict:
    """The request with its secret value replaced by :data:`REDACTED`, for printing."""
    return {**request, "SecretString": REDACTED} if "SecretString" in request else dict(request)


def dry_run_operations(*, bucket: str, users: Iterable[str]) -> list[dict]:
    """What ``--dry-run`` shows for the secrets: one redacted ``create_secret`` per user (sent only if absent)."""
    return [{"operation": "secretsmanager.create_secret",
             "request": redacted(create_secret_request(bucket=bucket, user=user, password=REDACTED))}
            for user in users]


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def ensure_secrets(client, *, bucket: str, users: Iterable[str],
                   echo: Callable[[str], None] = print) -> dict[str, str]:
    """Create the secret of each user that has none; never change an existing one.

    Returns ``{user: "created" | "in place"}``. A second call creates nothing, so every cluster of
    the bucket sees the same passwords.

    Raises
    ------
    ValueError
        A secret of that name is scheduled for deletion (Secrets Manager refuses a new one).
    """
    outcome: dict[str, str] = {}
    for user in users:
        name = secret_name(bucket, user)
        try:
            described = client.describe_secret(SecretId=name)
        except Exception as exc:  # botocore ClientError; botocore stays a lazy import
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            described = None
        if described is not None:
            if described.get("DeletedDate"):
                raise ValueError(f"secret {name} is scheduled for deletion; restore it "
                                 f"(aws secretsmanager restore-secret --secret-id {name}) or pick another name")
            outcome[user] = "in place"
        else:
            try:
                client.create_secret(**create_secret_request(bucket=bucket, user=user, password=generate_password()))
                outcome[user] = "created"
            except Exception as exc:
                if _error_code(exc) != "ResourceExistsException":  # created meanwhile: keep that one
                    raise
                outcome[user] = "in place"
        echo(f"{outcome[user] + ':':<10} secret {name}")
    return outcome


def show_password(client, *, bucket: str, user: str) -> str:
    """The current password of ``user`` (``fruits emr users --show``)."""
    return client.get_secret_value(SecretId=secret_name(bucket, user))["SecretString"]


def users_step(*, bucket: str, prefix: str, region: str, users: Iterable[str],
               name: str = "fruits jupyterhub users") -> dict:
    """The EMR step that creates ``users`` in the ``jupyterhub`` container (``command-runner.jar``).

    The step copies ``bootstrap/jupyterhub-users.sh`` from the bucket and runs it as root (steps
    run as ``hadoop``; ``docker exec`` needs root, as AWS's own examples use ``sudo docker exec``:
    https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-jupyterhub-administer.html). Its
    arguments are the region, the secret prefix and the names: no password.
    """
    users = [check_user(u) for u in users]
    if not users:
        raise ValueError("no user named for the JupyterHub users step")
    script = f"s3://{bucket}/{prefix.strip('/')}/bootstrap/{STEP_SCRIPT}"
    arguments = ["--region", region, "--secret-prefix", secret_prefix(bucket), *users]
    command = "\n".join([
        "set -euo pipefail",
        'script="$(mktemp)"',
        "trap 'rm -f \"$script\"' EXIT",
        f'aws s3 cp --only-show-errors {shlex.quote(script)} "$script"',
        'sudo bash "$script" ' + " ".join(shlex.quote(a) for a in arguments),
    ])
    if len(command) > 10_000:
        raise ValueError("too many users for one step (EMR allows 10,240 characters); split them over two steps")
    return {"Name": name, "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["bash", "-c", command]}}


def add_step_request(*, cluster_id: str, bucket: str, prefix: str, region: str, users: Iterable[str]) -> dict:
    """``emr.add_job_flow_steps`` for a running cluster (``fruits emr users --cluster-id``)."""
    return {"JobFlowId": cluster_id,
            "Steps": [users_step(bucket=bucket, prefix=prefix, region=region, users=users)]}


def region_name(default: str = "<your-region>") -> str:
    """The region of the caller's AWS configuration: where the secrets are, and where clusters start."""
    import boto3

    return boto3.session.Session().region_name or default
