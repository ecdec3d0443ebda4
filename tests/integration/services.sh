#!/usr/bin/env bash
# tests/integration/services.sh — FILE-API §6 (services/) on a real mount: registration by
# `echo ADDR >`, ls of live healthy instances, cat of an instance, .all, rm, touch renewal
# and TTL expiry, xattrs and their bad values, reserved names, the distribution of 10,000
# .pick reads per policy (round-robin exact, weighted within 3%, p2c never the clearly
# higher load), a python3 -m http.server backend killed and restarted hidden and shown
# within check_interval + 1 s, .events (lines, @rev resume, ESTALE), a 10-line shell load
# balancer with curl over 3 backends; then on tools/cluster up 3: one rotation across
# nodes, an instance seen on every node, a checked backend hidden and shown on every node,
# and the instances of a stopped node removed after its session timeout. Every wait is bounded; lib.sh's trap unmounts and kills everything.
. "$(dirname "$0")/lib.sh"

must_start n1
S=$MNT/services

# picks DIR N: N reads of DIR/.pick (open + read + close each), one address per line.
picks() {
    $PY - "$1" "$2" <<'EOF'
import sys
p, n = sys.argv[1] + "/.pick", int(sys.argv[2])
out = []
for _ in range(n):
    with open(p) as f:
        out.append(f.read().strip())
print("\n".join(out))
EOF
}

# ---- registration, ls, cat, .all, rm
expect_errno mkdir-service OK mkdir "$S/web"
echo 10.0.0.1:8080 >"$S/web/node-a"
printf '10.0.0.2:8080\nsecond line ignored\n' >"$S/web/node-b"
check ls-instances [ "$(ls "$S/web" | tr '\n' ' ')" = "node-a node-b " ]
check ls-services [ "$(ls "$S")" = web ]
check cat-instance [ "$(cat "$S/web/node-b")" = 10.0.0.2:8080 ]
all=$(cat "$S/web/.all")
checke all-lists-state '[ "$(grep -c "^node-[ab] 10.0.0.[12]:8080 healthy since=[0-9T:.-]*Z expires_in=[0-9.]*s weight=1 load=0$" <<<"$all")" = 2 ]' ||
    note "$all"
echo 10.0.0.9:8080 >"$S/web/node-a"
check re-register-new-address [ "$(cat "$S/web/node-a")" = 10.0.0.9:8080 ]
expect_errno rm-instance OK unlink "$S/web/node-b"
check rm-hides [ "$(ls "$S/web")" = node-a ]
expect_errno rm-missing ENOENT unlink "$S/web/node-b"
expect_errno rmdir-nonempty ENOTEMPTY rmdir "$S/web"
# rm while a save is open: the close publishes nothing (the save once re-registered the
# removed instance); the same for a name created and not saved yet
rmo=$($PY - "$S/web" <<'EOF'
import os, sys
d = sys.argv[1]
with open(d + "/rmo", "w") as f:
    f.write("10.0.0.5:8080\n")
fd = os.open(d + "/rmo", os.O_WRONLY | os.O_TRUNC)
os.write(fd, b"10.0.0.6:8080\n")
os.unlink(d + "/rmo")
os.close(fd)
fd = os.open(d + "/rmn", os.O_WRONLY | os.O_CREAT)
os.write(fd, b"10.0.0.7:8080\n")
os.unlink(d + "/rmn")
os.close(fd)
print(" ".join(sorted(n for n in os.listdir(d) if n.startswith("rm"))) or "none")
EOF
)
check rm-during-open-save-stays-removed [ "$rmo" = none ] || note "after rm and close: $rmo; $(cat "$S/web/.all")"

# ---- bad input
expect_errno mkdir-in-service EPERM mkdir "$S/web/sub"
# reserved names are no services (FILE-API §1 "Names"): mkdir services/.events succeeded
for r in .events .pick .all .events@2; do
    expect_errno "mkdir-reserved-$r" EINVAL mkdir "$S/$r"
