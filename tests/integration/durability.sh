#!/bin/bash
# tests/integration/durability.sh — FILE-API §1 durability on one node: every write that
# returned success survives kill -9 of the daemon (several rounds, killed mid-stream), no
# value is ever torn, a clean unmount/remount keeps everything (values, dirs, xattrs, config
# history), and config revisions keep growing across restarts (never reused).
. "$(dirname "$0")/lib.sh"

ROUNDS=${QFS_DUR_ROUNDS:-3}
N=${QFS_DUR_KEYS:-500}

DATA_DIR=$T/d/data
must_start d
D=$MNT/cache/dur
mkdir "$D" && ok mkdir || not_ok mkdir
mkdir -p "$MNT/config/app"
ver() { getfattr --only-values -n user.version "$1" 2>/dev/null; }
nlines() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }
: >"$T/acked"

# ---- kill -9 mid-stream, several rounds
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round" >"$MNT/config/app/rev"; lastrev=$(ver "$MNT/config/app/rev")
    before=$(wc -l <"$T/acked")
    timeout -k 2 120 $FSOP durable-writer "$D" "r${round}_" "$N" "$T/acked" >"$T/w$round" 2>&1 &
    wpid=$!
    at=$(( before + 40 + RANDOM % 150 ))      # kill somewhere in the stream
    if ! wait_for 60 nlines "$T/acked" "$at"; then
        not_ok "round$round-writer-progress" "only $(( $(wc -l <"$T/acked") - before )) keys acknowledged in 60 s: $(cat "$T/w$round")"
    fi
    kill -9 "$NPID"
    wait_for 15 pid_gone "$wpid" || { kill -9 "$wpid" 2>/dev/null; not_ok "round$round-writer-unblocked" "writer still blocked 15 s after the daemon died"; }
    wait "$wpid" 2>/dev/null
    note "round $round: writer stopped with '$(cat "$T/w$round")', $(( $(wc -l <"$T/acked") - before )) keys acknowledged this round"
    crash_node "$MNT" "$NPID"
    if ! start_node d; then
        not_ok "round$round-restart" "the daemon did not come back on its data dir after kill -9"
        finish
    fi
    r=$(timeout 60 $FSOP durable-check "$D" "$T/acked" 2>&1)
    checke "round$round-acked-present-untorn" '[ "${r%% *}" = OK ]' || note "$r"
    echo "after crash $round" >"$MNT/config/app/rev"; newrev=$(ver "$MNT/config/app/rev")
    checke "round$round-config-rev-grows" '[ -n "$newrev" ] && [ "$newrev" -gt "$lastrev" ]' 2>/dev/null \
        || note "rev before crash $lastrev, after $newrev"
done
note "acknowledged keys in total: $(wc -l <"$T/acked")"

# ---- clean unmount / remount keeps everything
echo plain >"$MNT/cache/plain"
mkdir -p "$MNT/cache/tree/sub" && echo leaf >"$MNT/cache/tree/sub/leaf"
setfattr -n user.ttl -v 86400 "$MNT/cache/plain"
setfattr -n user.ttl -v 7200 "$MNT/cache/tree"
for i in 1 2 3; do echo "cfg-$i" >"$MNT/config/app/db"; [ $i = 2 ] && cv_prev=$(ver "$MNT/config/app/db"); done
cv=$(ver "$MNT/config/app/db")
h_prev=$(cat "$MNT/config/app/db@$cv_prev" 2>/dev/null)
[ "$h_prev" = cfg-2 ] || note "db@$cv_prev gave '$h_prev' before the restart"
nfiles=$(find "$MNT/cache" "$MNT/config" | wc -l)
sum=$(find "$MNT/cache" -type f -exec cat {} + 2>/dev/null | md5sum)
if stop_node "$MNT" "$NPID"; then ok clean-unmount; else not_ok clean-unmount; crash_node "$MNT" "$NPID"; fi
if start_node d; then
    ok clean-restart
    check clean-same-tree [ "$(find "$MNT/cache" "$MNT/config" | wc -l)" = "$nfiles" ]
    check clean-same-values [ "$(find "$MNT/cache" -type f -exec cat {} + 2>/dev/null | md5sum)" = "$sum" ]
    check clean-leaf [ "$(cat "$MNT/cache/tree/sub/leaf" 2>&1)" = leaf ]
    check clean-key-ttl-kept sh -c "getfattr --only-values -n user.ttl '$MNT/cache/plain' 2>/dev/null | grep -Eq '^(86400|86[0-9]{3}|8[0-5][0-9]{3})$'"
    check clean-dir-ttl-kept [ "$(getfattr --only-values -n user.ttl "$MNT/cache/tree" 2>/dev/null)" = 7200 ]
    check clean-config-version-kept [ "$(ver "$MNT/config/app/db")" = "$cv" ]
    checke clean-config-history-kept '[ -n "$h_prev" ] && [ "$(cat "$MNT/config/app/db@$cv_prev" 2>&1)" = "$h_prev" ]'
    r=$(timeout 60 $FSOP durable-check "$D" "$T/acked" 2>&1)
    checke clean-acked-present '[ "${r%% *}" = OK ]' || note "$r"
    echo "cfg-4" >"$MNT/config/app/db"
    checke clean-config-rev-grows '[ "$(ver "$MNT/config/app/db")" -gt "$cv" ]' 2>/dev/null
    echo new >"$MNT/cache/after-restart" && check clean-new-writes [ "$(cat "$MNT/cache/after-restart")" = new ]
else
    not_ok clean-restart
fi

check daemon-alive pid_alive "$NPID"
finish
