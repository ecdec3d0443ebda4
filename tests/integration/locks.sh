#!/bin/bash
# tests/integration/locks.sh — FILE-API §3 (locks/) on a real mount with real processes:
# mutual exclusion of 16 processes x 200 increments under flock and under fcntl (lockf),
# FIFO grants, flock -n, SIGINT of a waiting flock, kill -9 of a holder, flock and fcntl
# excluding each other, shared holders coexisting and excluding (and excluded by) exclusive, fencing tokens growing over 1,000 acquisitions by 4 processes,
# exclusive create (EEXIST while held, rm releases, TTL expiry, touch renewal), `cat` of the
# holder, release at unmount, and bad input.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_queues.sh"

mkdir -p "$T/n1"
export DATA_DIR=$T/n1/data
must_start n1
L=$MNT/locks

# ---- the example of the contract and `cat`
flock "$L/deploy" -c "cat '$L/deploy' >'$T/cat.out'" && ok flock-cmd || not_ok flock-cmd
checke cat-shows-holder 'grep -q "^exclusive node=[^ ]* session=[0-9]* pid=[0-9]* since=[0-9T:.-]*Z fence=[0-9]* via=flock" "$T/cat.out"' ||
    note "$(cat "$T/cat.out")"
check lock-file-listed [ "$(ls "$L")" = deploy ]

# ---- mutual exclusion: 16 processes x 200 increments, flock then fcntl
for how in flock lockf; do
    echo 0 >"$T/counter.$how"
    touch "$L/counter-$how"
    t0=$(ms)
    pids=""
    for i in $(seq 1 16); do $PY "$QD" lock-counter "$L/counter-$how" "$T/counter.$how" 200 $how & pids="$pids $!"; done
    bad=0
    for p in $pids; do wait "$p" || bad=$((bad + 1)); done
    check "lock-counter-workers-exit-0-$how" [ $bad = 0 ] || note "$bad workers failed (their errors are above)"
    note "$how: 3200 lock/increment/unlock cycles by 16 processes in $(( $(ms) - t0 )) ms"
    check "mutual-exclusion-$how" [ "$(cat "$T/counter.$how")" = 3200 ] || note "count $(cat "$T/counter.$how")"
done

