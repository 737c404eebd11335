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

ResNet-18 runs at 3x64x64, batch 4, so that no BatchNorm normalises over fewer than 16 values (layer4 is 2x2).
At 3x32x32 layer4 is 1x1 and its BatchNorm normalised over the 4 values of a batch: a ReLU input of layer4.1
then sat within rounding of zero at step 3, and a 1e-6 relative change of the input flipped it and moved
PyTorch's own float64 momentum trajectory by 4e-3 -- as much as oneDNN's AVX2 kernels (whose rounding differs
from AVX-512's) moved ours. A fixture that sensitive tests nothing, so the generator now measures the
sensitivity itself: every optimizer's 10 steps run again in float64 with the input perturbed by 1e-6 (relative,
SENS_SEEDS draws), and the generator refuses to write a fixture whose losses or weights move by more than a tenth
of the C test's tolerances ("sensitivity_loss" / "sensitivity_weights" are stored for the record).
The single-step gradients get the same treatment: a ReLU input within rounding of zero flips with the rounding
(AVX2 and AVX-512 round differently) and moves the gradients below it (at 3x64x64 one such flip moved PyTorch's
own float64 layer3.0.conv1 gradient by 1.7e-2); the generator takes the first candidate batch whose gradients
SENS_GRAD_DRAWS perturbed inputs move by at most a tenth of the tolerance ("batch_draw", "sensitivity_grad").
For every optimizer we also store PyTorch's float32-vs-float64 discrepancy ("selfcheck_loss",
"selfcheck_weights"); the C test allows max(tolerance, 10 x that), which is the tolerance itself for every model.
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
SENS_EPS = 1e-6  # relative input perturbation of the sensitivity runs
SENS_SEEDS = 3
# the largest relative change a fixture may show: a tenth of the C test's tolerances (1e-4 losses, 1e-3 weights)
SENS_MAX_LOSS = 1e-5
SENS_MAX_WEIGHTS = 1e-4
SENS_MAX_GRAD = 1e-4
SENS_GRAD_DRAWS = 6  # perturbations per candidate batch for the gradient check
SENS_SEARCH_MAX = 40  # candidate batches tried
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


def grad_change(model, init, x, y, xp, full):
    """the largest relative change of a parameter gradient (as the C test measures it: full tensors, or norm and
    samples) between float64 backward passes at x and at xp"""
    sd_names = list(init.keys())
    grads = []
    for xx in (x, xp):
        model.load_state_dict(init)
        model.double()
        model.train()
        model.zero_grad()
        nn.functional.cross_entropy(model(xx), y).backward()
        grads.append({n: p.grad.detach().clone().numpy().ravel() for n, p in model.named_parameters()})
    worst = 0.0
    for n, g0 in grads[0].items():
        g1 = grads[1][n]
        if full:
            e = np.abs(g1 - g0).max() / max(np.abs(g0).max(), 1e-30)
        else:
            k = sd_names.index(n)
            idx = [int(sample_index(k, j, g0.size)) for j in range(SAMPLES)]
            e = max(abs(np.linalg.norm(g1) - np.linalg.norm(g0)) / np.linalg.norm(g0),
                    np.abs(g1[idx] - g0[idx]).max() / max(np.abs(g0[idx]).max(), 1e-30))
        worst = max(worst, float(e))
    return worst


def perturbed(x, seed):
    gen = torch.Generator().manual_seed(1000 + seed)
    return x.double() * (1 + SENS_EPS * torch.randn(x.shape, generator=gen, dtype=torch.float64))


def grad_sensitivity(model, init, x, y, full):
    return max(grad_change(model, init, x.double(), y, perturbed(x, s), full) for s in range(SENS_GRAD_DRAWS))


def run(model_fn, name, draw, full, formula_init):
    """draw(k) -> (x, y): the k-th candidate batch; the first whose gradients are well conditioned is used"""
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
    # A ReLU (or max-pool) input within rounding of zero makes the gradient jump when the rounding changes: oneDNN's
    # AVX2 and AVX-512 kernels round differently. Take the first batch on which SENS_GRAD_DRAWS perturbations of
    # the input by SENS_EPS move no gradient by more than a tenth of the C test's tolerance.
    for k in range(SENS_SEARCH_MAX):
        x, y = draw(k)
        sens_g = grad_sensitivity(model, init, x, y, full)
        print(f"{name}: batch {k}: gradient sensitivity to a {SENS_EPS:g} input perturbation {sens_g:.1e}")
        if sens_g <= SENS_MAX_GRAD:
            break
    else:
        sys.exit(f"{name}: no well-conditioned batch among {SENS_SEARCH_MAX}: change the fixture")
    model.load_state_dict(init)
    model.float()
    model.zero_grad(set_to_none=True)  # the search's float64 gradients must not add to the fixture's
    w.put("batch_draw", [k])
    w.put("sensitivity_grad", [sens_g])
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
        sens_l, sens_w = 0.0, 0.0
        for seed in range(SENS_SEEDS):
            gen = torch.Generator().manual_seed(1000 + seed)
            xp = x.double() * (1 + SENS_EPS * torch.randn(x.shape, generator=gen, dtype=torch.float64))
            model.load_state_dict(init)
            model.double()
            model.train()
            opt = ofn(model.parameters(), lr)
            losses = []
            for _ in range(STEPS):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(xp), y)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            sens_l = max(sens_l, float(np.max(np.abs(np.array(losses) - l64) / np.abs(l64))))
            sens_w = max(sens_w, max((a.detach() - b).abs().max().item() / b.abs().max().item()
                                     for a, b in zip(model.parameters(), p64)))
        print(f"{name} {oname}: sensitivity to a {SENS_EPS:g} input perturbation: losses {sens_l:.1e}, "
              f"weights {sens_w:.1e}")
        if sens_l > SENS_MAX_LOSS or sens_w > SENS_MAX_WEIGHTS:
            sys.exit(f"{name} {oname}: the trajectory is ill-conditioned (a {SENS_EPS:g} input perturbation moves "
                     f"losses by {sens_l:.1e} (at most {SENS_MAX_LOSS:g}), weights by {sens_w:.1e} (at most "
                     f"{SENS_MAX_WEIGHTS:g})): change the fixture")
        w.put(f"{oname}/sensitivity_loss", [sens_l])
        w.put(f"{oname}/sensitivity_weights", [sens_w])
        model.load_state_dict(init)
        model.float()
        for p_, q_ in zip(model.parameters(), p32):
            with torch.no_grad():
                p_.copy_(q_.float())
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
    losses()

    def draw(shape, classes):
        # candidate k: a generator of its own (seed 1 + 7919 k), so candidates do not depend on each other
        def f(k):
            g = torch.Generator().manual_seed(1 + 7919 * k)
            return torch.randn(*shape, generator=g), torch.randint(0, classes, (shape[0],), generator=g)
        return f

    run(mlp, "mlp", draw((8, 64), 5), True, False)
    run(cnn, "cnn", draw((6, 1, 16, 16), 5), True, False)
    run(lambda: torchvision.models.resnet18(num_classes=10), "resnet18", draw((4, 3, 64, 64), 10), False, True)
