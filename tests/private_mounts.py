"""Start a command on a "host" that does not share the driver's disk (tests only).

Run inside a private mount namespace (``unshare --mount --propagation private``,
itself inside the host's network namespace), so nothing here is seen by any other
process::

    unshare --mount --propagation private PYTHON tests/private_mounts.py \\
        --hide /tmp --share /tmp/pytest-of-root/pytest-7/shared0 -- COMMAND ...

Each ``--hide`` folder is covered by an empty tmpfs: the driver's folders (its
working folder, ``/tmp``, the cache, the outputs) stop existing for the command,
as they would on another machine. Each ``--share`` folder is then put back at the
same path, bound from a handle opened before the hiding: it stands for a folder
mounted on every node (NFS, EFS). Then ``COMMAND`` replaces this process.

The bind source is ``/proc/self/fd/N`` of that handle, given to ``mount`` with
``--no-canonicalize``: resolved to a name, the path would name the empty tmpfs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hide", action="append", default=[], help="folder to cover with an empty tmpfs")
    parser.add_argument("--share", action="append", default=[], help="folder to keep visible (after hiding)")
    parser.add_argument("--not-in", required=True, metavar="NS",
                        help="the caller's mount namespace (readlink /proc/self/ns/mnt): refuse to mount there")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    if os.readlink("/proc/self/ns/mnt") == args.not_in:
        # Never mount over /tmp (or anything) in the caller's own mount namespace.
        sys.exit("private_mounts: not inside a private mount namespace (run it under unshare --mount)")
    handles = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in args.share}
    for path in args.hide:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=2g", "tmpfs", path], check=True, timeout=30)
    for path, handle in handles.items():
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "--no-canonicalize", "--bind", f"/proc/self/fd/{handle}", path],
                       check=True, timeout=30, pass_fds=(handle,))
        os.close(handle)
    sys.stdout.flush()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
