#!/bin/bash
# tests/integration/install.sh — `make install` / `make uninstall` with PREFIX and DESTDIR, the
# installed man page and systemd unit, and mounting the installed binary the way mount(8)
# does: `mount -t fuse.quorumfs` and an fstab line (`mount -T FSTAB`), through fuse3's
# /sbin/mount.fuse, which runs `quorumfs SOURCE MOUNTPOINT -o OPTIONS` with /bin/sh's default
# PATH. The real system is not changed: the mounts happen in a private mount namespace in
# which the staged bin directory is bind-mounted over /usr/local/bin.
. "$(dirname "$0")/lib.sh"

BUILD_DIR=$(dirname "$QUORUMFS")
# make_in_repo ARGS...: make in the repo root, reusing the tested binary as it is (-o: never
# rebuilt), without the flags of a make this test may run under.
make_in_repo() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL timeout -k 5 120 \
        make -s -C "$QI_ROOT" BUILD="$BUILD_DIR" -o "$BUILD_DIR/quorumfs" "$@"
}

# ---- make install DESTDIR=... PREFIX=/usr
D=$T/dest
if make_in_repo install DESTDIR="$D" PREFIX=/usr >"$T/install.log" 2>&1; then ok make-install
else not_ok make-install "$(tail -c 400 "$T/install.log")"; fi
check installed-binary test -x "$D/usr/bin/quorumfs"
check installed-binary-is-the-build cmp -s "$QUORUMFS" "$D/usr/bin/quorumfs"
check installed-man-page test -f "$D/usr/share/man/man1/quorumfs.1"
check installed-unit test -f "$D/usr/lib/systemd/system/quorumfs@.service"
checke unit-execstart-is-installed-binary \
    'grep -q "^ExecStart=/usr/bin/quorumfs mount %f --foreground" "$D/usr/lib/systemd/system/quorumfs@.service"'
checke installed-modes '[ "$(stat -c %a "$D/usr/bin/quorumfs") $(stat -c %a "$D/usr/share/man/man1/quorumfs.1")" = "755 644" ]'
checke nothing-else-installed '[ "$(find "$D" -type f | wc -l)" -eq 3 ]'
if grep -q 'note:' "$T/install.log"; then not_ok no-path-note-for-usr "$(cat "$T/install.log")"
else ok no-path-note-for-usr; fi

# The man page renders without a warning.
if command -v groff >/dev/null; then
    w=$(groff -man -Tutf8 -ww -z "$D/usr/share/man/man1/quorumfs.1" 2>&1)
    if [ -z "$w" ]; then ok man-page-no-warnings; else not_ok man-page-no-warnings "$w"; fi
fi
if command -v man >/dev/null; then
    out=$(MANWIDTH=80 timeout 20 man -l "$D/usr/share/man/man1/quorumfs.1" 2>&1)
    miss=""
    for w in SYNOPSIS OPTIONS NAMESPACES FSTAB SYSTEMD FILES "EXIT STATUS" fuse.quorumfs \
             default_permissions allow_other --foreground "systemctl enable"; do
        grep -qF -- "$w" <<<"$out" || miss="$miss '$w'"
    done
    if [ -z "$miss" ]; then ok man-page-renders; else not_ok man-page-renders "missing:$miss"; fi
fi

# ---- make uninstall removes exactly what install put
if make_in_repo uninstall DESTDIR="$D" PREFIX=/usr >"$T/uninstall.log" 2>&1; then ok make-uninstall
else not_ok make-uninstall "$(tail -c 400 "$T/uninstall.log")"; fi
checke uninstall-removes-everything '[ "$(find "$D" -type f -o -type l | wc -l)" -eq 0 ]'

# A prefix off the default PATH gets a note saying what mount needs.
make_in_repo install PREFIX="$T/opt" >"$T/install2.log" 2>&1
checke install-notes-prefix-off-path 'grep -q "note: mount -t fuse.quorumfs" "$T/install2.log"'

