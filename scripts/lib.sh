# Shared by scripts/emulators.sh and scripts/clients.sh (sourced, not run).
# Expects the sourcing script to define `log` (its prefix); `die` is here.

die() {
    log "error: $*"
    exit 1
}

# apt_install PKG...: Debian packages, refreshing the package lists only when
# the install fails without it (a fresh machine has none, a warm one is fast).
apt_install() {
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"; then
        "${sudo[@]}" apt-get update -q
        "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"
    fi
}

# install_parallel LOGDIR NAME...: runs install_NAME for every NAME side by
# side (they are independent: pip, npm, apt), each logged to
# LOGDIR/install-NAME.log; on a failure shows that log's tail and dies.
install_parallel() {
    local logs=$1
    shift
    mkdir -p "$logs"
    local names=("$@") pids=() failed=0 i
    for name in "${names[@]}"; do
        "install_$name" >"$logs/install-$name.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!names[@]}"; do
        if ! wait "${pids[$i]}"; then
            log "installing ${names[$i]} failed; last lines of $logs/install-${names[$i]}.log:"
            tail -n 20 "$logs/install-${names[$i]}.log" >&2
            failed=1
        fi
    done
    [[ $failed -eq 0 ]] || die "installation failed"
}
