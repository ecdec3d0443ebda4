#!/bin/bash
# tests/integration/posix.sh — FILE-API §1 "POSIX metadata" in cache/ and config/ on a real
# mount: chmod, chown, touch -d and stat to the nanosecond, directory link counts, symbolic
# links (ln -s, readlink, ls -l, lstat, rm, mv, dangling ones), tar and rsync -a of trees
# with links keeping what they set, config/ history kept across `mv tmp db` with its
# .events lines, metadata surviving a restart, and `-o default_permissions,allow_other`
# making the kernel enforce modes for another user (setpriv to nobody).
. "$(dirname "$0")/lib.sh"

must_start n1
Q=$MNT
C=$Q/cache/px
mkdir -p "$C" || not_ok mkdir-base

st() { stat -c "$1" "$2" 2>&1; }

# ---- the namespace roots never show 1970
checke root-times-not-1970 '[ "$(st %Y "$Q/cache")" -gt 1000000000 ] && [ "$(st %Z "$Q/config")" -gt 1000000000 ]'

# ---- chmod, chown, touch -d, stat
echo v >"$C/f"
chmod 640 "$C/f" && check chmod [ "$(st %a "$C/f")" = 640 ]
chmod 4755 "$C/f" && check chmod-setuid [ "$(st %a "$C/f")" = 4755 ]
chown 123:456 "$C/f" && check chown [ "$(st %u:%g "$C/f")" = 123:456 ]
check chown-clears-setuid [ "$(st %a "$C/f")" = 755 ]    # the kernel asks for it, as on ext4
touch -d '2001-02-03 04:05:06.123456789 UTC' "$C/f"
check touch-d-ns [ "$(TZ=UTC st %y "$C/f")" = "2001-02-03 04:05:06.123456789 +0000" ]
touch -a -d '1999-12-31 23:59:59.5 UTC' "$C/f"
check touch-atime [ "$(TZ=UTC st %x "$C/f")" = "1999-12-31 23:59:59.500000000 +0000" ]
check touch-atime-keeps-mtime [ "$(TZ=UTC st %y "$C/f")" = "2001-02-03 04:05:06.123456789 +0000" ]
c1=$(st %Z "$C/f")
checke ctime-is-now '[ $(( $(date +%s) - c1 )) -le 5 ]'
check chmod-keeps-value [ "$(cat "$C/f")" = v ]
cat "$C/f" >/dev/null
check read-keeps-atime [ "$(TZ=UTC st %x "$C/f")" = "1999-12-31 23:59:59.500000000 +0000" ]
check chmod-on-a-dir sh -c "chmod 700 '$C' && [ \"\$(stat -c %a '$C')\" = 700 ] && chmod 755 '$C'"
(umask 077 && mkdir "$C/private") && check mkdir-takes-umask [ "$(st %a "$C/private")" = 700 ]
echo w >"$C/g"; touch -d '2001-01-01' "$C/g"; touch "$C/g"
checke touch-now '[ "$(st %Y "$C/g")" -ge "$c1" ]'

# ---- directory link counts
mkdir -p "$C/n/a" "$C/n/b" "$C/n/c" && echo x >"$C/n/file" && ln -s file "$C/n/lnk"
check nlink-dir [ "$(st %h "$C/n")" = 5 ]
check nlink-leaf [ "$(st %h "$C/n/a")" = 2 ]
check nlink-file [ "$(st %h "$C/n/file")" = 1 ]
rmdir "$C/n/c" && check nlink-after-rmdir [ "$(st %h "$C/n")" = 4 ]
mv "$C/n/b" "$C/nb" && check nlink-after-mv [ "$(st %h "$C/n")" = 3 ]
check find-sees-all [ "$(find "$C/n" | wc -l)" = 4 ]

