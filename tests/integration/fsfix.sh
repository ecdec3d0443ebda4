#!/usr/bin/env bash
# tests/integration/fsfix.sh — differences between the daemon and FILE-API §1 that the QA
# pass of 2026-12-03 found without a script (tests/integration/KNOWN.md), one section per
# finding, on one embedded node:
#   reserved names    §1 Names / Bad input: creating a reserved name gives EINVAL, a control
#                     file is read-only (EPERM), whatever the operation reaches it with
#   removed cwd       §1 POSIX metadata ("as on a local filesystem"): a directory removed
#                     while a process is in it still stats (st_nlink 0), lists empty, and
#                     creating in it gives ENOENT, as on ext4
#   fstat of a save   §1 Saves: the writing process's fstat follows its own writes
#   set-group-ID dirs §1 POSIX metadata: entries made in a g+s directory take its group, new
#                     subdirectories inherit g+s, as on ext4 (without -o grpid)
. "$(dirname "$0")/lib.sh"

must_start n1
Q=$MNT
A=$Q/config/fx
K=$Q/cache/fx
mkdir -p "$A" "$K" && echo v >"$A/f" && echo v >"$K/f" || { not_ok setup "mkdir/echo failed"; finish; }

# ---------------------------------------------------------------- reserved names
# `.events@5` is a control file of config/fx (a watch from revision 5): it exists, so the
# kernel answers O_EXCL, mkdir and symlink with EEXIST itself and opens it for an
# O_CREAT without O_EXCL (the daemon never sees a create): a write to a read-only control
# file, EPERM, as `echo x > .events` (badinput.sh). A name that is reserved but no control
# file (`.events@abc`, `x@y`, `f@99` without that revision) reaches the daemon's create:
# EINVAL.
expect_errno reserved-events-rev-write          EPERM   write   "$A/.events@5" lit:x
expect_errno reserved-events-rev-excl           EEXIST  excl    "$A/.events@5"
expect_errno reserved-events-rev-mkdir          EEXIST  mkdir   "$A/.events@5"
expect_errno reserved-events-bad-rev-create     EINVAL  write   "$A/.events@abc" lit:x
expect_errno reserved-events-bad-rev-mkdir      EINVAL  mkdir   "$A/.events@abc"
expect_errno reserved-history-missing-create    EINVAL  write   "$A/f@99" lit:x
expect_errno reserved-at-symlink                EINVAL  symlink t "$A/x@y"
expect_errno reserved-rename-onto-events-rev    EINVAL  rename  "$A/f" "$A/.events@5"
# a control file cannot be moved away (was ENOENT: "no such file" for a file that cat reads)
expect_errno reserved-rename-events-away        EPERM   rename  "$A/.events" "$A/g"
expect_errno reserved-rename-events-rev-away    EPERM   rename  "$A/.events@5" "$A/g"
expect_errno reserved-rename-history-away       EPERM   rename  "$A/f@1" "$A/g" ||
    note "(f@1 may be missing if the first revision of config/fx/f is not 1: $(getfattr --absolute-names -n user.version --only-values "$A/f" 2>&1))"
expect_errno reserved-unlink-events-rev         EPERM   unlink  "$A/.events@5"
# nor get an attribute (was ENOENT), as chmod of it gives EPERM
expect_errno reserved-setxattr-events           EPERM   setx    "$A/.events" user.ttl 5
expect_errno reserved-removexattr-events-rev    EPERM   rmx     "$A/.events@5" user.ttl
check reserved-events-still-readable timeout 5 $PY -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
os.close(fd)' "$A/.events@5"
checke reserved-nothing-created '[ "$(ls -A "$A" | tr "\n" " ")" = "f " ]' || note "config/fx: $(ls -A "$A" | tr '\n' ' ')"

