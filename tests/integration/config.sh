#!/bin/bash
# tests/integration/config.sh — FILE-API §5 (config/): a tree of files, user.version growing
# strictly per change, file@rev history of the last 10 versions and rollback by cp, and the
# .events watch stream (concurrent readers, blocking, signals, .events@rev replay, ESTALE
# for a revision older than the kept event history).
. "$(dirname "$0")/lib.sh"

# Events the daemon keeps for .events@rev: fs/state.h has CONFIG_EVENTS_KEPT 10000. The ESTALE
# case first makes that many changes plus some, then keeps going in batches (up to
# QFS_EVENTS_MAX changes in all) until the old revision is reported stale, so a different
# retention still gives a pass, and the count it took is printed.
EVENTS_KEPT=${QFS_EVENTS_KEPT:-10000}
EVENTS_MAX=${QFS_EVENTS_MAX:-60000}

must_start n1
Q=$MNT
A=$Q/config/app

ver() { getfattr --only-values -n user.version "$1" 2>/dev/null; }
isnum() { case $1 in ''|*[!0-9]*) return 1 ;; esac; }

# ---- tree
mkdir -p "$A/prod" && ok mkdir-p || not_ok mkdir-p
echo "postgres://db" >"$A/prod/db_url" && ok write-file || not_ok write-file
check read-file [ "$(cat "$A/prod/db_url" 2>&1)" = "postgres://db" ]
check ls-tree [ "$(ls "$A" | tr '\n' ' ')" = "prod " ]

# ---- user.version grows strictly per change, across the top-level dir
v1=$(ver "$A/prod/db_url")
echo "postgres://db2" >"$A/prod/db_url"; v2=$(ver "$A/prod/db_url")
echo other >"$A/other"; vo=$(ver "$A/other")
v2b=$(ver "$A/prod/db_url")
echo "postgres://db3" >"$A/prod/db_url"; v3=$(ver "$A/prod/db_url")
note "versions: db_url $v1 $v2 (other $vo) $v3"
checke version-is-number 'isnum "$v1" && isnum "$v2" && isnum "$vo" && isnum "$v3"'
checke version-grows '[ "$v2" -gt "$v1" ] && [ "$vo" -gt "$v2" ] && [ "$v3" -gt "$vo" ]' 2>/dev/null
check version-unchanged-by-other-file [ "$v2b" = "$v2" ]
rm "$A/other"
echo again >"$A/other2"; vd=$(ver "$A/other2")
checke version-delete-is-a-change '[ "$vd" -gt $((vo + 1)) ]' 2>/dev/null || note "after a delete the next put got $vd (other was $vo)"
for i in 1 2 3 4 5; do echo "same" >"$A/same"; s[$i]=$(ver "$A/same"); done
checke version-rewrite-same-value-grows '[ "${s[2]}" -gt "${s[1]}" ] && [ "${s[5]}" -gt "${s[4]}" ]' 2>/dev/null

# ---- history: the last 10 versions as file@rev; the 11th-newest is gone (ENOENT)
for i in $(seq 1 12); do
    echo "value-$i" >"$A/h"
    r[$i]=$(ver "$A/h")
done
hist_ok=1
for i in $(seq 3 12); do
    got=$(cat "$A/h@${r[$i]}" 2>&1)
    [ "$got" = "value-$i" ] || { hist_ok=0; note "h@${r[$i]} gave '$got', want value-$i"; }
done
check history-last-10 [ $hist_ok = 1 ]
expect_errno history-11th-newest-ENOENT ENOENT read "$A/h@${r[2]}"
expect_errno history-12th-newest-ENOENT ENOENT read "$A/h@${r[1]}"
expect_errno history-unknown-rev-ENOENT ENOENT read "$A/h@999999999"
expect_errno history-other-files-rev-ENOENT ENOENT read "$A/h@$v1"
check history-current-is-newest [ "$(cat "$A/h@${r[12]}" 2>&1)" = value-12 ]
check ls-hides-at-names sh -c "! ls -a '$A' | grep -q @"
check history-stat-size [ "$(stat -c %s "$A/h@${r[5]}" 2>/dev/null)" = 8 ]
expect_errno history-not-writable EPERM\|EACCES\|EROFS\|EINVAL write "$A/h@${r[5]}" lit:x
check history-unchanged-by-write [ "$(cat "$A/h@${r[5]}" 2>&1)" = value-5 ]

