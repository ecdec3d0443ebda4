#!/usr/bin/env bash
# tests/integration/catchup_waits.sh — parked requests on a node that catches up by snapshot
# (docs/QUEUES.md "Hand-overs kept", docs/LOCKS.md "Waits after a restore"): 3 nodes
# (tools/cluster --netns, 1 shard, snapshots every 64 KiB of log). Node 3 parks a pop, a
# claim, a poll(2) of an empty queue and a flock wait, and is cut off from the others (a
# partition, well within its 10 s session lease). Meanwhile node 1 writes past what the
# leader keeps in flight to node 3, then pushes the messages those reads wait for and
# releases the lock, then writes until the leaders snapshot past those entries. Node 3,
# healed, installs a snapshot: it never applies the entries that answer its requests, yet
# the pop gets its message (no message lost), the claim its lease, the poller its wake-up
# and the flock its grant (before the fix, 2026-12-03, all four hung and the lock stayed
# held). Then again with node 3 cut off past its session lease: the end of its session,
# learnt inside a snapshot, ends its parked pop (EIO) and flock wait (error), and the message
# handed to that pop meanwhile goes back to its queue. Then a pop
# whose reader went away while node 3 was cut off: its message goes back to the queue.
# Every wait bounded; the trap takes the cluster and its namespaces down.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
cluster_up 3 --netns --node-args "--shards 1 --snapshot-bytes 65536"
mkdir "${M[1]}/queues/p" "${M[1]}/queues/c" "${M[1]}/queues/w" && touch "${M[1]}/locks/L" ||
    not_ok setup "mkdir/touch failed"
wait_for 10 test -e "${M[3]}/queues/w/pop" -a -e "${M[3]}/locks/L" || note "node 3 does not see the setup"
# the lock holder, on node 1, until told to let go
(exec 9<"${M[1]}/locks/L"; flock 9; touch "$T/held"; wait_for 60 test -e "$T/release"; true) &
holder=$!
wait_for 10 test -e "$T/held" || not_ok holder "node 1 did not get locks/L"

# node 3's parked requests
(timeout 60 cat "${M[3]}/queues/p/pop" >"$T/pop.out" 2>"$T/pop.err"; echo $? >"$T/pop.rc") &
(timeout 60 cat "${M[3]}/queues/c/claim" >"$T/claim.out" 2>"$T/claim.err"; echo $? >"$T/claim.rc") &
(timeout 60 flock "${M[3]}/locks/L" -c "echo granted >'$T/lock.out'" 2>"$T/lock.err"; echo $? >"$T/lock.rc") &
timeout 70 $PY -c '
import os, select, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
p = select.poll(); p.register(fd, select.POLLIN)
open(sys.argv[2] + ".armed", "w").close()
ev = p.poll(60000)
open(sys.argv[2], "w").write("ready\n" if ev else "timeout\n")' "${M[3]}/queues/w/pop" "$T/poll.out" &
wait_for 10 test -e "$T/poll.out.armed" || note "the poller did not start"
sleep 2     # the takes and the lock wait are committed (they are parked: nothing to wait on)
for f in pop claim lock; do [ -e "$T/$f.rc" ] && note "$f ended early: $(cat "$T/$f.rc") $(cat "$T/$f.err")"; done

part=$("$CL" partition 3 '|' 1,2 --dir "$C" 2>&1) && ok node-3-cut-off || not_ok node-3-cut-off "$part"
t0=$(now_ms)
# junk N SIZE: N cache writes of SIZE bytes through node 1, one after another
junk() {
    timeout 60 $PY -c '
import sys
for i in range(int(sys.argv[2])):
    with open("%s/junk%d" % (sys.argv[1], i), "w") as f: f.write("x" * int(sys.argv[3]))' \
        "${M[1]}/cache" "$1" "$2" || note "the junk writes on node 1 failed"
}
# What the leader sent before the cut, up to 256 appends it keeps in flight to node 3,
# still arrives by TCP after the heal; so first more separate appends than that, then the
# entries that answer node 3's requests, then enough log for the leaders to snapshot past
# them (every 64 KiB): node 3 can only learn those entries inside a snapshot.
junk 300 100
echo mp >"${M[1]}/queues/p/push" && echo mc >"${M[1]}/queues/c/push" &&
    echo mw >"${M[1]}/queues/w/push" && ok pushed-on-node-1 || not_ok pushed-on-node-1
