#!/usr/bin/env python3
"""Turns salient_bench's JSON (and peak-memory figures) into the ratios the README reports."""
import json
import sys


def main():
    # Medians over the repetitions (run with --benchmark_enable_random_interleaving).
    runs = {b["run_name"].split("/iterations")[0]: b
            for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"}
    mem = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}

    def t(name):
        return runs[name]["real_time"]  # ms

    print("| model | ratio | value |")
    print("|---|---|---|")
    for model in ("demo", "resnet18"):
        if f"{model}/saliency" not in runs:
            continue
        label = "demo CNN 28x28" if model == "demo" else "ResNet-18 224x224"
        f1, f50 = t(f"{model}/floor_fwd_bwd/1"), t(f"{model}/floor_fwd_bwd/50")
        rows = [
            ("Saliency / one forward+backward of batch 1", t(f"{model}/saliency") / f1),
            ("SmoothGrad-50, --batch-size 50 / one forward+backward of batch 50", t(f"{model}/smoothgrad50/batch50") / f50),
            ("SmoothGrad-50, --batch-size 10 (default) / one forward+backward of batch 50", t(f"{model}/smoothgrad50/batch10") / f50),
            ("SmoothGrad-50, --batch-size 5 / same floor", t(f"{model}/smoothgrad50/batch5") / f50),
            ("SmoothGrad-50, --batch-size 25 / same floor", t(f"{model}/smoothgrad50/batch25") / f50),
            ("Integrated Gradients 50 steps, --batch-size 50 / one forward+backward of batch 50", t(f"{model}/ig50/batch50") / f50),
            ("Integrated Gradients 50 steps, --batch-size 10 (default) / same floor", t(f"{model}/ig50/batch10") / f50),
            ("Grad-CAM / one forward+backward of batch 1", t(f"{model}/grad-cam") / f1),
            ("Guided Backprop / one forward+backward of batch 1", t(f"{model}/guided-backprop") / f1),
            ("LRP composite=epsilon (Captum's rules) / one forward+backward of batch 1", t(f"{model}/lrp/epsilon") / f1),
            ("LRP composite=epsilon-plus-flat / same floor", t(f"{model}/lrp/epsilon-plus-flat") / f1),
            ("LRP default (epsilon-gamma-box) / same floor", t(f"{model}/lrp/default") / f1),
            ("LRP default with per-layer diagnostics (layers=true) / same floor",
             t(f"{model}/lrp/default-with-layers") / f1),
            ("DeepLIFT / one forward+backward of batch 2 (input and baseline)", t(f"{model}/deeplift") / t(f"{model}/floor_fwd_bwd/2")),
            ("Score-CAM / its forward passes batched (1 + channels/32)", t(f"{model}/score-cam") / t(f"{model}/score-cam-floor")),
            ("Occlusion (auto window) / its forward passes batched (32)", t(f"{model}/occlusion") / t(f"{model}/occlusion-floor")),
            ("RISE / its forward passes batched (32)", t(f"{model}/rise") / t(f"{model}/rise-floor")),
            ("frozen + optimize_for_inference forward / plain forward (256 inputs, batches of 32)",
             t(f"{model}/forward256/frozen") / t(f"{model}/forward256/plain")),
            ("CPU time / wall time, SmoothGrad-50 (2 threads)", runs[f"{model}/smoothgrad50/batch10"]["cpu_per_wall"]),
        ]
        for name, v in rows:
            print(f"| {label} | {name} | {v:.3f} |")
        print(f"| {label} | floor: forward+backward batch 1 / batch 50 (ms) | {f1:.1f} / {f50:.1f} |")
        if f"{model}/forward256/onnx" in runs:
            print(f"| {label} | ONNX through OpenCV DNN forward / TorchScript forward (256 inputs, batches of 32) "
                  f"| {t(f'{model}/forward256/onnx') / t(f'{model}/forward256/plain'):.3f} |")
    if mem:
        print(f"| ResNet-18 224x224 | peak RSS of `salient explain` SmoothGrad-50, --batch-size 10 / 50 (MB) "
              f"| {mem['10'] / 1024:.0f} / {mem['50'] / 1024:.0f} (ratio {mem['10'] / mem['50']:.2f}) |")


if __name__ == "__main__":
    main()
