#!/usr/bin/python3
"""gen_compute_fixtures.py - PyTorch reference data for the compute engine's tests (tests/unit/test_compute_torch.c).

Run with Debian's python3 (torch 1.13): /usr/bin/python3 tools/gen_compute_fixtures.py tests/fixtures/compute
Not for: benchmarks (bench/) or anything the tests compute at run time.

Writes one file per model (mlp.bin, cnn.bin, resnet18.bin) and losses.bin. The format is a list of records:
  u32 name length, name (utf-8), u32 count, count little-endian float32
Inputs, logits, loss, every parameter gradient, BatchNorm running statistics after one training forward, and for
each optimizer the 10 losses and the final weights of 10 steps on the same batch.

MLP and CNN store every tensor in full (initial weights come from torch's own init). ResNet-18 is too big
(~45 MB of weights): its initial weights come from a deterministic integer-hash formula both sides compute
(init_value below, mirrored in the C test), and for gradients and final weights we store per tensor its L2 norm
and 32 entries at deterministic positions (sample_index below).

ResNet-18 at batch 4 is badly conditioned over several steps (BatchNorm over 4 values per channel in layer4
divides by tiny batch deviations): PyTorch's own float32 and float64 runs drift apart. So for every optimizer we
also run the 10 steps in float64 and store PyTorch's float32-vs-float64 discrepancy ("selfcheck_loss",
"selfcheck_weights"); the C test allows max(tolerance, 10 x that), which for MLP and CNN is the tolerance itself.
"""
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision

torch.set_num_threads(1)
torch.backends.mkldnn.enabled = False  # reference kernels, not oneDNN's
SAMPLES = 32
STEPS = 10
# (name, factory(params, lr), lr for mlp/cnn, lr for resnet18: small enough that 10 steps on one batch of 4 stay
# smooth instead of memorising the batch, where float rounding differences grow chaotically)
OPTIMIZERS = [
    ("sgd", lambda p, lr: torch.optim.SGD(p, lr=lr), 0.05, 3e-6),
    ("momentum", lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9), 0.05, 1e-6),
    ("nesterov", lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True), 0.05, 1e-6),
    ("adam", lambda p, lr: torch.optim.Adam(p, lr=lr), 1e-3, 3e-7),
    ("adamw", lambda p, lr: torch.optim.AdamW(p, lr=lr, weight_decay=0.1), 1e-3, 3e-7),
]


def hash_u32(x):
    m = np.uint64(0xFFFFFFFF) if isinstance(x, np.ndarray) else 0xFFFFFFFF
    c1, c2 = (np.uint64(0x7FEB352D), np.uint64(0x846CA68B)) if isinstance(x, np.ndarray) else (0x7FEB352D, 0x846CA68B)
    s15, s16 = (np.uint64(15), np.uint64(16)) if isinstance(x, np.ndarray) else (15, 16)
    x = x & m
    x ^= x >> s16
    x = (x * c1) & m
    x ^= x >> s15
    x = (x * c2) & m
    x ^= x >> s16
    return x


def init_value(k, numel):
    """uniform in [-1, 1) from (tensor index k, element i), integer arithmetic only"""
    i = np.arange(numel, dtype=np.uint64)
    x = hash_u32(i * np.uint64(2654435761) + np.uint64(k) * np.uint64(40503) + np.uint64(12345))
    return (x.astype(np.float64) / 4294967296.0) * 2.0 - 1.0


def sample_index(k, j, numel):
    return hash_u32(j * 2246822519 + k * 3266489917 + 7) % numel


class Writer:
    def __init__(self, path):
        self.f = open(path, "wb")

    def put(self, name, arr):
        a = np.ascontiguousarray(np.asarray(arr, dtype=np.float32).ravel())
        b = name.encode()
        self.f.write(struct.pack("<I", len(b)) + b + struct.pack("<I", a.size) + a.astype("<f4").tobytes())

    def close(self):
        self.f.close()