done
# (.pick and .events@N always exist: a write to them is one to a read-only control file)
expect_errno create-reserved-pick EINVAL\|EPERM write "$S/web/.pick" lit:1.2.3.4:5
expect_errno create-reserved-events EINVAL\|EPERM write "$S/web/.events@3" lit:1.2.3.4:5
expect_errno create-reserved-excl EEXIST\|EINVAL excl "$S/web/.all" lit:1.2.3.4:5
expect_errno create-at-top EPERM write "$S/file" lit:x
expect_errno empty-address EINVAL write "$S/web/node-z" $'lit:\n'
check empty-address-not-registered [ ! -e "$S/web/node-z" ]
expect_errno long-address EINVAL write "$S/web/node-z" "lit:$(printf 'x%.0s' $(seq 300))"
expect_errno write-pick-EPERM EPERM write "$S/web/.pick" lit:x
expect_errno lb-bad EINVAL setx "$S/web" user.lb bogus
expect_errno ttl-bad EINVAL setx "$S/web" user.ttl -1
expect_errno check-bad EINVAL setx "$S/web" user.check udp
expect_errno interval-zero EINVAL setx "$S/web" user.check_interval 0
expect_errno weight-bad EINVAL setx "$S/web/node-a" user.weight 1.5
expect_errno load-bad EINVAL setx "$S/web/node-a" user.load x
expect_errno unknown-xattr ENODATA getx "$S/web" user.nope
expect_errno weight-on-dir ENOTSUP setx "$S/web" user.weight 3
xd=""; for x in lb ttl check check_interval; do xd="$xd/$(getfattr --only-values -n user.$x "$S/web" 2>/dev/null)"; done
check xattr-defaults [ "$xd" = /round-robin/30/none/5 ]
expect_errno rename-instance EPERM rename "$S/web/node-a" "$S/web/node-q"

# ---- TTL: gone after user.ttl without a touch, kept by touch
expect_errno mkdir-ttl OK mkdir "$S/ttl"
setfattr -n user.ttl -v 2 "$S/ttl"
echo 10.1.0.1:1 >"$S/ttl/renewed"
echo 10.1.0.2:1 >"$S/ttl/forgotten"
t0=$(now_ms)
while [ $(( $(now_ms) - t0 )) -lt 3500 ]; do touch "$S/ttl/renewed"; sleep 0.5; done
check ttl-expired-hidden [ "$(ls "$S/ttl")" = renewed ]
wait_for 10 sh -c "! grep -q forgotten '$S/ttl/.all'" && ok ttl-expiry-removes || not_ok ttl-expiry-removes "$(cat "$S/ttl/.all")"
setfattr -n user.ttl -v 0 "$S/ttl"
check ttl-zero-never-expires sh -c "grep -q '^renewed .* expires_in=never' '$S/ttl/.all'"

# ---- .pick distributions, 10,000 picks each
expect_errno mkdir-pick OK mkdir "$S/pick"
for i in 1 2 3; do echo "10.2.0.$i:80" >"$S/pick/i$i"; done
setfattr -n user.ttl -v 0 "$S/pick"
picks "$S/pick" 10000 >"$T/rr"
c1=$(grep -c '^10.2.0.1:80$' "$T/rr"); c2=$(grep -c '^10.2.0.2:80$' "$T/rr"); c3=$(grep -c '^10.2.0.3:80$' "$T/rr")
checke round-robin-exact '[ $((c1 + c2 + c3)) = 10000 ] && [ $((c1 - c2)) -le 1 ] && [ $((c1 - c3)) -le 1 ] && [ $((c2 - c3)) -ge -1 ] && [ $((c1 - c2)) -ge -1 ]' ||
    note "round-robin counts $c1 $c2 $c3"
