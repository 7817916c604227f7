#!/usr/bin/env bash
# EMR bootstrap action for fruits-emr.
#
# Runs on every node (as the hadoop user, before EMR installs its applications, and on
# nodes added later). Installs, for the Python that PySpark uses, the project's wheel with
# every dependency pinned by requirements/constraints.txt (the same single source as the
# local environment). Idempotent: a node that already holds this exact wheel does nothing.
# Logs go to stdout, which EMR keeps in /mnt/var/log/bootstrap-actions/.
#
# Args (BootstrapActions.ScriptBootstrapAction.Args, written by `fruits emr create-cluster`):
#   $1  s3://BUCKET/PREFIX/dist  folder holding the wheel and constraints.txt
#   $2  the wheel's file name, e.g. fruits_emr-0.1.0-py3-none-any.whl
set -euo pipefail

usage="usage: install-fruits.sh s3://BUCKET/PREFIX/dist WHEEL_FILE"
artifacts="${1:?$usage}"
wheel="${2:?$usage}"
python="${FRUITS_PYTHON:-/usr/bin/python3.11}"
work="${FRUITS_BOOTSTRAP_DIR:-/mnt/fruits-bootstrap}"
marker="$work/installed-$wheel"

log() { printf '%s fruits-bootstrap: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

is_primary() {
    # EMR writes the node's role here; only the primary node runs notebooks and papermill.
    grep -Eq '"isMaster"[[:space:]]*:[[:space:]]*true' /mnt/var/lib/info/instance.json 2>/dev/null
}

mkdir -p "$work"
if [[ -f "$marker" ]]; then
    log "$wheel is already installed on this node; nothing to do"
    exit 0
fi

log "installing $wheel for $("$python" --version 2>&1) from $artifacts"
aws s3 cp --only-show-errors "$artifacts/constraints.txt" "$work/constraints.txt"
aws s3 cp --only-show-errors "$artifacts/$wheel" "$work/$wheel"

# Executors need the library and its engines; the primary node also runs notebooks headlessly.
target="$work/$wheel"
if is_primary; then
    target="$work/${wheel}[notebook,aws]"
    log "primary node: adding papermill, nbconvert and s3 tools"
fi
sudo "$python" -m pip install --quiet --disable-pip-version-check -c "$work/constraints.txt" "$target"

"$python" -c 'import fruits, onnxruntime, pyarrow; print("fruits", fruits.__version__, "ready")'
touch "$marker"
log "done"
