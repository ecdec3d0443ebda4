#!/usr/bin/env bash
# tests/integration/qa_openfile.sh — FILE-API §1 "Open files" and "Read-only mmap of a file
# works": a descriptor opened before its file is rewritten (by a save through another open,
# here or on another node) keeps reading the version it opened; its fstat() must describe
# that version (st_size), so that mmap of the whole file and `wc -c` work. Today fstat
# reports the new value's size: mmap dies with SIGBUS when the new value is longer, shows a
# cut value when it is shorter. Embedded node and a 3-node cluster (rewrite on node 1,
# reader on node 2). qa helper, 2026-12-03 (qa-findings.md #7). Bounded; traps clean up.
: "${CLUSTER_PORTS:=26000-26999}"
export CLUSTER_PORTS
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

cat >"$T/mm.py" <<'EOF'
# mm.py WRITE_PATH READ_PATH OLD_LEN NEW_LEN: prints "fstat=N pread=N mmap=N ok|mixed".
import mmap, os, sys
wp, rp, old, new = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
os.makedirs(os.path.dirname(wp), exist_ok=True)
with open(wp, "wb") as f:
    f.write(b"1" * old)
fd = os.open(rp, os.O_RDONLY)
with open(wp, "wb") as f:        # a new save while fd stays open
    f.write(b"2" * new)
st = os.fstat(fd).st_size
data = os.pread(fd, 4 * max(old, new), 0)
print("fstat=%d pread=%d" % (st, len(data)), end=" ", flush=True)
m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
c = m[:]                          # SIGBUS here when fstat is larger than the version
print("mmap=%d %s" % (len(c), "ok" if c == b"1" * old else "differs-from-old-version"), flush=True)
EOF

# mm_case NAME WRITE_PATH READ_PATH OLD NEW: ok when fstat, pread and mmap all give OLD bytes
# of the old version.
mm_case() {
    local name=$1 out rc
    out=$(timeout -k 5 30 $PY "$T/mm.py" "$2" "$3" "$4" "$5" 2>&1); rc=$?
    if [ $rc = 0 ] && [ "$out" = "fstat=$4 pread=$4 mmap=$4 ok" ]; then ok "$name"
    else not_ok "$name" "rc=$rc (135 = SIGBUS) $out"; fi
}

# ---- embedded node
must_start e
E=$MNT
mm_case embedded-longer-rewrite "$E/cache/mm/a" "$E/cache/mm/a" 6000 9000
mm_case embedded-shorter-rewrite "$E/cache/mm/b" "$E/cache/mm/b" 9000 3000
mm_case embedded-config-longer "$E/config/mm/a" "$E/config/mm/a" 6000 9000

# shell: wc -c on a descriptor opened before the rewrite
mkdir -p "$E/cache/wc"
head -c 6000 /dev/zero >"$E/cache/wc/f"
exec 8<"$E/cache/wc/f"
head -c 9000 /dev/zero >"$E/cache/wc/f"
n=$(timeout 10 wc -c <&8)
exec 8<&-
checke embedded-wc-old-descriptor '[ "$n" = 6000 ]' || note "wc -c on the old descriptor: $n"

# ---- cluster: rewritten on node 1 while node 2 holds the descriptor
cluster_up 3 --wait 30
mm_case cluster-longer-rewrite "${M[1]}/cache/mm/a" "${M[2]}/cache/mm/a" 6000 9000
mm_case cluster-shorter-rewrite "${M[1]}/config/mm/b" "${M[2]}/config/mm/b" 9000 3000

finish
