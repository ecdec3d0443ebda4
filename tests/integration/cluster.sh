#!/usr/bin/env bash
# tests/integration/cluster.sh — three quorumfs nodes on this machine (tools/cluster up 3 on
# free ports under the test's temp dir), every shard replicated on all of them: linearizable
# reads on every node right after a write on another; a config change on node 2 in .events
# on node 3; a pop parked on node 2 woken by a push on node 1; flock on node 1 blocking
# flock -n on node 3 until released; kill -9 of the leader (a new leader, writes on both
# survivors within seconds, nothing acknowledged lost, its flock released when its session
# expires); the killed node restarted catches up;
# a node left alone fails a write with EIO within ~6 s; bad cluster options refused.
# Every wait is bounded; lib_cluster.sh's trap takes the cluster down.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

# ---- bad options: clear errors, exit status 2 (usage) or 1 (start), nothing mounted
mkdir -p "$T/bad/mnt"
bad() {   # bad NAME WANT-IN-MESSAGE ARGS...
    local n=$1 want=$2; shift 2
    local out rc
    out=$(timeout 20 "$QUORUMFS" mount "$T/bad/mnt" --data "$T/bad/data" "$@" 2>&1); rc=$?
    if [ $rc -ne 0 ] && [[ $out == *"$want"* ]] && ! is_mounted "$T/bad/mnt"; then ok "$n"
    else not_ok "$n" "rc=$rc out=$out"; fi
}
bad opt-id-not-in-peers "is not in --peers" --id 4 --peers 1=127.0.0.1:1,2=127.0.0.1:2
bad opt-id-zero "node id from 1" --id 0 --peers 1=127.0.0.1:1
bad opt-dup-id "listed twice" --id 1 --peers 1=127.0.0.1:1,1=127.0.0.1:2
bad opt-bad-addr "bad address" --id 1 --peers 1=127.0.0.1,2=127.0.0.1:2
bad opt-bad-port "port must be" --id 1 --peers 1=127.0.0.1:99999
bad opt-peers-no-id "needs --id" --peers 1=127.0.0.1:1
bad opt-id-no-peers "need --peers" --id 1
bad opt-shards "at most 256 shards" --id 1 --peers 1=127.0.0.1:1 --shards 300
bad opt-replicas "at most the number of peers" --id 1 --peers 1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3 --replicas 4
bad opt-o-peers "at most the number of peers" -o id=2,peers=1=127.0.0.1:1,2=127.0.0.1:2,replicas=3
# a taken listen port (one of this script's range)
busy=$(cluster_ports 1)
exec 7< <($PY -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(30)' "$busy")
read -r busy <&7
bad opt-listen-busy "in use" --id 1 --peers "1=127.0.0.1:$busy"
exec 7<&-
[ -e "$T/bad/data" ] && not_ok opt-no-data-dir-left "a refused start left $T/bad/data" || ok opt-no-data-dir-left

# ---- three nodes on free ports
cluster_up 3 --wait 20
M1=${M[1]} M2=${M[2]} M3=${M[3]}

wait_for 10 connected "$M1" && wait_for 10 connected "$M2" && wait_for 10 connected "$M3" &&
    ok members-connected || not_ok members-connected "$(cat "$M1/.cluster/members" "$M2/.cluster/members" "$M3/.cluster/members" 2>&1)"
L=$(leader "$M1")
checke shards-leader '[ -n "$L" ] && [ "$L" != 0 ] && [ "$(leader "$M2")" = "$L" ] && [ "$(leader "$M3")" = "$L" ]'
checke health-ok '[ "$(cat "$M3/.cluster/health")" = ok ]'
peers_up() { grep -q '^quorumfs_peer_up{peer="2"} 1$' "$M1/.cluster/metrics" &&
             grep -q '^quorumfs_peer_up{peer="3"} 1$' "$M1/.cluster/metrics" &&
             grep -q '^quorumfs_peer_rtt_seconds{peer="3"} 0\.' "$M1/.cluster/metrics"; }
status_ok() { st=$(timeout 10 "$QUORUMFS" cluster status --cluster "${A[2]}" 2>&1) &&
             [[ "$st" == *"asked node 2"* ]] && [[ "$st" == *"shards ("* ]] &&
             [ "$(grep -c -E '^[0-9]+ [0-9]+ 3 ' <<<"$st")" -ge 1 ]; }
wait_for 10 status_ok && ok cluster-status-command || not_ok cluster-status-command "$st"
st=$(timeout 10 "$QUORUMFS" cluster status --cluster "127.0.0.1:1" 2>&1); rc=$?
checke cluster-status-refused '[ $rc = 1 ] && [[ "$st" == *"refused"* ]]' || note "rc=$rc $st"
wait_for 10 peers_up && ok peer-metrics ||
    not_ok peer-metrics "$(grep quorumfs_peer_ "$M1/.cluster/metrics" 2>&1 | head -20)"

# ---- linearizable reads: each write read back on the two other nodes right after
lin_ok=1
for i in $(seq 1 12); do
    w=$(( (i % 3) + 1 ))
    echo "value-$i" >"${M[$w]}/cache/k" || { lin_ok=0; note "write $i on node $w failed"; break; }
    for r in 1 2 3; do
        got=$(cat "${M[$r]}/cache/k" 2>&1)
        [ "$got" = "value-$i" ] || { lin_ok=0; note "write $i on node $w, read on node $r: '$got'"; }
    done
done
checke read-after-write-everywhere '[ $lin_ok = 1 ]'
# the reads on the shard leader's mount were answered from its lease, without the loop
lease_reads() { cat "$M1/.cluster/metrics" "$M2/.cluster/metrics" "$M3/.cluster/metrics" |
                awk '$1 == "quorumfs_lease_reads_total" { s += $2 } END { print s + 0 }'; }
checke lease-reads-counted '[ "$(lease_reads)" -gt 0 ]'
mkdir "$M2/config/app" && echo "url=a" >"$M2/config/app/db"
checke config-on-3 '[ "$(cat "$M3/config/app/db")" = "url=a" ] && [ -d "$M1/config/app" ]'

# ---- a config change on node 2 appears in .events on node 3
(timeout 10 head -n1 "$M3/config/.events" >"$T/ev" 2>&1) &
evp=$!
wait_for 5 opened $evp "$M3/config/.events" || note "the reader did not open config/.events"
echo "url=b" >"$M2/config/app/db"
wait $evp
checke events-across-nodes 'grep -q "put config/app/db" "$T/ev"'

# ---- a pop parked on node 2 is woken by a push on node 1
mkdir "$M1/queues/jobs"
(timeout 10 cat "$M2/queues/jobs/pop" >"$T/pop" 2>&1; echo "rc=$?" >>"$T/pop") &
popp=$!
sleep 0.5
checke pop-parked 'pid_alive $popp && [ ! -s "$T/pop" ]'
t0=$(now_ms)
echo "job-1" >"$M1/queues/jobs/push"
wait $popp
t1=$(now_ms)
checke pop-woken-by-push-on-other-node 'grep -qx "job-1" "$T/pop" && grep -qx "rc=0" "$T/pop"'
note "pop on node 2 returned $((t1 - t0)) ms after the push on node 1"
checke queue-empty-everywhere '[ "$(cat "$M3/queues/jobs/len")" = "0 0 0" ]'

# ---- flock on node 1 blocks flock -n on node 3 until released (the holder lets go when
# told, at most after 30 s)
touch "$M1/locks/L"
(flock "$M1/locks/L" sh -c "i=0; while [ ! -e '$T/unlock' ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i + 1)); done") &
fp=$!
wait_for 5 sh -c "! flock -n '$M3/locks/L' true" && ok flock-blocks-other-node ||
    not_ok flock-blocks-other-node "flock -n on node 3 kept succeeding"
touch "$T/unlock"
wait $fp
wait_for 5 flock -n "$M3/locks/L" true && ok flock-released-other-node ||
    not_ok flock-released-other-node "flock -n on node 3 still refused after release"

# ---- kill -9 the leader while writes are acknowledged on all nodes
acked=()
for i in $(seq 1 30); do
    w=$(( (i % 3) + 1 ))
    echo "ack-$i" >"${M[$w]}/cache/ack$i" && acked+=("$i")
done
L=$(leader "$M1")
touch "${M[$L]}/locks/held"
$PY -c 'import fcntl, sys, time
f = open(sys.argv[1])
fcntl.flock(f, fcntl.LOCK_EX)
time.sleep(60)' "${M[$L]}/locks/held" &
holder=$!
wait_for 5 sh -c "! flock -n '$M1/locks/held' true && ! flock -n '$M2/locks/held' true && ! flock -n '$M3/locks/held' true" ||
    note "the lock on the leader's mount was not seen held everywhere"
cl kill "$L" >/dev/null
tk=$(now_ms)
S=()
for i in 1 2 3; do [ "$i" != "$L" ] && S+=("$i"); done
t0=$(now_ms)
wrote=0
for s in "${S[@]}"; do
    until echo "after-$s" 2>/dev/null >"${M[$s]}/cache/after$s"; do
        [ $(( $(now_ms) - t0 )) -gt 10000 ] && break
        sleep 0.05
    done
    [ "$(cat "${M[$s]}/cache/after$s" 2>/dev/null)" = "after-$s" ] && wrote=$((wrote + 1))
done
dt=$(( $(now_ms) - t0 ))
note "leader $L killed: writes on nodes ${S[*]} succeeded after $dt ms"
checke writes-on-survivors-after-leader-kill '[ $wrote = 2 ] && [ $dt -lt 8000 ]'
new_leader() { NL=$(leader "${M[${S[0]}]}"); [ -n "$NL" ] && [ "$NL" != 0 ] && [ "$NL" != "$L" ]; }
wait_for 10 new_leader && ok new-leader || not_ok new-leader "shard 0's leader is '$NL' (killed: $L)"
lost=0
for s in "${S[@]}"; do
    for i in "${acked[@]}"; do
        [ "$(cat "${M[$s]}/cache/ack$i" 2>/dev/null)" = "ack-$i" ] || { lost=$((lost + 1)); note "ack$i missing on node $s"; }
    done
done
checke nothing-acknowledged-lost '[ ${#acked[@]} = 30 ] && [ $lost = 0 ]'
# the killed node's session ends when its 10 s lease passes (the new leader's sweep), which
# releases the flock its process held
wait_for 16 flock -n "${M[${S[0]}]}/locks/held" true && ok lock-of-killed-node-released ||
    not_ok lock-of-killed-node-released "still held 16 s after the kill"
note "the killed node's flock was released $(( $(now_ms) - tk )) ms after the kill"

# ---- the killed node restarts, catches up and serves reads
start_out=$(cl_start "$L" 20) && ok restart-killed-node ||
    not_ok restart-killed-node "$start_out"
caught() {
    [ "$(cat "${M[$L]}/cache/after${S[0]}" 2>/dev/null)" = "after-${S[0]}" ] &&
    [ "$(cat "${M[$L]}/cache/after${S[1]}" 2>/dev/null)" = "after-${S[1]}" ] &&
    [ "$(cat "${M[$L]}/cache/ack30" 2>/dev/null)" = "ack-30" ]
}
wait_for 15 caught && ok restarted-node-caught-up || not_ok restarted-node-caught-up "node $L does not serve the writes made while it was down"
echo "from-$L" >"${M[$L]}/cache/back" 2>/dev/null
checke restarted-node-writes '[ "$(cat "${M[${S[1]}]}/cache/back")" = "from-$L" ]'

# ---- a node stopped past its session timeout: the cluster releases its lock, and after it
# resumes the holder's descriptor is stale: unlock, lock and close fail with EIO, not silently
L2=$(leader "$M1")
F=1; [ "$F" = "$L2" ] && F=2
O=1; while [ "$O" = "$F" ] || [ "$O" = "$L2" ]; do O=$((O + 1)); done
touch "${M[$F]}/locks/stale" "${M[$F]}/locks/stale2"
$PY -c 'import errno, fcntl, os, sys, time
f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX)
g = open(sys.argv[1] + "2"); fcntl.flock(g, fcntl.LOCK_EX); fcntl.flock(g, fcntl.LOCK_UN)
c = os.open(sys.argv[1] + "c", os.O_WRONLY | os.O_CREAT | os.O_EXCL); os.write(c, b"me\n")
open(sys.argv[2] + ".held", "w").close()
deadline = time.time() + 60
while not os.path.exists(sys.argv[2] + ".go") and time.time() < deadline:
    time.sleep(0.05)
