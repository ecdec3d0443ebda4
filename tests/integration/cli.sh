#!/bin/bash
# tests/integration/cli.sh — the quorumfs command line: --help/--version, every refusal of
# `quorumfs mount` (exit non-zero with a message, nothing left mounted or running), the data
# dir defaults and its LOCK file, and clean unmount on SIGTERM, SIGINT and fusermount3 -u.
. "$(dirname "$0")/lib.sh"

# ---- --help / --version
out=$(timeout 10 "$QUORUMFS" --help 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q mount <<<"$out"; then ok help
else not_ok help "rc $rc, output: $(head -c 300 <<<"$out")"; fi

out=$(timeout 10 "$QUORUMFS" --version 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -Eq '[0-9]+\.[0-9]+' <<<"$out"; then ok version; note "version: $out"
else not_ok version "rc $rc, output: $(head -c 300 <<<"$out")"; fi

# mount_must_fail NAME MNT DATA [ARGS...]: the mount is refused with a non-zero exit and a
# message, and nothing got mounted on MNT (when it was not mounted before).
mount_must_fail() {
    local name=$1 mnt=$2 data=$3 was=0 rc; shift 3
    is_mounted "$mnt" && was=1
    qfs_mount "$mnt" "$data" "$@"; rc=$?
    if [ $rc -eq 0 ]; then
        not_ok "$name" "quorumfs mount exited 0"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        not_ok "$name" "quorumfs mount did not return within 30 s"
    elif [ ! -s "$T/mount.log" ]; then
        not_ok "$name" "exit $rc but no message"
    elif [ $was -eq 0 ] && is_mounted "$mnt"; then
        not_ok "$name" "exit $rc, yet $mnt is mounted"
    else
        ok "$name"; note "exit $rc: $(head -n 2 "$T/mount.log" | tr '\n' ' ')"
    fi
    # A refused mount must not leave a daemon behind.
    if [ $was -eq 0 ] && [ -n "$(daemon_pid_of "$mnt")" ]; then
        sleep 0.5
        [ -n "$(daemon_pid_of "$mnt")" ] && not_ok "$name-no-daemon-left" "a quorumfs process for $mnt still runs"
    fi
}

# ---- refusals
mkdir -p "$T/d0"
out=$(timeout 10 "$QUORUMFS" mount 2>&1 </dev/null); rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ -n "$out" ]; then ok mount-no-argument
else not_ok mount-no-argument "rc $rc, output: $(head -c 200 <<<"$out")"; fi

mount_must_fail missing-mountpoint "$T/does-not-exist" "$T/d0"

mkdir -p "$T/full"; echo keep >"$T/full/somefile"
mount_must_fail nonempty-mountpoint "$T/full" "$T/d1"
check nonempty-mountpoint-untouched grep -qx keep "$T/full/somefile"

echo x >"$T/afile"
mkdir -p "$T/m-file"
mount_must_fail datadir-is-a-file "$T/m-file" "$T/afile"

mkdir -p "$T/ro" "$T/m-ro"
if mount -t tmpfs -o ro,size=1m tmpfs "$T/ro"; then
    mount_must_fail datadir-readonly "$T/m-ro" "$T/ro"
    mount_must_fail datadir-uncreatable "$T/m-ro" "$T/ro/sub"
else
    not_ok datadir-readonly "could not mount a read-only tmpfs for the case"
fi

# No /dev/fuse: a private mount namespace with an empty /dev (only /dev/null).
mkdir -p "$T/m-nofuse"
timeout -k 5 30 unshare -m sh -c 'mount -t tmpfs -o size=1m tmpfs /dev && mknod -m 666 /dev/null c 1 3 &&
    exec "$0" mount "$1" --data "$2"' "$QUORUMFS" "$T/m-nofuse" "$T/d-nofuse" >"$T/nofuse.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q . "$T/nofuse.log"; then
    ok no-dev-fuse; note "exit $rc: $(head -n 2 "$T/nofuse.log" | tr '\n' ' ')"
else
    not_ok no-dev-fuse "rc $rc, output: $(head -c 300 "$T/nofuse.log")"
fi
# /dev/fuse present but not the FUSE device (/dev/null bound over it).
timeout -k 5 30 unshare -m sh -c 'mount --bind /dev/null /dev/fuse && exec "$0" mount "$1" --data "$2"' \
    "$QUORUMFS" "$T/m-nofuse" "$T/d-nofuse" >"$T/nofuse.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q . "$T/nofuse.log"; then
    ok dev-fuse-not-a-fuse-device; note "exit $rc: $(head -n 2 "$T/nofuse.log" | tr '\n' ' ')"
else
    not_ok dev-fuse-not-a-fuse-device "rc $rc, output: $(head -c 300 "$T/nofuse.log")"
fi

# ---- a running node: LOCK, already mounted, data dir locked
if start_node a; then
    ok mount-returns-when-live
    A_MNT=$MNT A_DATA=$DATA A_PID=$NPID
    check lock-holds-daemon-pid pid_alive "$(lock_pid "$A_DATA")"
    ls "$A_MNT" 2>/dev/null | grep -qx cache && ok root-listed-right-after-mount || not_ok root-listed-right-after-mount "ls gave: $(ls "$A_MNT" 2>&1 | tr '\n' ' ')"

    mount_must_fail already-mounted "$A_MNT" "$T/d-other"

    mkdir -p "$T/m-b"
    mount_must_fail datadir-locked "$T/m-b" "$A_DATA"
    check datadir-locked-lock-unchanged [ "$(lock_pid "$A_DATA")" = "$A_PID" ]

    # The first node is unharmed by the refused attempts.
    if echo alive >"$A_MNT/cache/cli-probe" && [ "$(cat "$A_MNT/cache/cli-probe")" = alive ]; then
        ok first-node-still-works
    else
        not_ok first-node-still-works
    fi
    check fusermount-u-unmounts stop_node "$A_MNT" "$A_PID"
    check fusermount-u-lock-released start_node a
    check restart-keeps-data [ "$(cat "$MNT/cache/cli-probe" 2>/dev/null)" = alive ]
    stop_node "$MNT" "$NPID" || not_ok stop-after-restart
else
    not_ok mount-returns-when-live "a node could not start; see above"
fi

# ---- signals: each unmounts cleanly, exits, releases the lock (a restart on the same dirs works)
for sig in TERM INT; do
    if ! start_node "sig$sig"; then not_ok "sig$sig-start"; continue; fi
    pid=$NPID
    kill -"$sig" "$pid"
    if wait_for 10 pid_gone "$pid" && wait_for 5 not_mounted "$MNT"; then
        ok "sig$sig-unmounts"
    else
        not_ok "sig$sig-unmounts" "pid $pid alive: $(pid_alive "$pid" && echo yes || echo no); mounted: $(is_mounted "$MNT" && echo yes || echo no)"
        crash_node "$MNT" "$pid"
    fi
    if start_node "sig$sig"; then
        ok "sig$sig-restart"
        stop_node "$MNT" "$NPID" || not_ok "sig$sig-stop-after-restart"
    else
        not_ok "sig$sig-restart" "a restart on the same mountpoint and data dir failed"
    fi
done

# ---- --foreground: stays attached, SIGTERM unmounts and exits 0
mkdir -p "$T/fg/mnt"
$FSOP exec-sigdfl "$QUORUMFS" mount "$T/fg/mnt" --data "$T/fg/data" --foreground >"$T/fg.log" 2>&1 &
fgpid=$!
if wait_for 15 is_mounted "$T/fg/mnt"; then
    check foreground-stays-attached pid_alive "$fgpid"
    kill -TERM "$fgpid"
    if wait_for 10 pid_gone "$fgpid"; then
        wait "$fgpid"; rc=$?
        if [ $rc -eq 0 ] && not_mounted "$T/fg/mnt"; then ok foreground-sigterm
        else not_ok foreground-sigterm "exit $rc, mounted: $(is_mounted "$T/fg/mnt" && echo yes || echo no)"; fi
    else
        not_ok foreground-sigterm "still running 10 s after SIGTERM"
    fi
else
    not_ok foreground-mounts "not mounted within 15 s: $(head -c 300 "$T/fg.log")"
fi

# ---- data dir defaults: ./data, or $XDG_DATA_HOME/quorumfs; LOCK holds the daemon pid
mkdir -p "$T/cwd/mnt"
( cd "$T/cwd" && env -u XDG_DATA_HOME timeout -k 5 30 "$QUORUMFS" mount mnt >"$T/cwd.log" 2>&1 ); rc=$?
p=$(lock_pid "$T/cwd/data")
if [ $rc -eq 0 ] && pid_alive "$p" && is_mounted "$T/cwd/mnt"; then ok default-datadir-dot-data
else not_ok default-datadir-dot-data "rc $rc, LOCK pid '$p': $(head -c 300 "$T/cwd.log")"; fi
[ -n "$p" ] && { stop_node "$T/cwd/mnt" "$p" || crash_node "$T/cwd/mnt" "$p"; }

mkdir -p "$T/cwd2/mnt" "$T/xdg"
( cd "$T/cwd2" && XDG_DATA_HOME=$T/xdg timeout -k 5 30 "$QUORUMFS" mount mnt >"$T/cwd2.log" 2>&1 ); rc=$?
p=$(lock_pid "$T/xdg/quorumfs")
if [ $rc -eq 0 ] && pid_alive "$p" && [ ! -e "$T/cwd2/data" ]; then ok xdg-datadir
else not_ok xdg-datadir "rc $rc, LOCK pid '$p', ./data exists: $([ -e "$T/cwd2/data" ] && echo yes || echo no)"; fi
[ -n "$p" ] && { stop_node "$T/cwd2/mnt" "$p" || crash_node "$T/cwd2/mnt" "$p"; }

finish
