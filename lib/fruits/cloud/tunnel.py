"""``fruits tunnel``: reach JupyterHub (9443) or Livy (8998) on the EMR primary node from ``localhost``.

The study opened every port to the world and then hit ssh's "UNPROTECTED PRIVATE KEY FILE"
refusal. Here nothing is opened by default:

- ``fruits tunnel --cluster-id j-...`` (default) finds the primary instance and starts an SSM
  Session Manager port forward (``aws ssm start-session --document-name
  AWS-StartPortForwardingSession``): no inbound rule, no key pair, no public address. It needs the
  AWS CLI and its Session Manager plugin on this machine; see ``fruits.cloud.emr.access``.
  The command comes from the cluster's platform (``--platform``, default ``emr``):
  :meth:`fruits.cloud.platform.SparkPlatform.forward_command`.
- ``fruits tunnel --key KEY.pem --host PRIMARY_DNS`` (opt-in) is an SSH local forward for a cluster
  created with ``--key-name`` and ``--ssh-from YOUR_ADDRESS``; the key's permissions are checked
  first, with the fix in the message, before ssh is started.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys

from fruits.cloud.emr.access import JUPYTERHUB_PORT, LIVY_PORT, PLUGIN_HELP
from fruits.cloud.registry import get_platform, platform_names

__all__ = ["JUPYTERHUB_PORT", "LIVY_PORT", "KeyPermissionError", "check_private_key", "tunnel_command",
           "add_parser", "run_command"]


class KeyPermissionError(PermissionError):
    """The private key is readable or writable by other users."""


def check_private_key(path: str) -> None:
    """Refuse a private key that group or others may read or write, as ssh itself would.

    Raises
    ------
    FileNotFoundError
        No such key file.
    KeyPermissionError
        Its permissions are open; the message gives the ``chmod`` that fixes it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"private key {path!r} not found")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise KeyPermissionError(
            f"private key {path!r} has permissions {mode:04o}: others can read it, and ssh will "
            f"refuse it. Run: chmod 400 {shlex.quote(path)}"
        )


def tunnel_command(key: str, host: str, *, local_port: int = JUPYTERHUB_PORT, user: str = "hadoop",
                   remote_port: int = JUPYTERHUB_PORT) -> list[str]:
    """The ``ssh`` command forwarding ``localhost:local_port`` to ``remote_port`` on ``host``.

    Examples
    --------
    >>> # then open https://localhost:9443 (JupyterHub's self-signed certificate)
    """
    check_private_key(key)
    return ["ssh", "-i", key, "-N", "-o", "ExitOnForwardFailure=yes",
            "-L", f"{local_port}:localhost:{remote_port}", f"{user}@{host}"]


def add_parser(commands) -> None:
    """Register ``fruits tunnel`` on the CLI's sub-command parser."""
    parser = commands.add_parser(
        "tunnel", help="port-forward to JupyterHub/Livy on the EMR primary node (SSM by default, SSH opt-in)")
    parser.add_argument("--cluster-id", help="SSM Session Manager port forward to this cluster's primary node "
                                             "(default way in: no open port)")
    parser.add_argument("--platform", default="emr", choices=platform_names(),
                        help="the platform that runs --cluster-id (default: emr)")
    parser.add_argument("--key", help="opt-in SSH: the key pair's private key (.pem), chmod 400")
    parser.add_argument("--host", help="opt-in SSH: the primary node's public DNS name")
    parser.add_argument("--port", type=int, default=JUPYTERHUB_PORT,
                        help=f"port on the primary node: {JUPYTERHUB_PORT} JupyterHub (default), {LIVY_PORT} Livy")
    parser.add_argument("--local-port", type=int, help="local port (default: same as --port)")
    parser.add_argument("--dry-run", action="store_true", help="print the command, do not run it")


def _command(args) -> list[str]:
    local_port = args.local_port or args.port
    if args.cluster_id:
        if args.key or args.host:
            raise ValueError("give either --cluster-id (SSM, no open port) or --key with --host (SSH), not both")
        return get_platform(args.platform).forward_command(args.cluster_id, port=args.port, local_port=local_port)
    if not (args.key and args.host):
        raise ValueError("give --cluster-id j-... (SSM port forwarding, the default: no open port), "
                         "or --key KEY.pem and --host PRIMARY_DNS for SSH to a cluster created with --ssh-from")
    return tunnel_command(args.key, args.host, local_port=local_port, remote_port=args.port)


def run_command(args) -> int:
    """Print the tunnel command, then run it unless ``--dry-run``; 2 on a usage error."""
    try:
        command = _command(args)
    except (ValueError, PermissionError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # botocore: no credentials, no such cluster, access denied
        if not exc.__class__.__module__.startswith("botocore"):
            raise
        print(f"error: cannot find the primary instance of {args.cluster_id}: {exc}", file=sys.stderr)
        return 2
    local_port = args.local_port or args.port
    print(" ".join(shlex.quote(part) for part in command))
    what = "JupyterHub's certificate is self-signed" if args.port == JUPYTERHUB_PORT else "Livy"
    scheme = "https" if args.port == JUPYTERHUB_PORT else "http"
    print(f"Then open {scheme}://localhost:{local_port} ({what}).")
    if args.dry_run:
        return 0
    if command[0] == "aws":
        missing = [tool for tool in ("aws", "session-manager-plugin") if shutil.which(tool) is None]
        if missing:
            print(f"error: {' and '.join(missing)} not found on PATH; SSM port forwarding needs the AWS CLI "
                  f"and its Session Manager plugin: {PLUGIN_HELP}", file=sys.stderr)
            return 2
    return subprocess.call(command)
