#!/usr/bin/env bash
# tests/integration/search.sh — FILE-API §9 (search/) on real mounts (docs/SEARCH.md): a
# corpus of this machine's man pages ($SEARCH_DOCS documents, default 2000, each cut at
# 8 KiB: about 11 MB, chosen so the whole script stays near 30 s on a loaded 2-core machine)
# indexed on the embedded node (1 shard) and on a 3-node cluster with 16 shards (node 3
# stopped for the last 15% of the writes, then restarted: it catches up); 100
# generated queries (plain terms, +must, -mustnot, "phrases", prefix*, limit:N) give the
# same ranked lists on both, equal to a reference BM25 written in Python
# (tests/integration/search_bm25.py), and the same answers byte for byte (snippets too);
# after kill -9 and a restart that restores a snapshot (taken every 4 MiB of log) and
# replays the rest, the embedded node answers the same again. Then: hand-made phrase,
# prefix, must and not cases with known answers; a replace and a rename seen at once by the
# same queries asked again on the same mount (their answers were in its query cache); a
# document's update, replace and delete seen at once by queries on every mount of the
# cluster, each of which asked them before the change too; saves (many writes
# make one version, EFBIG keeps the old document); the refusals (reserved names, bad
# queries, writes to a query, EXDEV between indexes, ENOTEMPTY, O_APPEND not supported).
# Every wait is bounded; the traps unmount and stop everything under $T. Ports (cluster
# part): free ones in $CLUSTER_PORTS (default 22000-22999, the search helper's range).
export CLUSTER_PORTS=${CLUSTER_PORTS:-22000-22999}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

REF="$PY $QI_DIR/search_bm25.py"
NDOCS=${SEARCH_DOCS:-2000}
CORPUS=$T/corpus
QUERIES=$T/queries.txt

# ---------------------------------------------------------------- corpus and queries
if out=$($REF corpus "$CORPUS" "$NDOCS" 8192 2>&1); then
    ok corpus
else
    not_ok corpus "$out"
    finish
fi
check queries $REF queries "$CORPUS" 100 12 "$QUERIES"

# answers MNT OUTDIR: every query's answer from index MNT, one file per query number.
answers() {
    local mnt=$1 out=$2 i=0 kind q
    mkdir -p "$out"
    while IFS=$'\t' read -r kind q; do
        i=$((i + 1))
        timeout 20 cat "$mnt/.q/$q" >"$out/$i" 2>&1 || echo "error $?" >>"$out/$i"
    done <"$QUERIES"
}

# ---------------------------------------------------------------- the embedded node
# snapshots every 4 MiB of log: the corpus (about 11 MB) makes some, so a restart below
# restores the search/ section from a snapshot (re-indexing it) and replays the rest
must_start emb --snapshot-bytes 4194304
E=$MNT/search
check emb-mkdir mkdir "$E/man"
out=$(timeout 120 $REF load "$E/man" "$CORPUS" 8 2>&1) && ok emb-load || not_ok emb-load "$out"
note "embedded node: $out"
checke emb-ls '[ "$(ls "$E/man" | wc -l)" = "$NDOCS" ]'
out=$(timeout 120 $REF check "$CORPUS" "$QUERIES" "$E/man" 2>&1) && ok emb-ranked-lists-equal-reference ||
    not_ok emb-ranked-lists-equal-reference "$out"
note "${out##*$'\n'}"
answers "$E/man" "$T/ans-emb"
crash_node "$MNT" "$NPID"
must_start emb --snapshot-bytes 4194304
checke emb-snapshot-taken '[ -n "$(ls "$DATA/snap" 2>/dev/null)" ]'
answers "$E/man" "$T/ans-emb2"
out=$(diff -r "$T/ans-emb" "$T/ans-emb2" 2>&1 | head -5)
checke restart-same-answers '[ -z "$out" ]' || note "$out"

