#!/bin/bash
# tests/integration/saves.sh — FILE-API §1 "Saves" and "Atomic replace" on a real mount
# (issue 8): the writes through one open file description are one save, published once (one
# commit, one config revision, one .events line) at the close() that ends the writing or at
# fsync(); readers and watchers never see an empty, truncated or half-written value; O_APPEND
# writes are published at their write(); a failed save (EFBIG) publishes nothing, leaves no
# file it created and never rolls back other descriptors' writes; in config/ a rename over a
# target is one new revision of the target, which keeps its history.
# Regression cases 1-4 (see the "----" headers) failed on the daemon of commit 3e9702d.
. "$(dirname "$0")/lib.sh"

SOPS="$PY $QI_DIR/saves_ops.py"
sops() { timeout -k 2 "${SOPS_TIMEOUT:-60}" $SOPS "$@" 2>&1; }
# tsh SECONDS 'SCRIPT' ARGS...: SCRIPT in a bounded bash, ARGS as $1...
tsh() { local s=$1 c=$2; shift 2; timeout -k 2 "$s" bash -c "$c" _ "$@"; }

must_start n1
Q=$MNT
C=$Q/cache
SD=$Q/config/s
mkdir -p "$SD" "$C/s" || { not_ok setup "mkdir failed"; finish; }

ver() { timeout 10 getfattr --only-values -n user.version "$1" 2>/dev/null; }
isnum() { case $1 in ''|*[!0-9]*) return 1 ;; esac; }
# has_open PID NAME: PID or one of its children (timeout's child) has NAME open.
has_open() {
    local p
    for p in $1 $(pgrep -P "$1" 2>/dev/null); do
        ls -l /proc/"$p"/fd 2>/dev/null | grep -q -- "$2" && return 0
    done
    return 1
}

# ---------------------------------------------------------------- the .events watcher
# One reader of config/s/.events for the whole script. A window of events is taken between
# two marker writes (config/s/zmark): once the marker's own line has arrived, every change
# before it has too (lines come in revision order), so counts are exact without sleeping.
timeout -k 2 600 cat "$SD/.events" >"$T/ev" 2>"$T/ev.err" &
EVP=$!
wait_for 10 has_open $EVP .events || note "the .events reader did not open within 10 s"
sleep 0.2
EV_MARK=0
ev_sync() {
    EV_MARK=$((EV_MARK + 1))
    echo "mark $EV_MARK" >"$SD/zmark" || return 1
    local r; r=$(ver "$SD/zmark")
    isnum "$r" || { note "user.version of zmark: '$r'"; return 1; }
    wait_for 15 awk -v r="$r" '$1 == r && $2 == "put" && $3 ~ /(^|\/)s\/zmark$/ { f = 1 } END { exit !f }' "$T/ev"
}
# ev_begin / ev_end: the events between them land in $T/ev.cur (markers left out).
ev_begin() {
    ev_sync || note "ev_begin: the marker's event did not arrive (reader: $(head -c 200 "$T/ev.err"))"
    EV_FROM=$(wc -l <"$T/ev")
}
ev_end() {
    EV_OK=1
    ev_sync || { EV_OK=0; note "ev_end: the marker's event did not arrive within 15 s"; }
    tail -n +$((EV_FROM + 1)) "$T/ev" | awk '$3 !~ /(^|\/)s\/zmark$/' >"$T/ev.cur"
}
# evn OP NAME: number of OP lines (put/delete, or any) for config/s/NAME in the window.
evn() {
    awk -v op="$1" -v n="s/$2" '(op == "any" || $2 == op) &&
        ($3 == "config/" n || substr($3, length($3) - length(n)) == "/" n) { c++ } END { print c + 0 }' "$T/ev.cur"
}
# evrevs OP NAME: the revisions of those lines.
evrevs() {
    awk -v op="$1" -v n="s/$2" '$2 == op &&
        ($3 == "config/" n || substr($3, length($3) - length(n)) == "/" n) { print $1 }' "$T/ev.cur"
}
evall() { wc -l <"$T/ev.cur"; }
evshow() { head -n 8 "$T/ev.cur" | tr '\n' '|'; }

