#!/bin/bash
# tests/integration/races.sh — races between a blocked request and the threads that end it,
# reproduced on every run by widening the race window with a fault-injection pause
# (fs/testhook.h, QUORUMFS_TEST_PAUSE). Each case would crash or hang the daemon if the
# bug it names came back; the daemon must stay alive and the mount must keep serving.
. "$(dirname "$0")/lib.sh"

# ---- .events: SIGINT while the read is being parked (issue 7's segfault)
# watch_read once read w->st after registering the interrupt callback; the interrupt could
# answer the read, the reader exit and its release free the watch first. The pause sits
# exactly there, so each SIGINT below frees the watch inside the window.
QUORUMFS_TEST_PAUSE=watch_read_registered:300 must_start a
mkdir "$MNT/config/app" && echo 1 >"$MNT/config/app/x"
for i in 1 2 3 4 5 6; do
    $FSOP exec-sigdfl cat "$MNT/config/app/.events" >/dev/null 2>&1 &
    rp=$!
    sleep 0.1                      # the read is parked; its thread sleeps in the pause
    kill -INT $rp 2>/dev/null
    wait_for 3 pid_gone $rp || kill -9 $rp 2>/dev/null
done
sleep 0.5                           # let the paused threads run on past the window
checke events-sigint-while-parking-daemon-alive 'pid_alive $NPID'
r=$(timeout 5 cat "$MNT/config/app/x" 2>&1)
checke events-sigint-while-parking-mount-serves '[ "$r" = 1 ]' || note "cat gave '$r'"
stop_node "$MNT" "$NPID" || note "clean stop failed"

finish
