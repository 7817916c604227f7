#!/usr/bin/env bash
# EMR step for fruits-emr: named JupyterHub users, password hashes from AWS Secrets Manager.
#
# Runs on the primary node, as root (`fruits emr create-cluster --users` and
# `fruits emr users --cluster-id` add it as a command-runner.jar step: `sudo bash` on a copy
# from the bucket). Steps run after the applications are installed, so the `jupyterhub`
# container exists; bootstrap actions run too early for this.
#
# What it does, as AWS documents for PAM users
# (https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-jupyterhub-pam-users.html):
#   1. locks the default administrator `jovyan` (password `jupyter`, which AWS strongly
#      recommends replacing: emr-jupyterhub-user-access.html) before anything else, so a failure
#      later leaves nobody able to log in rather than the default password open;
#   2. creates each named user inside the container (`useradd -m -s /bin/bash -N NAME`) and sets
#      the SHA-512 crypt hash stored in Secrets Manager under PREFIX/NAME with `chpasswd -e`,
#      which reads "NAME:HASH" on its standard input. The cluster never holds a password: the
#      plaintext is in another secret (fruits-emr/BUCKET/jupyterhub-password/NAME) that the
#      instance role may not read (every notebook's code runs with that role). The hash never is
#      an argument of any command, never is printed, and this script never runs with `set -x`;
#   3. registers the new users with the Hub's REST API (the "whitelisting" step of that page), with
#      an API token of jovyan made by `jupyterhub token jovyan` and given to curl on its standard
#      input, never as an argument.
#
# Idempotent: a second run changes nothing. A user who exists keeps their password unless the
# secret has a new version (`fruits emr users --rotate NAME`) (the version id, not the password, is kept under $state); a user
# already registered is not registered again, and no token is made when nobody needs one.
#
# Args: --region REGION --secret-prefix PREFIX NAME...
#   PREFIX, e.g. fruits-emr/BUCKET/jupyterhub/ (the hashes); the instance role may read exactly that prefix
#   (emr-config/iam-instance-policy.json).
set -euo pipefail
set +x  # never trace: the password hash goes through a variable of this shell

usage="usage: jupyterhub-users.sh --region REGION --secret-prefix PREFIX NAME..."
region=""
prefix=""
while (($#)); do
    case "$1" in
        --region) region="${2:?$usage}"; shift 2 ;;
        --secret-prefix) prefix="${2:?$usage}"; shift 2 ;;
        --) shift; break ;;
        -*) echo "$usage" >&2; exit 2 ;;
        *) break ;;
    esac
done
if [[ -z "$region" || -z "$prefix" || $# -eq 0 ]]; then
    echo "$usage" >&2
    exit 2
fi

container="${FRUITS_JUPYTERHUB_CONTAINER:-jupyterhub}"
hub_bin="${FRUITS_JUPYTERHUB_BIN:-/opt/conda/bin/jupyterhub}"
hub_api="${FRUITS_JUPYTERHUB_API:-https://$(hostname):9443/hub/api}"
state="${FRUITS_USERS_STATE:-/var/lib/fruits-jupyterhub-users}"
wait_s="${FRUITS_JUPYTERHUB_WAIT:-600}"

log() { printf '%s fruits-users: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
die() { log "error: $*" >&2; exit 1; }
in_hub() { docker exec "$container" "$@"; }

for user in "$@"; do
    [[ "$user" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "not a valid user name: '$user'"
    [[ "$user" != jovyan && "$user" != root ]] || die "refusing to manage '$user'"
done

deadline=$((SECONDS + wait_s))
until in_hub true >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "container '$container' is not running after ${wait_s}s"
    log "waiting for the $container container"
    sleep 5
done
install -d -m 700 "$state"

# 1. The default administrator: locked first (fail closed).
if in_hub id -u jovyan >/dev/null 2>&1; then
    jovyan_status="$(in_hub passwd -S jovyan | awk '{print $2}')"
    if [[ "$jovyan_status" == L* ]]; then
        log "jovyan is already locked"
    else
        in_hub usermod -L jovyan
        log "locked jovyan (its default password no longer logs in)"
    fi
fi

# 2. One operating-system user per name, password hash from Secrets Manager.
for user in "$@"; do
    secret_id="$prefix$user"
    version="$(aws secretsmanager get-secret-value --region "$region" --secret-id "$secret_id" \
        --query VersionId --output text)"
    [[ "$version" =~ ^[A-Za-z0-9-]+$ ]] || die "no usable version of secret $secret_id"
    if uid="$(in_hub id -u "$user" 2>/dev/null)"; then
        ((uid >= 1000)) || die "'$user' is a system account in the container (uid $uid); refusing"
        fresh=false
    else
        in_hub useradd -m -s /bin/bash -N "$user"
        rm -f "$state/$user.registered"
        log "created user $user"
        fresh=true
    fi
    if $fresh || [[ ! -f "$state/$user.version" || "$(<"$state/$user.version")" != "$version" ]]; then
        hash="$(aws secretsmanager get-secret-value --region "$region" --secret-id "$secret_id" \
            --version-id "$version" --query SecretString --output text)"
        # A SHA-512 crypt hash, as /etc/shadow holds it (fruits.cloud.emr.users.CRYPT_HASH); a plaintext
        # (an earlier layout of the secrets) is refused: `fruits emr users --users NAME` rewrites it.
        if ! [[ "$hash" =~ ^\$6\$(rounds=[0-9]+\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}$ ]]; then
            die "secret $secret_id holds no SHA-512 crypt hash; run: fruits emr users --bucket BUCKET --users $user"
        fi
        printf '%s:%s\n' "$user" "$hash" | docker exec -i "$container" chpasswd -e
        unset hash
        printf '%s\n' "$version" >"$state/$user.version"
        log "password hash of $user set from $secret_id (version $version)"
    else
        log "password of $user is already the current version of $secret_id"
    fi
done

# 3. Users the Hub does not know yet: registered through its REST API.
pending=()
for user in "$@"; do
    [[ -f "$state/$user.registered" ]] || pending+=("$user")
done
if ((${#pending[@]})); then
    token="$(in_hub "$hub_bin" token jovyan | tail -n 1)"
    [[ -n "$token" ]] || die "jupyterhub token jovyan gave no token"
    for user in "${pending[@]}"; do
        code="$(printf 'header = "Authorization: token %s"\n' "$token" |
            curl --config - --silent --show-error --insecure --request POST \
                --output /dev/null --write-out '%{http_code}' "$hub_api/users/$user")"
        case "$code" in
            201 | 409) touch "$state/$user.registered"; log "user $user is known to JupyterHub (HTTP $code)" ;;
            *) die "registering $user with JupyterHub answered HTTP $code" ;;
        esac
    done
    unset token
else
    log "every user is already registered with JupyterHub"
fi
log "done: $*"
