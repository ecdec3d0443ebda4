#!/usr/bin/env bash
# tests/integration/jobs.sh — FILE-API §8 (jobs/) on the embedded node: a job's files and
# their bad values, a run by `echo > run` (stdout, stderr, exit, node, started, finished,
# a clean environment, never root), a failing command, `@every 1s` over a bounded window
# (every tick run once: no duplicate, no gap), `timeout` killing `sleep 100` and its
# children, `replace` and `forbid`, output over 1 MiB cut and marked, `.events` lines,
# an unknown --jobs-user refused, runs kept across a restart, a run's end on a full disk
# (logged; a dropped end ends the run lost), ticks on time while end proposals are slow (a
# test hook); then on tools/cluster up 3
# (--jobs on every node): a job made on one mount, run from another, seen whole from the
# third, with its `.events` there. The 60 s soak and kill -9 of the scheduler are in
# tests/integration/jobs_soak.sh (`make soak-jobs`). Every wait is bounded; the traps take
# the cluster down and unmount and kill everything.
. "$(dirname "$0")/lib.sh"
CLUSTER_PORTS=${CLUSTER_PORTS:-21000-21999}
. "$(dirname "$0")/lib_cluster.sh"

must_start n1
J=$MNT/jobs

# runfile JOB N FILE: the content of run N's FILE (empty when missing).
runfile() { cat "$J/$1/runs/$2/$3" 2>/dev/null; }
# run_state JOB N: the first word of run N's state.
run_state() { runfile "$1" "$2" state | awk '{print $1}'; }
# state_is JOB N STATE: run N's state is STATE.
state_is() { [ "$(run_state "$1" "$2")" = "$3" ]; }
# ended JOB N: run N has an end state.
ended() { case $(run_state "$1" "$2") in ok|failed|timeout|lost|killed) return 0 ;; esac; return 1; }

# ---- files and bad input
expect_errno mkdir-job OK mkdir "$J/hello"
check ls-job-files [ "$(ls "$J/hello" | tr '\n' ' ')" = "cmd concurrency retries run runs schedule status timeout " ]
check ls-jobs [ "$(ls "$J")" = hello ]
check defaults [ "$(cat "$J/hello/retries") $(cat "$J/hello/concurrency") $(cat "$J/hello/timeout")" = "3 forbid 0" ]
expect_errno run-without-cmd EINVAL write "$J/hello/run" $'lit:\n'
expect_errno bad-schedule EINVAL write "$J/hello/schedule" $'lit:61 * * * *\n'
expect_errno bad-every EINVAL write "$J/hello/schedule" $'lit:@every 10\n'
expect_errno bad-concurrency EINVAL write "$J/hello/concurrency" $'lit:sometimes\n'
expect_errno bad-timeout EINVAL write "$J/hello/timeout" $'lit:-3\n'
expect_errno bad-retries EINVAL write "$J/hello/retries" $'lit:99\n'
# (bash's printf reports an error of write(), not of close(): the check is at the write)
if printf bogus 2>/dev/null >"$J/hello/schedule"; then
    not_ok bad-schedule-fails-printf "printf bogus > schedule exited 0"
else
    ok bad-schedule-fails-printf
fi
check bad-values-not-kept [ "$(cat "$J/hello/schedule")" = "" ]
expect_errno status-read-only EPERM write "$J/hello/status" lit:x
expect_errno runs-read-only EPERM mkdir "$J/hello/runs/9"
expect_errno mkdir-in-job EPERM mkdir "$J/hello/sub"
expect_errno reserved-name EINVAL mkdir "$J/.events"
expect_errno file-at-top EPERM write "$J/file" lit:x
expect_errno rename-job EPERM rename "$J/hello" "$J/bye"
echo '*/15 * * * *' >"$J/hello/schedule"
check schedule-kept [ "$(cat "$J/hello/schedule")" = '*/15 * * * *' ]
checke status-shows-next 'grep -q "^next: [0-9-]*T[0-9:]*\.000Z$" "$J/hello/status" || grep -q "^next: none (no cmd)$" "$J/hello/status"' ||
    note "$(cat "$J/hello/status")"
