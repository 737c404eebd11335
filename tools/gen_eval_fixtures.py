#!/usr/bin/python3
"""Reference numbers for compute/metrics_curves.c, from scikit-learn 1.2 (Debian's python3-sklearn) and NumPy/SciPy:
log loss, one-vs-rest ROC-AUC (per class and macro), average precision, the ROC and precision-recall curves, the
expected calibration error with its 15-bin reliability diagram (Guo et al. 2017: equal-width bins (lo, hi] over the
top-class confidence), and the temperature that minimises the NLL of softmax(logits / T).

  /usr/bin/python3 tools/gen_eval_fixtures.py    # writes tests/fixtures/eval/curves.json and mlp3.*

The C test (tests/unit/test_metrics_curves.c) replays curves.json; CI has no scikit-learn. mlp3.safetensors (a
small PyTorch MLP with finetuned's metadata), mlp3.csv and mlp3_expected.json (scikit-learn's metrics of
PyTorch's probabilities on it) are the end-to-end check: the daemon's POST /v1/models/{id}/evaluate and
`finetuned evaluate` must answer those numbers (tests/integration/test_api_evaluate.sh, test_eval_cli.sh)."""
import json
import os

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn import metrics as skm

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "eval")
BINS = 15


def softmax(z, t=1.0):
    z = z.astype(np.float64) / t
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ece_reference(y, p):
    conf = p.max(axis=1)
    pred = p.argmax(axis=1)
    correct = (pred == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, BINS + 1)
    ece, mce, bins = 0.0, 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        cnt = int(m.sum())
        if cnt:
            acc, cf = float(correct[m].mean()), float(conf[m].mean())
            ece += cnt / len(y) * abs(acc - cf)
            mce = max(mce, abs(acc - cf))
            bins.append({"count": cnt, "accuracy": acc, "confidence": cf})
        else:
            bins.append({"count": 0, "accuracy": None, "confidence": None})
    return ece, mce, bins


def case(name, y, logits, k):
    p = softmax(logits)
    out = {"name": name, "n_classes": k, "y_true": y.tolist(), "logits": logits.astype(np.float32).tolist(),
           "probabilities": p.tolist()}
    out["log_loss"] = skm.log_loss(y, p, labels=list(range(k)))
    per_auc, per_ap, roc, pr = [], [], [], []
    for c in range(k):
        yb = (y == c).astype(int)
        s = p[:, c]
        if yb.min() == yb.max():
            per_auc.append(None)
            per_ap.append(None)
            roc.append(None)
            pr.append(None)
            continue
        per_auc.append(skm.roc_auc_score(yb, s))
        per_ap.append(skm.average_precision_score(yb, s))
        fpr, tpr, thr = skm.roc_curve(yb, s)
        roc.append({"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()})
        prec, rec, thr = skm.precision_recall_curve(yb, s)
        pr.append({"precision": prec.tolist(), "recall": rec.tolist(), "thresholds": thr.tolist()})
    out["roc_auc"] = per_auc
    out["average_precision"] = per_ap
    if all(a is not None for a in per_auc):
        # scikit-learn's own one-vs-rest macro (it refuses a class absent from y_true)
        out["macro_roc_auc"] = (skm.roc_auc_score(y, p[:, 1]) if k == 2
                                else skm.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(k))))
    else:
        out["macro_roc_auc"] = float(np.mean([a for a in per_auc if a is not None]))
    out["macro_average_precision"] = float(np.mean([a for a in per_ap if a is not None]))
    out["roc"] = roc
    out["precision_recall"] = pr
    ece, mce, bins = ece_reference(y, p)
    out["ece"], out["mce"], out["reliability"] = ece, mce, bins

    lg = logits.astype(np.float32).astype(np.float64)

    def nll(log_t):
        q = softmax(lg, np.exp(log_t))
        return -np.mean(np.log(q[np.arange(len(y)), y]))

    res = minimize_scalar(nll, bounds=(np.log(0.01), np.log(100.0)), method="bounded",
                          options={"xatol": 1e-10})
    t = float(np.exp(res.x))
    out["temperature"] = t
    out["nll_before"] = float(nll(0.0))
    out["nll_after"] = float(nll(res.x))
    out["ece_after"] = ece_reference(y, softmax(lg, t))[0]
    return out


