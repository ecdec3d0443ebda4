#!/bin/bash
# tests/integration/cache.sh — FILE-API §4 (cache/) plus the §1 rules that matter most for
# it: set/get/delete, subdirectories, atomic replace under a concurrent reader, EFBIG with
# the old value kept, TTLs (per key, directory default, sliding) expiring on time, the LRU
# memory cap, no stale data or entries from the kernel's caches, and one version per open.
. "$(dirname "$0")/lib.sh"

must_start n1
Q=$MNT
K=$Q/cache

# ---- set / get / delete, subdirectories
echo v1 >"$K/k" && ok set || not_ok set
check get [ "$(cat "$K/k" 2>&1)" = v1 ]
echo v2 >"$K/k"
check overwrite [ "$(cat "$K/k" 2>&1)" = v2 ]
rm -f "$K/k"
expect_errno delete-ENOENT ENOENT read "$K/k"
mkdir -p "$K/sessions/eu" && ok mkdir-subdirs || not_ok mkdir-subdirs
echo s1 >"$K/sessions/abc" && echo s2 >"$K/sessions/eu/def" && ok set-in-subdirs || not_ok set-in-subdirs
check get-in-subdirs [ "$(cat "$K/sessions/abc" "$K/sessions/eu/def" 2>&1 | tr '\n' ' ')" = "s1 s2 " ]
check ls-subdir [ "$(ls "$K/sessions" | tr '\n' ' ')" = "abc eu " ]
rm -r "$K/sessions" && ok rm-r-subdir || not_ok rm-r-subdir
check rm-r-gone [ ! -e "$K/sessions" ]
for i in $(seq 1 50); do echo "val$i" >"$K/many$i" || break; done
checke fifty-keys '[ "$(ls "$K" | grep -c "^many")" = 50 ] && [ "$(cat "$K/many37")" = val37 ]'
# O_APPEND writes through different opens never undo each other: each is published at its
# write() at the value's end (two descriptors interleave). Other writes are a save of the
# whole value, published at close (FILE-API §1): of two saves the later publish wins whole,
# so a pwrite through an open that started its save before another process rewrote the
# file publishes that open's whole value.
r=$(python3 - "$K/shared" <<'PY'
import os, sys, subprocess
p = sys.argv[1]
a = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
b = os.open(p, os.O_WRONLY | os.O_APPEND)
os.write(a, b"A1\n"); os.write(b, b"B1\n"); os.write(a, b"A2\n")
os.close(a); os.close(b)
first = open(p).read()
c = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.write(c, b"hello world")
subprocess.run(["sh", "-c", "echo NEW > " + p], check=True)
os.pwrite(c, b"!", 0)
os.close(c)
print(repr(first), repr(open(p).read()))
PY
)
check appends-interleave-and-later-save-wins [ "$r" = "'A1\nB1\nA2\n' '!ello world'" ] || note "got $r"

# Far below the memory cap and without sliding TTLs, reads add nothing to the log.
appends() { grep '^quorumfs_wal_appends_total' "$Q/.cluster/metrics" | cut -d' ' -f2; }
a1=$(appends)
for i in $(seq 1 50); do cat "$K/many$i" >/dev/null; done
sleep 0.4   # longer than the 100 ms read-batching period
a2=$(appends)
checke reads-add-no-log-records '[ -n "$a1" ] && [ "$a1" = "$a2" ]' || note "appends $a1 -> $a2"

# ---- atomic replace: a reader never sees anything but one of two 64 KiB values
$PY -c 'import sys; sys.stdout.buffer.write(b"A" * 65536)' >"$T/va"
$PY -c 'import sys; sys.stdout.buffer.write(bytes((i * 7 + 1) % 251 for i in range(65536)))' >"$T/vb"
$FSOP write "$K/atomic" "file:$T/va" >/dev/null
$FSOP atomic-writer "$K/atomic" 4 "$T/va" "$T/vb" >"$T/aw.out" 2>&1 &
wpid=$!
r=$(timeout 30 $FSOP atomic-reader "$K/atomic" 4 "$T/va" "$T/vb" 2>&1)
wait "$wpid"
w=$(cat "$T/aw.out")
note "atomic replace: writer $w; reader $r"
checke atomic-writer-ok '[ "${w%% *}" = OK ] && [ "${w#OK }" -gt 10 ]'
checke atomic-reads-whole '[ "${r%% *}" = OK ]' || note "$r"
checke atomic-reads-saw-both 'case $r in *" a=0 "*|*" b=0") false ;; *) true ;; esac'

