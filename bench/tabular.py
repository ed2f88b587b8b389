#!/usr/bin/python3
"""KernelSHAP on a tabular model, whole processes, all measured in this one run (docs/performance.md):

1. `salient explain --method kernel-shap --samples S` over every row of the breast-cancer demo's
   test.csv on its MLP, against Captum's KernelShap on the same TorchScript model with the same
   number of samples (tools/captum_kernel_shap.py: Captum's algorithm step for step, run with its
   default perturbations_per_eval=1 and with 32 -- the batch Salient uses);
2. Salient's KernelSHAP time per row (the method's own seconds in explanation.json) against the
   floor: the same model evaluations, batched the same way, in plain LibTorch (salient_floor forward);
3. agreement: the mean per-row correlation of the two maps, and how far each one's sum is from
   f(x) - f(mean row) (Salient solves with that as a constraint; Captum's regression leans on a
   weight of 1e6).

usage: bench/tabular.py [BUILD_DIR] [SAMPLES]   (~1 minute on 2 cores; SALIENT_BENCH_THREADS, default 2)
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build"))
samples = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
threads = os.environ.get("SALIENT_BENCH_THREADS", "2")
demo = os.path.join(root, "models", "breast_cancer")
model, meta, rows = os.path.join(demo, "mlp.pt"), os.path.join(demo, "mlp.json"), os.path.join(demo, "test.csv")
work = os.path.join(build, "bench", "tabular")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)


def wall(cmd, env=None):
    t = time.time()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return time.time() - t, out


env = dict(os.environ, THREADS=threads)
salient_s, _ = wall([os.path.join(build, "salient"), "explain", "-m", model, "-i", rows, "--method", "kernel-shap",
                     "--samples", str(samples), "--threads", threads, "--out", os.path.join(work, "salient")])
captum = {}
for per_eval in (1, 32):
    s, out = wall(["/usr/bin/python3", os.path.join(root, "tools", "captum_kernel_shap.py"), model, meta, rows,
                   os.path.join(work, "captum-%d" % per_eval), str(samples), str(per_eval)], env)
    captum[per_eval] = (s, json.loads(out))
n = captum[1][1]["rows"]
# Salient evaluates `samples` coalitions and the two ends per row, 32 rows a pass.
_, out = wall([os.path.join(build, "salient_floor"), model, str(n * (samples + 2)), "32", threads, "30", "forward"])
floor = json.loads(out)

ids = [line.split(",")[0] for line in open(rows).read().splitlines()[1:]]
ours, own_seconds, gaps = [], 0.0, []
for i in ids:
    ours.append(np.load(os.path.join(work, "salient", i, "kernel-shap.npy")))
    j = json.load(open(os.path.join(work, "salient", i, "explanation.json")))["explained"][0]["methods"]["kernel-shap"]
    own_seconds += j["seconds"]
    gaps.append(abs(j["f(x)"] - j["base_value"] - float(np.sum(ours[-1]))))
ours = np.stack(ours)
theirs = np.load(os.path.join(work, "captum-1", "captum.npy"))
corr = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(ours, theirs)])
print("KernelSHAP, %d rows x %d samples, breast-cancer MLP (30 columns), %s threads" % (n, samples, threads))
print("  salient explain (whole process, JSON + waterfall PNG per row): %.2f s" % salient_s)
for per_eval, (s, parts) in captum.items():
    print("  Captum KernelShap, perturbations_per_eval=%d (whole process): %.2f s  %s" % (per_eval, s, json.dumps(parts)))
    print("    salient / captum = %.3f" % (salient_s / s))
print("  salient's kernel-shap seconds per row: %.2f ms; floor (same forwards batched, plain LibTorch) %.2f ms per row;"
      " ratio %.2f" % (1e3 * own_seconds / n, 1e3 * floor["seconds_compute"] / n, own_seconds / floor["seconds_compute"]))
print("  agreement: mean per-row correlation salient vs captum %.3f; max |sum - (f(x) - f(mean row))| salient %.2g"
      % (corr, max(gaps)))
