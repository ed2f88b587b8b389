#!/usr/bin/env python3
"""Export torchvision ResNet-18 with random (seeded) weights as TorchScript, for benchmarks and
parity tests. No weights are downloaded.

    /usr/bin/python3 tools/export_resnet18.py OUT_DIR
writes OUT_DIR/resnet18_traced.pt and OUT_DIR/resnet18_scripted.pt (input [N,3,224,224]).
"""
import os
import sys

import torch
import torchvision


def build():
    """The benchmark/test ResNet-18: seeded random weights and BatchNorm statistics, eval mode."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    # Random BatchNorm statistics, so that eval-mode BN is not the identity.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def export(out):
    os.makedirs(out, exist_ok=True)
    model = build()
    torch.jit.trace(model, torch.randn(1, 3, 224, 224)).save(os.path.join(out, "resnet18_traced.pt"))
    torch.jit.script(model).save(os.path.join(out, "resnet18_scripted.pt"))


def main():
    export(sys.argv[1] if len(sys.argv) > 1 else ".")


if __name__ == "__main__":
    main()
