#!/usr/bin/env python3
"""Fuzzes the salient CLI with mutated inputs, as an attacker would feed a server, from a fixed seed.

    /usr/bin/python3 tools/fuzz_inputs.py SALIENT_BIN DEMO_MODEL OUT_DIR [--images 300] [--models 30]

Makes mutated PNG, JPEG and .npy files (bit flips, overwritten and inserted bytes, truncations,
absurd header fields: huge dimensions, 40k-character header fields) from the demo's samples, and
mutated copies of the demo model (truncated archives, flipped bytes, storages cut short), then runs
`salient explain` on each. Every run must end with exit 0, or exit 2 and one line `error: ...` on
stderr; never a signal, an exit 1 or a hang (10 s each); peak memory (RSS) stays under --max-rss-mb.
Prints one line per failure and ends with the line `N passed, M failed`; exits 1 on any failure.
"""
import argparse
import copy
import io
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torchvision.io as tvio

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, "..", "models", "samples")


def mutate(data, rng):
    b = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:  # flip bits
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # overwrite a run with random bytes
        i = rng.randrange(len(b))
        for j in range(i, min(len(b), i + rng.randint(1, 64))):
            b[j] = rng.randrange(256)
    elif kind == 2:  # truncate
        b = b[:rng.randrange(1, len(b))]
    elif kind == 3:  # insert random bytes
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 256)))
    elif kind == 4:  # overwrite header bytes with extremes
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(min(len(b), 64))
            b[i] = rng.choice([0x00, 0xFF, 0x7F, 0x80])
    else:  # duplicate a chunk
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        b[j:j] = b[i:j][:4096]
    return bytes(b)


