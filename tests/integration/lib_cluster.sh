# tests/integration/lib_cluster.sh — a tools/cluster cluster for one test script (sourced
# after lib.sh): cluster_up starts it, reports "ok cluster-up" (or not ok and finish), and
# sets M[i] (node i's mount), A[i] (its peer address), NODES and BASE; the EXIT trap takes it
# down (and with it any network namespaces it made, even those a failed down left) before
# lib.sh's cleanup, also on failure. Helpers: cl (tools/cluster on this cluster), leader,
# leader_not, connected, all_connected, opened, metric, kill_leader_rounds, stop_recorder,
# keep_logs.
CL="$QI_ROOT/tools/cluster"
C=$T/cluster
M=()
A=()
NODES=0
BASE=
# Every cluster directory the trap takes down: scripts that make another one add it.
QC_DIRS=("$C")
# Loopback clusters take their ports in this range (CLUSTER_PORTS=LO-HI to move it), so
# that the cluster scripts keep off the ports of other tests running on the same machine.
QC_PORTS=${CLUSTER_PORTS:-23000-24999}

# env_net DIR: the namespaces, veths and bridge DIR/cluster.env records ("kind:name" words).
env_net() { ( NET_MADE=; . "$1/cluster.env" 2>/dev/null; echo "$NET_MADE" ); }
net_obj_exists() {   # net_obj_exists KIND:NAME
    case ${1%%:*} in
        ns) [ -e "/run/netns/${1#*:}" ] ;;
        *) ip link show dev "${1#*:}" >/dev/null 2>&1 ;;
    esac
}
# net_left DIR: prints the recorded objects that still exist.
net_left() { local o; for o in $(env_net "$1"); do net_obj_exists "$o" && echo "$o"; done; }

# The trap kills the nodes (kill -9) before tools/cluster down: a clean unmount of every node
# at once costs seconds (each ends its sessions, and the last ones have no quorum left for
# it) and is no case of any script (partition.sh checks down itself). CLUSTER_CLEAN_DOWN=1:
# clean unmounts instead.
qc_cleanup() {
    local rc=$? d o f
    for d in "${QC_DIRS[@]}"; do
        [ -f "$d/cluster.env" ] || continue
        if [ -z "${CLUSTER_CLEAN_DOWN:-}" ]; then
            for f in "$d"/n*/pid; do [ -s "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
        fi
        timeout -k 5 60 "$CL" down --dir "$d" >/dev/null 2>&1
        # whatever down could not remove (it was killed, or failed)
        for o in $(net_left "$d"); do
            case ${o%%:*} in
                ns) ip netns del "${o#*:}" 2>/dev/null ;;
                *) ip link del "${o#*:}" 2>/dev/null ;;
            esac
        done
    done
    (exit $rc)
    qi_cleanup
}
trap qc_cleanup EXIT

# cluster_ports N: prints a base port P with P..P+N-1 free on 127.0.0.1, P in $QC_PORTS
# (empty if none found in 40 tries).
cluster_ports() {
    $PY - "$1" "${QC_PORTS%-*}" "${QC_PORTS#*-}" <<'EOF' 2>/dev/null
import random, socket, sys
n, lo, hi = map(int, sys.argv[1:])
for _ in range(40):
    b = random.randint(lo, hi - n + 1)
    try:
        for p in range(b, b + n):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(b)
    break
EOF
}

# need_netns: network namespaces can be made here (root, iproute2) and nsenter is there;
# else not ok and finish (a skipped netns test is not a pass).
need_netns() {
    local probe=qfs-probe-$$ out
    if ! out=$(ip netns add "$probe" 2>&1); then
        echo "# skip: ip netns add is not permitted here ($out); needs root and iproute2"
        not_ok netns-permitted "skipped: cannot create a network namespace: $out"
        finish
    fi
    ip netns del "$probe"
    command -v nsenter >/dev/null || { not_ok nsenter "nsenter (util-linux) is not installed"; finish; }
}

