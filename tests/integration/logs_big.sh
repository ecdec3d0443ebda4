#!/usr/bin/env bash
# tests/integration/logs_big.sh — issue 11's "a 1 GB log on a node with a memory cap of 512 MB",
# scaled down for `make test` (docs/LOGS.md "Measured"): the embedded node runs in a transient
# memory cgroup (v1 memory.limit_in_bytes or v2 memory.max, under this shell's own cgroup)
# capped at LOGS_BIG_CAP_MIB (48); LOGS_BIG_MIB (64) MiB of text are appended to one log
# with dd bs=128K oflag=append (segment_bytes LOGS_BIG_SEGMENT, default 4 MiB, so segments
# seal; snapshots every LOGS_BIG_SNAPSHOT bytes, default 8 MiB, so each one streams the
# growing log); the log is read back whole (md5) and must be equal; then the node is killed
# (-9) and restarted in the same cgroup, which rebuilds every segment file from the snapshot
# and the WAL replay, and the log is read again. Fails on an OOM kill in the cgroup, a dead
# daemon, a size or checksum mismatch. The peak anonymous memory of the cgroup (sampled
# every 0.2 s), each daemon's VmHWM and the cgroup's peak usage (page cache included: it is
# reclaimed at the cap) are noted. `make soak-logs` runs it with 1024 MiB under 512 MiB and
# the default segment and snapshot sizes (0 = the default). Skipped (one "ok ... # SKIP"
# line) where no memory cgroup is writable (not root, or no memory controller).
. "$(dirname "$0")/lib.sh"

SIZE_MIB=${LOGS_BIG_MIB:-64}
CAP_MIB=${LOGS_BIG_CAP_MIB:-48}
SEGMENT=${LOGS_BIG_SEGMENT:-$((4 << 20))}
SNAPSHOT=${LOGS_BIG_SNAPSHOT:-$((8 << 20))}
SIZE=$((SIZE_MIB << 20))

# ---- a transient memory cgroup under ours: CG, its limit file, how to read anon and OOMs
CG= CG_PARENT= CG_V=
v1=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' /proc/self/cgroup)
if [ -n "$v1" ] && [ -w "/sys/fs/cgroup/memory$v1" ] && [ -e "/sys/fs/cgroup/memory$v1/memory.limit_in_bytes" ]; then
    CG_PARENT=/sys/fs/cgroup/memory${v1%/}
    CG_V=1
else
    v2=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
    for root in /sys/fs/cgroup /sys/fs/cgroup/unified; do
        p=$root${v2%/}
        if [ -n "$v2" ] && [ -w "$p" ] && grep -qw memory "$p/cgroup.controllers" 2>/dev/null; then
            CG_PARENT=$p CG_V=2
            break
        fi
    done
fi
if [ -z "$CG_V" ] || ! mkdir "$CG_PARENT/qfs-logsbig.$$" 2>/dev/null; then
    echo "ok $QI_SCRIPT/memory-cap # SKIP no writable memory cgroup here (needs root and a memory controller)"
    finish
fi
CG=$CG_PARENT/qfs-logsbig.$$
if [ $CG_V = 1 ]; then
    echo $((CAP_MIB << 20)) >"$CG/memory.limit_in_bytes"
    anon() { awk '$1 == "rss" { print $2 }' "$CG/memory.stat"; }
    ooms() { awk '$1 == "oom_kill" { print $2 }' "$CG/memory.oom_control"; }
    peak_usage() { cat "$CG/memory.max_usage_in_bytes"; }
else
    # v2: the parent must hand the memory controller down (it may already)
    grep -qw memory "$CG_PARENT/cgroup.subtree_control" 2>/dev/null ||
        echo +memory >"$CG_PARENT/cgroup.subtree_control" 2>/dev/null
    echo $((CAP_MIB << 20)) >"$CG/memory.max" 2>/dev/null
    anon() { awk '$1 == "anon" { print $2 }' "$CG/memory.stat"; }
    ooms() { awk '$1 == "oom_kill" { print $2 }' "$CG/memory.events"; }
    peak_usage() { cat "$CG/memory.peak" 2>/dev/null || echo 0; }
fi
SAMPLER=
lb_cleanup() {
    local rc=$? p i
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
    for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    for i in $(seq 50); do [ -z "$(cat "$CG/cgroup.procs" 2>/dev/null)" ] && break; sleep 0.1; done
    rmdir "$CG" 2>/dev/null || echo "# cleanup: could not remove the cgroup $CG"
    (exit $rc)
    qi_cleanup
}
trap lb_cleanup EXIT
limit=$(cat "$CG/memory.limit_in_bytes" "$CG/memory.max" 2>/dev/null)
if [ -z "$limit" ]; then      # v2 whose parent could not hand the controller down
    echo "ok $QI_SCRIPT/memory-cap # SKIP the memory controller is not enabled for $CG"
    finish
fi
if [ "$limit" != $((CAP_MIB << 20)) ]; then
    not_ok memory-cap "the cgroup's limit reads '$limit', not $((CAP_MIB << 20))"
    finish
fi
note "cgroup v$CG_V $CG capped at $CAP_MIB MiB; log $SIZE_MIB MiB, segment_bytes $SEGMENT, snapshot_bytes $SNAPSHOT (0: defaults)"

