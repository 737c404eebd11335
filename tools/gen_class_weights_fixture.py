#!/usr/bin/python3
"""Write tests/fixtures/train/class_weights.json: imbalanced targets, their class weights as scikit-learn's
compute_class_weight("balanced") computes them, and PyTorch's CrossEntropyLoss(weight=) loss and gradient for
logits, with those weights and with explicit ones (issue 19). Run with Debian's python3-torch and
python3-sklearn: /usr/bin/python3 tools/gen_class_weights_fixture.py. tests/unit/test_imbalance.c replays it."""
import json
import os

import numpy as np
import sklearn
import torch
from sklearn.utils.class_weight import compute_class_weight

torch.manual_seed(19)
rng = np.random.default_rng(19)
classes = 4
# 100 rows: 70, 20, 8, 2 of the classes
y = np.array([0] * 70 + [1] * 20 + [2] * 8 + [3] * 2)
rng.shuffle(y)
balanced = compute_class_weight("balanced", classes=np.arange(classes), y=y)
explicit = np.array([1.0, 2.5, 0.0, 7.0])
logits = torch.randn(len(y), classes, dtype=torch.float64) * 2

cases = []
for name, w in (("balanced", balanced), ("explicit", explicit)):
    z = logits.clone().requires_grad_(True)
    loss = torch.nn.CrossEntropyLoss(weight=torch.tensor(w))(z, torch.tensor(y))
    loss.backward()
    cases.append({"name": name, "weights": w.tolist(), "loss": loss.item(), "grad": z.grad.flatten().tolist()})

out = {
    "torch": torch.__version__,
    "sklearn": sklearn.__version__,
    "classes": classes,
    "targets": y.tolist(),
    "counts": np.bincount(y, minlength=classes).tolist(),
    "logits": logits.flatten().tolist(),
    "cases": cases,
}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "train", "class_weights.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("wrote", path)
