#!/bin/bash
# tests/integration/diskfull.sh — a full data disk (an 8 MiB tmpfs under the data dir), as
# FILE-API §1 "Full disk" and docs/OPERATIONS.md describe it: writes fail with ENOSPC at the
# write() call, reads keep working, and rm, rmdir, rm -r and queue deletes still succeed;
# after enough deletes the space comes back without a restart (compaction) and writes work
# again; with the disk filled by someone else, deletes run on the reserve and health says
# so; health says why it is not ok; restarts (on a full disk, clean, kill -9, after the disk
# is enlarged) lose nothing acknowledged. Also df / df -i and the times of the mount's own
# directories.
. "$(dirname "$0")/lib.sh"

KEY=65536                              # bytes of each filler key
Y2020=1577836800

# keep_check NAME: every key of $T/keep is whole in cache/full, and none of $T/gone is there.
keep_check() {
    local r
    r=$(timeout 60 $FSOP durable-check "$MNT/cache/full" "$T/keep" 2>&1)
    checke "$1" '[ "${r%% *}" = OK ] && ! (cd "$MNT/cache/full" && ls | grep -qxFf "$T/gone")' \
        || note "$1: $r; deleted keys still present: $(cd "$MNT/cache/full" && ls | grep -xFf "$T/gone" | head -3 | tr '\n' ' ')"
}
health1() { head -n1 "$MNT/.cluster/health" 2>/dev/null; }
health_ok() { [ "$(cat "$MNT/.cluster/health" 2>/dev/null)" = ok ]; }
# write_one NAME: one new 64 KiB key (acknowledged into $T/keep); true when it worked.
write_one() {
    local r
    r=$(timeout -k 2 20 $FSOP fill "$MNT/cache/full" "$1" $KEY 1 "$T/keep" 2>&1)
    [ "$r" = "OK 1" ]
}
# remove KEYS...: rm of cache/full/<key> each; the keys leave $T/keep for $T/gone. Prints
# the number of failures.
remove() {
    local k bad=0
    for k in "$@"; do
        if rm "$MNT/cache/full/$k" 2>>"$T/rm.err"; then
            echo "$k" >>"$T/gone"
        else
            bad=$((bad + 1))
        fi
    done
    grep -vxFf "$T/gone" "$T/keep" >"$T/keep.new"; mv "$T/keep.new" "$T/keep"
    echo $bad
}
qlen() { cat "$1/len" 2>/dev/null; }

disk=$T/disk                           # the data disk; the data dir is a directory on it
dd=$disk/data
mkdir -p "$disk"
if ! mount -t tmpfs -o size=8m tmpfs "$disk"; then not_ok tmpfs "cannot mount a tmpfs"; finish; fi
mkdir "$dd"
DATA_DIR=$dd
must_start n1
ok start-on-8MiB
: >"$T/keep"; : >"$T/gone"; : >"$T/rm.err"

# ---- df, df -i and the mount's own times
read -r itotal iused ifree < <(df -i "$MNT" | awk 'NR == 2 { print $2, $3, $4 }')
nobj=$(grep '^quorumfs_objects ' "$MNT/.cluster/metrics" | awk '{print $2}')
checke df-i-iused-is-object-count '[ "$iused" -ge 0 ] && [ "$iused" = "$nobj" ] && [ "$itotal" = $((iused + ifree)) ] && [ "$ifree" -gt 1000 ]' \
    || note "df -i: total $itotal used $iused free $ifree; objects $nobj"
read -r size avail < <(df -k --output=size,avail "$MNT" | tail -n1)
checke df-size-is-data-disk '[ "$size" = "$(df -k --output=size "$dd" | tail -n1 | tr -d " ")" ] && [ "$avail" -gt 1024 ] && [ "$avail" -lt "$size" ]' \
    || note "df: size ${size}k avail ${avail}k; data disk: $(df -k "$dd" | tail -n1)"
# (an entry made in a root makes the kernel ask for the root's attributes again: queues/ and
# locks/ answered with the epoch)
mkdir "$MNT/queues/time-probe" && : >"$MNT/locks/time-probe" || note "probe entries not made"
for d in "$MNT" "$MNT/.cluster" "$MNT/cache" "$MNT/queues" "$MNT/locks"; do
    t=$(stat -c %Y "$d")
    checke "time-after-2020-${d##*/}" '[ "$t" -gt $Y2020 ]' || note "stat -c %Y $d: $t"
done
checke root-nlink '[ "$(stat -c %h "$MNT")" = $((2 + $(ls -A "$MNT" | wc -l))) ]' \
    || note "root links $(stat -c %h "$MNT"), entries: $(ls -A "$MNT" | tr '\n' ' ')"

