#!/usr/bin/env bash
# tests/integration/shards.sh — a 3-node cluster of 16 shards (tools/cluster up 3, the
# default --shards): units of every namespace spread over the shards and served from every
# mount; namespace roots list and count every shard; a rename across shards fails with EXDEV
# (and mv still moves by copying); a rename inside a unit works; config/.events at the root
# streams changes of several shards, while .events@REV of the root is refused (EOPNOTSUPP)
# and a top-level directory's .events@REV replays; .cluster/shards lists 16 shards, each with
# a leader; a restart with another --shards is refused. Every wait bounded; lib_cluster.sh's
# trap takes the cluster down.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
cluster_up 3

# ---- 16 shards, each with a leader known on every node
all_led() { [ "$(awk '$2 != 0' "$1/.cluster/shards" 2>/dev/null | wc -l)" = 16 ]; }
wait_for 20 all_led "${M[1]}" && wait_for 5 all_led "${M[3]}" && ok sixteen-shards-led ||
    not_ok sixteen-shards-led "$(cat "${M[1]}/.cluster/shards" 2>&1)"
note "leaders: $(awk '{print $2}' "${M[1]}/.cluster/shards" | sort | uniq -c | tr -s ' \n' ' ')"

# ---- 40 cache keys and 12 config dirs written round-robin over the mounts land on several
# shards (their commit indexes move more than the session renewals every shard gets), and
# every mount reads every one
awk '{print $5}' "${M[1]}/.cluster/shards" >"$T/before"
for i in $(seq 1 40); do echo "v$i" >"${M[$(( i % 3 + 1 ))]}/cache/k$i"; done
for i in $(seq 1 12); do
    mkdir -p "${M[$(( i % 3 + 1 ))]}/config/app$i" && echo "c$i" >"${M[$(( i % 3 + 1 ))]}/config/app$i/key"
done
bad=0
for n in 1 2 3; do
    for i in $(seq 1 40); do [ "$(cat "${M[$n]}/cache/k$i" 2>/dev/null)" = "v$i" ] || bad=$((bad + 1)); done
    for i in $(seq 1 12); do [ "$(cat "${M[$n]}/config/app$i/key" 2>/dev/null)" = "c$i" ] || bad=$((bad + 1)); done
done
checke units-read-everywhere '[ $bad = 0 ]' || note "$bad reads wrong"
awk '{print $5}' "${M[1]}/.cluster/shards" | paste "$T/before" - >"$T/delta"
used=$(awk '{d[NR] = $2 - $1} END {m = d[1]; for (i in d) if (d[i] < m) m = d[i];
                                    for (i in d) if (d[i] > m + 2) n++; print n + 0}' "$T/delta")
checke units-spread-over-shards '[ "$used" -ge 8 ]' || note "only $used shards took writes: $(cat "${M[1]}/.cluster/shards")"
checke root-lists-all-shards '[ "$(ls "${M[2]}/cache" | grep -c "^k")" = 40 ] && [ "$(ls "${M[3]}/config" | grep -c "^app")" = 12 ]'
checke root-links-all-shards '[ "$(stat -c %h "${M[1]}/config")" = $((2 + 12)) ]' ||
    note "config/ has $(stat -c %h "${M[1]}/config") links"

# ---- renames: inside a unit one command; between units on two shards EXDEV (files and
# directories alike), and mv copies
SHARDOF=${SHARDOF:-$(dirname "$QUORUMFS")/shardof}
mkdir -p "${M[1]}/cache/dir" && echo a >"${M[1]}/cache/dir/x"
mv "${M[2]}/cache/dir/x" "${M[2]}/cache/dir/y" 2>/dev/null
checke rename-inside-unit '[ "$(cat "${M[3]}/cache/dir/y" 2>/dev/null)" = a ] && [ ! -e "${M[3]}/cache/dir/x" ]'
other() {   # other NS NAME: a top-level name on another shard than NAME's
    local want j
    want=$("$SHARDOF" 16 "$1/$2")
    for j in $(seq 1 200); do
        [ "$("$SHARDOF" 16 "$1/x$j")" != "$want" ] && { echo "x$j"; return; }
    done
}
o=$(other cache k7)
r=$(fsop rename "${M[1]}/cache/k7" "${M[1]}/cache/$o")
checke file-across-shards-EXDEV '[ "${r%% *}" = EXDEV ] && [ "$(cat "${M[2]}/cache/k7")" = v7 ] && [ ! -e "${M[2]}/cache/$o" ]' ||
    note "rename: $r"
