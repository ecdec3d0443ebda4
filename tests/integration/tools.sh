#!/bin/bash
# tests/integration/tools.sh — real tools on cache/ and config/ (FILE-API §1 "POSIX
# metadata", "Saves", "Atomic replace", "Open files"; issue 8): tar x, cp -a and rsync -a of a
# tree with modes, mtimes, a subdirectory and symbolic links, compared with the source by
# content (diff -r) and metadata (mode, mtime, symlink targets); sed -i; vim; Python's
# json.dump, os.replace, os.utime, fstat after unlink, read-only mmap; chmod, chown, touch -d,
# directory link counts, ln -s/readlink; hard links and FIFOs give EPERM; git in cache/; the
# exact config revisions and .events lines of a tar x and a sed -i; metadata kept across a
# restart. Every tool must exit 0 and leave exactly the expected content.
. "$(dirname "$0")/lib.sh"

TOPS="$PY $QI_DIR/tools_ops.py"
tops() { timeout -k 2 60 $TOPS "$@" 2>&1; }
VIM=$(command -v vim || command -v vim.tiny || command -v vi)

# runok NAME CMD...: CMD bounded (120 s) with its output in $T/run.out; ok when it exits 0
# and printed nothing on stderr (a tool that "runs clean").
runok() {
    local _qn=$1 rc; shift
    timeout -k 5 120 "$@" >"$T/run.out" 2>"$T/run.err" </dev/null; rc=$?
    if [ $rc = 0 ] && [ ! -s "$T/run.err" ]; then ok "$_qn"; return 0; fi
    not_ok "$_qn" "exit $rc: $* :: $(head -c 300 "$T/run.err" | tr '\n' ' ')"
    return 1
}
# errno_of OP ARGS...: the first word tools_ops.py answered (OK or an errno name).
errno_of() { local r; r=$(tops "$@"); echo "${r%% *}"; }

must_start n1
Q=$MNT
DATA1=$DATA

# ---------------------------------------------------------------- the source tree (local)
S=$T/src
mkdir -p "$S/sub/deeper" "$S/sub/empty"
printf 'alpha\nbeta\ngamma\n' >"$S/a.txt";            chmod 0644 "$S/a.txt"
printf 'secret\n' >"$S/secret";                        chmod 0600 "$S/secret"
printf '#!/bin/sh\necho hi\n' >"$S/run.sh";           chmod 0755 "$S/run.sh"
printf 'in sub\n' >"$S/sub/b.txt";                     chmod 0640 "$S/sub/b.txt"
head -c 300000 /dev/urandom >"$S/sub/blob.bin";        chmod 0644 "$S/sub/blob.bin"
printf 'deep\n' >"$S/sub/deeper/c.txt"
: >"$S/sub/emptyfile"
ln -s a.txt "$S/link-file"
ln -s sub "$S/link-dir"
ln -s ../a.txt "$S/sub/up-link"
ln -s no-such-target "$S/dangling"
chmod 0750 "$S/sub/deeper"; chmod 0700 "$S/sub/empty"
touch -d '2021-03-04 05:06:07' "$S/a.txt" "$S/secret"
touch -d '2020-07-08 09:10:11' "$S/run.sh" "$S/sub/b.txt" "$S/sub/blob.bin" "$S/sub/emptyfile"
touch -d '2019-12-31 23:59:58' "$S/sub/deeper/c.txt"
touch -h -d '2018-01-02 03:04:05' "$S/link-file" "$S/link-dir" "$S/sub/up-link" "$S/dangling"
touch -d '2017-05-06 07:08:09' "$S/sub/deeper" "$S/sub/empty"
touch -d '2016-02-03 04:05:06' "$S/sub"
tar czf "$T/src.tgz" -C "$S" . || { not_ok setup-tar "tar czf of the source failed"; finish; }
$TOPS meta "$S" nolinktime >"$T/meta.src"
$TOPS meta "$S" >"$T/meta.src.lt"

