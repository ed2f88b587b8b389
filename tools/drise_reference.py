"""D-RISE written out independently in NumPy (the scoring of Petsiuk et al. 2021 as
xaitk-saliency's DRISEScoring computes it: per mask, the best proposal's IoU x class-vector cosine x
objectness, then the masks weighted by those similarities), over the masks Salient used
(`--option d-rise.keep-masks=true`) and the same TorchScript model run by eager PyTorch. Two
deliberate differences from xaitk-saliency 0.x, which Salient follows the paper on: IoU of
continuous coordinates (xaitk adds 1 pixel to each side) and cosine *similarity* (its cdist
'cosine' is a distance, 1 - similarity). Salient's map is the paper's sum_i s_i M_i / (N p) less
the mean similarity (as its RISE; the paper's own map is d-rise_bI.raw.npy).

usage: drise_reference.py SALIENT_BIN ZOO_DIR WORK_DIR   (exit 1 on a mismatch beyond 1e-5)
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch


def iou(a, b):  # a [P, 4], b [4]
    lt = np.maximum(a[:, :2], b[:2])
    rb = np.minimum(a[:, 2:], b[2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda x: np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def proposals(model, fmt, image, classes):
    """Each proposal as (box xyxy, objectness, class vector) of one image [C, H, W]."""
    with torch.no_grad():
        if fmt == "torchvision":
            d = model([image])[1][0]
            boxes, labels, scores = d["boxes"].numpy(), d["labels"].numpy(), d["scores"].numpy()
            onehot = np.zeros((len(labels), classes))
            onehot[np.arange(len(labels)), labels] = 1
            return boxes.astype(np.float64), scores.astype(np.float64), onehot
        p = model(image[None])[0].numpy().astype(np.float64)  # yolov5 [A, 4 + 1 + C], cxcywh
        boxes = np.concatenate([p[:, :2] - p[:, 2:4] / 2, p[:, :2] + p[:, 2:4] / 2], 1)
        return boxes, p[:, 4], p[:, 5:]


def cosine(v, ref):
    n = np.linalg.norm(v, axis=1) * np.linalg.norm(ref)
    return np.where(n > 0, v @ ref / np.maximum(n, 1e-12), 0.0)


def check(salient, zoo, work, name, box, samples, grid):
    model_path = os.path.join(zoo, name + ".pt")
    image_path = os.path.join(zoo, name + "_image.npy")
    out = os.path.join(work, name)
    subprocess.run([salient, "explain", "-m", model_path, "-i", image_path, "--method", "d-rise", "--target", f"box:{box}",
                    "--option", f"samples={samples}", "--option", f"grid={grid}", "--option", "keep-masks=true",
                    "-o", out], check=True, stdout=subprocess.DEVNULL)
    folder = os.path.join(out, name + "_image_0")
    record = json.load(open(os.path.join(folder, "explanation.json")))
    meta = json.load(open(os.path.join(zoo, name + ".json")))
    fmt, classes = meta["detection"]["format"], len(meta["labels"])
    keep = record["explained"][0]["methods"]["d-rise"]["params"]["keep"]
    masks = np.load(os.path.join(folder, f"d-rise_b{box}.masks.npy")).astype(np.float64)  # [N, H, W]
    got = np.load(os.path.join(folder, f"d-rise_b{box}.npy"))[0].astype(np.float64)
    model = torch.jit.load(model_path).eval()
    x = torch.from_numpy(np.load(image_path)[0])
    # The explained detection: Salient's detection `box` (its box, label) and, for a raw head, the
    # class vector of the clean proposal it came from (the most confident one).
    ref = record["explained"][0]
    ref_box = np.array(ref["box"], dtype=np.float64)
    boxes, obj, vecs = proposals(model, fmt, x, classes)
    if fmt == "torchvision":
        ref_vec = np.zeros(classes)
        ref_vec[ref["class"]] = 1
    else:
        best = int(np.argmax(obj * vecs.max(1)))  # detection 0: the most confident
        assert np.abs(boxes[best] - ref_box).max() < 1e-4, (boxes[best], ref_box)
        ref_vec = vecs[best]
    sims = np.zeros(len(masks))
    for i, m in enumerate(masks):
        b, o, v = proposals(model, fmt, x * torch.from_numpy(m).float()[None], classes)
        if len(b):
            sims[i] = (iou(b, ref_box) * cosine(v, ref_vec) * o).max()
    want = (sims[:, None, None] * masks).sum(0) / (len(masks) * keep) - sims.mean()
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-12)
    vanished = int((sims == 0).sum())
    print(f"{name}: {len(masks)} masks, max relative difference {err:.2e}, similarity range "
          f"[{sims.min():.3f}, {sims.max():.3f}], object gone under {vanished} masks")
    return err


def main():
    salient, zoo, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    # linear_detector's box 2 vanishes under many masks (its score falls below 0): those score 0.
    worst = max(check(salient, zoo, work, "linear_detector", 2, 300, 4), check(salient, zoo, work, "tiny_yolo", 0, 300, 8))
    if worst > 1e-5:
        print(f"D-RISE differs from the reference by {worst:.2e} (> 1e-5)")
        sys.exit(1)


if __name__ == "__main__":
    main()
