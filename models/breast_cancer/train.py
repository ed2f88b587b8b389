#!/usr/bin/python3
"""The tabular demo: Wisconsin diagnostic breast cancer data (569 rows, 30 numeric features) from
Debian's python3-sklearn, split train/test with a fixed seed, and two classifiers trained in
PyTorch and saved as TorchScript with their metadata: a logistic regression (interpretable by
design: its weights are its explanation) and a small MLP. Tooling only (run once, outputs
committed); Salient never runs Python.

    /usr/bin/python3 models/breast_cancer/train.py models/breast_cancer
"""
import json
import os
import sys

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer

out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
data = load_breast_cancer()
names = [n.replace(" ", "_") for n in data.feature_names]
labels = list(data.target_names)  # 0 malignant, 1 benign
x, y = data.data.astype(np.float64), data.target.astype(np.int64)
order = np.random.RandomState(0).permutation(len(y))
test_rows, train_rows = order[:171], order[171:]  # 30 % held out


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write(",".join(["id"] + names + ["diagnosis"]) + "\n")
        for i in rows:
            f.write(",".join([str(i)] + [repr(float(v)) for v in x[i]] + [labels[y[i]]]) + "\n")


write_csv(os.path.join(out, "train.csv"), train_rows)
write_csv(os.path.join(out, "test.csv"), test_rows)

# Standardised as the metadata states (train statistics); the models take standardised rows.
mean, std = x[train_rows].mean(0), x[train_rows].std(0)
z = torch.tensor((x - mean) / std, dtype=torch.float32)
t = torch.tensor(y)
torch.manual_seed(0)


def train(model, steps, lr, decay):
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=decay)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(z[train_rows]), t[train_rows])
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(z[test_rows]).argmax(1) == t[test_rows]).double().mean())


models = {
    "logreg": (torch.nn.Linear(30, 2), 2000, 0.01, 1e-2),
    "mlp": (torch.nn.Sequential(torch.nn.Linear(30, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 2)), 600, 0.003, 1e-3),
}
for name, (model, steps, lr, decay) in models.items():
    accuracy = train(model, steps, lr, decay)
    assert accuracy >= 0.95, f"{name}: test accuracy {accuracy:.3f} < 0.95"
    torch.jit.trace(model, z[:1]).save(os.path.join(out, name + ".pt"))
    meta = {
        "name": "breast_cancer_" + name,
        "modality": "tabular",
        "labels": labels,
        "input_shape": [30],
        "output": "logits",
        "features": [{"name": n, "type": "numeric", "mean": float(m), "std": float(s)} for n, m, s in zip(names, mean, std)],
        "id_column": "id",
        "label_column": "diagnosis",
        "test_accuracy": round(accuracy, 4),
        "source": "Wisconsin Diagnostic Breast Cancer (UCI), as shipped by Debian's python3-sklearn",
    }
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"{name}: test accuracy {accuracy:.4f}")