# ---- waiting: FIFO order, flock -n, SIGINT, kill -9 of the holder
touch "$L/fifo"
$PY "$QD" holder "$L/fifo" "$T/h.ready" &
hp=$!
wait_for 10 test -e "$T/h.ready"
t0=$(ms)
flock -n "$L/fifo" -c true
rc=$?
checke flock-n-fails-at-once '[ $rc -ne 0 ] && [ $(( $(ms) - t0 )) -lt 1000 ]'
: >"$T/fifo.log"
for w in w1 w2 w3 w4 w5; do
    $PY "$QD" fifo-waiter "$L/fifo" $w "$T/fifo.log" 0.1 &
    n=${w#w}
    wait_for 10 grep -q "^waiting $n\$" "$L/fifo" || note "waiter $w not queued"
done
# an interrupted waiter leaves the queue and returns promptly
$FSOP exec-sigdfl flock "$L/fifo" -c true &
ip=$!
wait_for 10 grep -q "^waiting 6\$" "$L/fifo"
t0=$(ms)
kill -INT $ip
wait_for 3 pid_gone $ip
dt=$(( $(ms) - t0 ))
checke flock-wait-sigint-within-1s '[ $dt -lt 1000 ] && pid_gone $ip' || note "took $dt ms"
wait $ip 2>/dev/null
wait_for 5 grep -q "^waiting 5\$" "$L/fifo" && ok interrupted-waiter-dequeued || not_ok interrupted-waiter-dequeued "$(cat "$L/fifo")"
kill -9 $hp; wait $hp 2>/dev/null                     # the holder dies: the next waiter gets it
wait_for 20 eval '[ "$(wc -l <"$T/fifo.log")" -ge 5 ]'
check kill-9-holder-releases [ "$(wc -l <"$T/fifo.log")" = 5 ]
check fifo-order [ "$(tr '\n' ' ' <"$T/fifo.log")" = "w1 w2 w3 w4 w5 " ]

# ---- flock and fcntl exclude each other
touch "$L/mixed"
$PY "$QD" holder "$L/mixed" "$T/m.ready" &
hp=$!
wait_for 10 test -e "$T/m.ready"
r=$($PY -c 'import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print("got")
except OSError as e: print("busy")' "$L/mixed")
check fcntl-excluded-by-flock [ "$r" = busy ]
kill -9 $hp; wait $hp 2>/dev/null

# ---- shared locks: two flock -s holders (separate processes) coexist; while they hold,
# flock -n -x fails at once and flock -n -s succeeds; while flock -x holds, flock -n -s fails.
touch "$L/shared"
$PY "$QD" hold "$L/shared" sh "$T/s1.ready" &
s1=$!
wait_for 10 test -e "$T/s1.ready" && ok shared-first-holder || not_ok shared-first-holder "no shared lock in 10 s"
$PY "$QD" hold "$L/shared" sh "$T/s2.ready" &
s2=$!
if wait_for 10 test -e "$T/s2.ready"; then ok shared-holders-coexist
else not_ok shared-holders-coexist "a second flock -s waited 10 s behind a shared holder: $(timeout 5 cat "$L/shared" | tr '\n' '|')"; fi
checke shared-two-holders-listed '[ "$(timeout 5 cat "$L/shared" | grep -c "^shared ")" = 2 ]' ||
    note "$(timeout 5 cat "$L/shared" | tr '\n' '|')"
t0=$(ms)
timeout -k 1 10 flock -n -x "$L/shared" -c true
rc=$?
check flock-n-x-fails-while-shared-held [ $rc = 1 ] || note "rc $rc after $(( $(ms) - t0 )) ms (1: busy)"
timeout -k 1 10 flock -n -s "$L/shared" -c true
rc=$?
check flock-n-s-succeeds-while-shared-held [ $rc = 0 ] || note "rc $rc"
kill_pids $s1 $s2
wait_for 5 eval '! timeout 5 cat "$L/shared" | grep -q "^shared "' || note "shared holders still listed 5 s after they died"
$PY "$QD" hold "$L/shared" ex "$T/x1.ready" &
x1=$!
wait_for 10 test -e "$T/x1.ready" && ok exclusive-after-shared-released || not_ok exclusive-after-shared-released "no exclusive lock in 10 s after the shared holders died"
t0=$(ms)
timeout -k 1 10 flock -n -s "$L/shared" -c true
rc=$?
check flock-n-s-fails-while-exclusive-held [ $rc = 1 ] || note "rc $rc after $(( $(ms) - t0 )) ms (1: busy)"
kill_pids $x1
wait_for 5 timeout 5 flock -n -s "$L/shared" -c true && ok flock-n-s-after-exclusive-released || not_ok flock-n-s-after-exclusive-released

# ---- fencing tokens: 1,000 acquisitions by 4 processes
touch "$L/fence"
: >"$T/fence.log"
pids=""
for i in 1 2 3 4; do $PY "$QD" fence-worker "$L/fence" "$T/fence.log" 250 & pids="$pids $!"; done
for p in $pids; do wait "$p"; done
check fence-count [ "$(wc -l <"$T/fence.log")" = 1000 ]
checke fence-strictly-growing 'awk "NR > 1 && \$1 <= prev { bad = 1 } { prev = \$1 } END { exit bad }" "$T/fence.log"'

# ---- exclusive create, rm, TTL, touch
( set -C; echo "$HOSTNAME $$" >"$L/job" ) && ok excl-create-acquires || not_ok excl-create-acquires
expect_errno excl-create-EEXIST-while-held EEXIST excl "$L/job" lit:x
checke cat-create-holder 'grep -q "^exclusive .* via=create" "$L/job" && grep -q "^data $HOSTNAME $$" "$L/job"'
f1=$(getfattr --only-values -n user.fence "$L/job" 2>/dev/null)
rm "$L/job" && ok rm-releases || not_ok rm-releases
( set -C; echo again >"$L/job" ) && ok excl-create-after-rm || not_ok excl-create-after-rm
f2=$(getfattr --only-values -n user.fence "$L/job" 2>/dev/null)
checke fence-grows-across-create '[ "$f2" -gt "$f1" ]'
setfattr -n user.ttl -v 2 "$L/job"
for i in 1 2 3 4 5 6; do sleep 0.5; touch "$L/job"; done
check touch-renews-ttl [ -e "$L/job" ]
t0=$(ms)
wait_for 6 test ! -e "$L/job" && ok ttl-expiry-releases || not_ok ttl-expiry-releases
dt=$(( $(ms) - t0 ))
checke ttl-not-early '[ $dt -ge 1000 ]' || note "gone after $dt ms"
( set -C; echo third >"$L/job" ) && ok excl-create-after-ttl || not_ok excl-create-after-ttl
# the descriptor of an exclusive create whose hold ran out (and went to another taker, or
# to nobody): its write and close fail with EIO (docs/CLUSTER.md "Sessions")
for retake in retaken expired; do
lost=$($PY -c 'import errno, os, sys, time
p = sys.argv[1]
c = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL); os.write(c, b"first\n")
os.setxattr(p, "user.ttl", b"1")
deadline = time.time() + 8
while os.path.exists(p) and time.time() < deadline:
    time.sleep(0.1)
if sys.argv[2] == "retaken":
    d = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL); os.close(d)
out = []
for what, fn in (("write", lambda: os.write(c, b"late\n")), ("close", lambda: os.close(c))):
    try:
        fn(); out.append(what + "=0")
    except OSError as e:
        out.append(what + "=" + errno.errorcode.get(e.errno, str(e.errno)))
print(" ".join(out))' "$L/ttlfd" $retake 2>&1)
check excl-create-lost-to-ttl-EIO-$retake [ "$lost" = "write=EIO close=EIO" ] || note "saw: $lost"
rm -f "$L/ttlfd"
done

# ---- bad input
expect_errno mkdir-in-locks EPERM mkdir "$L/dir"
expect_errno bad-lock-name EINVAL write "$L/bad"$'\xff' lit:x
expect_errno dot-lock-name-is-ordinary OK excl "$L/.hidden" lit:x
rm -f "$L/.hidden"
expect_errno ttl-not-a-number EINVAL setx "$L/job" user.ttl abc
expect_errno fence-read-only EPERM setx "$L/job" user.fence 5
expect_errno unknown-xattr ENODATA getx "$L/job" user.nope
r=$($PY -c 'import fcntl, os, sys, errno
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX, 10, 5); print("OK")
except OSError as e: print(errno.errorcode[e.errno])' "$L/fence")
check byte-range-lock-EINVAL [ "$r" = EINVAL ]
check daemon-alive pid_alive "$NPID"

# ---- a session that ends releases its locks: create locks vanish after an unmount
stop_node "$MNT" "$NPID" && ok clean-unmount || not_ok clean-unmount
must_start n1
L=$MNT/locks
check unmount-ends-create-lock [ ! -e "$L/job" ]
check flock-files-stay [ -e "$L/fence" ]
flock -n "$L/fence" -c true && ok lock-free-after-remount || not_ok lock-free-after-remount
stop_node "$MNT" "$NPID"
finish
