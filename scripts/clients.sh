#!/usr/bin/env bash
# Real clients and a real shared cache for the integration tests of
# tests/it/clients.rs, installed into the git-ignored .tools/clients.
#
#   scripts/clients.sh install   install what is missing (idempotent) and print
#                                `export ...` lines on stdout (everything else goes
#                                to stderr), so that
#                                    eval "$(scripts/clients.sh install)"
#                                puts the FLAGBELT_TEST_* variables in your shell.
#   scripts/clients.sh env       print the exports of an existing installation
#                                (exit 1 when something is missing).
#
# What it installs (versions pinned in tests/clients/):
#   OpenFeature OFREP clients for Node: @openfeature/ofrep-web-provider 0.4.3 +
#     web-sdk, @openfeature/ofrep-provider 0.1.3 + server-sdk   npm ci   .tools/clients/npm
#     (from tests/clients/package.json and its package-lock.json)
#   openfeature-provider-ofrep 0.3.0 (PyPI)                     venv     .tools/clients/venv
#     (from tests/clients/requirements.txt)
#   nginx (Debian), used as a shared cache (proxy_cache)        apt-get  /usr/sbin/nginx
#     Only the binary is used: the tests run their own instance with their own
#     configuration (tests/clients/nginx.conf) on loopback. On this kind of
#     machine /usr/sbin/policy-rc.d (exit 101) keeps apt from starting the
#     packaged service; on a machine without it, apt may start Debian's default
#     nginx on port 80, which the tests neither need nor use.
# The three installs are independent and run side by side. Nothing is started.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="$ROOT/tests/clients"
TOOLS="$ROOT/.tools/clients"
NPM_DIR="$TOOLS/npm"
VENV="$TOOLS/venv"
LOGS="$TOOLS/logs"

log() { printf '[clients] %s\n' "$*" >&2; }
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

# A stamp holds the checksum of the inputs an install was made from: the same
# inputs and a present stamp mean "nothing to do".
checksum() { cat "$@" | sha256sum | cut -d' ' -f1; }

npm_ready() {
    [[ -f "$NPM_DIR/.flagbelt-stamp" && -d "$NPM_DIR/node_modules" ]] &&
        [[ "$(cat "$NPM_DIR/.flagbelt-stamp")" == "$(checksum "$SRC/package.json" "$SRC/package-lock.json")" ]]
}

python_ready() {
    [[ -x "$VENV/bin/python" && -f "$VENV/.flagbelt-stamp" ]] &&
        [[ "$(cat "$VENV/.flagbelt-stamp")" == "$(checksum "$SRC/requirements.txt")" ]]
}

nginx_bin() {
    local b
    for b in "$(command -v nginx 2>/dev/null || true)" /usr/sbin/nginx; do
        [[ -n "$b" && -x "$b" ]] && {
            printf '%s' "$b"
            return 0
        }
    done
    return 1
}

install_npm() {
    npm_ready && return 0
    command -v node >/dev/null 2>&1 || die "node is not installed (Node >= 20 is needed)"
    mkdir -p "$NPM_DIR"
    cp "$SRC/package.json" "$SRC/package-lock.json" "$NPM_DIR/"
    # npm ci: exactly the lockfile, or fail.
    (cd "$NPM_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    checksum "$SRC/package.json" "$SRC/package-lock.json" >"$NPM_DIR/.flagbelt-stamp"
}

install_python() {
    python_ready && return 0
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$SRC/requirements.txt"
    checksum "$SRC/requirements.txt" >"$VENV/.flagbelt-stamp"
}

install_nginx() {
    nginx_bin >/dev/null && return 0
    apt_install nginx
    nginx_bin >/dev/null || die "nginx installed but not found"
}

install_all() {
    install_parallel "$LOGS" npm python nginx
}

print_env() {
    npm_ready || die "the npm clients are not installed (scripts/clients.sh install)"
    python_ready || die "the Python client is not installed (scripts/clients.sh install)"
    local nginx
    nginx=$(nginx_bin) || die "nginx is not installed (scripts/clients.sh install)"
    cat <<EOF
export FLAGBELT_TEST_NODE=$(command -v node)
export FLAGBELT_TEST_CLIENTS_NPM=$NPM_DIR
export FLAGBELT_TEST_CLIENTS_PYTHON=$VENV/bin/python
export FLAGBELT_TEST_NGINX=$nginx
EOF
}

case "${1:-}" in
install)
    t0=$SECONDS
    install_all
    log "installed in $((SECONDS - t0))s"
    print_env
    ;;
env) print_env ;;
*)
    echo "usage: $0 install|env" >&2
    exit 2
    ;;
esac