echo >"$J/hello/schedule"

# ---- a run: output, exit, node, times, environment, identity
cat >"$J/hello/cmd" <<'EOF'
echo out; echo err >&2; id -u; pwd; env | cut -d= -f1 | grep -vx 'SHLVL\|_\|OLDPWD' | sort | tr '\n' ' '
EOF
echo 0 >"$J/hello/retries"
echo >"$J/hello/run"
checke run-ends 'wait_for 20 ended hello 1' || note "state: $(runfile hello 1 state)"
out=$(runfile hello 1 stdout)
check run-ok [ "$(run_state hello 1)" = ok ]
check run-stdout [ "$(sed -n 1p <<<"$out")" = out ] || note "$out"
check run-stderr [ "$(runfile hello 1 stderr)" = err ]
check run-exit [ "$(runfile hello 1 exit)" = 0 ]
check run-node [ -n "$(runfile hello 1 node)" ]
check run-tick-manual [ "$(runfile hello 1 tick)" = manual ]
checke run-times 'grep -q "Z$" <<<"$(runfile hello 1 started)" && grep -q "Z$" <<<"$(runfile hello 1 finished)"'
uid=$(sed -n 2p <<<"$out")
if [ "$(id -u)" = 0 ]; then
    check not-root-without-jobs-user [ "$uid" = "$(id -u nobody)" ] || note "ran as uid $uid"
else
    check runs-as-mounting-user [ "$uid" = "$(id -u)" ] || note "ran as uid $uid"
fi
check working-directory [ "$(sed -n 3p <<<"$out")" = / ] || note "cwd: $(sed -n 3p <<<"$out")"
check clean-environment [ "$(sed -n 4p <<<"$out")" = "HOME LOGNAME PATH PWD QUORUMFS_ATTEMPT QUORUMFS_JOB QUORUMFS_RUN QUORUMFS_TICK SHELL USER " ] ||
    note "environment: $(sed -n 4p <<<"$out")"
check status-last-run grep -q "^last: 1 ok exit 0" "$J/hello/status"

# ---- a failing command, no retries
echo 'exit 3' >"$J/hello/cmd"
echo >"$J/hello/run"
checke failed-run 'wait_for 20 ended hello 2 && [ "$(run_state hello 2)" = failed ] && [ "$(runfile hello 2 exit)" = 3 ]' ||
    note "run 2: $(runfile hello 2 state) exit $(runfile hello 2 exit)"
check failure-count grep -q "^failures: 1$" "$J/hello/status"
check no-retry-with-retries-0 [ ! -e "$J/hello/runs/3" ]

# ---- retries: a failing run is tried again with backoff (1 s, 2 s)
mkdir "$J/retry"
echo 'exit 1' >"$J/retry/cmd"
echo 2 >"$J/retry/retries"
echo >"$J/retry/run"
checke retried-twice 'wait_for 30 ended retry 3' || note "$(ls "$J/retry/runs" | tr '\n' ' ')"
check attempts [ "$(runfile retry 3 attempt) $(ls "$J/retry/runs" | wc -l)" = "3 3" ]