# ================================================================ 1. ": >" then an append
# through another descriptor (3e9702d deferred the truncation of an O_TRUNC open with nothing
# written to the close after which the process held no other descriptor on the file: the
# shell's fd 6 kept it pending, so it landed after "more" and wiped it).
lost=$(tsh 240 'lost=0
    for t in $(seq 300); do
        echo content >"$1"; exec 6>>"$1"; : >"$1"; echo more >&6; exec 6>&-
        [ "$(cat "$1")" = more ] || lost=$((lost + 1))
    done; echo $lost' "$C/tr9")
checke truncate-then-append-keeps-append '[ "$lost" = 0 ]' || note "LOST in ${lost:-timeout} of 300 rounds (cache/tr9 now '$(timeout 5 cat "$C/tr9" | head -c 40)')"
lost=$(tsh 240 'lost=0
    for t in $(seq 30); do
        echo content >"$1"; exec 6>>"$1"; : >"$1"; echo more >&6; exec 6>&-
        [ "$(cat "$1")" = more ] || lost=$((lost + 1))
    done; echo $lost' "$SD/tr9")
checke truncate-then-append-keeps-append-config '[ "$lost" = 0 ]' || note "LOST in ${lost:-timeout} of 30 rounds"
got=$(tsh 20 'echo content >"$1"; exec 6>>"$1"; : >"$1"; r=$(cat "$1"); echo more >&6; exec 6>&-
    printf "%s|%s" "$r" "$(cat "$1")"' "$C/tr10")
checke truncate-read-right-after-is-empty '[ "$got" = "|more" ]' || note "read after ': >' | after the append: '$got' (want '|more')"
got=$(tsh 20 'echo content >"$1"; exec 6>>"$1"; : >"$1"; r=$(cat "$1"); exec 6>&-; printf "%s" "$r"' "$SD/tr10")
checke truncate-read-right-after-is-empty-config '[ -z "$got" ]' || note "read after ': >' gave '$got'"

# ================================================================ 2. a failed save (EFBIG)
# must not roll the file back over another process's committed write (3e9702d put back the
# value A's open had seen, "orig", undoing B's published save).
for ns in cache config; do
    [ $ns = cache ] && f=$C/eb || f=$SD/eb
    printf orig >"$f"
    r=$(sops efbig-rollback "$f")
    checke "efbig-keeps-other-writers-save-$ns" '[ "${r%% *}" = OK ]' || note "$r"
done

# ================================================================ 3. a failed save leaves no
# file behind, and an existing file keeps its old value whole (3e9702d committed each write:
# the first MiB was a value, then removed or put back, each a revision in config/).
printf 'keep-me whole\n' >"$T/keep"
for ns in cache config; do
    [ $ns = cache ] && d=$C || d=$SD
    rm -f "$d/d2"
    printf 'keep-me whole\n' >"$d/d3"
    printf 'keep-me whole\n' >"$d/d4"
    v0=$(ver "$d/d3")
    [ $ns = config ] && ev_begin
    timeout -k 2 60 dd if=/dev/zero bs=1M count=2 of="$d/d2" 2>"$T/dd.err"; rc=$?
    checke "failed-dd-exits-nonzero-$ns" '[ $rc -ne 0 ] && [ $rc -ne 124 ]' || note "dd exit $rc: $(tail -n1 "$T/dd.err")"
    checke "failed-dd-fails-with-EFBIG-$ns" 'grep -q "File too large" "$T/dd.err"' || note "dd said: $(tail -n2 "$T/dd.err" | tr '\n' ' ')"
    checke "failed-dd-new-file-not-left-$ns" '[ ! -e "$d/d2" ] && ! ls -a "$d" | grep -qx d2' || note "d2: $(stat -c '%s bytes' "$d/d2" 2>&1)"
    timeout -k 2 60 dd if=/dev/zero bs=1M count=2 of="$d/d3" 2>"$T/dd.err"; rc=$?
    checke "failed-dd-over-existing-exits-nonzero-$ns" '[ $rc -ne 0 ] && [ $rc -ne 124 ]'
    checke "failed-dd-over-existing-keeps-value-$ns" '[ "$(timeout 5 cat "$d/d3")" = "keep-me whole" ]' || note "d3 has $(stat -c %s "$d/d3") bytes"
    # 16 KiB writes, the one crossing 1 MiB fails; a reader meanwhile sees only the old value
    rm -f "$T/stop"
    timeout -k 2 120 $SOPS reader "$d/d4" "$T/stop" 100 "$T/keep" >"$T/rd.out" 2>&1 &
    rp=$!
    sleep 0.3
    timeout -k 2 60 dd if=/dev/zero bs=16k count=80 of="$d/d4" 2>"$T/dd.err"; rc=$?
    touch "$T/stop"; wait $rp
    checke "failed-dd-small-writes-exits-nonzero-$ns" '[ $rc -ne 0 ] && [ $rc -ne 124 ]'
    checke "failed-dd-small-writes-readers-see-old-only-$ns" 'grep -q "^OK" "$T/rd.out"' || note "$(cat "$T/rd.out")"
    checke "failed-dd-small-writes-keeps-value-$ns" '[ "$(timeout 5 cat "$d/d4")" = "keep-me whole" ]' || note "d4 has $(stat -c %s "$d/d4") bytes"
    if [ $ns = config ]; then
        ev_end
        v1=$(ver "$d/d3")
        checke failed-dd-config-no-revision '[ -n "$v0" ] && [ "$v0" = "$v1" ]' || note "user.version of d3: $v0 -> $v1"
        checke failed-dd-config-no-events '[ "$EV_OK" = 1 ] && [ "$(evall)" = 0 ]' || note "events: $(evshow)"
    fi
done

# ================================================================ 4. config: history across
# "mv tmp db", json.dump, sed -i and a vim-like save
echo v1 >"$SD/db"; r1=$(ver "$SD/db")
echo v2 >"$SD/db"; r2=$(ver "$SD/db")
echo new >"$SD/tmp"
ev_begin
timeout 20 mv "$SD/tmp" "$SD/db"; rc=$?
ev_end
r3=$(ver "$SD/db")
checke mv-over-db-ok '[ $rc = 0 ] && [ "$(timeout 5 cat "$SD/db")" = new ] && [ ! -e "$SD/tmp" ]'
checke mv-over-db-keeps-history-1 '[ "$(timeout 5 cat "$SD/db@$r1" 2>&1)" = v1 ]' || note "db@$r1: $(timeout 5 cat "$SD/db@$r1" 2>&1)"
checke mv-over-db-keeps-history-2 '[ "$(timeout 5 cat "$SD/db@$r2" 2>&1)" = v2 ]' || note "db@$r2: $(timeout 5 cat "$SD/db@$r2" 2>&1)"
checke mv-over-db-new-revision '[ "$r3" -gt "$r2" ] && [ "$(timeout 5 cat "$SD/db@$r3" 2>&1)" = new ]' 2>/dev/null || note "revs $r1 $r2 -> $r3"
# the rename: a delete of the temp name and one new revision (put) of the target, nothing else
checke mv-over-db-events '[ "$EV_OK" = 1 ] && [ "$(evn delete tmp)" = 1 ] && [ "$(evn put db)" = 1 ] && [ "$(evall)" = 2 ]' || note "events: $(evshow)"
checke mv-over-db-event-rev-is-version '[ "$(evrevs put db)" = "$r3" ]' || note "put db at $(evrevs put db), user.version $r3"

# json.dump of ~125 KB to an open file: one revision, one .events line (new and existing file)
echo old >"$SD/j2"
ev_begin
r=$(SOPS_TIMEOUT=120 sops jsondump "$SD/j1" 125000); r2j=$(SOPS_TIMEOUT=120 sops jsondump "$SD/j2" 125000)
ev_end
checke json-dump-writes '[ "${r%% *}" = OK ] && [ "${r2j%% *}" = OK ]' || note "$r / $r2j"
for n in j1 j2; do
    checke "json-dump-one-revision-$n" '[ "$EV_OK" = 1 ] && [ "$(evn any $n)" = 1 ] && [ "$(evn put $n)" = 1 ]' || note "$(evn any $n) events for $n: $(evshow)"
    checke "json-dump-version-is-event-$n" '[ "$(evrevs put $n)" = "$(ver "$SD/$n")" ]'
done
checke json-dump-events-total '[ "$(evall)" = 2 ]' || note "$(evall) events"

# sed -i: every revision of the target is a complete value (old or new), and the target
# keeps the history from before the rename
$SOPS gen "$T/sed.old" 125000 sed >/dev/null
sed 's/quick/slow/' "$T/sed.old" >"$T/sed.new"
cp "$T/sed.old" "$SD/sd"; rs0=$(ver "$SD/sd")
ev_begin
timeout -k 2 60 sed -i 's/quick/slow/' "$SD/sd"; rc=$?
ev_end
checke sed-i-config-ok '[ $rc = 0 ] && timeout 5 cmp -s "$SD/sd" "$T/sed.new"'
checke sed-i-target-one-revision '[ "$EV_OK" = 1 ] && [ "$(evn put sd)" = 1 ] && [ "$(evn delete sd)" = 0 ]' || note "events: $(evshow)"
r=$(sops hist-complete "$SD/sd" "$T/sed.old" "$T/sed.new" -- $(evrevs put sd) "$rs0")
checke sed-i-target-revisions-complete '[ "${r%% *}" = OK ]' || note "$r"
checke sed-i-target-keeps-old-revision 'timeout 5 cmp -s "$SD/sd@$rs0" "$T/sed.old"' || note "sd@$rs0: $(timeout 5 head -c 60 "$SD/sd@$rs0" 2>&1)"
checke sed-i-no-temp-left '! ls -a "$SD" | grep -q "^sed"'

# vim-like save: ftruncate(fd, 0) + 1 KiB writes + fsync + close: one revision; a watcher
# and concurrent readers never see an empty or partial value
$SOPS gen "$T/vm.a" 60000 vima >/dev/null; $SOPS gen "$T/vm.b" 61000 vimb >/dev/null
cp "$T/vm.a" "$SD/vm"; rv0=$(ver "$SD/vm")
ev_begin
rm -f "$T/stop"
timeout -k 2 120 $SOPS reader "$SD/vm" "$T/stop" 100 "$T/vm.a" "$T/vm.b" >"$T/rd.out" 2>&1 &
rp=$!
sleep 0.3
r=$(sops vimsave "$SD/vm" "$T/vm.b" 1024)
sleep 0.3; touch "$T/stop"; wait $rp
ev_end
checke vim-like-save-ok '[ "${r%% *}" = OK ] && timeout 5 cmp -s "$SD/vm" "$T/vm.b"' || note "$r"
checke vim-like-save-one-revision '[ "$EV_OK" = 1 ] && [ "$(evn any vm)" = 1 ] && [ "$(evn put vm)" = 1 ]' || note "$(evn any vm) events: $(evshow)"
r=$(sops hist-complete "$SD/vm" "$T/vm.a" "$T/vm.b" -- $(evrevs put vm) "$rv0")
checke vim-like-save-revisions-complete '[ "${r%% *}" = OK ]' || note "$r"
checke vim-like-save-readers-never-empty 'grep -q "^OK" "$T/rd.out"' || note "$(cat "$T/rd.out")"

# ================================================================ 5. each kind of save is one
# revision and one .events line; O_APPEND; reads through the writing descriptor; fsync
$SOPS gen "$T/big" 300000 big >/dev/null
$SOPS gen "$T/big2" 300001 big2 >/dev/null
for n in echo-old printf-old cp-old dd-old py-old; do echo previous >"$SD/$n"; done
ev_begin
tsh 20 'echo v >"$1/echo-new" && echo v2 >"$1/echo-old"' "$SD" || note "echo failed"
tsh 20 'printf "%s\n" a b c >"$1/printf-new" && printf "%s=%d\n" x 1 y 2 >"$1/printf-old"' "$SD" || note "printf failed"
timeout 60 cp "$T/big" "$SD/cp-new" && timeout 60 cp "$T/big2" "$SD/cp-old" || note "cp failed"
timeout 60 dd if="$T/big" of="$SD/dd-new" bs=4k status=none && timeout 60 dd if="$T/big2" of="$SD/dd-old" bs=4k status=none || note "dd failed"
sops pybuffered "$SD/py-new" "$T/big" >/dev/null; sops pybuffered "$SD/py-old" "$T/big2" >/dev/null
ev_end
checke save-kinds-content '[ "$(cat "$SD/echo-new")" = v ] && [ "$(cat "$SD/echo-old")" = v2 ] &&
    [ "$(cat "$SD/printf-new")" = "$(printf "a\nb\nc")" ] && [ "$(cat "$SD/printf-old")" = "$(printf "x=1\ny=2")" ] &&
    cmp -s "$SD/cp-new" "$T/big" && cmp -s "$SD/cp-old" "$T/big2" && cmp -s "$SD/dd-new" "$T/big" &&
    cmp -s "$SD/dd-old" "$T/big2" && cmp -s "$SD/py-new" "$T/big" && cmp -s "$SD/py-old" "$T/big2"'
for n in echo-new echo-old printf-new printf-old cp-new cp-old dd-new dd-old py-new py-old; do
    checke "one-revision-$n" '[ "$EV_OK" = 1 ] && [ "$(evn any $n)" = 1 ] && [ "$(evn put $n)" = 1 ] &&
        [ "$(evrevs put $n)" = "$(ver "$SD/$n")" ] && timeout 10 cmp -s "$SD/$n@$(evrevs put $n)" "$SD/$n"' ||
        note "$n: $(evn any $n) events (revs $(evrevs put $n | tr '\n' ' '))"
done
checke save-kinds-no-other-events '[ "$(evall)" = 10 ]' || note "$(evall) events"

# O_APPEND from concurrent writers: every line lands whole, each writer's lines in order
append_run() { # FILE WRITERS LINES (FILE exists and is empty)
    local f=$1 w=$2 n=$3 i pids=
    for i in $(seq "$w"); do
        tsh 120 'for j in $(seq "$3"); do echo "w$2 $j padding-padding-padding-padding-padding-padding"; done >>"$1"' "$f" "$i" "$n" &
        pids="$pids $!"
    done
    wait $pids
    timeout 10 cat "$f" >"$T/app.out"
    awk -v w="$w" -v n="$n" '
        $0 !~ /^w[0-9]+ [0-9]+ padding-padding-padding-padding-padding-padding$/ { print "torn: " substr($0, 1, 60); bad = 1; next }
        { i = substr($1, 2) + 0; if ($2 + 0 != last[i] + 1) { print "w" i ": " $2 " after " last[i]; bad = 1 }; last[i] = $2 + 0; c++ }
        END { if (c != w * n) { print c " lines, want " w * n; bad = 1 }; exit bad }' "$T/app.out" >"$T/app.why"
}
: >"$C/app"; : >"$SD/app"
append_run "$C/app" 8 200
checke append-concurrent-all-land-cache '[ ! -s "$T/app.why" ]' || note "$(head -n 3 "$T/app.why" | tr '\n' ' ')"
ev_begin
append_run "$SD/app" 4 25
ev_end
checke append-concurrent-all-land-config '[ ! -s "$T/app.why" ]' || note "$(head -n 3 "$T/app.why" | tr '\n' ' ')"
# each >> write() is published at the write(): one revision per appended line here
checke append-one-revision-per-write-config '[ "$EV_OK" = 1 ] && [ "$(evn put app)" = 100 ]' || note "$(evn put app) puts for 100 appends (+$(evn delete app) deletes)"
for ns in cache config; do
    [ $ns = cache ] && f=$C/ap2 || f=$SD/ap2
    got=$(tsh 20 'echo first >"$1"; exec 7>>"$1"; echo second >&7; r=$(cat "$1"); exec 7>&-; printf "%s" "$r"' "$f")
    checke "append-visible-before-close-$ns" '[ "$got" = "$(printf "first\nsecond")" ]' || note "another reader saw '$got' while the >> descriptor was open"
done

# reads through the writing descriptor see the save in progress; others see the old value
for ns in cache config; do
    [ $ns = cache ] && f=$C/rw || f=$SD/rw
    printf old >"$f"
    r=$(sops rw-own "$f")
    checke "rw-descriptor-sees-own-save-$ns" '[ "${r%% *}" = OK ]' || note "$r"
done

# fsync publishes: before it another process sees the old value, after it the new one
for ns in cache config; do
    [ $ns = cache ] && f=$C/fs || f=$SD/fs
    printf old >"$f"
    [ $ns = config ] && ev_begin
    r=$(sops fsync-pub "$f")
    [ $ns = config ] && ev_end
    case $r in "OK before-fsync=old "*) b=1 ;; *) b=0 ;; esac
    case $r in *" after-fsync=synced after-close=synced") a=1 ;; *) a=0 ;; esac
    checke "unpublished-before-fsync-$ns" '[ $b = 1 ]' || note "$r"
    checke "fsync-publishes-$ns" '[ $a = 1 ]' || note "$r"
    [ $ns = config ] && { checke fsync-then-close-one-revision '[ "$EV_OK" = 1 ] && [ "$(evn any fs)" = 1 ]' || note "events: $(evshow)"; }
