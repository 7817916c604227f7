"""Named JupyterHub users on the cluster, their passwords kept in AWS Secrets Manager.

JupyterHub on EMR starts with one administrator, ``jovyan``, password ``jupyter``, which AWS
"strongly recommend[s]" replacing
(https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-jupyterhub-user-access.html). Here:

- each named user gets a password generated on the caller's machine (Python's ``secrets``), kept
  in two secrets, once: later clusters of the same bucket reuse them, as they reuse the user's
  notebooks in ``s3://<bucket>/jupyter/<user>/``:

  - ``fruits-emr/<bucket>/jupyterhub-password/<user>``: the plaintext, for the people given the
    caller policy (``fruits emr users --show NAME``); no cluster may read it;
  - ``fruits-emr/<bucket>/jupyterhub/<user>``: its SHA-512 crypt hash (``$6$...``, what
    ``/etc/shadow`` holds), the only one the instance role may read
    (``emr-config/iam-instance-policy.json``).

  Every notebook's code runs with the instance role (Livy sessions run as ``livy``; AWS documents
  impersonation as off by default), so whatever that role may read, every JupyterHub user may
  read: a hash, not a password. The hash is salted (16 random characters) and SHA-512 crypt
  iterates 5,000 times; against a 144-bit random password that is out of reach of a guess;
- an EMR step (``bootstrap/jupyterhub-users.sh``, run by ``command-runner.jar`` on the primary node
  after the applications are installed) locks ``jovyan``, creates the users inside the
  ``jupyterhub`` container with ``useradd`` and sets each hash with ``chpasswd -e``, as AWS documents
  for PAM users (https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-jupyterhub-pam-users.html,
  there with plaintext ``chpasswd``), and registers them with the Hub's REST API. The step reads
  the hashes on the node with ``aws secretsmanager get-secret-value``.
- ``fruits emr users --rotate NAME`` gives a user a new password (both secrets get a new version);
  the next users step sets it, and the old one stops working.

Locking ``jovyan`` rather than deleting it: a locked password (``usermod -L``) makes PAM refuse the
login, which is all that matters, is reversible (``usermod -U``) and keeps the account, its uid and
its home directory that EMR's image and configuration (``admin_users``) expect; deleting a user that
EMR's configuration names is a change whose effect on the Hub we could not check without a cluster.

No password is ever in this repository, in a request printed by ``--dry-run`` (shown as
:data:`REDACTED`), in the step's arguments (they carry the secret prefix and the names only), in
its log, or on the cluster. ``fruits emr users --show NAME`` prints one password, on demand, from Secrets Manager.
"""

from __future__ import annotations

import re
import secrets
import shlex
import warnings
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
    """``fruits-emr/<bucket>/jupyterhub/``: the password hashes, the only secrets the instance role may read."""
    check_bucket(bucket)
    return f"fruits-emr/{bucket}/jupyterhub/"


def secret_name(bucket: str, user: str) -> str:
    """The secret holding the crypt hash of ``user``'s password (what the cluster reads)."""
    return secret_prefix(bucket) + check_user(user)


def password_prefix(bucket: str) -> str:
    """``fruits-emr/<bucket>/jupyterhub-password/``: the plaintexts, for people only, never a cluster.

    Outside :func:`secret_prefix` on purpose: the instance policy's ``.../jupyterhub/*`` cannot
    match a name under ``.../jupyterhub-password/``.
    """
    check_bucket(bucket)
    return f"fruits-emr/{bucket}/jupyterhub-password/"


def password_secret_name(bucket: str, user: str) -> str:
    """The secret holding ``user``'s plaintext password (``fruits emr users --show``)."""
    return password_prefix(bucket) + check_user(user)


def generate_password() -> str:
    """24 URL-safe characters (144 bits): no ``:`` or newline, so any login form takes it as is."""
    return secrets.token_urlsafe(18)


#: A SHA-512 crypt hash as ``/etc/shadow`` and ``chpasswd -e`` take it (the step checks the same shape).
CRYPT_HASH = re.compile(r"\$6\$(rounds=[0-9]+\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}")