def main():
    rng = np.random.default_rng(19)
    cases = []
    # three classes, overconfident logits, some rows repeated (tied scores)
    n, k = 120, 3
    y = rng.integers(0, k, n)
    z = rng.normal(0, 1, (n, k)) * 1.5
    z[np.arange(n), y] += 1.2
    z *= 3.0  # overconfident: temperature scaling should cool it
    z[100:110] = z[0:10]
    y[100:110] = y[0:10]
    cases.append(case("multiclass_overconfident", y, z.astype(np.float32), k))
    # binary, underconfident
    n, k = 80, 2
    y = rng.integers(0, k, n)
    z = rng.normal(0, 1, (n, k)) * 0.3
    z[np.arange(n), y] += 0.4
    cases.append(case("binary_underconfident", y, z.astype(np.float32), k))
    # four classes with one absent from y_true (its AUC is undefined)
    n, k = 60, 4
    y = rng.integers(0, 3, n)
    z = rng.normal(0, 1, (n, k))
    z[np.arange(n), y] += 2.0
    cases.append(case("absent_class", y, z.astype(np.float32), k))
    # quantised scores: many ties
    n, k = 50, 2
    y = rng.integers(0, k, n)
    z = np.round(rng.normal(0, 1, (n, k)) * 2) / 2
    z[np.arange(n), y] += 0.5
    cases.append(case("ties", y, z.astype(np.float32), k))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "curves.json"), "w") as f:
        json.dump({"generator": "tools/gen_eval_fixtures.py", "sklearn": __import__("sklearn").__version__,
                   "bins": BINS, "cases": cases}, f)
        f.write("\n")


def end_to_end():
    """A 2-8-3 MLP with fixed weights and a labelled CSV whose scores have no near-ties (engine rounding, ~1e-7,
    cannot reorder them) and no confidence near a bin edge, so every metric is determined exactly."""
    import sys
    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gen_io_fixtures import st_bytes
    classes = ["ant", "bee", "cat"]
    for seed in range(1000):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        g = np.random.default_rng(seed)
        n = 120
        y = g.integers(0, 3, n)
        x = (g.normal(0, 1, (n, 2)) + np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])[y]).astype(np.float32)
        opt = torch.optim.Adam(net.parameters(), lr=0.02)  # a little training: meaningful, imperfect scores
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
            opt.step()
        with torch.no_grad():
            z = net(torch.from_numpy(x)).numpy().astype(np.float64)
        p = softmax(z)
        gaps = min(np.diff(np.sort(p[:, c])).min() for c in range(3))
        edges = np.abs(p.max(axis=1)[:, None] - np.linspace(0, 1, BINS + 1)[None, :]).min()
        if gaps > 2e-6 and edges > 1e-5:
            break
    else:
        raise SystemExit("no seed without near-ties")
    spec = {"input": [2], "layers": [{"type": "linear", "out_features": 8}, {"type": "relu"},
                                     {"type": "linear", "out_features": 3}]}
    meta = {"format": "pt", "finetuned.spec": json.dumps(spec, separators=(",", ":")),
            "finetuned.classes": json.dumps(classes), "finetuned.task": "classification"}
    with open(os.path.join(OUT, "mlp3.safetensors"), "wb") as f:
        f.write(st_bytes(dict(net.state_dict()), meta))
    with open(os.path.join(OUT, "mlp3.csv"), "w") as f:
        f.write("x1,x2,label\n")
        for i in range(n):
            f.write(f"{float(x[i, 0])!r},{float(x[i, 1])!r},{classes[y[i]]}\n")
    pred = p.argmax(axis=1)
    yb = [(y == c).astype(int) for c in range(3)]
    fpr, tpr, thr = skm.roc_curve(yb[0], p[:, 0])
    prec, rec, _ = skm.precision_recall_curve(yb[1], p[:, 1])
    ece, mce, _ = ece_reference(y, p)
    out = {"seed": seed, "spec": spec, "samples": n,
           "accuracy": skm.accuracy_score(y, pred),
           "macro_f1": skm.f1_score(y, pred, average="macro"),
           "confusion": skm.confusion_matrix(y, pred, labels=[0, 1, 2]).tolist(),
           "log_loss": skm.log_loss(y, p, labels=[0, 1, 2]),
           "macro_roc_auc": skm.roc_auc_score(y, p, multi_class="ovr", average="macro"),
           "roc_auc": [skm.roc_auc_score(yb[c], p[:, c]) for c in range(3)],
           "average_precision": [skm.average_precision_score(yb[c], p[:, c]) for c in range(3)],
           "roc_ant": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()},
           "pr_bee": {"precision": prec.tolist(), "recall": rec.tolist()},
           "ece": ece, "mce": mce}
    with open(os.path.join(OUT, "mlp3_expected.json"), "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
    end_to_end()
