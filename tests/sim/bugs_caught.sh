#!/bin/bash
# tests/sim/bugs_caught.sh — proves the simulator's checks bite. For each known bug that
# cluster/raft.c can switch on (-DRAFT_BUG=n: 1 commits earlier-term entries by counting
# replicas, 2 acknowledges before persisting, 3 grants two votes in one term), runs the
# simulator built over that core until a seed fails (at most BUG_SEEDS seeds), then checks
# the correct core passes that same seed. Prints "ok bugN caught at seed S: <check>".
# Usage: tests/sim/bugs_caught.sh [BUILD_DIR]   (binaries: BUILD_DIR/sim, BUILD_DIR/sim-bugN)
set -u
BUILD=${1:-build}
MAX=${BUG_SEEDS:-1000}
rc=0
for b in 1 2 3; do
    bin="$BUILD/sim-bug$b"
    if [ ! -x "$bin" ] || [ ! -x "$BUILD/sim" ]; then
        echo "not ok bug$b: $bin or $BUILD/sim not built"
        rc=1
        continue
    fi
    line=$("$bin" --seeds "$MAX" --from 1 --stop | grep -m1 ' FAILED: ')
    if [ -z "$line" ]; then
        echo "not ok bug$b not caught in $MAX seeds"
        rc=1
        continue
    fi
    seed=$(sed -E 's/^seed ([0-9]+) .*/\1/' <<<"$line")
    nodes=$(sed -E 's/^seed [0-9]+ \(([0-9]+) nodes\).*/\1/' <<<"$line")
    what=${line#* FAILED: }
    if ! "$BUILD/sim" --seeds 1 --from "$seed" --nodes "$nodes" >/dev/null; then
        echo "not ok bug$b: seed $seed fails with the correct core too ($what)"
        rc=1
        continue
    fi
    echo "ok bug$b caught at seed $seed ($nodes nodes): $what"
done
exit $rc
