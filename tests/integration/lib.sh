# tests/integration/lib.sh — shared helpers for the integration scripts (sourced, not run):
# starts quorumfs nodes on fresh temp mountpoints and data dirs, bounded waits, exact-errno
# checks through fsop.py, "ok <case>" / "not ok <case>" reporting for tests/run, and an EXIT
# trap that always unmounts, kills what the test started and removes its temp dirs.
# The binary is $QUORUMFS (default build/quorumfs, relative to the repo root or the cwd).

set -u
export LC_ALL=C

QI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
QI_ROOT=$(cd "$QI_DIR/../.." && pwd)
QUORUMFS=${QUORUMFS:-build/quorumfs}
case $QUORUMFS in
    /*) ;;
    *) if [ -x "$PWD/$QUORUMFS" ]; then QUORUMFS=$PWD/$QUORUMFS; else QUORUMFS=$QI_ROOT/$QUORUMFS; fi ;;
esac
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
FSOP="$PY $QI_DIR/fsop.py"
QI_SCRIPT=$(basename "$0" .sh)

QI_PASS=0
QI_FAIL=0

# The one temp dir of this script run; everything we mount, start or write lives under it.
T=$(mktemp -d /tmp/qfs-it-"$QI_SCRIPT".XXXXXX) || { echo "not ok $QI_SCRIPT/mktemp"; exit 1; }

# ---------------------------------------------------------------- reporting

ok()    { echo "ok $QI_SCRIPT/$1"; QI_PASS=$((QI_PASS + 1)); }
# not_ok NAME [why...]: the reason goes on a "#" line so tests/run never counts it.
not_ok() {
    local _qn=$1; shift
    echo "not ok $QI_SCRIPT/$_qn"
    local why="$*"
    [ ${#why} -gt 400 ] && why="${why:0:400}... (${#why} chars)"
    [ $# -gt 0 ] && echo "#   ${why//$'\n'/ }"
    QI_FAIL=$((QI_FAIL + 1))
    return 0
}
note()  { echo "# $*"; }

# check NAME CMD...: ok when CMD succeeds; returns CMD's success so "|| note ..." can explain.
check() {
    local _qn=$1; shift
    if "$@"; then ok "$_qn"; else not_ok "$_qn" "failed: $*"; return 1; fi
}

# checke NAME 'SHELL EXPRESSION': like check, for compound conditions (eval'ed).
checke() {
    local _qn=$1; shift
    if eval "$1"; then ok "$_qn"; else not_ok "$_qn" "failed: $1"; return 1; fi
}

# expect_errno NAME EXPECTED OP ARGS...: runs fsop.py OP ARGS and compares the first word of
# its answer ("OK" or an errno name) with EXPECTED, which may list alternatives as A|B.
# The answer is left in $ANS.
expect_errno() {
    local _qn=$1 _qw=$2; shift 2
    ANS=$(timeout -k 2 20 $FSOP "$@" 2>&1)
    [ -n "$ANS" ] || ANS="TIMEOUT-or-crash(rc=$?)"
    local _qg=${ANS%% *}
    case "|$_qw|" in
        *"|$_qg|"*) ok "$_qn" ;;
        *) not_ok "$_qn" "$* -> got '$ANS', want $_qw"; return 1 ;;
    esac
}

# fsop OP ARGS...: runs one fsop.py operation (bounded), prints its answer.
fsop() { timeout -k 2 20 $FSOP "$@" 2>&1; }

# finish: prints the summary line and exits non-zero when a case failed; after a failure
# also what the daemons logged of a crash (or their last lines), since a failure is often a
# daemon gone (ENOTCONN) and the CI log is all there is.
finish() {
    if [ "$QI_FAIL" -gt 0 ] && [ -s "$T/daemon.log" ]; then
        if grep -q 'fatal signal\|assertion failed' "$T/daemon.log"; then
            note "the daemon crashed; $T/daemon.log:"
            grep -a -B3 -A14 'fatal signal\|assertion failed' "$T/daemon.log" | head -n 60 | sed 's/^/#   | /'
        else
            note "last lines of $T/daemon.log:"
            tail -n 12 "$T/daemon.log" | sed 's/^/#   | /'
        fi
    fi
    note "$QI_SCRIPT: $QI_PASS passed, $QI_FAIL failed"
    [ "$QI_FAIL" -eq 0 ]
    exit $?
}

# free_ports N: prints a base port P with P..P+N-1 free on 127.0.0.1 (empty if none found).
free_ports() {
    local n=$1 b try
    for try in $(seq 1 20); do
        b=$((20000 + RANDOM % 40000))
        if $PY -c 'import socket,sys
b, n = int(sys.argv[1]), int(sys.argv[2])
for p in range(b, b + n):
    s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", p)); s.close()' "$b" "$n" 2>/dev/null; then
            echo "$b"; return 0
        fi
    done
}

# ---------------------------------------------------------------- waiting

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds; 1 after SECONDS.
wait_for() {
    local secs=$1; shift
    local ms end
    ms=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000 }')
    end=$(( $(date +%s%3N) + ms ))
    while :; do
        "$@" && return 0
        [ "$(date +%s%3N)" -ge "$end" ] && return 1
        sleep 0.1
    done
}

# now_ms: milliseconds since the epoch.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# sleep_until MS: sleeps until now_ms >= MS (at once when that has passed).
sleep_until() {
    local d=$(( $1 - $(now_ms) ))
    [ "$d" -gt 0 ] && sleep "$(awk -v d="$d" 'BEGIN { printf "%.3f", d / 1000 }')"
    return 0
}

# is_mounted DIR: DIR is a mountpoint listed in /proc/mounts.
is_mounted() { awk -v d="$1" '$2 == d { f = 1 } END { exit !f }' /proc/mounts; }
not_mounted() { ! is_mounted "$1"; }
pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' /proc/"$1"/stat 2>/dev/null)" != Z ]; }
pid_gone() { ! pid_alive "$1"; }

# lock_pid DATA: the pid written in DATA/LOCK (empty when missing).
lock_pid() { [ -r "$1/LOCK" ] && tr -cd '0-9\n' <"$1/LOCK" | head -n1; }

# ---------------------------------------------------------------- nodes

# qfs_mount MNT DATA [ARGS...]: runs `quorumfs mount MNT --data DATA ARGS` (which returns once
# the mount is live), output to $T/mount.log; returns its exit status. Never captures the
# daemon's stdout through a pipe (a daemon keeping it open would hang the test). Every daemon
# logs to $T/daemon.log (finish shows it after a failure).
qfs_mount() {
    local mnt=$1 data=$2; shift 2
    # SIGINT/SIGQUIT at their defaults even when this script runs as a background job.
    $FSOP exec-sigdfl timeout -k 5 30 "$QUORUMFS" mount "$mnt" --data "$data" \
        --log-file "$T/daemon.log" "$@" \
        >"$T/mount.log" 2>&1
}

# start_node NAME [ARGS...]: mounts a node on fresh $T/NAME/mnt with data $T/NAME/data (or
# $DATA_DIR when set). Sets MNT, DATA and NPID (from DATA/LOCK). Returns non-zero, with the
# reason printed, when the mount does not come up.
start_node() {
    local name=$1; shift
    MNT=$T/$name/mnt
    DATA=${DATA_DIR:-$T/$name/data}
    mkdir -p "$MNT"
    NPID=
    if ! qfs_mount "$MNT" "$DATA" "$@"; then
        note "mount of $name failed (rc $?):"; sed 's/^/#   | /' "$T/mount.log"
        return 1
    fi
    if ! is_mounted "$MNT"; then
        note "quorumfs mount returned 0 but $MNT is not mounted"
        return 1
    fi
    NPID=$(lock_pid "$DATA")
    if ! pid_alive "$NPID"; then
        note "no live daemon pid in $DATA/LOCK (got '$NPID')"
        NPID=$(daemon_pid_of "$MNT")
    fi
    return 0
}

# must_start NAME [ARGS...]: start_node or bail out of the whole script (later cases would
# only fail for the same reason).
must_start() {
    if ! start_node "$@"; then
        not_ok "start-$1" "could not mount a node; the remaining cases of this script are skipped"
        finish
    fi
}

# daemon_pid_of MNT: pid of a quorumfs process whose command line names MNT (fallback when
# LOCK does not hold it).
daemon_pid_of() {
    local p
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$(readlink /proc/"$p"/exe 2>/dev/null)" = "$(readlink -f "$QUORUMFS")" ] || continue
        tr '\0' ' ' 2>/dev/null </proc/"$p"/cmdline | grep -q -- "$1" && { echo "$p"; return; }
    done
}

# stop_node MNT PID: clean unmount with fusermount3 -u, then waits (10 s) for the daemon to
# exit. Returns non-zero if either does not happen.
stop_node() {
    local mnt=$1 pid=$2
    timeout -k 2 10 fusermount3 -u "$mnt" 2>/dev/null || return 1
    wait_for 10 pid_gone "$pid" || return 1
    not_mounted "$mnt"
}

# crash_node MNT PID: kill -9 the daemon and detach the dead mount (so MNT can be reused).
crash_node() {
    local mnt=$1 pid=$2
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    wait_for 10 pid_gone "$pid"
    timeout -k 2 10 fusermount3 -u "$mnt" 2>/dev/null || timeout -k 2 10 fusermount3 -uz "$mnt" 2>/dev/null
    wait_for 5 not_mounted "$mnt"
}

# ---------------------------------------------------------------- cleanup

# Our processes: any whose command line or cwd is under $T (daemons, background readers).
qi_our_pids() {
    local me=$BASHPID re p
    # one grep over every command line (NUL-separated words; a word under $T or ending in it)
    # and one find over every cwd: a process per pid made each call take seconds
    re=$(printf '%s' "$T" | sed 's/[][\\.*^$]/\\&/g')
    for p in $( { grep -lsz -e "$re/" -e "$re\$" /proc/[0-9]*/cmdline
                  find /proc/[0-9]*/cwd -maxdepth 0 \( -lname "$T" -o -lname "$T/*" \) 2>/dev/null
                } | cut -d/ -f3 | sort -un); do
        [ "$p" = $$ ] || [ "$p" = "$me" ] || echo "$p"
    done
}

