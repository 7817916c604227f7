"""``fruits emr upload``: the project's files and where in the bucket clusters and JupyterHub read them.

The wheel, its pinned constraints, the bootstrap scripts and ``emr-config/`` go under
``s3://BUCKET/PREFIX/``; the cloud notebook also goes where JupyterHub shows notebooks
(``jupyter/jovyan/``, or each named user's folder), each user's copy with its parameters
set for the bucket (:func:`notebook_parameters`), so "Run All" works as uploaded.
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
#: JupyterHub's default user on EMR, whose folder gets the notebook when no user is named.
DEFAULT_USER = "jovyan"
#: Where the images go under ``s3://BUCKET/PREFIX/`` (the README's ``aws s3 sync ... s3://$B/fruits/Test``).
INPUT_FOLDER = "Test"
#: The weights a JupyterHub run loads: Keras downloads them on the driver (``params/emr.yaml`` too).
NOTEBOOK_WEIGHTS = "imagenet"


def build_wheel(target: Path) -> Path:
    """Build the project's wheel into ``target`` and return its path."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(target),
                    str(config.project_root())], check=True)
    wheels = sorted(target.glob("fruits_emr-*.whl"))
    if not wheels:
        raise RuntimeError(f"no wheel was built in {target}")
    return wheels[-1]


def jupyter_users(users: list[str] | None = None) -> list[str]:
    """The JupyterHub users whose folders get the notebook: those named, or ``jovyan`` when none is."""
    return [check_user(user) for user in users] if users else [DEFAULT_USER]


def jupyter_prefixes(users: list[str] | None = None) -> list[str]:
    """JupyterHub's S3 folders to fill: each named user's, or the default ``jovyan``'s when none is named."""
    if not users:
        return [JUPYTER_PREFIX]
    return [JUPYTER_USER_PREFIX.format(user=user) for user in jupyter_users(users)]


def notebook_parameters(*, bucket: str, prefix: str, user: str) -> dict[str, str]:
    """The parameters a JupyterHub user's copy of the cloud notebook runs with.

    The notebook's own defaults run the demo: images generated on the driver's disk and
    a relative ``output_dir``, which executors on EMR's core nodes never see (and which
    Spark would read as HDFS). So each copy reads the bucket's images and writes into an
    output of its user's own, where two users' runs never meet.

    Examples
    --------
    >>> notebook_parameters(bucket="my-fruits-bucket", prefix="fruits", user="alice")["output_dir"]
    's3://my-fruits-bucket/fruits/runs/alice'
    """
    check_bucket(bucket)
    base = f"s3://{bucket}/{prefix.strip('/')}"
    return {"input_path": f"{base}/{INPUT_FOLDER}", "output_dir": f"{base}/runs/{_folder_name(user)}",
            "weights": NOTEBOOK_WEIGHTS}


def _folder_name(user: str) -> str:
    """``user`` as one S3 folder name: the default ``jovyan``, or a name :func:`check_user` accepts."""
    return user if user == DEFAULT_USER else check_user(user)


def write_user_notebook(target: Path, *, bucket: str, prefix: str, user: str) -> Path:
    """Write ``user``'s copy of the cloud notebook to ``target``, its parameters set by papermill's injection.

    papermill's own :func:`~papermill.parameterize.parameterize_notebook` makes the cell a
    papermill run adds: tagged ``injected-parameters``, assigning :func:`notebook_parameters`,
    placed right after the cell tagged ``parameters`` (left as generated). Every other cell
    stays as it is (papermill's run would also give each cell empty ``tags`` and ``papermill``
    metadata). A later papermill run replaces the injected cell instead of adding a second one.
    """
    import copy

    import nbformat
    from papermill.parameterize import parameterize_notebook

    source = (config.notebooks_dir() / config.CLOUD_NOTEBOOK).with_suffix(".ipynb")
    notebook = nbformat.read(source, as_version=4)
    values = notebook_parameters(bucket=bucket, prefix=prefix, user=user)
    scratch = copy.deepcopy(notebook)
    for cell in scratch.cells:  # papermill's execute_notebook does this before it parameterizes
        cell.metadata.setdefault("tags", [])
    scratch.metadata.setdefault("papermill", {})
    parameterized = parameterize_notebook(scratch, values)
    position, = [i for i, cell in enumerate(parameterized.cells)
                 if "injected-parameters" in cell.metadata.get("tags", [])]
    notebook.cells.insert(position, parameterized.cells[position])
    notebook.metadata["papermill"] = {"parameters": values}  # where papermill records what it injected
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return target


def upload_plan(*, bucket: str, prefix: str, wheel: Path, scratch: Path,
                users: list[str] | None = None) -> list[tuple[str, str]]:
    """(local file, s3 key) pairs that ``fruits emr upload`` copies; each user's notebook is written to ``scratch``.

    Only the cloud notebook goes where JupyterHub shows notebooks (``jupyter/jovyan/``, or
    ``jupyter/<user>/`` for each of ``users``), one copy per user with that user's
    parameters (:func:`write_user_notebook`): JupyterHub's Python 3 kernel runs in a
    container without ``fruits`` or Spark, so the local notebook could not run there. Its
    ``.py`` source also goes under ``PREFIX/notebooks/`` for headless runs (``fruits emr run``),
    whose parameters come with each run.
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
    shown = notebook.with_suffix(".ipynb").name
    for user, folder in zip(jupyter_users(users), jupyter_prefixes(users)):
        copy = write_user_notebook(scratch / "jupyter" / user / shown, bucket=bucket, prefix=prefix, user=user)
        plan.append((str(copy), f"{folder}/{base}/{shown}"))
    return plan


def folder_markers(*, prefix: str, users: list[str] | None = None) -> list[str]:
    """Empty objects that make JupyterHub's S3 contents manager list the notebook folder.

    s3contents (the S3 ContentsManager EMR's JupyterHub uses) shows a folder only when it
    holds a ``.s3keep`` object; one per user's folder (``jovyan``'s when no user is named).
    """
    return [f"{folder}/{prefix.strip('/')}/.s3keep" for folder in jupyter_prefixes(users)]
