#!/usr/bin/env bash
# EMR bootstrap action for fruits-emr.
#
# Runs on every node (as the hadoop user, before EMR installs its applications, and on
# nodes added later). Installs, for the Python that PySpark uses, the project's wheel with
# every dependency pinned by requirements/constraints.txt (the same single source as the
# local environment). Idempotent: a node that already holds this exact wheel does nothing.
# Logs go to stdout, which EMR keeps in /mnt/var/log/bootstrap-actions/.
#
# The primary node also runs the Spark drivers of Livy sessions (emr-config pins
# livy.spark.deploy-mode to client), so it gets what the notebook's cells run on the
# driver (papermill/nbconvert tools, matplotlib for %matplot, s3fs), and sparkmagic's
# PySpark kernel for headless runs of the cloud notebook (`fruits emr run`).
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

instance_info="${FRUITS_INSTANCE_INFO:-/mnt/var/lib/info/instance.json}"

is_primary() {
    # EMR writes the node's role here; only the primary node runs notebooks and papermill.
    grep -Eq '"isMaster"[[:space:]]*:[[:space:]]*true' "$instance_info" 2>/dev/null
}

ensure_ssm_agent() {
    # `fruits tunnel --cluster-id` (the default way in, no open port) is a Session Manager port
    # forward to the primary node, which needs the SSM Agent installed and running there. No AWS
    # page found says that EMR 7's Amazon Linux 2023 images ship it running (AL2023's minimal
    # AMI lacks it), so make sure: install the package from the distribution's repository if
    # missing, enable and start the service, and fail the node, with the reason in this log,
    # if it is still not running. Idempotent: an installed, running agent is left as it is.
    if ! rpm -q amazon-ssm-agent >/dev/null 2>&1; then
        log "SSM Agent not installed: installing amazon-ssm-agent"
        if command -v dnf >/dev/null 2>&1; then
            sudo dnf install -y -q amazon-ssm-agent
        else
            sudo yum install -y -q amazon-ssm-agent
        fi
    fi
    sudo systemctl enable --now amazon-ssm-agent
    if ! systemctl is-active --quiet amazon-ssm-agent; then
        log "SSM Agent is not running after systemctl enable --now amazon-ssm-agent; fruits tunnel needs it"
        exit 1
    fi
    log "SSM Agent running (fruits tunnel can port-forward to this node)"
}

if is_primary; then
    ensure_ssm_agent  # also on a re-run: the agent may have been stopped since
fi

mkdir -p "$work"
if [[ -f "$marker" ]]; then
    log "$wheel is already installed on this node; nothing to do"
    exit 0
fi

log "installing $wheel for $("$python" --version 2>&1) from $artifacts"
aws s3 cp --only-show-errors "$artifacts/constraints.txt" "$work/constraints.txt"
aws s3 cp --only-show-errors "$artifacts/sparkmagic.txt" "$work/sparkmagic.txt"
aws s3 cp --only-show-errors "$artifacts/$wheel" "$work/$wheel"

# The image's python3.11 may come without pip.
if ! "$python" -m pip --version >/dev/null 2>&1; then
    log "no pip for $python: installing python3.11-pip"
    sudo dnf install -y -q python3.11-pip
fi
pip_install=(sudo "$python" -m pip install --quiet --disable-pip-version-check -c "$work/constraints.txt")

# Executors need the library and its engines, and s3fs (the aws extra): they list and read
# s3:// inputs themselves (fruits.inputs). PySpark is NOT installed: EMR ships its own.
target="$work/${wheel}[aws]"
if is_primary; then
    target="$work/${wheel}[notebook,aws,cloud]"
    log "primary node: adding the driver's notebook tools, s3 tools and sparkmagic's kernel"
fi
"${pip_install[@]}" "$target"

if is_primary; then
    # sparkmagic without its Kerberos chain (gssapi has no wheel); its real dependencies
    # came with the [cloud] extra above.
    "${pip_install[@]}" --no-deps -r "$work/sparkmagic.txt"
    kernel="$("$python" -c 'import os, sparkmagic; print(os.path.dirname(sparkmagic.__file__))')/kernels/pysparkkernel"
    sudo "$python" -m jupyter kernelspec install --sys-prefix "$kernel"
    "$python" -c 'import matplotlib, papermill, sparkmagic.kernels.pysparkkernel.pysparkkernel; print("driver tools ready")'
fi

"$python" -c 'import fruits, onnxruntime, pyarrow; print("fruits", fruits.__version__, "ready")'
touch "$marker"
log "done"
