"""SSH tunnel to the EMR primary node, for JupyterHub (port 9443) and the Spark UI.

The study opened every port to the world and then hit ssh's "UNPROTECTED PRIVATE
KEY FILE" refusal. Here nothing is opened: JupyterHub is reached through a local
port forward, and the key's permissions are checked first, with the fix in the
message, before ssh is started.
"""

from __future__ import annotations

import os
import shlex
import stat

#: JupyterHub's port on the EMR primary node.
JUPYTERHUB_PORT = 9443


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


def tunnel_command(key: str, host: str, *, local_port: int = JUPYTERHUB_PORT, user: str = "hadoop") -> list[str]:
    """The ``ssh`` command forwarding ``localhost:local_port`` to JupyterHub on ``host``.

    Examples
    --------
    >>> # then open https://localhost:9443 (JupyterHub's self-signed certificate)
    """
    check_private_key(key)
    return ["ssh", "-i", key, "-N", "-o", "ExitOnForwardFailure=yes",
            "-L", f"{local_port}:localhost:{JUPYTERHUB_PORT}", f"{user}@{host}"]
