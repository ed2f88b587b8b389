#!/usr/bin/env python3
"""The model types users bring, with seeded random weights, and independent eager-PyTorch values
for Salient's tests on them (issue: no silently wrong map). Nothing is downloaded.

    /usr/bin/python3 tools/zoo_models.py OUT_DIR

Writes into OUT_DIR:
  mobilenet_v3_small.pt (+ .json)   traced torchvision MobileNetV3-small, 3x96x96 input (its SE
                                    gates, hardswish, in-place dropout); zoo_probe.npy [2,3,96,96]
                                    and mobilenet_logits.npy, eager logits of the probe
  efficientnet_b0.pt                traced torchvision EfficientNet-B0, 3x64x64 (SiLU, SE gates,
                                    Dropout(inplace=True), stochastic depth)
  vit_tiny.pt                       scripted torchvision VisionTransformer, 3x32x32, patch 8, 2 blocks
  token_net.pt                      scripted patch embedding + nn.TransformerEncoderLayer, 3x32x32
  logreg.pt (+ .json)               logistic regression with a sigmoid head, 6 features;
                                    logreg_w.npy, logreg_b.npy its weights
  softmax_reg.pt                    Linear(6, 3) + softmax: a probability head; softmax_w.npy [3, 6]
  linear_head.pt                    MLP 6 -> 8 -> 3 (layer "fc1": [N, C] activations)
  se_block.pt                       conv -> ReLU -> squeeze-and-excitation gate -> pool -> linear,
                                    no biases; se_input.npy [2,2,8,8], se_targets.npy,
                                    se_lrp0.npy (gradient x input with the gate held constant: LRP-0
                                    with signal-take-all), se_deeplift.npy (Captum-style rescale,
                                    gate held constant, zero baseline)
  pool1d.pt                         Captum's test_lin_maxpool_lin_classification model (MaxPool1d)
  pool3d.pt, adaptivemax.pt         a MaxPool3d and an AdaptiveMaxPool2d network; pool_input*.npy,
                                    pool_deeplift*.npy (Captum-style rescale and max-pool rules)
  bag_mean.pt, bag_sum.pt,          nn.EmbeddingBag(12, 5) (mode mean with padding_idx 0, mode sum
  bag_max.pt                        without: scripted; mode max with padding_idx 0: traced) -> tanh
                                    -> Linear(5, 3), on token ids;
                                    bag_ids.npy [2, 8] (the second row padded), bag_targets_*.npy,
                                    bag_ig_*.npy: eager IG per token (Gauss-Legendre, 50 nodes) at the
                                    bag's per-token vectors, from the pad baseline (cls/sep kept);
                                    bag_offsets.pt: the bag called on flat ids with offsets
  text_transformer.pt               scripted token + position nn.Embedding, 2 nn.TransformerEncoder
                                    layers with a key-padding mask (PyTorch's nested-tensor fast
                                    path), masked mean, Linear: forward(ids, mask), vocabulary 12
  two_input.pt                      forward(a, b) = linear(a) * linear(b) summed to 2 classes;
                                    two_a.npy, two_b.npy [3,4], two_grad_a.npy, two_grad_b.npy
  dict_input.pt                     scripted forward(x: Dict[str, Tensor]) = Linear(cat(x["image"],
                                    x["meta"])) on 2 classes, with an int64 x["ids"] entry ignored
                                    but for its dtype check; dict_image.npy [3,4], dict_meta.npy
                                    [3,2], dict_ids.npy [3,1] int64, dict_weight.npy [2,6]
  nms.pt                            scripted: x * (1 on the boxes torchvision.ops.nms keeps of 5
                                    fixed boxes scored by x[0]); needs torchvision's operators
                                    library; nms_input.npy [1,5], nms_output.npy (eager)
  linear_detector.pt (+ .json)      scripted, torchvision's detector layout (List[Tensor] in,
                                    (losses, List[Dict]) out) with scores linear in the image:
                                    linear_detector_w.npy [3,3,16,16] (each box's weights),
                                    linear_detector_image.npy [1,3,16,16]
  tiny_yolo.pt, tiny_yolo.onnx      a YOLOv5-layout head [N, 16, 4+1+3] (cxcywh pixels, sigmoid
                                    scores) on 3x32x32, traced and exported to ONNX (one
                                    tiny_yolo.json beside both); tiny_yolo_image.npy
  tv_frcnn.pt, tv_retinanet.pt,     torchvision's FasterRCNN, RetinaNet and FCOS on a tiny backbone,
  tv_fcos.pt (+ .json)              scripted; on tv_image.npy [1,3,48,64] their eager detections
                                    (tv_NAME_boxes/scores/labels.npy) and the eager gradient of
                                    detection 0's D-RISE similarity (tv_NAME_grad0.npy)
  resnet18.onnx                     ResNet-18 (export_resnet18.build's weights) exported to ONNX
                                    at 3x64x64 with Identity nodes fed by initializers (which
                                    OpenCV 4.6 rejects); resnet18_64.pt the same model traced
"""
import json
import os
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def save(out, name, array):
    np.save(os.path.join(out, name), np.ascontiguousarray(array, dtype=np.float32))