mv "${M[1]}/cache/k7" "${M[1]}/cache/$o" 2>/dev/null
checke mv-file-across-shards-copies '[ "$(cat "${M[2]}/cache/$o" 2>/dev/null)" = v7 ] && [ ! -e "${M[3]}/cache/k7" ]'
mkdir -p "${M[1]}/config/dmove" && echo d >"${M[1]}/config/dmove/k"
od=$(other config dmove)
r=$(fsop rename "${M[2]}/config/dmove" "${M[2]}/config/$od")
checke dir-across-shards-EXDEV '[ "${r%% *}" = EXDEV ]' || note "rename: $r"
mv "${M[2]}/config/dmove" "${M[2]}/config/$od" 2>/dev/null
checke mv-dir-across-shards-copies '[ "$(cat "${M[3]}/config/$od/k" 2>/dev/null)" = d ] && [ ! -e "${M[3]}/config/dmove" ]'

# ---- config/.events at the root streams several shards' changes; @REV of the root refused
(timeout 15 head -n 12 "${M[3]}/config/.events" >"$T/ev" 2>&1) &
evp=$!
wait_for 5 opened $evp "${M[3]}/config/.events" || note "the reader did not open config/.events"
for i in $(seq 1 12); do echo "new$i" >"${M[$(( i % 3 + 1 ))]}/config/app$i/key"; done
wait "$evp"
checke root-events-all-shards '[ "$(grep -c "put config/app" "$T/ev")" = 12 ]' || note "$(cat "$T/ev")"
r=$(timeout 5 head -c 100 "${M[1]}/config/.events@1" 2>&1)
checke root-events-at-rev-refused '[[ "$r" == *"not supported"* ]]' || note "got: $r"
rev=$(getfattr --only-values -n user.version "${M[1]}/config/app3/key" 2>/dev/null)
r=$(timeout 5 head -n 1 "${M[2]}/config/app3/.events@$((rev - 1))" 2>&1)
checke dir-events-at-rev '[[ "$r" == "$rev put config/app3/key" ]]' || note "got: $r (rev $rev)"

# ---- queues and locks on many shards, across mounts
for i in $(seq 1 8); do mkdir "${M[1]}/queues/q$i" && echo "m$i" >"${M[2]}/queues/q$i/push"; done
got=0
for i in $(seq 1 8); do [ "$(timeout 5 cat "${M[3]}/queues/q$i/pop")" = "m$i" ] && got=$((got + 1)); done
checke queues-on-many-shards '[ $got = 8 ] && [ "$(ls "${M[2]}/queues" | grep -c "^q")" = 8 ]'
held=0
# each holder lets go when told (at most after 30 s)
for i in $(seq 1 6); do
    (flock "${M[1]}/locks/l$i" sh -c "touch '$T/held$i'; j=0; while [ ! -e '$T/unlock' ] && [ \$j -lt 300 ]; do sleep 0.1; j=\$((j + 1)); done") &
done
wait_for 15 sh -c "ls '$T'/held? 2>/dev/null | wc -l | grep -qx 6" || note "not every holder got its lock"
for i in $(seq 1 6); do flock -n -E 7 "${M[3]}/locks/l$i" true; [ $? = 7 ] && held=$((held + 1)); done
touch "$T/unlock"
wait
checke locks-on-many-shards '[ $held = 6 ] && [ "$(ls "${M[2]}/locks" | grep -c "^l")" = 6 ]'

