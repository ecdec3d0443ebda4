#!/usr/bin/env bash
# tests/integration/partition.sh — three quorumfs nodes, each in its own network namespace
# (tools/cluster up 3 --netns), one shard replicated on all of them: the shard's leader is
# cut from the two others (tools/cluster partition L '|' A,B); on its side a write and a read
# that needs a barrier fail with EIO within the 5 s operation timeout (bounded by timeout);
# the two others elect a leader and keep serving writes and reads; after tools/cluster heal
# the old leader's mount shows the majority's writes (bounded poll), its failed write was
# never applied anywhere, and a write on it succeeds everywhere. Also: the nodes really run
# in their namespaces with their mounts seen here; partition/heal refused on a cluster
# without --netns and bad partition specs refused; kill -9 and start of a node in its
# namespace; an up that fails halfway (a namespace name taken) or at node start removes what
# it made and nothing else; down removes every namespace, veth and bridge.
# Needs root (ip netns add): where that is not permitted the script prints a skip line and
# fails (as cluster.sh has no skip path, a skipped partition test is not a pass).
# Every wait is bounded; the EXIT trap runs tools/cluster down (nodes, mounts, namespaces,
# veths, bridge) before lib.sh's cleanup.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
H=$T/half
QC_DIRS+=("$H")
# Ports are per namespace, so a fixed base cannot collide with anything on this machine.
BASE=7700

# ---- network namespaces permitted here?
need_netns

# ---- partition and heal refused on a cluster without --netns (its cluster.env as up writes it)
mkdir -p "$T/plain"
printf 'N=3\nBASE_PORT=%s\nPEERS=1=127.0.0.1:%s,2=127.0.0.1:%s,3=127.0.0.1:%s\nQBIN=%s\nNETNS=0\n' \
    "$BASE" "$BASE" $((BASE + 1)) $((BASE + 2)) "$QUORUMFS" >"$T/plain/cluster.env"
out=$("$CL" partition 1 2,3 --dir "$T/plain" 2>&1); rc=$?
checke partition-needs-netns '[ $rc = 1 ] && [[ $out == *"needs a cluster started with --netns"* ]]' || note "$out"
out=$("$CL" heal --dir "$T/plain" 2>&1); rc=$?
checke heal-needs-netns '[ $rc = 1 ] && [[ $out == *"needs a cluster started with --netns"* ]]' || note "$out"
out=$("$CL" down --netns --dir "$T/plain" 2>&1); rc=$?
checke netns-only-for-up '[ $rc = 1 ] && [[ $out == *"--netns is an option of up"* ]]' || note "$out"

# ---- an up that fails at node start (a binary that exits) leaves no network behind
out=$(CLUSTER_WAIT_S=10 timeout 60 "$CL" up 3 --netns --dir "$H" --base-port "$BASE" --bin /bin/false 2>&1); rc=$?
made=$(env_net "$H")
checke failed-start-refused '[ $rc = 1 ] && [[ $out == *"exited during start"* ]]' || note "$out"
checke failed-start-made-network '[ "$(wc -w <<<"$made")" = 7 ]' || note "recorded: $made"
left=$(net_left "$H")
checke failed-start-cleaned '[ -z "$left" ]' || note "left: $left"

# ---- an up that fails halfway (node 2's namespace name is taken) removes what it made, and
# only that: the namespace it did not make stays
tag=$( (. "$H/cluster.env"; echo "$NS_TAG") )
rm -f "$H/cluster.env"
taken=qfs-$tag-2
if ip netns add "$taken" 2>/dev/null; then
    out=$(CLUSTER_WAIT_S=10 timeout 60 "$CL" up 3 --netns --dir "$H" --base-port "$BASE" --bin "$QUORUMFS" 2>&1); rc=$?
    made=$(env_net "$H")
    checke half-up-refused '[ $rc = 1 ] && [[ $out == *"$taken"* ]]' || note "$out"
    checke half-up-recorded '[[ " $made " == *" ns:qfs-$tag-1 "* ]] && [[ " $made " != *" ns:$taken "* ]]' ||
        note "recorded: $made"
    left=$(net_left "$H")
    checke half-up-cleaned '[ -z "$left" ] && [ -e "/run/netns/$taken" ]' || note "left: $left"
    out=$("$CL" down --dir "$H" 2>&1); rc=$?
    checke half-up-down '[ $rc = 0 ] && [ -e "/run/netns/$taken" ]' || note "$out"
    ip netns del "$taken"
