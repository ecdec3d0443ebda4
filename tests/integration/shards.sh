#!/usr/bin/env bash
# tests/integration/shards.sh — a 3-node cluster of 16 shards (tools/cluster up 3, the
# default --shards): units of every namespace spread over the shards and served from every
# mount; namespace roots list and count every shard; a rename across shards fails with EXDEV
# (and mv still moves by copying); a rename inside a unit works; config/.events at the root
# streams changes of several shards, while .events@REV of the root is refused (EOPNOTSUPP)
# and a top-level directory's .events@REV replays; .cluster/shards lists 16 shards, each with
# a leader; a restart with another --shards is refused. Every wait bounded; lib.sh's trap
# unmounts and kills everything under $T.
. "$(dirname "$0")/lib.sh"
CL="$QI_ROOT/tools/cluster"
C=$T/cluster
base=$(free_ports 3)
[ -n "$base" ] || { not_ok free-ports "no 3 free ports"; finish; }
up_out=$(CLUSTER_WAIT_S=30 timeout 90 "$CL" up 3 --dir "$C" --base-port "$base" --bin "$QUORUMFS" 2>&1)
if [ $? -ne 0 ]; then not_ok cluster-up "$up_out"; finish; fi
ok cluster-up
M=("" "$C/n1/mnt" "$C/n2/mnt" "$C/n3/mnt")

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

# ---- renames: inside a unit fine; across units on two shards EXDEV, and mv copies
mkdir -p "${M[1]}/cache/dir" && echo a >"${M[1]}/cache/dir/x"
mv "${M[2]}/cache/dir/x" "${M[2]}/cache/dir/y" 2>/dev/null
checke rename-inside-unit '[ "$(cat "${M[3]}/cache/dir/y" 2>/dev/null)" = a ] && [ ! -e "${M[3]}/cache/dir/x" ]'
exdev=$($PY - "${M[1]}/cache" <<'PY'
import errno, os, sys
d = sys.argv[1]
# find two top-level names on different shards: a rename between them gives EXDEV
for i in range(1, 41):
    try:
        os.rename(os.path.join(d, "k%d" % i), os.path.join(d, "moved%d" % i))
        os.rename(os.path.join(d, "moved%d" % i), os.path.join(d, "k%d" % i))
    except OSError as e:
        print("EXDEV" if e.errno == errno.EXDEV else errno.errorcode.get(e.errno, e.errno), i)
        break
else:
    print("none")
PY
)
checke rename-across-shards-EXDEV '[ "${exdev%% *}" = EXDEV ]' || note "got: $exdev"
i=${exdev#* }
mv "${M[1]}/cache/k$i" "${M[1]}/cache/moved$i" 2>/dev/null
checke mv-across-shards-copies '[ "$(cat "${M[2]}/cache/moved$i" 2>/dev/null)" = "v$i" ] && [ ! -e "${M[2]}/cache/k$i" ]'

# ---- config/.events at the root streams several shards' changes; @REV of the root refused
(timeout 15 head -n 12 "${M[3]}/config/.events" >"$T/ev" 2>&1) &
evp=$!
sleep 1
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
for i in $(seq 1 6); do
    (flock "${M[1]}/locks/l$i" sleep 3) &
done
sleep 1
for i in $(seq 1 6); do flock -n "${M[3]}/locks/l$i" true || held=$((held + 1)); done
wait
checke locks-on-many-shards '[ $held = 6 ] && [ "$(ls "${M[2]}/locks" | grep -c "^l")" = 6 ]'

# ---- the shard count is fixed at the first start
"$CL" kill 3 --dir "$C" >/dev/null
mkdir -p "$T/m3b"
r=$(timeout 20 "$QUORUMFS" mount "$T/m3b" --data "$C/n3/data" --id 3 --peers "1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))" --shards 4 2>&1)
checke other-shard-count-refused '[[ "$r" == *"--shards 16"* ]]' || note "got: $r"
start_out=$(CLUSTER_WAIT_S=30 timeout 60 "$CL" start 3 --dir "$C" 2>&1) && ok restart-same-shards ||
    not_ok restart-same-shards "$start_out"
wait_for 20 sh -c "[ \"\$(cat '${M[3]}/cache/k40' 2>/dev/null)\" = v40 ]" && ok restarted-node-reads ||
    not_ok restarted-node-reads "node 3 does not serve cache/k40 after its restart"

"$CL" down --dir "$C" >/dev/null 2>&1
finish
