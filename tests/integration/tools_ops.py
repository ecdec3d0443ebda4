#!/usr/bin/python3
"""tests/integration/tools_ops.py — the Python side of tools.sh: what real programs do with
files (json.dump, os.replace, os.utime, fstat after unlink, read-only mmap), exact errnos for
link()/mkfifo(), and a metadata listing of a tree for comparing a copy with its source.

Each op prints "OK [details]", "FAIL <observed>", or the errno name of a call that failed.
Usage: tools_ops.py OP ARGS...   (see OPS at the bottom)."""

import errno
import json
import mmap
import os
import stat
import sys


def ename(e):
    return errno.errorcode.get(e.errno, "E%d" % e.errno)


def op_meta(a):
    """meta DIR [nolinktime]: one line per entry below DIR, sorted by path:
    '<path> <type> <mode> <mtime s> [<uid>:<gid>] [-> <target>]'; with nolinktime the mtime
    of symbolic links is left out. Prints the lines (no OK)."""
    top = a[0]
    linktime = not (len(a) > 1 and a[1] == "nolinktime")
    owners = len(a) > 1 and a[1] == "owners"
    out = []
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, top)
            if stat.S_ISLNK(st.st_mode):
                t, extra = "l", " -> " + os.readlink(p)
                mt = str(int(st.st_mtime)) if linktime else "-"
            else:
                t = "d" if stat.S_ISDIR(st.st_mode) else ("f" if stat.S_ISREG(st.st_mode) else "?")
                extra, mt = "", str(int(st.st_mtime))
            mode = "%o" % stat.S_IMODE(st.st_mode) if t != "l" else "-"
            own = " %d:%d" % (st.st_uid, st.st_gid) if owners else ""
            out.append("%s %s %s %s%s%s" % (rel, t, mode, mt, own, extra))
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    print("\n".join(sorted(out)))
    sys.exit(0)


def op_link(a):
    """link SRC DST: hard link."""
    os.link(a[0], a[1])
    return ""


def op_mkfifo(a):
    os.mkfifo(a[0])
    return ""


def op_jsondump(a):
    """jsondump PATH: json.dump of a small document to open(PATH,'w'); reads it back."""
    doc = {"name": "tools", "list": list(range(50)), "nested": {"a": "b" * 100}}
    with open(a[0], "w") as f:
        json.dump(doc, f, indent=1)
    with open(a[0]) as f:
        back = json.load(f)
    return "" if back == doc else None


def op_replace(a):
    """replace TMP TARGET TEXT: writes TEXT to TMP, os.replace(TMP, TARGET)."""
    with open(a[0], "w") as f:
        f.write(a[2])
    os.replace(a[0], a[1])
    with open(a[1]) as f:
        got = f.read()
    if got != a[2] or os.path.exists(a[0]):
        return None
    return ""


def op_utime(a):
    """utime PATH ATIME MTIME: os.utime, then stat; prints OK <atime> <mtime> as seen."""
    os.utime(a[0], (int(a[1]), int(a[2])))
    st = os.stat(a[0])
    return "%d %d" % (int(st.st_atime), int(st.st_mtime))


def op_fstat_unlinked(a):
    """fstat-unlinked PATH: open, unlink, fstat and read through the descriptor.
    Prints OK nlink=<n> size=<n> data=<text>, or the failing step and its errno."""
    fd = os.open(a[0], os.O_RDONLY)
    step = "unlink"
    try:
        os.unlink(a[0])
        step = "fstat"
        st = os.fstat(fd)
        step = "read"
        data = os.read(fd, 1000).decode(errors="replace")
        return "nlink=%d size=%d data=%s" % (st.st_nlink, st.st_size, data.strip())
    except OSError as e:
        print("%s at %s after open" % (ename(e), step))
        sys.exit(0)
    finally:
        os.close(fd)


def op_mmap(a):
    """mmap PATH: read-only mmap (ACCESS_READ) of the whole file; prints OK <bytes> when
    the mapping equals a read() of the file."""
    with open(a[0], "rb") as f:
        want = f.read()
        f.seek(0)
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            got = m[:]
        finally:
            m.close()
    if got != want:
        print("FAIL mmap gave %d bytes %r, read gave %d bytes" % (len(got), got[:20], len(want)))
        sys.exit(0)
    return "%d" % len(got)


OPS = {
    "meta": op_meta, "link": op_link, "mkfifo": op_mkfifo, "jsondump": op_jsondump,
    "replace": op_replace, "utime": op_utime, "fstat-unlinked": op_fstat_unlinked,
    "mmap": op_mmap,
}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in OPS:
        sys.stderr.write("usage: tools_ops.py {%s} ARGS...\n" % ",".join(sorted(OPS)))
        sys.exit(2)
    try:
        res = OPS[sys.argv[1]](sys.argv[2:])
    except OSError as e:
        print(ename(e))
        return
    except ValueError as e:
        print("FAIL %s" % e)
        return
    if res is None:
        print("FAIL content differs")
    else:
        print(("OK " + res) if res else "OK")


if __name__ == "__main__":
    main()
