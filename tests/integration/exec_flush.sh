#!/usr/bin/env bash
# tests/integration/exec_flush.sh — FILE-API §1 Waiting ("never hangs in D state") and
# Saves: a program with a save in progress on a close-on-exec descriptor (every Python
# open(), Perl open() above fd 2, O_CLOEXEC in C, Go, Rust) that runs a child (fork+exec,
# system(), posix_spawn) must not hang. The kernel closes the descriptor inside execve, the
# FLUSH reaches the daemon, whose publishing flush looks at the flushing process's
# descriptors (fs/mount.c open_count): following its /proc/<pid>/fd links waited for the
# exec that waited for the FLUSH, and both hung for good (and `ps`, `top`, `find /proc` on
# that pid) until 23f00c3 read fdinfo instead. Found by the qa helper, 2026-12-03. Each case runs on its own embedded node; a case that hangs gets its
# daemon killed after 10 s (that ends the deadlock), so the script always ends.
. "$(dirname "$0")/lib.sh"

# exec_case NAME CMD...: CMD runs against a fresh node (the path of a file on it is
# appended); ok when it ends by itself within 10 s with exit status 0.
exec_case() {
    local name=$1; shift
    local node=${name//[^a-z0-9]/}
    if ! start_node "$node"; then not_ok "$name" "could not start a node"; return; fi
    mkdir -p "$MNT/cache/x"
    "$@" "$MNT/cache/x/out" >"$T/$node.out" 2>&1 &
    local p=$!
    if wait_for 10 pid_gone "$p"; then
        wait "$p"; local rc=$?
        if [ $rc = 0 ]; then ok "$name"; else not_ok "$name" "exit $rc: $(cat "$T/$node.out")"; fi
    else
        not_ok "$name" "still running after 10 s (deadlocked in execve); killing the daemon $NPID to free it"
        kill -9 "$NPID" 2>/dev/null
        wait_for 10 pid_gone "$p" || kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    fi
    stop_node "$MNT" "$NPID" 2>/dev/null || crash_node "$MNT" "$NPID"
}

exec_case python-fork-execv timeout -k 2 60 $PY -c '
import os, sys
f = open(sys.argv[1], "w")          # O_CLOEXEC, as every Python open()
f.write("partial"); f.flush()        # a save in progress
pid = os.fork()
if pid == 0:
    os.execv("/bin/true", ["true"])  # the kernel closes f inside execve
_, st = os.waitpid(pid, 0)
f.write(" done\n"); f.close()
sys.exit(0 if st == 0 and open(sys.argv[1]).read() == "partial done\n" else 1)
'
if command -v perl >/dev/null; then
    exec_case perl-system timeout -k 2 60 perl -e '
use IO::Handle;
open(F, ">", $ARGV[0]) or die "open: $!";  # fd 3: close-on-exec in Perl
print F "partial"; F->flush;
system("true") == 0 or die "system: $?";
print F " done\n"; close(F) or die "close: $!";
' --
else
    note "perl not installed: perl-system skipped"
fi
# plain bash: output sent to the mount, then a group redirected elsewhere (bash keeps the
# old stdout on a close-on-exec fd 10, which execve of /bin/true closes)
exec_case bash-group-redirect timeout -k 2 60 bash -c 'exec >"$1"; echo start; { /bin/true; } >/dev/null; echo end' --
exec_case python-posix-spawn timeout -k 2 60 $PY -c '
import os, sys
f = open(sys.argv[1], "w"); f.write("partial"); f.flush()
pid = os.posix_spawn("/bin/true", ["true"], os.environ)
_, st = os.waitpid(pid, 0)
f.close(); sys.exit(0 if st == 0 else 1)
'

# a queue producer holding its push descriptor (every line complete, nothing pending):
# fs/queues_fuse.c qf_flush reads /proc/<pid>/fd at every flush of a push file
exec_case queue-push-spawn timeout -k 2 60 $PY -c '
import os, sys
q = os.path.dirname(sys.argv[1]) + "/../../queues/jobs"
os.makedirs(q, exist_ok=True)
fd = os.open(q + "/push", os.O_WRONLY | os.O_CLOEXEC)
os.write(fd, b"job-1\n")
pid = os.posix_spawn("/bin/true", ["true"], os.environ)
_, st = os.waitpid(pid, 0)
os.close(fd); sys.exit(0 if st == 0 else 1)
'

finish
