#!/usr/bin/python3
"""gen_train_fixtures.py - reference data for the trainer's tests, computed with
scikit-learn and PyTorch (Debian's /usr/bin/python3). Writes small JSON files to
tests/fixtures/train/; the C tests replay them and never need Python.

  /usr/bin/python3 tools/gen_train_fixtures.py [metrics] [torch]

Not for: anything the tests run.
"""
import json
import os
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "train")


def metrics_fixture():
    from sklearn import metrics as skm

    rng = np.random.default_rng(7)
    cases = []

    def cls_case(name, y_true, y_pred, n_classes):
        labels = list(range(n_classes))
        p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division="warn")
        avg = {}
        for a in ("macro", "weighted"):
            pa, ra, fa, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=a)
            avg[a] = [float(pa), float(ra), float(fa)]
        cases.append({
            "name": name, "type": "classification", "n_classes": n_classes,
            "y_true": [int(v) for v in y_true], "y_pred": [int(v) for v in y_pred],
            "accuracy": float(skm.accuracy_score(y_true, y_pred)),
            "precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(), "support": s.tolist(),
            "macro": avg["macro"], "weighted": avg["weighted"],
            "confusion": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        })

    # 5 classes; class 3 is never predicted (precision 0/0), class 4 never occurs (recall 0/0)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 5, 200))
    y_pred[y_pred == 3] = 2
    cls_case("five classes with an unpredicted and an absent class", y_true, y_pred, 5)
    y = rng.integers(0, 2, 50)
    cls_case("perfect binary", y, y.copy(), 2)
    y_true = rng.integers(0, 10, 500)
    y_pred = np.where(rng.random(500) < 0.8, y_true, rng.integers(0, 10, 500))
    cls_case("ten classes", y_true, y_pred, 10)

    def reg_case(name, y_true, y_pred):
        y_true = np.asarray(y_true, dtype=np.float32)
        y_pred = np.asarray(y_pred, dtype=np.float32)
        mse = skm.mean_squared_error(y_true.astype(np.float64), y_pred.astype(np.float64))
        cases.append({
            "name": name, "type": "regression", "y_true": y_true.tolist(), "y_pred": y_pred.tolist(),
            "mse": float(mse), "rmse": float(np.sqrt(mse)),
            "mae": float(skm.mean_absolute_error(y_true.astype(np.float64), y_pred.astype(np.float64))),
            "r2": float(skm.r2_score(y_true.astype(np.float64), y_pred.astype(np.float64))),
        })

    t = rng.normal(3.0, 2.0, 300)
    reg_case("noisy regression", t, t + rng.normal(0, 0.7, 300))
    reg_case("constant target, imperfect prediction", [2.0] * 10, [2.0] * 9 + [2.5])
    reg_case("constant target, perfect prediction", [1.5] * 8, [1.5] * 8)
    with open(os.path.join(OUT, "metrics.json"), "w") as f:
        json.dump({"sklearn": __import__("sklearn").__version__, "cases": cases}, f)
        f.write("\n")


