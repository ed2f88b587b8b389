#!/usr/bin/python3
"""A regression demo: Efron et al.'s diabetes data (442 patients, 10 baseline columns, a measure of
disease progression one year later) from Debian's python3-sklearn, unscaled, split train/test with a
fixed seed. A small MLP with `sex` one-hot encoded (a categorical column) is trained in PyTorch and
saved as TorchScript with its metadata ("output": "regression"), with the eager model's own numbers
on the test rows (reference.json) that the tests compare Salient's against. Tooling only (run once,
outputs committed); Salient never runs Python.

    /usr/bin/python3 models/diabetes/train.py models/diabetes
"""
import json
import os
import sys

import numpy as np
import torch
from sklearn.datasets import load_diabetes

out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
data = load_diabetes(scaled=False)
names = list(data.feature_names)  # age sex bmi bp s1..s6; sex is 1 or 2
x, y = data.data.astype(np.float64), data.target.astype(np.float64)
order = np.random.RandomState(0).permutation(len(y))
test_rows, train_rows = order[:110], order[110:]
numeric = [n for n in names if n != "sex"]
ni = [names.index(n) for n in numeric]
mean, std = x[train_rows][:, ni].mean(0), x[train_rows][:, ni].std(0)


def encode(rows):
    z = (x[rows][:, ni] - mean) / std
    sex = x[rows][:, names.index("sex")]
    onehot = np.stack([(sex == 1).astype(np.float64), (sex == 2).astype(np.float64)], 1)
    # The metadata's feature order: age, sex (one-hot), then the others.
    return torch.tensor(np.concatenate([z[:, :1], onehot, z[:, 1:]], 1), dtype=torch.float32)


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write(",".join(["id"] + names + ["progression"]) + "\n")
        for i in rows:
            cells = [str(int(v)) if n == "sex" else repr(float(v)) for n, v in zip(names, x[i])]
            f.write(",".join([str(i)] + cells + [repr(float(y[i]))]) + "\n")


write_csv(os.path.join(out, "test.csv"), test_rows)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(11, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                            torch.nn.Linear(8, 1))
ym, ys = float(y[train_rows].mean()), float(y[train_rows].std())
xt, yt = encode(train_rows), torch.tensor((y[train_rows] - ym) / ys, dtype=torch.float32).unsqueeze(1)
opt = torch.optim.Adam(model.parameters(), lr=0.003, weight_decay=1e-2)
for _ in range(100):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(xt), yt)
    loss.backward()
    opt.step()
with torch.no_grad():  # trained on the standardised target: its last layer gives the target's units
    model[-1].weight.mul_(ys)
    model[-1].bias.mul_(ys).add_(ym)
model.eval()
xs = encode(test_rows)
with torch.no_grad():
    pred = model(xs).squeeze(1).double().numpy()
mse = float(((pred - y[test_rows]) ** 2).mean())
baseline_mse = float(((y[train_rows].mean() - y[test_rows]) ** 2).mean())
assert mse < 0.7 * baseline_mse, f"test MSE {mse:.0f} is not well under the mean predictor's {baseline_mse:.0f}"
torch.jit.trace(model, xs[:1]).save(os.path.join(out, "mlp.pt"))
features = [{"name": "age", "type": "numeric", "mean": float(mean[0]), "std": float(std[0])},
            {"name": "sex", "type": "categorical", "values": ["1", "2"]}]
features += [{"name": n, "type": "numeric", "mean": float(m), "std": float(s)} for n, m, s in zip(numeric[1:], mean[1:], std[1:])]
meta = {
    "name": "diabetes_mlp",
    "modality": "tabular",
    "labels": ["progression"],
    "input_shape": [11],
    "output": "regression",
    "features": features,
    "id_column": "id",
    "label_column": "progression",
    "test_mse": round(mse, 2),
    "source": "Efron, Hastie, Johnstone and Tibshirani (2004), Least Angle Regression; as shipped by Debian's python3-sklearn",
}
with open(os.path.join(out, "mlp.json"), "w") as f:
    json.dump(meta, f, indent=2)
    f.write("\n")
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump({"ids": [int(i) for i in test_rows], "predictions": pred.tolist(), "mse": mse,
               "mae": float(np.abs(pred - y[test_rows]).mean()), "mean_predictor_mse": baseline_mse}, f)
    f.write("\n")
print(f"diabetes mlp: test MSE {mse:.1f} (the mean predictor's {baseline_mse:.1f})")
