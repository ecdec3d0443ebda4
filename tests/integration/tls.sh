#!/usr/bin/env bash
# tests/integration/tls.sh — a 3-node cluster with mutual TLS (--tls-cert/--tls-key/--tls-ca,
# certificates made here with docs/TRANSPORT.md's openssl commands): the nodes connect, a
# write on node 1 is read on node 3; a fourth start of node 3 with a certificate from another
# CA is refused by its peers (never connected, the peers log why) and its writes fail with
# EIO; a partial TLS option set and an unreadable file are refused at the command line.
# Every wait bounded; lib.sh's trap unmounts and kills everything under $T.
. "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || { not_ok openssl-installed "no openssl command"; finish; }
P=$T/pki
mkdir -p "$P"
mkca() {   # mkca NAME: a CA in $P/NAME.pem / .key
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$P/$1.key" -out "$P/$1.pem" -days 30 -subj "/CN=$1" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
mknode() {   # mknode CA ID OUT: a certificate naming node-ID, signed by CA, in $P/OUT.pem/.key
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$P/$3.key" -out "$P/$3.csr" -subj "/CN=node-$2" 2>/dev/null &&
    printf 'subjectAltName=DNS:node-%s\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$2" >"$P/$3.ext" &&
    openssl x509 -req -in "$P/$3.csr" -CA "$P/$1.pem" -CAkey "$P/$1.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 30 -extfile "$P/$3.ext" -out "$P/$3.pem" 2>/dev/null
}
mkca ca && mkca other && mknode ca 1 n1 && mknode ca 2 n2 && mknode ca 3 n3 && mknode other 3 rogue3 &&
    ok certificates || { not_ok certificates "openssl failed"; finish; }

base=$(free_ports 3)
[ -n "$base" ] || { not_ok free-ports "no 3 free ports"; finish; }
PEERS="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
start() {   # start I CERTNAME: node I in the background with that certificate
    mkdir -p "$T/n$1/mnt" "$T/n$1/data"
    setsid "$QUORUMFS" mount "$T/n$1/mnt" --foreground --data "$T/n$1/data" --id "$1" \
        --peers "$PEERS" --shards 4 --tls-cert "$P/$2.pem" --tls-key "$P/$2.key" \
        --tls-ca "$P/ca.pem" >>"$T/n$1/log" 2>&1 </dev/null &
    echo $! >"$T/n$1/pid"
    disown $!
}
mounted() { [ -e "$T/n$1/mnt/.cluster/shards" ]; }
for i in 1 2 3; do start "$i" "n$i"; done
wait_for 40 sh -c "[ -e '$T/n1/mnt/.cluster/shards' ] && [ -e '$T/n2/mnt/.cluster/shards' ] && [ -e '$T/n3/mnt/.cluster/shards' ]" &&
    ok tls-nodes-mounted || { not_ok tls-nodes-mounted "$(tail -5 "$T"/n*/log)"; finish; }
conn() { [ "$(grep -c -E ' (self|connected)' "$T/n$1/mnt/.cluster/members" 2>/dev/null)" = "$2" ]; }
wait_for 20 conn 1 3 && wait_for 10 conn 3 3 && ok tls-members-connected ||
    not_ok tls-members-connected "$(cat "$T/n1/mnt/.cluster/members" 2>&1)"
wait_for 15 sh -c "echo over-tls >'$T/n1/mnt/cache/t' 2>/dev/null" && ok tls-write ||
    not_ok tls-write "$(tail -3 "$T/n1/log")"
checke tls-read-other-node '[ "$(cat "$T/n3/mnt/cache/t" 2>/dev/null)" = over-tls ]'

st=$(timeout 10 "$QUORUMFS" cluster status --cluster "127.0.0.1:$base" --tls-cert "$P/n2.pem" \
    --tls-key "$P/n2.key" --tls-ca "$P/ca.pem" 2>&1)
checke status-over-tls '[[ "$st" == *"over TLS"* ]] && [[ "$st" == *"members ("* ]]' || note "$st"
st=$(timeout 10 "$QUORUMFS" cluster status --cluster "127.0.0.1:$base" 2>&1)
checke status-plain-refused-by-tls '[[ "$st" != *"members ("* ]] && [[ "$st" != *"onnection refused"* ]] && [[ "$st" == *"quorumfs: cluster status:"* ]]' || note "$st"
note "plain query to a TLS member: $st"

# ---- node 3 again, with a certificate from another CA: refused by both peers
kill -9 "$(cat "$T/n3/pid")"
fusermount3 -uz "$T/n3/mnt" 2>/dev/null || umount -l "$T/n3/mnt" 2>/dev/null
start 3 rogue3
sleep 3
checke rogue-not-connected '! conn 1 3 && grep -q "3 127.0.0.1:[0-9]* unreachable" "$T/n1/mnt/.cluster/members"' ||
    note "$(cat "$T/n1/mnt/.cluster/members" 2>&1)"
wait_for 10 grep -q -i "certificate\|verify" "$T/n1/log" "$T/n2/log" && ok rogue-refusal-logged ||
    not_ok rogue-refusal-logged "$(tail -5 "$T/n1/log")"
if mounted 3; then
    expect_errno rogue-write-EIO EIO write "$T/n3/mnt/cache/r" lit:x
else
    ok rogue-write-EIO   # it could not even mount (its start-up proposals need a quorum)
fi

# ---- bad TLS options: refused at once, nothing mounted
mkdir -p "$T/bad/mnt"
r=$(timeout 10 "$QUORUMFS" mount "$T/bad/mnt" --data "$T/bad/data" --id 1 --peers "$PEERS" \
    --tls-cert "$P/n1.pem" --tls-key "$P/n1.key" 2>&1)
checke tls-partial-refused '[[ "$r" == *"all three"* ]]' || note "got: $r"
r=$(timeout 10 "$QUORUMFS" mount "$T/bad/mnt" --data "$T/bad/data" --id 1 --peers "$PEERS" \
    --tls-cert "$P/none.pem" --tls-key "$P/n1.key" --tls-ca "$P/ca.pem" 2>&1)
checke tls-missing-file-refused '[[ "$r" == *"cannot read"* ]]' || note "got: $r"
one=$(free_ports 1)
r=$(timeout 10 "$QUORUMFS" mount "$T/bad/mnt" --data "$T/bad/data" --id 1 --peers "1=127.0.0.1:$one" \
    --tls-cert "$P/n2.pem" --tls-key "$P/n2.key" --tls-ca "$P/ca.pem" 2>&1)
checke tls-wrong-node-cert-refused '[[ "$r" == *node-1* ]] && ! mountpoint -q "$T/bad/mnt"' || note "got: $r"

for i in 1 2 3; do kill "$(cat "$T/n$i/pid")" 2>/dev/null; done
for i in 1 2 3; do wait_for 10 sh -c "! kill -0 $(cat "$T/n$i/pid") 2>/dev/null"; done
finish