# ---------------------------------------------------------------- 16 shards, 3 mounts
# snapshots every 256 KiB of log, so that node 3, stopped while documents are written,
# may catch up from a snapshot (or from the log: both must give the same index)
cluster_up 3 --wait 60 --node-args "--shards 16 --snapshot-bytes 262144"
C1=${M[1]}/search
C2=${M[2]}/search
C3=${M[3]}/search
FIRST=$((NDOCS * 85 / 100))
checke cluster-16-shards '[ "$(wc -l <"${M[1]}/.cluster/shards")" -ge 16 ]'
check cluster-mkdir mkdir "$C1/man"
out=$(timeout 180 $REF load "$C1/man" "$CORPUS" 16 0 "$FIRST" 2>&1) && ok cluster-load || not_ok cluster-load "$out"
note "3 nodes, 16 shards: $out"
out=$(cl kill 3 2>&1) && ok cluster-kill-3 || not_ok cluster-kill-3 "$out"
out=$(timeout 180 $REF load "$C2/man" "$CORPUS" 16 "$FIRST" "$NDOCS" 2>&1) &&
    ok cluster-load-without-3 || not_ok cluster-load-without-3 "$out"
out=$(cl_start 3 60) && ok cluster-restart-3 || not_ok cluster-restart-3 "$out"
checke cluster-ls-other-mounts '[ "$(ls "$C2/man" | wc -l)" = "$NDOCS" ] && [ "$(ls "$C3/man" | wc -l)" = "$NDOCS" ]'
out=$(timeout 180 $REF check "$CORPUS" "$QUERIES" "$C1/man" "$C2/man" "$C3/man" 2>&1) &&
    ok cluster-ranked-lists-equal-reference || not_ok cluster-ranked-lists-equal-reference "$out"
note "${out##*$'\n'}"
answers "$C3/man" "$T/ans-c3"
out=$(diff -r "$T/ans-emb" "$T/ans-c3" 2>&1 | head -5)
checke same-answers-1-and-16-shards '[ -z "$out" ]' || note "$out"

# ---------------------------------------------------------------- operators
S=$E/ops
mkdir "$S"
printf 'the cat sat on the mat\n' >"$S/d1"
printf 'the dog sat on the log\n' >"$S/d2"
printf 'cats and dogs living together\n' >"$S/d3"
printf 'a catalog of cat pictures: cat cat\n' >"$S/d4"
printf 'Le CAFÉ est très bon; 日本語のテキスト\n' >"$S/d5"
docs() { timeout 20 cat "$S/.q/$1" | cut -f2 | sort | tr '\n' ' '; }
q_phrase='"sat on the mat"'
q_order='"mat the"'
checke phrase '[ "$(docs "$q_phrase")" = "d1 " ]'
checke phrase-order '[ "$(docs "$q_order")" = "" ]'
checke prefix '[ "$(docs "cat*")" = "d1 d3 d4 " ]'
checke must '[ "$(docs "+sat cat")" = "d1 d2 " ]'
checke not '[ "$(docs "the -dog")" = "d1 " ]'
checke must-prefix-not '[ "$(docs "+cat* -catalog")" = "d1 d3 " ]'
checke folded-query '[ "$(docs "cafe")" = "d5 " ]'
checke cjk-bigrams '[ "$(docs "日本語")" = "d5 " ]'
checke limit '[ "$(timeout 20 cat "$S/.q/the limit:1" | wc -l)" = 1 ]'
line=$(timeout 20 cat "$S/.q/cat" | head -1)
checke best-first-with-snippet '[ "$(echo "$line" | cut -f2)" = d4 ] && echo "$line" | grep -qF "[cat] [cat]"' ||
    note "$line"
# the same queries again on the same mount after a replace and a rename (the answers just
# read are in its query cache: they must not be served again)
printf 'a dogalog of dog pictures\n' >"$S/d4" &&
    checke replace-seen-by-cached-query '[ "$(docs "cat*")" = "d1 d3 " ] &&
        [ "$(timeout 20 cat "$S/.q/cat" | head -1 | cut -f2)" = d1 ]'
