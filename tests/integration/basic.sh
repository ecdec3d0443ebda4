#!/bin/bash
# tests/integration/basic.sh — FILE-API §1 and §10 with ordinary shell tools on one node: the
# root listing, protected top-level dirs, the name rules, echo/cat/ls/rm/mkdir/rmdir/cp/mv/
# stat, editor-style saves, .cluster/ status files, and the xattr error rules.
. "$(dirname "$0")/lib.sh"

must_start n1
Q=$MNT

# ---- root
got=$(ls "$Q" 2>&1 | tr '\n' ' ')
check root-ls [ "$got" = "cache config jobs locks logs queues search services " ] \
    || note "ls gave: $got"
got=$(ls -a "$Q" 2>&1 | tr '\n' ' ')
check root-ls-a [ "$got" = ". .. .cluster cache config jobs locks logs queues search services " ] \
    || note "ls -a gave: $got"
for d in cache config jobs locks logs queues search services; do
    [ -d "$Q/$d" ] || not_ok "root-$d-is-dir"
done
for d in cache config queues; do
    expect_errno "rmdir-top-$d-EPERM" EPERM rmdir "$Q/$d"
done
expect_errno rmdir-dot-cluster-EPERM EPERM rmdir "$Q/.cluster"
expect_errno rename-top-EPERM EPERM rename "$Q/cache" "$Q/cache2"
expect_errno rename-top-into-other-EPERM EPERM rename "$Q/logs" "$Q/config/logs"
checke top-dirs-still-there '[ -d "$Q/cache" ] && [ -d "$Q/logs" ] && [ ! -e "$Q/cache2" ]'

# ---- names
n255=$(printf 'n%.0s' $(seq 255))
n256=$(printf 'n%.0s' $(seq 256))
expect_errno name-255-bytes-ok OK write "$Q/cache/$n255" lit:long
check name-255-readable [ "$(cat "$Q/cache/$n255" 2>/dev/null)" = long ]
check name-255-listed sh -c "ls '$Q/cache' | grep -qx '$n255'"
expect_errno name-256-bytes ENAMETOOLONG\|EINVAL write "$Q/cache/$n256" lit:x
note "a 256-byte name gives: $ANS"
expect_errno name-leading-dot-create-ok OK write "$Q/cache/.hidden" lit:x
expect_errno name-leading-dot-mkdir-ok OK mkdir "$Q/cache/.hiddendir"
check name-leading-dot-readable [ "$(cat "$Q/cache/.hidden" 2>/dev/null)" = x ]
check name-leading-dot-listed sh -c "ls -a '$Q/cache' | grep -qx .hidden && ! ls '$Q/cache' | grep -qx .hidden"
rm -f "$Q/cache/.hidden"; rmdir "$Q/cache/.hiddendir"
expect_errno name-invalid-utf8-EINVAL EINVAL write "$Q/cache/bad"$'\xff\xfe' lit:x
expect_errno name-invalid-utf8-mkdir-EINVAL EINVAL mkdir "$Q/cache/bad"$'\xc3'
expect_errno name-utf8-ok OK write "$Q/cache/héllo-世界" lit:unicode
check name-utf8-readable [ "$(cat "$Q/cache/héllo-世界" 2>/dev/null)" = unicode ]
mkdir -p "$Q/config/app" 2>/dev/null
expect_errno name-at-in-config-EINVAL EINVAL write "$Q/config/app/a@b" lit:x
expect_errno name-at-in-config-mkdir-EINVAL EINVAL mkdir "$Q/config/app/d@1"
expect_errno name-at-in-cache-ok OK write "$Q/cache/a@b" lit:at
checke name-no-leftovers '! ls -a "$Q/cache" | grep -q -e "^\.hidden" -e "^bad" && ! ls -a "$Q/config/app" | grep -q @' \
    || note "$(ls -a "$Q/cache" "$Q/config/app" | tr '\n' ' ')"
rm -f "$Q/cache/a@b"

# ---- echo, cat, ls, rm
echo hello >"$Q/cache/k" && ok echo-set || not_ok echo-set
check cat-get [ "$(cat "$Q/cache/k" 2>&1)" = hello ]
check ls-shows-key sh -c "ls '$Q/cache' | grep -qx k"
check stat-size-matches [ "$(stat -c %s "$Q/cache/k")" = 6 ]
check stat-is-regular [ -f "$Q/cache/k" ]
echo "second line" >>"$Q/cache/k" && ok append-write || not_ok append-write
check append-content [ "$(cat "$Q/cache/k" 2>&1)" = $'hello\nsecond line' ]
check append-stat-size [ "$(stat -c %s "$Q/cache/k")" = 18 ]
: >"$Q/cache/k" && ok truncate-by-redirect || not_ok truncate-by-redirect
checke truncate-empty '[ "$(stat -c %s "$Q/cache/k")" = 0 ] && [ -z "$(cat "$Q/cache/k")" ]'
# `: >` with nothing written empties the file by the time close() returns, every time;
# `touch` of a new name is visible at once; a shell's `echo v >` is one config revision.
late=0
for i in $(seq 1 30); do
    echo "v$i" >"$Q/cache/k"; : >"$Q/cache/k"
    [ "$(stat -c %s "$Q/cache/k")" = 0 ] || late=$((late + 1))
