#!/usr/bin/env python3
"""make_subsets.py - cut Fashion-MNIST into the transfer-learning example's
datasets, as plain IDX files (standard library only; any python3):

  pretrain-{images,labels}    every training image of classes 0-4 (30,000)
  fewshot-{images,labels}     the first 20 training images of each class 5-9 (100)
  test-{images,labels}        every test image of classes 5-9 (5,000)

  python3 make_subsets.py [SRC_DIR] OUT_DIR

Not for: anything the tests run.
"""
import gzip
import os
import struct
import sys


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def write_idx(path, magic, dims, payload):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + struct.pack(">" + "I" * len(dims), *dims) + payload)


def subset(src, split, keep, out, name):
    (n, h, w), images = read_idx(os.path.join(src, f"{split}-images-idx3-ubyte.gz"))
    _, labels = read_idx(os.path.join(src, f"{split}-labels-idx1-ubyte.gz"))
    rows = [i for i in range(n) if keep(i, labels[i])]
    size = h * w
    write_idx(os.path.join(out, f"{name}-images-idx3-ubyte"), 0x803, (len(rows), h, w),
              b"".join(images[i * size:(i + 1) * size] for i in rows))
    write_idx(os.path.join(out, f"{name}-labels-idx1-ubyte"), 0x801, (len(rows),), bytes(labels[i] for i in rows))
    print(f"{name}: {len(rows)} images")


def main():
    src = sys.argv[1] if len(sys.argv) > 2 else "/usr/share/datasets/fashion-mnist"
    out = sys.argv[-1]
    os.makedirs(out, exist_ok=True)
    subset(src, "train", lambda i, y: y < 5, out, "pretrain")
    seen = {}

    def first20(i, y):
        if y < 5 or seen.get(y, 0) >= 20:
            return False
        seen[y] = seen.get(y, 0) + 1
        return True

    subset(src, "train", first20, out, "fewshot")
    subset(src, "t10k", lambda i, y: y >= 5, out, "test")


if __name__ == "__main__":
    main()
