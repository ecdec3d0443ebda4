#!/bin/bash
# tests/sim/scale_bites.sh BUILD — the scale model's Raft checks catch a broken core: the model
# linked with cluster/raft.c built with -DRAFT_BUG=3 (a vote granted twice in one term,
# docs/RAFT.md "Known bugs") must report two leaders in one term on the configuration
# `make test` runs, which the correct core passes. One "ok"/"not ok" line.
set -u
build=${1:-build}
out=$("$build/scale-bug3" --nodes 12 --groups 400 --idle-s 4 --load-s 4 --kill-s 8 \
      --load 200 --quiesce off 2>&1)
rc=$?
if [ $rc -ne 0 ] && grep -q "two leaders in one term" <<<"$out"; then
    echo "ok scale: the election-safety check catches a double vote (RAFT_BUG=3)"
else
    echo "not ok scale: the model over RAFT_BUG=3 was not caught (exit $rc)"
    tail -n 20 <<<"$out"
    exit 1
fi