def meta(out, name, **fields):
    with open(os.path.join(out, name), "w") as f:
        json.dump(fields, f)


# ---- DeepLIFT (rescale), Captum's multipliers, on [inputs; baselines] batches ----

class Rescale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fn):
        y = fn(x)
        ctx.save_for_backward(x, y)
        ctx.fn = fn
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        n = x.shape[0] // 2
        dx, dy = x[:n] - x[n:], y[:n] - y[n:]
        with torch.enable_grad():
            xx = x[:n].detach().requires_grad_(True)
            local, = torch.autograd.grad(ctx.fn(xx).sum(), xx)
        m = torch.where(dx.abs() < 1e-10, local, dy / torch.where(dx.abs() < 1e-10, torch.ones_like(dx), dx))
        return g * torch.cat([m, m]), None


class MaxPoolDelta(torch.autograd.Function):
    """Captum's max-pool rule for any pooling function `pool`."""
    @staticmethod
    def forward(ctx, x, pool):
        y = pool(x)
        ctx.save_for_backward(x, y)
        ctx.pool = pool
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        n = x.shape[0] // 2
        pool = ctx.pool

        def unpool(v, at):
            with torch.enable_grad():
                a = at.detach().requires_grad_(True)
                r, = torch.autograd.grad(pool(a), a, v)
            return r
        x1, x0, y1, y0, g1 = x[:n], x[n:], y[:n], y[n:], g[:n]
        top = torch.max(y1, y0)
        delta = unpool(g1 * (top - y0), x1) + unpool(g1 * (y1 - top), x0)
        dx = x1 - x0
        m = torch.where(dx.abs() < 1e-10, unpool(g1, x1), delta / torch.where(dx.abs() < 1e-10, torch.ones_like(dx), dx))
        return torch.cat([m, torch.zeros_like(m)]), None


def deeplift(model, x, targets, baseline=None):
    base = torch.zeros_like(x) if baseline is None else baseline
    both = torch.cat([x, base]).requires_grad_(True)
    out = model(both)
    n = x.shape[0]
    grad, = torch.autograd.grad(out[:n].gather(1, targets.view(-1, 1)).sum(), both)
    return (grad[:n] * (x - base)).detach()


# ---- Models ----

class SEBlock(nn.Module):
    """A bias-free CNN with a squeeze-and-excitation gate; `dl` switches the eager reference rules on
    (rescale ReLUs/sigmoids, the gate held constant), `hold_gate` only holds the gate."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.fc1 = nn.Linear(4, 2, bias=False)
        self.fc2 = nn.Linear(2, 4, bias=False)
        self.head = nn.Linear(4, 3, bias=False)
        self.dl = False
        self.hold_gate = False

    def act(self, fn, t):
        return Rescale.apply(t, fn) if self.dl else fn(t)

    def forward(self, x):
        h = self.act(F.relu, self.conv(x))
        s = h.mean((2, 3))
        s = self.act(F.relu, self.fc1(s))
        gate = self.act(torch.sigmoid, self.fc2(s)).view(-1, 4, 1, 1)
        if self.hold_gate or self.dl:
            gate = gate.detach()
        h = h * gate
        return self.head(h.mean((2, 3)))


class Pool1d(nn.Module):
    """Captum's BasicModel_MaxPool_ReLU-like test model: linear -> maxpool1d -> linear."""
    def __init__(self):
        super().__init__()
        self.lin1 = nn.Linear(4, 4, bias=False)
        self.lin2 = nn.Linear(2, 1, bias=False)
        self.dl = False

    def forward(self, x):
        h = self.lin1(x).unsqueeze(1)
        pool = lambda t: F.max_pool1d(t, 2)
        h = MaxPoolDelta.apply(h, pool) if self.dl else pool(h)
        return self.lin2(h.squeeze(1))


