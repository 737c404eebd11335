#!/usr/bin/python3
"""bench_torch.py - the PyTorch side of bench/run.sh: the same models, batch sizes, data and Adam as
bench_compute.c, printing one JSON line (samples/s, peak RSS).

    /usr/bin/python3 bench/bench_torch.py MODEL THREADS SECONDS
    MODEL: mlp | cnn | resnet18 | resnet18_224 | resnet18_224_partial | predict_resnet18_224 (see bench_compute.c)
Not a test. Run with Debian's python3 (torch 1.13)."""
import json
import resource
import sys
import time

import torch
import torch.nn as nn
import torchvision


def build(name):
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)), (784,), 128
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10)), (1, 28, 28), 64
    if name == "resnet18":
        return torchvision.models.resnet18(num_classes=10), (3, 64, 64), 32
    if name in ("resnet18_224", "resnet18_224_partial"):
        return torchvision.models.resnet18(num_classes=10), (3, 224, 224), 16
    if name == "predict_resnet18_224":
        return torchvision.models.resnet18(num_classes=10), (3, 224, 224), 64
    raise SystemExit(f"unknown model {name}")


def main():
    name, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model, shape, batch = build(name)
    x = torch.rand(batch, *shape) - 0.5
    y = torch.arange(batch) % 10
    predict = name.startswith("predict_")
    if name.endswith("_partial"):  # only layer4 and fc train, as finetuned's "partial" strategy
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith("layer4.") or n.startswith("fc."))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.eval() if predict else model.train()
    steps, t0 = 0, 0.0
    for it in range(10**9):
        if it == 3:
            t0 = time.monotonic()
        if predict:
            with torch.no_grad():
                model(x)
        else:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        if it >= 3:
            steps += 1
            if time.monotonic() - t0 >= seconds and steps >= 3:
                break
    dt = time.monotonic() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "pytorch", "model": name, "threads": threads, "batch": batch, "steps": steps,
                      "samples_per_sec": round(steps * batch / dt, 1), "peak_rss_mb": round(rss, 1),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