# ---- the unit passes systemd-analyze verify (installed with its binary and man page)
if command -v systemd-analyze >/dev/null; then
    u=$T/opt/lib/systemd/system/quorumfs@.service
    if MANPATH=$T/opt/share/man: timeout 60 systemd-analyze verify "$u" >"$T/verify.log" 2>&1
    then ok unit-verifies
    else not_ok unit-verifies "$(head -c 400 "$T/verify.log")"; fi
    for k in 'Type=notify' 'ExecStop=/bin/fusermount3 -u %f' 'Restart=on-failure'; do
        grep -qxF "$k" "$u" || not_ok "unit-has-$k"
    done
else
    note "systemd-analyze not installed: unit not verified"
fi

# ---- the unit's own commands do what systemd would run: ExecStartPre, ExecStart (ready when
# READY=1 arrives on NOTIFY_SOCKET), ExecStop (unmounts; the node exits 0). %f and %i are
# expanded as systemd does; the state directory is moved under $T.
u=$T/opt/lib/systemd/system/quorumfs@.service
UM=$T/unit/mnt
inst=$(systemd-escape --path "$UM" 2>/dev/null || echo unit)
mkdir -p "$T/unit/state/$inst"
unit_cmd() {   # unit_cmd KEY: the KEY= lines, expanded, leading "-" dropped
    sed -n "s/^$1=-\{0,1\}//p" "$u" | sed -e "s|/var/lib/quorumfs/%i|$T/unit/state/$inst|g" \
        -e "s|%f|$UM|g" -e "s|%i|$inst|g"
}
while IFS= read -r c; do eval "timeout -k 2 20 $c"; done < <(unit_cmd ExecStartPre)
check unit-startpre-makes-mountpoint test -d "$UM"
$PY - "$T/unit/notify" >"$T/unit/got" 2>&1 <<'PYEOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
try:
    while True:
        print(s.recv(4096).decode(), flush=True)
except socket.timeout:
    pass
PYEOF
lpid=$!
wait_for 5 test -S "$T/unit/notify"
( eval "exec env NOTIFY_SOCKET=$T/unit/notify $(unit_cmd ExecStart)" ) >"$T/unit/log" 2>&1 &
upid=$!
if wait_for 15 grep -q READY=1 "$T/unit/got" && is_mounted "$UM"; then
    ok unit-execstart-ready-when-mounted
    checke unit-execstart-stays-in-foreground 'sleep 0.5; pid_alive "$upid"'
    eval "timeout -k 2 20 $(unit_cmd ExecStop)"; rc=$?
    if [ $rc -eq 0 ] && wait_for 10 pid_gone "$upid"; then
        wait "$upid"; rc=$?
        if [ $rc -eq 0 ] && not_mounted "$UM"; then ok unit-execstop-unmounts-node-exits-0
        else not_ok unit-execstop-unmounts-node-exits-0 "exit $rc: $(tail -c 300 "$T/unit/log")"; fi
    else
        not_ok unit-execstop-unmounts-node-exits-0 "ExecStop rc $rc; node alive: $(pid_alive "$upid" && echo yes)"
    fi
else
    not_ok unit-execstart-ready-when-mounted "$(head -c 300 "$T/unit/log")"
fi
# Restart=on-failure after a crash: ExecStartPre detaches the dead mount, the node mounts again.
( eval "exec env NOTIFY_SOCKET=$T/unit/notify $(unit_cmd ExecStart)" ) >"$T/unit/log2" 2>&1 &
upid=$!
if wait_for 15 is_mounted "$UM" && wait_for 5 grep -q READY=1 "$T/unit/got"; then
    kill -9 "$upid"; wait "$upid" 2>/dev/null
    while IFS= read -r c; do eval "timeout -k 2 20 $c"; done < <(unit_cmd ExecStartPre)
    if stat "$UM" >/dev/null 2>&1 && not_mounted "$UM"; then ok unit-startpre-clears-dead-mount
    else not_ok unit-startpre-clears-dead-mount "stat: $(stat "$UM" 2>&1 | head -n1)"; fi
    ( eval "exec $(unit_cmd ExecStart)" ) >"$T/unit/log3" 2>&1 &
    upid=$!
    if wait_for 15 is_mounted "$UM"; then ok unit-restarts-after-crash
        eval "timeout -k 2 20 $(unit_cmd ExecStop)"; wait_for 10 pid_gone "$upid"
    else not_ok unit-restarts-after-crash "$(head -c 300 "$T/unit/log3")"; fi
