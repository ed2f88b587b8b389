#!/usr/bin/python3
"""Data-set scale figures of the docs/performance.md ("salient batch"), all measured in this one run:

1. inputs/s of `salient batch --format stack --no-png` over the 10,000 Fashion-MNIST test images, for
   saliency and SmoothGrad-50 on the demo CNN, / the floor's rate (bench_floor: forward + backward of
   the same rows in passes of the same size in plain LibTorch, nothing else), both whole processes;
2. peak RSS over 10,000 inputs / over 500 (memory bounded by the window, not the data set);
3. the whole process for 64 demo inputs x SmoothGrad-50 with `salient explain`, where its time goes,
   against the same work as a Captum user writes it (bench/captum_equivalent.py, eager PyTorch).

usage: bench/batch.py [BUILD_DIR]   (~15 minutes on 2 cores; SALIENT_BENCH_THREADS, default 2;
SALIENT_BENCH_SG_INPUTS, default 2000: SmoothGrad-50 over all 10,000 is 500,000 passes' rows, ~9 min
here, and its rate is the same over 2,000)
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build"))
threads = os.environ.get("SALIENT_BENCH_THREADS", "2")
model = os.path.join(root, "models", "fashion_cnn.pt")
data = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
work = os.path.join(build, "bench", "batch")
os.makedirs(work, exist_ok=True)
cli, floor = os.path.join(build, "salient"), os.path.join(build, "salient_floor")


def timed(cmd, env=None):
    """(wall seconds, peak RSS MB, stdout) of a whole process."""
    out = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M"] + cmd, capture_output=True, text=True,
                         env=dict(os.environ, **(env or {})))
    if out.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), out.stderr))
    wall, rss = out.stderr.strip().splitlines()[-1].split()[1:]
    return float(wall), int(rss) / 1024.0, out.stdout


def batch(method_flags, limit, tag):
    out = os.path.join(work, tag)
    shutil.rmtree(out, ignore_errors=True)
    return timed([cli, "batch", "-m", model, "-d", data, "--limit", str(limit), "--format", "stack", "--no-png",
                  "--threads", threads, "--out", out] + method_flags)


rows = {}
print("| run | inputs | wall s | inputs/s | floor inputs/s | ratio | peak RSS MB |")
print("|---|---|---|---|---|---|---|")
sg_inputs = int(os.environ.get("SALIENT_BENCH_SG_INPUTS", "2000"))
for name, flags, samples, n in [("saliency", ["--method", "saliency"], 1, 10000),
                                ("smoothgrad-50", ["--method", "smoothgrad", "--samples", "50"], 50, sg_inputs)]:
    wall, rss, _ = batch(flags, n, name)
    fwall, _, _ = timed([floor, model, str(n * samples), "10", threads, "1,28,28"])
    rows[name] = (wall, rss)
    print("| batch %s | %d | %.2f | %.0f | %.0f | %.2f | %.0f |"
          % (name, n, wall, n / wall, n / fwall, fwall / wall, rss))
w500, rss500, _ = batch(["--method", "saliency"], 500, "saliency-500")
print("| batch saliency | 500 | %.2f | %.0f | | | %.0f |" % (w500, 500 / w500, rss500))
print("\npeak RSS 10,000 / 500 inputs (saliency): %.2f (target <= 1.2)" % (rows["saliency"][1] / rss500))

# 64 inputs x SmoothGrad-50, whole process.
x = np.load(os.path.join(work, "x64.npy")) if os.path.exists(os.path.join(work, "x64.npy")) else None
if x is None:
    import gzip
    raw = np.frombuffer(gzip.open(data).read()[16:16 + 64 * 784], np.uint8).reshape(64, 1, 28, 28)
    x = ((raw.astype(np.float32) / 255.0 - 0.286) / 0.353).astype(np.float32)
    np.save(os.path.join(work, "x64.npy"), x)
start_wall, _, _ = timed([cli, "--version"])
load_wall, _, _ = timed([cli, "info", "-m", model, "--threads", threads])
out = os.path.join(work, "explain64")
shutil.rmtree(out, ignore_errors=True)
ex_wall, ex_rss, _ = timed([cli, "explain", "-m", model, "-i", os.path.join(work, "x64.npy"), "--method", "smoothgrad",
                            "--samples", "50", "--threads", threads, "--out", out])
compute = 0.0
for d in os.listdir(out):
    p = os.path.join(out, d, "explanation.json")
    if os.path.exists(p):
        compute += json.load(open(p))["explained"][0]["methods"]["smoothgrad"]["seconds"]
cap_wall, cap_rss, cap_out = timed(["/usr/bin/python3", os.path.join(root, "bench", "captum_equivalent.py"), model,
                                    os.path.join(work, "x64.npy"), os.path.join(work, "captum64")], {"THREADS": threads})
cap = json.loads(cap_out.strip().splitlines()[-1])
print("\n64 inputs x SmoothGrad-50, whole process (2 threads):")
print("| | wall s | start-up | model load | compute | the rest (predictions, checks, writing) |")
print("|---|---|---|---|---|---|")
print("| salient explain | %.2f | %.2f | %.2f | %.2f | %.2f |"
      % (ex_wall, start_wall, load_wall - start_wall, compute, ex_wall - load_wall - compute))
print("| Captum-equivalent eager PyTorch | %.2f | %.2f (import torch) | %.2f | %.2f | %.2f |"
      % (cap_wall, cap["import"], cap["load"], cap["compute"], cap["write"] + cap_wall - sum(cap.values())))
print("\nsalient / Captum-equivalent: %.2f (target <= 0.5)" % (ex_wall / cap_wall))
