# tests/integration/lib_cluster.sh — a tools/cluster cluster for one test script (sourced
# after lib.sh): cluster_up starts it, reports "ok cluster-up" (or not ok and finish), and
# sets M[i] (node i's mount) and A[i] (its peer address); the EXIT trap takes it down (and
# with it any network namespaces it made) before lib.sh's cleanup, also on failure.
CL="$QI_ROOT/tools/cluster"
C=$T/cluster
M=()
A=()

qc_cleanup() {
    local rc=$?
    [ -f "$C/cluster.env" ] && timeout -k 5 60 "$CL" down --dir "$C" >/dev/null 2>&1
    (exit $rc)
    qi_cleanup
}
trap qc_cleanup EXIT

# cluster_up N [--netns] [--node-args ARGS]: N nodes of $QUORUMFS; loopback ports picked
# free, or with --netns each node in its own network namespace (ports inside them: 7750+),
# which needs root (not ok and finish when namespaces cannot be made).
cluster_up() {
    local n=$1 netns= base out i; shift
    [ "${1:-}" = --netns ] && { netns=--netns; shift; }
    if [ -n "$netns" ]; then
        local probe=qfs-probe-$$
        if ! out=$(ip netns add "$probe" 2>&1); then
            not_ok netns-permitted "cannot create a network namespace (needs root and iproute2): $out"
            finish
        fi
        ip netns del "$probe"
        base=7750
    else
        base=$(free_ports "$n")
        [ -n "$base" ] || { not_ok free-ports "no $n free ports"; finish; }
    fi
    out=$(CLUSTER_WAIT_S=30 timeout 90 "$CL" up "$n" $netns --dir "$C" --base-port "$base" \
          --bin "$QUORUMFS" "$@" 2>&1) || { not_ok cluster-up "$out"; finish; }
    ok cluster-up
    M=("")
    A=("")
    for i in $(seq 1 "$n"); do
        M+=("$C/n$i/mnt")
        A+=("127.0.0.1:$((base + i - 1))")
    done
}

# metric MOUNT NAME: the sum of NAME's samples (every shard) in MOUNT/.cluster/metrics
metric() { awk -v m="$2" 'index($0, m "{") == 1 { s += $2 } END { print s + 0 }' "$1/.cluster/metrics" 2>/dev/null; }
