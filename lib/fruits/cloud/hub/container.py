""""The container": JupyterHub in its own mount and PID namespaces, as EMR runs it in Docker.

EMR runs JupyterHub in a Docker container named ``jupyterhub``: its users live in the
container's ``/etc/passwd`` and ``/etc/shadow`` (PAM), their homes in the container, and the
project's users step reaches them with ``docker exec jupyterhub useradd ...``. Here the same
isolation comes from ``unshare --mount --pid --fork --propagation private --mount-proc``: inside,
a copy of the host's ``/etc`` (made at each start under the state folder) is bind-mounted on
``/etc``, and a folder of the state folder on ``/home``. ``/tmp`` stays the host's: the state
folder may itself be under it (a test's ``tmp_path``). A whole folder, not single
files: ``useradd`` and ``chpasswd`` replace ``/etc/passwd`` and ``/etc/shadow`` by renaming a new
file over them, which a single-file bind mount refuses. Nothing changes the host's users; the
mounts exist only in the namespace and vanish with it.

The ``docker`` shim (:func:`write_shims`) answers ``docker exec [-i] jupyterhub CMD...`` by
entering the namespaces with ``nsenter --target PID --mount --pid``; without ``-i`` standard
input is closed, as Docker does. :meth:`Container.stop` ends the namespace: ``SIGTERM`` to its
init (which hands it to JupyterHub, which stops the single-user servers and the proxy), then,
after a bounded wait, ``SIGKILL`` (the kernel then kills every process of the PID namespace).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from fruits.cloud.hub.state import HubState

#: The image's default administrator and its password, as on EMR (which AWS says to replace).
DEFAULT_ADMIN = ("jovyan", "jupyter")


class HubUnavailable(RuntimeError):
    """What ``fruits hub`` needs is missing here (root, ``unshare``, ``nsenter``, PAM)."""


def check_prerequisites() -> None:
    """Raise :class:`HubUnavailable` with one line saying what is missing."""
    if sys.platform != "linux":
        raise HubUnavailable(f"fruits hub needs Linux namespaces (unshare); this is {sys.platform}")
    if os.geteuid() != 0:
        raise HubUnavailable("fruits hub needs root: it creates mount and PID namespaces (unshare) and "
                             "PAM users inside them (run it with sudo, or in a root container)")
    for tool in ("unshare", "nsenter", "useradd", "chpasswd", "usermod", "passwd", "curl"):
        if not shutil.which(tool):
            raise HubUnavailable(f"fruits hub needs {tool}, which is not on PATH")
    probe = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "--mount-proc",
                            "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        raise HubUnavailable("fruits hub cannot create mount and PID namespaces here (unshare: "
                             f"{probe.stderr.strip() or probe.returncode}); a container may need --privileged")


def blocked_paths(paths: list[str]) -> list[tuple[str, str]]:
    """``(folder, path)``: each ``path`` that other users cannot reach, and the first folder in the way.

    The single-user servers run as the users, with this Python. A Python installed under root's
    home (``/root/.pyenv``, mode 700) cannot run for them; in a container, ``/root`` would be the
    image's own. :func:`init_script` gives the container its own empty ``/root`` (a ``tmpfs``)
    and mounts the path back inside it, readable as on the host, and nothing else of the folder.
    """
    blocked = []
    for path in dict.fromkeys(os.path.realpath(p) for p in paths):
        folder = Path(path)
        chain = [folder, *folder.parents][::-1]
        for ancestor in chain[:-1]:
            if not os.stat(ancestor).st_mode & 0o001:
                blocked.append((str(ancestor), path))
                break
    return blocked


def prepare(state: HubState) -> None:
    """A fresh container: a copy of ``/etc`` and an empty ``/home`` (as a new cluster's)."""
    if state.container.exists():
        shutil.rmtree(state.container)
    state.container.mkdir(parents=True)
    subprocess.run(["cp", "-a", "/etc", str(state.etc)], check=True, timeout=300)
    state.home.mkdir(mode=0o755)
    state.hub_dir.mkdir(mode=0o700)
    state.bin.mkdir()
    state.users_step_state.mkdir(mode=0o700)


def init_script(state: HubState, hub_command: list[str], *, reach: list[tuple[str, str]] = ()) -> str:
    """PID 1 of the namespace: the mounts, the default administrator, then JupyterHub as its child.

    A shell stays PID 1 so that ``SIGTERM`` (which PID 1 only receives with a handler) is handed
    on to JupyterHub, whose own shutdown stops the single-user servers and the proxy. ``reach``:
    :func:`blocked_paths` to make reachable.
    """
    import shlex

    user, password = DEFAULT_ADMIN
    q = shlex.quote
    reachable = []
    for number, (folder, path) in enumerate(reach):
        stage = q(str(state.container / f"reach-{number}"))
        reachable += [f"mkdir -p {stage}", f"mount --bind {q(path)} {stage}"]
    for folder in dict.fromkeys(folder for folder, _ in reach):
        reachable.append(f"mount -t tmpfs -o mode=755 fruits-hub-{Path(folder).name or 'root'} {q(folder)}")
    for number, (folder, path) in enumerate(reach):
        reachable += [f"mkdir -p {q(path)}", f"mount --bind {q(str(state.container / f'reach-{number}'))} {q(path)}"]
    return "\n".join([
        "set -euo pipefail",
        *reachable,
        f"mount --bind {shlex.quote(str(state.etc))} /etc",
        f"mount --bind {shlex.quote(str(state.home))} /home",
        f"id -u {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}",
        f"printf '%s:%s\\n' {user} {password} | chpasswd",
        f"cd {shlex.quote(str(state.hub_dir))}",
        " ".join(shlex.quote(part) for part in hub_command) + " &",
        "hub=$!",
        "trap 'kill -TERM \"$hub\" 2>/dev/null || true' TERM INT",
        'while kill -0 "$hub" 2>/dev/null; do wait "$hub" || true; done',
    ]) + "\n"


SHIM = r'''#!/usr/bin/env bash
# `docker` on the users step's PATH for `fruits hub` (fruits.cloud.hub.container): the Hub is not a
# Docker container here but mount and PID namespaces; `docker exec [-i] jupyterhub CMD...` enters
# them with nsenter and runs CMD in the Hub's folder. Without -i standard input is closed, as
# Docker's. Any other use of docker fails loudly.
set -euo pipefail
[[ "${1:-}" == exec ]] || { echo "docker (fruits hub shim): only 'docker exec' is supported, got: $*" >&2; exit 125; }
shift
interactive=false
if [[ "${1:-}" == -i ]]; then interactive=true; shift; fi
container="${1:?docker exec needs a container}"
shift
[[ "$container" == jupyterhub ]] || { echo "Error response from daemon: No such container: $container" >&2; exit 1; }
pid="$(cat @PIDFILE@ 2>/dev/null || true)"
if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
    echo "Error response from daemon: container $container is not running" >&2
    exit 1
fi
if $interactive; then
    exec nsenter --target "$pid" --mount --pid --wd=@HUBDIR@ -- "$@"
fi
exec nsenter --target "$pid" --mount --pid --wd=@HUBDIR@ -- "$@" </dev/null
'''

#: ``sudo`` on the primary node, where the step already runs as root: here it runs the command.
SUDO_SHIM = '#!/usr/bin/env bash\n# sudo for fruits hub: the users step runs as root already.\nexec "$@"\n'


def write_shims(state: HubState) -> None:
    """``docker`` (and ``sudo``, when the host has none) in ``state.bin`` for the users step."""
    import shlex

    shim = state.bin / "docker"
    shim.write_text(SHIM.replace("@PIDFILE@", shlex.quote(str(pid_file(state))))
                    .replace("@HUBDIR@", shlex.quote(str(state.hub_dir))))
    shim.chmod(0o755)
    if not shutil.which("sudo"):
        sudo = state.bin / "sudo"
        sudo.write_text(SUDO_SHIM)
        sudo.chmod(0o755)


def pid_file(state: HubState) -> Path:
    """The host's id of the namespace's PID 1 (what ``nsenter --target`` needs)."""
    return state.container / "namespace.pid"


class Container:
    """The namespaces running JupyterHub; :meth:`start` returns once its PID 1 is known."""

    def __init__(self, state: HubState, hub_command: list[str], *, env: dict[str, str] | None = None):
        self.state = state
        self.hub_command = hub_command
        self.env = env
        self.process: subprocess.Popen | None = None
        self.init_pid: int | None = None
        self.log = state.hub_dir / "jupyterhub.log"

    def start(self, *, timeout: float = 30) -> "Container":
        reach = blocked_paths([sys.base_prefix, sys.prefix, self.hub_command[0]])
        for folder, _ in reach:
            if self.state.root.is_relative_to(folder):
                raise HubUnavailable(f"the state folder {self.state.root} is under {folder}, which the container "
                                     f"replaces with its own (for the users' sake): choose a folder elsewhere")
        script = self.state.container / "init.sh"
        script.write_text(init_script(self.state, self.hub_command, reach=reach))
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
                 "--mount-proc", "bash", str(script)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        while self.init_pid is None:
            try:
                found = children.read_text().split()
            except OSError:
                found = []
            if found:
                self.init_pid = int(found[0])
            elif self.process.poll() is not None or time.monotonic() > deadline:
                if self.process.poll() is None:  # nobody else holds it yet: stop it before giving up
                    self.process.kill()
                    self.process.wait(timeout=30)
                raise RuntimeError(f"the hub's namespaces did not start (exit {self.process.poll()}); "
                                   f"see {self.log}:\n{self.log_tail()}")
            else:
                time.sleep(0.05)
        pid_file(self.state).write_text(f"{self.init_pid}\n")
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, *, timeout: float = 30) -> None:
        """End the namespace and everything in it; bounded: ``SIGKILL`` after ``timeout`` seconds."""
        if self.process is None:
            return
        if self.process.poll() is None and self.init_pid:
            try:
                os.kill(self.init_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # unshare --kill-child: killing unshare SIGKILLs the namespace's PID 1, and with it
            # (the kernel's rule for PID namespaces) every process inside.
            self.process.kill()
            self.process.wait(timeout=30)
        pid_file(self.state).unlink(missing_ok=True)
