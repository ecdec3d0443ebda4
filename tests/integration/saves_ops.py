#!/usr/bin/python3
"""tests/integration/saves_ops.py — descriptor-level probes for saves.sh (FILE-API §1, Saves).

Each op does one multi-step probe that needs exact control of open/write/fsync/close on
several descriptors, and prints one line: "OK [details]" when the probe behaved as the
contract says, "FAIL <what was observed>" when it did not, or an errno name when an
operation that must succeed failed. "Another process" is a real child process (cat), so a
probe never mistakes the writer's own view for another reader's.

Usage: saves_ops.py OP ARGS...   (see OPS at the bottom)."""

import errno
import json
import os
import subprocess
import sys
import time

MIB = 1 << 20


def ename(e):
    return errno.errorcode.get(e.errno, "E%d" % e.errno)


def other_read(path):
    """The value as another process sees it now: a fresh `cat` (bounded)."""
    r = subprocess.run(["cat", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    if r.returncode != 0:
        return "<cat failed: %s>" % r.stderr.decode(errors="replace").strip()
    return r.stdout.decode(errors="replace")


def read_fd(fd):
    out = bytearray()
    while True:
        b = os.read(fd, 65536)
        if not b:
            return bytes(out)
        out += b


def read_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_fd(fd)
    finally:
        os.close(fd)


def write_all(fd, data, chunk=None):
    mv = memoryview(data)
    off = 0
    while off < len(data):
        end = len(data) if chunk is None else min(len(data), off + chunk)
        n = os.write(fd, mv[off:end])
        if n <= 0:
            raise OSError(errno.EIO, "write returned %d" % n)
        off += n


def value(n, tag):
    """n bytes of printable lines, different for each tag, ending in a newline."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += b"%s line %06d the quick brown fox jumps over the lazy dog\n" % (tag.encode(), i)
        i += 1
    out = out[:n - 1] + b"\n"
    return bytes(out)


# ------------------------------------------------------------------ probes

def op_efbig_rollback(a):
    """efbig-rollback PATH: PATH holds "orig". A opens it O_WRONLY and pwrites "A" at 0;
    B opens it O_WRONLY|O_TRUNC, writes "B", closes (published); A pwrites a byte at 1 MiB
    (EFBIG, the save fails); A closes. The file must then hold B's value: A's failed save
    publishes nothing, and must not roll the file back over B's committed write."""
    path = a[0]
    fa = os.open(path, os.O_WRONLY)
    os.pwrite(fa, b"A", 0)
    fb = os.open(path, os.O_WRONLY | os.O_TRUNC)
    write_all(fb, b"B")
    os.close(fb)
    after_b = other_read(path)
    err = "none"
    try:
        os.pwrite(fa, b"x", MIB)
    except OSError as e:
        err = ename(e)
    cerr = "none"
    try:
        os.close(fa)
    except OSError as e:
        cerr = ename(e)
    final = other_read(path)
    desc = "after-B=%r pwrite@1MiB=%s close=%s final=%r" % (after_b, err, cerr, final)
    if err == "EFBIG" and final == "B" and after_b == "B":
        return "OK " + desc
    return "FAIL " + desc


def op_rw_own(a):
    """rw-own PATH: PATH holds "old". An O_RDWR descriptor writes "new-value", seeks to 0
    and reads: it must see its own save in progress; meanwhile another process still sees
    "old"; after close, another process sees "new-value"."""
    path = a[0]
    fd = os.open(path, os.O_RDWR)
    write_all(fd, b"new-value")
    os.lseek(fd, 0, os.SEEK_SET)
    own = os.read(fd, 100).decode(errors="replace")
    other = other_read(path)
    os.close(fd)
    after = other_read(path)
    desc = "own-read=%r other-before-close=%r other-after-close=%r" % (own, other, after)
    if own == "new-value" and other == "old" and after == "new-value":
        return "OK " + desc
    return "FAIL " + desc


def op_fsync_pub(a):
    """fsync-pub PATH: PATH holds "old". O_WRONLY|O_TRUNC, write "synced"; another process
    still sees "old" (unpublished); fsync; another process sees "synced" before close."""
    path = a[0]
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    write_all(fd, b"synced")
    before = other_read(path)
    os.fsync(fd)
    after = other_read(path)
    os.close(fd)
    final = other_read(path)
    return "OK before-fsync=%s after-fsync=%s after-close=%s" % (before, after, final)


def op_jsondump(a):
    """jsondump PATH BYTES: json.dump of a ~BYTES document to a file opened with open(,'w');
    prints OK <size> <sha-ish> after checking the file reads back as that document."""
    path, size = a[0], int(a[1])
    doc = {"items": [], "name": "saves"}
    i = 0
    while len(json.dumps(doc)) < size:
        doc["items"].append({"id": i, "key": "k%05d" % i, "value": "v" * 40, "on": i % 2 == 0})
        i += 1
    with open(path, "w") as f:
        json.dump(doc, f)
    back = read_path(path)
    want = json.dumps(doc).encode()
    if back != want:
        return "FAIL read back %d bytes, want %d" % (len(back), len(want))
    return "OK %d" % len(want)


def op_vimsave(a):
    """vimsave PATH NEWFILE [CHUNK]: like vim's save over an existing file: open O_WRONLY
    (no O_TRUNC), ftruncate(fd, 0), write NEWFILE in CHUNK-byte writes (default 1024),
    fsync, close."""
    path, new = a[0], open(a[1], "rb").read()
    chunk = int(a[2]) if len(a) > 2 else 1024
    fd = os.open(path, os.O_WRONLY)
    os.ftruncate(fd, 0)
    write_all(fd, new, chunk)
    os.fsync(fd)
    os.close(fd)
    return "%d" % len(new)


def op_pybuffered(a):
    """pybuffered PATH NEWFILE: Python buffered text-mode writes: open(PATH,'w') and one
    f.write per line of NEWFILE (the io buffer flushes every 8 KiB), then close."""
    path = a[0]
    lines = open(a[1], "r").read().splitlines(keepends=True)
    with open(path, "w") as f:
        for ln in lines:
            f.write(ln)
    return "%d" % len(lines)


def op_chunked(a):
    """chunked PATH NEWFILE CHUNK: open O_WRONLY|O_CREAT|O_TRUNC, write NEWFILE in
    CHUNK-byte write() calls, close."""
    path, new, chunk = a[0], open(a[1], "rb").read(), int(a[2])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, new, chunk)
    finally:
        os.close(fd)
    return "%d" % len(new)


def op_gen(a):
    """gen OUT BYTES TAG: writes value(BYTES, TAG) to OUT (a local file)."""
    with open(a[0], "wb") as f:
        f.write(value(int(a[1]), a[2]))
    return ""


def op_saver(a):
    """saver PATH MINCOUNT SECONDS CHUNK FILEA FILEB...: saves PATH at least MINCOUNT times
    and until SECONDS have passed, the i-th save writing file i mod n, each as
    open(O_WRONLY|O_TRUNC) + CHUNK-byte write() calls + close. Prints OK <saves> <seconds>."""
    path, mincount, secs, chunk = a[0], int(a[1]), float(a[2]), int(a[3])
    vals = [open(p, "rb").read() for p in a[4:]]
    t0 = time.monotonic()
    i = 0
    while i < mincount or time.monotonic() - t0 < secs:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            write_all(fd, vals[i % len(vals)], chunk)
        finally:
            os.close(fd)
        i += 1
    return "%d %.1fs" % (i, time.monotonic() - t0)


def op_reader(a):
    """reader PATH STOPFILE MAXSECONDS FILE...: reads PATH over and over (open, read to EOF
    in 32 KiB chunks, close) until STOPFILE exists or MAXSECONDS pass; every read must equal
    one of FILEs. Prints OK reads=N, or FAIL with the bad reads' lengths and heads."""
    path, stop, secs = a[0], a[1], float(a[2])
    vals = [open(p, "rb").read() for p in a[3:]]
    end = time.monotonic() + secs
    n = 0
    bad = []
    while time.monotonic() < end and not os.path.exists(stop):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            bad.append(ename(e))
            n += 1
            continue
        try:
            got = bytearray()
            while True:
                b = os.read(fd, 32768)
                if not b:
                    break
                got += b
        finally:
            os.close(fd)
        n += 1
        if bytes(got) not in vals:
            bad.append("%d bytes %r" % (len(got), bytes(got[:24])))
    if bad:
        return "FAIL %d of %d reads bad, e.g. %s" % (len(bad), n, bad[:4])
    return "OK reads=%d" % n


def op_hist_complete(a):
    """hist-complete PATH FILE... REVS: (REVS after a '--') every PATH@rev equals one of the
    FILEs. Prints OK or FAIL with the bad revisions."""
    i = a.index("--")
    path, vals, revs = a[0], [open(p, "rb").read() for p in a[1:i]], a[i + 1:]
    bad = []
    for r in revs:
        try:
            got = read_path("%s@%s" % (path, r))
        except OSError as e:
            bad.append("%s:%s" % (r, ename(e)))
            continue
        if got not in vals:
            bad.append("%s:%d bytes %r" % (r, len(got), got[:20]))
    if bad:
        return "FAIL " + " ".join(bad[:6])
    return "%d revisions complete" % len(revs)


OPS = {
    "efbig-rollback": op_efbig_rollback, "rw-own": op_rw_own, "fsync-pub": op_fsync_pub,
    "jsondump": op_jsondump, "vimsave": op_vimsave, "pybuffered": op_pybuffered,
    "chunked": op_chunked, "gen": op_gen, "saver": op_saver, "reader": op_reader,
    "hist-complete": op_hist_complete,
}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in OPS:
        sys.stderr.write("usage: saves_ops.py {%s} ARGS...\n" % ",".join(sorted(OPS)))
        sys.exit(2)
    try:
        res = OPS[sys.argv[1]](sys.argv[2:])
    except OSError as e:
        print(ename(e) + " " + str(e))
        return
    except subprocess.TimeoutExpired as e:
        print("TIMEOUT %s" % e)
        return
    if res.startswith("OK") or res.startswith("FAIL"):
        print(res)
    else:
        print(("OK " + res) if res else "OK")


if __name__ == "__main__":
    main()