done
check truncate-at-close-every-time [ "$late" = 0 ] || note "$late of 30 truncations late"
missing=0
for i in $(seq 1 30); do touch "$Q/cache/touched$i"; [ -e "$Q/cache/touched$i" ] || missing=$((missing + 1)); done
check touch-new-visible-at-once [ "$missing" = 0 ] || note "$missing of 30 touched files missing"
rm -f "$Q"/cache/touched*
mkdir -p "$Q/config/rev1"
echo a >"$Q/config/rev1/x"
r1=$(getfattr --only-values -n user.version "$Q/config/rev1/x" 2>/dev/null)
echo b >"$Q/config/rev1/x"; echo c >"$Q/config/rev1/x"
r3=$(getfattr --only-values -n user.version "$Q/config/rev1/x" 2>/dev/null)
check echo-is-one-revision [ "$((r3 - r1))" = 2 ]
rm -r "$Q/config/rev1"
echo hello >"$Q/cache/k"
rm "$Q/cache/k" && ok rm || not_ok rm
expect_errno rm-then-cat-ENOENT ENOENT read "$Q/cache/k"
check rm-not-listed sh -c "! ls '$Q/cache' | grep -qx k"
expect_errno rm-missing-ENOENT ENOENT unlink "$Q/cache/k"

# ---- mkdir, rmdir
mkdir "$Q/cache/dir" && ok mkdir || not_ok mkdir
check mkdir-is-dir [ -d "$Q/cache/dir" ]
echo x >"$Q/cache/dir/x"
check subdir-key [ "$(cat "$Q/cache/dir/x" 2>&1)" = x ]
expect_errno rmdir-nonempty-ENOTEMPTY ENOTEMPTY rmdir "$Q/cache/dir"
check rmdir-nonempty-kept [ "$(cat "$Q/cache/dir/x" 2>&1)" = x ]
rm "$Q/cache/dir/x"
rmdir "$Q/cache/dir" && ok rmdir-empty || not_ok rmdir-empty
check rmdir-gone [ ! -e "$Q/cache/dir" ]
mkdir -p "$Q/cache/a/b/c" && ok mkdir-p || not_ok mkdir-p
expect_errno mkdir-existing-EEXIST EEXIST mkdir "$Q/cache/a/b"

# ---- cp
echo copyme >"$Q/cache/src"
cp "$Q/cache/src" "$Q/cache/dst" && ok cp || not_ok cp
check cp-content [ "$(cat "$Q/cache/dst" 2>&1)" = copyme ]
head -c 300000 /dev/urandom >"$T/big.local"
cp "$T/big.local" "$Q/cache/big" && ok cp-300k-in || not_ok cp-300k-in
check cp-300k-content cmp -s "$T/big.local" "$Q/cache/big"
check cp-300k-stat [ "$(stat -c %s "$Q/cache/big")" = 300000 ]
cp "$Q/cache/big" "$T/big.back" && cmp -s "$T/big.local" "$T/big.back" && ok cp-300k-out || not_ok cp-300k-out

# ---- mv
mv "$Q/cache/dst" "$Q/cache/moved" && ok mv-rename || not_ok mv-rename
check mv-old-gone [ ! -e "$Q/cache/dst" ]
check mv-new-content [ "$(cat "$Q/cache/moved" 2>&1)" = copyme ]
echo other >"$Q/cache/over"
mv "$Q/cache/moved" "$Q/cache/over" && ok mv-replace || not_ok mv-replace
check mv-replace-content [ "$(cat "$Q/cache/over" 2>&1)" = copyme ]
mv "$Q/cache/over" "$Q/cache/a/b/c/deep" && ok mv-into-subdir || not_ok mv-into-subdir
check mv-into-subdir-content [ "$(cat "$Q/cache/a/b/c/deep" 2>&1)" = copyme ]
echo cfg >"$Q/config/app/one"
mv "$Q/config/app/one" "$Q/config/app/two" && ok mv-config || not_ok mv-config
checke mv-config-content '[ "$(cat "$Q/config/app/two" 2>&1)" = cfg ] && [ ! -e "$Q/config/app/one" ]'
expect_errno rename-across-namespaces EXDEV\|EPERM rename "$Q/cache/src" "$Q/config/app/src"
note "rename cache/ -> config/ gives: $ANS"
check rename-across-source-kept [ "$(cat "$Q/cache/src" 2>&1)" = copyme ]
check rename-across-no-target [ ! -e "$Q/config/app/src" ]

