#!/usr/bin/python3
"""Captum's KernelShap, step for step, without Captum (not in Debian): what a Captum user runs to
explain every row of a tabular model,

    KernelShap(model).attribute(x, baselines=mean_row, target=t, n_samples=S,
                                perturbations_per_eval=P)   # Captum's default P = 1

per row (Captum's LimeBase loop): the all-ones and all-zeros coalitions, then S - 2 coalitions whose
size k is drawn with p(k) ~ (M-1)/(k(M-k)) and whose members are the top k of a normal vector
(kernel_shap_perturb_generator), similarity 1e6 for the two ends and 1 otherwise, the perturbed
rows x*z + b*(1-z) run through the model P at a time, then sklearn's LinearRegression fitted with
those sample weights (SkLearnLinearRegression); its coefficients are the attributions. The CSV is
read and standardised as the metadata says, as the user's own code would.

usage: captum_kernel_shap.py MODEL.pt METADATA.json ROWS.csv OUT_DIR SAMPLES [PERTURBATIONS_PER_EVAL]
Prints {"rows", "import", "load", "compute", "write"} (seconds) as JSON; OUT_DIR/captum.npy [N, M].
"""
import json
import os
import sys
import time

t0 = time.time()
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

t_import = time.time()
model_path, meta_path, csv_path, out = sys.argv[1:5]
samples = int(sys.argv[5])
per_eval = int(sys.argv[6]) if len(sys.argv) > 6 else 1
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
torch.manual_seed(0)
meta = json.load(open(meta_path))
model = torch.jit.load(model_path).eval()
header = open(csv_path).readline().strip().split(",")
raw = np.genfromtxt(csv_path, delimiter=",", skip_header=1, dtype=str)
cols = [header.index(f["name"]) for f in meta["features"]]
x = torch.tensor(np.stack([(raw[:, c].astype(np.float64) - f["mean"]) / f["std"]
                           for c, f in zip(cols, meta["features"])], 1), dtype=torch.float32)
baseline = torch.zeros(1, x.shape[1])  # the mean row, standardised
t_load = time.time()

m = x.shape[1]
k = torch.arange(m, dtype=torch.float)
probs = torch.tensor(m - 1.0) / (k * (m - k))
probs[0] = 0.0
sizes = torch.distributions.Categorical(probs)


def coalitions():
    yield torch.ones(1, m, dtype=torch.long)
    yield torch.zeros(1, m, dtype=torch.long)
    while True:
        chosen = sizes.sample()
        vals = torch.randn(1, m)
        threshold = torch.kthvalue(vals, m - chosen).values.item()
        yield (vals > threshold).long()


maps = []
with torch.no_grad():
    target = model(x).argmax(1)
    for i in range(x.shape[0]):
        row = x[i:i + 1]
        zs, ys, ws, pending = [], [], [], []
        gen = coalitions()
        for s in range(samples):
            z = next(gen)
            n_on = int(z.sum(dim=1).item())
            ws.append(torch.tensor([1e6 if n_on in (0, m) else 1.0]))
            zs.append(z)
            pending.append(z * row + (1 - z) * baseline)
            if len(pending) == per_eval or s == samples - 1:
                ys.append(model(torch.cat(pending))[:, target[i]])
                pending = []
        fit = LinearRegression().fit(torch.cat(zs).float().numpy(), torch.cat(ys).numpy(),
                                     sample_weight=torch.cat(ws).numpy())
        maps.append(fit.coef_.astype(np.float32))
t_compute = time.time()
os.makedirs(out, exist_ok=True)
np.save(os.path.join(out, "captum.npy"), np.stack(maps))
t_write = time.time()
print(json.dumps({"rows": int(x.shape[0]), "import": round(t_import - t0, 3), "load": round(t_load - t_import, 3),
                  "compute": round(t_compute - t_load, 3), "write": round(t_write - t_compute, 3)}))
