#!/usr/bin/env bash
# tests/integration/catchup.sh — a node that missed 10,000 writes catches up by snapshot:
# 3 nodes (tools/cluster, 4 shards, snapshots every 256 KiB of log); node 3 is killed, 10,000
# cache keys are written through node 1 (16 processes of fsbench), node 3 restarts and
# serves them all, having installed snapshots from the leaders
# (quorumfs_raft_snapshot_installs_total). (A node whose data directory was wiped does NOT
# rejoin yet: docs/CLUSTER.md "Not done".) Every wait bounded; lib_cluster.sh's trap takes the
# cluster down.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
FSBENCH=${FSBENCH:-$(dirname "$QUORUMFS")/fsbench}
[ -x "$FSBENCH" ] || { not_ok fsbench-built "no $FSBENCH (make all)"; finish; }
cluster_up 3 --node-args "--shards 4 --snapshot-bytes 262144"

cl kill 3 >/dev/null && ok kill-node-3 || not_ok kill-node-3
out=$(timeout 300 "$FSBENCH" --dir "${M[1]}/cache" --mode set --procs 16 --ops 10000 --keys 10000 \
    --value-size 100 2>&1)
checke wrote-10000 '[[ "$out" == *"errors=0"* ]] && [[ "$out" == *"ops=10000 "* ]]' || note "$out"
note "$(grep RESULT <<<"$out")"
taken=$(metric "${M[1]}" quorumfs_raft_snapshot_index)
checke leaders-snapshotted '[ "$taken" -gt 0 ]' || note "no snapshot on node 1"

start_out=$(cl_start 3 60) && ok restart-node-3 ||
    not_ok restart-node-3 "$start_out"
has_all() {   # has_all I: node I serves a sample of the keys, the last one included
    local i k
    for k in 0 1 2 3 4 5 6 7 9999 5000 7777 1234; do
        [ "$(wc -c <"${M[$1]}/cache/$(printf 'k%08d' "$k")" 2>/dev/null)" = 100 ] || return 1
    done
}
wait_for 60 has_all 3 && ok node-3-caught-up || not_ok node-3-caught-up "node 3 misses keys"
checke node-3-count '[ "$(ls "${M[3]}/cache" | grep -c "^k")" = 10000 ]' ||
    note "node 3 lists $(ls "${M[3]}/cache" | grep -c '^k') keys"
inst=$(metric "${M[3]}" quorumfs_raft_snapshot_installs_total)
checke node-3-by-snapshot '[ "$inst" -gt 0 ]' || note "node 3 installed $inst snapshots"
note "node 3 installed $inst snapshots"

checke data-kept '[ "$(ls "${M[1]}/cache" | grep -c "^k")" = 10000 ] && has_all 1'

finish
