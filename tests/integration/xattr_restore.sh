#!/usr/bin/env bash
# tests/integration/xattr_restore.sh — FILE-API §1 POSIX metadata ("tar x, cp -a, rsync -a
# ... run clean") and Bad input (EPERM is for FIFOs, device nodes and sockets): restoring a
# backup of config/ with its extended attributes must run clean. Before this session:
#  - mknod(S_IFREG), a plain regular-file create, gave EPERM, and GNU `tar --xattrs -x`
#    creates every regular file that way, so it restored no file at all;
#  - `rsync -aX` exited 23: listxattr advertised the read-only user.version, whose set fails.
# Found by the qa helper, 2026-12-03. Embedded node; bounded; the trap unmounts.
. "$(dirname "$0")/lib.sh"

must_start e
E=$MNT

# mknod(2) of a regular file (fsop.py has no mknod: python directly)
out=$(timeout 20 $PY -c 'import os, stat, sys
try:
    os.mknod(sys.argv[1], 0o644 | stat.S_IFREG); print("OK")
except OSError as e:
    print(os.strerror(e.errno))' "$E/cache/reg2" 2>&1)
checke mknod-s-ifreg-creates '[ "$out" = OK ] && [ -f "$E/cache/reg2" ]' || note "os.mknod(S_IFREG): $out"

# a small tree in config/ with a version attribute, backed up with its xattrs, restored beside
mkdir -p "$E/config/app/sub" && echo url >"$E/config/app/db" && echo 5 >"$E/config/app/sub/pool" ||
    { not_ok setup "writes failed"; finish; }
timeout 30 tar --xattrs -C "$E/config" -cf "$T/backup.tar" app 2>"$T/tar-c.err"
checke tar-xattrs-create '[ $? = 0 ] && [ -s "$T/backup.tar" ]' || note "$(cat "$T/tar-c.err")"
mkdir -p "$E/config/restore"
timeout 30 tar --xattrs -C "$E/config/restore" -xf "$T/backup.tar" 2>"$T/tar-x.err"; rc=$?
checke tar-xattrs-extract-runs-clean '[ $rc = 0 ]' || note "exit $rc: $(head -3 "$T/tar-x.err")"
checke tar-xattrs-extract-restores-files \
    '[ "$(cat "$E/config/restore/app/db" 2>/dev/null)" = url ] && [ "$(cat "$E/config/restore/app/sub/pool" 2>/dev/null)" = 5 ]'

# rsync -aX within the mount
timeout 60 rsync -aX "$E/config/app/" "$E/config/copy/" 2>"$T/rsync.err"; rc=$?
checke rsync-aX-runs-clean '[ $rc = 0 ]' || note "exit $rc: $(head -2 "$T/rsync.err")"
checke rsync-aX-copies '[ "$(cat "$E/config/copy/sub/pool" 2>/dev/null)" = 5 ]'

finish
