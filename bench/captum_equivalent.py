#!/usr/bin/python3
"""What a Captum user writes for SmoothGrad over a stack of inputs, without Captum (not in Debian):
NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=50, stdevs=sd, target=t)
expands every input nt_samples times, runs one forward/backward over all the rows (Captum's default
nt_samples_batch_size=None), averages the gradients per input and the user saves each map. The same
steps here in eager PyTorch, timed as a whole process by bench/batch.sh.

usage: captum_equivalent.py MODEL INPUTS.npy OUT_DIR [SAMPLES]
"""
import os
import sys
import time

t0 = time.time()
import numpy as np  # noqa: E402
import torch  # noqa: E402

t_import = time.time()
model_path, inputs_path, out = sys.argv[1:4]
samples = int(sys.argv[4]) if len(sys.argv) > 4 else 50
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
model = torch.jit.load(model_path).eval()
x = torch.from_numpy(np.load(inputs_path))
t_load = time.time()
with torch.no_grad():
    target = model(x).argmax(1)
n = x.shape[0]
sd = 0.15 * (x.flatten(1).max(1).values - x.flatten(1).min(1).values)
# NoiseTunnel: inputs repeated nt_samples times (sample-major, as Captum's _expand), Gaussian noise.
rows = x.repeat(samples, 1, 1, 1)
noise = torch.randn_like(rows) * sd.repeat(samples).view(-1, 1, 1, 1)
noisy = (rows + noise).requires_grad_(True)
out_rows = model(noisy)
grads = torch.autograd.grad(out_rows.gather(1, target.repeat(samples).view(-1, 1)).sum(), noisy)[0]
maps = grads.view(samples, n, *x.shape[1:]).mean(0).abs()
t_compute = time.time()
os.makedirs(out, exist_ok=True)
for i in range(n):
    np.save(os.path.join(out, "map_%d.npy" % i), maps[i].numpy())
t_write = time.time()
print('{"import": %.3f, "load": %.3f, "compute": %.3f, "write": %.3f}'
      % (t_import - t0, t_load - t_import, t_compute - t_load, t_write - t_compute))