# same_tree NAME DIR: content (diff -r, symlinks compared as links) and metadata (mode, mtime
# seconds, symlink targets) of DIR equal the source; symlink mtimes checked separately.
same_tree() {
    local n=$1 d=$2
    checke "$n-diff-r" 'timeout 60 diff -r --no-dereference "$S" "$d" >"$T/diff.out" 2>&1' ||
        note "$(head -n 4 "$T/diff.out" | tr '\n' ' ')"
    timeout 60 $TOPS meta "$d" nolinktime >"$T/meta.got" 2>&1
    checke "$n-metadata" 'diff "$T/meta.src" "$T/meta.got" >"$T/meta.diff"' ||
        note "$(grep '^[<>]' "$T/meta.diff" | head -n 6 | tr '\n' ' ')"
    timeout 60 $TOPS meta "$d" 2>&1 | grep -- ' -> ' >"$T/meta.got.lt"
    checke "$n-symlink-mtimes" 'diff <(grep -- " -> " "$T/meta.src.lt") "$T/meta.got.lt" >"$T/meta.diff"' ||
        note "$(grep '^[<>]' "$T/meta.diff" | head -n 4 | tr '\n' ' ')"
}

# ---------------------------------------------------------------- tar, cp -a, rsync -a
for ns in cache config; do
    N=$Q/$ns
    mkdir "$N/x"
    runok "tar-x-$ns" tar xzf "$T/src.tgz" -C "$N/x"; same_tree "tar-x-$ns" "$N/x"
    runok "cp-a-in-$ns" cp -a "$S" "$N/cpa"; same_tree "cp-a-in-$ns" "$N/cpa"
    rm -rf "$T/back"
    runok "cp-a-out-$ns" cp -a "$N/cpa" "$T/back"; same_tree "cp-a-out-$ns" "$T/back"
    runok "rsync-a-$ns" rsync -a "$S/" "$N/rs/"; same_tree "rsync-a-$ns" "$N/rs"
    runok "rsync-a-again-$ns" rsync -a --itemize-changes "$S/" "$N/rs/"
    checke "rsync-a-again-transfers-nothing-$ns" '[ ! -s "$T/run.out" ]' ||
        note "second rsync itemized: $(head -n 5 "$T/run.out" | tr '\n' ' ')"
    runok "rsync-a-stats-$ns" rsync -a --stats "$S/" "$N/rs/"
    checke "rsync-a-stats-zero-files-$ns" 'grep -q "^Number of regular files transferred: 0$" "$T/run.out"' ||
        note "$(grep 'files transferred' "$T/run.out")"
    checke "no-temp-files-left-$ns" '[ -z "$(find "$N/x" "$N/cpa" "$N/rs" -name ".*" 2>&1)" ]' ||
        note "$(find "$N/x" "$N/cpa" "$N/rs" -name ".*" 2>&1 | head -n 3 | tr '\n' ' ')"
done

# rsync -aX (xattrs kept) within config/: user.version is read by name, not listed, so the
# copy does not try to set it (it failed with EPERM on every file, exit 23, before)
runok "rsync-aX-within-config" rsync -aX "$Q/config/rs/" "$Q/config/rsx/"
same_tree "rsync-aX-within-config" "$Q/config/rsx"
checke "user-version-read-by-name" '[ "$(getfattr --only-values -n user.version "$Q/config/rsx/$(ls "$Q/config/rsx" | head -n 1)" 2>/dev/null)" -gt 0 ]'