class ConvPool(nn.Module):
    """conv -> ReLU -> a max pool (`pool`, any rank, plain or adaptive) -> linear; `dl` switches the
    eager reference rules on."""
    def __init__(self, conv, pool, features):
        super().__init__()
        self.conv = conv
        self.pool = pool
        self.fc = nn.Linear(features, 3)
        self.dl = False

    def forward(self, x):
        h = self.conv(x)
        h = Rescale.apply(h, F.relu) if self.dl else F.relu(h)
        h = MaxPoolDelta.apply(h, self.pool) if self.dl else self.pool(h)
        return self.fc(h.flatten(1))


class TokenNet(nn.Module):
    """Patch embedding, one scripted nn.TransformerEncoderLayer (batch first), mean of the tokens."""
    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 8, stride=8)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True), 1)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.encoder(t).mean(1))


class BagNet(nn.Module):
    """A fastText-style classifier: the tokens' vectors pooled by an nn.EmbeddingBag."""
    def __init__(self, mode, padding_idx):
        super().__init__()
        self.bag = nn.EmbeddingBag(12, 5, mode=mode, padding_idx=padding_idx)
        self.fc = nn.Linear(5, 3)

    def forward(self, ids):
        return self.fc(torch.tanh(self.bag(ids)))

    def on_tokens(self, e, ids):
        """The same model on per-token vectors e [M, L, D] of ids [1, L]: the bag's pooling by hand."""
        keep = torch.ones_like(ids, dtype=e.dtype) if self.bag.padding_idx is None else (ids != self.bag.padding_idx).to(e.dtype)
        if self.bag.mode == "max":
            pooled = e.masked_fill(keep.unsqueeze(2) == 0, float("-inf")).amax(1)
            return self.fc(torch.tanh(pooled))
        pooled = (e * keep.unsqueeze(2)).sum(1)
        if self.bag.mode == "mean":
            pooled = pooled / keep.sum(1, keepdim=True).clamp(min=1)
        return self.fc(torch.tanh(pooled))


class BagOffsets(BagNet):
    """The bag called on the flattened ids with offsets: no [N, L] per-token view to replace."""
    def forward(self, ids):
        offsets = torch.arange(0, ids.numel(), ids.size(1), device=ids.device)
        return self.fc(torch.tanh(self.bag(ids.flatten(), offsets)))


class TextTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(12, 32, padding_idx=0)
        self.pos = nn.Embedding(32, 32)
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True), 2)
        self.head = nn.Linear(32, 3)

    def forward(self, ids, mask):
        p = torch.arange(ids.size(1), device=ids.device).unsqueeze(0).expand(ids.size(0), -1)
        h = self.enc(self.tok(ids) + self.pos(p), src_key_padding_mask=(mask == 0))
        m = mask.unsqueeze(2).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1).clamp(min=1))


class NoGradTransformer(nn.Module):
    """The usual export of a transformer: traced under torch.no_grad(), which bakes in PyTorch's fused
    inference op aten::_transformer_encoder_layer_fwd (no derivative). On token ids, or on float
    sequences [N, 6, 16] (`ids=False`)."""
    def __init__(self, ids=True):
        super().__init__()
        self.ids = ids
        self.tok = nn.Embedding(12, 16)
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), 2)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.enc(self.tok(x) if self.ids else x).mean(1))


def bag_ig(model, ids, target, steps=50):
    """IG per token at the bag's per-token vectors, eager, from the pad baseline (ids 0, 2, 3 kept)."""
    base = torch.where((ids == 0) | (ids == 2) | (ids == 3), ids, torch.zeros_like(ids))
    w = model.bag.weight.detach()
    e, e0 = w[ids], w[base]                      # [1, L, D]
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.tensor((nodes + 1) / 2, dtype=torch.float64)
    total = torch.zeros_like(e, dtype=torch.float64)
    for a, wt in zip(alphas, weights / 2):
        p = (e0 + a.float() * (e - e0)).requires_grad_(True)
        g, = torch.autograd.grad(model.on_tokens(p, ids)[0, target], p)
        total += wt * g.double()
    return ((e - e0).double() * total).sum(2)[0]  # [L]


class TwoInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.la = nn.Linear(4, 2)
        self.lb = nn.Linear(4, 2)

    def forward(self, a, b):
        return self.la(a) * torch.tanh(self.lb(b))


class DictInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 2, bias=False)

    def forward(self, x: Dict[str, torch.Tensor]):
        if x["ids"].dtype != torch.int64:
            raise ValueError("ids must be int64")
        return self.lin(torch.cat([x["image"], x["meta"]], 1))


class NmsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("boxes", torch.tensor([[0., 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [21, 20, 31, 30], [50, 50, 60, 60]]))

    def forward(self, x):
        keep = torchvision.ops.nms(self.boxes, x[0], 0.5)
        return x * torch.zeros(5).index_fill(0, keep, 1.0)


class LinearDetector(nn.Module):
    """torchvision's detector layout with a closed form: forward(images: List[Tensor], targets=None)
    returns (losses, [{boxes, labels, scores}]) per image: three fixed boxes, scores linear in the
    image (score_d = bias_d + <w_d, image>). Boxes 0 (class 1) and 1 (class 2) overlap; box 2
    (class 1, overlapping neither) is dropped while its score is below 0 (it vanishes on a black image)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.randn(3, 3, 16, 16) * 0.01)
        self.w[2] = torch.rand(3, 16, 16) * 0.02
        self.register_buffer("bias", torch.tensor([5.0, 5.0, -2.5]))
        self.register_buffer("boxes", torch.tensor([[2., 2, 10, 10], [4, 4, 12, 12], [11, 0, 16, 4]]))
        self.register_buffer("labels", torch.tensor([1, 2, 1]))

    def forward(self, images: List[torch.Tensor], targets: Optional[List[Dict[str, torch.Tensor]]] = None
                ) -> Tuple[Dict[str, torch.Tensor], List[Dict[str, torch.Tensor]]]:
        out: List[Dict[str, torch.Tensor]] = []
        for img in images:
            scores = self.bias + (self.w * img.unsqueeze(0)).sum([1, 2, 3])
            keep = (scores >= 0).nonzero().view(-1)
            out.append({"boxes": self.boxes[keep], "labels": self.labels[keep], "scores": scores[keep]})
        losses: Dict[str, torch.Tensor] = {}
        return losses, out


class TinyYolo(nn.Module):
    """A YOLOv5-layout head: [N, A, 4 + 1 + C] (cx, cy, w, h in pixels, objectness, class
    probabilities) over a 4x4 grid of anchors on a 3x32x32 image, from two small convolutions."""

    def __init__(self, classes=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))
        self.head = nn.Conv2d(16, 5 + classes, 1)
        gy, gx = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
        self.register_buffer("centres", torch.stack([gx, gy]).unsqueeze(0) * 8 + 4)  # [1, 2, 4, 4]

    def forward(self, x):
        # Decoded in [N, C, H, W] (OpenCV DNN 4.6 cannot broadcast a constant over [N, A, K])
        p = self.head(self.features(x))
        xy = self.centres + (torch.sigmoid(p[:, 0:2]) - 0.5) * 8
        wh = 6 + 10 * torch.sigmoid(p[:, 2:4])
        return torch.cat([xy, wh, torch.sigmoid(p[:, 4:])], 1).flatten(2).transpose(1, 2)  # [N, 16, 5 + C]


class TinyBackbone(nn.Sequential):
    """Two stride-2 convolutions: a backbone small enough for torchvision's detectors in tests."""

    def __init__(self):
        super().__init__(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 32, 3, stride=2, padding=1), nn.ReLU())
        self.out_channels = 32


def torchvision_detectors():
    """torchvision's FasterRCNN (RPN, RoIAlign, NMS), RetinaNet and FCOS on a tiny backbone, 64-px
    inputs, every detection kept (score_thresh 0), scripted as users script them."""
    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign
    anchors = AnchorGenerator(sizes=((8, 16, 32),), aspect_ratios=((0.5, 1.0, 2.0),))
    common = dict(min_size=64, max_size=64)
    frcnn = FasterRCNN(TinyBackbone(), num_classes=3, rpn_anchor_generator=anchors,
                       box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=4, sampling_ratio=2),
                       rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, box_detections_per_img=10,
                       box_score_thresh=0.0, representation_size=32, **common)
    with torch.no_grad():  # scores spread out, not all ~1/3
        frcnn.roi_heads.box_predictor.cls_score.weight.mul_(30)
    retina = RetinaNet(TinyBackbone(), num_classes=3, anchor_generator=anchors, detections_per_img=10, score_thresh=0.0,
                       topk_candidates=50, **common)
    fcos = FCOS(TinyBackbone(), num_classes=3, anchor_generator=AnchorGenerator(sizes=((8,),), aspect_ratios=((1.0,),)),
                detections_per_img=10, score_thresh=0.0, topk_candidates=50, **common)
    return {"frcnn": frcnn.eval(), "retinanet": retina.eval(), "fcos": fcos.eval()}