# ---- .events: starts and ends
mkdir "$J/ev"
echo 'true' >"$J/ev/cmd"
timeout 20 cat "$J/ev/.events" >"$T/ev.out" 2>&1 &
evp=$!
sleep 0.5
echo >"$J/ev/run"
checke events-start-end 'wait_for 15 grep -q "^2 end ev 1 ok 0$" "$T/ev.out"' || note "$(cat "$T/ev.out")"
check events-start-line grep -q "^1 start ev 1 [^ ]" "$T/ev.out"
kill "$evp" 2>/dev/null; wait "$evp" 2>/dev/null
# .events@REV: the events after REV, then it blocks as .events does
timeout 2 cat "$J/ev/.events@1" >"$T/ev1.out" 2>&1
check events-at-rev [ "$(cat "$T/ev1.out")" = "2 end ev 1 ok 0" ] || note "$(cat "$T/ev1.out")"
timeout 2 cat "$J/ev/.events@0" >"$T/ev0.out" 2>&1
check events-at-0 [ "$(wc -l <"$T/ev0.out")" = 2 ]
expect_errno events-at-read-only EPERM write "$J/ev/.events@0" lit:x

# ---- @every 1s over a bounded window: each tick run once, no duplicate, no gap
mkdir "$J/tick"
echo 'true' >"$J/tick/cmd"
echo 'allow' >"$J/tick/concurrency"
echo '@every 1s' >"$J/tick/schedule"
WINDOW=${JOBS_WINDOW:-12}
sleep "$WINDOW"
echo >"$J/tick/schedule"
sleep 1
ticks=$(for d in "$J"/tick/runs/*; do cat "$d/tick"; done | sort)
n=$(grep -c . <<<"$ticks")
check every-no-duplicate-tick [ "$(uniq -d <<<"$ticks" | grep -c .)" = 0 ] || note "$(uniq -d <<<"$ticks")"
gaps=$($PY - <<EOF
import datetime
t = [datetime.datetime.strptime(l.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ") for l in """$ticks""".split("\n") if l]
print(sum(1 for a, b in zip(t, t[1:]) if (b - a).total_seconds() != 1.0))
EOF
)
check every-no-gap [ "$gaps" = 0 ] || note "ticks: $(tr '\n' ' ' <<<"$ticks")"
checke every-count "[ $n -ge $((WINDOW - 2)) ] && [ $n -le $((WINDOW + 1)) ]" || note "$n runs in ${WINDOW} s"
note "@every 1s for ${WINDOW} s: $n runs, $(grep -c late <<<"$ticks") late"
tick_states() { cat "$J"/tick/runs/*/state | sort | uniq -c | tr -s ' ' | tr '\n' ' '; }
checke every-all-ok 'wait_for 10 eval "[ \"\$(tick_states)\" = \" $n ok \" ]"' || note "$(tick_states)"

# ---- timeout kills the command's whole process group
mkdir "$J/slow"
echo 'sleep 100.25 & sleep 100.5; wait' >"$J/slow/cmd"
echo 1 >"$J/slow/timeout"
echo 0 >"$J/slow/retries"
echo >"$J/slow/run"
checke timeout-ends 'wait_for 20 ended slow 1 && [ "$(run_state slow 1)" = timeout ]' ||
    note "state: $(runfile slow 1 state)"
checke timeout-kills-children 'wait_for 10 eval "! pgrep -f \"sleep 100\\.(25|5)\" >/dev/null"' ||
    note "left: $(pgrep -af 'sleep 100')"
check timeout-exit-signal grep -q "^signal " "$J/slow/runs/1/exit"

# ---- replace: a new run kills the running one; forbid: refused while one runs
mkdir "$J/rep"
echo 'sleep 30.75' >"$J/rep/cmd"
echo replace >"$J/rep/concurrency"
echo 3 >"$J/rep/timeout"
echo 0 >"$J/rep/retries"
echo >"$J/rep/run"
check replace-first-running wait_for 15 state_is rep 1 running
echo >"$J/rep/run"
check replace-kills-first wait_for 15 state_is rep 1 killed || note "run 1: $(runfile rep 1 state)"
check replace-second-runs wait_for 15 state_is rep 2 running || note "run 2: $(runfile rep 2 state)"
expect_errno rmdir-while-running EBUSY rmdir "$J/rep"
echo forbid >"$J/rep/concurrency"
expect_errno forbid-refuses-run EBUSY write "$J/rep/run" $'lit:\n'
check forbid-no-new-run [ ! -e "$J/rep/runs/3" ]
check replace-second-times-out wait_for 20 state_is rep 2 timeout
expect_errno rmdir-job OK rmdir "$J/rep"

