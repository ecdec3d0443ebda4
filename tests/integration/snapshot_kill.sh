#!/usr/bin/env bash
# tests/integration/snapshot_kill.sh — kill -9 in the middle of a snapshot transfer, on
# either side (issue 10 "Tests"): 3 nodes in network namespaces (tools/cluster --netns, 1
# shard, snapshots every 1 MiB of log), node 3's link slowed to 40 Mbit/s (tc) so that a
# transfer of ~24 MB takes seconds. Node 3 is killed, 24 MB of incompressible cache values
# are written, node 3 restarts and catches up by snapshot; when the leader's metrics show
# the transfer under way (quorumfs_raft_snapshot_send_bytes), node 3 is killed again, then
# restarted: the transfer starts over and completes. Then the same with the LEADER killed
# mid-transfer: the new leader sends its own snapshot. Each time node 3 ends up with every
# value. Every wait bounded; lib_cluster.sh's trap takes the cluster down.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
command -v tc >/dev/null || { not_ok tc-installed "tc (iproute2) is needed"; finish; }
cluster_up 3 --netns --node-args "--shards 1 --snapshot-bytes 1048576"
veth3="qfv-$NS_TAG-3"
tc qdisc add dev "$veth3" root tbf rate 40mbit burst 64kb latency 400ms 2>"$T/tc.err" &&
    ok slow-link-to-node-3 || { not_ok slow-link-to-node-3 "$(cat "$T/tc.err")"; finish; }

# sending I: the bytes the leader (read on mount I) has sent to node 3 so far, "" if none
sending() { awk 'index($0, "quorumfs_raft_snapshot_send_bytes{") == 1 && /to="3"/ { print $2 }' \
    "${M[$1]}/.cluster/metrics" 2>/dev/null; }
# under_way I: the leader (read on mount I) has sent node 3 some bytes of a snapshot
under_way() { awk 'index($0, "quorumfs_raft_snapshot_send_bytes{") == 1 && /to="3"/ && $2 > 0 { f = 1 } END { exit !f }' \
    "${M[$1]}/.cluster/metrics" 2>/dev/null; }
# values N TAG: N 1 MiB random values cache/TAG<i> through node 1; their checksums in $T/TAG.sum
values() {
    local i
    : >"$T/$2.sum"
    for i in $(seq 1 "$1"); do
        head -c 1048576 /dev/urandom >"$T/v" && cp "$T/v" "${M[1]}/cache/$2$i" || return 1
        echo "$(md5sum <"$T/v" | cut -c1-32) $2$i" >>"$T/$2.sum"
    done
}
has_all() {   # has_all I TAG: node I serves every value of TAG whole
    local sum key
    while read -r sum key; do
        [ "$({ md5sum <"${M[$1]}/cache/$key"; } 2>/dev/null | cut -c1-32)" = "$sum" ] || return 1
    done <"$T/$2.sum"
}

# ---- the receiver killed mid-transfer
cl kill 3 >/dev/null && ok kill-node-3 || not_ok kill-node-3
values 24 a && ok wrote-24MB || not_ok wrote-24MB
L=$(leader "${M[1]}")
cl start 3 >"$T/start1" 2>&1 &   # (start waits for leaders to settle: poll now)
st1=$!
wait_for 30 under_way "$L" &&
    ok transfer-under-way || not_ok transfer-under-way "leader $L: $(grep -h snapshot_send "${M[$L]}/.cluster/metrics" | tail -2)"
sent=$(sending "$L")
cl kill 3 >/dev/null && ok killed-receiver-mid-transfer || not_ok killed-receiver-mid-transfer
note "leader $L had sent $sent bytes of the snapshot to node 3 when it was killed"
wait "$st1"
cl start 3 >/dev/null 2>&1 || not_ok restart-node-3
wait_for 90 has_all 3 a && ok receiver-caught-up-after-kill || not_ok receiver-caught-up-after-kill "node 3 misses values"

# ---- the sender (the leader) killed mid-transfer
cl kill 3 >/dev/null || not_ok kill-node-3-again
values 24 b || not_ok wrote-24MB-more
L=$(leader "${M[1]}")
[ "$L" = 3 ] && L=$(leader "${M[2]}")
cl start 3 >"$T/start2" 2>&1 &
st2=$!
wait_for 30 under_way "$L" &&
    ok second-transfer-under-way || not_ok second-transfer-under-way "leader $L"
sent=$(sending "$L")
cl kill "$L" >/dev/null && ok killed-sender-mid-transfer || not_ok killed-sender-mid-transfer
note "leader $L had sent $sent bytes of the snapshot to node 3 when it was killed"
wait "$st2"
wait_for 90 has_all 3 b && ok caught-up-from-the-new-leader || not_ok caught-up-from-the-new-leader "node 3 misses values"
checke first-values-still-there 'has_all 3 a'
cl start "$L" >/dev/null 2>&1 || not_ok restart-old-leader
wait_for 90 has_all "$L" b && ok old-leader-caught-up || not_ok old-leader-caught-up

finish
