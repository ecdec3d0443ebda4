#!/bin/bash
# tests/integration/powercut.sh — durability across a simulated power cut. kill -9 keeps the
# page cache, so it cannot tell a missing fdatasync; here the daemon runs under an
# LD_PRELOAD shim (tests/powercut/shim.c, built as $(BUILD)/powercut_shim.so) that keeps the
# image a power cut would leave: only file bytes covered by a completed fsync/fdatasync and
# only directory entries covered by an fsync of their directory. Four writers set cache
# keys, config files (noting each revision), a rewritten key and queue pushes, logging each
# one only after its call returned success; the daemon is killed mid-stream (round 1: while
# a sync is held, so a written batch is certainly unsynced; round 2: just after a WAL
# segment roll, once the new segment's first batch was acknowledged; round 3: at a random
# moment; round 4, on a fresh node with larger snapshots: just after the first WAL
# compaction, when the log before the first snapshot is gone), the data directory is
# replaced by the shim's image (tests/powercut/image.py), and after the restart every
# acknowledged write must be there (tests/powercut/check.py), popped messages must stay
# gone, and earlier rounds must survive later cuts. Small snapshot and segment sizes
# (--snapshot-bytes 16384: a snapshot every 16 KiB of log, 64 KiB segments) put snapshots,
# segment rolls and compaction in the path. About 10 s.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_queues.sh"

# POWERCUT_KEEP=DIR: at exit, copy the killed data directories, images, shadows and logs there.
if [ -n "${POWERCUT_KEEP:-}" ]; then
    keep_evidence() {
        mkdir -p "$POWERCUT_KEEP" && cp -a "$T"/killed.* "$T"/image.* "$T"/shadow.* "$T"/ack.* \
            "$T"/popped.* "$POWERCUT_KEEP"/ 2>/dev/null
        note "evidence kept in $POWERCUT_KEEP"
    }
    trap 'qi_rc=$?; keep_evidence; (exit $qi_rc); qi_cleanup' EXIT
fi
SHIM=${POWERCUT_SHIM:-$(dirname "$QUORUMFS")/powercut_shim.so}
PC=$QI_ROOT/tests/powercut
if [ ! -r "$SHIM" ]; then
    not_ok shim-built "$SHIM not found (make all builds it; or set POWERCUT_SHIM)"
    finish
fi
if ldd "$QUORUMFS" 2>/dev/null | grep -q 'libasan\|libtsan'; then
    # A sanitizer runtime must be loaded first; the shim cannot be preloaded before it.
    echo "ok $QI_SCRIPT/sanitizer-build # skip: $QUORUMFS links a sanitizer runtime"
    exit 0
fi
D=$T/n1/data
SH=$T/shadow
mkdir -p "$D" "$SH"
export DATA_DIR=$D
OPTS="--snapshot-bytes 16384"

NODE=n1
# start_shim: starts $NODE under the shim, whose image starts as a copy of $D ($SH is empty).
start_shim() {
    LD_PRELOAD=$SHIM QFS_POWERCUT_DIR=$D QFS_POWERCUT_SHADOW=$SH start_node $NODE $OPTS
}

# put VALUE FILE: a save of VALUE to FILE acknowledged only if it was published: cat checks
# its close() (a save is published at the close that ends it, FILE-API §1), which bash's
# built-in echo does not (bash ignores the close() of a redirection).
put() { printf '%s\n' "$1" | cat >"$2"; }