else
    not_ok unit-second-start "$(head -c 300 "$T/unit/log2")"
fi
kill "$lpid" 2>/dev/null

make_in_repo uninstall PREFIX="$T/opt" >/dev/null 2>&1
checke uninstall-prefix '[ "$(find "$T/opt" -type f -o -type l | wc -l)" -eq 0 ]'

# ---- mount(8) with the installed binary, in a private mount namespace
make_in_repo install DESTDIR="$D" PREFIX=/usr >/dev/null 2>&1 || not_ok reinstall
# The holder keeps the namespace; its cwd under $T lets lib.sh's cleanup find it.
(cd "$T" && exec unshare -m --propagation private sleep 600) &
NSPID=$!
inst_cleanup() {
    local m
    if [ -d "/proc/$NSPID" ]; then
        for m in $(awk -v t="$T/" 'index($2, t) == 1 && $3 ~ /^fuse/ { print $2 }' /proc/"$NSPID"/mounts 2>/dev/null); do
            timeout -k 2 10 nsenter -t "$NSPID" -m umount -l "$m" 2>/dev/null
        done
        kill "$NSPID" 2>/dev/null
    fi
}
trap 'rc=$?; inst_cleanup; (exit $rc); qi_cleanup' EXIT
ns_ready() { [ "$(readlink /proc/"$NSPID"/ns/mnt 2>/dev/null)" != "$(readlink /proc/self/ns/mnt)" ]; }
ns() { timeout -k 2 30 nsenter -t "$NSPID" -m -- "$@"; }
ns_mounted() { awk -v d="$1" '$2 == d { f = 1 } END { exit !f }' /proc/"$NSPID"/mounts 2>/dev/null; }
ns_unmounted() { ! ns_mounted "$1"; }
# The daemon of a mount in the namespace: the installed binary (its exe reads as the path
# inside the namespace, /usr/local/bin/quorumfs) with MNT on its command line.
inst_pid() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p"/exe 2>/dev/null)" = /usr/local/bin/quorumfs ] || continue
        tr '\0' ' ' <"$p"/cmdline 2>/dev/null | grep -qF -- " $1" && { echo "${p#/proc/}"; return; }
    done
}
if ! wait_for 10 ns_ready; then
    not_ok mount-namespace "no private mount namespace (unshare -m)"
    finish
fi
if ns mount --bind "$D/usr/bin" /usr/local/bin; then ok staged-bin-on-default-path
else not_ok staged-bin-on-default-path; finish; fi

M=$T/m
mkdir -p "$M"
if ns mount -t fuse.quorumfs quorumfs "$M" -o "data=$T/data,nosuid,nodev" >"$T/m.log" 2>&1 &&
   ns_mounted "$M"; then
    ok mount-t-fuse-quorumfs
    if ns sh -c 'echo via-mount >"$1/cache/k" && cat "$1/cache/k"' sh "$M" 2>&1 | grep -qx via-mount; then
        ok mount-t-write-read
    else not_ok mount-t-write-read; fi
    checke mount-t-nosuid-nodev "awk -v d='$M' '\$2 == d && \$4 ~ /nosuid/ && \$4 ~ /nodev/ { f = 1 } END { exit !f }' /proc/$NSPID/mounts"
    pid=$(inst_pid "$M")
    check mount-t-daemon-runs pid_alive "$pid"
    if [ -n "$pid" ] && ns umount "$M" && wait_for 10 pid_gone "$pid" && ns_unmounted "$M"; then
        ok umount-unmounts
    else not_ok umount-unmounts "mounted: $(ns_mounted "$M" && echo yes || echo no)"; fi
