#!/usr/bin/env bash
# tests/integration/qa_toplevel_rename.sh — FILE-API §1 "Atomic replace" (`sed -i`,
# `os.replace`, editors replace a value in one step) and §11 ("any operation works from any
# mount, with the same results as on the embedded node"): on a 3-node cluster (16 shards),
# `sed -i` and Python's tmp+os.replace of TOP-LEVEL cache/ and config/ files must work as
# they do on the embedded node. Today the temp name usually lands on another shard and the
# rename fails with EXDEV (docs/CLUSTER.md "Consequence"). Also checks that a failed save
# leaves no temp file behind. qa helper, 2026-12-03 (qa-findings.md #8). Bounded; the
# traps take the cluster down.
: "${CLUSTER_PORTS:=26000-26999}"
export CLUSTER_PORTS
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

# the embedded node does it (the reference behaviour)
must_start e
E=$MNT
fails=0
for i in 1 2 3 4 5 6; do
    echo "x$i" >"$E/cache/top$i" && timeout 20 sed -i "s/x$i/y$i/" "$E/cache/top$i" 2>/dev/null || fails=$((fails + 1))
done
checke embedded-sed-i-top-level '[ $fails = 0 ]' || note "$fails of 6 failed"
stop_node "$E" "$NPID" || crash_node "$E" "$NPID"

cluster_up 3 --wait 30
M1=${M[1]} M2=${M[2]}

# sed -i on top-level keys of cache/ and config/, from node 1; read back on node 2
for ns in cache config; do
    fails=0 wrong=0 errs=
    for i in 1 2 3 4 5 6; do
        echo "x$i" >"$M1/$ns/top$i" || { fails=$((fails + 1)); continue; }
        if ! out=$(timeout 20 sed -i "s/x$i/y$i/" "$M1/$ns/top$i" 2>&1); then
            fails=$((fails + 1)); errs=$out
        elif [ "$(cat "$M2/$ns/top$i")" != "y$i" ]; then
            wrong=$((wrong + 1))
        fi
    done
    checke "cluster-sed-i-top-level-$ns" '[ $fails = 0 ] && [ $wrong = 0 ]' ||
        note "$ns: $fails of 6 sed -i failed, $wrong read back wrong; last error: $errs"
    left=$(ls -A "$M1/$ns" | grep -c '^sed' || true)
    checke "no-sed-temp-left-$ns" '[ "$left" = 0 ]' || note "$(ls -A "$M1/$ns")"
done

# Python: write a temp file beside the key, os.replace it over the key
out=$(timeout -k 5 60 $PY - "$M1" <<'EOF' 2>&1
import errno, os, sys
m = sys.argv[1]
bad = []
for i in range(6):
    key = "%s/config/py%d" % (m, i)
    with open(key, "w") as f:
        f.write("old\n")
    tmp = "%s/config/.py%d.tmp" % (m, i)
    with open(tmp, "w") as f:
        f.write("new\n")
    try:
        os.replace(tmp, key)
    except OSError as e:
        bad.append("py%d:%s" % (i, errno.errorcode[e.errno]))
        os.unlink(tmp)
print("failed=%d %s" % (len(bad), " ".join(bad)))
EOF
)
checke cluster-os-replace-top-level '[[ "$out" == "failed=0 "* ]]' || note "$out"

finish