def _crypt():
    """Python's ``crypt`` module (glibc's ``crypt(3)``; deprecated, present in the project's Python 3.11)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError as exc:  # Python 3.13 removed it
            raise RuntimeError("making a password hash needs Python's crypt module (Python 3.11, "
                               "as the project pins)") from exc
    return crypt


def hash_password(password: str) -> str:
    """The SHA-512 crypt hash (``$6$salt$...``, 16 random salt characters) of ``password``."""
    crypt = _crypt()
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    if not hashed or not CRYPT_HASH.fullmatch(hashed):
        raise RuntimeError("this system's crypt(3) made no SHA-512 hash")
    return hashed


def password_matches(password: str, hashed: str) -> bool:
    """Whether ``hashed`` is a SHA-512 crypt hash of ``password``."""
    if not CRYPT_HASH.fullmatch(hashed or ""):
        return False
    return secrets.compare_digest(_crypt().crypt(password, hashed), hashed)


def create_secret_request(*, bucket: str, user: str, password: str) -> dict:
    """The plaintext secret of ``user``."""
    return {"Name": password_secret_name(bucket, user),
            "Description": f"JupyterHub password of {user} on fruits-emr clusters of bucket {bucket}: "
                           f"for people only, never granted to a cluster",
            "SecretString": password, "Tags": [PROJECT_TAG]}


def create_hash_request(*, bucket: str, user: str, hashed: str) -> dict:
    """The hash secret of ``user``: what the users step on the cluster reads."""
    return {"Name": secret_name(bucket, user),
            "Description": f"SHA-512 crypt hash of the JupyterHub password of {user} on fruits-emr clusters of "
                           f"bucket {bucket} (chpasswd -e); the plaintext is in {password_secret_name(bucket, user)}",
            "SecretString": hashed, "Tags": [PROJECT_TAG]}


def redacted(request: dict) -> dict:
    """The request with its secret value replaced by :data:`REDACTED`, for printing."""
    return {**request, "SecretString": REDACTED} if "SecretString" in request else dict(request)


def dry_run_operations(*, bucket: str, users: Iterable[str]) -> list[dict]:
    """What ``--dry-run`` shows for the secrets: two redacted ``create_secret`` per user (sent only if absent)."""
    operations = []
    for user in users:
        for request in (create_secret_request(bucket=bucket, user=user, password=REDACTED),
                        create_hash_request(bucket=bucket, user=user, hashed=REDACTED)):
            operations.append({"operation": "secretsmanager.create_secret", "request": redacted(request)})
    return operations


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def _describe(client, name: str) -> dict | None:
    """``describe_secret``, or None when there is no such secret.

    Raises
    ------
    ValueError
        The secret is scheduled for deletion (Secrets Manager refuses a new one of that name).
    """
    try:
        described = client.describe_secret(SecretId=name)
    except Exception as exc:  # botocore ClientError; botocore stays a lazy import
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        return None
    if described.get("DeletedDate"):
        raise ValueError(f"secret {name} is scheduled for deletion; restore it "
                         f"(aws secretsmanager restore-secret --secret-id {name}) or pick another name")
    return described


def _create(client, request: dict) -> bool:
    """Create the secret; False when one of that name appeared meanwhile (that one is kept)."""
    try:
        client.create_secret(**request)
        return True
    except Exception as exc:
        if _error_code(exc) != "ResourceExistsException":
            raise
        return False


def _ensure_hash(client, *, bucket: str, user: str, password: str) -> str:
    """Make the hash secret hold a hash of ``password``: ``"created"``, ``"updated"`` or ``"in place"``.

    ``updated`` repairs a hash that does not match (a rotation interrupted between its two writes)
    and replaces a plaintext that an earlier version of this project kept under the hash's name.
    """
    name = secret_name(bucket, user)
    if _describe(client, name) is None:
        if _create(client, create_hash_request(bucket=bucket, user=user, hashed=hash_password(password))):
            return "created"
    if password_matches(password, client.get_secret_value(SecretId=name)["SecretString"]):
        return "in place"
    client.put_secret_value(SecretId=name, SecretString=hash_password(password))
    _forget_previous(client, name)
    return "updated"


def _forget_previous(client, name: str) -> None:
    """Take ``AWSPREVIOUS`` off the hash secret's older version, which may hold a plaintext.

    After ``put_secret_value`` Secrets Manager keeps the replaced value as ``AWSPREVIOUS``, and
    the instance role (which may read this secret) could still fetch it by that stage. A version
    without a stage is deprecated, and Secrets Manager deletes it later.
    """
    for version in client.list_secret_version_ids(SecretId=name, IncludeDeprecated=False)["Versions"]:
        if "AWSPREVIOUS" in version.get("VersionStages", []):
            client.update_secret_version_stage(SecretId=name, VersionStage="AWSPREVIOUS",
                                               RemoveFromVersionId=version["VersionId"])


def _earlier_plaintext(client, *, bucket: str, user: str) -> str | None:
    """The password an earlier layout kept in plaintext under the hash secret's name, if any."""
    if _describe(client, secret_name(bucket, user)) is None:
        return None
    value = client.get_secret_value(SecretId=secret_name(bucket, user))["SecretString"]
    return None if CRYPT_HASH.fullmatch(value) else value