checke round-robin-in-turn '[ "$(awk "NR > 1 && \$0 == prev { bad = 1 } { prev = \$0 } END { print bad + 0 }" "$T/rr")" = 0 ] && [ "$(head -3 "$T/rr" | sort -u | wc -l)" = 3 ]'
setfattr -n user.lb -v weighted "$S/pick"
setfattr -n user.weight -v 1 "$S/pick/i1"; setfattr -n user.weight -v 2 "$S/pick/i2"; setfattr -n user.weight -v 7 "$S/pick/i3"
picks "$S/pick" 10000 >"$T/w"
c1=$(grep -c '^10.2.0.1:80$' "$T/w"); c2=$(grep -c '^10.2.0.2:80$' "$T/w"); c3=$(grep -c '^10.2.0.3:80$' "$T/w")
note "weighted 1:2:7 over 10,000 picks: $c1 $c2 $c3"
checke weighted-within-3pct '[ ${c1#-} -ge 700 ] && [ $c1 -le 1300 ] && [ $c2 -ge 1700 ] && [ $c2 -le 2300 ] && [ $c3 -ge 6700 ] && [ $c3 -le 7300 ]'
setfattr -n user.lb -v random "$S/pick"
picks "$S/pick" 3000 >"$T/r"
checke random-uses-all '[ "$(sort -u "$T/r" | wc -l)" = 3 ]'
# 16 processes reading .pick at once for 2 s (a reply racing the reader's close once freed
# the text it was sent from and killed the daemon)
conc=$($PY - "$S/pick/.pick" <<'EOF'
import os, sys, time, multiprocessing as mp
def work(p, q):
    n, end = 0, time.time() + 2
    try:
        while time.time() < end:
            fd = os.open(p, os.O_RDONLY); os.read(fd, 4096); os.close(fd); n += 1
    except OSError as e:
        n = -e.errno
    q.put(n)
q = mp.Queue(); ps = [mp.Process(target=work, args=(sys.argv[1], q)) for _ in range(16)]
[p.start() for p in ps]; r = [q.get() for _ in ps]; [p.join() for p in ps]
print(min(r), sum(x for x in r if x > 0))
EOF
)
checke pick-16-processes '[ "${conc%% *}" -gt 0 ] && pid_alive "$NPID"' || note "16 readers: $conc"
note "16 processes: ${conc#* } .pick reads in 2 s (random)"
expect_errno rm-i3 OK unlink "$S/pick/i3"
setfattr -n user.lb -v p2c "$S/pick"
setfattr -n user.load -v 5 "$S/pick/i1"; setfattr -n user.load -v 500 "$S/pick/i2"
picks "$S/pick" 10000 >"$T/p"
checke p2c-never-higher-load '[ "$(grep -c "^10.2.0.2:80$" "$T/p")" = 0 ] && [ "$(grep -c "^10.2.0.1:80$" "$T/p")" = 10000 ]'
rm "$S/pick/i1" "$S/pick/i2"
expect_errno pick-none EAGAIN read "$S/pick/.pick"

# ---- .events: lines, resume from a revision, ESTALE past the history
expect_errno mkdir-ev OK mkdir "$S/ev"
timeout 20 cat "$S/ev/.events" >"$T/ev.out" 2>&1 &
evp=$!
sleep 0.5
echo 10.3.0.1:1 >"$S/ev/a"
rm "$S/ev/a"
wait_for 10 eval '[ "$(wc -l <"$T/ev.out")" -ge 2 ]'
check events-stream [ "$(cat "$T/ev.out")" = "$(printf '1 up a 10.3.0.1:1\n2 down a 10.3.0.1:1')" ] || note "$(cat "$T/ev.out")"
kill $evp 2>/dev/null; wait $evp 2>/dev/null
check events-resume [ "$(timeout 5 head -1 "$S/ev/.events@1")" = "2 down a 10.3.0.1:1" ]
expect_errno events-nonblock EAGAIN readnb "$S/ev/.events"
# O_NONBLOCK set by fcntl after the open counts too (the read once looked at the flags
# copied at open, and blocked)
fnb=$(timeout 10 $PY - "$S/ev/.events" <<'EOF'
import errno, fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
try:
    print("read %d bytes" % len(os.read(fd, 4096)))
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
EOF
)
check events-nonblock-after-open [ "$fnb" = EAGAIN ] || note "fcntl O_NONBLOCK then read: '$fnb'"
$PY - "$S/ev" <<'EOF'
import sys
for i in range(1030):
    with open(sys.argv[1] + "/x", "w") as f:
        f.write("10.3.0.%d:1\n" % (i % 250 + 1))
