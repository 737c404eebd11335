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


def main():
    os.makedirs(OUT, exist_ok=True)
    what = sys.argv[1:] or ["metrics", "torch"]
    if "metrics" in what:
        metrics_fixture()
    if "torch" in what and "torch_fixture" in globals():
        globals()["torch_fixture"]()


if __name__ == "__main__":
    main()
