#!/bin/bash
# tests/integration/poll.sh — FILE-API §1 "Waiting": poll(2), select(2) and epoll(7) report a
# blocking file (queues' pop and claim, config's .events and .events@rev) readable exactly
# when a read would not block, so event loops neither spin nor sleep through a message. On a
# real mount, driven by poll.py (stdlib Python): an idle poll times out and an event loop
# is never woken; a push (a write below the watched directory) from another process wakes
# the poller, whose read then returns at once; the push-to-wake latency over several trials
# (median under 100 ms, every figure printed); two pollers both wake; an interrupted read,
# a returned message, an expired lease and a removed queue; descriptors closed or killed
# while they wait leave the daemon serving; files that never block are ready at once.
# Every poll.py run is bounded (timeout); lib.sh's trap cleans up on any exit.
. "$(dirname "$0")/lib.sh"

PP="$PY $QI_DIR/poll.py"
TRIALS=${QFS_POLL_TRIALS:-7}

# pp NAME-OF-RUN ARGS...: runs one poll.py subcommand (bounded) and turns its PASS/FAIL/NOTE
# lines into this script's results. A run that dies or times out is a failure of its own.
pp() {
    local run=$1 line kind name why rc; shift
    local out=$T/pp.$run
    timeout -k 5 90 $PP "$@" >"$out" 2>"$out.err"; rc=$?
    while IFS= read -r line; do
        kind=${line%% *}; line=${line#* }
        case $kind in
            PASS) ok "$line" ;;
            FAIL) name=${line%% *}; why=${line#* }; not_ok "$name" "$why" ;;
            NOTE) note "$line" ;;
        esac
    done <"$out"
    [ $rc -eq 0 ] || not_ok "$run-ran-to-the-end" "poll.py $* exited $rc: $(tail -3 "$out.err")"
}

must_start n1
Q=$MNT/queues
C=$MNT/config

# ---- queues: pop through poll(2), claim through select(2) and epoll(7)
mkdir "$Q/p" "$Q/c" "$Q/e"
pp pop-poll queue "$Q/p" pop poll "$TRIALS"
pp claim-select queue "$Q/c" claim select "$TRIALS"
pp claim-epoll queue "$Q/e" claim epoll 5
check queues-drained [ "$(cat "$Q/p/len") $(cat "$Q/c/len") $(cat "$Q/e/len")" = "0 0 0 0 0 0 0 0 0" ]

# ---- several pollers, an interrupted read, a message given back, a lease, a removed queue
mkdir "$Q/two" "$Q/wait" "$Q/lease" "$Q/gone"
pp pollers pollers "$Q/two"
pp waiting waiting "$Q/wait"
setfattr -n user.visibility_timeout -v 1 "$Q/lease"
pp lease lease "$Q/lease"
pp gone gone "$Q/gone"
check removed-queue-is-gone [ ! -e "$Q/gone" ]

# ---- config: .events of a directory, and .events@0 replaying the history
mkdir -p "$C/app/sub" "$C/other"
echo 1 >"$C/app/first"
pp events events "$C/app" "$C/other" "$TRIALS"
pp replay replay "$C/app"

# ---- descriptors closed and killed while they wait
mkdir "$Q/closed"
pp closed closed "$Q/closed"
checke closed-pollers-daemon-alive 'pid_alive $NPID'
r=$(echo still >"$Q/closed/push" && timeout -k 1 5 cat "$Q/closed/pop" 2>&1)
check closed-pollers-mount-serves [ "$r" = still ]

# ---- files that never block: ready at once; O_NONBLOCK reads of empty blocking files
echo v >"$MNT/cache/k"
pp ready ready "$MNT/cache/k" "$C/app/first" "$Q/p/len" "$Q/p/peek" "$Q/p/push"
pp eagain eagain "$Q/p/pop" "$Q/p/claim" "$C/app/.events"

checke daemon-alive-at-the-end 'pid_alive $NPID'
stop_node "$MNT" "$NPID" && ok clean-stop || not_ok clean-stop "unmount or daemon exit failed"

# ---- shutdown with pollers parked: handles kept for open files are destroyed at node stop,
# never notified after the FUSE session is gone. Under valgrind (as races.sh), which reports
# a use of freed memory as exit 9. Skipped (with a note) when valgrind is not installed.
if command -v valgrind >/dev/null; then
    VM=$T/vg/mnt; VD=$T/vg/data; mkdir -p "$VM"
    valgrind -q --error-exitcode=9 --log-file="$T/vg.log" "$QUORUMFS" mount "$VM" --data "$VD" \
        --foreground >"$T/vg.out" 2>&1 &
    VP=$!
    if wait_for 60 is_mounted "$VM"; then
        mkdir "$VM/queues/q" "$VM/config/w"
        for f in "$VM/queues/q/pop" "$VM/queues/q/claim" "$VM/config/w/.events"; do
            timeout -k 2 60 $PY -c 'import os, select, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
p = select.poll(); p.register(fd, select.POLLIN); p.poll(50000)' "$f" >/dev/null 2>&1 &
        done
        sleep 3
        kill -TERM $VP
        if wait_for 60 pid_gone $VP; then
            wait $VP; rc=$?
            checke shutdown-with-pollers-parked-no-invalid-access '[ $rc -eq 0 ]' ||
                { note "daemon exit $rc; valgrind:"; grep -m 12 -A 6 'Invalid\|uninit' "$T/vg.log" | sed 's/^/#   /'; }
        else
            not_ok shutdown-with-pollers-parked-no-invalid-access "daemon still running 60 s after SIGTERM"
        fi
    else
        not_ok shutdown-with-pollers-parked-no-invalid-access "valgrind'ed daemon did not mount in 60 s: $(tail -3 "$T/vg.out")"
    fi
else
    note "valgrind is not installed: the shutdown-with-pollers case is skipped"
fi

finish