EOF
expect_errno events-estale ESTALE read "$S/ev/.events@1"

# ---- health checks: a real listener killed and restarted
hp=$(free_ports 5)
[ -n "$hp" ] || { not_ok free-ports "none"; finish; }
for i in 0 1 2; do mkdir -p "$T/www$i"; echo "backend-$i" >"$T/www$i/id"; done
start_backend() {   # start_backend I: python3 -m http.server on port hp+I, serving www I
    (cd "$T/www$1" && exec $PY -m http.server $((hp + $1)) --bind 127.0.0.1 >/dev/null 2>&1) &
    BP[$1]=$!
    wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$((hp + $1))/id"
}
declare -a BP
for i in 0 1 2; do start_backend $i || not_ok "backend-$i-up"; done
expect_errno mkdir-hc OK mkdir "$S/hc"
setfattr -n user.ttl -v 0 "$S/hc"
setfattr -n user.check -v tcp "$S/hc"
setfattr -n user.check_interval -v 2 "$S/hc"
for i in 0 1 2; do echo "127.0.0.1:$((hp + i))" >"$S/hc/b$i"; done
echo "127.0.0.1:1" >"$S/hc/dead"          # nothing listens on port 1
wait_for 5 sh -c "[ \"\$(ls '$S/hc' | tr '\n' ' ')\" = 'b0 b1 b2 ' ]" && ok check-hides-dead-address ||
    not_ok check-hides-dead-address "$(cat "$S/hc/.all")"
check all-shows-failing sh -c "grep -q '^dead 127.0.0.1:1 failing since=' '$S/hc/.all'"
rm "$S/hc/dead"
# a port out of range fails its check (getaddrinfo took port hp+65536 as hp, where b0
# listens, and the check passed)
echo "127.0.0.1:$((hp + 65536))" >"$S/hc/wrap"
echo "127.0.0.1:0" >"$S/hc/zero"
wait_for 6 sh -c "grep -q '^wrap .* failing since=' '$S/hc/.all' && grep -q '^zero .* failing since=' '$S/hc/.all'" &&
    ok check-port-out-of-range-fails || not_ok check-port-out-of-range-fails "$(cat "$S/hc/.all")"
rm "$S/hc/wrap" "$S/hc/zero"
kill ${BP[1]}; wait ${BP[1]} 2>/dev/null
t0=$(now_ms)
wait_for 3 sh -c "! ls '$S/hc' | grep -qx b1"     # interval (2 s) + 1 s
rc=$?
note "a killed backend left ls after $(( $(now_ms) - t0 )) ms (interval 2 s)"
checke killed-backend-hidden-within-interval-plus-1s '[ $rc = 0 ]' || note "$(cat "$S/hc/.all")"
picks "$S/hc" 200 >"$T/hcp"
check pick-skips-failing sh -c "! grep -q ':$((hp + 1))\$' '$T/hcp'"
start_backend 1
t0=$(now_ms)
wait_for 3 sh -c "ls '$S/hc' | grep -qx b1"
rc=$?
note "a restarted backend came back after $(( $(now_ms) - t0 )) ms"
checke restarted-backend-shown-within-interval-plus-1s '[ $rc = 0 ]' || note "$(cat "$S/hc/.all")"
timeout 3 cat "$S/hc/.events@0" >"$T/hcev" 2>&1
check hc-events-down-up grep -q "^[0-9]* down b1 127.0.0.1:$((hp + 1))\$" "$T/hcev" || note "$(cat "$T/hcev")"

# ---- a load balancer in 10 lines of shell, over three live backends
cat >"$T/lb.sh" <<'EOF'
#!/bin/bash
# lb.sh SERVICE-DIR N: N requests, each to the backend .pick gives; prints the answers.
svc=$1 n=$2
for i in $(seq 1 "$n"); do
    addr=$(cat "$svc/.pick") || exit 1
    curl -s --max-time 5 "http://$addr/id" || echo "failed $addr"