# ---- size limit: 1 MiB ok, 1 MiB + 1 gives EFBIG and keeps the old value
expect_errno value-1MiB-ok OK write "$K/big" pat:1048576:one
$PY -c 'import sys, importlib.util as u
s = u.spec_from_file_location("f", sys.argv[1]); m = u.module_from_spec(s); s.loader.exec_module(m)
sys.stdout.buffer.write(m.pattern(1048576, "one"))' "$QI_DIR/fsop.py" >"$T/one"
check value-1MiB-readback cmp -s "$T/one" "$K/big"
expect_errno value-over-1MiB-EFBIG EFBIG write "$K/big" pat:1048577:two
check value-over-1MiB-old-kept cmp -s "$T/one" "$K/big"
echo small >"$K/small"
expect_errno value-2MiB-EFBIG EFBIG write "$K/small" rep:2097152:z
check value-2MiB-old-kept [ "$(cat "$K/small" 2>&1)" = small ]
# ... and readers never see a torn value: only the old value or, while the failing write()
# is in flight, its first kernel request (a complete value of at most 1 MiB that the
# daemon cannot tell from a whole write; see docs/FILE-INTERFACE.md, "Limits").
cp "$T/va" "$K/keep"
( for i in $(seq 1 15); do $FSOP write "$K/keep" pat:1100000:w$i; done >"$T/efbig.out" 2>&1 ) &
lp=$!
r=$(timeout 30 $FSOP atomic-reader "$K/keep" 3 "$T/va" "$T/va" 2>&1)
wait $lp
checke value-over-1MiB-all-EFBIG '[ "$(grep -c "^EFBIG$" "$T/efbig.out")" = 15 ]' || note "$(sort "$T/efbig.out" | uniq -c | tr '\n' ' ')"
note "reader during failed writes: $r"
check value-over-1MiB-old-kept-after-race cmp -s "$T/va" "$K/keep"
expect_errno value-over-1MiB-new-key-EFBIG EFBIG write "$K/newbig" pat:1100000:three
checke value-over-1MiB-new-key-no-partial '[ ! -e "$K/newbig" ] || [ "$(stat -c %s "$K/newbig")" = 0 ]'

# ---- TTL on a key
# How late expiry may be: docs/FILE-INTERFACE.md says it is exact for readers (at the expiry
# instant the key disappears for cat, stat and ls, before the sweeper, which runs every
# 100 ms, commits the EXPIRE). A TTL set by a call made between t0 and t1 starts at the
# command's time, so the key exists before t0 + TTL and is gone at t1 + TTL. A look that
# started TTL_SLACK (250 ms, for clock and rounding) after that and still saw the key fails
# the case; a slow machine only makes the looks later, never wrong.
TTL_SLACK=250
gone() { [ ! -e "$1" ] && ! ls "$(dirname "$1")" | grep -qx "$(basename "$1")"; }
# gone_by DEADLINE_MS PATH: looks every 50 ms until PATH is gone for stat and ls; 1 when a
# look that started at or after DEADLINE_MS still saw it. GONE_AT is when the last look began.
gone_by() {
    while :; do
        GONE_AT=$(now_ms)
        gone "$2" && return 0
        [ "$GONE_AT" -ge "$1" ] && return 1
        sleep 0.05
    done
}
# present_before NAME PATH DEADLINE_MS: ok when PATH exists and the look ended before
# DEADLINE_MS (the expiry instant at the earliest); no case when the machine was too slow
# to look in time.
present_before() {
    local r=1
    stat "$2" >/dev/null 2>&1 && r=0
    if [ "$(now_ms)" -ge "$3" ]; then note "$1 not checked: the look ended after the expiry instant"; return 0; fi
    if [ $r = 0 ]; then ok "$1"; else not_ok "$1" "$2 gone before its TTL ended"; fi
}
echo t >"$K/ttlkey"
t0=$(now_ms)
setfattr -n user.ttl -v 2 "$K/ttlkey" && ok ttl-set || not_ok ttl-set
t1=$(now_ms)
check ttl-present-before-expiry [ "$(cat "$K/ttlkey" 2>&1)" = t ]
sleep_until $((t0 + 1600))
present_before ttl-present-until-expiry "$K/ttlkey" $((t0 + 2000))
if gone_by $((t1 + 2000 + TTL_SLACK)) "$K/ttlkey"; then
    ok ttl-expires
    note "ttl: gone $((GONE_AT - t1)) ms after the setfattr of a 2 s TTL returned"
    expect_errno ttl-expired-cat-ENOENT ENOENT read "$K/ttlkey"
    expect_errno ttl-expired-stat-ENOENT ENOENT stat "$K/ttlkey"
    check ttl-expired-not-listed sh -c "! ls '$K' | grep -qx ttlkey"
