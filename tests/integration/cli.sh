#!/bin/bash
# tests/integration/cli.sh — the quorumfs command line: --help/--version, every refusal of
# `quorumfs mount` (exit non-zero with a message, nothing left mounted or running), the data
# dir defaults and its LOCK file, clean unmount on SIGTERM, SIGINT and fusermount3 -u; the
# mount.fuse3/fstab form (`quorumfs SOURCE MOUNTPOINT -o data=DIR,...`), allow_other and
# default_permissions, background failures that print their real reason and leave no data
# dir they created, and systemd readiness (NOTIFY_SOCKET) in the foreground.
. "$(dirname "$0")/lib.sh"

# ---- --help / --version
out=$(timeout 10 "$QUORUMFS" --help 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q mount <<<"$out"; then ok help
else not_ok help "rc $rc, output: $(head -c 300 <<<"$out")"; fi

# --help names every namespace (and says which are served) and every option.
missing=""
for w in cache/ config/ queues/ locks/ jobs/ logs/ search/ services/ .cluster/ \
         served --data --foreground -f -o --log-level --log-file --cache-max-bytes --snapshot-bytes \
         --help --version data= log_level= log_file= cache_max_bytes= snapshot_bytes= \
         default_permissions allow_other nosuid _netdev fstab; do
    grep -qF -- "$w" <<<"$out" || missing="$missing '$w'"
done
if [ -z "$missing" ]; then ok help-lists-namespaces-and-options
else not_ok help-lists-namespaces-and-options "--help does not mention:$missing"; fi
served=$(grep -E '^  (cache|config|queues|locks)/ .* served$' <<<"$out" | wc -l)
check help-says-which-are-served [ "$served" -eq 4 ]

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

# ---- background failures: the real reason on stderr, exit non-zero, nothing mounted, no
# daemon left, and no data directory left behind that the failed start created itself.
# bg_fail NAME WANT MNT DATA [ARGS...]: the mount (background mode) fails, its message
# matches the extended regex WANT, DATA does not exist afterwards.
bg_fail() {
    local name=$1 want=$2 mnt=$3 data=$4; shift 4
    mount_must_fail "$name" "$mnt" "$data" "$@"
    if ! grep -Eq -- "$want" "$T/mount.log"; then
        not_ok "$name-says-why" "want /$want/, got: $(head -c 400 "$T/mount.log")"
    elif grep -q 'see the messages above' "$T/mount.log"; then
        not_ok "$name-says-why" "still the old vague message: $(head -c 400 "$T/mount.log")"
    else
        ok "$name-says-why"
    fi
    check "$name-no-datadir-left" [ ! -e "$data" ]
}
mkdir -p "$T/bg/mnt" "$T/bg/full"; echo keep >"$T/bg/full/f"
bg_fail bg-missing-mountpoint 'mountpoint .*does-not-exist: No such file' \
    "$T/bg/does-not-exist" "$T/bg/d1"
bg_fail bg-nonempty-mountpoint 'is not empty' "$T/bg/full" "$T/bg/d2"
bg_fail bg-bad-option "unknown option.*bogus" "$T/bg/mnt" "$T/bg/d3" -o bogus
bg_fail bg-bad-value 'log_level= must be' "$T/bg/mnt" "$T/bg/d4" -o log_level=loud
# These fail in the daemon itself, after it created the data dir: the kernel refuses the
# mount (blksize is only for fuseblk), so libfuse's reason must travel to the caller.
bg_fail bg-kernel-refuses-mount 'mount failed: Invalid argument' "$T/bg/mnt" "$T/bg/d5" -o blksize=512
check bg-kernel-refuses-not-mounted not_mounted "$T/bg/mnt"
# A data dir that existed before is left alone, with what was in it.
mkdir -p "$T/bg/pre"; echo mine >"$T/bg/pre/keep"
mount_must_fail bg-failure-keeps-existing-datadir "$T/bg/mnt" "$T/bg/pre" -o blksize=512
checke bg-existing-datadir-untouched '[ "$(cat "$T/bg/pre/keep" 2>/dev/null)" = mine ]'
# The node cannot open its log (wal is a file): the node's own reason reaches the caller.
mkdir -p "$T/bg/badwal"; : >"$T/bg/badwal/wal"
mount_must_fail bg-node-open-fails "$T/bg/mnt" "$T/bg/badwal"
if grep -q 'wal' "$T/mount.log"; then ok bg-node-open-fails-says-why
else not_ok bg-node-open-fails-says-why "$(head -c 300 "$T/mount.log")"; fi
if mountpoint -q "$T/ro" 2>/dev/null; then
    bg_fail bg-datadir-unwritable 'cannot create data directory .*Read-only' "$T/bg/mnt" "$T/ro/sub"
fi
if start_node bgam; then
    bg_fail bg-already-mounted 'already mounted' "$MNT" "$T/bg/d6"
    stop_node "$MNT" "$NPID" || not_ok bgam-stop
fi

# ---- the mount.fuse3 / fstab form: quorumfs SOURCE MOUNTPOINT -o data=DIR,<generic options>
mkdir -p "$T/mf/mnt"
$FSOP exec-sigdfl timeout -k 5 30 "$QUORUMFS" quorumfs "$T/mf/mnt" \
    -o "rw,data=$T/mf/data,nosuid,nodev,noexec,noatime,relatime,_netdev,defaults,user,nofail,x-systemd.automount,comment=x,dev,suid" \
    >"$T/mf.log" 2>&1; rc=$?
if [ $rc -eq 0 ] && is_mounted "$T/mf/mnt"; then
    ok mountfuse-form-mounts
    checke mountfuse-form-uses-data-option '[ -n "$(lock_pid "$T/mf/data")" ]'
    if echo via-fstab-form >"$T/mf/mnt/cache/k" && [ "$(cat "$T/mf/mnt/cache/k")" = via-fstab-form ]; then
        ok mountfuse-form-works
    else not_ok mountfuse-form-works; fi
    checke mountfuse-form-generic-options-applied \
        "awk -v d='$T/mf/mnt' '\$2 == d && \$4 ~ /noexec/ && \$4 ~ /noatime/ { f = 1 } END { exit !f }' /proc/mounts"
    checke mountfuse-form-fsname-is-source "awk -v d='$T/mf/mnt' '\$2 == d && \$1 == \"quorumfs\" && \$3 == \"fuse.quorumfs\" { f = 1 } END { exit !f }' /proc/mounts"
    p=$(lock_pid "$T/mf/data")
    stop_node "$T/mf/mnt" "$p" || { not_ok mountfuse-form-stop; crash_node "$T/mf/mnt" "$p"; }
else
    not_ok mountfuse-form-mounts "rc $rc: $(head -c 300 "$T/mf.log")"
fi
# The subcommand form takes -o data= too, and --data=DIR.
if start_node eqform -o log_level=warn; then ok o-log-level-accepted; stop_node "$MNT" "$NPID"
else not_ok o-log-level-accepted; fi
mkdir -p "$T/eq/mnt"
if $FSOP exec-sigdfl timeout -k 5 30 "$QUORUMFS" mount "$T/eq/mnt" --data="$T/eq/data" >"$T/eq.log" 2>&1 &&
   [ -n "$(lock_pid "$T/eq/data")" ]; then
    ok data-equals-form; stop_node "$T/eq/mnt" "$(lock_pid "$T/eq/data")"
else not_ok data-equals-form "$(head -c 300 "$T/eq.log")"; fi

# ---- allow_other: refused without default_permissions, works with it
mkdir -p "$T/ao/mnt"
mount_must_fail allow-other-alone "$T/ao/mnt" "$T/ao/data" -o allow_other
if grep -q 'default_permissions' "$T/mount.log"; then ok allow-other-alone-says-why
else not_ok allow-other-alone-says-why "$(head -c 300 "$T/mount.log")"; fi
check allow-other-alone-no-datadir [ ! -e "$T/ao/data" ]
"$QUORUMFS" quorumfs "$T/ao/mnt" -o "data=$T/ao/data,nosuid,allow_other" >"$T/ao.log" 2>&1; rc=$?
if [ $rc -eq 2 ] && grep -q default_permissions "$T/ao.log" && not_mounted "$T/ao/mnt"; then
    ok allow-other-alone-refused-in-fstab-form
else not_ok allow-other-alone-refused-in-fstab-form "rc $rc: $(head -c 300 "$T/ao.log")"; fi

# Another user (nobody) needs allow_other to reach the mount at all.
chmod 711 "$T" "$T/ao" 2>/dev/null
as_nobody() { timeout -k 2 10 setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
if start_node ao -o default_permissions; then
    if as_nobody ls "$MNT" >/dev/null 2>&1; then
        not_ok without-allow-other-others-denied "user nobody could list $MNT"
    else ok without-allow-other-others-denied; fi
    stop_node "$MNT" "$NPID" || crash_node "$MNT" "$NPID"
fi
if start_node ao -o allow_other,default_permissions; then
    ok allow-other-with-default-permissions-mounts
    checke allow-other-options-reach-the-kernel \
        "awk -v d='$MNT' '\$2 == d && \$4 ~ /allow_other/ && \$4 ~ /default_permissions/ { f = 1 } END { exit !f }' /proc/mounts"
    if as_nobody ls "$MNT" 2>"$T/nobody.log" | grep -qx cache; then ok allow-other-others-can-list
    else not_ok allow-other-others-can-list "$(head -c 300 "$T/nobody.log")"; fi
    echo secret >"$MNT/cache/private" && chmod 600 "$MNT/cache/private"
    echo public >"$MNT/cache/public" && chmod 644 "$MNT/cache/public"
    if as_nobody cat "$MNT/cache/private" >/dev/null 2>&1; then
        not_ok default-permissions-enforced "nobody read a mode 600 root file"
    else ok default-permissions-enforced; fi
    checke allow-other-others-read-public '[ "$(as_nobody cat "$MNT/cache/public" 2>&1)" = public ]'
    stop_node "$MNT" "$NPID" || crash_node "$MNT" "$NPID"
else
    not_ok allow-other-with-default-permissions-mounts "see above"
fi
chmod 700 "$T"

# ---- foreground under systemd: READY=1 once mounted, STOPPING=1 at the end (NOTIFY_SOCKET)
mkdir -p "$T/sd/mnt"
$PY - "$T/sd/notify" >"$T/sd/got" 2>&1 <<'PYEOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
try:
    while True:
        m = s.recv(4096).decode()
        print(m, flush=True)
        if "STOPPING=1" in m:
            break
except socket.timeout:
    pass
PYEOF
lpid=$!
wait_for 5 test -S "$T/sd/notify"
NOTIFY_SOCKET=$T/sd/notify $FSOP exec-sigdfl "$QUORUMFS" mount "$T/sd/mnt" --data "$T/sd/data" -f \
    >"$T/sd.log" 2>&1 &
fgpid=$!
if wait_for 15 grep -q READY=1 "$T/sd/got"; then
    check notify-ready-when-mounted is_mounted "$T/sd/mnt"
else
    not_ok notify-ready-when-mounted "no READY=1 within 15 s: $(head -c 300 "$T/sd.log")"
fi
kill -TERM "$fgpid" 2>/dev/null
if wait_for 10 pid_gone "$fgpid" && wait_for 5 grep -q STOPPING=1 "$T/sd/got"; then ok notify-stopping
else not_ok notify-stopping "got: $(tr '\n' ' ' <"$T/sd/got")"; fi
kill "$lpid" 2>/dev/null

# ---- --log-file: lines with time and pid once mounted; a crash writes its signal and a
# backtrace there; a log file that cannot be opened refuses the start
mount_must_fail log-file-unwritable "$T/lf/mnt" "$T/lf/nodata" --log-file "$T/no/such/dir/log"
check log-file-unwritable-no-datadir [ ! -e "$T/lf/nodata" ]
mkdir -p "$T/lf/mnt"
if $FSOP exec-sigdfl timeout -k 5 30 "$QUORUMFS" mount "$T/lf/mnt" --data "$T/lf/data" \
        -o log_file="$T/lf/log" >"$T/lf.out" 2>&1; then
    lfpid=$(lock_pid "$T/lf/data")
    check log-file-mounted-line grep -Eq "^[0-9-]+T[0-9:.]+Z quorumfs\[$lfpid\]: info: mounted at $T/lf/mnt\$" "$T/lf/log"
    kill -SEGV "$lfpid"
    wait_for 10 pid_gone "$lfpid"
    check log-file-crash-backtrace grep -A1 -q "^quorumfs: fatal signal 11; backtrace:\$" "$T/lf/log"
    crash_node "$T/lf/mnt" "$lfpid"
else
    not_ok log-file-mounted-line "mount failed: $(head -c 300 "$T/lf.out")"
fi

finish
