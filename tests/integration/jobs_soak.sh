#!/usr/bin/env bash
# tests/integration/jobs_soak.sh — the long jobs/ cases (`make soak-jobs`, about 3 minutes;
# not in `make test`, whose time budget they do not fit):
#  1. the embedded node: `@every 1s` for JOBS_SOAK_S (default 60) seconds gives that many
#     runs ±1, every tick once, no gap;
#  2. tools/cluster up 3 (every node with --jobs, one shard): `@every 1s` while the shard's
#     leader (the scheduler) is killed with kill -9 and later restarted: every tick of the
#     window is decided once and executed once at its first attempt (each run appends
#     "tick attempt run" to a file: no tick twice at attempt 1, no gap; the ticks missed
#     during the failover run late, which the script reports), and the runs spread over
#     the nodes;
#  3. a node killed with kill -9 while it runs a run: the run ends lost after the session
#     timeout and its retry runs on another node.
# Every wait is bounded; the traps take the cluster down and unmount everything.
. "$(dirname "$0")/lib.sh"
CLUSTER_PORTS=${CLUSTER_PORTS:-21000-21999}
. "$(dirname "$0")/lib_cluster.sh"

SOAK=${JOBS_SOAK_S:-60}

# tick_report FILE: "N DUPS GAPS" for the ticks (ms, one per line, sorted) in FILE.
tick_report() {
    $PY - "$1" <<'EOF'
import sys
t = [int(l.split()[0]) for l in open(sys.argv[1]) if l.strip()]
d = len(t) - len(set(t))
s = sorted(set(t))
g = sum(1 for a, b in zip(s, s[1:]) if b - a != 1000)
print(len(t), d, g)
EOF
}

# ---- 1. the embedded node, SOAK seconds
must_start n1
J=$MNT/jobs
mkdir "$J/soak"
echo true >"$J/soak/cmd"
echo allow >"$J/soak/concurrency"
echo '@every 1s' >"$J/soak/schedule"
sleep "$SOAK"
echo >"$J/soak/schedule"
sleep 2
for d in "$J"/soak/runs/*; do awk '{print $1}' "$d/tick"; done >"$T/soak.ticks.iso"
$PY - "$T/soak.ticks.iso" >"$T/soak.ticks" <<'EOF'
import sys, datetime
for l in open(sys.argv[1]):
    d = datetime.datetime.strptime(l.strip(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    print(int(d.timestamp() * 1000))
EOF
read -r n dups gaps < <(tick_report "$T/soak.ticks")
note "embedded, @every 1s for $SOAK s: $n runs, $dups duplicate ticks, $gaps gaps (runs kept: 100 newest)"
# (100 runs are kept per job: with SOAK <= 100 every run is still listed)
checke soak-count "[ $n -ge $((SOAK - 1)) ] && [ $n -le $((SOAK + 1)) ]"
check soak-no-duplicate-tick [ "$dups" = 0 ]
check soak-no-gap [ "$gaps" = 0 ]
stop_node "$MNT" "$NPID" || note "unmount failed"

# ---- 2. three nodes, the scheduler killed
cluster_up 3 --node-args "--jobs --shards 1"
MARKS=$T/marks
chmod o+x "$T"                          # runs are nobody: they reach MARKS
mkdir -p "$MARKS" && chmod 1777 "$MARKS"
J1=${M[1]}/jobs
mkdir "$J1/ha"
echo "echo \"\$QUORUMFS_TICK \$QUORUMFS_ATTEMPT \$QUORUMFS_RUN\" >>$MARKS/ha" >"$J1/ha/cmd"
echo allow >"$J1/ha/concurrency"
echo '@every 1s' >"$J1/ha/schedule"
t0=$(now_ms)
sleep 8
L=$(leader "${M[1]}" 0)
[ -n "$L" ] && [ "$L" != 0 ] || L=$(leader "${M[2]}" 0)
if [ -n "$L" ] && [ "$L" != 0 ]; then
    note "killing node $L, the leader of shard 0 (the scheduler)"
    cl kill "$L" >/dev/null 2>&1
    S=1; [ "$L" = 1 ] && S=2
    checke new-leader "wait_for 30 eval '[ -n \"\$(leader_not $L 0)\" ]'" || note "no new leader"
    sleep 15                            # past the session timeout: its runs end lost
    out=$(cl_start "$L") || note "restart of node $L: $out"
else
    not_ok leader-known "no leader of shard 0 known"
    S=1
fi
sleep 8
JS=${M[$S]}/jobs
echo >"$JS/ha/schedule"
t1=$(now_ms)
sleep 3
awk '$2 == 1 {print $1}' "$MARKS/ha" | sort -n >"$T/ha.first"
read -r n dups gaps < <(tick_report "$T/ha.first")
span=$(( (t1 - t0) / 1000 ))
note "3 nodes, scheduler killed: $n first attempts in ~$span s, $dups duplicates, $gaps gaps; $(awk '$2 > 1' "$MARKS/ha" | wc -l) retries"
check ha-no-duplicate-execution [ "$dups" = 0 ] || note "$(uniq -d "$T/ha.first" | head)"
check ha-no-gap [ "$gaps" = 0 ]
checke ha-count "[ $n -ge $((span - 3)) ]"
late=$(cat "$JS"/ha/runs/*/tick 2>/dev/null | grep -c late)
note "runs marked late (decided 2 s or more after their tick, during the failover): $late"
nodes=$(cat "$JS"/ha/runs/*/node 2>/dev/null | sort -u | wc -l)
checke ha-runs-on-several-nodes "[ $nodes -ge 2 ]" || note "runs on $nodes node(s)"
decided=$(for d in "$JS"/ha/runs/*; do [ "$(cat "$d/attempt")" = 1 ] && awk '{print $1}' "$d/tick"; done | sort | uniq -d | wc -l)
check ha-each-tick-decided-once [ "$decided" = 0 ]

# ---- 3. a node killed while it runs a run: the run ends lost after the session timeout,
# and is retried on another node
JS=${M[$S]}/jobs
mkdir "$JS/lost"
echo 'sleep 6; echo done' >"$JS/lost/cmd"
echo 1 >"$JS/lost/retries"
echo >"$JS/lost/run"
state_of() { awk '{print $1}' "$JS/lost/runs/$1/state" 2>/dev/null; }
check lost-run-running wait_for 20 eval '[ "$(state_of 1)" = running ]'
victim=$(sed 's/.*#//' "$JS/lost/runs/1/node")
if [ "$victim" = "$S" ]; then
    # the mount we read through runs it: read through another one
    for i in 1 2 3; do [ "$i" != "$S" ] && S=$i && break; done
    JS=${M[$S]}/jobs
fi
note "run 1 of lost runs on node $victim: killing it"
cl kill "$victim" >/dev/null 2>&1
check lost-run-lost wait_for 40 eval '[ "$(state_of 1)" = lost ]' || note "run 1: $(state_of 1)"
check lost-run-retried wait_for 30 eval '[ "$(state_of 2)" = ok ]' || note "run 2: $(state_of 2)"
check lost-retry-attempt-2 [ "$(cat "$JS/lost/runs/2/attempt") $(cat "$JS/lost/runs/2/tick")" = "2 manual" ]
checke lost-retry-elsewhere '[ "$(sed "s/.*#//" "$JS/lost/runs/2/node")" != "$victim" ]'
check lost-retry-output [ "$(cat "$JS/lost/runs/2/stdout")" = done ]
finish
