#!/bin/bash
# tests/integration/badinput.sh — FILE-API §1 "bad input": a table of wrong operations, each
# with the exact errno an ordinary filesystem (or the contract) gives; afterwards the daemon
# still runs, nothing that existed changed, no junk was created, and the mount still works.
. "$(dirname "$0")/lib.sh"

must_start n1
Q=$MNT K=$Q/cache A=$Q/config/app C=$Q/.cluster

# Fixture.
echo v >"$K/k"
mkdir -p "$K/sub" "$K/empty" "$A"
echo inside >"$K/sub/x"
echo conf >"$A/f"
fver=$(getfattr --only-values -n user.version "$A/f" 2>/dev/null)
n255=$(printf 'n%.0s' $(seq 255))

t() { expect_errno "$@"; }
# --- name ----------------------------- errno -------------- op ------ args
t name-leading-dot-is-ordinary          OK                    write     "$K/.dot" lit:x
t name-leading-dot-mkdir-is-ordinary    OK                    mkdir     "$K/.dotdir"
t name-leading-dot-excl-is-ordinary     OK                    excl      "$K/.lock" lit:x
t name-events-reserved-in-config        EPERM\|EINVAL         write     "$A/.events" lit:x
t name-events-reserved-in-config-mkdir  EEXIST\|EINVAL        mkdir     "$A/.events"
t name-events-ordinary-in-cache         OK                    write     "$K/.events" lit:x
t name-invalid-utf8                     EINVAL                write     "$K/bad"$'\xff' lit:x
t name-overlong-utf8                    EINVAL                write     "$K/bad"$'\xc0\xaf' lit:x
t name-utf8-surrogate                   EINVAL                write     "$K/bad"$'\xed\xa0\x80' lit:x
t name-truncated-utf8                   EINVAL                mkdir     "$K/bad"$'\xe4\xb8'
t name-256-bytes                        ENAMETOOLONG\|EINVAL  write     "$K/${n255}x" lit:x
t name-at-in-config                     EINVAL                write     "$A/x@y" lit:x
t name-at-in-config-mkdir               EINVAL                mkdir     "$A/d@y"
t rename-to-leading-dot-is-ordinary     OK                    rename    "$K/k" "$K/.k"
t rename-back-from-leading-dot          OK                    rename    "$K/.k" "$K/k"
t rename-to-events-in-config            EINVAL                rename    "$A/f" "$A/.events"
t rename-to-invalid-utf8                EINVAL                rename    "$K/k" "$K/bad"$'\xff'
t rename-to-at-in-config                EINVAL                rename    "$A/f" "$A/g@1"
t value-over-1MiB-cache                 EFBIG                 write     "$K/k" pat:1048577:big
t value-over-1MiB-config                EFBIG                 write     "$A/f" pat:1048577:big
t ttl-not-a-number                      EINVAL                setx      "$K/k" user.ttl abc
t ttl-negative                          EINVAL                setx      "$K/k" user.ttl -5
t ttl-huge                              EINVAL                setx      "$K/k" user.ttl 99999999999999999999999
t ttl-empty                             EINVAL                setx      "$K/k" user.ttl ""
t ttl-with-unit                         EINVAL                setx      "$K/k" user.ttl 10s
t ttl-dir-not-a-number                  EINVAL                setx      "$K/sub" user.ttl abc
t ttl-sliding-not-a-bool                EINVAL                setx      "$K/sub" user.ttl_sliding abc
t write-cluster-health                  EPERM                 write     "$C/health" lit:x
t write-cluster-metrics                 EPERM                 write     "$C/metrics" lit:x
t open-wronly-cluster-members           EPERM                 openw     "$C/members"
t truncate-cluster-shards               EPERM                 truncate  "$C/shards" 0
t create-in-cluster                     EPERM                 write     "$C/new" lit:x
t mkdir-in-cluster                      EPERM                 mkdir     "$C/d"
t unlink-cluster-file                   EPERM                 unlink    "$C/health"
t write-config-events                   EPERM                 write     "$A/.events" lit:x
t mkdir-in-root                         EPERM                 mkdir     "$Q/newtop"
t create-in-root                        EPERM                 write     "$Q/newfile" lit:x
t rmdir-top-level                       EPERM                 rmdir     "$Q/cache"
t rename-top-level                      EPERM                 rename    "$Q/config" "$Q/cfg"
t write-a-directory                     EISDIR                write     "$K/sub" lit:x
t open-wronly-directory                 EISDIR                openw     "$K/sub"
t open-wronly-namespace-root            EISDIR                openw     "$K"
t unlink-a-directory                    EISDIR                unlink    "$K/sub"
t rename-file-over-directory            EISDIR                rename    "$K/k" "$K/empty"
t rmdir-a-file                          ENOTDIR               rmdir     "$K/k"
t create-through-a-file                 ENOTDIR               write     "$K/k/x" lit:x
t read-through-a-file                   ENOTDIR               read      "$K/k/x"
t mkdir-through-a-file                  ENOTDIR               mkdir     "$K/k/d"
t rename-directory-over-file            ENOTDIR               rename    "$K/empty" "$K/k"
t rmdir-nonempty                        ENOTEMPTY             rmdir     "$K/sub"
t rmdir-nonempty-config                 ENOTEMPTY             rmdir     "$A"
t rename-dir-over-nonempty-dir          ENOTEMPTY\|EEXIST     rename    "$K/empty" "$K/sub"
t rename-dir-into-itself                EINVAL                rename    "$K/sub" "$K/sub/inner"
t rename-across-namespaces              EXDEV\|EPERM          rename    "$K/k" "$A/k"
t excl-create-existing                  EEXIST                excl      "$K/k" lit:x
t mkdir-existing                        EEXIST                mkdir     "$K/sub"
t read-missing                          ENOENT                read      "$K/nope"
t unknown-xattr-get                     ENODATA               getx      "$K/k" user.nope
t unknown-xattr-get-dir                 ENODATA               getx      "$K/sub" user.nope
t unknown-xattr-get-config              ENODATA               getx      "$A/f" user.nope
t unknown-xattr-remove                  ENODATA               rmx       "$K/k" user.nope
# The contract names no errno for setting an unknown attribute; it must at least be refused
# (an accepted-but-dropped value would be silent data loss).
t unknown-xattr-set-refused             ENODATA\|ENOTSUP\|EINVAL\|EPERM setx "$K/k" user.nope 1
note "setting an unknown user. xattr gives: $ANS"
t unknown-xattr-still-unknown           ENODATA               getx      "$K/k" user.nope