# ---- rollback: cp file@rev file
cp "$A/h@${r[5]}" "$A/h" && ok rollback-cp || not_ok rollback-cp
check rollback-content [ "$(cat "$A/h" 2>&1)" = value-5 ]
rb=$(ver "$A/h")
checke rollback-new-revision '[ "$rb" -gt "${r[12]}" ]' 2>/dev/null
check rollback-in-history [ "$(cat "$A/h@$rb" 2>&1)" = value-5 ]
check rollback-old-still-there [ "$(cat "$A/h@${r[12]}" 2>&1)" = value-12 ]

# ---- .events: two concurrent readers see all changes in revision order
has_open() { ls -l /proc/"$1"/fd 2>/dev/null | grep -q -- "$2"; }
expect_errno events-nonblock-EAGAIN EAGAIN readnb "$A/.events"
$FSOP exec-sigdfl cat "$A/.events" >"$T/ev1" 2>"$T/ev1.err" &
p1=$!
$FSOP exec-sigdfl cat "$A/.events" >"$T/ev2" 2>"$T/ev2.err" &
p2=$!
wait_for 5 has_open $p1 .events && wait_for 5 has_open $p2 .events || note "readers did not open .events within 5 s"
sleep 0.3
: >"$T/expect"
for i in $(seq 1 10); do echo "e$i" >"$A/e$i"; echo "$(ver "$A/e$i") put e$i" >>"$T/expect"; done
for i in 1 2 3 4 5; do rm "$A/e$i"; echo "- delete e$i" >>"$T/expect"; done
for i in $(seq 11 15); do echo "e$i" >"$A/prod/e$i"; echo "$(ver "$A/prod/e$i") put prod/e$i" >>"$T/expect"; done
r5=$(awk 'NR == 5 { print $1 }' "$T/expect")

lines20() { [ "$(wc -l <"$1")" -ge 20 ]; }
wait_for 10 lines20 "$T/ev1"; wait_for 5 lines20 "$T/ev2"

# events_match OUT EXPECT: OUT has exactly EXPECT's lines: same ops, paths ending in the
# names, the recorded revisions for puts, strictly increasing revisions.
events_match() {
    awk 'NR == FNR { er[FNR] = $1; eo[FNR] = $2; ep[FNR] = $3; n = FNR; next }
         { m++
           if (m > n) { print "extra line: " $0; bad = 1; next }
           if ($2 != eo[m]) { print "line " m " op " $2 ", want " eo[m]; bad = 1 }
           if ($3 != ep[m] && substr($3, length($3) - length(ep[m])) != "/" ep[m]) {
               print "line " m " path " $3 ", want .../" ep[m]; bad = 1 }
           if ($1 !~ /^[0-9]+$/) { print "line " m " rev " $1 " not a number"; bad = 1 }
           if (er[m] != "-" && $1 != er[m]) { print "line " m " rev " $1 ", want " er[m]; bad = 1 }
           if (m > 1 && $1 + 0 <= prev) { print "line " m " rev " $1 " not above " prev; bad = 1 }
           prev = $1 + 0 }
         END { if (m < n) { print "only " m " of " n " lines"; bad = 1 }; exit bad }' "$2" "$1"
}
for n in 1 2; do
    if out=$(events_match "$T/ev$n" "$T/expect"); then ok "events-reader$n-all-in-order"
    else not_ok "events-reader$n-all-in-order" "$(echo "$out" | head -n 3 | tr '\n' ';') got: $(head -n 3 "$T/ev$n" | tr '\n' '|')"; fi
done
note "first event lines: $(head -n 2 "$T/ev1" | tr '\n' '|')"
sleep 1
checke events-blocks 'pid_alive $p1 && pid_alive $p2'
t0=$(date +%s%N)
kill -INT $p1
if wait_for 1 pid_gone $p1; then ok events-sigint-ends; note "SIGINT ended the reader in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
else not_ok events-sigint-ends "reader still running 1 s after SIGINT (state $(awk '{print $3}' /proc/$p1/stat 2>/dev/null))"; fi
kill -TERM $p2
if wait_for 1 pid_gone $p2; then ok events-sigterm-ends
else not_ok events-sigterm-ends "reader still running 1 s after SIGTERM (state $(awk '{print $3}' /proc/$p2/stat 2>/dev/null))"; fi
wait $p1 $p2 2>/dev/null