# ---------------------------------------------------------------- editors and sed -i
for ns in cache config; do
    N=$Q/$ns
    printf 'a=1\nb=2\nname=alpha\n' >"$N/ed.conf"; chmod 0640 "$N/ed.conf" 2>/dev/null
    runok "sed-i-$ns" sed -i 's/a=1/a=9/' "$N/ed.conf"
    checke "sed-i-content-$ns" '[ "$(cat "$N/ed.conf")" = "$(printf "a=9\nb=2\nname=alpha")" ]'
    checke "sed-i-keeps-mode-$ns" '[ "$(stat -c %a "$N/ed.conf")" = 640 ]' || note "mode $(stat -c %a "$N/ed.conf")"
    if [ -n "$VIM" ]; then
        printf 'a line\nanother a\n' >"$N/vi.txt"
        runok "vim-edit-save-$ns" "$VIM" -u NONE -es -c '%s/a/b/' -c wq "$N/vi.txt"
        checke "vim-edit-content-$ns" '[ "$(cat "$N/vi.txt")" = "$(printf "b line\nbnother a")" ]' ||
            note "got: $(head -c 80 "$N/vi.txt" | tr '\n' '|')"
        checke "vim-no-leftovers-$ns" '! ls -a "$N" | grep -q -e "\.swp$" -e "~$" -e "^4913$"' ||
            note "$(ls -a "$N" | tr '\n' ' ')"
    else
        not_ok "vim-edit-save-$ns" "no vim, vim.tiny or vi (tools/install-deps installs vim-tiny)"
    fi
done

# ---------------------------------------------------------------- Python
for ns in cache config; do
    N=$Q/$ns
    r=$(tops jsondump "$N/doc.json"); checke "py-json-dump-$ns" '[ "$r" = OK ]' || note "$r"
    echo old >"$N/target"
    r=$(tops replace "$N/target.tmp" "$N/target" "replaced value"); checke "py-os-replace-$ns" '[ "$r" = OK ]' || note "$r"
    r=$(tops utime "$N/target" 1500000000 1600000000)
    checke "py-os-utime-$ns" '[ "$r" = "OK 1500000000 1600000000" ] && [ "$(stat -c %Y "$N/target")" = 1600000000 ]' || note "$r"
    echo "still here" >"$N/gone"
    r=$(tops fstat-unlinked "$N/gone")
    checke "py-fstat-after-unlink-$ns" '[ "$r" = "OK nlink=0 size=11 data=still here" ]' || note "$r"
    checke "unlinked-name-gone-$ns" '[ ! -e "$N/gone" ]'
    head -c 300000 /dev/urandom >"$T/mm"; cp "$T/mm" "$N/mm"
    r=$(tops mmap "$N/mm"); checke "mmap-read-only-$ns" '[ "$r" = "OK 300000" ] && cmp -s "$N/mm" "$T/mm"' || note "$r"
    printf 'small\n' >"$N/mm2"
    r=$(tops mmap "$N/mm2"); checke "mmap-read-only-small-$ns" '[ "$r" = "OK 6" ]' || note "$r"
done