def torch_fixture():
    """Loss trajectories of the trainer's configurations, replayed by tests/unit/test_train.c: an MLP
    (Sequential Linear(8,16), ReLU, Linear(16,3)) on 48 rows in fixed batch order (no shuffle), with the
    trainer's schedule (per-step cosine/step with linear warmup), parameter groups for layer decay and lr
    multipliers, clip_grad_norm_, label smoothing, and gd as one full-batch step per epoch."""
    import math

    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    n, n_val, f, k = 48, 24, 8, 3
    centers = rng.normal(0, 1.5, (k, f))
    y = np.arange(n) % k
    x = (centers[y] + rng.normal(0, 1.0, (n, f))).astype(np.float32)
    y_val = np.arange(n_val) % k
    x_val = (centers[y_val] + rng.normal(0, 1.0, (n_val, f))).astype(np.float32)
    net0 = torch.nn.Sequential(torch.nn.Linear(f, 16), torch.nn.ReLU(), torch.nn.Linear(16, k))
    init = {name: t.detach().clone() for name, t in net0.state_dict().items()}

    def schedule(h, steps_per_epoch, step):
        base = h["learning_rate"]
        total = steps_per_epoch * h["epochs"]
        warm = round(h.get("warmup_epochs", 0) * steps_per_epoch)
        if step < warm:
            return base * (step + 1) / warm
        p = min(1.0, (step - warm) / max(1, total - warm))
        kind = h.get("schedule", "cosine")
        min_lr = h.get("min_lr", 0.0)
        if kind == "constant":
            return base
        if kind == "step":
            size = h.get("step_size", 0) or max(1, h["epochs"] // 3)
            return base * h.get("gamma", 0.1) ** ((step // steps_per_epoch) // size)
        if kind == "cosine":
            return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * p))
        return base + (min_lr - base) * p

    def run(job):
        h = job["hyperparameters"]
        st = job.get("strategy", {"type": "full"})
        net = torch.nn.Sequential(torch.nn.Linear(f, 16), torch.nn.ReLU(), torch.nn.Linear(16, k))
        net.load_state_dict(init)
        depth = {"0": 1, "2": 0}
        groups = []
        for name, prm in net.named_parameters():
            mod = name.split(".")[0]
            if st["type"] in ("partial",) and any(__import__("fnmatch").fnmatchcase(name, g) for g in st.get("freeze", [])):
                prm.requires_grad_(False)
                continue
            mult = 1.0
            if st["type"] == "layerwise":
                mult = st.get("layer_decay", 0.75) ** depth[mod]
                for pat, m in st.get("lr_multipliers", {}).items():
                    if __import__("fnmatch").fnmatchcase(name, pat):
                        mult *= m
                        break
            groups.append({"params": [prm], "mult": mult, "lr": h["learning_rate"] * mult})
        opt_name = h.get("optimizer", "adam")
        wd = h.get("weight_decay", 0.0)
        if opt_name in ("gd", "sgd"):
            opt = torch.optim.SGD(groups, lr=h["learning_rate"], weight_decay=wd)
        elif opt_name in ("momentum", "nesterov"):
            opt = torch.optim.SGD(groups, lr=h["learning_rate"], momentum=h.get("momentum", 0.9),
                                  nesterov=opt_name == "nesterov", weight_decay=wd)
        elif opt_name == "adam":
            opt = torch.optim.Adam(groups, lr=h["learning_rate"], betas=tuple(h.get("betas", [0.9, 0.999])),
                                   eps=h.get("eps", 1e-8), weight_decay=wd)
        else:
            opt = torch.optim.AdamW(groups, lr=h["learning_rate"], betas=tuple(h.get("betas", [0.9, 0.999])),
                                    eps=h.get("eps", 1e-8), weight_decay=wd)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=h.get("label_smoothing", 0.0))
        bs = h["batch_size"]
        X, Y = torch.tensor(x), torch.tensor(y, dtype=torch.long)
        Xv, Yv = torch.tensor(x_val), torch.tensor(y_val, dtype=torch.long)
        gd = opt_name == "gd"
        steps_per_epoch = 1 if gd else (n + bs - 1) // bs
        step = 0
        train_losses, val_losses, lrs = [], [], []
        params = [p for g in groups for p in g["params"]]
        for epoch in range(h["epochs"]):
            tot = 0.0
            net.train()
            if gd:
                opt.zero_grad()
            for b0 in range(0, n, bs):
                xb, yb = X[b0:b0 + bs], Y[b0:b0 + bs]
                if not gd:
                    opt.zero_grad()
                loss = loss_fn(net(xb), yb)
                (loss * (len(xb) / n) if gd else loss).backward()
                tot += loss.item() * len(xb)
                if not gd:
                    if h.get("max_grad_norm", 0) > 0:
                        torch.nn.utils.clip_grad_norm_(params, h["max_grad_norm"])
                    lr = schedule(h, steps_per_epoch, step)
                    for g in opt.param_groups:
                        g["lr"] = lr * g["mult"]
                    opt.step()
                    step += 1
            if gd:
                if h.get("max_grad_norm", 0) > 0:
                    torch.nn.utils.clip_grad_norm_(params, h["max_grad_norm"])
                lr = schedule(h, steps_per_epoch, step)
                for g in opt.param_groups:
                    g["lr"] = lr * g["mult"]
                opt.step()
                step += 1
            train_losses.append(tot / n)
            lrs.append(lr)
            net.eval()
            with torch.no_grad():
                val_losses.append(float(loss_fn(net(Xv), Yv)))
        final = {name: t.detach().numpy().ravel().tolist() for name, t in net.state_dict().items()}
        return {"job": job, "train_loss": train_losses, "val_loss": val_losses, "lr": lrs, "final": final}

    base = {"model": "fixture", "training_file": "fixture", "validation_file": "fixture",
            "preprocess": {"standardize": False, "shuffle": False}}
    jobs = [
        dict(base, name="adamw layerwise cosine warmup clip smoothing",
             hyperparameters={"epochs": 3, "batch_size": 16, "learning_rate": 0.01, "optimizer": "adamw",
                              "weight_decay": 0.01, "schedule": "cosine", "warmup_epochs": 1,
                              "max_grad_norm": 1.0, "label_smoothing": 0.1},
             strategy={"type": "layerwise", "layer_decay": 0.5, "lr_multipliers": {"2.*": 2.0}}),
        dict(base, name="nesterov partial step schedule",
             hyperparameters={"epochs": 3, "batch_size": 10, "learning_rate": 0.05, "optimizer": "nesterov",
                              "momentum": 0.9, "weight_decay": 0.001, "schedule": "step", "step_size": 1,
                              "gamma": 0.5},
             strategy={"type": "partial", "freeze": ["0.*"]}),
        dict(base, name="gd full batch constant",
             hyperparameters={"epochs": 4, "batch_size": 16, "learning_rate": 0.5, "optimizer": "gd",
                              "schedule": "constant"}),
        dict(base, name="adam linear",
             hyperparameters={"epochs": 2, "batch_size": 7, "learning_rate": 0.003, "optimizer": "adam",
                              "schedule": "linear", "weight_decay": 0.0001}),
    ]
    runs = []
    for job in jobs:
        name = job.pop("name")
        r = run(job)
        r["name"] = name
        runs.append(r)
    out = {"torch": torch.__version__, "features": f, "classes": k,
           "x": x.ravel().tolist(), "y": y.tolist(), "x_val": x_val.ravel().tolist(), "y_val": y_val.tolist(),
           "init": {name: {"shape": list(t.shape), "data": t.numpy().ravel().tolist()} for name, t in init.items()},
           "runs": runs}
    with open(os.path.join(OUT, "torch_mlp.json"), "w") as fh:
        json.dump(out, fh)
        fh.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    what = sys.argv[1:] or ["metrics", "torch"]
    if "metrics" in what:
        metrics_fixture()
    if "torch" in what:
        torch_fixture()


if __name__ == "__main__":
    main()