touch "$T/release"
wait_for 10 pid_gone "$holder" || note "the holder on node 1 did not let go"
commit=$(metric "${M[1]}" quorumfs_raft_commit_index)
junk 20 10000
snapped() { [ "$(metric "${M[1]}" quorumfs_raft_snapshot_index)" -gt "$commit" ] &&
            [ "$(metric "${M[2]}" quorumfs_raft_snapshot_index)" -gt "$commit" ]; }
wait_for 10 snapped && ok snapshots-past-the-hand-overs ||
    not_ok snapshots-past-the-hand-overs "snapshot index $(metric "${M[1]}" quorumfs_raft_snapshot_index) <= $commit"
note "node 3 cut off for $(( $(now_ms) - t0 )) ms"
heal=$("$CL" heal --dir "$C" 2>&1) || not_ok healed "$heal"

wait_for 30 test -e "$T/pop.rc" -a -e "$T/claim.rc" -a -e "$T/lock.rc" -a -s "$T/poll.out"
inst=$(metric "${M[3]}" quorumfs_raft_snapshot_installs_total)
checke node-3-installed-a-snapshot '[ "$inst" -gt 0 ]' || note "node 3 installed $inst snapshots"
checke pop-got-its-message '[ "$(cat "$T/pop.rc" 2>/dev/null)" = 0 ] && [ "$(cat "$T/pop.out")" = mp ]' ||
    note "pop: rc $(cat "$T/pop.rc" 2>/dev/null) out '$(cat "$T/pop.out")' err '$(cat "$T/pop.err")'"
checke claim-got-its-message '[ "$(cat "$T/claim.rc" 2>/dev/null)" = 0 ] && grep -qx "[0-9]* mc" "$T/claim.out"' ||
    note "claim: rc $(cat "$T/claim.rc" 2>/dev/null) out '$(cat "$T/claim.out")' err '$(cat "$T/claim.err")'"
checke flock-granted '[ "$(cat "$T/lock.rc" 2>/dev/null)" = 0 ] && [ "$(cat "$T/lock.out")" = granted ]' ||
    note "flock: rc $(cat "$T/lock.rc" 2>/dev/null) out '$(cat "$T/lock.out" 2>/dev/null)' err '$(cat "$T/lock.err")'"
checke poller-woken '[ "$(cat "$T/poll.out" 2>/dev/null)" = ready ]' || note "poll: $(cat "$T/poll.out" 2>/dev/null)"
# nothing lost or doubled: p is empty everywhere, the claim is in flight, w still has mw
qlen() { read -r n _ <"${M[3]}/queues/$1/len" && echo "$n"; }
checke queues-consistent '[ "$(qlen p)" = 0 ] && [ "$(ls "${M[3]}/queues/c/claimed" | wc -l)" = 1 ] &&
    [ "$(qlen w)" = 1 ] && [ "$(cat "${M[1]}/queues/w/pop")" = mw ]' ||
    note "p/len $(cat "${M[3]}/queues/p/len") claimed $(ls "${M[3]}/queues/c/claimed" | wc -l) w/len $(cat "${M[3]}/queues/w/len")"
# the lock is free again after the flock on node 3 ended
checke lock-free-after '[ "$(flock -n "${M[1]}/locks/L" -c "echo ok" 2>&1)" = ok ]'

# ---- the same, but node 3's session ends while it is cut off (past its 10 s lease), and it
# learns the end only inside a snapshot: its parked pop ends with EIO and its flock wait
# with an error, instead of waiting for ever
mkdir "${M[1]}/queues/e" && touch "${M[1]}/locks/M" "${M[1]}/locks/S" || not_ok setup2 "mkdir/touch failed"
wait_for 10 test -e "${M[3]}/queues/e/pop" -a -e "${M[3]}/locks/S" || note "node 3 does not see the second setup"
rm -f "$T/held" "$T/release"
(exec 9<"${M[1]}/locks/M"; flock 9; touch "$T/held"; wait_for 90 test -e "$T/release"; true) &
holder=$!
wait_for 10 test -e "$T/held" || not_ok holder2 "node 1 did not get locks/M"
# node 3 holds S: its release on node 1's side tells when node 3's session has ended
(exec 9<"${M[3]}/locks/S"; flock 9; touch "$T/sheld"; sleep 60) &
wait_for 10 test -e "$T/sheld" || note "node 3 did not get locks/S"
(timeout 90 cat "${M[3]}/queues/e/pop" >"$T/e.out" 2>"$T/e.err"; echo $? >"$T/e.rc") &
(timeout 90 flock "${M[3]}/locks/M" -c "echo granted >'$T/m.out'" 2>"$T/m.err"; echo $? >"$T/m.rc") &
sleep 2
part=$("$CL" partition 3 '|' 1,2 --dir "$C" 2>&1) && ok node-3-cut-off-past-its-lease ||
    not_ok node-3-cut-off-past-its-lease "$part"