else
    not_ok ttl-expires "key with user.ttl=2 still present $((GONE_AT - t1)) ms after the setfattr returned"
    wait_for 10 gone "$K/ttlkey"
fi

# ---- the kernel caches no entry or attributes of a key: a key stat'ed 0.3 s before its
# expiry is gone 0.3 s after it, and `echo > key` then creates it anew. With entry and
# attribute timeouts of 0.6 s or more, `test -e` would be answered from the kernel's cache;
# with an entry timeout alone, the open of `echo` would go to the expired object (ENOENT).
echo kc >"$K/kcache"
t0=$(now_ms)
setfattr -n user.ttl -v 2 "$K/kcache"
t1=$(now_ms)
sleep_until $((t0 + 1700))
present_before kcache-stat-before-expiry "$K/kcache" $((t0 + 2000))
sleep_until $((t1 + 2300))
check kernel-caches-no-expired-entry [ ! -e "$K/kcache" ]
echo kc >"$K/kre"
t0=$(now_ms)
setfattr -n user.ttl -v 2 "$K/kre"
t1=$(now_ms)
sleep_until $((t0 + 1700))
present_before kre-stat-before-expiry "$K/kre" $((t0 + 2000))
sleep_until $((t1 + 2300))
r=$( { echo new >"$K/kre"; } 2>&1 )
checke expired-key-recreated-by-echo '[ -z "$r" ] && [ "$(cat "$K/kre" 2>&1)" = new ]' || note "echo: $r; cat: $(cat "$K/kre" 2>&1)"

# ---- directory default TTL applies to new keys
mkdir "$K/short"
setfattr -n user.ttl -v 2 "$K/short" && ok dir-ttl-set || not_ok dir-ttl-set
t0=$(now_ms)
echo a >"$K/short/a"
t1=$(now_ms)
check dir-ttl-key-present [ "$(cat "$K/short/a" 2>&1)" = a ]
echo keep >"$K/nottl"
sleep_until $((t0 + 1600))
present_before dir-ttl-present-until-expiry "$K/short/a" $((t0 + 2000))
if gone_by $((t1 + 2000 + TTL_SLACK)) "$K/short/a"; then ok dir-ttl-expires
else not_ok dir-ttl-expires "still there $((GONE_AT - t1)) ms after its creation under a 2 s directory TTL"; wait_for 10 gone "$K/short/a"; fi
check dir-ttl-dir-itself-stays [ -d "$K/short" ]
check no-ttl-key-stays [ "$(cat "$K/nottl" 2>&1)" = keep ]

# ---- sliding TTL: reads keep a key alive, it expires once reads stop
mkdir "$K/sess"
setfattr -n user.ttl -v 3 "$K/sess" && setfattr -n user.ttl_sliding -v 1 "$K/sess" && ok sliding-set || not_ok sliding-set
echo user42 >"$K/sess/tok"
alive=1
for i in $(seq 1 16); do          # 8 s of reads every 0.5 s: well past the 3 s TTL
    tl=$(now_ms)
    [ "$(cat "$K/sess/tok" 2>/dev/null)" = user42 ] || { alive=0; break; }
    tr=$(now_ms)
    sleep 0.5
done
check sliding-alive-while-read [ $alive = 1 ] || note "expired after $((i / 2)) s of reads every 0.5 s"
# The last read (started at tl, returned at tr) restarted the TTL when its TOUCH committed,
# within about 100 ms of the read (docs/FILE-INTERFACE.md): present until tl + 3 s, gone
# at tr + 3.1 s.
sleep_until $((tl + 2600))
present_before sliding-present-until-expiry "$K/sess/tok" $((tl + 3000))
if gone_by $((tr + 3100 + TTL_SLACK)) "$K/sess/tok"; then ok sliding-expires-when-idle
else not_ok sliding-expires-when-idle "still there $((GONE_AT - tr)) ms after the last read"; wait_for 10 gone "$K/sess/tok"; fi