avail_kb=$(df -Pk "$T" | awk 'NR == 2 { print $4 }')
if [ "${avail_kb:-0}" -lt $((SIZE_MIB * 1024 * 4)) ]; then
    not_ok free-space "$T has ${avail_kb:-?} KiB free; the test needs $((SIZE_MIB * 4)) MiB"
    finish
fi

# ---- the text: syslog-like lines from tools/logbench when built, else a repeated pattern
SRC=$T/src.txt
LB=$(dirname "$QUORUMFS")/logbench
if [ -x "$LB" ]; then
    "$LB" gen "$SIZE" 7 >"$SRC"
else
    yes "$(date -u) host-1 app[4242]: request served in 12 ms for user 1234 path /api/v1/x" |
        head -c "$SIZE" >"$SRC"
fi
check source-written [ "$(stat -c %s "$SRC")" = "$SIZE" ]
SUM=$(md5sum <"$SRC")

# ---- the node, in the cgroup (this shell joins it for the start only: the daemon stays)
# in_cg_start NAME: start_node with this test's options from inside the cgroup.
in_cg_start() {
    local args=() rc
    [ "$SNAPSHOT" != 0 ] && args+=(--snapshot-bytes "$SNAPSHOT")
    echo $$ >"$CG/cgroup.procs"
    start_node "$1" "${args[@]}"
    rc=$?
    echo $$ >"$CG_PARENT/cgroup.procs"
    return $rc
}
# the peak anonymous bytes of the cgroup, sampled every 0.2 s into $T/anon.max
: >"$T/anon.max"
( m=0; while :; do a=$(anon); [ "${a:-0}" -gt "$m" ] && { m=$a; echo "$m" >"$T/anon.max"; }; sleep 0.2; done ) &
SAMPLER=$!
hwm() { awk '/VmHWM/ { print $2 }' /proc/"$1"/status 2>/dev/null; }
mib() { awk -v b="${1:-0}" 'BEGIN { printf "%.1f", b / 1048576 }'; }

DATA_DIR=$T/n1/data in_cg_start n1 || { not_ok start "the node did not mount in the cgroup"; finish; }
check daemon-in-cgroup grep -qx "$NPID" "$CG/cgroup.procs"
L=$MNT/logs/big
touch "$L" && ok create || not_ok create
if [ "$SEGMENT" != 0 ]; then
    setfattr -n user.segment_bytes -v "$SEGMENT" "$L" && ok set-segment-bytes || not_ok set-segment-bytes
fi

t0=$(now_ms)
timeout -k 5 $((SIZE_MIB + 120)) dd if="$SRC" of="$L" bs=128K iflag=fullblock oflag=append \
    conv=notrunc status=none
check append-all [ $? = 0 ]
t1=$(now_ms)
note "appended $SIZE_MIB MiB in $(( (t1 - t0) / 1000 )).$(( (t1 - t0) % 1000 / 100 )) s"
check daemon-alive-after-append pid_alive "$NPID"
check size-after-append [ "$(stat -c %s "$L")" = "$SIZE" ]
check read-back-equal [ "$(timeout -k 5 $((SIZE_MIB + 120)) md5sum <"$L")" = "$SUM" ]
sealed=$(find "$T/n1/data/logs" -name '*.lz4' | wc -l)
snaps=$(find "$T/n1/data" -name 'snap-*.snap' | wc -l)
checke sealed-and-snapshotted '[ "$sealed" -gt 0 ] && [ "$snaps" -gt 0 ]' ||
    note "sealed files $sealed, snapshot files $snaps"
HWM1=$(hwm "$NPID")
check no-oom-while-appending-and-reading [ "$(ooms)" = 0 ]

# ---- kill -9 and restart in the cgroup: snapshot restore + WAL replay rebuild the files
crash_node "$MNT" "$NPID"
t0=$(now_ms)
DATA_DIR=$T/n1/data in_cg_start n1 || { not_ok restart "the node did not mount again in the cgroup"; finish; }
t1=$(now_ms)
note "restart (restore + replay) took $(( (t1 - t0) / 1000 )).$(( (t1 - t0) % 1000 / 100 )) s"
check daemon-in-cgroup-after-restart grep -qx "$NPID" "$CG/cgroup.procs"
check size-after-restart [ "$(stat -c %s "$L")" = "$SIZE" ]
check read-after-restart-equal [ "$(timeout -k 5 $((SIZE_MIB + 120)) md5sum <"$L")" = "$SUM" ]
check daemon-alive-after-restart pid_alive "$NPID"
HWM2=$(hwm "$NPID")
check no-oom-at-restart [ "$(ooms)" = 0 ]
sleep 0.3
note "cap $CAP_MIB MiB: peak anon of the cgroup $(mib "$(cat "$T/anon.max")") MiB (sampled);" \
     "daemon VmHWM $(mib $(( ${HWM1:-0} * 1024 ))) MiB before, $(mib $(( ${HWM2:-0} * 1024 ))) MiB" \
     "after the restart; cgroup peak usage with page cache $(mib "$(peak_usage)") MiB;" \
     "$sealed sealed segments"
stop_node "$MNT" "$NPID" || note "unmount failed"
finish