# ---- editor-style saves
echo "old text" >"$Q/cache/doc"
printf 'new text\n' >"$Q/cache/doc.tmp" && mv "$Q/cache/doc.tmp" "$Q/cache/doc" && ok tmp-then-mv || not_ok tmp-then-mv
checke tmp-then-mv-content '[ "$(cat "$Q/cache/doc" 2>&1)" = "new text" ] && [ ! -e "$Q/cache/doc.tmp" ]'
sed -i 's/new/edited/' "$Q/cache/doc" 2>"$T/sed.err" && ok sed-i-cache || not_ok sed-i-cache "$(cat "$T/sed.err")"
check sed-i-cache-content [ "$(cat "$Q/cache/doc" 2>&1)" = "edited text" ]
echo "port=80" >"$Q/config/app/conf"
v1=$(getfattr --only-values -n user.version "$Q/config/app/conf" 2>/dev/null)
sed -i 's/80/8080/' "$Q/config/app/conf" 2>"$T/sed.err" && ok sed-i-config || not_ok sed-i-config "$(cat "$T/sed.err")"
check sed-i-config-content [ "$(cat "$Q/config/app/conf" 2>&1)" = "port=8080" ]
v2=$(getfattr --only-values -n user.version "$Q/config/app/conf" 2>/dev/null)
checke sed-i-config-version-grows '[ -n "$v1" ] && [ -n "$v2" ] && [ "$v2" -gt "$v1" ]' || note "versions '$v1' -> '$v2'"
check no-sed-temp-left sh -c "! ls '$Q/cache' '$Q/config/app' | grep -q '^sed'"

# ---- .cluster/
C=$Q/.cluster
got=$(ls "$C" 2>&1 | tr '\n' ' ')
check cluster-ls [ "$got" = "health members metrics shards " ] || note "ls .cluster: $got"
for f in members shards health metrics; do
    check "cluster-$f-readable" grep -q . "$C/$f"
done
check cluster-health-ok [ "$(head -n1 "$C/health" 2>&1)" = ok ] || note "health: $(head -c 200 "$C/health")"
note "members: $(head -n 3 "$C/members" | tr '\n' '|')"
note "shards: $(head -n 3 "$C/shards" | tr '\n' '|')"
cp "$C/metrics" "$T/metrics" 2>/dev/null
check metrics-type-lines grep -q '^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* \(counter\|gauge\|histogram\|summary\|untyped\)$' "$T/metrics"
check metrics-counter grep -q '^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* counter$' "$T/metrics"
check metrics-samples grep -Eq '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+]?[0-9][0-9.eE+-]*$' "$T/metrics"
# Every non-comment line is a well-formed sample.
bad=$(grep -v '^#' "$T/metrics" | grep -v '^$' | grep -Evc '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? ([-+]?[0-9][0-9.eE+-]*|[-+]?Inf|NaN)( [0-9]+)?$')
check metrics-all-lines-valid [ "$bad" = 0 ] || note "$bad malformed metric lines, e.g. $(grep -v '^#' "$T/metrics" | grep -Ev '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? ' | head -n 2)"
# The counters move: operations done above are counted.
n1=$(grep -v '^#' "$T/metrics" | awk '{ s += $NF } END { printf "%.0f", s }')
for i in 1 2 3 4 5; do echo $i >"$Q/cache/m$i"; cat "$Q/cache/m$i" >/dev/null; done
n2=$(grep -v '^#' "$C/metrics" | awk '{ s += $NF } END { printf "%.0f", s }')
check metrics-move [ "$n2" != "$n1" ] || note "sum of samples stayed $n1"
for f in members shards health metrics; do
    expect_errno "cluster-$f-write-refused" EPERM\|EACCES\|EROFS write "$C/$f" lit:x
done
note ".cluster/health write gives: $ANS"
expect_errno cluster-create-refused EPERM\|EACCES\|EROFS write "$C/newfile" lit:x
expect_errno cluster-unlink-refused EPERM\|EACCES\|EROFS unlink "$C/health"
check cluster-health-intact [ "$(head -n1 "$C/health" 2>&1)" = ok ]

# ---- xattrs
echo v >"$Q/cache/x"
expect_errno xattr-unknown-ENODATA ENODATA getx "$Q/cache/x" user.no_such_attribute
expect_errno xattr-unknown-dir-ENODATA ENODATA getx "$Q/cache" user.no_such_attribute
expect_errno xattr-malformed-ttl-EINVAL EINVAL setx "$Q/cache/x" user.ttl abc
expect_errno xattr-ttl-set OK setx "$Q/cache/x" user.ttl 3600
expect_errno xattr-ttl-read OK getx "$Q/cache/x" user.ttl
note "user.ttl after setting 3600 reads: $ANS"
check value-unchanged-by-xattr [ "$(cat "$Q/cache/x" 2>&1)" = v ]
check getfattr-tool-works sh -c "getfattr -n user.version '$Q/config/app/conf' 2>/dev/null | grep -q '^user.version=\"[0-9][0-9]*\"'"

check daemon-alive pid_alive "$NPID"
finish
