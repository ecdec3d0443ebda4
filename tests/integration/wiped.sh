#!/usr/bin/env bash
# tests/integration/wiped.sh — a member whose data directory was emptied (docs/MEMBERSHIP.md
# "A wiped node, and what the incarnation guards"). A 3-node cluster (2 shards, 3 replicas)
# records each member's incarnation. Node 3 is killed (kill -9), its data directory emptied,
# and it is started again with its old arguments: the others refuse it (their logs and
# .cluster/health say why and what to do), so it never counts in a quorum and its mount
# serves no data; nodes 1 and 2 keep serving, nothing written before is lost. Then the
# documented way back: a new node 4 (tools/cluster add: quorumfs cluster add, --join), then
# quorumfs cluster remove 3; node 4 serves everything written. Every wait is bounded;
# lib_cluster.sh's trap takes the cluster down.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
KEEP=${TEST_LOGDIR:-$QI_ROOT/build/test-logs}/wiped-$(date +%Y%m%d-%H%M%S)

CLUSTER_SPARE=1 cluster_up 3 --node-args "--shards 2"

for i in $(seq 1 30); do echo "v$i" >"${M[1]}/cache/w$i" || break; done
checke written-before '[ "$(cat "${M[3]}/cache/w30" 2>/dev/null)" = v30 ]'
for i in 1 2 3; do
    checke "incarnation-file-$i" 'grep -q -x "[0-9a-f]\{16\}" "$C/n$i/data/incarnation"'
done
# each member records its incarnation in the member record within a mover round (200 ms)
sleep 2
old_inc=$(cat "$C/n3/data/incarnation" 2>/dev/null)

cl kill 3 >/dev/null 2>&1
rm -rf --one-file-system "$C/n3/data"
# started again as it was (no --join): it draws a new incarnation; its mount may come up
# without quorum or not at all, so `start` is not asked to succeed
timeout 60 "$CL" start 3 --dir "$C" >"$T/start3.out" 2>&1 &
starter=$!
refused() { grep -q "refused: node 3 has a new data directory" "$C/n1/log" "$C/n2/log"; }
wait_for 30 refused && ok others-refuse-wiped-node ||
    { not_ok others-refuse-wiped-node "no refusal logged by nodes 1, 2"; keep_logs "$KEEP" "$T/start3.out"; }
checke new-incarnation '[ -s "$C/n3/data/incarnation" ] && [ "$(cat "$C/n3/data/incarnation")" != "$old_inc" ]'
health_says() { grep -q "member 3 refused: it came back with a new data directory" "${M[1]}/.cluster/health"; }
wait_for 10 health_says && ok health-names-wiped-node ||
    not_ok health-names-wiped-node "$(cat "${M[1]}/.cluster/health" 2>&1)"
checke members-unreachable 'grep -q "^3 .* unreachable" "${M[1]}/.cluster/members"'

# the two others serve, with everything written before; new writes succeed
for i in $(seq 31 40); do echo "v$i" >"${M[2]}/cache/w$i" || break; done
all_there() {
    local m=$1 i
    for i in $(seq 1 40); do [ "$(cat "$m/cache/w$i" 2>/dev/null)" = "v$i" ] || return 1; done
}
checke serving-without-3 'all_there "${M[1]}" && all_there "${M[2]}"'
# the wiped node has no quorum: its mount (if it came up) must not answer from its empty
# state ("No such file" would be a wrong answer, not an error)
if [ -e "$C/n3/mnt/.cluster/shards" ]; then
    out=$(timeout 20 cat "$C/n3/mnt/cache/w5" 2>&1); rc=$?
    checke wiped-node-serves-nothing '[ $rc != 0 ] && [[ $out != *"No such file"* ]] && [ "$out" != v5 ]' ||
        note "cat: rc $rc: $out"
else
    ok wiped-node-serves-nothing
fi
wait "$starter" 2>/dev/null

# the way back: a replacement joins, then the wiped member is removed
out=$(timeout 120 "$CL" add 4 --dir "$C" 2>&1); rc=$?
checke add-replacement '[ $rc = 0 ]' || { note "$out"; keep_logs "$KEEP" "$T/start3.out"; }
M[4]=$C/n4/mnt
# remove refuses to leave fewer active members than replicas: node 4 must be active first
active4() { grep -q "^4 " "${M[1]}/.cluster/members" && ! grep -q "^4 .* joining" "${M[1]}/.cluster/members"; }
wait_for 90 active4 && ok replacement-active || not_ok replacement-active "$(cat "${M[1]}/.cluster/members" 2>&1)"
out=$(timeout 120 "$CL" remove 3 --dir "$C" 2>&1); rc=$?
checke remove-wiped '[ $rc = 0 ]' || { note "$out"; keep_logs "$KEEP" "$T/start3.out"; }
NODES=3
replacement_serves() { all_there "${M[4]}"; }
wait_for 30 replacement_serves && ok replacement-serves-old-data ||
    not_ok replacement-serves-old-data "$(cat "${M[4]}/cache/w1" 2>&1)"
checke health-clear '! grep -q "refused" "${M[1]}/.cluster/health"'
finish