# ---- symbolic links
echo target-data >"$C/t"
ln -s t "$C/l" && ok ln-s || not_ok ln-s
check readlink [ "$(readlink "$C/l")" = t ]
check lstat-type [ "$(st %F "$C/l")" = "symbolic link" ]
check lstat-size [ "$(st %s "$C/l")" = 1 ]
check cat-through-link [ "$(cat "$C/l")" = target-data ]
checke ls-l-shows-target '[[ "$(ls -l "$C/l")" == l*" $C/l -> t" ]]'
check find-type-l [ "$(find "$C" -maxdepth 1 -type l | wc -l)" = 1 ]
ln -s /nonexistent/x "$C/dangling"
expect_errno dangling-read ENOENT read "$C/dangling"
check dangling-readlink [ "$(readlink "$C/dangling")" = /nonexistent/x ]
expect_errno ln-s-exists EEXIST symlink t "$C/l"
mkdir "$C/dir" && echo in >"$C/dir/inside" && ln -s dir "$C/dl"
check through-dir-link [ "$(cat "$C/dl/inside")" = in ]
mv "$C/l" "$C/l2" && check mv-link [ "$(readlink "$C/l2")" = t ]
rm "$C/l2" && check rm-link-keeps-target [ "$(cat "$C/t")" = target-data ] && check rm-link-gone [ ! -L "$C/l2" ]
mkdir -p "$Q/config/lk" && ln -s ../x "$Q/config/lk/cur" && check config-link [ "$(readlink "$Q/config/lk/cur")" = ../x ]
expect_errno hardlink-eperm EPERM link "$C/t" "$C/hard"

# ---- tar of a tree with links and modes, both ways
S=$T/src
mkdir -p "$S/tree/sub" "$S/tree/empty"
echo one >"$S/tree/a"; echo two >"$S/tree/sub/b"; printf 'x%.0s' $(seq 1 3000) >"$S/tree/big"
ln -s a "$S/tree/la"; ln -s ../a "$S/tree/sub/lup"; ln -s /etc/hostname "$S/tree/abs"
chmod 600 "$S/tree/a"; chmod 751 "$S/tree/sub"; chmod 1777 "$S/tree/empty"
chown 1000:1000 "$S/tree/sub/b"
touch -d '2010-05-06 07:08:09.987654321' "$S/tree/a" "$S/tree/sub" "$S/tree/sub/b"
touch -h -d '2011-01-01 00:00:00.25' "$S/tree/la"
tar --format=posix -C "$S" -cf "$T/tree.tar" tree     # pax: times to the ns
mkdir "$C/tx"
if tar -C "$C/tx" -xpf "$T/tree.tar" 2>"$T/tarx.err"; then ok tar-x-clean; else not_ok tar-x-clean "$(cat "$T/tarx.err")"; fi
if tar -C "$C/tx" -df "$T/tree.tar" >"$T/tard.out" 2>&1; then ok tar-compare-equal; else not_ok tar-compare-equal "$(cat "$T/tard.out")"; fi
check tar-link-target [ "$(readlink "$C/tx/tree/sub/lup")" = ../a ]
check tar-link-mtime [ "$(st %y "$C/tx/tree/la")" = "$(st %y "$S/tree/la")" ]
tar -C "$C/tx" -cf "$T/back.tar" tree && mkdir "$T/back" && tar -C "$T/back" -xpf "$T/back.tar"
if diff -r --no-dereference "$S/tree" "$T/back/tree" >"$T/diff.out" 2>&1; then ok tar-c-from-mount; else not_ok tar-c-from-mount "$(cat "$T/diff.out")"; fi
check tar-c-keeps-modes [ "$(st %a:%u "$T/back/tree/a")" = "600:0" ] && check tar-c-keeps-owner [ "$(st %u:%g "$T/back/tree/sub/b")" = 1000:1000 ]