# cluster_up N [--netns] [--tls] [--port P] [--wait S] [--ok NAME] [--node-args ARGS]:
# N nodes of $QUORUMFS (tools/cluster up, which returns once every node is mounted and the
# leaders have settled). On loopback the ports are P.. or picked free in $QC_PORTS (with
# CLUSTER_SPARE=K in the environment, K more free ports follow the nodes', for a script's
# own listeners); with --netns each node runs in its own network namespace (ports inside
# them: P.., default 7750), which needs root (not ok and finish when namespaces cannot be
# made). --tls: mutual TLS (tools/cluster makes the certificates in $C/tls). --wait:
# tools/cluster's CLUSTER_WAIT_S (default 30). --ok: the start's case name (default
# cluster-up); a failed start is not ok and finishes the script. Sets M[], A[], NODES, BASE
# and, from the cluster's cluster.env, PEERS (with --netns also NS_TAG, SUBNET, BRIDGE).
cluster_up() {
    local n=$1 netns= tls= port= wait=30 name=cluster-up out i; shift
    local args=()
    while [ $# -gt 0 ]; do
        case $1 in
            --netns) netns=--netns; shift ;;
            --tls) tls=--tls; shift ;;
            --port) port=$2; shift 2 ;;
            --wait) wait=$2; shift 2 ;;
            --ok) name=$2; shift 2 ;;
            *) args+=("$1"); shift ;;
        esac
    done
    if [ -n "$netns" ]; then
        need_netns
        port=${port:-7750}
    elif [ -z "$port" ]; then
        port=$(cluster_ports $((n + ${CLUSTER_SPARE:-0})))
        [ -n "$port" ] || { not_ok free-ports "no $n free ports in $QC_PORTS"; finish; }
    fi
    BASE=$port NODES=$n
    out=$(CLUSTER_WAIT_S=$wait timeout $((wait * 3)) "$CL" up "$n" $netns $tls --dir "$C" --base-port "$BASE" \
          --bin "$QUORUMFS" "${args[@]}" 2>&1) || { not_ok "$name" "$out"; finish; }
    ok "$name"
    # shellcheck disable=SC1090
    . "$C/cluster.env"
    M=("")
    A=("")
    for i in $(seq 1 "$n"); do
        M+=("$C/n$i/mnt")
        if [ -n "$netns" ]; then A+=("$SUBNET.$i:$((BASE + i - 1))"); else A+=("127.0.0.1:$((BASE + i - 1))"); fi
    done
}

# cl CMD [ARGS...]: tools/cluster CMD on this script's cluster (cl kill 3, cl partition 1 2,3).
cl() { "$CL" "$@" --dir "$C"; }

# cl_start I [WAIT]: starts node I again (waits WAIT s, default 30, for its mount, then for
# the leaders to settle); prints tools/cluster's output; its exit status.
cl_start() { CLUSTER_WAIT_S=${2:-30} timeout $(( ${2:-30} * 2 + 20 )) "$CL" start "$1" --dir "$C" 2>&1; }

# leader MNT [SHARD]: the shard's (default 0) leader as that node sees it (.cluster/shards:
# "shard leader replicas term commit applied preferred role"; 0 or empty: none known).
leader() { timeout 5 awk -v s="${2:-0}" '$1 == s {print $2}' "$1/.cluster/shards" 2>/dev/null; }

# leader_not L SHARD: the shard's leader as a live node other than L sees it, if not L.
leader_not() {
    local i l
    for i in $(seq 1 "$NODES"); do
        [ "$i" = "$1" ] && continue
        l=$(leader "${M[$i]}" "$2")
        [ -n "$l" ] && [ "$l" != 0 ] && [ "$l" != "$1" ] && { echo "$l"; return 0; }
    done
    return 1
}

# connected MNT: MNT's .cluster/members lists every node, each itself or connected.
connected() { [ "$(grep -c -E ' (self|connected)' "$1/.cluster/members" 2>/dev/null)" = "$NODES" ] &&
              [ "$(wc -l <"$1/.cluster/members" 2>/dev/null)" = "$NODES" ]; }
# all_connected: connected, on every node.
all_connected() { local i; for i in $(seq 1 "$NODES"); do connected "${M[$i]}" || return 1; done; }

