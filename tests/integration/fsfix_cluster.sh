#!/usr/bin/env bash
# tests/integration/fsfix_cluster.sh — the cluster half of fsfix.sh (QA pass of 2026-12-03,
# tests/integration/KNOWN.md), on `tools/cluster up 3`:
#   set-group-ID dirs  §1 POSIX metadata, §11: a g+s directory made on node 1 gives its group
#                      and g+s to entries made on node 2, as seen on node 3
#   namespace roots    a chmod/chgrp of cache/ and a new entry in config/ made through one
#                      node show at once in stat on the others (§1 Consistency)
# (its no-quorum cases for push and lock files are in noquorum_write.sh, with the saves')
# Every wait bounded; the traps take the cluster down.
: "${CLUSTER_PORTS:=28000-28999}"
export CLUSTER_PORTS
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

cluster_up 3 --wait 30
M1=${M[1]}

# ---------------------------------------------------------------- set-group-ID dirs
mkdir -p "$M1/config/sg" && chgrp 1234 "$M1/config/sg" && chmod 2775 "$M1/config/sg" ||
    not_ok sgid-setup "mkdir/chgrp/chmod on node 1 failed"
seen() { [ "$(stat -c %a:%g "${M[$1]}/config/sg" 2>/dev/null)" = 2775:1234 ]; }
wait_for 10 seen 2 || note "node 2 sees $(stat -c %a:%g "${M[2]}/config/sg" 2>&1)"
mkdir "${M[2]}/config/sg/d" && echo v >"${M[2]}/config/sg/f" || note "node 2: mkdir/echo failed"
check sgid-chmod-replicated [ "$(stat -c %a:%g "${M[3]}/config/sg" 2>&1)" = 2775:1234 ]
check sgid-subdir-made-elsewhere [ "$(stat -c %a:%g "${M[3]}/config/sg/d" 2>&1)" = 2755:1234 ]
check sgid-file-made-elsewhere [ "$(stat -c %g "${M[3]}/config/sg/f" 2>&1)" = 1234 ]
# a namespace root's chgrp and g+s reach every shard (were proposed to one: 2 of 12 new
# files took the group, and stat of the root did not show it)
chgrp 4321 "$M1/cache" && chmod g+s "$M1/cache" || not_ok sgid-root-setup "chgrp/chmod cache failed"
for i in $(seq 1 12); do : >"${M[2]}/cache/sgr$i"; done
gids=$(for i in $(seq 1 12); do stat -c %g "${M[3]}/cache/sgr$i" 2>&1; done | sort -u | tr '\n' ' ')
check sgid-root-all-shards [ "$gids" = "4321 " ] || note "gids: $gids"
check sgid-root-stat [ "$(stat -c %A:%g "$M1/cache" 2>&1)" = drwxr-sr-x:4321 ] ||
    note "$(stat -c %A:%g "$M1/cache" 2>&1)"
# ... and at once on the other nodes, whose kernels had the root's attributes from before
# (they were cached for an hour: FILE-API §1 Consistency)
for n in 2 3; do
    check "root-attrs-node$n" [ "$(stat -c %A:%g "${M[$n]}/cache" 2>&1)" = drwxr-sr-x:4321 ] ||
        note "node $n: $(stat -c %A:%g "${M[$n]}/cache" 2>&1)"
done
chmod g-s "$M1/cache" && chgrp 0 "$M1/cache" || note "restoring cache/ failed"
for n in 2 3; do
    check "root-attrs-restored-node$n" [ "$(stat -c %A:%g "${M[$n]}/cache" 2>&1)" = drwxr-xr-x:0 ]
done
# a namespace root's mtime follows entries made through another node
stat -c %Y "${M[3]}/config" >/dev/null; sleep 1.1
before=$(stat -c %Y "${M[3]}/config")
echo v >"${M[1]}/config/mtime-probe"
check root-mtime-other-node [ "$(stat -c %Y "${M[3]}/config" 2>&1)" -gt "$before" ]

finish