# ---- staleness: the kernel never serves an old value or size
echo short >"$K/stale"
exec 3<"$K/stale"
cat "$K/stale" >/dev/null
sh -c "echo 'a much longer second value' > '$K/stale'"
check stale-cat-sees-new [ "$(cat "$K/stale" 2>&1)" = "a much longer second value" ]
check stale-open-sees-new [ "$(fsop read "$K/stale" "$T/stale.out"; cat "$T/stale.out")" = "OK 27
a much longer second value" ]
check stale-stat-size [ "$(stat -c %s "$K/stale")" = 27 ]
sh -c "echo v3 > '$K/stale'"
check stale-shrink-cat [ "$(cat "$K/stale" 2>&1)" = v3 ]
check stale-shrink-stat [ "$(stat -c %s "$K/stale")" = 3 ]
exec 3<&-
# A key that expires while its attributes may be cached must not keep showing its old size.
echo abc >"$K/stale2"; stat "$K/stale2" >/dev/null
setfattr -n user.ttl -v 1 "$K/stale2"
sleep 3
expect_errno expired-not-served-from-kernel-cache ENOENT stat "$K/stale2"

# ---- one version per open: a 512 KiB value read in two halves around a rewrite
$PY -c 'import sys; sys.stdout.buffer.write(b"".join(b"old-%07d\n" % i for i in range(52429))[:524288])' >"$T/old512"
$PY -c 'import sys; sys.stdout.buffer.write(b"".join(b"NEW-%07d\n" % i for i in range(52429))[:524288])' >"$T/new512"
cp "$T/old512" "$K/v512.tmp" && mv "$K/v512.tmp" "$K/v512"
check v512-stored cmp -s "$T/old512" "$K/v512"
r=$(fsop half-read "$K/v512" "$T/old512" "$T/new512")
checke one-version-per-open-rewrite '[ "${r%% *}" = OK ]' || note "$r"
cp "$T/old512" "$K/v512"
r=$(fsop half-read "$K/v512" "$T/old512" "$T/new512" "$K/v512.tmp")
checke one-version-per-open-rename '[ "${r%% *}" = OK ]' || note "$r"

# ---- LRU cap: a node with --cache-max-bytes 100000
stop_node "$Q" "$NPID" || not_ok stop-n1
if start_node lru --cache-max-bytes 100000; then
    L=$MNT/cache
    err=0
    for i in $(seq 0 29); do     # 30 keys of 10000 bytes = 300000 bytes, 3x the cap
        $FSOP write "$L/k$i" "pat:10000:k$i" | grep -qx OK || { err=1; note "write k$i failed"; }
        cat "$L/k0" "$L/k1" >/dev/null 2>&1   # keep k0 and k1 recently used
    done
    check lru-writes-succeed [ $err = 0 ]
    check lru-recent-k0-kept [ "$(stat -c %s "$L/k0" 2>/dev/null)" = 10000 ]
    check lru-recent-k1-kept [ "$(stat -c %s "$L/k1" 2>/dev/null)" = 10000 ]
    check lru-newest-kept [ "$(stat -c %s "$L/k29" 2>/dev/null)" = 10000 ]
    checke lru-old-unread-evicted '[ ! -e "$L/k2" ] && [ ! -e "$L/k3" ] && [ ! -e "$L/k4" ]'
    total=$(find "$L" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
    nkeys=$(ls "$L" | wc -l)
    note "LRU: $nkeys keys, $total value bytes present (cap 100000)"
    check lru-under-cap [ "$total" -le 100000 ]
    check lru-not-emptied [ "$total" -ge 50000 ]
    expect_errno lru-evicted-ENOENT ENOENT read "$L/k2"
    # Evicted keys stay evicted after a restart (eviction is part of the replicated state).
    pid=$NPID
    if stop_node "$MNT" "$pid" && DATA_DIR=$DATA start_node lru --cache-max-bytes 100000; then
        t2=$(find "$MNT/cache" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
        checke lru-same-after-restart '[ "$t2" = "$total" ] && [ -e "$MNT/cache/k0" ] && [ ! -e "$MNT/cache/k2" ]' || note "after restart $t2 bytes"
        # ... also when the node comes back with a larger cap: the cap is replicated state,
        # so replaying the log evicts exactly as before.
        pid=$NPID
        if stop_node "$MNT" "$pid" && DATA_DIR=$DATA start_node lru; then
            t3=$(find "$MNT/cache" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
            checke lru-same-after-restart-with-larger-cap '[ "$t3" = "$total" ] && [ ! -e "$MNT/cache/k2" ]' || note "after restart with the default cap: $t3 bytes"
        else
            not_ok lru-restart-larger-cap
        fi
    else
        not_ok lru-restart
    fi
else
    not_ok lru-start "could not start a node with --cache-max-bytes 100000"
fi

check daemon-alive pid_alive "$NPID"
finish