done
EOF
bash "$T/lb.sh" "$S/hc" 30 >"$T/lb.out"
checke lb-spreads-over-three '[ "$(grep -c "^backend-0$" "$T/lb.out")" = 10 ] && [ "$(grep -c "^backend-1$" "$T/lb.out")" = 10 ] && [ "$(grep -c "^backend-2$" "$T/lb.out")" = 10 ]' ||
    note "$(sort "$T/lb.out" | uniq -c | tr '\n' ';')"

# ---- one check interval with many instances, some hanging: 1000 instances (every 100th a
# connect that hangs: a listener that never accepts; the others refused at once) and a live
# one at a listener counting its connections, interval 1 s: the live one is still checked
# about once a second, at least 3 times in 5 s (the checker once went in rounds of 256
# connects, each round waiting for its slowest: 4 rounds of 0.8 s, one check in 3.6 s)
$PY - "$((hp + 3))" "$((hp + 4))" "$T/accepts" <<'EOF' &
import socket, sys, threading, time
hang = socket.socket(); hang.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
hang.bind(("127.0.0.1", int(sys.argv[1]))); hang.listen(0)
cnt = socket.socket(); cnt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
cnt.bind(("127.0.0.1", int(sys.argv[2]))); cnt.listen(64)
cnt.settimeout(1)
end = time.time() + 150
with open(sys.argv[3], "a") as out:
    while time.time() < end:
        try:
            c, _ = cnt.accept(); c.close(); out.write("a\n"); out.flush()
        except socket.timeout:
            pass
EOF
LISTP=$!
expect_errno mkdir-many OK mkdir "$S/many"
setfattr -n user.ttl -v 0 "$S/many"
setfattr -n user.check -v tcp "$S/many"
setfattr -n user.check_interval -v 1 "$S/many"
$PY - "$S/many" "$((hp + 3))" <<'EOF'
import sys
d, hang = sys.argv[1], sys.argv[2]
for i in range(1000):
    with open("%s/i%d" % (d, i), "w") as f:
        f.write("127.0.0.1:%s\n" % (hang if i % 100 == 50 else "1"))
EOF
echo "127.0.0.1:$((hp + 4))" >"$S/many/live"
wait_for 30 sh -c "[ \"\$(ls '$S/many')\" = live ]" && ok many-instances-checked ||
    not_ok many-instances-checked "$(ls "$S/many" | wc -l) visible"
n0=$(wc -l <"$T/accepts")
sleep 5
n1=$(wc -l <"$T/accepts")
note "1000 instances (10 hanging), interval 1 s: the live one was checked $((n1 - n0)) times in 5 s"
checke many-instances-interval-kept '[ $((n1 - n0)) -ge 3 ]'
kill $LISTP 2>/dev/null; wait $LISTP 2>/dev/null
for i in 0 1 2; do kill ${BP[$i]} 2>/dev/null; wait ${BP[$i]} 2>/dev/null; done
stop_node "$MNT" "$NPID" && ok unmount-n1 || not_ok unmount-n1

# ---- a full data disk (an 8 MiB tmpfs, filled by someone else): a registration fails with
# ENOSPC at its write(), which bash's echo reports (it passed, and only the close failed,
# which echo ignores: exit 0 and nothing registered)
disk=$T/disk
mkdir -p "$disk"
if mount -t tmpfs -o size=8m tmpfs "$disk"; then
    mkdir "$disk/data"
    DATA_DIR=$disk/data must_start nfull
    mkdir "$MNT/services/full" && setfattr -n user.ttl -v 0 "$MNT/services/full"
    echo 10.0.0.1:80 >"$MNT/services/full/i1"
    mkdir "$MNT/services/empty"
    dd if=/dev/zero of="$disk/filler" bs=4k 2>/dev/null
    sleep 0.3                              # the node looks at the disk every 100 ms
    head -c 70000 /dev/zero >"$MNT/cache/big" 2>/dev/null   # a WAL page's leftovers
    if echo 10.0.0.9:80 >"$MNT/services/full/i9" 2>/dev/null; then
        not_ok register-ENOSPC-at-write "echo exited 0; $(ls "$MNT/services/full" | tr '\n' ' ')"
    else
        ok register-ENOSPC-at-write
    fi
    check full-disk-ls-works [ "$(ls "$MNT/services/full")" = i1 ]
    # deregistration and removal free space: they work on the full disk
    expect_errno rm-on-full-disk OK unlink "$MNT/services/full/i1"
    expect_errno rmdir-on-full-disk OK rmdir "$MNT/services/empty"
    check full-disk-ls-empty-after-rm [ -z "$(ls "$MNT/services/full")" ]
    rm -f "$disk/filler"
    stop_node "$MNT" "$NPID" && ok unmount-nfull || not_ok unmount-nfull
    umount "$disk" 2>/dev/null || umount -l "$disk"
