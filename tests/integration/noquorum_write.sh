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
# nq.py M1 KILL HEAL: opens descriptors on M1 (config O_TRUNC save, cache O_TRUNC save,
# config O_APPEND, a queue's push file three times, a lock taken by exclusive create; "abc"
# written on the third push file at once), runs KILL (bash: kills nodes 2 and 3), waits (20 s
# at most) until M1's health is not ok, then write()s each, closes all but the third push
# file, runs HEAL (restarts them), waits (60 s at most) for health ok, closes the third push
# file, and prints "name=write:RESULT,close:RESULT" for each.
import errno, os, subprocess, sys, time
m1, kill, heal = sys.argv[1], sys.argv[2], sys.argv[3]
torn = os.open(m1 + "/queues/nq/push", os.O_WRONLY)
os.write(torn, b"abc")
fds = [("config", os.open(m1 + "/config/nq/f", os.O_WRONLY | os.O_TRUNC), b"new\n"),
       ("cache", os.open(m1 + "/cache/nq/f", os.O_WRONLY | os.O_TRUNC), b"new\n"),
       ("append", os.open(m1 + "/config/nq/a", os.O_WRONLY | os.O_APPEND), b"new\n"),
       ("push-partial", os.open(m1 + "/queues/nq/push", os.O_WRONLY), b"half"),
       ("push-line", os.open(m1 + "/queues/nq/push", os.O_WRONLY), b"line\n"),
       ("lock", os.open(m1 + "/locks/nq", os.O_WRONLY | os.O_CREAT | os.O_EXCL), b"me\n"),
       ("push-torn", torn, b"def\n")]
subprocess.run(["bash", "-c", kill], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
               timeout=60)
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
    c = res(lambda: os.close(fd)) if fd != torn else "later"
    out.append("%s=write:%s,close:%s" % (name, w, c))
# the torn line's buffered start ("abc") must not be enqueued by a close after the heal
subprocess.run(["bash", "-c", heal], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
               timeout=200)
end = time.time() + 60
while time.time() < end:
    try:
        if open(m1 + "/.cluster/health").read().strip() == "ok":
            break
    except OSError:
        pass
    time.sleep(0.3)
out.append("push-torn-after-heal=close:%s" % res(lambda: os.close(torn)))
print(" ".join(out), flush=True)
EOF2
res=$(timeout -k 5 360 $PY "$T/nq.py" "$M1" "'$CL' kill 2 --dir '$C'; '$CL' kill 3 --dir '$C'" \
      "CLUSTER_WAIT_S=60 '$CL' start 2 --dir '$C'; CLUSTER_WAIT_S=60 '$CL' start 3 --dir '$C'" 2>&1)
note "$res"
checke node-1-knew-no-quorum '[[ "$res" == *"config=write:EIO"* ]] || [[ "$res" == *"cache=write:EIO"* ]]'
# an error known at write() is returned there (bash's echo ignores one from close())
checke config-save-write-fails '[[ "$res" == *"config=write:EIO"* ]]'
checke cache-save-write-fails '[[ "$res" == *"cache=write:EIO"* ]]'
checke config-append-write-fails '[[ "$res" == *"append=write:EIO"* ]]'
# the same for a queue's push file (a last line without a newline was buffered: its write()
# succeeded and only close() failed) and a lock file (fsfix helper, f1d976f)
checke push-partial-line-write-fails '[[ "$res" == *"push-partial=write:EIO"* ]]'
checke push-line-write-fails '[[ "$res" == *"push-line=write:EIO"* ]]'
checke lock-write-fails '[[ "$res" == *"lock=write:EIO"* ]]'
# a line whose end a failed write() carried is dropped whole: its start, buffered before the
# quorum was lost, is not enqueued by the close after the heal (f1d976f enqueued "abc")
checke push-torn-write-fails '[[ "$res" == *"push-torn=write:EIO"* ]]'

# back to a quorum (nq.py restarted nodes 2 and 3): the old values stay
all_ok() { [ "$(timeout 5 cat "$M1/.cluster/health" 2>/dev/null)" = ok ]; }
wait_for 60 all_ok || note "health not ok after the restarts: $(cat "$M1/.cluster/health" 2>&1 | head -3)"
checke old-values-kept '[ "$(cat "${M[2]}/config/nq/f")" = old ] && [ "$(cat "${M[3]}/cache/nq/f")" = old ]' ||
    note "config/nq/f='$(cat "${M[2]}/config/nq/f" 2>&1)' cache/nq/f='$(cat "${M[3]}/cache/nq/f" 2>&1)'"
check push-nothing-enqueued [ "$(timeout 10 cat "${M[2]}/queues/nq/len" 2>&1)" = "0 0 0" ] ||
    note "len: $(timeout 10 cat "${M[2]}/queues/nq/len" 2>&1), head: '$(timeout 10 cat "${M[2]}/queues/nq/peek" 2>&1)'"

finish