# writer ROUND W N: N rounds of (cache key, config file + its revision, queue push, rewrite of
# one key); each logged to $T/ack.ROUND.W once its call returned 0. Stops at the first error.
writer() {
    local r=$1 w=$2 n=$3 i v rev log=$T/ack.$1.$2
    local pad
    pad=$(head -c 450 /dev/urandom | base64 -w0)
    for i in $(seq 1 "$n"); do
        v="r$r-w$w-i$i-${pad:$((i % 40)):500}"
        put "$v" "$MNT/cache/pc/r$r-w$w-$i" 2>/dev/null || break
        echo "cache cache/pc/r$r-w$w-$i $v" >>"$log"
        put "$v" "$MNT/config/pc/r$r/w$w-$i" 2>/dev/null || break
        rev=$(getfattr --only-values -n user.version "$MNT/config/pc/r$r/w$w-$i" 2>/dev/null) || rev=-
        echo "config config/pc/r$r/w$w-$i $v ${rev:--}" >>"$log"
        { echo "$v" >"$MNT/queues/pc/push"; } 2>/dev/null || break
        echo "queue queues/pc $v" >>"$log"
        put "$i" "$MNT/cache/pc/seq-r$r-w$w" 2>/dev/null || break
        echo "seq cache/pc/seq-r$r-w$w $i" >>"$log"
    done
}

acks() { cat "$T"/ack.$1.* 2>/dev/null | wc -l; }

# run_round ROUND HOW: runs 4 writers and kills the daemon with kill -9: HOW=now once they
# have 300 acknowledged writes; HOW=held then, after making the shim hold the next sync (so
# a written batch is unsynced at the kill); HOW=roll once they have 20, when the shim holds
# a sync just after the next WAL segment roll; HOW=compact, likewise after the next removal
# of a WAL segment. Then waits for the writers to stop.
run_round() {
    local r=$1 how=$2 wp="" w
    for w in 0 1 2 3; do writer "$r" $w 250 & wp="$wp $!"; done
    if [ "$how" = roll ] || [ "$how" = compact ]; then
        wait_for 60 eval '[ "$(acks '"$r"')" -ge 20 ]'
        echo $how >"$SH/hold.tmp" && mv "$SH/hold.tmp" "$SH/hold-syncs"   # never seen empty
        wait_for 60 test -e "$SH/holding" && ok "sync-held-after-$how-$r" ||
            not_ok "sync-held-after-$how-$r" "no segment $how in 60 s ($(acks "$r") acknowledged writes)"
        sleep 0.3   # the writers log the acknowledgements that came before the hold
    else
        wait_for 60 eval '[ "$(acks '"$r"')" -ge 300 ]' || note "round $r: only $(acks "$r") acknowledged writes after 60 s"
    fi
    if [ "$how" = held ]; then
        touch "$SH/hold-syncs"
        wait_for 10 test -e "$SH/holding" && ok "sync-held-at-cut-$r" || not_ok "sync-held-at-cut-$r" "the shim never held a sync"
    fi
    crash_node "$MNT" "$NPID" || note "round $r: the daemon or its mount did not go away"
    wait_pids 20 $wp || { note "round $r: writers still running 20 s after the kill"; kill_pids $wp; }
    note "round $r: $(acks "$r") acknowledged writes; $(grep -c '^F' "$SH/journal") file and $(grep -c '^D' "$SH/journal") directory syncs captured"
}

# sizes DIR: "<files> <bytes>" of the log and snapshot files below DIR (not LOCK: its pid
# is never synced).
sizes() { find "$1/wal" "$1/snap" -type f -printf '%s\n' | awk '{ n++; s += $1 } END { print n + 0, s + 0 }'; }

# power_cut ROUND: replaces the data directory by the shim's image; the killed one, the
# image and the shadow are kept as $T/killed.ROUND, image.ROUND, shadow.ROUND. A fresh
# shadow follows.
power_cut() {
    local r=$1 out
    rm -rf "$T/img"
    if ! out=$($PY "$PC/image.py" "$SH" "$T/img" 2>&1); then
        not_ok "image-$r" "$out"
        return 1
    fi
    note "round $r: image of $out; log and snapshot files and bytes: $(sizes "$T/img") in the image, $(sizes "$D") in the killed directory"
    mv "$D" "$T/killed.$r" && cp -a "$T/img" "$T/image.$r" && mv "$T/img" "$D"
    mv "$SH" "$T/shadow.$r" && mkdir "$SH"
}