else
    note "no tmpfs: the full-disk case is skipped"
fi

# ---- three nodes: one rotation for the cluster; a stopped node's instances removed
CL="$QI_ROOT/tools/cluster"
C=$T/cluster
base=$(free_ports 3)
[ -n "$base" ] || { not_ok free-ports-cluster "none"; finish; }
up_out=$(CLUSTER_WAIT_S=20 timeout 60 "$CL" up 3 --dir "$C" --base-port "$base" --bin "$QUORUMFS" --node-args "--shards 4 --snapshot-bytes 65536" 2>&1)
if [ $? -ne 0 ]; then not_ok cluster-up "$up_out"; finish; fi
ok cluster-up
M1=$C/n1/mnt M2=$C/n2/mnt M3=$C/n3/mnt
wait_for 20 mkdir "$M1/services/api" && ok cluster-mkdir || not_ok cluster-mkdir
setfattr -n user.ttl -v 0 "$M1/services/api"
echo 10.4.0.1:1 >"$M1/services/api/n1"
echo 10.4.0.2:1 >"$M2/services/api/n2"
echo 10.4.0.3:1 >"$M3/services/api/n3"
check cluster-ls-everywhere [ "$(ls "$M1/services/api" | tr '\n' ' ')$(ls "$M3/services/api" | tr '\n' ' ')" = "n1 n2 n3 n1 n2 n3 " ]
: >"$T/crr"
for i in $(seq 1 30); do m=$(( (i % 3) + 1 )); cat "$C/n$m/mnt/services/api/.pick" >>"$T/crr"; done
checke cluster-round-robin-one-rotation '[ "$(sort "$T/crr" | uniq -c | awk "{print \$1}" | tr "\n" " ")" = "10 10 10 " ] && [ "$(awk "NR > 1 && \$0 == prev { b = 1 } { prev = \$0 } END { print b + 0 }" "$T/crr")" = 0 ]' ||
    note "$(tr '\n' ' ' <"$T/crr")"
# checks on the cluster (run by the service's shard leader): a backend killed is hidden on
# every node, and shown again once restarted
start_backend 0 || not_ok cluster-backend-up
mkdir "$M2/services/chk" && setfattr -n user.ttl -v 0 "$M2/services/chk" &&
    setfattr -n user.check -v tcp "$M2/services/chk" && setfattr -n user.check_interval -v 1 "$M2/services/chk"
echo "127.0.0.1:$hp" >"$M2/services/chk/b0"
check cluster-check-healthy [ "$(ls "$M1/services/chk")" = b0 ]
kill ${BP[0]}; wait ${BP[0]} 2>/dev/null
wait_for 10 sh -c "[ -z \"\$(ls '$M1/services/chk')\" ] && [ -z \"\$(ls '$M3/services/chk')\" ]" &&
    ok cluster-check-hides-everywhere || not_ok cluster-check-hides-everywhere "$(cat "$M1/services/chk/.all")"
start_backend 0
wait_for 10 sh -c "[ \"\$(ls '$M3/services/chk')\" = b0 ]" && ok cluster-check-shows-again ||
    not_ok cluster-check-shows-again "$(cat "$M3/services/chk/.all")"
