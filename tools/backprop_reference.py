#!/usr/bin/env python3
"""Independent eager-PyTorch references for Salient's modified back-propagation tests: Guided
Backprop and Deconvnet with backward hooks on ReLU modules (as Captum does), LRP written layer by
layer in the style of Montavon et al.'s LRP tutorial, DeepLIFT (rescale) with Captum's multipliers,
and a ResNet-18 whose batch norms are folded into its convolutions by torch's own fusion helper.

    /usr/bin/python3 tools/backprop_reference.py OUT_DIR

Writes into OUT_DIR (ResNet-18's weights are those of layer_reference.py's resnet18_traced.pt):
  bp_resnet_input.npy [2,3,224,224], bp_demo_input.npy [2,1,28,28], bp_*_targets.npy
  demo_gbp.npy, demo_deconv.npy             [2,1,28,28] demo CNN (functional relu: replaced by an
                                            autograd function for the pass)
  resnet_gbp.npy, resnet_deconv.npy         [2,3,224,224] ResNet-18 (hooks on its nn.ReLU modules)
  demo_lrp_<composite>.npy                  [2,1,28,28] for epsilon, epsilon-plus, epsilon-plus-flat,
                                            epsilon-gamma-box (z^B bounds from the demo's metadata)
  demo_deeplift.npy                         [2,1,28,28] zero baseline
  resnet18_folded.pt                        traced ResNet-18 with every BatchNorm folded away
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import export_resnet18  # noqa: E402
from reference_common import demo_model, seeded_inputs  # noqa: E402


# ---- Guided Backprop / Deconvnet ----

def relu_hook_gradients(model, x, targets, mode):
    """Input gradient with every nn.ReLU's backward replaced by a hook."""
    handles = []
    for m in model.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
            if mode == "guided":
                handles.append(m.register_full_backward_hook(lambda _m, gin, gout: (gin[0].clamp(min=0),)))
            else:
                handles.append(m.register_full_backward_hook(lambda _m, gin, gout: (gout[0].clamp(min=0),)))
    x = x.clone().requires_grad_(True)
    out = model(x)
    grad, = torch.autograd.grad(out.gather(1, targets.view(-1, 1)).sum(), x)
    for h in handles:
        h.remove()
    return grad.detach()


class _ReluRule(torch.autograd.Function):
    mode = "guided"

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g.clamp(min=0) * (x > 0) if _ReluRule.mode == "guided" else g.clamp(min=0)


def functional_relu_gradients(model, x, targets, mode):
    """The demo CNN calls F.relu, which no module hook sees: it is swapped for the pass."""
    saved = F.relu
    _ReluRule.mode = mode
    F.relu = lambda t, inplace=False: _ReluRule.apply(t)
    try:
        x = x.clone().requires_grad_(True)
        out = model(x)
        grad, = torch.autograd.grad(out.gather(1, targets.view(-1, 1)).sum(), x)
    finally:
        F.relu = saved
    return grad.detach()


# ---- LRP on the demo CNN, layer by layer ----

def stabilize(z, eps):
    return z + eps * ((z >= 0).to(z.dtype) * 2 - 1)


def modified(layer, weight_fn, bias_fn):
    """A copy of a conv/linear layer with rho applied to its parameters."""
    import copy
    new = copy.deepcopy(layer)
    with torch.no_grad():
        new.weight.copy_(weight_fn(layer.weight))
        if layer.bias is not None:
            new.bias.copy_(bias_fn(layer.bias))
    return new