def run(model_fn, name, x, y, full, formula_init):
    w = Writer(f"{OUT}/{name}.bin")
    torch.manual_seed(0)
    model = model_fn()
    if formula_init:
        with torch.no_grad():
            for k, (n, t) in enumerate(model.state_dict().items()):
                if n.endswith("num_batches_tracked") or n.endswith("running_mean") or n.endswith("running_var"):
                    continue
                u = init_value(k, t.numel())
                if t.dim() == 1 and ("bn" in n or "downsample.1" in n):
                    v = (1.0 + 0.1 * u) if n.endswith("weight") else 0.1 * u
                else:
                    fan_in = t[0].numel() if t.dim() > 1 else t.numel()
                    v = u / np.sqrt(fan_in) * (np.sqrt(3.0) if t.dim() > 1 else 1.0)
                t.copy_(torch.from_numpy(v.reshape(t.shape)).float())
    init = {k: v.clone() for k, v in model.state_dict().items()}
    w.put("x", x.numpy())
    w.put("y", y.numpy().astype(np.float32))
    if not formula_init:
        for k, v in init.items():
            if not k.endswith("num_batches_tracked"):
                w.put("init/" + k, v.numpy())
    model.train()
    out = model(x)
    loss = nn.functional.cross_entropy(out, y)
    loss.backward()
    w.put("logits", out.detach().numpy())
    w.put("loss", [loss.item()])
    params = [(n, p.grad) for n, p in model.named_parameters()]
    # indices k are state_dict positions (as in the C test)
    sd_names = list(model.state_dict().keys())
    put_tensors_k(w, "grad", [(sd_names.index(n), n, g) for n, g in params], full)
    for n, b in model.named_buffers():
        if not n.endswith("num_batches_tracked"):
            w.put("buffer/" + n, b.numpy())
    model.eval()
    with torch.no_grad():
        w.put("eval_logits", model(x).numpy())
    for oname, ofn, lr_small, lr_resnet in OPTIMIZERS:
        lr = lr_resnet if formula_init else lr_small
        w.put(f"{oname}/lr", [lr])
        runs = []
        for dtype in (torch.float64, torch.float32):
            model.load_state_dict(init)
            model.to(dtype)
            model.train()
            opt = ofn(model.parameters(), lr)
            losses = []
            for _ in range(STEPS):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x.to(dtype)), y)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            runs.append((np.array(losses), [p.detach().double().clone() for p in model.parameters()]))
        (l64, p64), (l32, p32) = runs
        w.put(f"{oname}/selfcheck_loss", [np.max(np.abs(l32 - l64) / np.abs(l64))])
        w.put(f"{oname}/selfcheck_weights", [max((a - b).abs().max().item() / b.abs().max().item() for a, b in zip(p32, p64))])
        print(f"{name} {oname}: torch float32 vs float64 loss {np.max(np.abs(l32 - l64) / np.abs(l64)):.1e}")
        w.put(f"{oname}/losses", l32)
        put_tensors_k(w, f"{oname}/final", [(sd_names.index(n), n, p) for n, p in model.named_parameters()], full)
    w.close()


def put_tensors_k(w, prefix, items, full):
    for k, name, t in items:
        t = t.detach().double().numpy().ravel()
        if full:
            w.put(f"{prefix}/{name}", t)
        else:
            w.put(f"{prefix}/{name}#norm", [np.sqrt((t * t).sum())])
            w.put(f"{prefix}/{name}#sample", [t[sample_index(k, j, t.size)] for j in range(SAMPLES)])


def mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5))


def losses():
    w = Writer(f"{OUT}/losses.bin")
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 5, generator=g)
    y = torch.tensor([0, 4, 2, 2, 1, 3])
    cw = torch.tensor([0.5, 1.0, 2.0, 0.25, 1.5])
    w.put("logits", z.numpy())
    w.put("y", y.numpy().astype(np.float32))
    w.put("class_weights", cw.numpy())
    for tag, kw in [("plain", {}), ("smooth", {"label_smoothing": 0.1}), ("weighted", {"weight": cw}),
                    ("both", {"weight": cw, "label_smoothing": 0.2})]:
        zz = z.clone().requires_grad_()
        l = nn.functional.cross_entropy(zz, y, **kw)
        l.backward()
        w.put(f"ce_{tag}/loss", [l.item()])
        w.put(f"ce_{tag}/grad", zz.grad.numpy())
    t = torch.randn(6, 5, generator=g)
    zz = z.clone().requires_grad_()
    l = nn.functional.mse_loss(zz, t)
    l.backward()
    w.put("mse/target", t.numpy())
    w.put("mse/loss", [l.item()])
    w.put("mse/grad", zz.grad.numpy())
    w.close()


def names():
    """state_dict names and shapes of the presets, as torchvision / nn.Sequential name them"""
    models = {
        "resnet18": torchvision.models.resnet18(num_classes=1000),
        "resnet34": torchvision.models.resnet34(num_classes=7),
        "mlp": mlp(),
        "cnn": cnn(),
    }
    with open(f"{OUT}/state_dict_names.txt", "w") as f:
        for mname, m in models.items():
            for n, t in m.state_dict().items():
                f.write(f"{mname} {n} {'x'.join(str(d) for d in t.shape) or 'scalar'}\n")


if __name__ == "__main__":
    OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/compute"
    names()
    g = torch.Generator().manual_seed(1)
    losses()
    run(mlp, "mlp", torch.randn(8, 64, generator=g), torch.randint(0, 5, (8,), generator=g), True, False)
    run(cnn, "cnn", torch.randn(6, 1, 16, 16, generator=g), torch.randint(0, 5, (6,), generator=g), True, False)
    run(lambda: torchvision.models.resnet18(num_classes=10), "resnet18", torch.randn(4, 3, 32, 32, generator=g),
        torch.randint(0, 10, (4,), generator=g), False, True)