mv "$S/d1" "$S/d0" &&
    checke rename-seen-by-cached-query '[ "$(docs "+sat cat")" = "d0 d2 " ] &&
        [ "$(timeout 20 cat "$S/.q/cat" | head -1 | cut -f2)" = d0 ]'
mv "$S/d0" "$S/d1"

# ---------------------------------------------------------------- at once on every mount
# Each mount asks the query before the change too: its cached answer must not outlive it.
checke cached-before-update '[ -z "$(cat "$C1/man/.q/qwzxyv")" ] && [ -z "$(cat "$C2/man/.q/qwzxyv")" ]'
echo "qwzxyv first version" >"$C1/man/live" &&
    checke update-seen-on-other-mounts \
        '[ "$(cut -f2 "$C2/man/.q/qwzxyv")" = live ] && [ "$(cut -f2 "$C3/man/.q/qwzxyv")" = live ] &&
         [ "$(cut -f2 "$C1/man/.q/qwzxyv")" = live ]'
checke read-on-other-mount '[ "$(cat "$C3/man/live")" = "qwzxyv first version" ]'
echo "plughword second version" >"$C2/man/live" &&
    checke replace-seen-on-other-mount \
        '[ -z "$(cat "$C1/man/.q/qwzxyv")" ] && [ "$(cut -f2 "$C1/man/.q/plughword")" = live ] &&
         [ "$(cat "$C1/man/live")" = "plughword second version" ] &&
         [ -z "$(cat "$C3/man/.q/qwzxyv")" ] && [ "$(cut -f2 "$C2/man/.q/plughword")" = live ] &&
         [ "$(cut -f2 "$C3/man/.q/plughword")" = live ]'
rm "$C1/man/live" &&
    checke delete-seen-on-other-mount \
        '[ -z "$(cat "$C2/man/.q/plughword")" ] && [ ! -e "$C2/man/live" ] && [ -z "$(cat "$C3/man/.q/plughword")" ]'

# ---------------------------------------------------------------- saves and sizes
$PY - "$S/multi" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(100):
    os.write(fd, b"chunk%d " % i)
os.close(fd)
EOF
checke many-writes-one-document '[ "$(docs chunk99)" = "multi " ] && [ "$(docs chunk0)" = "multi " ]'
expect_errno efbig EFBIG write "$S/multi" rep:1048577:x
checke efbig-keeps-old '[ "$(docs chunk50)" = "multi " ]'
$PY - "$S/d2" <<'EOF2'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.unlink(sys.argv[1])
os.write(fd, b"zombieword")
os.close(fd)
EOF2
checke save-after-rm-goes-nowhere '[ ! -e "$S/d2" ] && [ -z "$(docs zombieword)" ]'
checke cat-returns-document '[ "$(cat "$S/d1")" = "the cat sat on the mat" ]'

# ---------------------------------------------------------------- refusals
expect_errno reserved-doc-name "EINVAL|EISDIR" write "$S/.q" lit:x
expect_errno reserved-index-name EINVAL mkdir "$E/.q"
expect_errno unterminated-quote EINVAL read "$S/.q/\"open"
expect_errno only-negative EINVAL read "$S/.q/-cat"
expect_errno write-to-query EPERM write "$S/.q/cat" lit:x
expect_errno mkdir-in-index EPERM mkdir "$S/sub"
expect_errno file-at-top EPERM write "$E/loose" lit:x
expect_errno append-not-supported "EOPNOTSUPP|ENOTSUP" append "$S/d1" lit:x
expect_errno rename-across-indexes EXDEV rename "$S/d1" "$E/man/d1"
expect_errno rmdir-not-empty ENOTEMPTY rmdir "$S"
for f in d1 d2 d3 d4 d5 multi; do rm -f "$S/$f"; done
check rmdir-empty rmdir "$S"
finish