def lrp_demo(model, x, targets, composite, low, high, eps=1e-6):
    relu, pool = torch.nn.ReLU(), torch.nn.MaxPool2d(2)
    flatten = torch.nn.Flatten(1)
    layers = [model.conv1, relu, pool, model.conv2, relu, pool, flatten, model.fc1, relu, model.fc2]
    acts = [x]
    with torch.no_grad():
        for layer in layers:
            acts.append(layer(acts[-1]))
    out = acts[-1]
    R = torch.zeros_like(out)
    R.scatter_(1, targets.view(-1, 1), out.gather(1, targets.view(-1, 1)))
    for i in reversed(range(len(layers))):
        layer = layers[i]
        a = acts[i].clone().requires_grad_(True)
        if layer is relu:
            continue  # relevance passes through
        if layer is flatten:
            R = R.reshape(a.shape)
            continue
        if layer is pool:  # the maximum takes it all: the gradient routes it
            R, = torch.autograd.grad(layer(a), a, R)
            continue
        conv = isinstance(layer, torch.nn.Conv2d)
        rule = "epsilon"
        if i == 0 and composite.endswith("-flat"):
            rule = "flat"
        elif i == 0 and composite == "epsilon-gamma-box":
            rule = "zbox"
        elif conv and composite in ("epsilon-plus", "epsilon-plus-flat"):
            rule = "zplus"
        elif conv and composite == "epsilon-gamma-box":
            rule = "gamma"
        if rule == "epsilon":
            z = layer(a)
            c, = torch.autograd.grad(z, a, R / stabilize(z, eps).detach())
            R = a.detach() * c
        elif rule == "gamma":
            assert a.min() >= 0, "after a ReLU"
            rho = modified(layer, lambda w: w + 0.25 * w.clamp(min=0), lambda b: b + 0.25 * b.clamp(min=0))
            z = rho(a)
            c, = torch.autograd.grad(z, a, R / stabilize(z, 1e-6).detach())
            R = a.detach() * c
        elif rule == "zplus":  # positive contributions: w+ on x+, w- on x-
            ap = a.detach().clamp(min=0).requires_grad_(True)
            an = a.detach().clamp(max=0).requires_grad_(True)
            pos = modified(layer, lambda w: w.clamp(min=0), lambda b: b.clamp(min=0))
            neg = modified(layer, lambda w: w.clamp(max=0), lambda b: b * 0)
            z = pos(ap) + neg(an)
            cp, cn = torch.autograd.grad(z, (ap, an), R / stabilize(z, 1e-6).detach())
            R = ap.detach() * cp + an.detach() * cn
        elif rule == "zbox":
            lo = torch.tensor(low).view(1, -1, 1, 1).expand_as(a).clone().requires_grad_(True)
            hi = torch.tensor(high).view(1, -1, 1, 1).expand_as(a).clone().requires_grad_(True)
            pos = modified(layer, lambda w: w.clamp(min=0), lambda b: b * 0)
            neg = modified(layer, lambda w: w.clamp(max=0), lambda b: b * 0)
            nob = modified(layer, lambda w: w, lambda b: b * 0)
            z = nob(a) - pos(lo) - neg(hi)
            ca, cl, ch = torch.autograd.grad(z, (a, lo, hi), R / stabilize(z, 1e-6).detach())
            R = a.detach() * ca + lo.detach() * cl + hi.detach() * ch
        elif rule == "flat":
            ones = torch.ones_like(a).requires_grad_(True)
            flat = modified(layer, torch.ones_like, lambda b: b * 0)
            z = flat(ones)
            R, = torch.autograd.grad(z, ones, R / stabilize(z, 1e-6).detach())
    return R.detach()


# ---- DeepLIFT (rescale) on the demo CNN, Captum's multipliers ----

class _Rescale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = x.clamp(min=0)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        n = x.shape[0] // 2
        dx, dy = x[:n] - x[n:], y[:n] - y[n:]
        m = torch.where(dx.abs() < 1e-10, (x[:n] > 0).to(g.dtype), dy / dx)
        return g * torch.cat([m, m])