out = []
for what, fn in (("relock", lambda: fcntl.flock(g, fcntl.LOCK_EX | fcntl.LOCK_NB)),
                 ("unlock", lambda: fcntl.flock(f, fcntl.LOCK_UN)),
                 ("lock", lambda: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)),
                 ("close", f.close),
                 ("cwrite", lambda: os.write(c, b"me again\n")),
                 ("cclose", lambda: os.close(c))):
    try:
        fn(); out.append(what + "=0")
    except OSError as e:
        out.append(what + "=" + errno.errorcode.get(e.errno, str(e.errno)))
open(sys.argv[2], "w").write(" ".join(out) + "\n")' "${M[$F]}/locks/stale" "$T/stale" &
stale_py=$!
wait_for 10 test -e "$T/stale.held" || note "the holder on node $F did not get the lock"
wait_for 5 sh -c "! flock -n '${M[$O]}/locks/stale' true" || note "the lock was not seen held on node $O"
mkdir -p "${M[$F]}/queues/stq"
(timeout 60 cat "${M[$F]}/queues/stq/pop" >"$T/stq.out" 2>"$T/stq.err"; echo $? >"$T/stq.rc") &
sleep 1
fpid=$(cat "$C/n$F/pid")
kill -STOP "$fpid"
ts=$(now_ms)
wait_for 25 flock -n "${M[$O]}/locks/stale" true && ok stopped-node-lock-released ||
    not_ok stopped-node-lock-released "node $F stopped, its lock still held after 25 s"