done

# ================================================================ 6. concurrency: readers
# never see an empty or partial 300 KB value written in 4 KiB write() calls; the watcher
# sees exactly one event per save
$SOPS gen "$T/cc.a" 300000 ccA >/dev/null; $SOPS gen "$T/cc.b" 300000 ccB >/dev/null
for ns in cache config; do
    [ $ns = cache ] && f=$C/cc || f=$SD/cc
    cp "$T/cc.a" "$f"
    [ $ns = config ] && ev_begin
    rm -f "$T/stop"
    rps=
    for k in 1 2; do timeout -k 2 200 $SOPS reader "$f" "$T/stop" 180 "$T/cc.a" "$T/cc.b" >"$T/rd$k.out" 2>&1 & rps="$rps $!"; done
    sleep 0.3
    # saves B, A, B, A, ... for at least 2 s and at least 10 times; the last one decides the value
    r=$(SOPS_TIMEOUT=180 sops saver "$f" 10 2 4096 "$T/cc.b" "$T/cc.a")
    nsaves=$(echo "$r" | awk '$1 == "OK" { print $2 }')
    touch "$T/stop"; wait $rps
    [ $ns = config ] && ev_end
    note "$ns saver: $r; readers: $(cat "$T/rd1.out") / $(cat "$T/rd2.out")"
    checke "concurrent-saves-done-$ns" '[ "${r%% *}" = OK ] && timeout 5 cmp -s "$f" "$T/cc.$([ $((${nsaves:-1} % 2)) = 0 ] && echo a || echo b)"'
    checke "concurrent-readers-never-partial-$ns" 'grep -q "^OK" "$T/rd1.out" && grep -q "^OK" "$T/rd2.out"'
    if [ $ns = config ]; then
        checke concurrent-watcher-one-event-per-save '[ "$EV_OK" = 1 ] && [ -n "$nsaves" ] && [ "$(evn put cc)" = "$nsaves" ] && [ "$(evn any cc)" = "$nsaves" ]' ||
            note "$(evn put cc) puts for ${nsaves:-?} saves"
        r=$(sops hist-complete "$f" "$T/cc.a" "$T/cc.b" -- $(evrevs put cc | tail -n 9))
        checke concurrent-revisions-complete '[ "${r%% *}" = OK ]' || note "$r"
    fi
