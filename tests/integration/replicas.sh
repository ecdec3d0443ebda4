#!/usr/bin/env bash
# tests/integration/replicas.sh — 5 nodes, 8 shards of 3 voters each (--replicas 3): each
# shard's voters are placed by rendezvous hashing and the other two nodes follow it as
# learners, so every mount still serves every shard (reads after a ReadIndex barrier,
# writes forwarded to the leader); leaders spread over the nodes (each shard led by its
# preferred voter); with one node killed every shard still serves; with two nodes killed the
# shards that lost two voters fail with EIO within the timeout while the others serve. Every
# wait bounded; lib_cluster.sh's trap takes the cluster down.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
cluster_up 5 --wait 40 --node-args "--shards 8 --replicas 3"
SH=${M[1]}/.cluster/shards
# every shard has exactly 3 voters among the 5 nodes (each node says its own role)
voters=$(for n in 1 2 3 4 5; do awk '$8 == "voter" {print $1}' "${M[$n]}/.cluster/shards"; done | sort | uniq -c | awk '{print $1}' | sort -u | tr '\n' ' ')
checke three-voters-each '[ "$voters" = "3 " ] && [ "$(awk "\$3 == 3" "$SH" | wc -l)" = 8 ]' ||
    note "voters per shard: $voters; $(cat "$SH")"
settled() { [ "$(awk 'NF >= 7 && $2 == $7 && $2 != 0' "$SH" 2>/dev/null | wc -l)" = 8 ]; }
wait_for 30 settled && ok led-by-preferred || not_ok led-by-preferred "$(cat "$SH")"
leaders=$(awk '{print $2}' "$SH" | sort -u | wc -l)
checke leaders-spread '[ "$leaders" -ge 3 ]' || note "leaders on $leaders nodes: $(awk '{print $2}' "$SH" | tr '\n' ' ')"
note "leaders: $(awk '{print $2}' "$SH" | sort | uniq -c | tr -s ' \n' ' ')"

# ---- every mount serves every shard: 24 keys written round-robin, read on every node
for i in $(seq 1 24); do echo "v$i" >"${M[$(( i % 5 + 1 ))]}/cache/k$i" || note "write k$i failed"; done
bad=0
for n in 1 2 3 4 5; do
    for i in $(seq 1 24); do [ "$(cat "${M[$n]}/cache/k$i" 2>/dev/null)" = "v$i" ] || bad=$((bad + 1)); done
done
checke every-mount-every-shard '[ $bad = 0 ]' || note "$bad reads wrong"

# ---- one node down: every shard keeps a majority of its voters
cl kill 5 >/dev/null
ok1=0
for i in $(seq 1 24); do
    timeout 20 sh -c "echo w$i >'${M[$(( i % 4 + 1 ))]}/cache/k$i'" 2>/dev/null && ok1=$((ok1 + 1))
done
checke one-down-all-serve '[ $ok1 = 24 ]' || note "$ok1 of 24 writes with node 5 down"

# ---- two down: a shard whose voters include 4 and 5 has no quorum, the others serve
cl kill 4 >/dev/null
# (placement is deterministic and pinned by test_route: of k1..k5 exactly k4, on shard 4,
# whose voters are 5, 4 and 2, fails)
served=0 failed=0 other=0
for i in $(seq 1 5); do
    r=$(timeout -k 2 15 $FSOP write "${M[1]}/cache/k$i" "lit:x$i" 2>&1)
    case "${r%% *}" in
        OK) served=$((served + 1)) ;;
        EIO) failed=$((failed + 1)) ;;
        *) other=$((other + 1)); note "k$i: $r" ;;
    esac
done
checke two-down-only-EIO '[ $other = 0 ]'
note "with nodes 4 and 5 down: $served of 5 keys writable, $failed failed"
checke two-down-some-serve '[ $served -gt 0 ]'
checke two-down-some-fail '[ $failed -gt 0 ]'
finish