t0=$(now_ms)
junk 300 100
echo me >"${M[1]}/queues/e/push" || not_ok pushed-2 "push failed"   # handed to node 3's pop
wait_for 30 flock -n "${M[1]}/locks/S" true && ok node-3-session-ended ||
    not_ok node-3-session-ended "node 3 still holds locks/S after $(( $(now_ms) - t0 )) ms"
commit=$(metric "${M[1]}" quorumfs_raft_commit_index)
junk 20 10000
wait_for 10 snapped && ok snapshots-past-the-session-end ||
    not_ok snapshots-past-the-session-end "snapshot index $(metric "${M[1]}" quorumfs_raft_snapshot_index) <= $commit"
note "node 3 cut off for $(( $(now_ms) - t0 )) ms"
inst0=$(metric "${M[3]}" quorumfs_raft_snapshot_installs_total)
heal=$("$CL" heal --dir "$C" 2>&1) || not_ok healed2 "$heal"
wait_for 30 test -e "$T/e.rc" -a -e "$T/m.rc"
checke node-3-installed-another-snapshot '[ "$(metric "${M[3]}" quorumfs_raft_snapshot_installs_total)" -gt "$inst0" ]'
checke ended-pop-EIO '[ "$(cat "$T/e.rc" 2>/dev/null)" = 1 ] && grep -q "Input/output error" "$T/e.err"' ||
    note "pop: rc $(cat "$T/e.rc" 2>/dev/null) out '$(cat "$T/e.out")' err '$(cat "$T/e.err")'"
checke ended-flock-wait-fails '[ -e "$T/m.rc" ] && [ "$(cat "$T/m.rc")" != 0 ] && [ "$(cat "$T/m.rc")" != 124 ] && [ ! -e "$T/m.out" ]' ||
    note "flock: rc $(cat "$T/m.rc" 2>/dev/null) err '$(cat "$T/m.err")'"
touch "$T/release"
wait_for 10 pid_gone "$holder" || note "the holder on node 1 did not let go"
# the message handed to the ended session's pop was put back (reviewer's finding: it was
# lost), and node 3 serves again under a new session: it pops it
elen() { read -r n _ <"${M[1]}/queues/e/len" && [ "$n" = 1 ]; }
wait_for 10 elen && ok message-of-the-ended-session-back || not_ok message-of-the-ended-session-back "e/len $(cat "${M[1]}/queues/e/len")"
checke node-3-pops-again '[ "$(timeout 20 cat "${M[3]}/queues/e/pop" 2>&1)" = me ]'

# ---- a pop whose reader went away while node 3 was cut off (its CANCEL cannot commit):
# the message pushed to that waiter meanwhile, learnt by node 3 only inside a snapshot,
# goes back to the queue (found by review, 2026-12-03: it was lost)
mkdir "${M[1]}/queues/g"
wait_for 10 test -e "${M[3]}/queues/g/pop" || note "node 3 does not see g"
cat "${M[3]}/queues/g/pop" >"$T/g.out" 2>"$T/g.err" &
reader=$!
sleep 2
part=$("$CL" partition 3 '|' 1,2 --dir "$C" 2>&1) || not_ok cut-3 "$part"
t0=$(now_ms)
kill -TERM "$reader"; wait "$reader" 2>/dev/null
junk 300 100
echo mg >"${M[1]}/queues/g/push" || not_ok pushed-3 "push failed"
commit=$(metric "${M[1]}" quorumfs_raft_commit_index)
junk 20 10000
wait_for 10 snapped || note "no snapshot past the push"
sleep_until $(( t0 + 6000 ))   # past the 5 s timeout of the reader's CANCEL, within the lease
inst0=$(metric "${M[3]}" quorumfs_raft_snapshot_installs_total)
heal=$("$CL" heal --dir "$C" 2>&1) || not_ok healed3 "$heal"
glen() { read -r n _ <"${M[1]}/queues/g/len" && [ "$n" = 1 ]; }
wait_for 20 glen && ok message-of-a-gone-reader-given-back ||
    not_ok message-of-a-gone-reader-given-back "g/len on node 1: $(cat "${M[1]}/queues/g/len"); reader got '$(cat "$T/g.out")'"
checke node-3-installed-a-third-snapshot '[ "$(metric "${M[3]}" quorumfs_raft_snapshot_installs_total)" -gt "$inst0" ]'

"$CL" down --dir "$C" >/dev/null 2>&1
finish
