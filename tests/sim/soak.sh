#!/bin/bash
# tests/sim/soak.sh — the long simulator run (`make soak`): seeds FROM..FROM+N-1, a range
# `make test` never runs, in chunks of CHUNK seeds whose configuration rotates through
# kv, kv --groups 4, fs, fs --groups 4 (every fault kind the simulator draws is on in its
# share of the seeds; the opt-in breaches are not: they are meant to fail). Prints one
# progress line per chunk, every failure with the command that replays it, and a summary;
# exits 1 if any seed failed (2 on bad usage or a simulator that cannot run).
# Usage: tests/sim/soak.sh [BUILD_DIR [FROM [N [CHUNK]]]]
#   defaults: build, 1000001, 100000, 1000. The whole range takes hours: see
#   tests/sim/README.md for the time per 1,000 seeds of each configuration.
set -u
BUILD=${1:-build}
FROM=${2:-1000001}
N=${3:-100000}
CHUNK=${4:-1000}
SIM="$BUILD/sim"
case "$FROM$N$CHUNK" in *[!0-9]*|'') echo "soak: FROM, N and CHUNK are numbers" >&2; exit 2;; esac
if [ "$N" -lt 1 ] || [ "$CHUNK" -lt 1 ]; then
    echo "soak: N and CHUNK must be at least 1" >&2
    exit 2
fi
if [ ! -x "$SIM" ]; then
    echo "soak: $SIM not built (make BUILD=$BUILD $SIM)" >&2
    exit 2
fi
CONFIGS=("" "--groups 4" "--sm fs" "--sm fs --groups 4")
NAMES=("kv" "kv --groups 4" "fs" "fs --groups 4")
declare -a SEEDS=(0 0 0 0) MS=(0 0 0 0)
fails=0 done_seeds=0 k=0 start=$SECONDS
out=$(mktemp) || exit 2
trap 'rm -f "$out"' EXIT
seed=$FROM
last=$((FROM + N - 1))
while [ "$seed" -le "$last" ]; do
    c=$((k % 4))
    n=$CHUNK
    [ $((seed + n - 1)) -gt "$last" ] && n=$((last - seed + 1))
    t0=$(date +%s%N)
    # shellcheck disable=SC2086
    "$SIM" ${CONFIGS[$c]} --seeds "$n" --from "$seed" >"$out" 2>&1
    rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    f=$(sed -nE 's/^[0-9]+ seeds, ([0-9]+) failures$/\1/p' "$out")
    if [ -z "$f" ]; then
        # aborted (an assertion) or did not finish: every line it printed is the report
        f=1
        rc=1
    fi
    grep -E "FAILED|ABORTED|replay:" "$out"
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    fails=$((fails + f))
    done_seeds=$((done_seeds + n))
    SEEDS[c]=$((SEEDS[c] + n))
    MS[c]=$((MS[c] + ms))
    printf 'soak: %s seeds %d..%d: %d failures (%d.%03ds); %d of %d seeds done, %d failures, %ds\n' \
        "${NAMES[$c]}" "$seed" $((seed + n - 1)) "$f" $((ms / 1000)) $((ms % 1000)) \
        "$done_seeds" "$N" "$fails" \
        $((SECONDS - start))
    seed=$((seed + n))
    k=$((k + 1))
done
echo "soak summary (seeds $FROM..$last):"
for c in 0 1 2 3; do
    [ "${SEEDS[$c]}" -eq 0 ] && continue
    printf '  %-18s %7d seeds, %8.1fs, %s s per 1,000 seeds\n' "${NAMES[$c]}" "${SEEDS[$c]}" \
        "$(awk -v m="${MS[$c]}" 'BEGIN{printf "%.1f", m/1000}')" \
        "$(awk -v m="${MS[$c]}" -v n="${SEEDS[$c]}" 'BEGIN{printf "%.0f", m/n}')"
done
echo "$done_seeds seeds, $fails failures, $((SECONDS - start))s"
[ "$fails" -eq 0 ]
