#!/usr/bin/env python3
"""Train Salient's demo CNN on Fashion-MNIST and export it as TorchScript.

Tooling only (never run by Salient itself). Uses Debian's python3-torch and the IDX files of
Debian's dataset-fashion-mnist. Writes, next to this script:
  fashion_cnn.pt      traced TorchScript model, input [N,1,28,28] normalised, output logits [N,10]
  fashion_cnn.json    sidecar metadata (labels, input shape, value range, mean/std)
  samples/*.png       a few test-set images (one per class), 8-bit grayscale

    /usr/bin/python3 models/train_demo.py            # ~5 minutes on 2 cores
"""
import gzip
import json
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"
HERE = os.path.dirname(os.path.abspath(__file__))
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MEAN, STD = 0.2860, 0.3530


def read_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class FashionCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


def main():
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    xtr = (torch.from_numpy(read_idx("train-images-idx3-ubyte.gz").copy()).float() / 255 - MEAN) / STD
    ytr = torch.from_numpy(read_idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    xte_u8 = read_idx("t10k-images-idx3-ubyte.gz")
    xte = (torch.from_numpy(xte_u8.copy()).float() / 255 - MEAN) / STD
    yte = torch.from_numpy(read_idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    xtr, xte = xtr.unsqueeze(1), xte.unsqueeze(1)

    model = FashionCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.4)
    for epoch in range(5):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch + 1}: test accuracy {acc:.4f}", flush=True)

    model.eval()
    traced = torch.jit.trace(model, torch.zeros(1, 1, 28, 28))
    traced.save(os.path.join(HERE, "fashion_cnn.pt"))
    meta = {
        "name": "fashion_cnn",
        "labels": LABELS,
        "input_shape": [1, 28, 28],
        "channel_order": "L",
        "value_range": [0.0, 1.0],
        "mean": [MEAN],
        "std": [STD],
        "output": "logits",
        "test_accuracy": round(acc, 4),
    }
    with open(os.path.join(HERE, "fashion_cnn.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")

    # One correctly classified test image per class, as 8-bit grayscale PNG (written with torchvision).
    from torchvision.io import write_png
    os.makedirs(os.path.join(HERE, "samples"), exist_ok=True)
    with torch.no_grad():
        pred = model(xte).argmax(1)
    for c, name in enumerate(LABELS):
        i = next(i for i in range(len(yte)) if yte[i] == c and pred[i] == c)
        slug = name.lower().replace("/", "-").replace(" ", "-")
        write_png(torch.from_numpy(xte_u8[i].copy()).unsqueeze(0),
                  os.path.join(HERE, "samples", f"{c}-{slug}.png"))


if __name__ == "__main__":
    main()