# ---------------------------------------------------------------- chmod, chown, touch -d,
# link counts, symlinks, node types
want_t=$(date -d '2020-01-02 03:04:05' +%s)
for ns in cache config; do
    N=$Q/$ns
    echo m >"$N/meta"; mkdir "$N/metadir"
    runok "chmod-$ns" chmod 0600 "$N/meta"
    checke "chmod-shows-$ns" '[ "$(stat -c %a "$N/meta")" = 600 ]' || note "mode $(stat -c %a "$N/meta")"
    runok "chmod-exec-$ns" chmod 0755 "$N/meta"
    checke "chmod-exec-shows-$ns" '[ "$(stat -c %a "$N/meta")" = 755 ] && [ -x "$N/meta" ]'
    runok "chmod-dir-$ns" chmod 0700 "$N/metadir"
    checke "chmod-dir-shows-$ns" '[ "$(stat -c %a "$N/metadir")" = 700 ]'
    runok "chown-$ns" chown 1234:2345 "$N/meta"
    checke "chown-shows-$ns" '[ "$(stat -c %u:%g "$N/meta")" = 1234:2345 ]' || note "owner $(stat -c %u:%g "$N/meta")"
    runok "chown-dir-$ns" chown 4321 "$N/metadir"
    checke "chown-dir-shows-$ns" '[ "$(stat -c %u "$N/metadir")" = 4321 ]'
    runok "touch-d-$ns" touch -d '2020-01-02 03:04:05' "$N/meta"
    checke "touch-d-shows-$ns" '[ "$(stat -c %Y "$N/meta")" = "$want_t" ]' || note "mtime $(stat -c %Y "$N/meta"), want $want_t"
    runok "touch-d-dir-$ns" touch -d '2020-01-02 03:04:05' "$N/metadir"
    checke "touch-d-dir-shows-$ns" '[ "$(stat -c %Y "$N/metadir")" = "$want_t" ]'
    checke "meta-value-unchanged-$ns" '[ "$(cat "$N/meta")" = m ]'
    echo m2 >"$N/meta"
    checke "write-keeps-mode-owner-$ns" '[ "$(stat -c "%a %u:%g" "$N/meta")" = "755 1234:2345" ]' || note "$(stat -c "%a %u:%g" "$N/meta")"
    checke "write-updates-mtime-$ns" '[ "$(stat -c %Y "$N/meta")" -gt "$want_t" ]'
    # the mode given at creation (open O_CREAT, mkdir) less the umask is kept
    (umask 077; echo u >"$N/um600"; mkdir "$N/umdir700")
    (umask 022; echo u >"$N/um644"; mkdir "$N/umdir755")
    checke "create-mode-umask-$ns" '[ "$(stat -c %a "$N/um600" "$N/um644" "$N/umdir700" "$N/umdir755" | tr "\n" " ")" = "600 644 700 755 " ]' ||
        note "modes: $(stat -c %a "$N/um600" "$N/um644" "$N/umdir700" "$N/umdir755" | tr '\n' ' ') (want 600 644 700 755)"
    # directory link counts: 2 + subdirectories (files do not count)
    mkdir -p "$N/lc/s1" "$N/lc/s2" "$N/lc/s3/inner"; echo f >"$N/lc/file"
    checke "dir-nlink-$ns" '[ "$(stat -c %h "$N/lc")" = 5 ] && [ "$(stat -c %h "$N/lc/s3")" = 3 ] && [ "$(stat -c %h "$N/lc/s1")" = 2 ]' ||
        note "nlink lc=$(stat -c %h "$N/lc") s3=$(stat -c %h "$N/lc/s3") s1=$(stat -c %h "$N/lc/s1")"
    rmdir "$N/lc/s2"
    checke "dir-nlink-after-rmdir-$ns" '[ "$(stat -c %h "$N/lc")" = 4 ]' || note "nlink $(stat -c %h "$N/lc")"
    checke "file-nlink-$ns" '[ "$(stat -c %h "$N/lc/file")" = 1 ]'
    # symbolic links
    echo pointed >"$N/pointee"
    runok "ln-s-$ns" ln -s pointee "$N/sl"
    checke "readlink-$ns" '[ "$(readlink "$N/sl")" = pointee ] && [ -L "$N/sl" ]'
    checke "symlink-follow-$ns" '[ "$(cat "$N/sl")" = pointed ]'
    runok "ln-s-dir-$ns" ln -s lc "$N/dl"
    checke "symlink-dir-follow-$ns" '[ "$(ls "$N/dl/" | tr "\n" " ")" = "file s1 s3 " ]' || note "$(ls "$N/dl/" 2>&1 | tr '\n' ' ')"
    runok "ln-s-dangling-$ns" ln -s "no/such" "$N/dang"
    checke "symlink-dangling-$ns" '[ -L "$N/dang" ] && [ ! -e "$N/dang" ] && [ "$(readlink "$N/dang")" = no/such ]'
    wantN="'$N/sl' -> 'pointee'"
    checke "symlink-stat-N-$ns" '[ "$(stat -c %N "$N/sl")" = "$wantN" ]' || note "$(stat -c %N "$N/sl")"
    runok "rm-symlink-$ns" rm "$N/sl"
    checke "rm-symlink-keeps-target-$ns" '[ ! -L "$N/sl" ] && [ "$(cat "$N/pointee")" = pointed ]'
    # hard links, FIFOs: EPERM
    checke "hard-link-EPERM-$ns" '[ "$(errno_of link "$N/pointee" "$N/hl")" = EPERM ] && [ ! -e "$N/hl" ]'
    checke "ln-hard-fails-$ns" '! timeout 10 ln "$N/pointee" "$N/hl2" 2>/dev/null && [ ! -e "$N/hl2" ]'
    checke "mkfifo-EPERM-$ns" '[ "$(errno_of mkfifo "$N/ff")" = EPERM ] && [ ! -e "$N/ff" ]'
    checke "mkfifo-cmd-fails-$ns" '! timeout 10 mkfifo "$N/ff2" 2>/dev/null && [ ! -e "$N/ff2" ]'
