#!/usr/bin/python3
"""A trained detection demo: synthetic road scenes and a small single-stage detector.

scenes.py draws seeded 96x96 road scenes (sky, grass, a road in perspective with lane marks,
trees, houses and clutter as distractors) with cars, pedestrians and road signs of several sizes,
colours and shapes, and their ground-truth boxes. The detector is a YOLO-style head on a 4-level
CNN (BatchNorm, ReLU, max-pool): one prediction per 8x8 cell, [N, 144, 4 + 1 + 3] in YOLOv5's
layout (cx, cy, w, h in pixels, objectness, class probabilities). Trained from scratch with a fixed
seed on 2 CPU cores (~5 min), traced to TorchScript (roads.pt) and exported to ONNX (roads.onnx,
the same layout, for OpenCV DNN), with metadata (roads.json) and held-out scenes:
heldout/scene_*.png with heldout/boxes.csv (image,x1,y1,x2,y2,label). Prints mAP@0.5 on 300
held-out scenes. Tooling only (run once, outputs committed).

    /usr/bin/python3 models/roads/train.py models/roads
"""
import csv
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scenes import LABELS, SIZE, scene  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
STRIDE = 8
GRID = SIZE // STRIDE


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class RoadDetector(nn.Module):
    def __init__(self, classes=len(LABELS)):
        super().__init__()
        self.features = nn.Sequential(block(3, 16), nn.MaxPool2d(2), block(16, 32), nn.MaxPool2d(2),
                                      block(32, 48), nn.MaxPool2d(2), block(48, 64), block(64, 64))
        self.head = nn.Conv2d(64, 5 + classes, 1)
        gy, gx = torch.meshgrid(torch.arange(float(GRID)), torch.arange(float(GRID)), indexing="ij")
        self.register_buffer("grid", torch.stack([gx, gy]).unsqueeze(0))  # [1, 2, G, G]
        self.register_buffer("cells", torch.stack([gx, gy], -1).view(1, GRID * GRID, 2))

    def raw(self, x):
        return self.head(self.features(x)).flatten(2).transpose(1, 2)  # [N, A, 5 + C]

    def forward(self, x):
        # Decoded in [N, C, G, G] (OpenCV DNN 4.6 cannot add a constant to [N, A, K]), then laid out
        # as YOLOv5's [N, A, 4 + 1 + C].
        p = self.head(self.features(x))
        xy = (self.grid + torch.sigmoid(p[:, 0:2])) * STRIDE
        wh = 48 * torch.sigmoid(p[:, 2:4])
        return torch.cat([xy, wh, torch.sigmoid(p[:, 4:])], 1).flatten(2).transpose(1, 2)