class _MaxPoolDelta(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y, idx = F.max_pool2d_with_indices(x, 2)
        ctx.save_for_backward(x, y, idx)
        return y

    @staticmethod
    def backward(ctx, g):
        x, y, idx = ctx.saved_tensors
        n = x.shape[0] // 2
        size = x.shape[-2:]
        top = torch.max(y[:n], y[n:])
        delta = (F.max_unpool2d(g[:n] * (top - y[n:]), idx[:n], 2, output_size=size)
                 + F.max_unpool2d(g[:n] * (y[:n] - top), idx[n:], 2, output_size=size))
        dx = x[:n] - x[n:]
        grad = F.max_unpool2d(g[:n], idx[:n], 2, output_size=size)
        m = torch.where(dx.abs() < 1e-10, grad, delta / dx)
        return torch.cat([m, torch.zeros_like(m)])


def deeplift_demo(model, x, targets):
    saved_relu, saved_pool = F.relu, F.max_pool2d
    F.relu = lambda t, inplace=False: _Rescale.apply(t)
    F.max_pool2d = lambda t, k, *a, **kw: _MaxPoolDelta.apply(t)
    try:
        base = torch.zeros_like(x)
        both = torch.cat([x, base]).requires_grad_(True)
        out = model(both)
        n = x.shape[0]
        score = out[:n].gather(1, targets.view(-1, 1)).sum()
        grad, = torch.autograd.grad(score, both)
    finally:
        F.relu, F.max_pool2d = saved_relu, saved_pool
    return (grad[:n] * (x - base)).detach()


# ---- ResNet-18 with its batch norms folded by torch ----

def folded_resnet(model):
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    import copy
    m = copy.deepcopy(model)
    pairs = [("conv1", "bn1")]
    for name, mod in m.named_modules():
        if hasattr(mod, "conv1") and hasattr(mod, "bn2"):
            pairs += [(f"{name}.conv1", f"{name}.bn1"), (f"{name}.conv2", f"{name}.bn2")]
            if mod.downsample is not None:
                pairs.append((f"{name}.downsample.0", f"{name}.downsample.1"))
    for conv_name, bn_name in pairs:
        conv, bn = m.get_submodule(conv_name), m.get_submodule(bn_name)
        fused = fuse_conv_bn_eval(conv, bn)
        parent, _, leaf = conv_name.rpartition(".")
        setattr(m.get_submodule(parent) if parent else m, leaf, fused)
        parent, _, leaf = bn_name.rpartition(".")
        setattr(m.get_submodule(parent) if parent else m, leaf, torch.nn.Identity())
    return m


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)

    model = export_resnet18.build()  # the weights of layer_reference.py's resnet18_traced.pt
    x, targets = seeded_inputs(out, "bp_resnet", model, (2, 3, 224, 224), 2)
    for mode in ("guided", "deconv"):
        np.save(os.path.join(out, f"resnet_{'gbp' if mode == 'guided' else 'deconv'}.npy"),
                relu_hook_gradients(export_resnet18.build(), x, targets, mode).numpy())
    folded = folded_resnet(model).eval()
    with torch.no_grad():
        gap = (folded(x) - model(x)).abs().max().item()
    assert gap < 1e-4, gap
    torch.jit.trace(folded, torch.randn(1, 3, 224, 224)).save(os.path.join(out, "resnet18_folded.pt"))

    demo = demo_model()
    x, targets = seeded_inputs(out, "bp_demo", demo, (2, 1, 28, 28), 3)
    np.save(os.path.join(out, "demo_gbp.npy"), functional_relu_gradients(demo, x, targets, "guided").numpy())
    np.save(os.path.join(out, "demo_deconv.npy"), functional_relu_gradients(demo, x, targets, "deconv").numpy())
    with open(os.path.join(HERE, "..", "models", "fashion_cnn.json")) as f:
        meta = json.load(f)
    low = [(meta["value_range"][0] - m) / s for m, s in zip(meta["mean"], meta["std"])]
    high = [(meta["value_range"][1] - m) / s for m, s in zip(meta["mean"], meta["std"])]
    for composite in ("epsilon", "epsilon-plus", "epsilon-plus-flat", "epsilon-gamma-box"):
        np.save(os.path.join(out, f"demo_lrp_{composite}.npy"), lrp_demo(demo, x, targets, composite, low, high).numpy())
    np.save(os.path.join(out, "demo_deeplift.npy"), deeplift_demo(demo, x, targets).numpy())


if __name__ == "__main__":
    main()
