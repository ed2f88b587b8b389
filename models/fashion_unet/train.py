#!/usr/bin/python3
"""A trained segmentation demo: a small U-Net (two levels, BatchNorm, max-pool down, nearest
up-sampling, a concatenated skip connection) labels every pixel of a Fashion-MNIST image as
background or as its garment's class (11 classes: background + the 10 garments; a pixel is
garment when its ink is above 0.1). Trained on Debian's dataset-fashion-mnist with a fixed seed,
traced to TorchScript with its metadata; the eager model's own numbers on four test images
(reference_x.npy [4,1,28,28], reference_class.npy, reference_value.npy: region:<class> summed
logits, reference_gradient.npy: its input gradient, float64) are what
the tests compare Salient's with. Tooling only (run once, outputs committed).

    /usr/bin/python3 models/fashion_unet/train.py models/fashion_unet
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from train_demo import LABELS, MEAN, STD, read_idx  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class UNet(nn.Module):
    def __init__(self, classes=11):
        super().__init__()
        self.enc1 = block(1, 8)
        self.enc2 = block(8, 16)
        self.dec1 = block(16 + 8, 8)
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)                                   # [N, 8, 28, 28]
        e2 = self.enc2(F.max_pool2d(e1, 2))                 # [N, 16, 14, 14]
        up = F.interpolate(e2, scale_factor=2.0, mode="nearest")
        return self.head(self.dec1(torch.cat([up, e1], 1)))  # [N, 11, 28, 28]


def masks(u8, labels):
    ink = torch.from_numpy(u8.copy()).float() / 255 > 0.1
    return torch.where(ink, torch.as_tensor(labels).view(-1, 1, 1) + 1, torch.zeros((), dtype=torch.long))


def main():
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    tr_u8, tr_y = read_idx("train-images-idx3-ubyte.gz")[:20000], read_idx("train-labels-idx1-ubyte.gz")[:20000]
    te_u8, te_y = read_idx("t10k-images-idx3-ubyte.gz")[:2000], read_idx("t10k-labels-idx1-ubyte.gz")[:2000]
    norm = lambda u8: ((torch.from_numpy(u8.copy()).float() / 255 - MEAN) / STD).unsqueeze(1)
    xtr, mtr = norm(tr_u8), masks(tr_u8, tr_y.astype(np.int64))
    xte, mte = norm(te_u8), masks(te_u8, te_y.astype(np.int64))
    model = UNet()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.3)
    for epoch in range(6):
        model.train()
        for i in torch.randperm(len(xtr)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(xtr[i]), mtr[i]).backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(xte[i:i + 500]).argmax(1) for i in range(0, len(xte), 500)])
        fg = mte > 0
        print(f"epoch {epoch}: pixel accuracy {(pred == mte).float().mean():.4f}, "
              f"garment pixels labelled right {(pred[fg] == mte[fg]).float().mean():.4f}")
    pixel_acc = float((pred == mte).float().mean())
    garment_acc = float((pred[fg] == mte[fg]).float().mean())
    model.eval()
    torch.jit.trace(model, xte[:1]).save(os.path.join(out, "unet.pt"))
    meta = {"name": "fashion_unet", "labels": ["background"] + LABELS, "input_shape": [1, 28, 28],
            "channel_order": "L", "value_range": [0.0, 1.0], "mean": [MEAN], "std": [STD], "output": "logits",
            "test_pixel_accuracy": round(pixel_acc, 4), "test_garment_pixel_accuracy": round(garment_acc, 4)}
    with open(os.path.join(out, "unet.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    # The eager reference: four test images, each explained on the region of its own garment class.
    x = xte[:4].clone().requires_grad_(True)
    y = model(x)
    cls = torch.as_tensor(te_y[:4].astype(np.int64)) + 1
    value = y[torch.arange(4), cls].sum((1, 2))
    grad, = torch.autograd.grad(value.sum(), x)
    np.save(os.path.join(out, "reference_x.npy"), xte[:4].numpy())
    np.save(os.path.join(out, "reference_class.npy"), cls.numpy())
    np.save(os.path.join(out, "reference_value.npy"), value.detach().double().numpy())
    np.save(os.path.join(out, "reference_gradient.npy"), grad.double().numpy())


if __name__ == "__main__":
    main()