# opened PID PATH: PID or one of its descendants has PATH open (a reader started in the
# background has opened its stream: for config/.events, the point it streams from).
opened() {
    local p f
    for f in /proc/"$1"/fd/*; do [ "$(readlink "$f" 2>/dev/null)" = "$2" ] && return 0; done
    for p in $(cat /proc/"$1"/task/*/children 2>/dev/null); do opened "$p" "$2" && return 0; done
    return 1
}

# metric MOUNT NAME: the sum of NAME's samples (every shard) in MOUNT/.cluster/metrics
metric() { awk -v m="$2" 'index($0, m "{") == 1 { s += $2 } END { print s + 0 }' "$1/.cluster/metrics" 2>/dev/null; }

# keep_logs DEST FILE...: copies the FILEs and every node's log into DEST (for a failure
# report), and says where.
keep_logs() {
    local d=$1 i; shift
    mkdir -p "$d" && cp "$@" "$d/" 2>/dev/null
    for i in $(seq 1 "$NODES"); do cp "$C/n$i/log" "$d/n$i.log" 2>/dev/null; done
    note "${1:+$(basename "$1") and }node logs kept in $d"
}

# stop_recorder PID NAME: SIGTERM to a history recorder started in the background (histrec,
# qrec), then its exit status 0 is case recorder-exit (within 45 s, else not ok and kill -9);
# $T/NAME.err, its stderr, goes with a failure.
stop_recorder() {
    local pid=$1 name=$2 rc
    kill -TERM "$pid" 2>/dev/null
    if wait_for 45 pid_gone "$pid"; then
        wait "$pid"; rc=$?
        checke recorder-exit '[ $rc = 0 ]' || note "$(cat "$T/$name.err")"
    else
        not_ok recorder-exit "$name still running 45 s after SIGTERM"
        kill -9 "$pid" 2>/dev/null
    fi
}

# kill_leader_rounds ROUNDS MARK COUNT STEP RESTART_MARK SHARD...: the faults of a recorded
# history. Round r kills -9 the leader of shard SHARD[(r-1) mod n] (as a live node sees it),
# waits (20 s) for another node to lead it, lets the load go on for at least 3 s and until
# the command COUNT prints a number STEP above what it printed then (bounded: 10 s), restarts
# the node, then again at least 3 s and STEP more (15 s). MARK LABEL is run before each kill
# ("kill<r>-node<L>") and, before or after each restart as RESTART_MARK says (before|after),
# "restart<r>-node<L>". Sets L to the node killed last; returns 1, with a note, when a round
# failed (no leader known, a kill or a restart failed, no new leader).
kill_leader_rounds() {
    local rounds=$1 mark=$2 count=$3 step=$4 at=$5 round s t0 nl n0 out rc=0; shift 5
    local shards=("$@")
    qc_more() { [ "$($count)" -ge "$1" ]; }
    for round in $(seq 1 "$rounds"); do
        s=${shards[$(( (round - 1) % ${#shards[@]} ))]}
        L=$(leader_not 0 "$s")
        if [ -z "$L" ] || [ "$L" = 0 ]; then rc=1; note "round $round: no leader of shard $s known"; break; fi
        $mark "kill$round-node$L"
        cl kill "$L" >/dev/null 2>&1 || { rc=1; note "round $round: kill of node $L failed"; }
        t0=$(now_ms)
        nl=
        wait_for 20 leader_not "$L" "$s" >/dev/null && nl=$(leader_not "$L" "$s")
        note "round $round: killed node $L, leader of shard $s; new leader ${nl:-none} after $(( $(now_ms) - t0 )) ms"
        [ -n "$nl" ] || rc=1
        # load on the survivors for a while, then the node comes back
        n0=$($count)
        sleep 3
        wait_for 10 qc_more $((n0 + step))
        [ "$at" = before ] && $mark "restart$round-node$L"
        out=$(cl_start "$L") || { rc=1; note "round $round: restart of node $L failed: $out"; }
        [ "$at" = after ] && $mark "restart$round-node$L"
        n0=$($count)
        sleep 3
        wait_for 15 qc_more $((n0 + step))
    done
    return $rc
}