# ---- things to delete later, made while there is room
mkdir -p "$MNT/cache/tree/a/b" "$MNT/cache/tree/c" "$MNT/cache/emptyd"
for f in tree/x tree/a/y tree/a/b/z tree/c/w; do echo "$f" >"$MNT/cache/$f"; done
echo v1 >"$MNT/config/c1"
Q=$MNT/queues
mkdir "$Q/qa" "$Q/qd" "$Q/qr" "$Q/qe"
printf 'a1\na2\na3\n' >"$Q/qa/push"
printf 'r1\nr2\n' >"$Q/qr/push"
setfattr -n user.visibility_timeout -v 1 "$Q/qd" && setfattr -n user.max_deliveries -v 1 "$Q/qd"
echo poison >"$Q/qd/push"
timeout 10 cat "$Q/qd/claim" >/dev/null
wait_for 10 sh -c "[ \"\$(cat '$Q/qd/len')\" = '0 0 1' ]" || note "qd never reached dead/: len $(qlen "$Q/qd")"
did=$(ls "$Q/qd/dead" 2>/dev/null | head -n1)
checke queue-setup '[ -n "$did" ]' || note "no message in dead/"

# ---- fill the disk through the mount
F=$MNT/cache/full
mkdir "$F"
r=$(timeout -k 2 120 $FSOP fill "$F" k $KEY 2000 "$T/keep" 2>&1)
nkeys=$(wc -l <"$T/keep")
note "fill stopped with '$r' after $nkeys acknowledged 64 KiB keys; tmpfs: $(df -k "$dd" | awk 'NR == 2 { print $3 "k used of " $2 "k" }')"
checke write-ENOSPC '[ "${r%% *}" = ENOSPC ]'
checke some-acked '[ "$nkeys" -gt 20 ]'
check daemon-alive-when-full pid_alive "$NPID"
( echo "$(head -c 70000 /dev/zero | tr '\0' e)" >"$MNT/cache/by-echo" ) 2>"$T/echo.err"; rc=$?
checke echo-reports-ENOSPC '[ $rc -ne 0 ] && grep -qi "no space" "$T/echo.err"' || note "echo exit $rc: $(cat "$T/echo.err")"
checke health-says-disk-full '[[ "$(health1)" == "data disk full:"* ]]' || note "health: $(head -n 3 "$MNT/.cluster/health" | tr '\n' '|')"
read -r avail < <(df -k --output=avail "$MNT" | tail -n1)
checke df-avail-small-when-full '[ "$avail" -lt 64 ]' || note "df avail ${avail}k"
ifree=$(df -i "$MNT" | awk 'NR == 2 { print $4 }')
checke df-ifree-small-when-full '[ "$ifree" -lt 256 ]' || note "df -i free $ifree"
keep_check reads-work-when-full
check ls-works-when-full sh -c "ls '$F' | grep -qx k0"
check qlen-works-when-full [ "$(qlen "$Q/qa")" = "3 0 0" ]

# ---- a kill -9 and a restart on the full disk
crash_node "$MNT" "$NPID"
if start_node n1; then ok restart-on-full-disk; else not_ok restart-on-full-disk "$(head -c 300 "$T/mount.log")"; finish; fi
keep_check nothing-lost-restart-on-full-disk
expect_errno still-ENOSPC-after-restart ENOSPC write "$F/after-restart" lit:x
# A claim only leases (and is given back if its session ends): it works on a full disk.
read -r aid amsg < <(timeout 10 cat "$Q/qa/claim")
checke queue-claim-when-full '[ "$amsg" = a1 ]' || note "claimed '$aid $amsg'"

# ---- deletes on the full disk
ndel=$((nkeys * 2 / 3))
bad=$(remove $(head -n "$ndel" "$T/keep"))
checke rm-keys-when-full '[ "$bad" = 0 ]' || note "$bad of $ndel rm failed: $(head -c 300 "$T/rm.err")"
check rm-r-when-full rm -r "$MNT/cache/tree"
check rmdir-when-full rmdir "$MNT/cache/emptyd"
check rm-config-when-full rm "$MNT/config/c1"
check queue-ack-when-full rm "$Q/qa/claimed/$aid"
check queue-dead-rm-when-full rm "$Q/qd/dead/$did"
check queue-rm-r-when-full rm -r "$Q/qr"
check queue-rmdir-when-full rmdir "$Q/qe"
checke deleted-are-gone '[ ! -e "$MNT/cache/tree" ] && [ ! -e "$MNT/cache/emptyd" ] && [ ! -e "$MNT/config/c1" ] && [ ! -e "$Q/qr" ] && [ "$(qlen "$Q/qa")" = "2 0 0" ] && [ "$(qlen "$Q/qd")" = "0 0 0" ]'