def targets_of(boxes):
    """Per cell: objectness, class, box (cx, cy, w, h) of the object whose centre falls in it."""
    obj = np.zeros(GRID * GRID, np.float32)
    cls = np.zeros(GRID * GRID, np.int64)
    box = np.zeros((GRID * GRID, 4), np.float32)
    for x1, y1, x2, y2, label in boxes:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        k = int(cy // STRIDE) * GRID + int(cx // STRIDE)
        obj[k], cls[k], box[k] = 1, label, (cx, cy, x2 - x1, y2 - y1)
    return obj, cls, box


def make(n, seed):
    rng = np.random.default_rng(seed)
    images, boxes = [], []
    for _ in range(n):
        img, b = scene(rng)
        images.append(img)
        boxes.append(b)
    return np.stack(images), boxes


def decode(pred, threshold=0.05, iou=0.45):
    """Detections of one image's output [A, 5 + C]: (x1, y1, x2, y2, score, label), NMS per class."""
    import torchvision
    conf, label = (pred[:, 4:5] * pred[:, 5:]).max(1)
    keep = conf >= threshold
    p, conf, label = pred[keep], conf[keep], label[keep]
    xyxy = torch.cat([p[:, :2] - p[:, 2:4] / 2, p[:, :2] + p[:, 2:4] / 2], 1)
    k = torchvision.ops.batched_nms(xyxy, conf, label, iou)
    return xyxy[k], conf[k], label[k]


def average_precision(dets, truths, cls):
    """VOC all-point AP at IoU 0.5 for one class over images."""
    import torchvision
    scored, total = [], 0
    for (boxes, scores, labels), truth in zip(dets, truths):
        gt = torch.tensor([t[:4] for t in truth if t[4] == cls], dtype=torch.float32).view(-1, 4)
        total += len(gt)
        used = set()
        sel = labels == cls
        for b, s in sorted(zip(boxes[sel], scores[sel]), key=lambda t: -float(t[1])):
            hit = False
            if len(gt):
                ious = torchvision.ops.box_iou(b[None], gt)[0]
                j = int(ious.argmax())
                if ious[j] >= 0.5 and j not in used:
                    used.add(j)
                    hit = True
            scored.append((float(s), hit))
    if total == 0:
        return float("nan")
    scored.sort(key=lambda t: -t[0])
    tp = np.cumsum([h for _, h in scored])
    fp = np.cumsum([not h for _, h in scored])
    recall = tp / total
    precision = tp / np.maximum(tp + fp, 1)
    mrec = np.concatenate([[0], recall, [1]])
    mpre = np.concatenate([[0], precision, [0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]).sum())


def write_heldout(out, test_x, test_b, count=40):
    """The first `count` held-out scenes as PNG files and their boxes (the demo's and tests' inputs)."""
    from PIL import Image
    held = os.path.join(out, "heldout")
    os.makedirs(held, exist_ok=True)
    with open(os.path.join(held, "boxes.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x1", "y1", "x2", "y2", "label"])
        for i in range(count):
            name = f"scene_{i:02d}.png"
            Image.fromarray(test_x[i]).save(os.path.join(held, name))
            for x1, y1, x2, y2, label in test_b[i]:
                w.writerow([name, x1, y1, x2, y2, LABELS[label]])


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    start = time.time()
    train_x, train_b = make(6000, 1)
    test_x, test_b = make(300, 2)
    print(f"scenes drawn in {time.time() - start:.0f} s")
    tx = torch.from_numpy(train_x).permute(0, 3, 1, 2).float() / 255
    t = [targets_of(b) for b in train_b]
    t_obj = torch.from_numpy(np.stack([a for a, _, _ in t]))
    t_cls = torch.from_numpy(np.stack([c for _, c, _ in t]))
    t_box = torch.from_numpy(np.stack([b for _, _, b in t]))
    model = RoadDetector()
    opt = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=1e-4)
    epochs, batch = 24, 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * (len(tx) // batch))
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(tx))
        total = 0.0
        for i in range(0, len(tx) - batch + 1, batch):
            idx = perm[i:i + batch]
            x = tx[idx]
            if epoch < epochs - 2:  # brightness jitter
                x = (x * (0.8 + 0.4 * torch.rand(len(x), 1, 1, 1))).clamp(0, 1)
            p = model.raw(x)
            obj, cls, box = t_obj[idx], t_cls[idx], t_box[idx]
            pos = obj > 0
            loss = F.binary_cross_entropy_with_logits(p[..., 4], obj, pos_weight=torch.tensor(4.0))
            if pos.any():
                pp = p[pos]
                onehot = F.one_hot(cls[pos], len(LABELS)).float()
                loss = loss + F.binary_cross_entropy_with_logits(pp[:, 5:], onehot)
                cells = model.cells.expand(len(x), -1, -1)[pos]
                xy = (cells + torch.sigmoid(pp[:, :2])) * STRIDE
                wh = 48 * torch.sigmoid(pp[:, 2:4])
                loss = loss + 2 * F.smooth_l1_loss(torch.cat([xy, wh], 1) / STRIDE, box[pos] / STRIDE)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(x)
        print(f"epoch {epoch + 1}: loss {total / len(tx):.4f}  ({time.time() - start:.0f} s)")
    model.eval()
    with torch.no_grad():
        preds = model(torch.from_numpy(test_x).permute(0, 3, 1, 2).float() / 255)
    dets = [decode(p) for p in preds]
    aps = [average_precision(dets, test_b, c) for c in range(len(LABELS))]
    print("AP@0.5 per class: " + ", ".join(f"{l} {a:.3f}" for l, a in zip(LABELS, aps)) + f"; mAP@0.5 {np.nanmean(aps):.3f}")

    example = torch.rand(1, 3, SIZE, SIZE)
    torch.jit.trace(model, example).save(os.path.join(out, "roads.pt"))
    torch.onnx.export(model, example, os.path.join(out, "roads.onnx"), opset_version=13, input_names=["input"],
                      output_names=["predictions"], dynamic_axes={"input": {0: "batch"}, "predictions": {0: "batch"}})
    with open(os.path.join(out, "roads.json"), "w") as f:
        json.dump({"name": "roads", "modality": "detection", "labels": LABELS, "input_shape": [3, SIZE, SIZE],
                   "detection": {"format": "yolov5", "box": "cxcywh", "score_threshold": 0.3, "iou_threshold": 0.45,
                                 "max_detections": 20},
                   "metrics": {"mAP@0.5": round(float(np.nanmean(aps)), 4),
                               "AP@0.5": {l: round(a, 4) for l, a in zip(LABELS, aps)}, "heldout_scenes": len(test_x)}},
                  f, indent=1)
    write_heldout(out, test_x, test_b)
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
