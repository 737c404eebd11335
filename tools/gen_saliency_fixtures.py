#!/usr/bin/python3
"""gen_saliency_fixtures.py - PyTorch reference saliency for the explain tests (tests/unit/test_compute_explain.c).

Run with Debian's python3 (torch 1.13): /usr/bin/python3 tools/gen_saliency_fixtures.py tests/fixtures/compute
Not for: the training fixtures (gen_compute_fixtures.py, whose record format and weight formula this reuses).

Writes saliency.bin (records: u32 name length, name, u32 count, count float32), per model (prefix "mlp/", "cnn/",
"cnn3/", "resnet18/"): one input x, the eval-mode logits, the predicted class ("target"), the gradient of that
class's logit with respect to x ("grad"), gradient x input ("gxi"), integrated gradients with STEPS steps from a
zero baseline ("ig") and, for the CNNs, from a constant baseline ("ig_const", baseline value BASELINE_CONST: what
a black image becomes under normalize mean 0.5 std 0.5). Integrated gradients are the right Riemann sum
(1/m) sum_{k=1..m} grad(b + (k/m)(x - b)) * (x - b), computed in float32 with autograd, as compute/explain.c does.

MLP and CNNs store their initial weights in full ("init/NAME", torch's own init, seed 0). ResNet-18 (3x32x32, 10
classes) uses gen_compute_fixtures.init_value's formula for weights and, for evaluation mode to mean something, for
the BatchNorm running statistics too (running_mean = 0.1 u, running_var = 1 + 0.25 u; mirrored in the C test).

Each input is drawn until integrated gradients are well conditioned: a ReLU or max-pool input within rounding of
zero makes a gradient jump when rounding changes (oneDNN's ISAs round differently), so the generator takes the
first draw whose float64 attributions SENS_DRAWS perturbations of x by SENS_EPS (relative) move by at most
SENS_MAX (a tenth of the C test's 1e-3 gradient tolerance), and stores the measured sensitivity.
"""
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision

import gen_compute_fixtures as g

torch.set_num_threads(1)
torch.backends.mkldnn.enabled = False
STEPS = 16
BASELINE_CONST = -1.0
SENS_EPS = 1e-6
SENS_DRAWS = 4
SENS_MAX = 1e-4
SEARCH_MAX = 40


def mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5))


def cnn(c_in, chans, hidden, size):
    a, b = chans
    s = ((size - 2) // 2 - 2) // 2
    return nn.Sequential(nn.Conv2d(c_in, a, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(a, b, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(b * s * s, hidden), nn.ReLU(), nn.Linear(hidden, 5))


def formula_init(model):
    with torch.no_grad():
        for k, (n, t) in enumerate(model.state_dict().items()):
            if n.endswith("num_batches_tracked"):
                continue
            u = g.init_value(k, t.numel())
            if n.endswith("running_mean"):
                v = 0.1 * u
            elif n.endswith("running_var"):
                v = 1.0 + 0.25 * u
            elif t.dim() == 1 and ("bn" in n or "downsample.1" in n):
                v = (1.0 + 0.1 * u) if n.endswith("weight") else 0.1 * u
            else:
                fan_in = t[0].numel() if t.dim() > 1 else t.numel()
                v = u / np.sqrt(fan_in) * (np.sqrt(3.0) if t.dim() > 1 else 1.0)
            t.copy_(torch.from_numpy(v.reshape(t.shape)))


def grad_at(model, xs, target):
    xs = xs.clone().requires_grad_()
    out = model(xs)
    out[:, target].sum().backward()
    return xs.grad.detach()


def integrated(model, x, b, target, steps, dtype):
    x, b = x.to(dtype), b.to(dtype)
    alphas = (torch.arange(1, steps + 1, dtype=dtype) / steps).view(-1, *([1] * (x.dim() - 1)))
    pts = b + alphas * (x - b)  # x is [1, ...]: broadcast to [steps, ...]
    return grad_at(model, pts, target).mean(0, keepdim=True) * (x - b)


def relchange(a, b):
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-30))


def run(w, name, model, shape, baselines):
    model.eval()
    for k in range(SEARCH_MAX):
        gen = torch.Generator().manual_seed(11 + 7919 * k)
        x = torch.randn(1, *shape, generator=gen)
        model.double()
        target = int(model(x.double()).argmax(1))
        worst = 0.0
        for bname, bval in baselines:
            b = torch.full_like(x, bval).double()
            ref = integrated(model, x.double(), b, target, STEPS, torch.float64)
            for s in range(SENS_DRAWS):
                pg = torch.Generator().manual_seed(1000 + s)
                xp = x.double() * (1 + SENS_EPS * torch.randn(x.shape, generator=pg, dtype=torch.float64))
                worst = max(worst, relchange(integrated(model, xp, b, target, STEPS, torch.float64), ref))
        print(f"{name}: draw {k}: integrated gradients' sensitivity to a {SENS_EPS:g} input perturbation {worst:.1e}")
        if worst <= SENS_MAX:
            break
    else:
        sys.exit(f"{name}: no well-conditioned input among {SEARCH_MAX}: change the fixture")
    model.float()
    w.put(f"{name}/draw", [k])
    w.put(f"{name}/sensitivity", [worst])
    w.put(f"{name}/x", x.numpy())
    with torch.no_grad():
        logits = model(x)
    w.put(f"{name}/logits", logits.numpy())
    target = int(logits.argmax(1))
    w.put(f"{name}/target", [target])
    grad = grad_at(model, x, target)
    w.put(f"{name}/grad", grad.numpy())
    w.put(f"{name}/gxi", (grad * x).numpy())
    w.put(f"{name}/steps", [STEPS])
    for bname, bval in baselines:
        b = torch.full_like(x, bval)
        ig = integrated(model, x, b, target, STEPS, torch.float32)
        w.put(f"{name}/{bname}", ig.numpy())
        with torch.no_grad():
            delta = float(ig.sum()) - float(model(x)[0, target] - model(b)[0, target])
        print(f"{name}: {bname}: sum of attributions - (s(x) - s(b)) = {delta:.3e}")
    return model


def put_init(w, name, model):
    for n, t in model.state_dict().items():
        if not n.endswith("num_batches_tracked"):
            w.put(f"{name}/init/{n}", t.numpy())


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/compute"
    w = g.Writer(f"{out}/saliency.bin")
    torch.manual_seed(0)
    m = mlp()
    put_init(w, "mlp", m)
    run(w, "mlp", m, (64,), [("ig", 0.0)])
    torch.manual_seed(0)
    m = cnn(1, (4, 8), 16, 16)
    put_init(w, "cnn", m)
    run(w, "cnn", m, (1, 16, 16), [("ig", 0.0), ("ig_const", BASELINE_CONST)])
    torch.manual_seed(0)
    m = cnn(3, (8, 16), 16, 16)
    put_init(w, "cnn3", m)
    run(w, "cnn3", m, (3, 16, 16), [("ig", 0.0), ("ig_const", BASELINE_CONST)])
    m = torchvision.models.resnet18(num_classes=10)
    formula_init(m)
    run(w, "resnet18", m, (3, 32, 32), [("ig", 0.0)])
    w.close()
