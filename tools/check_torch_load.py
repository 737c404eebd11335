#!/usr/bin/python3
"""check_torch_load.py - do models saved by finetuned load in PyTorch with
load_state_dict(strict=True) and give the reference logits?

Reads the files tests/unit/test_model_io.c leaves in the build directory
(saved_mlp, saved_mlp_head5, saved_cnn_bn, saved_resnet18_formula .safetensors),
loads each into the matching torch module strictly, and compares its logits with
the committed PyTorch fixtures (for saved_mlp_head5, whose head finetuned
initialised, with the logits finetuned computed). Not for: CI (tests never need Python); run it by hand after
`meson test -C build model_io`:
    /usr/bin/python3 tools/check_torch_load.py build
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "io")
NP = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def load(path):
    """A minimal safetensors reader (the safetensors module may be absent)."""
    with open(path, "rb") as f:
        b = f.read()
    (n,) = struct.unpack("<Q", b[:8])
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        s, e = info["data_offsets"]
        a = np.frombuffer(b[8 + n + s:8 + n + e], dtype=NP[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out, meta


def check(label, module, saved, io_name, x=None, io_dir=FIX):
    sd, meta = load(saved)
    module.load_state_dict(sd, strict=True)  # raises on any missing / unexpected / mis-shaped key
    module.eval()
    io, _ = load(os.path.join(io_dir, io_name))
    x = io["x"] if x is None else x
    with torch.no_grad():
        got = module(x)
    want = io["logits"]
    rel = ((got - want).abs().max() / want.abs().max()).item()
    ok = rel <= 1e-5
    print(f"{'ok' if ok else 'FAIL'} {label}: load_state_dict(strict=True) passed, {len(sd)} tensors, "
          f"logits max error / max |logit| = {rel:.2e}, metadata keys {sorted(meta)}")
    return ok


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "build"
    good = True
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    good &= check("mlp", mlp, os.path.join(d, "saved_mlp.safetensors"), "mlp_io.safetensors")
    head5 = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 5))
    good &= check("mlp with a head finetuned re-initialised (finetuned's logits)", head5,
                  os.path.join(d, "saved_mlp_head5.safetensors"), "saved_mlp_head5_io.safetensors", io_dir=d)
    bn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                       nn.Flatten(), nn.Linear(4, 3))
    good &= check("cnn_bn", bn, os.path.join(d, "saved_cnn_bn.safetensors"), "cnn_bn_io.safetensors")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gen_io_fixtures import formula
    x = torch.tensor(formula("input", 2 * 3 * 64 * 64).reshape(2, 3, 64, 64), dtype=torch.float32) * 4
    good &= check("resnet18", torchvision.models.resnet18(num_classes=10),
                  os.path.join(d, "saved_resnet18_formula.safetensors"), "resnet18_formula_io.safetensors", x)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
