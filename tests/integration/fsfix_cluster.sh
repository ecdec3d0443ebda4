#!/usr/bin/env bash
# tests/integration/fsfix_cluster.sh — the cluster half of fsfix.sh (QA pass of 2026-12-03,
# tests/integration/KNOWN.md), on `tools/cluster up 3`:
#   set-group-ID dirs  §1 POSIX metadata, §11: a g+s directory made on node 1 gives its group
#                      and g+s to entries made on node 2, as seen on node 3
#   no quorum          §1 Durability: "A write() already fails ... with EIO when the node
#                      knows it has no quorum" for the other writable files than saves
#                      (noquorum_write.sh has those): a queue's push file (a last line
#                      without a newline was buffered, the write() succeeded and only the
#                      close() failed) and a lock file held by exclusive create.
# Descriptors are opened while the cluster is whole, then nodes 2 and 3 are killed and node
# 1 reports the loss in .cluster/health. Every wait bounded; the traps take the cluster down.
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

# ---------------------------------------------------------------- no quorum
mkdir -p "$M1/queues/nq" || { not_ok setup "mkdir queues/nq failed"; finish; }
cat >"$T/nq.py" <<'EOF2'
# nq.py M1 CMD...: opens a queue's push file and takes a lock by exclusive create on M1,
# runs CMD (kills nodes 2 and 3), waits (20 s at most) until M1's health is not ok, then
# write()s each and prints "name=write:RESULT".
import errno, os, subprocess, sys, time
m1, cmd = sys.argv[1], sys.argv[2:]
fds = [("push-partial", os.open(m1 + "/queues/nq/push", os.O_WRONLY), b"half"),
       ("push-line", os.open(m1 + "/queues/nq/push", os.O_WRONLY), b"line\n"),
       ("lock", os.open(m1 + "/locks/nq", os.O_WRONLY | os.O_CREAT | os.O_EXCL), b"me\n")]
subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
end = time.time() + 20
while time.time() < end:
    try:
        if open(m1 + "/.cluster/health").read().strip() != "ok":
            break
    except OSError:
        break
    time.sleep(0.2)
def res(f):
    try:
        f(); return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
out = []
for name, fd, data in fds:
    out.append("%s=write:%s" % (name, res(lambda: os.write(fd, data))))
print(" ".join(out), flush=True)
# the descriptors are closed at exit (their close() may wait for the operation timeout)
EOF2
res=$(timeout -k 5 120 $PY "$T/nq.py" "$M1" bash -c "'$CL' kill 2 --dir '$C'; '$CL' kill 3 --dir '$C'" 2>&1)
note "$res"
no_quorum() { [ "$(timeout 5 cat "$M1/.cluster/health" 2>/dev/null)" != ok ]; }
checke node-1-knows-no-quorum no_quorum
checke push-partial-line-write-fails '[[ "$res" == *"push-partial=write:EIO"* ]]'
checke push-line-write-fails '[[ "$res" == *"push-line=write:EIO"* ]]'
checke lock-write-fails '[[ "$res" == *"lock=write:EIO"* ]]'

# back to a quorum: nothing of those writes was enqueued
cl_start 2 60 >/dev/null
cl_start 3 60 >/dev/null
all_ok() { [ "$(timeout 5 cat "$M1/.cluster/health" 2>/dev/null)" = ok ]; }
wait_for 60 all_ok || note "health not ok after the restarts: $(cat "$M1/.cluster/health" 2>&1 | head -3)"
check push-nothing-enqueued [ "$(timeout 10 cat "${M[2]}/queues/nq/len" 2>&1)" = "0 0 0" ] ||
    note "len: $(timeout 10 cat "${M[2]}/queues/nq/len" 2>&1)"

finish
