"""``fruits emr upload``: the project's files and where in the bucket clusters and JupyterHub read them.

The wheel, its pinned constraints, the bootstrap scripts and ``emr-config/`` go under
``s3://BUCKET/PREFIX/``; the cloud notebook also goes where JupyterHub shows notebooks
(``jupyter/jovyan/``, or each named user's folder).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fruits import config
from fruits.cloud.emr.aws import check_bucket
from fruits.cloud.emr.templates import emr_config_dir
from fruits.cloud.emr.users import check_user

#: Where JupyterHub on EMR keeps the default user's notebooks when S3 persistence is on.
JUPYTER_PREFIX = "jupyter/jovyan"
#: Notebooks of each JupyterHub user: ``s3://BUCKET/jupyter/<user>/``
#: (https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-jupyterhub-s3.html).
JUPYTER_USER_PREFIX = "jupyter/{user}"


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
    notebook = config.notebooks_dir() / config.CLOUD_NOTEBOOK
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