# ---- output over 1 MiB is cut and marked
mkdir "$J/big"
echo 'head -c 1200000 /dev/zero | tr "\0" a; echo done >&2' >"$J/big/cmd"
echo >"$J/big/run"
checke big-ends 'wait_for 30 ended big 1'
size=$(head -c 1048576 "$J/big/runs/1/stdout" | tr -d a | wc -c)
check big-kept-1MiB [ "$(head -c 1048576 "$J/big/runs/1/stdout" | wc -c) $size" = "1048576 0" ]
check big-marked grep -q "^\[quorumfs: output cut: 1200000 bytes, the first 1048576 kept\]$" "$J/big/runs/1/stdout"
check big-stderr [ "$(runfile big 1 stderr)" = done ]

# ---- a node runs at most 32 runs at once; the others wait pending, then run
mkdir "$J/many"
echo 'sleep 2' >"$J/many/cmd"
echo allow >"$J/many/concurrency"
for i in $(seq 40); do echo >"$J/many/run"; done
most=0
for i in $(seq 20); do
    r=$(cat "$J"/many/runs/*/state 2>/dev/null | grep -c running)
    [ "$r" -gt "$most" ] && most=$r
    sleep 0.2
done
check many-at-most-32-at-once [ "$most" -le 32 ] || note "$most running at once"
many_ok() { [ "$(cat "$J"/many/runs/*/state 2>/dev/null | grep -c '^ok$')" = 40 ]; }
check many-all-run wait_for 40 many_ok || note "$(cat "$J"/many/runs/*/state | sort | uniq -c | tr '\n' ' ')"
note "at most $most of 40 runs at once"

# ---- --jobs-user: an unknown user is refused at start
mkdir -p "$T/nomnt"
if "$QUORUMFS" mount "$T/nomnt" --data "$T/nodata" --jobs-user no-such-user-qfs >"$T/nouser.log" 2>&1; then
    not_ok jobs-user-unknown-refused "mounted with an unknown --jobs-user"
    fusermount3 -u "$T/nomnt" 2>/dev/null
else
    check jobs-user-unknown-refused grep -q "no-such-user-qfs" "$T/nouser.log"
fi

# ---- runs are kept across a restart
stop_node "$MNT" "$NPID" || note "unmount failed"
must_start n1
check runs-kept-after-restart [ "$(run_state hello 1) $(runfile hello 1 stdout | head -1)" = "ok out" ]
check schedule-off-after-restart [ "$(cat "$J/tick/schedule")" = "" ]
stop_node "$MNT" "$NPID" || note "unmount failed"

# ---- a run's end on a full data disk (an 8 MiB tmpfs): it is logged there (output not kept:
# it reads as cut), as deletes are; and a run whose end was dropped (here: refused for the
# full disk by a daemon that does not log ends on it) is ended lost once the disk has room,
# never left running on the node's live session (a forbid job would never run again)
disk=$T/disk
mkdir -p "$disk"
chmod o+x "$T"                         # the run (as nobody under a root mount) waits on $T/pub
mkdir -m 777 "$T/pub"
if mount -t tmpfs -o size=8m tmpfs "$disk" && mkdir "$disk/data" && DATA_DIR=$disk/data start_node full; then
    J=$MNT/jobs
    mkdir "$J/fd"
    echo "echo hi; while [ ! -e $T/pub/go ]; do sleep 0.1; done" >"$J/fd/cmd"
    echo 0 >"$J/fd/retries"
    echo >"$J/fd/run"
    check full-disk-run-running wait_for 15 state_is fd 1 running
    dd if=/dev/zero of="$disk/filler" bs=4k 2>/dev/null
    sleep 0.3                          # the node looks at the disk every 100 ms
    expect_errno full-disk-is-full ENOSPC write "$MNT/cache/x" pat:70000:x
    touch "$T/pub/go"
    checke full-disk-end-logged 'wait_for 10 ended fd 1 && [ "$(run_state fd 1)" = ok ]' ||
        note "run 1: $(runfile fd 1 state) (fs/node.c must log what jobs_cmd_frees says frees: docs/JOBS.md \"Full disk\")"
    check full-disk-output-cut grep -q "^\[quorumfs: output cut: 3 bytes, the first 0 kept\]$" "$J/fd/runs/1/stdout" ||
        note "stdout: $(runfile fd 1 stdout | head -c 200)"
    rm -f "$disk/filler"
    checke full-disk-run-not-left-running 'wait_for 15 ended fd 1' || note "run 1: $(runfile fd 1 state)"
    note "the full disk's run: $(runfile fd 1 state)"
    stop_node "$MNT" "$NPID" || note "unmount failed"
