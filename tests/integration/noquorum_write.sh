#!/usr/bin/env bash
# tests/integration/noquorum_write.sh — FILE-API §1 Durability: "A write() already fails
# ... with EIO when the node knows it has no quorum, so bash's built-in echo reports them";
# "Only a quorum lost between the last write() and the close() can fail there."
# Descriptors opened while the cluster is whole (an O_TRUNC save in config/ and cache/, an
# O_APPEND in config/, a queue's push file, a lock file), then nodes 2 and 3 are killed and node 1 reports the loss in
# .cluster/health; a write() through them must fail with EIO (before 7a123f3 the saves'
# write() succeeded and only close() failed, after 5 s, which bash's echo ignores: a script
# thought it saved). Then the old values must stay. Found by the qa helper, 2026-12-03. Every wait bounded; the traps take the cluster down.
: "${CLUSTER_PORTS:=26000-26999}"
export CLUSTER_PORTS
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

cluster_up 3 --wait 30
M1=${M[1]}
mkdir -p "$M1/config/nq" "$M1/cache/nq" "$M1/queues/nq" || { not_ok setup "mkdir failed"; finish; }
echo old >"$M1/config/nq/f" && echo old >"$M1/cache/nq/f" && echo old >"$M1/config/nq/a" ||
    { not_ok setup "initial writes failed"; finish; }

# descriptors opened while every node runs (python: its children close them before exec)
cat >"$T/nq.py" <<'EOF2'
# nq.py M1 CMD...: opens descriptors on M1 (config O_TRUNC save, cache O_TRUNC save, config
# O_APPEND, a queue's push file twice, a lock taken by exclusive create), runs CMD (kills nodes 2 and 3), waits (20 s at most) until M1's health
# is not ok, then write()s each and prints "name=write:RESULT,close:RESULT".
import errno, os, subprocess, sys, time
m1, cmd = sys.argv[1], sys.argv[2:]
fds = [("config", os.open(m1 + "/config/nq/f", os.O_WRONLY | os.O_TRUNC), b"new\n"),
       ("cache", os.open(m1 + "/cache/nq/f", os.O_WRONLY | os.O_TRUNC), b"new\n"),
       ("append", os.open(m1 + "/config/nq/a", os.O_WRONLY | os.O_APPEND), b"new\n"),
       ("push-partial", os.open(m1 + "/queues/nq/push", os.O_WRONLY), b"half"),
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
    w = res(lambda: os.write(fd, data))
    c = res(lambda: os.close(fd))
    out.append("%s=write:%s,close:%s" % (name, w, c))
print(" ".join(out), flush=True)
EOF2
res=$(timeout -k 5 120 $PY "$T/nq.py" "$M1" bash -c "'$CL' kill 2 --dir '$C'; '$CL' kill 3 --dir '$C'" 2>&1)
note "$res"
no_quorum() { [ "$(timeout 5 cat "$M1/.cluster/health" 2>/dev/null)" != ok ]; }
checke node-1-knows-no-quorum no_quorum
# an error known at write() is returned there (bash's echo ignores one from close())
checke config-save-write-fails '[[ "$res" == *"config=write:EIO"* ]]'
checke cache-save-write-fails '[[ "$res" == *"cache=write:EIO"* ]]'
checke config-append-write-fails '[[ "$res" == *"append=write:EIO"* ]]'
# the same for a queue's push file (a last line without a newline was buffered: its write()
# succeeded and only close() failed) and a lock file (fsfix helper, f1d976f)
checke push-partial-line-write-fails '[[ "$res" == *"push-partial=write:EIO"* ]]'
checke push-line-write-fails '[[ "$res" == *"push-line=write:EIO"* ]]'
checke lock-write-fails '[[ "$res" == *"lock=write:EIO"* ]]'

# back to a quorum: the old values stay
cl_start 2 60 >/dev/null
cl_start 3 60 >/dev/null
all_ok() { [ "$(timeout 5 cat "$M1/.cluster/health" 2>/dev/null)" = ok ]; }
wait_for 60 all_ok || note "health not ok after the restarts: $(cat "$M1/.cluster/health" 2>&1 | head -3)"
checke old-values-kept '[ "$(cat "${M[2]}/config/nq/f")" = old ] && [ "$(cat "${M[3]}/cache/nq/f")" = old ]' ||
    note "config/nq/f='$(cat "${M[2]}/config/nq/f" 2>&1)' cache/nq/f='$(cat "${M[3]}/cache/nq/f" 2>&1)'"
check push-nothing-enqueued [ "$(timeout 10 cat "${M[2]}/queues/nq/len" 2>&1)" = "0 0 0" ] ||
    note "len: $(timeout 10 cat "${M[2]}/queues/nq/len" 2>&1)"

finish