done

# ---------------------------------------------------------------- git in cache/
G=$Q/cache/repo
mkdir "$G"
GITC=(git -C "$G" -c user.name=Tester -c user.email=tester@example.com -c init.defaultBranch=main)
runok git-init "${GITC[@]}" init -q
printf 'hello\n' >"$G/README"; mkdir "$G/src"; printf 'int main(void) { return 0; }\n' >"$G/src/main.c"
runok git-add "${GITC[@]}" add .
runok git-commit "${GITC[@]}" commit -q -m "first commit"
printf 'more\n' >>"$G/README"
runok git-commit-a "${GITC[@]}" commit -q -a -m "second commit"
runok git-log "${GITC[@]}" log --format=%s
checke git-log-shows-commits '[ "$(cat "$T/run.out" | tr "\n" "|")" = "second commit|first commit|" ]' || note "$(head -c 200 "$T/run.out")"
runok git-status "${GITC[@]}" status --porcelain
checke git-status-clean '[ ! -s "$T/run.out" ]' || note "$(head -n 3 "$T/run.out" | tr '\n' ' ')"
runok git-fsck "${GITC[@]}" fsck --no-progress
runok git-show "${GITC[@]}" show HEAD:README
checke git-show-content '[ "$(cat "$T/run.out")" = "$(printf "hello\nmore")" ]'

# ---------------------------------------------------------------- config/: exact revisions
# and .events lines. Expectations from FILE-API §1/§5:
# - A save of a new file is ONE revision of it (one `put` line), whatever calls it took: tar
#   opens with O_CREAT|O_EXCL, writes, then futimens/fchown/fchmod on the descriptor and
#   closes; setting metadata is not a new value, so no revision of its own.
# - sed -i writes a new temporary file (sedXXXXXX) in the same directory: ONE revision of
#   the temp (put); then renames it over the target: a `delete` of the temp name plus ONE new
#   revision (`put`) of the target. So exactly 3 lines: put tmp, delete tmp, put target.
# - mkdir makes no revision (nothing here creates a directory inside the window).
has_open() {
    local p
    for p in $1 $(pgrep -P "$1" 2>/dev/null); do
        ls -l /proc/"$p"/fd 2>/dev/null | grep -q -- "$2" && return 0
    done
    return 1
}
ver() { timeout 10 getfattr --only-values -n user.version "$1" 2>/dev/null; }
E=$Q/config/ev
mkdir -p "$E"
timeout -k 2 600 cat "$E/.events" >"$T/ev" 2>"$T/ev.err" &
EVP=$!
wait_for 10 has_open $EVP .events || note "the .events reader did not open within 10 s"
sleep 0.2
EV_MARK=0
ev_sync() {   # a marker write; once its line is in, every earlier change is too
    EV_MARK=$((EV_MARK + 1))
    echo "mark $EV_MARK" >"$E/zmark" || return 1
    local r; r=$(ver "$E/zmark")
    [ -n "$r" ] || return 1
    wait_for 15 awk -v r="$r" '$1 == r && $2 == "put" && $3 ~ /(^|\/)ev\/zmark$/ { f = 1 } END { exit !f }' "$T/ev"
}
ev_begin() { ev_sync || note "marker event missing"; EV_FROM=$(wc -l <"$T/ev"); }
ev_end() {
    EV_OK=1; ev_sync || { EV_OK=0; note "marker event missing"; }
    tail -n +$((EV_FROM + 1)) "$T/ev" | awk '$3 !~ /(^|\/)ev\/zmark$/ { $1 = ""; sub(/^ /, ""); print }' >"$T/ev.cur"
}
mkdir -p "$T/one"; printf 'one file\n' >"$T/one/onefile"; chmod 0640 "$T/one/onefile"
touch -d '2022-02-02 02:02:02' "$T/one/onefile"
tar cf "$T/one.tar" -C "$T/one" onefile
ev_begin
runok tar-x-one-file-config tar xf "$T/one.tar" -C "$E"
ev_end
checke tar-x-one-file-one-revision '[ "$EV_OK" = 1 ] && [ "$(cat "$T/ev.cur")" = "put config/ev/onefile" ]' ||
    note "events: $(tr '\n' '|' <"$T/ev.cur")"