note "node $F stopped: its lock was free on node $O after $(( $(now_ms) - ts )) ms"
# its exclusive-create lock ended with the session too: another node creates it
wait_for 10 sh -c "set -C; echo other >'${M[$O]}/locks/stalec'" && ok stopped-node-create-lock-released ||
    not_ok stopped-node-create-lock-released "O_EXCL create of locks/stalec still fails on node $O"
kill -CONT "$fpid"
touch "$T/stale.go"
wait_for 30 test -s "$T/stale" || note "the holder did not finish"
# (relock: a descriptor whose lock was unlocked before the session ended lost nothing: it
# locks again)
checke stale-descriptor-EIO '[ "$(cat "$T/stale" 2>/dev/null)" = "relock=0 unlock=EIO lock=EIO close=EIO cwrite=EIO cclose=EIO" ]' ||
    note "holder on node $F saw: $(cat "$T/stale" 2>/dev/null)"
wait "$stale_py" 2>/dev/null
# A pop parked on the stopped node never waits forever: if its wait was in the log before
# the session ended, the end drops it and the pop fails with EIO; if its take was still
# being proposed, the take meets the ended session, reopens it and waits there, so a push
# reaches it.
if wait_for 20 test -s "$T/stq.rc"; then
    checke parked-pop-EIO '[ "$(cat "$T/stq.rc")" != 0 ] && grep -q "Input/output error" "$T/stq.err"' ||
        note "rc $(cat "$T/stq.rc" 2>&1): $(cat "$T/stq.err" 2>&1)"