qi_cleanup() {
    local rc=$? p m i
    trap - EXIT INT TERM
    # Helpers first (readers blocked on the mount), then a clean unmount, then force.
    for p in $(qi_our_pids); do
        [ "$(readlink /proc/"$p"/exe 2>/dev/null)" = "$(readlink -f "$QUORUMFS")" ] || kill -9 "$p" 2>/dev/null
    done
    for m in $(awk -v t="$T/" 'index($2, t) == 1 && $3 ~ /^fuse/ { print $2 }' /proc/mounts); do
        timeout -k 2 10 fusermount3 -u "$m" 2>/dev/null
    done
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -z "$(qi_our_pids)" ] && break; sleep 0.2; done
    for p in $(qi_our_pids); do kill -9 "$p" 2>/dev/null; done
    for m in $(awk -v t="$T/" 'index($2, t) == 1 && $3 ~ /^fuse/ { print $2 }' /proc/mounts); do
        timeout -k 2 10 fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
    for m in $(awk -v t="$T/" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
    if awk -v t="$T/" 'index($2, t) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
        echo "# cleanup: something is still mounted under $T; leaving it in place"
    elif [ -n "${QI_KEEP_FAILED:-}" ] && [ "$QI_FAIL" -gt 0 ]; then
        echo "# QI_KEEP_FAILED: kept $T for a look (its logs, data directories)"
    else
        rm -rf --one-file-system "$T"
    fi
    exit $rc
}
trap qi_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Fails the whole script early (one "not ok") when the binary is missing.
if [ ! -x "$QUORUMFS" ]; then
    not_ok "binary" "$QUORUMFS not found or not executable (build it: make all, or set QUORUMFS)"
    exit 1
fi