done

kill $EVP 2>/dev/null; wait $EVP 2>/dev/null

# Cases found by review of the save protocol (each failed before its fix).
mkdir -p "$Q/config/rv"
r=$(timeout 60 python3 - "$Q" <<'PY' 2>&1
import os, sys, threading, time
q = sys.argv[1]
out = []
def rd(p):
    with open(p, "rb") as f:
        return f.read()
# rewrite in place: write then ftruncate through the same open is ONE save
p = q + "/config/rv/f"
with open(p, "w") as f: f.write("hello world\n")
v0 = int(os.getxattr(p, "user.version"))
fd = os.open(p, os.O_RDWR); os.write(fd, b"hi\n"); os.ftruncate(fd, 3)
mid = rd(p); os.close(fd)
out.append("ftrunc=%s" % ("ok" if mid == b"hello world\n" and rd(p) == b"hi\n" and
                          int(os.getxattr(p, "user.version")) == v0 + 1 else
                          "bad mid=%r end=%r" % (mid, rd(p))))
# another thread of the process holds the file open: close() still publishes
p = q + "/cache/rv-th"
with open(p, "w") as f: f.write("old\n")
ev = threading.Event()
def holder():
    h = os.open(p, os.O_WRONLY); ev.set(); time.sleep(1); os.close(h)
th = threading.Thread(target=holder); th.start(); ev.wait()
fd = os.open(p, os.O_WRONLY | os.O_TRUNC); os.write(fd, b"new\n"); os.close(fd)
got = rd(p); th.join()
out.append("thread=%s" % ("ok" if got == b"new\n" else "bad %r" % got))
# rename and unlink of a new file before its close
f = open(q + "/cache/rv-tmp", "w"); f.write("v1"); f.flush()
os.replace(q + "/cache/rv-tmp", q + "/cache/rv-dst"); f.write("v2"); f.close()
out.append("rename-new=%s" % ("ok" if rd(q + "/cache/rv-dst") == b"v1v2" and
                              not os.path.exists(q + "/cache/rv-tmp") else "bad"))
f = open(q + "/cache/rv-gone", "w"); f.write("x"); f.flush()
os.unlink(q + "/cache/rv-gone"); f.close()
out.append("unlink-new=%s" % ("bad" if os.path.exists(q + "/cache/rv-gone") else "ok"))
# a second open of a new file writes to the file, not to its old name
a = os.open(q + "/cache/rv-sf", os.O_WRONLY | os.O_CREAT)
b = os.open(q + "/cache/rv-sf", os.O_WRONLY | os.O_CREAT)
os.write(a, b"from-a"); os.close(a)
os.rename(q + "/cache/rv-sf", q + "/cache/rv-sg")
with open(q + "/cache/rv-sf", "w") as f: f.write("unrelated")
os.write(b, b"B"); os.close(b)
sf, sg = rd(q + "/cache/rv-sf"), rd(q + "/cache/rv-sg")
out.append("shared-create=%s" % ("ok" if sf == b"unrelated" and sg == b"Brom-a" else
                                 "bad sf=%r sg=%r" % (sf, sg)))
# O_APPEND after a rename (logrotate) and after an unlink
with open(q + "/cache/rv-log", "w") as f: f.write("l1\n")
fd = os.open(q + "/cache/rv-log", os.O_WRONLY | os.O_APPEND)
os.rename(q + "/cache/rv-log", q + "/cache/rv-log.1")
os.write(fd, b"l2\n"); os.unlink(q + "/cache/rv-log.1"); os.write(fd, b"l3\n"); os.close(fd)
out.append("append-moved=ok")
print(" ".join(out))
PY
)
for k in ftrunc thread rename-new unlink-new shared-create append-moved; do
    checke "review-$k" '[[ " $r " == *" $k=ok "* ]]' || note "$r"
done
check daemon-alive pid_alive "$NPID"
finish