# ---- a top-level config file's history (a@REV) is on the file's shard
for i in $(seq 1 8); do echo "first$i" >"${M[1]}/config/top$i"; echo "second$i" >"${M[1]}/config/top$i"; done
hist=0
for i in $(seq 1 8); do
    r=$(getfattr --only-values -n user.version "${M[2]}/config/top$i" 2>/dev/null)
    [ "$(cat "${M[3]}/config/top$i@$r" 2>/dev/null)" = "second$i" ] && hist=$((hist + 1))
done
checke top-level-history '[ $hist = 8 ]' || note "$hist of 8 top-level histories read"

# ---- settings on a namespace root hold for every shard; its user.version is the newest
setfattr -n user.ttl -v 600 "${M[1]}/cache" 2>/dev/null
for i in $(seq 1 6); do echo t >"${M[2]}/cache/ttl$i"; done
ttls=0
for i in $(seq 1 6); do [ "$(getfattr --only-values -n user.ttl "${M[3]}/cache/ttl$i" 2>/dev/null)" = 600 ] && ttls=$((ttls + 1)); done
checke root-ttl-every-shard '[ $ttls = 6 ]' || note "$ttls of 6 new keys got the root's TTL"
setfattr -x user.ttl "${M[1]}/cache" 2>/dev/null
v0=$(getfattr --only-values -n user.version "${M[1]}/config" 2>/dev/null)
for i in $(seq 1 8); do echo third >"${M[2]}/config/top$i"; done
v1=$(getfattr --only-values -n user.version "${M[3]}/config" 2>/dev/null)
newest=0
for f in $(find "${M[3]}/config" -type f -not -name '.*'); do
    r=$(getfattr --only-values -n user.version "$f" 2>/dev/null)
    [ -n "$r" ] && [ "$r" -gt "$newest" ] && newest=$r
done
checke root-version-newest '[ "$v1" -ge "$newest" ] && [ "$v1" -gt "$v0" ]' || note "root $v0 -> $v1, newest file $newest"

# ---- queue ids are each shard's own: a removal noted on one queue never removes another
# queue with the same id on another shard (an rmdir of a non-empty queue stays ENOTEMPTY)
for i in $(seq 1 12); do mkdir "${M[1]}/queues/z$i"; done
for i in $(seq 1 12); do echo "keep$i" >"${M[1]}/queues/z$i/push"; done
r=$($PY - "${M[2]}/queues" <<'PY'
import errno, os, sys
d = sys.argv[1]
# ack a message of z1 (this leaves a note), then try to rmdir every other (non-empty) queue
with open(os.path.join(d, "z1", "claim")) as f:
    mid = f.readline().split()[0]
os.unlink(os.path.join(d, "z1", "claimed", mid))
gone = []
for i in range(2, 13):
    try:
        os.rmdir(os.path.join(d, "z%d" % i))
        gone.append(i)
    except OSError as e:
        if e.errno != errno.ENOTEMPTY:
            gone.append(-e.errno)
print(" ".join(map(str, gone)) or "none")
PY
)
checke no-cross-shard-queue-removal '[ "$r" = none ]' || note "rmdir removed or failed oddly: $r"

# ---- the shard count is fixed at the first start
cl kill 3 >/dev/null
mkdir -p "$T/m3b"
r=$(timeout 20 "$QUORUMFS" mount "$T/m3b" --data "$C/n3/data" --id 3 --peers "$PEERS" --shards 4 2>&1)
checke other-shard-count-refused '[[ "$r" == *"--shards 16"* ]]' || note "got: $r"
start_out=$(cl_start 3) && ok restart-same-shards ||
    not_ok restart-same-shards "$start_out"
wait_for 20 sh -c "[ \"\$(cat '${M[3]}/cache/k40' 2>/dev/null)\" = v40 ]" && ok restarted-node-reads ||
    not_ok restarted-node-reads "node 3 does not serve cache/k40 after its restart"

finish
