#!/usr/bin/env python3
"""tests/powercut/image.py SHADOW OUT — builds, in the new directory OUT, the data directory
a power cut would have left: the durable entries and contents the LD_PRELOAD shim
(tests/powercut/shim.c) recorded in SHADOW. Prints "<files> files, <bytes> bytes"."""
import os
import shutil
import sys


def main():
    shadow, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(shadow, "ROOT")) as f:
        root = int(f.read())
    os.mkdir(out)
    files = size = 0
    todo = [(root, out)]
    while todo:
        sid, path = todo.pop()
        listing = os.path.join(shadow, "d", str(sid))
        if not os.path.exists(listing):
            continue  # a directory whose own entries were never synced: empty
        with open(listing) as f:
            for line in f:
                kind, csid, name = line.rstrip("\n").split(" ", 2)
                dst = os.path.join(path, name)
                if kind == "d":
                    os.mkdir(dst)
                    todo.append((int(csid), dst))
                    continue
                src = os.path.join(shadow, "i", csid)
                if os.path.exists(src):
                    shutil.copyfile(src, dst)
                else:
                    open(dst, "wb").close()  # created, never synced: empty
                files += 1
                size += os.path.getsize(dst)
    print("%d files, %d bytes" % (files, size))


if __name__ == "__main__":
    main()