else
    echo first >"${M[$O]}/queues/stq/push"
    wait_for 20 test -s "$T/stq.rc" && checke parked-pop-served '[ "$(cat "$T/stq.out")" = first ]' ||
        not_ok parked-pop-served "the pop still waits after a push"
fi
echo again >"${M[$O]}/queues/stq/push"
checke pop-after-resume '[ "$(timeout 20 cat "${M[$F]}/queues/stq/pop" 2>&1)" = again ]'
# the resumed node has a new session: new descriptors lock as before
wait_for 15 flock -n "${M[$F]}/locks/stale" true && ok resumed-node-locks-again ||
    not_ok resumed-node-locks-again "flock -n on node $F keeps failing after it resumed"

# ---- a producer or consumer on a queue removed on another node: push and pop skip the
# read barrier (fs/queues_fuse.c q_barrier_free), so the open through a directory descriptor
# may still succeed on a node that has not applied the removal, but then the write or read
# fails: no message lands anywhere, no queue comes back
mkdir "${M[$O]}/queues/gone"
wait_for 5 test -d "${M[$F]}/queues/gone" || note "queues/gone not seen on node $F"
gone=$($PY -c 'import errno, os, subprocess, sys
d = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
subprocess.run(["rm", "-r", sys.argv[2]], check=True)
out = []
for name, flags, act in (("push", os.O_WRONLY, lambda fd: os.write(fd, b"x\n")),
                         ("pop", os.O_RDONLY | os.O_NONBLOCK, lambda fd: os.read(fd, 100))):
    try:
        fd = os.open(name, flags, dir_fd=d)
        try:
            act(fd); out.append(name + "=0")
        finally:
            os.close(fd)
    except OSError as e:
        out.append(name + "=" + errno.errorcode.get(e.errno, str(e.errno)))
print(" ".join(out))' "${M[$F]}/queues/gone" "${M[$O]}/queues/gone" 2>&1)
checke removed-queue-refuses-push-pop '[ "$gone" = "push=ENOENT pop=ENOENT" ] && [ ! -e "${M[$O]}/queues/gone" ]' ||
    note "saw: $gone"

# ---- a node left alone: a write fails with EIO within the timeout (not a hang)
cl kill "${S[0]}" >/dev/null
cl kill "${S[1]}" >/dev/null
t0=$(now_ms)
expect_errno lone-node-write-EIO EIO write "${M[$L]}/cache/lone" lit:x
dt=$(( $(now_ms) - t0 ))
note "write on the lone node failed after $dt ms"
checke lone-node-fails-in-time '[ $dt -lt 7000 ]'
checke lone-node-health 'grep -q "no quorum" "${M[$L]}/.cluster/health"'

kill -9 "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
finish