# ---- afterwards: nothing changed, nothing created, the daemon runs, the mount works
check daemon-still-running pid_alive "$NPID"
check mount-still-mounted is_mounted "$Q"
check cache-value-intact [ "$(cat "$K/k" 2>&1)" = v ]
check subdir-intact [ "$(cat "$K/sub/x" 2>&1)" = inside ]
check config-value-intact [ "$(cat "$A/f" 2>&1)" = conf ]
# A failed oversized write puts the old value back as the newest revision (FILE-INTERFACE.md).
nver=$(getfattr --only-values -n user.version "$A/f" 2>/dev/null)
check config-version-not-older [ "${nver:-0}" -ge "${fver:-1}" ]
check config-newest-version-is-old-value [ "$(cat "$A/f@$nver" 2>&1)" = conf ]
rm -rf "$K/.dot" "$K/.dotdir" "$K/.lock" "$K/.events"   # the dot names made above are real
check no-junk-in-cache [ "$(ls -a "$K" | tr '\n' ' ')" = ". .. empty k sub " ] || note "cache: $(ls -a "$K" | tr '\n' ' ')"
check no-junk-in-config [ "$(ls -a "$A" | grep -v '^\.events' | tr '\n' ' ')" = ". .. f " ] || note "config/app: $(ls -a "$A" | tr '\n' ' ')"
check no-junk-in-root [ "$(ls "$Q" | tr '\n' ' ')" = "cache config jobs locks logs queues search services " ]
check no-junk-in-cluster [ "$(ls "$C" | tr '\n' ' ')" = "health members metrics shards " ]
echo after >"$K/after" && check mount-still-works [ "$(cat "$K/after" 2>&1)" = after ] || not_ok mount-still-works "write failed"
check health-still-ok [ "$(head -n1 "$C/health" 2>&1)" = ok ]

# ---- node types a replicated store does not keep: EPERM (FILE-API §1); symlinks: not yet
echo v >"$K/target"
r=$(ln "$K/target" "$K/hard" 2>&1); checke hardlink-EPERM '[[ "$r" == *"not permitted"* ]]' || note "$r"
r=$(mkfifo "$K/fifo" 2>&1); checke mkfifo-EPERM '[[ "$r" == *"not permitted"* ]]' || note "$r"
r=$($PY -c 'import os,sys
try: os.mknod(sys.argv[1], 0o600 | 0o60000, os.makedev(1, 3)); print("created")
except OSError as e: print(os.strerror(e.errno))' "$K/dev" 2>&1)
checke mknod-device-EPERM '[[ "$r" == *"not permitted"* ]]' || note "$r"
r=$($PY -c 'import socket,sys,os
s = socket.socket(socket.AF_UNIX)
try: s.bind(sys.argv[1]); print("bound")
except OSError as e: print(os.strerror(e.errno))' "$K/sock" 2>&1)
checke socket-EPERM '[[ "$r" == *"not permitted"* ]]' || note "$r"
# Symbolic links work in cache/ and config/ (posix.sh); a bad target is refused cleanly.
r=$(ln -s "$(head -c 5000 /dev/zero | tr '\0' a)" "$K/longsym" 2>&1); checke symlink-target-too-long '[ -n "$r" ] && [ ! -L "$K/longsym" ]' || note "$r"
r=$(ln -s target "$K/sym" 2>&1); checke symlink-works '[ -z "$r" ] && [ "$(readlink "$K/sym")" = target ]' || note "$r"
r=$(ln -s target "$MNT/queues/sym" 2>&1); checke symlink-in-queues-EPERM '[[ "$r" == *"not permitted"* ]]' || note "$r"
finish