# ---- rsync -a: a second run finds nothing to do (times equal to the ns, modes, links)
if rsync -a "$S/tree/" "$C/rs/" 2>"$T/rs.err"; then ok rsync-a; else not_ok rsync-a "$(cat "$T/rs.err")"; fi
again=$(rsync -ai "$S/tree/" "$C/rs/" 2>&1)
check rsync-a-second-run-idle [ -z "$again" ] || note "rsync itemized: $again"
cp -a "$S/tree/a" "$C/cpa" && check cp-a-keeps-mtime [ "$(st %y:%a "$C/cpa")" = "$(st %y:%a "$S/tree/a")" ]

# ---- config/: history kept across mv tmp db, and its .events lines
A=$Q/config/hist
mkdir -p "$A"
ver() { getfattr --only-values -n user.version "$1" 2>/dev/null; }
echo a >"$A/db"; ra=$(ver "$A/db")
echo b >"$A/db"; rb=$(ver "$A/db")
echo c >"$A/tmp"; rt=$(ver "$A/tmp")
mv "$A/tmp" "$A/db"; rn=$(ver "$A/db")
check mv-over-keeps-value [ "$(cat "$A/db")" = c ]
check mv-over-history-a [ "$(cat "$A/db@$ra" 2>&1)" = a ]
check mv-over-history-b [ "$(cat "$A/db@$rb" 2>&1)" = b ]
check mv-over-new-revision [ "$(cat "$A/db@$rn" 2>&1)" = c ]
checke mv-over-revision-grows '[ "$rn" -gt "$rt" ]'
timeout -s INT 2 cat "$A/.events@$rt" >"$T/ev" 2>/dev/null
exp="$((rn - 1)) delete config/hist/tmp
$rn put config/hist/db"
if [ "$(cat "$T/ev")" = "$exp" ]; then ok mv-over-events; else not_ok mv-over-events "got: $(cat "$T/ev")"; fi

# ---- metadata survives a restart (log replay)
stop_node "$Q" "$NPID" || not_ok stop-n1
DATA_DIR=$DATA must_start n1
Q=$MNT; C=$Q/cache/px
check restart-keeps-owner [ "$(st %a:%u:%g "$C/f")" = "755:123:456" ]
check restart-keeps-mtime [ "$(TZ=UTC st %y "$C/f")" = "2001-02-03 04:05:06.123456789 +0000" ]
check restart-keeps-link [ "$(readlink "$C/tx/tree/la")" = a ]
check restart-keeps-nlink [ "$(st %h "$C/n")" = 3 ]

# ---- -o default_permissions,allow_other: the kernel enforces the modes for other users
stop_node "$Q" "$NPID"
chmod 755 "$T"
DATA_DIR=$DATA must_start n1 -o default_permissions,allow_other
chmod 755 "$T/n1"
Q=$MNT; C=$Q/cache/px
nobody() { timeout -k 2 10 setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
echo secret >"$C/secret" && chmod 600 "$C/secret"
echo open >"$C/open" && chmod 644 "$C/open"
check other-user-reads-0644 [ "$(nobody cat "$C/open" 2>&1)" = open ]
out=$(nobody cat "$C/secret" 2>&1)
checke other-user-denied-0600 '[[ "$out" == *"Permission denied"* ]]' || note "got: $out"
out=$(nobody chmod 666 "$C/open" 2>&1)
checke other-user-chmod-denied '[[ "$out" == *"not permitted"* ]]' || note "got: $out"
chown 65534:65534 "$C/secret"
check owner-reads-after-chown [ "$(nobody cat "$C/secret" 2>&1)" = secret ]
nobody chmod 640 "$C/secret" && check owner-chmods [ "$(st %a "$C/secret")" = 640 ]
out=$(nobody chown 0 "$C/secret" 2>&1)
checke owner-cannot-give-away '[[ "$out" == *"not permitted"* ]]' || note "got: $out"
out=$(nobody sh -c "echo x > '$C/nope'" 2>&1)
checke other-user-cannot-create-in-0755-dir '[[ "$out" == *"Permission denied"* ]]' || note "got: $out"

finish