else
    not_ok full-disk-start "could not mount a tmpfs or start a node on it"
fi
umount "$disk" 2>/dev/null

# ---- the end proposals do not hold up the sweep: with each FINISHES proposal made to take
# 3 s (a test hook), `@every 1s` still decides every tick on time (none late, none skipped)
export QUORUMFS_TEST_PAUSE=jobs_end_propose:3000
if start_node slow; then
    unset QUORUMFS_TEST_PAUSE
    J=$MNT/jobs
    mkdir "$J/sl"
    echo true >"$J/sl/cmd"
    echo allow >"$J/sl/concurrency"
    echo '@every 1s' >"$J/sl/schedule"
    sleep 6
    echo >"$J/sl/schedule"
    ticks=$(cat "$J"/sl/runs/*/tick 2>/dev/null)
    checke slow-ends-ticks-run '[ "$(grep -c . <<<"$ticks")" -ge 4 ]' || note "ticks: $(tr '\n' ' ' <<<"$ticks")"
    checke slow-ends-no-late-tick '! grep -q late <<<"$ticks"' || note "ticks: $(tr '\n' ' ' <<<"$ticks")"
    check slow-ends-none-skipped grep -q "^skipped: 0$" "$J/sl/status"
    stop_node "$MNT" "$NPID" || note "unmount failed"
else
    unset QUORUMFS_TEST_PAUSE
    not_ok slow-ends-start "could not start a node"
fi

# ---- three nodes: made on one, run from another, seen from the third
cluster_up 3 --node-args "--jobs"
mkdir "${M[1]}/jobs/c"
echo 'echo hi from $QUORUMFS_JOB' >"${M[1]}/jobs/c/cmd"
timeout 30 cat "${M[3]}/jobs/c/.events" >"$T/cev.out" 2>&1 &
cevp=$!
wait_for 10 opened "$cevp" "${M[3]}/jobs/c/.events" || note "the .events reader did not open in 10 s"
expect_errno cluster-run-from-other-mount OK write "${M[2]}/jobs/c/run" $'lit:\n'
J3=${M[3]}/jobs
check cluster-run-ends wait_for 20 eval '[ "$(awk "{print \$1}" "$J3/c/runs/1/state" 2>/dev/null)" = ok ]'
check cluster-output-everywhere [ "$(cat "${M[1]}/jobs/c/runs/1/stdout") $(cat "$J3/c/runs/1/stdout")" = "hi from c hi from c" ]
node=$(cat "$J3/c/runs/1/node")
check cluster-node-recorded [ -n "$node" ] && note "run 1 ran on $node"
checke cluster-events-other-mount 'wait_for 10 grep -q "^2 end c 1 ok 0$" "$T/cev.out"' || note "$(cat "$T/cev.out")"
kill "$cevp" 2>/dev/null; wait "$cevp" 2>/dev/null
finish
