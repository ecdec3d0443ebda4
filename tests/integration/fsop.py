#!/usr/bin/python3
"""tests/integration/fsop.py — exact-errno file operations for the integration scripts.
Each call does one operation (or one small multi-step probe that needs precise control of
open/read/write calls) and prints "OK [result]" on success or the errno name (ENOENT,
EINVAL, ...) on failure, so a shell test can assert the exact errno the mount returned.
Usage: fsop.py OP ARGS...   (see the OPS table at the bottom)."""

import errno
import hashlib
import os
import signal
import sys
import time


def ename(e):
    return errno.errorcode.get(e.errno, "E%d" % e.errno)


def data_of(spec):
    """lit:TEXT | rep:N:C (N copies of C) | file:PATH | pat:N:SEED (N pseudo-random-ish bytes)."""
    kind, _, rest = spec.partition(":")
    if kind == "lit":
        return rest.encode("utf-8", "surrogateescape")
    if kind == "rep":
        n, _, c = rest.partition(":")
        return (c or "x").encode()[:1] * int(n)
    if kind == "file":
        with open(rest, "rb") as f:
            return f.read()
    if kind == "pat":
        n, _, seed = rest.partition(":")
        return pattern(int(n), seed)
    raise SystemExit("bad data spec " + spec)


def pattern(n, seed):
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(("%s/%d" % (seed, i)).encode()).hexdigest().encode()
        i += 1
    return bytes(out[:n])


def path_arg(p):
    # Lets tests pass names that are not valid UTF-8 (bash $'\xff' arrives as bytes).
    return os.fsencode(p)


def write_all(fd, data):
    """Writes like bash's echo/printf: keeps calling write() after a short count."""
    off = 0
    mv = memoryview(data)
    while off < len(data):
        n = os.write(fd, mv[off:])
        if n <= 0:
            raise OSError(errno.EIO, "write returned %d" % n)
        off += n
    return off


