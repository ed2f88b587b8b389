#!/usr/bin/python3
"""kill -9 a `salient batch` run at random moments, rerun it each time, and check that the end state
equals an uninterrupted run: every id exactly once in manifest.jsonl, every line valid JSON pointing at
complete files, maps bit-identical, summaries equal up to summation order, no unreferenced part left.

usage: batch_kill.py SALIENT_CLI MODEL WORKDIR  (prints one line per scenario; exit 1 on a mismatch)
"""
import array
import ast
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

DATA = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def load_npy(path):
    """A float32 .npy (as Salient writes them) -> (shape, array('f')); raises on a truncated file."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY", path
    n = data[8] | (data[9] << 8)
    header = ast.literal_eval(data[10:10 + n].decode())
    assert header["descr"] == "<f4", path
    shape = tuple(header["shape"])
    count = 1
    for s in shape:
        count *= s
    values = array.array("f")
    values.frombytes(data[10 + n:])
    assert len(values) == count, "%s: truncated (%d of %d values)" % (path, len(values), count)
    return shape, values


def row(npy, r):
    shape, values = npy
    size = len(values) // shape[0]
    return values[r * size:(r + 1) * size]


def manifest(d):
    lines = []
    with open(os.path.join(d, "manifest.jsonl")) as f:
        text = f.read()
    assert text == "" or text.endswith("\n"), "an unterminated manifest line after a rerun"
    for line in text.splitlines():
        lines.append(json.loads(line))  # raises on an invalid line
    return lines


def maps(d):
    """id -> method -> array, reading every file a line points at (so each must be complete)."""
    out, parts = {}, {}
    for line in manifest(d):
        assert line["id"] not in out, "id %s twice in %s" % (line["id"], d)
        out[line["id"]] = {}
        for name, m in line.get("explained", [{}])[0].get("methods", {}).items():
            if "map" in m:
                p = m["map"]["part"]
                if p not in parts:
                    parts[p] = load_npy(os.path.join(d, p))
                out[line["id"]][name] = row(parts[p], m["map"]["row"]).tobytes()
            else:
                out[line["id"]][name] = load_npy(os.path.join(d, m["npy"]))[1].tobytes()
    return out, set(parts)


def check_consistent(d):
    """What a killed run left: valid lines, each pointing at complete files."""
    if os.path.exists(os.path.join(d, "manifest.jsonl")):
        with open(os.path.join(d, "manifest.jsonl")) as f:
            text = f.read()
        complete = text[: text.rfind("\n") + 1]
        for line in complete.splitlines():
            json.loads(line)
        if complete:
            tmp = d + ".check"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            with open(os.path.join(tmp, "manifest.jsonl"), "w") as f:
                f.write(complete)
            for entry in os.listdir(d):
                if entry != "manifest.jsonl":
                    os.symlink(os.path.join(os.path.abspath(d), entry), os.path.join(tmp, entry))
            maps(tmp)
            shutil.rmtree(tmp)


def scenario(name, cli, args, work, rng):
    ref, run = os.path.join(work, name + "-ref"), os.path.join(work, name + "-killed")
    for d in (ref, run):
        shutil.rmtree(d, ignore_errors=True)
    t0 = time.time()
    subprocess.run([cli] + args + ["--out", ref], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    duration = time.time() - t0
    kills = 0
    while True:
        p = subprocess.Popen([cli] + args + ["--out", run], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if kills < 8:
            time.sleep(rng.uniform(0.3, max(0.4, duration * 0.7)))
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
                kills += 1
                check_consistent(run)
                continue
        if p.wait() != 0:
            print("%s: the rerun after %d kills failed with exit %d" % (name, kills, p.returncode))
            return False
        break
    a, _ = maps(ref)
    b, used = maps(run)
    ok = True
    if set(a) != set(b):
        print("%s: ids differ: %d vs %d" % (name, len(a), len(b)))
        return False
    for i in a:
        for m in a[i]:
            if a[i][m] != b[i][m]:
                print("%s: map %s of id %s differs" % (name, m, i))
                ok = False
    maps_dir = os.path.join(run, "maps")
    if os.path.isdir(maps_dir):
        for key in os.listdir(maps_dir):
            for f in os.listdir(os.path.join(maps_dir, key)):
                if "maps/%s/%s" % (key, f) not in used:
                    print("%s: maps/%s/%s is not referenced (left over)" % (name, key, f))
                    ok = False
    summary = os.path.join(ref, "summary")
    if os.path.isdir(summary):
        for f in sorted(os.listdir(summary)):
            if f.endswith(".npy"):
                x, y = load_npy(os.path.join(summary, f))[1], load_npy(os.path.join(run, "summary", f))[1]
                if len(x) != len(y) or any(abs(u - v) > 1e-6 + 1e-5 * abs(v) for u, v in zip(x, y)):
                    print("%s: summary/%s differs" % (name, f))
                    ok = False
    print("%s: %d kills, %d ids, %s" % (name, kills, len(a), "equal to the uninterrupted run" if ok else "DIFFERENT"))
    return ok


def main():
    cli, model, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    rng = random.Random(int(os.environ.get("SALIENT_KILL_SEED", "7")))
    base = ["batch", "-m", model, "-d", DATA, "--method", "saliency,smoothgrad", "--samples", "8", "--threads", "1"]
    ok = scenario("stack", cli, base + ["--limit", "400", "--format", "stack", "--part-rows", "25", "--chunk", "10",
                                        "--summary", "--no-png"], work, rng)
    ok = scenario("files", cli, base + ["--limit", "80", "--chunk", "5"], work, rng) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
