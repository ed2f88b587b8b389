#!/usr/bin/env python3
"""Independent reference values for Salient's layer capture and CAM tests, computed on eager
PyTorch models with module hooks (what Captum and pytorch-grad-cam do), and the same models
exported to TorchScript (traced and scripted) for Salient to load.

    /usr/bin/python3 tools/layer_reference.py OUT_DIR

Writes into OUT_DIR:
  resnet18_traced.pt, resnet18_scripted.pt   torchvision ResNet-18, random seeded weights
  resnet_input.npy [2,3,224,224], resnet_targets.npy [2]
  resnet_gradcam_layer4.npy [2,7,7]          Grad-CAM on layer4 (ReLU'd, layer resolution)
  resnet_<layer>_act.npy / _grad.npy         activation and gradient at the module's last call,
                                             for layer4.1.bn2 (followed by an in-place add_) and
                                             layer4.1.relu (a module called twice)
  demo_input.npy [2,1,28,28], demo_targets.npy, demo_gradcam_conv2.npy [2,14,14]
  fashion_cnn.onnx                           the demo CNN exported with torch.onnx.export
"""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import export_resnet18  # noqa: E402
from reference_common import demo_model, seeded_inputs  # noqa: E402


def capture(model, module, x, targets):
    """Activation and d score / d activation at the module's last call. The hook returns a clone
    for the rest of the network to use, so in-place ops downstream cannot alter the saved value,
    and each call overwrites the previous one (the last call wins)."""
    saved = {}

    def hook(_m, _inp, out):
        saved["act"] = out
        return out.clone()

    h = module.register_forward_hook(hook)
    x = x.clone().requires_grad_(True)
    out = model(x)
    h.remove()
    score = out.gather(1, targets.view(-1, 1)).sum()
    grad, = torch.autograd.grad(score, saved["act"])
    return saved["act"].detach(), grad.detach()


def grad_cam(act, grad):
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * act).sum(1))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)

    export_resnet18.export(out)
    model = export_resnet18.build()  # seeds the generator itself
    x, targets = seeded_inputs(out, "resnet", model, (2, 3, 224, 224), None)
    act, grad = capture(model, model.layer4, x, targets)
    np.save(os.path.join(out, "resnet_gradcam_layer4.npy"), grad_cam(act, grad).numpy())
    for name in ("layer4.1.bn2", "layer4.1.relu"):
        act, grad = capture(model, model.get_submodule(name), x, targets)
        np.save(os.path.join(out, f"resnet_{name}_act.npy"), act.numpy())
        np.save(os.path.join(out, f"resnet_{name}_grad.npy"), grad.numpy())

    demo = demo_model()
    x, targets = seeded_inputs(out, "demo", demo, (2, 1, 28, 28), 1)
    act, grad = capture(demo, demo.conv2, x, targets)
    np.save(os.path.join(out, "demo_gradcam_conv2.npy"), grad_cam(act, grad).numpy())
    # The same demo CNN as ONNX (dynamic batch), for the OpenCV DNN back end.
    torch.onnx.export(demo, torch.zeros(1, 1, 28, 28), os.path.join(out, "fashion_cnn.onnx"), opset_version=13,
                      input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})


if __name__ == "__main__":
    main()