# ---------------------------------------------------------------- removed cwd
# (cd d; rmdir ../d; stat .) gave ESTALE since 0fce77b, ENOENT before; ext4: st_nlink 0.
mkdir -p "$K/rd" "$A/rd" "$K/fdd" "$A/rr/e" "$A/rr/n"
r=$(cd "$K/rd" && rmdir ../rd && stat -c '%h %F' . 2>&1)
check removed-cwd-stat [ "$r" = "0 directory" ] || note "cache: $r"
r=$(cd "$A/rd" && rmdir ../rd && stat -c '%h %F' . 2>&1)
check removed-cwd-stat-config [ "$r" = "0 directory" ] || note "config: $r"
mkdir -p "$K/rd"
r=$(cd "$K/rd" && rmdir ../rd && ls -A . 2>&1; echo "rc=$?")
check removed-cwd-ls-empty [ "$r" = "rc=0" ] || note "$r"
mkdir -p "$K/rd"
r=$(cd "$K/rd" && rmdir ../rd && $PY -c '
import errno, os
def e(f):
    try:
        f(); return "OK"
    except OSError as x:
        return errno.errorcode[x.errno]
print(e(lambda: open("x", "w").close()), e(lambda: os.mkdir("y")), e(lambda: os.symlink("t", "z")))' 2>&1)
check removed-cwd-create-enoent [ "$r" = "ENOENT ENOENT ENOENT" ] || note "$r"
r=$($PY -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
os.rmdir(sys.argv[1])
st = os.fstat(fd)
print(st.st_nlink, oct(st.st_mode & 0o170000))' "$K/fdd" 2>&1)
check removed-dir-fd-fstat [ "$r" = "0 0o40000" ] || note "$r"
# an empty directory replaced by rename (os.rename over it) is removed too
r=$(cd "$A/rr/e" && $PY -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$A/rr/n" "$A/rr/e" &&
    stat -c '%h' . 2>&1)
check replaced-cwd-stat [ "$r" = 0 ] || note "$r"
check replaced-dir-path-is-the-new-one [ "$(stat -c %h "$A/rr/e")" = 2 ]
# a file's path whose inode is gone still walks again (ESTALE inside, never seen)
echo a >"$K/rf"; exec 7<"$K/rf"; rm "$K/rf"; echo b >"$K/rf"
check replaced-file-path-stat [ "$(stat -c %s "$K/rf" 2>&1)" = 2 ]
exec 7<&-

# ---------------------------------------------------------------- fstat of a save
# A process's fstat (and stat) follows its own writes before the save is published; other
# processes see the published value until then (§1 Saves). Was: the old size throughout.
printf '%017d' 1 >"$K/sz"
cat >"$T/fstat.py" <<'EOF2'
import os, subprocess, sys, time
p = sys.argv[1]
old = os.stat(p)
out = []
w = os.open(p, os.O_RDWR | os.O_TRUNC)
out.append("trunc=%d" % os.fstat(w).st_size)
time.sleep(0.02)
os.write(w, b"ab")
st = os.fstat(w)
out.append("write=%d" % st.st_size)
out.append("mtime-moved=%d" % (st.st_mtime_ns > old.st_mtime_ns))
out.append("stat=%d" % os.stat(p).st_size)
other = subprocess.run(["stat", "-c", "%s", p], capture_output=True, text=True).stdout.strip()
out.append("other=%s" % other)
os.lseek(w, 100, os.SEEK_SET)
os.write(w, b"z")
out.append("sparse=%d" % os.fstat(w).st_size)
os.ftruncate(w, 5)
out.append("ftruncate=%d" % os.fstat(w).st_size)
os.close(w)
out.append("closed=%d" % os.stat(p).st_size)
a = os.open(p, os.O_WRONLY | os.O_APPEND)
os.write(a, b"12")
out.append("append=%d" % os.fstat(a).st_size)
os.close(a)
print(" ".join(out))
EOF2
r=$(timeout 30 $PY "$T/fstat.py" "$K/sz" 2>&1)
check fstat-follows-save [ "$r" = "trunc=0 write=2 mtime-moved=1 stat=2 other=17 sparse=101 ftruncate=5 closed=5 append=7" ] ||
    note "$r"
r=$(timeout 30 $PY -c '
import os, sys
f = open(sys.argv[1], "w")
f.write("x" * 10); f.flush()
print(os.fstat(f.fileno()).st_size, os.path.getsize(sys.argv[1]))
f.close()' "$A/newf" 2>&1)
check fstat-new-file-save [ "$r" = "10 10" ] || note "$r"

# ---------------------------------------------------------------- set-group-ID directories
# ext4 without -o grpid: an entry made in a g+s directory takes its group, a subdirectory
# is g+s too. Was: the creator's group (gid 0 here) and no g+s.
for d in "$K/sg" "$A/sg"; do
    mkdir "$d" && chgrp 1234 "$d" && chmod 2775 "$d" || not_ok sgid-setup "$d"
    touch "$d/f"; echo x >"$d/g"; (set -C; echo y >"$d/h"); mkdir "$d/d"; ln -s t "$d/l"
    $PY -c 'import os, sys; os.mknod(sys.argv[1], 0o100644)' "$d/m"
    mkdir -p "$d/d/e/f"
done
st() { stat -c "$1" "$2" 2>&1; }
for d in "$K/sg" "$A/sg"; do
    n=${d#$Q/}; n=${n%%/*}
    check sgid-chmod-$n [ "$(st %a:%g "$d")" = 2775:1234 ]
    checke sgid-files-take-group-$n '[ "$(stat -c %g "$d/f" "$d/g" "$d/h" "$d/m" "$d/l" | sort -u)" = 1234 ]' ||
        note "$(stat -c '%n %g' "$d/f" "$d/g" "$d/h" "$d/m" "$d/l")"
    check sgid-file-mode-$n [ "$(st %a "$d/f")" = 644 ]
    check sgid-subdir-inherits-$n [ "$(st %a:%g "$d/d")" = 2755:1234 ]
    check sgid-mkdir-p-inherits-$n [ "$(st %a:%g "$d/d/e/f")" = 2755:1234 ]
done
chmod g-s "$K/sg/d" && mkdir "$K/sg/d/plain"
check sgid-g-minus-s-stops-it [ "$(st %a:%g "$K/sg/d/plain")" = 755:0 ]
# replicated like other metadata: the same after a restart (log replay)
stop_node "$Q" "$NPID" || not_ok stop-n1
DATA_DIR=$DATA must_start n1
check sgid-restart-keeps [ "$(st %a:%g "$A/sg"):$(st %a:%g "$A/sg/d/e"):$(st %g "$A/sg/f")" = 2775:1234:2755:1234:1234 ]

# ---------------------------------------------------------------- a background job's copy
# The opener's close publishes even while a child (a background job, or a child between
# fork and exec holding close-on-exec descriptors) still holds the description: close()
# returns after the publish (FILE-API §1 Saves). A child that writes on after the parent's
# close makes a second revision (KNOWN.md). 05be248 waited for such children and was
# reverted: a background job delayed the publish until it exited.
echo old >"$A/bg"
r=$(bash -c 'exec 3>"$1"; echo new >&3; sleep 5 & p=$!; exec 3>&-; cat "$1"; kill $p' _ "$A/bg" 2>&1)
check background-job-does-not-delay-publish [ "$r" = new ] || note "$r"

# a FIFO's name is checked first too: reserved gives EINVAL, a valid one EPERM
r=$($PY -c 'import os, stat, sys; os.mknod(sys.argv[1], stat.S_IFIFO | 0o644)' "$A/a@b" 2>&1)
checke reserved-mkfifo-einval '[[ "$r" == *"Invalid argument"* ]]' || note "$r"
r=$($PY -c 'import os, stat, sys; os.mknod(sys.argv[1], stat.S_IFIFO | 0o644)' "$A/fifo" 2>&1)
checke valid-mkfifo-eperm '[[ "$r" == *"Operation not permitted"* ]] && [ ! -e "$A/fifo" ]' || note "$r"

finish