def png_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def jpeg_bytes(path):
    img = tvio.read_image(path)
    return bytes(tvio.encode_jpeg(img, quality=90).numpy().tobytes())


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def absurd_cases():
    """Hand-made hostile files: (name, bytes)."""
    out = []
    arr = np.zeros((1, 1, 28, 28), np.float32)
    good = npy_bytes(arr)
    header_len = struct.unpack("<H", good[8:10])[0]
    body = good[10 + header_len:]
    for name, header in [
        ("npy-long-field", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 28, 28), 'x': '" + "a" * 40000 + "', }"),
        ("npy-20-digit-dim", "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 1, 28, 28), }"),
        ("npy-overflow", "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 28, 28), }"),
        ("npy-negative", "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 1, 28, 28), }"),
        ("npy-nested", "{'descr': '<f4', 'fortran_order': False, 'shape': ((((((((1, 1, 28, 28), }"),
    ]:
        h = header.encode()
        out.append((name + ".npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", len(h)) + h + body))
    # A PNG declaring 30000x30000 (the IHDR says so; the data is tiny) and a JPEG doing the same.
    png = bytearray(png_bytes(os.path.join(SAMPLES, "7-sneaker.png")))
    png[16:24] = struct.pack(">II", 30000, 30000)
    out.append(("png-bomb.png", bytes(png)))
    jpg = bytearray(jpeg_bytes(os.path.join(SAMPLES, "7-sneaker.png")))
    i = 2
    while i + 9 < len(jpg):
        marker = jpg[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            jpg[i + 5:i + 9] = struct.pack(">HH", 30000, 30000)
            break
        i += 2 + struct.unpack(">H", jpg[i + 2:i + 4])[0]
    out.append(("jpeg-bomb.jpg", bytes(jpg)))
    for k in range(1, 6):  # truncated JPEGs, which libjpeg decodes with a grey tail
        full = jpeg_bytes(os.path.join(SAMPLES, "3-dress.png"))
        out.append((f"jpeg-cut-{k}.jpg", full[:len(full) * k // 7]))
    nan = np.full((1, 1, 28, 28), np.nan, np.float32)
    out.append(("nan.npy", npy_bytes(nan)))
    out.append(("inf.npy", npy_bytes(np.full((1, 1, 28, 28), np.inf, np.float32))))
    out.append(("empty.png", b""))
    return out


def model_mutants(model_path, rng, count):
    with open(model_path, "rb") as f:
        data = f.read()
    src = zipfile.ZipFile(model_path)
    out = []
    for k in range(count):
        kind = k % 3
        if kind == 0:
            out.append((f"model-{k}.pt", mutate(data, rng)))
        elif kind == 1:  # storages cut short
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
                for info in src.infolist():
                    blob = src.read(info.filename)
                    if "/data/" in info.filename and rng.random() < 0.5:
                        blob = blob[:rng.randrange(0, max(1, len(blob)))]
                    z.writestr(copy.copy(info), blob)  # writestr rewrites the ZipInfo it is given
            out.append((f"model-{k}.pt", buf.getvalue()))
        else:
            out.append((f"model-{k}.pt", data[:rng.randrange(1, len(data))]))
    return out


def run(cmd, timeout):
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return p.returncode, p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return "timeout", ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("salient")
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--models", type=int, default=30)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--max-rss-mb", type=int, default=1500)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(dir=args.out)

    seeds = sorted(os.listdir(SAMPLES))
    bases = []
    for s in seeds:
        p = os.path.join(SAMPLES, s)
        bases.append(("png", png_bytes(p)))
        bases.append(("jpg", jpeg_bytes(p)))
        img = tvio.read_image(p).float().div(255).unsqueeze(0).numpy()
        bases.append(("npy", npy_bytes(img.astype(np.float32))))
    cases = absurd_cases()
    while len(cases) < args.images:
        ext, data = rng.choice(bases)
        cases.append((f"m{len(cases)}.{ext}", mutate(data, rng)))
    inputs = []
    for name, data in cases:
        path = os.path.join(work, name)
        with open(path, "wb") as f:
            f.write(data)
        inputs.append((path, args.model))
    for name, data in model_mutants(args.model, rng, args.models):
        path = os.path.join(work, name)
        with open(path, "wb") as f:
            f.write(data)
        inputs.append((os.path.join(SAMPLES, "7-sneaker.png"), path))

    def one(k):
        inp, model = inputs[k]
        out = os.path.join(work, f"out{k}")
        code, err = run([args.salient, "explain", "-m", model, "-i", inp, "--method", "saliency", "--out", out, "--no-freeze", "--threads", "1",
                         "--metadata", os.path.join(HERE, "..", "models", "fashion_cnn.json")], 10)
        problem = None
        if code == "timeout":
            problem = "hung (10 s)"
        elif code < 0:
            problem = f"killed by signal {-code}"
        elif code not in (0, 2):
            problem = f"exit {code}: {err.strip()[:300]}"
        elif code == 2 and (not err.startswith("error: ") or err.count("\n") != 1):
            problem = f"exit 2 without one 'error:' line: {err[:300]!r}"
        elif code == 0 and not os.path.exists(os.path.join(out)):
            problem = "exit 0 but no output"
        return inp if model == args.model else model, code, problem

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, range(len(inputs))))
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    failed = [(p, c, why) for p, c, why in results if why]
    for p, c, why in failed:
        print(f"FAIL {os.path.basename(p)}: {why}")
    codes = {}
    for _, c, _ in results:
        codes[c] = codes.get(c, 0) + 1
    print(f"{len(cases)} inputs, {args.models} models; exit codes {codes}; peak RSS {rss_mb:.0f} MB")
    memory_ok = rss_mb <= args.max_rss_mb
    if not memory_ok:
        print(f"FAIL peak RSS {rss_mb:.0f} MB above {args.max_rss_mb} MB")
    passed = len(results) - len(failed)
    print(f"{passed} passed, {len(failed) + (0 if memory_ok else 1)} failed")
    sys.exit(0 if not failed and memory_ok else 1)


if __name__ == "__main__":
    main()