else
    not_ok half-up "could not create $taken for the test"
fi
rm -rf "$H"

# ---- three nodes, each in its own namespace
cluster_up 3 --netns --port "$BASE" --wait 20 --ok cluster-up-netns
M1=${M[1]} M2=${M[2]} M3=${M[3]}

in_own_ns() {   # node I runs in namespace qfs-TAG-I, not in ours, and is mounted here
    local i=$1 p
    p=$(cat "$C/n$i/pid" 2>/dev/null)
    [ -n "$p" ] && [ "$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null)" = "$(stat -L -c %i "/run/netns/qfs-$NS_TAG-$i")" ] &&
        [ "$(stat -L -c %i "/proc/$p/ns/net")" != "$(stat -L -c %i /proc/self/ns/net)" ] &&
        [ "$(stat -L -c %i "/proc/$p/ns/mnt")" = "$(stat -L -c %i /proc/self/ns/mnt)" ] &&
        is_mounted "$C/n$i/mnt"
}
checke nodes-in-own-netns 'in_own_ns 1 && in_own_ns 2 && in_own_ns 3'
checke peers-on-netns-addresses '[[ $PEERS == "1=$SUBNET.1:$BASE,2=$SUBNET.2:$((BASE + 1)),3=$SUBNET.3:$((BASE + 2))" ]]'

wait_for 10 connected "$M1" && wait_for 10 connected "$M2" && wait_for 10 connected "$M3" &&
    ok members-connected || not_ok members-connected "$(cat "$M1/.cluster/members" "$M2/.cluster/members" "$M3/.cluster/members" 2>&1)"

# ---- some values, each read back on every node
pre_ok=1
for i in $(seq 1 6); do
    w=$(( (i % 3) + 1 ))
    echo "pre-$i" >"${M[$w]}/cache/pre$i" || { pre_ok=0; note "write pre$i on node $w failed"; }
done
for i in $(seq 1 6); do
    for r in 1 2 3; do
        [ "$(cat "${M[$r]}/cache/pre$i" 2>&1)" = "pre-$i" ] || { pre_ok=0; note "pre$i not read on node $r"; }
    done
done
checke writes-before-partition '[ $pre_ok = 1 ]'

# ---- bad partition specs change nothing
out=$(cl partition 1 4 2>&1); rc=$?
checke partition-bad-node '[ $rc = 1 ] && [[ $out == *"ids from 1 to 3"* ]]' || note "$out"
out=$(cl partition 1,2 2 2>&1); rc=$?
checke partition-node-twice '[ $rc = 1 ] && [[ $out == *"in two groups"* ]]' || note "$out"
out=$(cl partition 1 2>&1); rc=$?
checke partition-one-group '[ $rc = 1 ] && [[ $out == *"needs two groups"* ]]' || note "$out"
checke status-no-partition 'cl status 2>&1 | grep -qx "partition: none"'

L=$(leader "$M1")
if [ -z "$L" ] || [ "$L" = 0 ]; then not_ok leader-known "no leader on node 1: $(cat "$M1/.cluster/shards" 2>&1)"; finish; fi
S=()
for i in 1 2 3; do [ "$i" != "$L" ] && S+=("$i"); done
FA=${S[0]} FB=${S[1]}

# reach I J: a TCP connection from node I's namespace to node J's port opens (bounded)
reach() {
    nsenter --net="/run/netns/qfs-$NS_TAG-$1" timeout -k 1 3 \
        bash -c "exec 3<>/dev/tcp/$SUBNET.$2/$((BASE + $2 - 1))" 2>/dev/null
}
checke all-reach 'reach $L $FA && reach $FA $L && reach $FA $FB && reach $FB $L'

# ---- the other spellings, on the two followers (the leader keeps its quorum meanwhile)
out=$(cl partition "$FA|$FB" 2>&1); rc=$?
checke partition-form-one-word '[ $rc = 0 ] && [ "$out" = "partition: $FA | $FB" ] &&
    ! reach $FA $FB && ! reach $FB $FA && reach $FA $L && reach $L $FB' || note "$out"