# ---- .events@rev replays what came after rev, then goes on live
$FSOP exec-sigdfl cat "$A/.events@$r5" >"$T/ev3" 2>"$T/ev3.err" &
p3=$!
lines15() { [ "$(wc -l <"$1")" -ge 15 ]; }
if wait_for 5 lines15 "$T/ev3"; then
    tail -n 15 "$T/expect" >"$T/expect3"
    if out=$(events_match "$T/ev3" "$T/expect3"); then ok events-at-rev-replays
    else not_ok events-at-rev-replays "$(echo "$out" | head -n 3 | tr '\n' ';')"; fi
    echo live >"$A/live"; lv=$(ver "$A/live")
    echo "$lv put live" >>"$T/expect3"
    lines16() { [ "$(wc -l <"$1")" -ge 16 ]; }
    wait_for 5 lines16 "$T/ev3"
    if out=$(events_match "$T/ev3" "$T/expect3"); then ok events-at-rev-then-live
    else not_ok events-at-rev-then-live "$(echo "$out" | head -n 3 | tr '\n' ';')"; fi
else
    not_ok events-at-rev-replays "got $(wc -l <"$T/ev3") lines in 5 s: $(head -c 200 "$T/ev3"; cat "$T/ev3.err")"
fi
kill -INT $p3 2>/dev/null; wait_for 2 pid_gone $p3 || not_ok events-at-rev-sigint-ends
wait $p3 2>/dev/null
expect_errno events-at-garbage-rev EINVAL\|ENOENT read "$A/.events@abc"

# ---- ESTALE: a revision older than the kept event history
first=$(timeout 5 head -n1 "$A/.events@$v1" 2>&1)
checke events-first-rev-replays-before-rollover '[ "${first%% *}" = "$v2" ]' || note "head -n1 .events@$v1 gave '$first'"
# churn N: N more changes below config/app from 4 concurrent writers.
churn() {
    local per=$(( $1 / 4 + 1 )) w
    for w in 1 2 3 4; do timeout -k 2 150 $FSOP churn "$A/churn$w" $per >"$T/churn$w" 2>&1 & done
    wait
    [ "$(cat "$T"/churn? | grep -c '^OK')" = 4 ] || { note "churn failed: $(cat "$T"/churn? | tr '\n' ' ')"; return 1; }
    made=$(( made + per * 4 ))
}
t0=$(date +%s)
made=0
churn $((EVENTS_KEPT + 200))
# O_NONBLOCK: a replay that still has history answers at once; a stale one gives ESTALE.
r=$(timeout 5 $FSOP readnb "$A/.events@$v1" 2>&1)
while [ "$r" != ESTALE ] && [ $made -lt "$EVENTS_MAX" ] && churn 5000; do
    r=$(timeout 5 $FSOP readnb "$A/.events@$v1" 2>&1)
done
note "$made changes in $(( $(date +%s) - t0 )) s; .events@$v1 then gives '$r'"
r=$(timeout 5 $FSOP read "$A/.events@$v1" 2>&1)
checke events-compacted-rev-ESTALE '[ "$r" = ESTALE ]' || note "read of .events@$v1 after $made changes gave '${r:-nothing within 5 s}'"
cur=$(ver "$A/churn1")
$FSOP exec-sigdfl cat "$A/.events@$((cur - 3))" >"$T/ev4" 2>&1 &
p4=$!
lines3() { [ "$(wc -l <"$1")" -ge 3 ]; }
check events-recent-rev-still-works wait_for 5 lines3 "$T/ev4"
kill -INT $p4 2>/dev/null; wait $p4 2>/dev/null
check history-survives-churn [ "$(cat "$A/h@$rb" 2>&1)" = value-5 ]

# ---- a name cannot forge or split an .events line (FILE-API §5 escaping; issue 8 bug 4)
mkdir "$Q/config/esc"
timeout 4 cat "$Q/config/esc/.events" >"$T/esc.ev" 2>&1 &
ep=$!
sleep 0.5
echo v >"$Q/config/esc/"$'evil\n99 put config' && echo v >"$Q/config/esc/back\\slash" &&
    echo v >"$Q/config/esc/"$'tab\there' || note "could not create the escape test files"
wait $ep 2>/dev/null
# lines without their revision; the expected text is literal (single quotes)
got=$(awk '{ $1 = ""; sub(/^ /, ""); print }' "$T/esc.ev")
checke events-escape-newline 'grep -Fxq -- '"'"'put config/esc/evil\n99 put config'"'"' <<<"$got"' ||
    note "got: $(printf '%q' "$got")"
checke events-escape-backslash 'grep -Fxq -- '"'"'put config/esc/back\\slash'"'"' <<<"$got"'
checke events-escape-control 'grep -Fxq -- '"'"'put config/esc/tab\x09here'"'"' <<<"$got"'
checke events-escape-three-lines '[ "$(wc -l <"$T/esc.ev")" -eq 3 ]'

check daemon-alive pid_alive "$NPID"
finish