def box_similarity(det, ref_box, ref_label):
    """D-RISE's similarity of the best match, written as Salient computes it (torchvision: one-hot
    classes, the score as objectness)."""
    b = det["boxes"]
    lt = torch.max(b[:, :2].unsqueeze(1), ref_box[:2].view(1, 1, 2))
    rb = torch.min(b[:, 2:].unsqueeze(1), ref_box[2:].view(1, 1, 2))
    wh = (rb - lt).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: (x[:, 2] - x[:, 0]).clamp_min(0) * (x[:, 3] - x[:, 1]).clamp_min(0)
    uni = area(b).unsqueeze(1) + area(ref_box.view(1, 4)).unsqueeze(0) - inter
    iou = torch.where(uni > 0, inter / uni.clamp_min(1e-12), torch.zeros_like(inter)).squeeze(1)
    return (iou * (det["labels"] == ref_label).to(iou.dtype) * det["scores"]).max()


def random_bn(model):
    """Random BatchNorm statistics and affine terms, so that eval-mode BN is not the identity and
    the logits are not all ~0 (as torchvision's fresh initialisation leaves them)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model


def trace(model, example, path):
    torch.jit.trace(model.eval(), example).save(path)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)

    torch.manual_seed(0)
    mnv3 = random_bn(torchvision.models.mobilenet_v3_small(weights=None).eval())
    probe = torch.randn(2, 3, 96, 96)
    trace(mnv3, probe, os.path.join(out, "mobilenet_v3_small.pt"))
    with torch.no_grad():
        save(out, "mobilenet_logits.npy", mnv3(probe).numpy())
    save(out, "zoo_probe.npy", probe.numpy())
    meta(out, "mobilenet_v3_small.json", labels=[f"class {i}" for i in range(1000)], input_shape=[3, 96, 96],
         mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])

    torch.manual_seed(1)
    eff = random_bn(torchvision.models.efficientnet_b0(weights=None).eval())
    trace(eff, torch.randn(1, 3, 64, 64), os.path.join(out, "efficientnet_b0.pt"))

    torch.manual_seed(2)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                               hidden_dim=32, mlp_dim=64, num_classes=5).eval()
    with torch.no_grad():  # torchvision zeroes the head: a constant output explains nothing
        vit.heads.head.weight.normal_(0, 0.5)
    torch.jit.script(vit).save(os.path.join(out, "vit_tiny.pt"))
    torch.jit.script(TokenNet().eval()).save(os.path.join(out, "token_net.pt"))

    torch.manual_seed(3)
    logreg = nn.Sequential(nn.Linear(6, 1), nn.Sigmoid()).eval()
    trace(logreg, torch.randn(1, 6), os.path.join(out, "logreg.pt"))
    save(out, "logreg_w.npy", logreg[0].weight.detach().numpy().reshape(-1))
    save(out, "logreg_b.npy", logreg[0].bias.detach().numpy())
    meta(out, "logreg.json", input_shape=[6], output="probabilities")
    softreg = nn.Sequential(nn.Linear(6, 3), nn.Softmax(dim=1)).eval()
    trace(softreg, torch.randn(1, 6), os.path.join(out, "softmax_reg.pt"))
    save(out, "softmax_w.npy", softreg[0].weight.detach().numpy())
    mlp = nn.Sequential()
    mlp.add_module("fc1", nn.Linear(6, 8))
    mlp.add_module("relu", nn.ReLU())
    mlp.add_module("fc2", nn.Linear(8, 3))
    trace(mlp.eval(), torch.randn(1, 6), os.path.join(out, "linear_head.pt"))

    torch.manual_seed(4)
    se = SEBlock().eval()
    trace(se, torch.randn(1, 2, 8, 8), os.path.join(out, "se_block.pt"))
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        targets = se(x).argmax(1)
    save(out, "se_input.npy", x.numpy())
    save(out, "se_targets.npy", targets.numpy())
    se.hold_gate = True
    xg = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(se(xg).gather(1, targets.view(-1, 1)).sum(), xg)
    save(out, "se_lrp0.npy", (g * x).numpy())
    se.hold_gate, se.dl = False, True
    save(out, "se_deeplift.npy", deeplift(se, x, targets).numpy())

    torch.manual_seed(5)
    pool3d = ConvPool(nn.Conv3d(1, 2, 3, padding=1), lambda t: F.max_pool3d(t, 2), 2 * 2 * 2 * 2)
    adaptive = ConvPool(nn.Conv2d(1, 2, 3), lambda t: F.adaptive_max_pool2d(t, 3), 2 * 3 * 3)
    for name, model, shape in (("pool1d", Pool1d(), (3, 4)), ("pool3d", pool3d, (2, 1, 4, 4, 4)),
                               ("adaptivemax", adaptive, (2, 1, 8, 8))):
        model.eval()
        x = torch.randn(*shape)
        trace(model, x, os.path.join(out, name + ".pt"))
        with torch.no_grad():
            targets = model(x).argmax(1)
        model.dl = True
        save(out, f"pool_input_{name}.npy", x.numpy())
        save(out, f"pool_targets_{name}.npy", targets.numpy())
        save(out, f"pool_deeplift_{name}.npy", deeplift(model, x, targets).numpy())

    torch.manual_seed(6)
    two = TwoInput().eval()
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    trace(two, (a, b), os.path.join(out, "two_input.pt"))
    aa, bb = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    y = two(aa, bb)
    ga, gb = torch.autograd.grad(y.gather(1, y.argmax(1, keepdim=True)).sum(), (aa, bb))
    save(out, "two_a.npy", a.numpy())
    save(out, "two_b.npy", b.numpy())
    save(out, "two_grad_a.npy", ga.numpy())
    save(out, "two_grad_b.npy", gb.numpy())

    torch.manual_seed(8)
    d = torch.jit.script(DictInput().eval())
    d.save(os.path.join(out, "dict_input.pt"))
    save(out, "dict_image.npy", torch.randn(3, 4).numpy())
    save(out, "dict_meta.npy", torch.randn(3, 2).numpy())
    np.save(os.path.join(out, "dict_ids.npy"), torch.randint(0, 5, (3, 1)).numpy().astype(np.int64))
    save(out, "dict_weight.npy", d.lin.weight.detach().numpy())

    nms = torch.jit.script(NmsNet().eval())
    nms.save(os.path.join(out, "nms.pt"))
    nms_x = torch.tensor([[0.9, 0.8, 0.3, 0.7, 0.1]])
    save(out, "nms_input.npy", nms_x.numpy())
    save(out, "nms_output.npy", nms(nms_x).numpy())

    torch.manual_seed(11)
    det = torch.jit.script(LinearDetector().eval())
    det.save(os.path.join(out, "linear_detector.pt"))
    meta(out, "linear_detector.json", modality="detection", labels=["background", "car", "person"],
         detection={"format": "torchvision", "score_threshold": 0.25})
    save(out, "linear_detector_w.npy", det.w.numpy())
    save(out, "linear_detector_image.npy", torch.rand(1, 3, 16, 16).numpy())

    torch.manual_seed(12)
    yolo = TinyYolo().eval()
    with torch.no_grad():  # a confident detector: scores spread around the threshold
        yolo.head.weight.mul_(4.0)
        yolo.head.bias[4:] = 0.5
    yx = torch.rand(1, 3, 32, 32)
    trace(yolo, yx, os.path.join(out, "tiny_yolo.pt"))
    torch.onnx.export(yolo, yx, os.path.join(out, "tiny_yolo.onnx"), opset_version=13, input_names=["input"],
                      output_names=["predictions"], dynamic_axes={"input": {0: "batch"}, "predictions": {0: "batch"}})
    meta(out, "tiny_yolo.json", modality="detection", labels=["car", "person", "sign"],  # both files' sidecar
         detection={"format": "yolov5", "box": "cxcywh", "score_threshold": 0.2})
    save(out, "tiny_yolo_image.npy", yx.numpy())

    torch.manual_seed(13)
    tv_x = torch.rand(1, 3, 48, 64)
    save(out, "tv_image.npy", tv_x.numpy())
    for name, det in torchvision_detectors().items():
        scripted = torch.jit.script(det)
        scripted.save(os.path.join(out, f"tv_{name}.pt"))
        meta(out, f"tv_{name}.json", modality="detection", labels=["background", "car", "person"],
             detection={"format": "torchvision", "score_threshold": 0.0, "max_detections": 10})
        x = tv_x[0].clone().requires_grad_(True)
        d = scripted([x])[1][0]
        save(out, f"tv_{name}_boxes.npy", d["boxes"].detach().numpy())
        save(out, f"tv_{name}_scores.npy", d["scores"].detach().numpy())
        np.save(os.path.join(out, f"tv_{name}_labels.npy"), d["labels"].numpy())
        sim = box_similarity(d, d["boxes"][0].detach(), int(d["labels"][0]))
        save(out, f"tv_{name}_grad0.npy", torch.autograd.grad(sim, x)[0].numpy())

    torch.manual_seed(7)
    ids = torch.tensor([[2, 5, 6, 7, 10, 8, 9, 3], [2, 6, 10, 11, 3, 0, 0, 0]])
    save(out, "bag_ids.npy", ids.numpy())
    for mode, padding in (("mean", 0), ("sum", None), ("max", 0)):
        bag = BagNet(mode, padding).eval()
        if mode == "max":  # traced: the bag's mode and padding_idx survive only as its graph's constants
            torch.jit.trace(bag, ids[:1]).save(os.path.join(out, f"bag_{mode}.pt"))
        else:
            torch.jit.script(bag).save(os.path.join(out, f"bag_{mode}.pt"))
        with torch.no_grad():
            targets = bag(ids).argmax(1)
        save(out, f"bag_targets_{mode}.npy", targets.numpy())
        save(out, f"bag_ig_{mode}.npy", torch.stack([bag_ig(bag, ids[i:i + 1], int(targets[i])) for i in range(2)]).numpy())
    torch.jit.script(BagOffsets("mean", 0).eval()).save(os.path.join(out, "bag_offsets.pt"))
    torch.jit.script(TextTransformer().eval()).save(os.path.join(out, "text_transformer.pt"))
    # A toy segmentation: two feature convolutions and a 1x1 head giving 4 class planes [N, 4, 12, 12].
    torch.manual_seed(31)
    seg = nn.Sequential()
    seg.add_module("conv1", nn.Conv2d(1, 6, 3, padding=1))
    seg.add_module("relu1", nn.ReLU())
    seg.add_module("conv2", nn.Conv2d(6, 6, 3, padding=1))
    seg.add_module("relu2", nn.ReLU())
    seg.add_module("head", nn.Conv2d(6, 4, 1))
    trace(seg, torch.rand(1, 1, 12, 12), os.path.join(out, "segmentation.pt"))
    with open(os.path.join(out, "segmentation.json"), "w") as f:
        json.dump({"labels": ["bg", "a", "b", "c"], "input_shape": [1, 12, 12], "channel_order": "L"}, f)
    # What newcomers hand in for TorchScript: torch.save of a state_dict and of a whole module.
    torch.save(nn.Linear(3, 2).state_dict(), os.path.join(out, "torch_save_state_dict.pt"))
    torch.save(nn.Linear(3, 2), os.path.join(out, "torch_save_module.pt"))
    with torch.no_grad():
        for ids, example in ((True, torch.tensor([[2, 5, 6, 7, 3]])), (False, torch.randn(1, 6, 16))):
            traced = torch.jit.trace(NoGradTransformer(ids).eval(), example)
            kinds = {n.kind() for n in traced.inlined_graph.nodes()}
            assert "aten::_transformer_encoder_layer_fwd" in kinds, kinds
            traced.save(os.path.join(out, "nograd_transformer_" + ("ids" if ids else "seq") + ".pt"))

    import export_resnet18
    resnet = export_resnet18.build()
    x = torch.randn(1, 3, 64, 64)
    trace(resnet, x, os.path.join(out, "resnet18_64.pt"))
    # training=PRESERVE makes the exporter emit Identity nodes fed by initializers, which OpenCV 4.6
    # rejects: Salient mends them when it loads the file.
    torch.onnx.export(resnet, x, os.path.join(out, "resnet18.onnx"), opset_version=13,
                      input_names=["input"], output_names=["logits"], training=torch.onnx.TrainingMode.PRESERVE,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    with open(os.path.join(out, "resnet18.onnx"), "rb") as f:
        assert f.read().count(b"Identity") > 0, "the export has no Identity node to mend"


if __name__ == "__main__":
    main()