# checks TAG ARGS...: runs check.py, one case per line.
checks() {
    local st name detail
    while read -r st name detail; do
        if [ "$st" = PASS ]; then ok "$name"; note "$name: $detail"; else not_ok "$name" "$detail"; fi
    done < <(timeout -k 2 60 $PY "$PC/check.py" "$@" 2>&1 || echo "FAIL $1-check.py exit $?")
}

# ---- round 1: a fresh node under the shim; kill -9 while a sync is held
must_start_shim() {
    if ! start_shim; then not_ok "start-$1" "could not mount under the shim"; finish; fi
}
must_start_shim 1
mkdir -p "$MNT/cache/pc" "$MNT/config/pc/r1" "$MNT/config/pc/r2" "$MNT/config/pc/r3" && mkdir "$MNT/queues/pc" ||
    not_ok setup "mkdir failed"
run_round 1 held
checke shim-captured-syncs '[ "$(grep -c "^F" "$SH/journal" 2>/dev/null)" -gt 10 ]'
power_cut 1 || finish
# (compares contents, not sizes: the WAL's synced zero tail keeps the size of a segment
# whose last batch was cut)
digest() { find "$1/wal" "$1/snap" -type f | sort | xargs cat | md5sum; }
checke cut-1-dropped-unsynced '[ "$(digest "$T/killed.1")" != "$(digest "$D")" ]' ||
    note "the image equals the killed directory: nothing unsynced was cut"
if start_shim; then ok restart-after-cut-1; else not_ok restart-after-cut-1 "$(cat "$T/mount.log")"; finish; fi
checks cut1 "$MNT" "$T"/ack.1.* --drain "$T/popped.1"

# ---- round 2: more writes on the recovered node, kill -9 just after a segment roll
run_round 2 roll
power_cut 2 || finish
if start_shim; then ok restart-after-cut-2; else not_ok restart-after-cut-2 "$(cat "$T/mount.log")"; finish; fi
checks cut2-round1 "$MNT" "$T"/ack.1.*
checks cut2 "$MNT" "$T"/ack.2.* --drain "$T/popped.2" --popped "$T/popped.1"

# ---- round 3: kill -9 at a random moment; then everything of the three rounds
run_round 3 now
power_cut 3 || finish
if start_node n1 $OPTS; then ok restart-after-cut-3; else not_ok restart-after-cut-3 "$(cat "$T/mount.log")"; finish; fi
checks cut3-round1 "$MNT" "$T"/ack.1.*
checks cut3-round2 "$MNT" "$T"/ack.2.*
cat "$T/popped.1" "$T/popped.2" >"$T/popped.12"
checks cut3 "$MNT" "$T"/ack.3.* --drain "$T/popped.3" --popped "$T/popped.12"
check daemon-alive pid_alive "$NPID"
stop_node "$MNT" "$NPID" && ok clean-unmount || not_ok clean-unmount

# ---- round 4: a fresh node whose first snapshot comes after several segments (256 KiB);
# kill -9 just after the compaction that follows it
NODE=n2
D=$T/n2/data
SH=$T/shadow
rm -rf "$SH" && mkdir -p "$D" "$SH"
export DATA_DIR=$D
OPTS="--snapshot-bytes 262144"
must_start_shim 4
mkdir -p "$MNT/cache/pc" "$MNT/config/pc/r4" && mkdir "$MNT/queues/pc" || not_ok setup-4 "mkdir failed"
run_round 4 compact
power_cut 4 || finish
if start_node n2 $OPTS; then ok restart-after-cut-4; else not_ok restart-after-cut-4 "$(cat "$T/mount.log")"; finish; fi
checks cut4 "$MNT" "$T"/ack.4.* --drain "$T/popped.4"
check daemon-alive-4 pid_alive "$NPID"
stop_node "$MNT" "$NPID" && ok clean-unmount-2 || not_ok clean-unmount-2
finish
