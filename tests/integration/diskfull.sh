#!/bin/bash
# tests/integration/diskfull.sh — a full disk under the data dir (an 8 MiB tmpfs): writes
# fail with ENOSPC at the write() call, reads keep working, every acknowledged key stays
# readable, and after the disk is enlarged a restart (after a clean unmount, and after
# kill -9) loses nothing acknowledged and takes new writes.
. "$(dirname "$0")/lib.sh"

# fill_round NAME STOP: NAME is "clean" (fusermount3 -u) or "crash" (kill -9).
fill_round() {
    local name=$1 how=$2 r
    local dd=$T/$name/data
    mkdir -p "$dd"
    if ! mount -t tmpfs -o size=8m tmpfs "$dd"; then not_ok "$name-tmpfs" "cannot mount a tmpfs"; return; fi
    DATA_DIR=$dd
    if ! start_node "$name"; then
        not_ok "$name-start-on-8MiB" "the daemon does not start on an empty 8 MiB data dir: $(head -c 300 "$T/mount.log")"
        return
    fi
    ok "$name-start-on-8MiB"
    local F=$MNT/cache/full
    mkdir "$F"
    : >"$T/$name.acked"
    r=$(timeout -k 2 120 $FSOP fill "$F" k 65536 2000 "$T/$name.acked" 2>&1)
    note "$name: fill stopped with '$r' after $(wc -l <"$T/$name.acked") acknowledged 64 KiB keys; tmpfs: $(df -k "$dd" | awk 'NR == 2 { print $3 "k used of " $2 "k" }')"
    checke "$name-write-ENOSPC" '[ "${r%% *}" = ENOSPC ]'
    checke "$name-some-acked" '[ "$(wc -l <"$T/$name.acked")" -gt 10 ]'
    check "$name-daemon-alive-when-full" pid_alive "$NPID"
    # bash's builtin echo reports the error too (commit happens at write()).
    mkdir "$MNT/cache/probe" 2>/dev/null
    ( echo "$(head -c 70000 /dev/zero | tr '\0' e)" >"$MNT/cache/probe/by-echo" ) 2>"$T/echo.err"; rc=$?
    checke "$name-echo-reports-ENOSPC" '[ $rc -ne 0 ] && grep -qi "no space" "$T/echo.err"' || note "echo exit $rc: $(cat "$T/echo.err")"
    note "$name: after the failed echo, probe/by-echo holds $(stat -c %s "$MNT/cache/probe/by-echo" 2>&1) bytes"
    r=$(timeout 60 $FSOP durable-check "$F" "$T/$name.acked" 2>&1)
    checke "$name-reads-work-when-full" '[ "${r%% *}" = OK ]' || note "$r"
    check "$name-ls-works-when-full" sh -c "ls '$F' | grep -qx k0"
    check "$name-health-readable-when-full" grep -q . "$MNT/.cluster/health"
    # §10: health is "ok, or the reasons it is not"; a node refusing every write is not ok.
    checke "$name-health-reports-disk-full" '[ "$(head -n1 "$MNT/.cluster/health")" != ok ]' \
        || note "$name: health while every write fails with ENOSPC: $(head -n 3 "$MNT/.cluster/health" | tr '\n' '|')"

    if [ "$how" = clean ]; then
        if stop_node "$MNT" "$NPID"; then ok "$name-clean-unmount-when-full"
        else not_ok "$name-clean-unmount-when-full"; crash_node "$MNT" "$NPID"; fi
    else
        crash_node "$MNT" "$NPID"
    fi
    mount -o remount,size=64m "$dd" || not_ok "$name-enlarge" "tmpfs remount failed"
    if ! start_node "$name"; then
        not_ok "$name-restart-after-enlarge" "$(head -c 300 "$T/mount.log")"
        return
    fi
    ok "$name-restart-after-enlarge"
    r=$(timeout 60 $FSOP durable-check "$F" "$T/$name.acked" 2>&1)
    checke "$name-nothing-acked-lost" '[ "${r%% *}" = OK ]' || note "$r"
    : >"$T/$name.acked2"
    r=$(timeout -k 2 60 $FSOP fill "$F" new 65536 20 "$T/$name.acked2" 2>&1)
    checke "$name-new-writes-work" '[ "$r" = "OK 20" ]' || note "$r"
    r=$(timeout 60 $FSOP durable-check "$F" "$T/$name.acked" 2>&1)
    checke "$name-still-all-present" '[ "${r%% *}" = OK ]' || note "$r"
    checke "$name-health-ok-after-enlarge" '[ "$(head -n1 "$MNT/.cluster/health")" = ok ]' \
        || note "health with room again: $(head -n 3 "$MNT/.cluster/health" | tr '\n' '|')"
    stop_node "$MNT" "$NPID" || { not_ok "$name-final-unmount"; crash_node "$MNT" "$NPID"; }
    unset DATA_DIR
}

fill_round clean clean
fill_round crash crash
finish
