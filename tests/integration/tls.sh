#!/usr/bin/env bash
# tests/integration/tls.sh — mutual TLS 1.3 between the nodes (docs/TRANSPORT.md "TLS"):
# `tools/cluster up 3 --tls` (a throwaway CA and certificates with CN quorumfs-<id>, made by
# openssl) serves: every link is TLS 1.3, a push on node 1 is popped on node 2, a config
# change on node 2 shows in .events on node 3, `quorumfs cluster status` answers the client
# certificate. Refused, each logged with its reason while the cluster stays at its 3
# members, all connected: a rogue node with a certificate from another CA (dialing as node 1),
# a client holding node 3's certificate that says it is node 1 (wrong id), a plain client and
# a plain status query; an impostor listening at node 3's address with node 4's certificate
# is refused by the nodes that dial it. SIGHUP reloads: every node takes a CA bundle of the
# old and a new CA (node 2 then takes a client of the new CA), node 3 a certificate of the
# new CA (a status query trusting only the new CA gets it; nodes 1 and 2 verify it when node
# 3 restarts); a garbage certificate + SIGHUP keeps node
# 2 serving and says why in its log; an embedded node logs and ignores SIGHUP. Bad TLS
# options are refused at the command line. Every wait is bounded; lib_cluster.sh's trap takes
# the cluster down.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
command -v openssl >/dev/null || { not_ok openssl-installed "no openssl command"; finish; }
K=$C/tls           # the cluster's CA and certificates, made by tools/cluster up --tls
P=$T/pki           # the test's own: other CAs, rogue certificates
mkdir -p "$P"
mkca() {   # mkca NAME: a CA in $P/NAME.pem / .key
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$P/$1.key" -out "$P/$1.pem" -days 30 -subj "/CN=$1" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
mkcert() {   # mkcert CA.pem CA.key CN OUT: a certificate with subject CN, in $P/OUT.pem/.key
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$P/$4.key" -out "$P/$4.csr" -subj "/CN=$3" 2>/dev/null &&
    printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' >"$P/$4.ext" &&
    openssl x509 -req -in "$P/$4.csr" -CA "$1" -CAkey "$2" -set_serial "0x$(openssl rand -hex 16)" \
        -days 30 -extfile "$P/$4.ext" -out "$P/$4.pem" 2>/dev/null
}

# ---- bad TLS options: refused at once, nothing mounted
mkdir -p "$T/bad/mnt"
mkca badca && mkcert "$P/badca.pem" "$P/badca.key" quorumfs-2 bad2 &&
    mkcert "$P/badca.pem" "$P/badca.key" node-1 old1 || { not_ok certificates "openssl failed"; finish; }
one=$(cluster_ports 1)
bad() {   # bad NAME WANT-IN-MESSAGE ARGS...
    local n=$1 want=$2 r; shift 2
    r=$(timeout 20 "$QUORUMFS" mount "$T/bad/mnt" --data "$T/bad/data" --id 1 \
        --peers "1=127.0.0.1:$one" "$@" 2>&1)
    if [ $? -ne 0 ] && [[ $r == *"$want"* ]] && ! is_mounted "$T/bad/mnt"; then ok "$n"
    else not_ok "$n" "got: $r"; fi
}
bad tls-partial-refused "all three" --tls-cert "$P/bad2.pem" --tls-key "$P/bad2.key"
bad tls-missing-file-refused "cannot read" --tls-cert "$P/none.pem" --tls-key "$P/bad2.key" --tls-ca "$P/badca.pem"
bad tls-wrong-node-cert-refused "its subject must have the one CN quorumfs-1 (it is /CN=quorumfs-2)" \
    --tls-cert "$P/bad2.pem" --tls-key "$P/bad2.key" --tls-ca "$P/badca.pem"
bad tls-old-name-refused "(it is /CN=node-1)" --tls-cert "$P/old1.pem" --tls-key "$P/old1.key" --tls-ca "$P/badca.pem"

# ---- three nodes with TLS, made by tools/cluster (and two free ports after theirs: a rogue
# node's and an impostor's)
CLUSTER_SPARE=2 cluster_up 3 --tls --ok tls-cluster-up --node-args "--shards 4"
base=$BASE
checke tls-certificates-made '[ -s "$K/ca.pem" ] && [ -s "$K/n3.key" ] && [ -s "$K/client.pem" ] &&
    openssl x509 -in "$K/n2.pem" -noout -subject | grep -q "CN *= *quorumfs-2" &&
    openssl verify -CAfile "$K/ca.pem" "$K/n1.pem" "$K/client.pem" >/dev/null'
M1=${M[1]} M2=${M[2]} M3=${M[3]}
wait_for 20 all_connected && ok tls-members-connected ||
    not_ok tls-members-connected "$(cat "$M1/.cluster/members" "$M3/.cluster/members" 2>&1)"
checke tls-links-are-tls13 '[ "$(cat "$C"/n*/log | grep -c "connected to peer .* over TLSv1.3")" -ge 3 ] &&
    ! grep -q "over TLSv1.2" "$C"/n*/log'

# ---- the cluster serves over TLS: a push on node 1 popped on node 2, a config change
mkdir "$M1/queues/jobs"
(timeout 15 cat "$M2/queues/jobs/pop" >"$T/pop" 2>&1; echo "rc=$?" >>"$T/pop") &
popp=$!
sleep 0.5
echo "job-1" >"$M1/queues/jobs/push"
wait $popp
checke tls-pop-on-2-gets-push-on-1 'grep -qx "job-1" "$T/pop" && grep -qx "rc=0" "$T/pop"' || note "$(cat "$T/pop")"
mkdir "$M2/config/app" && echo "url=a" >"$M2/config/app/db"
(timeout 10 head -n1 "$M3/config/.events" >"$T/ev" 2>&1) &
evp=$!
wait_for 5 opened $evp "$M3/config/.events" || note "the reader did not open config/.events"
echo "url=b" >"$M2/config/app/db"
wait $evp
checke tls-config-change-seen-on-3 'grep -q "put config/app/db" "$T/ev" && [ "$(cat "$M1/config/app/db")" = url=b ]'
status() {   # status PORT [TLS FLAGS...]: quorumfs cluster status against 127.0.0.1:PORT, in $st
    local port=$1; shift
    st=$(timeout 15 "$QUORUMFS" cluster status --cluster "127.0.0.1:$port" "$@" 2>&1)
}
# shellcheck disable=SC2046
status "$base" $(cl tls-flags)
checke tls-status-with-client-cert '[[ "$st" == *"over TLS"* ]] && [[ "$st" == *"members ("* ]]' || note "$st"
# drain and undrain over TLS with the client certificate; without it the node refuses
# shellcheck disable=SC2046
dr=$(timeout 30 "$QUORUMFS" cluster drain 3 --no-wait --cluster "127.0.0.1:$base" $(cl tls-flags) 2>&1) &&
    ur=$(timeout 30 "$QUORUMFS" cluster undrain 3 --cluster "127.0.0.1:$base" $(cl tls-flags) 2>&1)
rc=$?
checke tls-drain-undrain-with-client-cert '[ $rc = 0 ]' || note "$dr / ${ur:-}"
dr=$(timeout 30 "$QUORUMFS" cluster drain 3 --no-wait --cluster "127.0.0.1:$base" 2>&1); rc=$?
checke tls-drain-without-certificate-fails '[ $rc = 1 ] && ! grep -q "^3 .* drained" "$M1/.cluster/members"' || note "rc $rc: $dr"
cl_out=$(cl status 2>&1)
checke tools-cluster-status-passes-tls '[[ "$cl_out" == *"--tls-cert $K/client.pem"* ]] && [[ "$cl_out" == *"over TLS"* ]]' ||
    note "$cl_out"

# ---- refused: each logged with its reason, the cluster stays at its 3 members
count_log() { cat "$C"/n*/log | grep -c -F -- "$1"; }
replaced0=$(count_log "replaced by a new connection")
# a rogue node: id 1 with a certificate (CN quorumfs-1) of another CA; it trusts the
# cluster's CA (public knowledge), so it gets as far as showing its certificate when it
# dials nodes 2 and 3
mkca rogueca && mkcert "$P/rogueca.pem" "$P/rogueca.key" quorumfs-1 rogue1 || not_ok rogue-certificate "openssl failed"
mkdir -p "$T/rogue/mnt"
setsid "$QUORUMFS" mount "$T/rogue/mnt" --foreground --data "$T/rogue/data" --id 1 --shards 4 \
    --peers "1=127.0.0.1:$((base + 3)),2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))" \
    --tls-cert "$P/rogue1.pem" --tls-key "$P/rogue1.key" --tls-ca "$K/ca.pem" \
    >>"$T/rogue/log" 2>&1 </dev/null &
rogue=$!
rogue_refused() { grep -q "certificate verify failed (certificate /CN=quorumfs-1 issued by /CN=rogueca" "$C/n2/log" &&
                  grep -q "certificate verify failed (certificate /CN=quorumfs-1 issued by /CN=rogueca" "$C/n3/log"; }
wait_for 20 rogue_refused && ok rogue-ca-refused-and-logged ||
    not_ok rogue-ca-refused-and-logged "$(grep -h "closing inbound" "$C/n2/log" | tail -3)"
kill -9 "$rogue" 2>/dev/null; wait "$rogue" 2>/dev/null
fusermount3 -uz "$T/rogue/mnt" 2>/dev/null

# a client with node 3's certificate (cluster CA) whose HELLO says node 1, and a plain client
# whose HELLO says node 1: both to node 2
cat >"$T/hello.py" <<'EOF'
import socket, ssl, struct, sys
# hello.py HOST PORT CLAIM IDS [CERT KEY CA]: sends a quorumfs HELLO claiming node CLAIM in
# the cluster of member ids IDS (comma list), over TLS 1.3 when given certificate files;
# reads until the node closes; prints how it ended.
host, port, claim, ids = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF
h = 0xcbf29ce484222325
for i in sorted(int(x) for x in ids.split(',')):
    for k in range(8):
        h ^= (i >> (8 * k)) & 0xff
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
payload = struct.pack('<QQII', claim, h, 1, 1)
hdr = struct.pack('<IBBHI', 0x4E534651, 1, 1, 0, len(payload))
frame = hdr + struct.pack('<I', crc32c(hdr + payload)) + payload
s = socket.create_connection((host, port), timeout=10)
try:
    if len(sys.argv) > 5:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.load_cert_chain(sys.argv[5], sys.argv[6])
        ctx.load_verify_locations(sys.argv[7])
        s = ctx.wrap_socket(s)
    s.sendall(frame)
    while s.recv(4096):
        pass
    print("closed by the node")
except Exception as e:
    print("ended: %s" % e)
EOF
r=$(timeout 20 $PY "$T/hello.py" 127.0.0.1 $((base + 1)) 1 1,2,3 "$K/n3.pem" "$K/n3.key" "$K/ca.pem" 2>&1)
note "wrong-id client: $r"
wait_for 10 grep -q "refused: the peer says it is node 1, but its TLS certificate /CN=quorumfs-3 does not name it (its subject CN must be quorumfs-1)" "$C/n2/log" &&
    ok wrong-id-refused-and-logged || not_ok wrong-id-refused-and-logged "$(grep -h "closing inbound" "$C/n2/log" | tail -3)"
r=$(timeout 20 $PY "$T/hello.py" 127.0.0.1 $((base + 1)) 1 1,2,3 2>&1)
note "plain client: $r"
wait_for 10 grep -q "refused: the peer speaks plain TCP (its first bytes are a quorumfs frame), and this node requires TLS" "$C/n2/log" &&
    ok plain-client-refused-and-logged || not_ok plain-client-refused-and-logged "$(grep -h "closing inbound" "$C/n2/log" | tail -3)"
status "$((base + 2))"
checke plain-status-refused '[[ "$st" != *"members ("* ]] && [[ "$st" == *"refuses plain queries"* ]]' || note "$st"
wait_for 10 grep -q "refused: the peer speaks plain TCP" "$C/n3/log" && ok plain-status-refusal-logged ||
    not_ok plain-status-refusal-logged "$(tail -3 "$C/n3/log")"
checke cluster-stays-at-3-members 'all_connected && [ "$(count_log "replaced by a new connection")" = "$replaced0" ]' ||
    note "$(cat "$M2/.cluster/members" 2>&1)"
checke refused-writes-still-work 'echo after-rogues >"$M3/cache/r" && [ "$(cat "$M1/cache/r")" = after-rogues ]'

# an impostor at node 3's address with node 4's certificate (cluster CA): nodes 1 and 2 dial
# it as node 3 and refuse it
cl kill 3 >/dev/null
mkcert "$K/ca.pem" "$K/ca.key" quorumfs-4 n4 || not_ok impostor-certificate "openssl failed"
mkdir -p "$T/imp/mnt"
setsid "$QUORUMFS" mount "$T/imp/mnt" --foreground --data "$T/imp/data" --id 4 --shards 4 \
    --listen "127.0.0.1:$((base + 2))" \
    --peers "1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),4=127.0.0.1:$((base + 2))" \
    --tls-cert "$P/n4.pem" --tls-key "$P/n4.key" --tls-ca "$K/ca.pem" >>"$T/imp/log" 2>&1 </dev/null &
imp=$!
imp_refused() { grep -q "certificate /CN=quorumfs-4 does not name node 3: its subject CN must be quorumfs-3" "$C/n1/log" &&
                grep -q "certificate /CN=quorumfs-4 does not name node 3: its subject CN must be quorumfs-3" "$C/n2/log"; }
wait_for 20 imp_refused && ok impostor-refused-by-dialers ||
    not_ok impostor-refused-by-dialers "$(grep -h "peer 3" "$C/n1/log" | tail -3)"
checke impostor-not-a-member 'grep -q "^3 .* unreachable" "$M1/.cluster/members" && [ "$(wc -l <"$M1/.cluster/members")" = 3 ]' ||
    note "$(cat "$M1/.cluster/members" 2>&1)"
kill -9 "$imp" 2>/dev/null; wait "$imp" 2>/dev/null
fusermount3 -uz "$T/imp/mnt" 2>/dev/null
wait_for 10 sh -c "! ss -ltn 2>/dev/null | grep -q ':$((base + 2)) '"
cl start 3 >/dev/null 2>&1 || not_ok node-3-restart "$(tail -5 "$C/n3/log")"
wait_for 20 all_connected && ok node-3-back || not_ok node-3-back "$(cat "$M1/.cluster/members" 2>&1)"

# ---- SIGHUP: a new CA. Every node takes a CA bundle of the old and the new CA, node 3 a
# certificate of the new CA; new connections use what was reloaded
reloaded() { [ "$(grep -c "TLS reloaded: certificate" "$C/n$1/log")" -ge "$2" ]; }
mkca newca && mkcert "$P/newca.pem" "$P/newca.key" quorumfs-3 new3 &&
    mkcert "$P/newca.pem" "$P/newca.key" quorumfs-client newclient || not_ok new-ca "openssl failed"
status "$((base + 1))" --tls-cert "$P/newclient.pem" --tls-key "$P/newclient.key" --tls-ca "$K/ca.pem"
checke new-ca-client-refused-before '[[ "$st" != *"members ("* ]]' || note "$st"
status "$((base + 2))" --tls-cert "$K/client.pem" --tls-key "$K/client.key" --tls-ca "$P/newca.pem"
checke new-ca-member-unknown-before '[[ "$st" == *"certificate verify failed"* ]]' || note "$st"
cat "$K/ca.pem" "$P/newca.pem" >"$K/ca.pem.new" && mv "$K/ca.pem.new" "$K/ca.pem"
cl reload >/dev/null
wait_for 10 reloaded 1 1 && wait_for 10 reloaded 2 1 && wait_for 10 reloaded 3 1 && ok sighup-reloads-bundle ||
    not_ok sighup-reloads-bundle "$(grep -h "SIGHUP\|TLS reload" "$C"/n*/log)"
# node 2 now takes a client of the new CA (its reloaded bundle)
status "$((base + 1))" --tls-cert "$P/newclient.pem" --tls-key "$P/newclient.key" --tls-ca "$K/ca.pem"
checke new-ca-client-taken-after-reload '[[ "$st" == *"asked node 2"* ]]' || note "$st"
cp "$P/new3.pem" "$K/n3.pem" && cp "$P/new3.key" "$K/n3.key"
cl reload 3 >/dev/null
wait_for 10 reloaded 3 2 && ok sighup-reloads-new-cert || not_ok sighup-reloads-new-cert "$(grep "TLS reload" "$C/n3/log")"
checke nodes-alive-after-sighup 'all_connected && [ -e "$M1/.cluster/shards" ] && [ -e "$M3/.cluster/shards" ]'
# node 3 presents the new certificate on new connections: a client trusting only the new CA
status "$((base + 2))" --tls-cert "$K/client.pem" --tls-key "$K/client.key" --tls-ca "$P/newca.pem"
checke status-sees-new-cert '[[ "$st" == *"asked node 3"* ]] && [[ "$st" == *"over TLS"* ]]' || note "$st"
# node 3 restarted: nodes 1 and 2, started with the old CA alone, dial it anew and verify
# its new-CA certificate with their reloaded bundles
cl kill 3 >/dev/null
cl start 3 >/dev/null 2>&1 || not_ok node-3-restart-new-cert "$(tail -5 "$C/n3/log")"
wait_for 20 all_connected && ok new-connections-after-reload ||
    not_ok new-connections-after-reload "$(cat "$M1/.cluster/members"; grep -h "peer 3" "$C/n1/log" "$C/n2/log" | tail -6)"
checke write-after-reload 'echo reloaded >"$M3/cache/z" && [ "$(cat "$M1/cache/z")" = reloaded ] &&
    [ "$(cat "$M2/cache/z")" = reloaded ]'

# ---- a garbage certificate + SIGHUP: node 2 keeps its old files, serves, and says why
echo garbage >"$K/n2.pem"
cl reload 2 >/dev/null
wait_for 10 grep -q "TLS reload failed, the certificates loaded before stay in use: TLS certificate $K/n2.pem: " "$C/n2/log" &&
    ok garbage-reload-logged || not_ok garbage-reload-logged "$(grep "TLS reload" "$C/n2/log")"
status "$((base + 1))" --tls-cert "$K/client.pem" --tls-key "$K/client.key" --tls-ca "$K/ca.pem"
checke garbage-reload-keeps-serving '[[ "$st" == *"asked node 2"* ]] && echo still >"$M2/cache/g" &&
    [ "$(cat "$M1/cache/g")" = still ] && all_connected' || note "$st"

# ---- an embedded node logs SIGHUP and keeps serving
mkdir -p "$T/emb/mnt"
setsid "$QUORUMFS" mount "$T/emb/mnt" --foreground --data "$T/emb/data" >>"$T/emb/log" 2>&1 </dev/null &
emb=$!
if wait_for 20 sh -c "[ -d '$T/emb/mnt/cache' ]"; then
    kill -HUP "$emb"
    wait_for 10 grep -q "SIGHUP: an embedded node has no certificates to reload; ignored" "$T/emb/log" &&
        ok embedded-sighup-logged || not_ok embedded-sighup-logged "$(tail -3 "$T/emb/log")"
    checke embedded-sighup-keeps-serving 'pid_alive $emb && echo e >"$T/emb/mnt/cache/e" && [ "$(cat "$T/emb/mnt/cache/e")" = e ]'
    timeout 10 fusermount3 -u "$T/emb/mnt" 2>/dev/null
    wait_for 10 pid_gone "$emb" && ok embedded-unmounts-after-sighup || not_ok embedded-unmounts-after-sighup "still running"
else
    not_ok embedded-mounted "$(tail -5 "$T/emb/log")"
fi

finish
