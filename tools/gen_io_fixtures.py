#!/usr/bin/python3
"""gen_io_fixtures.py - regenerate tests/fixtures/io/: PyTorch reference data for
the safetensors reader, dtype conversion, bilinear resize, Fashion-MNIST facts and
state_dicts (MLP, small CNN, CNN with BatchNorm, a resnet18 written from a formula)
with the logits PyTorch computes for them.

Not for: running in tests (tests replay the committed files and never need Python).
Run with Debian's python3 (torch, torchvision):  /usr/bin/python3 tools/gen_io_fixtures.py
safetensors is written by hand (the format is an 8-byte length, a JSON header and
raw little-endian bytes), so the `safetensors` module is not needed.
"""
import gzip
import json
import os
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "io")
DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
          torch.int64: "I64"}


def st_bytes(tensors, metadata=None):
    """The bytes of a safetensors file: tensors in the given order, compact JSON
    header padded with spaces to a multiple of 8 (as the reference writer)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype in (torch.float16, torch.bfloat16) \
            else t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def save(name, tensors, metadata=None):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(st_bytes(tensors, metadata))


def dtypes():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(3, 4, generator=g, dtype=torch.float64) * 10
    special = torch.tensor([0.0, -0.0, 65504.0, 6.0e-8, 1.0e-5, -2.5, float("inf"), 1.0 / 3.0], dtype=torch.float64)
    f16 = torch.cat([base.flatten(), special]).to(torch.float16)
    bf16 = torch.cat([base.flatten(), special]).to(torch.bfloat16)
    save("dtypes.safetensors", {
        "f32": base.float(), "f64": base, "f16": f16, "bf16": bf16,
        "f16_as_f32": f16.float(), "bf16_as_f32": bf16.float(), "f64_as_f32": base.float(),
        "num_batches_tracked": torch.tensor(7, dtype=torch.int64),
        "empty": torch.zeros(0, 3),
        "i64": torch.tensor([-5, 0, 16777216, 3], dtype=torch.int64),
    }, {"format": "pt", "note": "dtype conversion reference"})


def resize():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 7, 9, generator=g)
    t = {"input": x[0]}
    for h, w in [(4, 5), (14, 18), (7, 3), (28, 28), (1, 1)]:
        t[f"out_{h}x{w}"] = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=False)[0]
    save("resize.safetensors", t)


def fmnist():
    d = "/usr/share/datasets/fashion-mnist"

    def idx(name):
        with gzip.open(os.path.join(d, name)) as f:
            b = f.read()
        nd = b[3]
        dims = struct.unpack(">" + "I" * nd, b[4:4 + 4 * nd])
        return np.frombuffer(b[4 + 4 * nd:], dtype=np.uint8).reshape(dims)

    tri, trl = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz")
    tei, tel = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz")
    facts = [int(trl[0]), int(tri[0].sum()), int(tel[0]), int(tei[0].sum()), int(tri.sum(dtype=np.int64)),
             int(tei.sum(dtype=np.int64)), int(tri[59999].sum()), int(trl[59999])]
    save("fmnist_facts.safetensors", {"facts": torch.tensor(facts, dtype=torch.int64)},
         {"order": "train_label0 train_pixsum0 test_label0 test_pixsum0 train_pixsum test_pixsum "
                   "train_pixsum59999 train_label59999"})


def with_io(name, model, x, spec):
    model.eval()
    with torch.no_grad():
        logits = model(x)
    save(f"{name}.safetensors", dict(model.state_dict()), {"format": "pt", "source": "tools/gen_io_fixtures.py"})
    save(f"{name}_io.safetensors", {"x": x, "logits": logits}, {"spec": json.dumps(spec)})


def mlp():
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    x = torch.randn(4, 8)
    with_io("mlp", m, x, {"preset": "mlp", "opts": {"inputs": 8, "hidden": [16, 12], "outputs": 3}})


def cnn():
    torch.manual_seed(4)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(8 * 2 * 2, 16), nn.ReLU(), nn.Linear(16, 5))
    x = torch.randn(3, 1, 14, 14)
    with_io("cnn", m, x, {"preset": "cnn", "opts": {"in_channels": 1, "input_size": [14, 14], "channels": [4, 8],
                                                   "hidden": 16, "outputs": 5}})


def cnn_bn():
    """A conv + batchnorm net whose running statistics were moved by training-mode
    forwards, so loading running_mean/var/num_batches_tracked matters."""
    torch.manual_seed(5)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(4, 3))
    m.train()
    for _ in range(3):
        m(torch.randn(8, 3, 6, 6) * 2 + 1)
    spec = {"input": [3, 6, 6], "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "batchnorm2d"},
        {"type": "relu"}, {"type": "global_avg_pool"}, {"type": "flatten"}, {"type": "linear", "out_features": 3}]}
    with_io("cnn_bn", m, torch.randn(2, 3, 6, 6), {"spec": spec})


# ---- resnet18 from a formula --------------------------------------------------
# 45 MB of weights cannot be committed. Every tensor is a deterministic function
# of its name and index, exactly representable in float32, so the C test can
# regenerate the file PyTorch wrote byte for byte (checked by size and CRC-32)
# and compare its logits with PyTorch's (committed: 2 x 10 floats).

def formula(name, numel):
    """Values in [-0.5, 0.5) * scale: a multiplicative hash of (crc32(name), i)
    reduced to 24 bits, so every value is an exact float32."""
    h = zlib.crc32(name.encode()) & 0xffffffff
    i = np.arange(numel, dtype=np.uint64)
    v = ((i * np.uint64(2654435761) + np.uint64(h)) & np.uint64(0xffffffff)) >> np.uint64(8)
    return (v.astype(np.float64) / float(1 << 24) - 0.5)


def resnet18_formula():
    m = torchvision.models.resnet18(num_classes=10)
    sd = m.state_dict()
    new = {}
    for name, t in sd.items():
        if t.dtype == torch.int64:
            new[name] = torch.tensor(name.__len__() % 7, dtype=torch.int64)
            continue
        v = formula(name, t.numel())
        if name.endswith("running_var"):
            v = v + 1.0  # in [0.5, 1.5)
        elif name.endswith(".weight") and t.dim() == 1:
            v = v + 1.0  # BN gamma
        elif t.dim() >= 2:
            # a power of two near 4/sqrt(fan_in), from integers only: 2^(2 - floor(log2(fan_in)) // 2);
            # the 4 keeps the signal alive through 20 layers (each sample's logits differ by ~30%)
            fan_in = t[0].numel()
            v = v * 2.0 ** (2 - (fan_in.bit_length() - 1) // 2)
        else:
            v = v * 0.25
        new[name] = torch.tensor(v.reshape(t.shape), dtype=torch.float32)
    m.load_state_dict(new, strict=True)
    m.eval()
    x = torch.tensor(formula("input", 2 * 3 * 64 * 64).reshape(2, 3, 64, 64), dtype=torch.float32) * 4
    with torch.no_grad():
        logits = m(x)
    data = st_bytes(new, {"format": "pt"})
    save("resnet18_formula_io.safetensors", {"logits": logits}, {
        "bytes": str(len(data)), "crc32": "%08x" % (zlib.crc32(data) & 0xffffffff),
        "formula": "see tools/gen_io_fixtures.py formula()", "input": "formula('input', 2*3*64*64) * 4"})
    print(f"resnet18 formula file: {len(data)} bytes crc32 {zlib.crc32(data) & 0xffffffff:08x}")


def main():
    os.makedirs(OUT, exist_ok=True)
    dtypes()
    resize()
    fmnist()
    mlp()
    cnn()
    cnn_bn()
    resnet18_formula()
    for f in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, f)):9d} {f}")


if __name__ == "__main__":
    sys.exit(main())