out=$(cl partition "$FB" "$FA" 2>&1); rc=$?
checke partition-form-two-words '[ $rc = 0 ] && [ "$out" = "partition: $FB | $FA" ] &&
    cl status 2>&1 | grep -qx "partition: $FB | $FA" && ! reach $FA $FB && reach $FB $L' || note "$out"
out=$(cl heal 2>&1); rc=$?
checke heal-followers '[ $rc = 0 ] && reach $FA $FB && reach $FB $FA' || note "$out"

# ---- cut the leader from the two others
out=$(cl partition "$L" '|' "$FA,$FB" 2>&1); rc=$?
checke partition-leader '[ $rc = 0 ] && [ "$out" = "partition: $L | $FA,$FB" ]' || note "$out"
st=$(cl status 2>&1)
checke status-shows-partition 'grep -qx "partition: $L | $FA,$FB" <<<"$st" &&
    grep -q "^node $L: .*, cut from $FA,$FB\$" <<<"$st" && grep -q "^node $FA: .*, cut from $L\$" <<<"$st"' || note "$st"
checke cut-both-ways '! reach $L $FA && ! reach $FA $L && ! reach $L $FB && ! reach $FB $L && reach $FA $FB && reach $FB $FA'

# the minority side: a write and a read that needs a barrier (lookup of an existing key),
# both at once, each bounded by timeout (5 s operation timeout + 5 s slack)
timed_op() {   # timed_op OUT OP ARGS...: "ANSWER MS" into OUT
    local out=$1 t0 ans; shift
    t0=$(now_ms)
    ans=$(timeout -k 2 10 $FSOP "$@" 2>&1)
    [ -n "$ans" ] || ans="TIMEOUT-or-crash(rc=$?)"
    echo "${ans%% *} $(( $(now_ms) - t0 ))" >"$out"
}
timed_op "$T/minw" write "${M[$L]}/cache/minority" lit:lost &
mw=$!
timed_op "$T/minr" read "${M[$L]}/cache/pre1" "$T/minr.data" &
mr=$!

# the majority side meanwhile: a new leader, writes and reads on both
new_leader() { local l; l=$(leader "${M[$1]}"); [ -n "$l" ] && [ "$l" != 0 ] && [ "$l" != "$L" ] && [ "$(leader "${M[$2]}")" = "$l" ]; }
wait_for 15 new_leader "$FA" "$FB" && ok majority-elects-leader ||
    not_ok majority-elects-leader "node $FA: $(cat "${M[$FA]}/.cluster/shards" 2>&1); node $FB: $(cat "${M[$FB]}/.cluster/shards" 2>&1)"
timed_op "$T/minl" read "${M[$L]}/cache/pre2" &
ml=$!
maj_ok=1
for i in $(seq 1 6); do
    if [ $((i % 2)) = 0 ]; then w=$FA r=$FB; else w=$FB r=$FA; fi
    # the first write may still meet the election: bounded retries
    t0=$(now_ms)
    until echo "maj-$i" 2>/dev/null >"${M[$w]}/cache/maj$i"; do
        [ $(( $(now_ms) - t0 )) -gt 10000 ] && { maj_ok=0; note "write maj$i on node $w kept failing"; break; }
        sleep 0.1
    done
    [ "$(cat "${M[$r]}/cache/maj$i" 2>&1)" = "maj-$i" ] || { maj_ok=0; note "maj$i not read on node $r"; }
    [ "$(cat "${M[$w]}/cache/pre$i" 2>&1)" = "pre-$i" ] || { maj_ok=0; note "pre$i not read on node $w"; }
done
checke majority-serves-writes-and-reads '[ $maj_ok = 1 ]'

wait $mw $mr
read -r mw_ans mw_ms <"$T/minw"
read -r mr_ans mr_ms <"$T/minr"
wait $ml
read -r ml_ans ml_ms <"$T/minl"
note "on the cut-off old leader (node $L): write -> $mw_ans after $mw_ms ms, read -> $mr_ans after $mr_ms ms"
checke minority-write-EIO '[ "$mw_ans" = EIO ]'
# the read started with the cut may be answered from the old leader's lease (it ends before
# the majority can elect: docs/CLUSTER.md "Lease reads"): then it reads what was there
# before the cut; one started after the majority elected a new leader must fail
checke minority-read-EIO-or-leased '[ "$mr_ans" = EIO ] || { [ "$mr_ans" = OK ] && [ "$(cat "$T/minr.data")" = pre-1 ]; }' ||
    note "read on the cut-off leader: $mr_ans '$(cat "$T/minr.data" 2>/dev/null)'"