kill ${BP[0]}; wait ${BP[0]} 2>/dev/null
# node 3 stops (SIGSTOP: silent, as if cut off): its instance goes after its session timeout
n3pid=$(cat "$C/n3/pid" 2>/dev/null)
kill -STOP "$n3pid"
t0=$(now_ms)
wait_for 30 sh -c "[ \"\$(ls '$M1/services/api' | tr '\n' ' ')\" = 'n1 n2 ' ]" && ok stopped-node-instance-removed ||
    not_ok stopped-node-instance-removed "$(cat "$M1/services/api/.all")"
note "node 3 stopped: its instance left ls on node 1 after $(( $(now_ms) - t0 )) ms (session timeout 10 s)"
timeout 3 cat "$M2/services/api/.events@0" >"$T/cev" 2>&1
check stopped-node-down-event grep -q "^[0-9]* down n3 10.4.0.3:1\$" "$T/cev" || note "$(cat "$T/cev")"
kill -CONT "$n3pid"
# a node that catches up by snapshot install wakes its parked .events reads: node F (a
# follower of the service's shard) is stopped with a read parked on .events; meanwhile 400
# small writes on the shard (more than the leader keeps in flight to F), the registration
# the reader waits for, then 1 MiB more on the shard (compactions past it: F gets it inside
# a snapshot, and no services/ entry after it). Once F resumes, its reader gets the event
# (it stayed blocked before: nothing woke it after the restore)
SHARDOF=$(dirname "$QUORUMFS")/shardof
if [ -x "$SHARDOF" ]; then
    M=("" "$M1" "$M2" "$M3")
    leader() { timeout 5 awk -v s="$2" '$1 == s {print $2}' "$1/.cluster/shards" 2>/dev/null; }
    NSH=$(wc -l <"$M1/.cluster/shards")
    SS=$("$SHARDOF" "$NSH" services/snap)
    CK=; for c in $(seq 0 400); do [ "$("$SHARDOF" "$NSH" "cache/sf$c")" = "$SS" ] && { CK=sf$c; break; }; done
    wait_for 20 mkdir "$M1/services/snap"
    setfattr -n user.ttl -v 0 "$M1/services/snap"
    wait_for 20 sh -c "[ -n \"\$(awk -v s=$SS '\$1 == s && \$2 != 0 {print \$2}' '$M1/.cluster/shards')\" ]"
    SL=$(leader "$M1" "$SS")
    F=1; [ "$SL" = 1 ] && F=2
    wait_for 10 test -d "${M[$F]}/services/snap"
    timeout 90 cat "${M[$F]}/services/snap/.events" >"$T/snapev.out" 2>&1 &
    sp=$!
    sleep 1
    installs() { awk -v s="quorumfs_raft_snapshot_installs_total{shard=\"$SS\"}" '$1 == s {print $2}' \
        "${M[$F]}/.cluster/metrics" 2>/dev/null; }
    inst0=$(installs)
    FP=$(cat "$C/n$F/pid")
    kill -STOP "$FP"
    $PY - "${M[$SL]}" "$CK" <<'EOF'
import sys
m, ck = sys.argv[1], sys.argv[2]
for i in range(400):
    with open("%s/cache/%s" % (m, ck), "w") as f:
        f.write("small %d\n" % i)
with open(m + "/services/snap/marker", "w") as f:
    f.write("10.9.9.9:99\n")
for i in range(16):
    with open("%s/cache/%s" % (m, ck), "w") as f:
        f.write("%d" % i + "y" * 65536)
EOF
    sleep 1
    kill -CONT "$FP"
    checke events-woken-by-snapshot-install 'wait_for 30 grep -q "^[0-9]* up marker 10.9.9.9:99$" "$T/snapev.out"' ||
        note "reader on node $F got: $(cat "$T/snapev.out")"
    note "node $F (stopped) installed ${inst0:-?} -> $(installs) snapshot(s) of shard $SS"
    kill "$sp" 2>/dev/null; wait "$sp" 2>/dev/null
else
    note "no $SHARDOF: the snapshot-install case is skipped"
fi
timeout 30 "$CL" down --dir "$C" >/dev/null 2>&1
finish