else
    not_ok mount-t-fuse-quorumfs "$(head -c 400 "$T/m.log")"
fi

# fstab: the documented line, from a temporary fstab (mount -T), with the usual options.
printf '# test fstab\nquorumfs %s fuse.quorumfs data=%s,nosuid,nodev,noatime,_netdev,defaults 0 0\n' \
    "$M" "$T/data" >"$T/fstab"
if ns mount -T "$T/fstab" "$M" >"$T/fstab.log" 2>&1 && ns_mounted "$M"; then
    ok fstab-line-mounts
    checke fstab-keeps-data '[ "$(ns cat "$M/cache/k" 2>&1)" = via-mount ]'
    checke fstab-noatime "awk -v d='$M' '\$2 == d && \$4 ~ /noatime/ { f = 1 } END { exit !f }' /proc/$NSPID/mounts"
    pid=$(inst_pid "$M")
    check fstab-daemon-runs pid_alive "$pid"
    if ns umount "$M" && wait_for 10 pid_gone "$pid" && ns_unmounted "$M"; then ok fstab-umount
    else not_ok fstab-umount; fi
else
    not_ok fstab-line-mounts "$(head -c 400 "$T/fstab.log")"
fi

# mount.fuse3's drop_privileges: it mounts itself and hands the node /dev/fd/N.
if ns mount -t fuse.quorumfs quorumfs "$M" -o "data=$T/data,drop_privileges" >"$T/dp.log" 2>&1 &&
   ns_mounted "$M"; then
    checke drop-privileges-mounts '[ "$(ns cat "$M/cache/k" 2>&1)" = via-mount ]'
    pid=$(inst_pid /dev/fd/)
    check drop-privileges-daemon-runs pid_alive "$pid"
    ns umount "$M" && wait_for 10 pid_gone "$pid" && ns_unmounted "$M" || not_ok drop-privileges-umount
else
    not_ok drop-privileges-mounts "$(head -c 400 "$T/dp.log")"
fi

# Refusals come back through mount(8) with their reason, and leave nothing behind.
if ns mount -t fuse.quorumfs quorumfs "$M" -o "data=$T/data2,allow_other" >"$T/ao.log" 2>&1; then
    not_ok mount-t-allow-other-alone-refused "mount succeeded"
    ns umount "$M"
elif grep -q default_permissions "$T/ao.log" && ns_unmounted "$M" && [ ! -e "$T/data2" ]; then
    ok mount-t-allow-other-alone-refused
else
    not_ok mount-t-allow-other-alone-refused "$(head -c 400 "$T/ao.log")"
fi
if ns mount -t fuse.quorumfs quorumfs "$M" -o "data=$T/data3,allow_other,default_permissions" \
       >"$T/ao2.log" 2>&1 && ns_mounted "$M"; then
    ok mount-t-allow-other-default-permissions
    pid=$(inst_pid "$M")
    ns umount "$M" && wait_for 10 pid_gone "$pid" || not_ok mount-t-allow-other-umount
else
    not_ok mount-t-allow-other-default-permissions "$(head -c 400 "$T/ao2.log")"
fi
if ns mount -t fuse.quorumfs quorumfs "$M" -o "data=$T/data4,blksize=512" >"$T/bad.log" 2>&1; then
    not_ok mount-t-failure-says-why "mount succeeded"
    ns umount "$M"
elif grep -q 'mount failed: Invalid argument' "$T/bad.log" && [ ! -e "$T/data4" ]; then
    ok mount-t-failure-says-why
else
    not_ok mount-t-failure-says-why "data4 left: $([ -e "$T/data4" ] && echo yes || echo no): $(head -c 400 "$T/bad.log")"
fi

finish