checke minority-read-EIO-after-election '[ "$ml_ans" = EIO ]' || note "read after the new leader: $ml_ans after $ml_ms ms"
# (the transport sees a silent peer as gone after its idle timeout, 5 s: health follows)
wait_for 10 timeout 5 grep -q "no quorum" "${M[$L]}/.cluster/health" && ok minority-health ||
    not_ok minority-health "$(timeout 5 cat "${M[$L]}/.cluster/health" 2>&1)"

# ---- heal: the old leader converges
out=$(cl heal 2>&1); rc=$?
checke heal '[ $rc = 0 ] && cl status 2>&1 | grep -qx "partition: none" &&
    ! cl status 2>&1 | grep -q "cut from"' || note "$out"
checke heal-reaches 'reach $L $FA && reach $FA $L && reach $L $FB && reach $FB $L'
t0=$(now_ms)
converged() {
    local i
    for i in $(seq 1 6); do [ "$(timeout 10 cat "${M[$L]}/cache/maj$i" 2>/dev/null)" = "maj-$i" ] || return 1; done
}
wait_for 20 converged && ok old-leader-converges ||
    not_ok old-leader-converges "node $L after heal: $(cat "${M[$L]}/.cluster/shards" 2>&1); maj6: $(cat "${M[$L]}/cache/maj6" 2>&1)"
note "the old leader read every majority write $(( $(now_ms) - t0 )) ms after heal"
# after heal the nodes agree on shard 0's leader (which may be the old leader again: it is
# the shard's preferred leader, and leadership moves back to it once it has caught up)
agree() { local a; a=$(leader "${M[$FA]}"); [ -n "$a" ] && [ "$a" != 0 ] && [ "$(leader "${M[$L]}")" = "$a" ]; }
wait_for 15 agree && ok old-leader-follows || not_ok old-leader-follows "node $L: $(leader "${M[$L]}"), node $FA: $(leader "${M[$FA]}")"
echo "back-$L" >"${M[$L]}/cache/back" 2>/dev/null
checke old-leader-writes-after-heal '[ "$(cat "${M[$FA]}/cache/back" 2>&1)" = "back-$L" ] && [ "$(cat "${M[$FB]}/cache/back" 2>&1)" = "back-$L" ]'
# its write that failed during the partition was never committed (no majority node got it)
absent=1
for i in 1 2 3; do
    a=$(fsop stat "${M[$i]}/cache/minority"); [ "${a%% *}" = ENOENT ] || { absent=0; note "cache/minority on node $i: $a"; }
done
checke minority-write-not-applied '[ $absent = 1 ]'

# ---- kill -9 and start in the namespace
out=$(cl kill "$FA" 2>&1)
# the killed node's mount stays, dead (ENOTCONN), as after a real kill -9: it serves nothing
checke kill-netns-node '! pid_alive "$(cat "$C/n$FA/pid" 2>/dev/null)" && ! ls "${M[$FA]}" >/dev/null 2>&1 && [ -e "/run/netns/qfs-$NS_TAG-$FA" ]' || note "$out"
echo "while-down" >"${M[$FB]}/cache/wd" 2>/dev/null || note "write with node $FA down failed"
out=$(cl_start "$FA" 20) && ok start-netns-node || not_ok start-netns-node "$out"
checke restarted-in-own-netns 'in_own_ns "$FA"'
wait_for 15 sh -c "[ \"\$(cat '${M[$FA]}/cache/wd' 2>/dev/null)\" = while-down ]" && ok restarted-node-caught-up ||
    not_ok restarted-node-caught-up "node $FA does not show the write made while it was down"

# ---- down removes everything
made=$(env_net "$C")
out=$(timeout 60 "$CL" down --dir "$C" 2>&1); rc=$?
left=$(net_left "$C")
checke down-removes-network '[ $rc = 0 ] && [ "$(wc -w <<<"$made")" = 7 ] && [ -z "$left" ]' || note "rc=$rc $out; left: $left"
checke down-unmounts 'not_mounted "$M1" && not_mounted "$M2" && not_mounted "$M3"'
finish