def do_write(path, spec, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    data = data_of(spec)
    fd = os.open(path_arg(path), flags, 0o644)
    try:
        write_all(fd, data)
    except OSError:
        try:
            os.close(fd)
        except OSError:
            pass
        raise
    os.close(fd)
    return ""


def op_write(a):
    return do_write(a[0], a[1] if len(a) > 1 else "lit:")


def op_append(a):
    return do_write(a[0], a[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)


def op_excl(a):
    return do_write(a[0], a[1] if len(a) > 1 else "lit:", os.O_WRONLY | os.O_CREAT | os.O_EXCL)


def op_create(a):
    """open(O_CREAT|O_WRONLY|O_TRUNC) then close, writing nothing."""
    fd = os.open(path_arg(a[0]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.close(fd)
    return ""


def op_openw(a):
    """open(O_WRONLY) without O_CREAT, then close."""
    fd = os.open(path_arg(a[0]), os.O_WRONLY)
    os.close(fd)
    return ""


def read_fd(fd):
    chunks = []
    while True:
        b = os.read(fd, 1 << 17)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def op_read(a):
    """read PATH [OUT]: reads the whole file; prints OK <len> and copies it to OUT if given."""
    fd = os.open(path_arg(a[0]), os.O_RDONLY)
    try:
        data = read_fd(fd)
    finally:
        os.close(fd)
    if len(a) > 1:
        with open(a[1], "wb") as f:
            f.write(data)
    return str(len(data))


def op_readnb(a):
    """Opens O_RDONLY|O_NONBLOCK and reads once."""
    fd = os.open(path_arg(a[0]), os.O_RDONLY | os.O_NONBLOCK)
    try:
        return str(len(os.read(fd, 65536)))
    finally:
        os.close(fd)


def op_mkdir(a):
    os.mkdir(path_arg(a[0]))
    return ""


def op_rmdir(a):
    os.rmdir(path_arg(a[0]))
    return ""


def op_unlink(a):
    os.unlink(path_arg(a[0]))
    return ""


def op_rename(a):
    os.rename(path_arg(a[0]), path_arg(a[1]))
    return ""


def op_link(a):
    os.link(path_arg(a[0]), path_arg(a[1]))
    return ""


def op_symlink(a):
    os.symlink(a[0], path_arg(a[1]))
    return ""


def op_truncate(a):
    os.truncate(path_arg(a[0]), int(a[1]))
    return ""


def op_stat(a):
    return str(os.stat(path_arg(a[0])).st_size)


def op_listdir(a):
    return " ".join(sorted(os.fsdecode(n) for n in os.listdir(path_arg(a[0]))))


def op_setx(a):
    os.setxattr(path_arg(a[0]), a[1], a[2].encode())
    return ""


def op_getx(a):
    return os.getxattr(path_arg(a[0]), a[1]).decode("utf-8", "replace").strip()


def op_rmx(a):
    os.removexattr(path_arg(a[0]), a[1])
    return ""


def op_listx(a):
    return " ".join(sorted(os.listxattr(path_arg(a[0]))))


def op_atomic_writer(a):
    """atomic-writer PATH SECONDS FILEA FILEB: rewrites PATH alternately with A and B, each
    as one open(O_TRUNC)+write()+close, for SECONDS. Prints OK <writes>."""
    path, secs = a[0], float(a[1])
    vals = [data_of("file:" + a[2]), data_of("file:" + a[3])]
    end = time.monotonic() + secs
    n = 0
    while time.monotonic() < end:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            w = os.write(fd, vals[n % 2])
            if w != len(vals[n % 2]):
                raise OSError(errno.EIO, "short write %d" % w)
        finally:
            os.close(fd)
        n += 1
    return str(n)


def op_atomic_reader(a):
    """atomic-reader PATH SECONDS FILEA FILEB: reads PATH over and over (open, read to EOF,
    close) for SECONDS; every read must equal A or B. Prints OK reads=N a=N b=N, or
    BAD <count> with the lengths of the first bad reads."""
    path, secs = a[0], float(a[1])
    va, vb = data_of("file:" + a[2]), data_of("file:" + a[3])
    end = time.monotonic() + secs
    n = na = nb = 0
    bad = []
    while time.monotonic() < end:
        fd = os.open(path, os.O_RDONLY)
        try:
            d = read_fd(fd)
        finally:
            os.close(fd)
        n += 1
        if d == va:
            na += 1
        elif d == vb:
            nb += 1
        else:
            bad.append(len(d))
    if bad:
        print("BAD %d of %d reads (lengths %s)" % (len(bad), n, bad[:8]))
        sys.exit(0)
    return "reads=%d a=%d b=%d" % (n, na, nb)


def op_half_read(a):
    """half-read PATH OLDFILE NEWFILE: opens PATH (which holds OLD), reads the first half in
    chunks, rewrites PATH with NEW through a separate open file description (tmp + rename
    when TMP given as 4th arg, else O_TRUNC + write), reads the rest from the first fd.
    Prints OK when the whole read equals OLD; MIXED/OTHER otherwise."""
    path = a[0]
    old = data_of("file:" + a[1])
    new = data_of("file:" + a[2])
    tmp = a[3] if len(a) > 3 else None
    half = len(old) // 2
    fd = os.open(path, os.O_RDONLY)
    try:
        got = bytearray()
        while len(got) < half:
            b = os.read(fd, min(32768, half - len(got)))
            if not b:
                break
            got += b
        if tmp:
            do_write(tmp, "file:" + a[2])
            os.rename(tmp, path)
        else:
            do_write(path, "file:" + a[2])
        # The rewrite must be visible to a fresh open before we check the old fd.
        fd2 = os.open(path, os.O_RDONLY)
        try:
            fresh = read_fd(fd2)
        finally:
            os.close(fd2)
        got += read_fd(fd)
    finally:
        os.close(fd)
    if fresh != new:
        print("NOTNEW fresh open after rewrite gave %d bytes, not the new value" % len(fresh))
        sys.exit(0)
    if bytes(got) == old:
        return "old version throughout"
    if got[:half] == old[:half] and got[half:] == new[half:]:
        print("MIXED first half old, second half new")
    else:
        print("OTHER read %d bytes matching neither version" % len(got))
    sys.exit(0)


def value_for(key, n):
    """A self-checking value: 'QV <len> <sha256> ' header + payload."""
    payload = pattern(n, key)
    return b"QV %d %s " % (len(payload), hashlib.sha256(payload).hexdigest().encode()) + payload


def value_ok(data):
    try:
        head, _, rest = data.partition(b" ")
        ln, _, rest = rest.partition(b" ")
        digest, _, payload = rest.partition(b" ")
        return (head == b"QV" and int(ln) == len(payload)
                and hashlib.sha256(payload).hexdigest().encode() == digest)
    except ValueError:
        return False


def op_durable_writer(a):
    """durable-writer DIR PREFIX N LOG: writes DIR/PREFIX<i> for i < N with self-checking
    values of varying sizes (one write() each, up to 100 KiB), appending the key to LOG
    (flushed) only after open+write+close all succeeded. Stops at the first error. Prints
    OK <n> or <ERRNO> <n written>."""
    d, prefix, count, log = a[0], a[1], int(a[2]), a[3]
    sizes = [100, 4000, 65000, 100000, 700, 20000]
    n = 0
    with open(log, "a") as lf:
        try:
            for i in range(count):
                key = "%s%d" % (prefix, i)
                val = value_for(key, sizes[i % len(sizes)])
                fd = os.open(os.path.join(d, key), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    write_all(fd, val)
                finally:
                    os.close(fd)
                lf.write(key + "\n")
                lf.flush()
                n += 1
        except OSError as e:
            print("%s %d" % (ename(e), n))
            sys.exit(0)
    return str(n)


def op_durable_check(a):
    """durable-check DIR LOG: every key in LOG exists in DIR with a complete self-checking
    value, and every other file in DIR is either empty or complete (no torn value). Prints
    OK <logged> <present> or one FAIL line listing the problems."""
    d, log = a[0], a[1]
    with open(log) as f:
        keys = [k.strip() for k in f if k.strip()]
    bad = []
    for k in keys:
        try:
            with open(os.path.join(d, k), "rb") as f:
                v = f.read()
        except OSError as e:
            bad.append("%s %s" % (k, ename(e)))
            continue
        if not value_ok(v):
            bad.append("%s torn (%d bytes)" % (k, len(v)))
    names = os.listdir(d)
    logged = set(keys)
    for k in names:
        if k in logged:
            continue
        if os.path.isdir(os.path.join(d, k)):
            continue
        with open(os.path.join(d, k), "rb") as f:
            v = f.read()
        # An unacknowledged key may exist empty (its O_CREAT committed, its write not).
        if v and not value_ok(v):
            bad.append("%s (unacknowledged) torn (%d bytes)" % (k, len(v)))
    if bad:
        print("FAIL %d problems: %s" % (len(bad), "; ".join(bad[:10])))
        sys.exit(0)
    return "%d %d" % (len(keys), len(names))


def op_fill(a):
    """fill DIR PREFIX SIZE MAX LOG: writes DIR/PREFIX<i> (SIZE-byte self-checking values)
    until a write fails or MAX keys are written; logs acknowledged keys. Prints <ERRNO> <n>
    or OK <n>."""
    d, prefix, size, mx, log = a[0], a[1], int(a[2]), int(a[3]), a[4]
    n = 0
    with open(log, "a") as lf:
        for i in range(mx):
            key = "%s%d" % (prefix, i)
            try:
                fd = os.open(os.path.join(d, key), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            except OSError as e:
                print("%s %d" % (ename(e), n))
                sys.exit(0)
            err = None
            try:
                write_all(fd, value_for(key, size))
            except OSError as e:
                err = e
            try:
                os.close(fd)
            except OSError as e:
                err = err or e
            if err:
                print("%s %d" % (ename(err), n))
                sys.exit(0)
            lf.write(key + "\n")
            lf.flush()
            n += 1
    return str(n)


def op_churn(a):
    """churn PATH COUNT: COUNT rewrites of PATH (one write each). Prints OK <n> or <ERRNO>."""
    path, count = a[0], int(a[1])
    for i in range(count):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"%d\n" % i)
        finally:
            os.close(fd)
    return str(count)


def op_exec_sigdfl(a):
    """exec-sigdfl CMD ARGS...: runs CMD with SIGINT/SIGQUIT at their default action
    (background jobs of a non-interactive shell otherwise inherit them ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    os.execvp(a[0], a)


OPS = {
    "write": op_write, "append": op_append, "excl": op_excl, "create": op_create,
    "openw": op_openw, "read": op_read, "readnb": op_readnb, "mkdir": op_mkdir,
    "rmdir": op_rmdir, "unlink": op_unlink, "rename": op_rename, "link": op_link,
    "symlink": op_symlink, "truncate": op_truncate, "stat": op_stat, "listdir": op_listdir,
    "setx": op_setx, "getx": op_getx, "rmx": op_rmx, "listx": op_listx,
    "atomic-writer": op_atomic_writer, "atomic-reader": op_atomic_reader,
    "half-read": op_half_read, "durable-writer": op_durable_writer,
    "durable-check": op_durable_check, "fill": op_fill, "churn": op_churn,
    "exec-sigdfl": op_exec_sigdfl,
}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in OPS:
        sys.stderr.write("usage: fsop.py {%s} ARGS...\n" % ",".join(sorted(OPS)))
        sys.exit(2)
    args = [os.fsdecode(os.fsencode(x)) for x in sys.argv[2:]]
    try:
        res = OPS[sys.argv[1]](args)
    except OSError as e:
        print(ename(e))
        return
    print(("OK " + res) if res else "OK")


if __name__ == "__main__":
    main()