# ---- the space comes back (a snapshot compacts the log) and writes work again
t0=$(now_ms)
if wait_for 20 write_one back; then ok writes-work-after-deletes; else not_ok writes-work-after-deletes "health: $(cat "$MNT/.cluster/health" | tr '\n' '|') data: $(du -sk "$dd" | cut -f1)k"; fi
note "writes came back $(( $(now_ms) - t0 )) ms after the deletes; tmpfs: $(df -k "$dd" | awk 'NR == 2 { print $3 "k used" }')"
wait_for 5 health_ok && ok health-ok-after-deletes || not_ok health-ok-after-deletes "$(cat "$MNT/.cluster/health" | tr '\n' '|')"
read -r avail < <(df -k --output=avail "$MNT" | tail -n1)
checke df-avail-after-deletes '[ "$avail" -gt 64 ]' || note "df avail ${avail}k"
keep_check nothing-lost-after-deletes

# ---- someone else fills the disk: deletes run on the reserve
mkdir "$MNT/cache/many"
for i in $(seq 1 150); do echo "$i" >"$MNT/cache/many/f$i"; done
dd if=/dev/zero of="$disk/filler" bs=4k 2>/dev/null
note "filler: $(du -k "$disk/filler" | cut -f1)k; tmpfs: $(df -k "$disk" | awk 'NR == 2 { print $4 "k free" }')"
sleep 0.3                              # the node looks at the disk every 100 ms
# Other writes fail while the disk is full, small ones too (a big one first: a few bytes may
# still fit in the WAL's last page and then rightly succeed).
expect_errno write-ENOSPC-disk-filled ENOSPC write "$F/filled" pat:70000:x
expect_errno mkdir-ENOSPC-disk-filled ENOSPC mkdir "$MNT/cache/newdir"
expect_errno setxattr-ENOSPC-disk-filled ENOSPC setx "$MNT/cache/full" user.ttl 60
expect_errno push-ENOSPC-disk-filled ENOSPC write "$Q/qa/push" "lit:more"$'\n'
rm -rf "$F/filled" "$MNT/cache/newdir" 2>/dev/null   # only there if a case above failed
bad=$(remove $(head -n 5 "$T/keep"))
check rm-r-on-the-reserve rm -r "$MNT/cache/many"
checke rm-on-the-reserve '[ "$bad" = 0 ]' || note "$bad rm failed: $(tail -c 300 "$T/rm.err")"
checke health-says-reserve 'grep -q "^deletes running on the reserve" "$MNT/.cluster/health" && [[ "$(health1)" == "data disk full:"* ]]' \
    || note "health: $(cat "$MNT/.cluster/health" | tr '\n' '|')"
expect_errno write-ENOSPC-on-the-reserve ENOSPC write "$F/onreserve" lit:x
expect_errno mkdir-ENOSPC-on-the-reserve ENOSPC mkdir "$MNT/cache/newdir"
rm -rf "$F/onreserve" "$MNT/cache/newdir" 2>/dev/null
rm -f "$disk/filler"
if wait_for 10 health_ok; then ok reserve-back-health-ok; else not_ok reserve-back-health-ok "$(cat "$MNT/.cluster/health" | tr '\n' '|')"; fi
check reserve-file-back test -s "$dd/reserve"
if wait_for 5 write_one afterfiller; then ok writes-work-after-filler; else not_ok writes-work-after-filler; fi
keep_check nothing-lost-after-filler

# ---- restarts after all that: clean, then kill -9
if stop_node "$MNT" "$NPID"; then ok clean-unmount; else not_ok clean-unmount; crash_node "$MNT" "$NPID"; fi
if start_node n1; then ok restart-clean; else not_ok restart-clean "$(head -c 300 "$T/mount.log")"; finish; fi
keep_check nothing-lost-restart-clean
check queue-kept-restart-clean [ "$(qlen "$Q/qa")" = "2 0 0" ]
write_one afterclean && ok writes-work-restart-clean || not_ok writes-work-restart-clean
crash_node "$MNT" "$NPID"
if start_node n1; then ok restart-kill9; else not_ok restart-kill9 "$(head -c 300 "$T/mount.log")"; finish; fi
keep_check nothing-lost-restart-kill9
check queue-kept-restart-kill9 [ "$(qlen "$Q/qa")" = "2 0 0" ]

# ---- full again, then the other way out: a bigger disk and a restart
r=$(timeout -k 2 120 $FSOP fill "$F" m $KEY 2000 "$T/keep" 2>&1)
checke refill-ENOSPC '[ "${r%% *}" = ENOSPC ]' || note "$r"
crash_node "$MNT" "$NPID"
mount -o remount,size=64m "$disk" || not_ok enlarge "tmpfs remount failed"
if start_node n1; then ok restart-after-enlarge; else not_ok restart-after-enlarge "$(head -c 300 "$T/mount.log")"; finish; fi
keep_check nothing-lost-after-enlarge
write_one afterenlarge && ok writes-work-after-enlarge || not_ok writes-work-after-enlarge
wait_for 5 health_ok && ok health-ok-after-enlarge || not_ok health-ok-after-enlarge "$(cat "$MNT/.cluster/health" | tr '\n' '|')"
stop_node "$MNT" "$NPID" || { not_ok final-unmount; crash_node "$MNT" "$NPID"; }
unset DATA_DIR
finish