checke tar-x-one-file-metadata '[ "$(stat -c "%a %Y" "$E/onefile")" = "640 $(date -d "2022-02-02 02:02:02" +%s)" ] && [ "$(cat "$E/onefile")" = "one file" ]'
rv=$(ver "$E/onefile")
checke tar-x-one-file-history '[ "$(cat "$E/onefile@$rv" 2>&1)" = "one file" ]'
ev_begin
runok sed-i-config-events sed -i 's/one/two/' "$E/onefile"
ev_end
awk '{ p = $2; sub(/.*\//, "", p); if (p ~ /^sed/) p = "SEDTMP"; print $1, p }' "$T/ev.cur" >"$T/ev.norm"
checke sed-i-three-events '[ "$EV_OK" = 1 ] && [ "$(tr "\n" "|" <"$T/ev.norm")" = "put SEDTMP|delete SEDTMP|put onefile|" ]' ||
    note "events: $(tr '\n' '|' <"$T/ev.cur")"
checke sed-i-one-temp-name '[ "$(awk "\$2 ~ /sed/ { print \$2 }" "$T/ev.cur" | sort -u | wc -l)" = 1 ]'
checke sed-i-config-keeps-history '[ "$(cat "$E/onefile@$rv" 2>&1)" = "one file" ] && [ "$(cat "$E/onefile")" = "two file" ]'
kill $EVP 2>/dev/null; wait $EVP 2>/dev/null

# ---------------------------------------------------------------- kept across a restart
# POSIX metadata is replicated like data: after a clean stop and a new mount of the same
# data, the trees and the chmod/chown/touch results are unchanged.
for ns in cache config; do
    timeout 60 $TOPS meta "$Q/$ns/x" owners >"$T/before.$ns" 2>&1
    stat -c '%a %u:%g %Y' "$Q/$ns/meta" >>"$T/before.$ns"
done
if stop_node "$Q" "$NPID"; then
    DATA_DIR=$DATA1 must_start n1b
    Q=$MNT
    for ns in cache config; do
        timeout 60 $TOPS meta "$Q/$ns/x" owners >"$T/after.$ns" 2>&1
        stat -c '%a %u:%g %Y' "$Q/$ns/meta" >>"$T/after.$ns"
        checke "metadata-survives-restart-$ns" 'diff "$T/before.$ns" "$T/after.$ns" >"$T/meta.diff"' ||
            note "$(grep '^[<>]' "$T/meta.diff" | head -n 4 | tr '\n' ' ')"
        checke "symlinks-survive-restart-$ns" '[ "$(readlink "$Q/$ns/x/link-dir")" = sub ] && [ "$(cat "$Q/$ns/x/link-file")" = "$(cat "$S/a.txt")" ]'
    done
else
    not_ok stop-for-restart "clean stop of n1 failed"
fi

check daemon-alive pid_alive "$NPID"
finish