def ensure_secrets(client, *, bucket: str, users: Iterable[str],
                   echo: Callable[[str], None] = print) -> dict[str, str]:
    """Create the two secrets of each user that has none; never change a password.

    Returns ``{user: "created" | "in place" | "updated"}`` (``updated``: the hash secret was
    rewritten to match the password, see :func:`_ensure_hash`). A second call creates nothing,
    so every cluster of the bucket sees the same passwords.

    Raises
    ------
    ValueError
        A secret of that name is scheduled for deletion (Secrets Manager refuses a new one).
    """
    outcome: dict[str, str] = {}
    for user in users:
        name = password_secret_name(bucket, user)
        # An earlier layout's plaintext moves to the people's secret: the person's password stays.
        created = _describe(client, name) is None and _create(client, create_secret_request(
            bucket=bucket, user=user,
            password=_earlier_plaintext(client, bucket=bucket, user=user) or generate_password()))
        password = client.get_secret_value(SecretId=name)["SecretString"]
        hashed = _ensure_hash(client, bucket=bucket, user=user, password=password)
        outcome[user] = "created" if created else ("in place" if hashed == "in place" else "updated")
        echo(f"{outcome[user] + ':':<10} secret {name} and its hash {secret_name(bucket, user)}")
    return outcome


def rotate_password(client, *, bucket: str, user: str) -> None:
    """Give ``user`` a new password: a new version of the plaintext secret, then of its hash.

    The cluster keeps the old one until the users step runs again (``fruits emr users
    --cluster-id``), which sets the new hash; from then on the old password no longer logs in.
    """
    name = password_secret_name(bucket, user)
    if _describe(client, name) is None:
        raise ValueError(f"{user} has no password yet (no secret {name}): fruits emr users --users {user}")
    password = generate_password()
    client.put_secret_value(SecretId=name, SecretString=password)
    _ensure_hash(client, bucket=bucket, user=user, password=password)


def show_password(client, *, bucket: str, user: str) -> str:
    """The current password of ``user`` (``fruits emr users --show``)."""
    return client.get_secret_value(SecretId=password_secret_name(bucket, user))["SecretString"]


def users_step(*, bucket: str, prefix: str, region: str, users: Iterable[str],
               name: str = "fruits jupyterhub users") -> dict:
    """The EMR step that creates ``users`` in the ``jupyterhub`` container (``command-runner.jar``).

    The step copies ``bootstrap/jupyterhub-users.sh`` from the bucket and runs it as root (steps
    run as ``hadoop``; ``docker exec`` needs root, as AWS's own examples use ``sudo docker exec``:
    https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-jupyterhub-administer.html). Its
    arguments are the region, the prefix of the hash secrets and the names: no password.
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
