#!/usr/bin/python3
"""D-RISE and a box's saliency on the trained road-scene detector (models/roads/), all measured in
this one run (docs/performance.md, the README's Detectors section):

1. D-RISE, 1,000 masks, one box (detection 0 of held-out scene_02.png): Salient's own seconds for
   the method (explanation.json) / the floor: the same 1,000 masked forwards at the same batch (32)
   in plain LibTorch (salient_floor forward) -- target <= 1.1;
2. whole process, `salient explain --method d-rise` / an eager PyTorch D-RISE written as a user
   would (masks made and applied in torch, batched 32, the same threads; decode, IoU x cosine x
   objectness, weighted mask sum) -- target <= 0.3;
3. saliency on one box: Salient's seconds / the detector's own forward + backward of one image in
   plain LibTorch (salient_floor) -- target <= 1.1.

usage: bench/detection.py [BUILD_DIR]   (~1 minute on 2 cores; SALIENT_BENCH_THREADS, default 2)
"""
import json
import os
import shutil
import subprocess
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build"))
threads = os.environ.get("SALIENT_BENCH_THREADS", "2")
model = os.path.join(root, "models", "roads", "roads.pt")
image = os.path.join(root, "models", "roads", "heldout", "scene_02.png")
work = os.path.join(build, "bench", "detection")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)

EAGER = r'''
import sys, time, torch, numpy as np
from PIL import Image
torch.set_num_threads(int(sys.argv[3]))
model = torch.jit.load(sys.argv[1]).eval()
x = torch.from_numpy(np.asarray(Image.open(sys.argv[2]).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
N, S, P, B = 1000, 16, 0.5, 32
H, W = x.shape[1:]

def dets(out):  # yolov5 layout -> boxes xyxy, objectness, class vectors
    b = torch.cat([out[..., :2] - out[..., 2:4] / 2, out[..., :2] + out[..., 2:4] / 2], -1)
    return b, out[..., 4], out[..., 5:]

def iou(a, r):
    lt, rb = torch.max(a[..., :2], r[:2]), torch.min(a[..., 2:], r[2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda t: (t[..., 2] - t[..., 0]).clamp(min=0) * (t[..., 3] - t[..., 1]).clamp(min=0)
    return inter / (area(a) + area(r) - inter)

with torch.no_grad():
    b, o, c = dets(model(x[None]))
    k = int((o * c.max(-1).values)[0].argmax())
    ref_box, ref_cls = b[0, k], c[0, k]
    g = torch.Generator().manual_seed(0)
    ch, cw = (H + S - 1) // S, (W + S - 1) // S
    grids = (torch.rand(N, 1, S, S, generator=g) < P).float()
    shift = torch.randint(0, ch, (N, 2), generator=g)
    sal = torch.zeros(H, W)
    for s in range(0, N, B):
        up = torch.nn.functional.interpolate(grids[s:s + B], size=((S + 1) * ch, (S + 1) * cw), mode="bilinear", align_corners=False)
        m = torch.stack([up[i, 0, dy:dy + H, dx:dx + W] for i, (dy, dx) in enumerate(shift[s:s + B].tolist())])
        bb, oo, cc = dets(model(x[None] * m[:, None]))
        sim = (iou(bb, ref_box) * torch.nn.functional.cosine_similarity(cc, ref_cls[None, None], dim=-1) * oo).max(1).values
        sal += (sim[:, None, None] * m).sum(0)
    sal = sal / (N * P)
print(float(sal.max()))
'''


def wall(cmd):
    t = time.time()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.time() - t, out


def salient(method, extra=()):
    out = os.path.join(work, method)
    s, _ = wall([os.path.join(build, "salient"), "explain", "-m", model, "-i", image, "--method", method, "--target", "box:0",
                 "--threads", threads, "--out", out, *extra])
    j = json.load(open(os.path.join(out, "scene_02", "explanation.json")))
    return s, j["explained"][0]["methods"][method]["seconds"]


drise_wall, drise_own = salient("d-rise")
eager_path = os.path.join(work, "eager_drise.py")
open(eager_path, "w").write(EAGER)
eager_wall, _ = wall(["/usr/bin/python3", eager_path, model, image, threads])
_, out = wall([os.path.join(build, "salient_floor"), model, "1000", "32", threads, "3,96,96", "forward"])
floor_fwd = json.loads(out)["seconds_compute"]
_, sal_own = salient("saliency", ["--no-abs"])
_, out = wall([os.path.join(build, "salient_floor"), model, "20", "1", threads, "3,96,96"])
floor_fb = json.loads(out)["seconds_compute"] / 20

print(f"D-RISE 1000 masks, one box: {drise_own:.3f} s; floor (1000 masked forwards, batch 32, plain LibTorch) "
      f"{floor_fwd:.3f} s: ratio {drise_own / floor_fwd:.2f} (target <= 1.1)")
print(f"whole process: salient explain --method d-rise {drise_wall:.2f} s; eager PyTorch D-RISE {eager_wall:.2f} s: "
      f"ratio {drise_wall / eager_wall:.2f} (target <= 0.3)")
print(f"saliency on one box: {sal_own * 1000:.2f} ms; forward + backward of one image {floor_fb * 1000:.2f} ms: "
      f"ratio {sal_own / floor_fb:.2f} (target <= 1.1)")
