#!/usr/bin/env python3
"""Fuzzes the surfaces tools/fuzz_inputs.py does not reach, from a fixed seed:

    /usr/bin/python3 tools/fuzz_service.py SALIENT_BIN OUT_DIR [--requests 1500] [--files 160]

1. The service: `salient serve` (the demo CNN and the breast-cancer MLP, --max-body 1MB) gets mutated
   requests on raw sockets: request lines and URLs (invalid UTF-8, traversal, huge), headers (3,000
   lines, 20 KB lines, repeated or absurd Content-Length, Transfer-Encoding and Content-Encoding,
   Expect), JSON bodies (byte mutations of valid requests, deep nesting, wrong types, huge numbers,
   invalid UTF-8) and multipart bodies. No answer may be a 5xx; the server must answer /healthz
   after every 100 requests and at the end; its peak RSS (VmHWM) must stay under --max-rss-mb.
2. Files, through the CLI: mutated CSVs (batch on the tabular model), text inputs and tokenizer
   metadata (explain on the langid model), batch manifests and run records (batch resumes, merge)
   and evaluate's results log (evaluate resumes). Every run ends with exit 0, or exit 2 and one
   line `error: ...`; never a signal, an exit 1 or a hang (20 s).
Prints one line per failure and ends with `N passed, M failed`; exits 1 on any failure.
"""
import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
MODELS = os.path.join(ROOT, "models")
DEMO = os.path.join(MODELS, "fashion_cnn.pt")
TABLE = os.path.join(MODELS, "breast_cancer", "logreg.pt")
TEXT = os.path.join(MODELS, "langid", "langid.pt")
SAMPLES = os.path.join(MODELS, "samples")

sys.path.insert(0, HERE)
from fuzz_inputs import mutate, run as run_cli  # noqa: E402  (the same byte mutations and runner)


# ---- the service ----

def start_server(salient, work):
    out = open(os.path.join(work, "serve.out"), "w+")
    err = open(os.path.join(work, "serve.err"), "w+")
    proc = subprocess.Popen([salient, "serve", "--port", "0", "--model", "demo=" + DEMO, "--model", "table=" + TABLE,
                             "--data", SAMPLES, "--max-body", "1MB", "--workers", "1", "--threads", "1", "--timeout", "20"],
                            stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    for _ in range(300):
        out.seek(0)
        text = out.read()
        if "listening on http://" in text:
            port = int(text.split("listening on http://")[1].split(":")[1].split()[0].strip("/"))
            return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    err.seek(0)
    raise SystemExit("salient serve did not start: " + err.read())


def exchange(port, data, timeout=15):
    """Sends raw bytes; returns the status code (int), 0 when the server closed without answering."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)  # a body shorter than its Content-Length ends here, not at a deadline
        except OSError:
            pass  # answered and closed before reading everything
        answer = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except OSError:
            pass
        # The final status: a "100 Continue" comes before it.
        while answer.startswith(b"HTTP/1.1 100"):
            answer = answer[answer.find(b"\r\n\r\n") + 4:]
        if not answer.startswith(b"HTTP/1."):
            return 0
        return int(answer.split(b" ")[1])
    finally:
        s.close()


def request(method, url, headers, body=b""):
    head = f"{method} {url} HTTP/1.1\r\n".encode("latin-1", "replace") if isinstance(url, str) else method.encode() + b" " + url + b" HTTP/1.1\r\n"
    for k, v in headers:
        head += (k if isinstance(k, bytes) else k.encode("latin-1", "replace")) + b": " + (v if isinstance(v, bytes) else v.encode("latin-1", "replace")) + b"\r\n"
    return head + b"\r\n" + body


def valid_bodies():
    import base64
    png = open(os.path.join(SAMPLES, "7-sneaker.png"), "rb").read()
    img = base64.b64encode(png).decode()
    return [
        json.dumps({"image": img, "method": "saliency"}).encode(),
        json.dumps({"image": img, "methods": ["saliency", "occlusion"], "options": {"occlusion.window": "7x7"}, "target": "top-2"}).encode(),
        json.dumps({"id": "7-sneaker.png", "method": "integrated-gradients", "options": {"steps": 8}}).encode(),
        json.dumps({"model": "table", "array": [[0.1] * 30], "method": "kernel-shap", "options": {"samples": 50}}).encode(),
        json.dumps({"instances": [[[[0.0] * 28] * 28]], "parameters": {"target": 3}}).encode(),
    ]


def json_mutant(rng, bodies):
    k = rng.randrange(8)
    if k == 0:
        return mutate(rng.choice(bodies), rng)
    if k == 1:  # deep nesting
        d = rng.choice([50, 70, 500, 20000])
        return (b"[" * d + b"]" * d) if rng.random() < 0.5 else b'{"image": ' + b'{"a":' * d + b"1" + b"}" * d + b"}"
    if k == 2:  # wrong types everywhere
        v = rng.choice([None, 1e308, -1, "x" * 1000, [], {}, True, "\ud800", 10 ** 30])
        key = rng.choice(["image", "method", "methods", "options", "target", "model", "id", "array", "npy", "resize", "layer"])
        return json.dumps({key: v, "method": "saliency"}).encode()
    if k == 3:  # invalid UTF-8 in strings
        return b'{"id": "\xff\xfe", "method": "sal\xc0\xaeiency", "target": "\xed\xa0\x80"}'
    if k == 4:  # huge numbers and options
        return json.dumps({"id": "0-t-shirt-top.png", "method": rng.choice(["smoothgrad", "rise", "lime", "integrated-gradients"]),
                           "options": {rng.choice(["samples", "steps", "batch-size", "window", "sigma"]): rng.choice([0, -5, 10 ** 12, 1e-300, "7x0", "99999x1"])}}).encode()
    if k == 5:  # truncated
        b = rng.choice(bodies)
        return b[:rng.randrange(1, len(b))]
    if k == 6:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 2000)))
    return rng.choice(bodies)


def multipart_mutant(rng):
    png = open(os.path.join(SAMPLES, "1-trouser.png"), "rb").read()
    boundary = "x" + str(rng.randrange(10 ** 6))
    parts = [("image", png), ("method", b"saliency"), ("options", b'{"abs": false}'), ("target", b"top")]
    rng.shuffle(parts)
    body = b""
    for name, data in parts[:rng.randint(1, 4)]:
        body += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    if rng.random() < 0.6:
        body = mutate(body, rng)
    return boundary, body


URLS = ["/api/explain", "/v1/models/demo:predict", "/v1/models/table", "/api/jobs", "/api/checks", "/v1/models", "/healthz",
        "/api/data", "/api/data/7-sneaker.png", "/api/results/abc/saliency.npy", "/explanations/x", "/v2/models/demo/infer"]


def one_request(rng, bodies):
    url = rng.choice(URLS)
    k = rng.randrange(10)
    headers = [("Host", "fuzz"), ("Connection", "close")]
    body = b""
    method = "POST"
    if k == 0:  # URL mutations
        method = rng.choice(["GET", "POST", "DELETE", "PUT", "OPTIONS", "HEAD", "BREW"])
        url = rng.choice([b"/v1/models/%ff", b"/api/data/%c0%ae%c0%ae/etc/passwd", b"/" + b"a" * 20000, b"/api/results/../../etc/passwd",
                          mutate(url.encode(), rng).replace(b" ", b"%20").replace(b"\r", b"").replace(b"\n", b""), b"*", b"http://x/healthz"])
    elif k == 1:  # many headers
        headers += [(f"X-{i}", "y" * rng.randint(0, 20)) for i in range(rng.choice([100, 1000, 3000]))]
        method = "GET"
        url = "/healthz"
    elif k == 2:  # a long header line
        headers.append(("X-Long", "z" * rng.choice([7000, 9000, 20000])))
        method = "GET"
        url = "/healthz"
    elif k == 3:  # framing
        body = rng.choice(bodies)
        headers += rng.choice([[("Content-Length", str(len(body))), ("Content-Length", str(len(body) + 5))],
                               [("Content-Length", "-1")], [("Content-Length", "abc")], [("Content-Length", "99999999999999999999")],
                               [("Transfer-Encoding", "chunked"), ("Content-Length", str(len(body)))],
                               [("Transfer-Encoding", "gzip, chunked")], [("Content-Length", str(len(body) // 2))]])
        headers.append(("Content-Type", "application/json"))
    elif k == 4:  # encodings
        body = rng.choice(bodies)
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                    ("Content-Encoding", rng.choice(["gzip", "br", "deflate", "identity", "x" * 300, "\xff"]))]
    elif k == 5:
        body = rng.choice(bodies)
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Expect", "100-continue")]
    elif k == 6:
        boundary, body = multipart_mutant(rng)
        headers += [("Content-Type", f"multipart/form-data; boundary={boundary}"), ("Content-Length", str(len(body)))]
        url = rng.choice(["/api/explain", "/api/jobs", "/api/checks"])
    elif k == 7:  # garbage request line
        return mutate(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", rng)
    else:  # JSON body mutations
        body = json_mutant(rng, bodies)
        headers += [("Content-Type", rng.choice(["application/json", "text/plain", "application/json; charset=latin-1"])),
                    ("Content-Length", str(len(body)))]
        if url.startswith("/api/checks") and rng.random() < 0.5:
            body = body.replace(b"{", b'{"check": "faithfulness", ', 1)
    if k not in (0,):
        method = method if k in (1, 2) else rng.choice(["POST", "POST", "POST", "PUT", "GET"])
    return request(method, url, headers, body)


def fuzz_service(args, rng, work):
    proc, port = start_server(args.salient, work)
    failures, codes = [], {}
    bodies = valid_bodies()
    try:
        for i in range(args.requests):
            data = one_request(rng, bodies)
            try:
                code = exchange(port, data)
            except OSError as e:
                code = f"socket error {e}"
            codes[code] = codes.get(code, 0) + 1
            if isinstance(code, int) and code >= 500 and code != 503:
                failures.append(f"request {i}: answered {code}: {data[:160]!r}")
            if proc.poll() is not None:
                failures.append(f"request {i}: the server exited ({proc.returncode}) on {data[:160]!r}")
                break
            if i % 100 == 99 and exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") != 200:
                failures.append(f"after request {i}: /healthz is not answered")
        rss = 0
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1]) // 1024
        if proc.poll() is None and exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") != 200:
            failures.append("at the end: /healthz is not answered")
        if rss > args.max_rss_mb:
            failures.append(f"server peak RSS {rss} MB above {args.max_rss_mb} MB")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            failures.append("the server did not stop within 10 s of SIGTERM")
    return failures, codes, rss


# ---- files through the CLI ----

def run(cmd, timeout=20):
    return run_cli(cmd, timeout)


def judge(name, code, err):
    if code == "timeout":
        return f"{name}: hung (20 s)"
    if code < 0:
        return f"{name}: killed by signal {-code}"
    if code not in (0, 2):
        return f"{name}: exit {code}: {err.strip()[:300]}"
    if code == 2 and (not err.startswith("error: ") or err.count("\n") != 1):
        return f"{name}: exit 2 without one 'error:' line: {err[:300]!r}"
    return None


def csv_mutant(rng, text):
    k = rng.randrange(6)
    b = text.encode()
    if k == 0:
        return mutate(b, rng)
    lines = text.split("\n")
    if k == 1:  # a quoted field with commas, quotes, newlines
        i = rng.randrange(1, len(lines) - 1)
        cells = lines[i].split(",")
        cells[rng.randrange(len(cells))] = '"' + rng.choice(['1,2', 'a""b', '3\n4', '"', "\x00"]) + '"'
        lines[i] = ",".join(cells)
    elif k == 2:  # a huge field
        i = rng.randrange(1, len(lines) - 1)
        cells = lines[i].split(",")
        cells[rng.randrange(len(cells))] = rng.choice(["9" * 300000, "x" * 2000000, "1e999", "nan", "-inf"])
        lines[i] = ",".join(cells)
    elif k == 3:  # BOM, CRLF, blank lines, a ragged row
        lines = ["\ufeff" + lines[0]] + [l + ("\r" if rng.random() < 0.5 else "") for l in lines[1:]]
        lines.insert(rng.randrange(1, len(lines)), "")
        lines.insert(rng.randrange(1, len(lines)), "1,2,3")
    elif k == 4:  # a header repeated, a column dropped
        lines[0] = lines[0].replace("mean_area", rng.choice(["mean_radius", "", "mean_area,mean_area"]))
    else:  # invalid UTF-8 and control bytes
        return b.replace(b"malignant", b"mal\xffignant\x1b[2J", 3)
    return "\n".join(lines).encode()


def batch_run(salient, data, out, extra=()):
    return run([salient, "batch", "-m", DEMO, "-d", data, "--method", "saliency", "--no-png", "--threads", "1", "-o", out, *extra])


def fuzz_files(args, rng, work):
    cases = []  # (name, cmd)
    csv_text = open(os.path.join(MODELS, "breast_cancer", "test.csv")).read()
    csv_text = "\n".join(csv_text.split("\n")[:12]) + "\n"
    for k in range(args.files // 4):
        path = os.path.join(work, f"rows{k}.csv")
        with open(path, "wb") as f:
            f.write(csv_mutant(rng, csv_text))
        cases.append((f"csv {k}", [args.salient, "batch", "-m", TABLE, "-d", path, "--method", "saliency", "--no-png", "--threads", "1",
                                   "-o", os.path.join(work, f"csv-out{k}")]))
    # Text inputs and tokenizer metadata (its vocabulary, its settings).
    meta = open(os.path.join(MODELS, "langid", "langid.json"), "rb").read()
    sample_text = open(os.path.join(MODELS, "langid", "test.txt"), "rb").read()[:2000]
    for k in range(args.files // 4):
        if k % 2 == 0:
            path = os.path.join(work, f"text{k}.txt")
            with open(path, "wb") as f:
                f.write(rng.choice([mutate(sample_text, rng), b"\xff\xfe" * 1000, b"a" * 300000, b"\n" * 50, bytes(range(256)) * 10]))
            cases.append((f"text {k}", [args.salient, "explain", "-m", TEXT, "-i", path, "--method", "integrated-gradients",
                                        "--steps", "4", "--threads", "1", "--out", os.path.join(work, f"text-out{k}")]))
        else:
            path = os.path.join(work, f"langid{k}.json")
            with open(path, "wb") as f:
                f.write(mutate(meta, rng))
            cases.append((f"tokenizer metadata {k}", [args.salient, "explain", "-m", TEXT, "--metadata", path, "--text", "the river",
                                                      "--method", "saliency", "--threads", "1", "--out", os.path.join(work, f"meta-out{k}")]))
    # Batch manifests and run records, resumed; shards merged.
    data = os.path.join(work, "data")
    os.makedirs(data)
    for f in sorted(os.listdir(SAMPLES))[:4]:
        shutil.copy(os.path.join(SAMPLES, f), data)
    base = os.path.join(work, "base")
    code, err = batch_run(args.salient, data, base, ("--shard", "0/2"))
    code2, err2 = batch_run(args.salient, data, base, ("--shard", "1/2"))
    if code != 0 or code2 != 0:
        return [f"the batch runs to mutate failed: {err}{err2}"], 0
    for k in range(args.files // 4):
        out = os.path.join(work, f"run{k}")
        shutil.copytree(base, out)
        shard = os.path.join(out, "shard-" + str(k % 2) + "-of-2")
        target = os.path.join(shard, rng.choice(["manifest.jsonl", "run.json", "ids.txt"]))
        if os.path.exists(target):
            with open(target, "rb") as f:
                blob = f.read()
            with open(target, "wb") as f:
                f.write(rng.choice([mutate(blob, rng) if blob else b"\xff", b"[" * 100000, b'{"signature": [1]}', b"\x00" * 10, b""]))
        if k % 2:
            cases.append((f"merge {k}", [args.salient, "merge", out]))
        else:
            cases.append((f"batch resume {k}", [args.salient, "batch", "-m", DEMO, "-d", data, "--method", "saliency", "--no-png",
                                                "--threads", "1", "--shard", f"{k % 2}/2", "-o", out]))
    # evaluate's results log, resumed.
    ev = os.path.join(work, "eval")
    code, err = run([args.salient, "evaluate", "-m", DEMO, "-d", data, "--limit", "2", "--methods", "saliency", "--metrics",
                     "deletion,sparseness", "--steps", "4", "--threads", "1", "-o", ev])
    if code != 0:
        return [f"the evaluate run to mutate failed: {err}"], 0
    for k in range(args.files - len(cases)):
        out = os.path.join(work, f"eval{k}")
        shutil.copytree(ev, out)
        log = os.path.join(out, "results.jsonl")
        with open(log, "rb") as f:
            blob = f.read()
        with open(log, "wb") as f:
            f.write(rng.choice([mutate(blob, rng), b'{"index": 0, "methods": ' + b"[" * 200000 + b"\n", blob.replace(b"saliency", b"\xff")]))
        cases.append((f"evaluate resume {k}", [args.salient, "evaluate", "-m", DEMO, "-d", data, "--limit", "2", "--methods", "saliency",
                                               "--metrics", "deletion,sparseness", "--steps", "4", "--threads", "1", "-o", out]))

    def one(case):
        name, cmd = case
        code, err = run(cmd)
        return judge(name, code, err), code

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, cases))
    codes = {}
    for _, c in results:
        codes[c] = codes.get(c, 0) + 1
    return [why for why, _ in results if why], codes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("salient")
    ap.add_argument("out")
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--files", type=int, default=160)
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--max-rss-mb", type=int, default=1500)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(dir=args.out)
    t0 = time.time()
    service_failures, service_codes, rss = fuzz_service(args, rng, work)
    print(f"service: {args.requests} requests; statuses {dict(sorted(service_codes.items(), key=str))}; server peak RSS {rss} MB "
          f"({time.time() - t0:.0f} s)")
    t1 = time.time()
    file_failures, file_codes = fuzz_files(args, rng, work)
    print(f"files: {args.files} runs; exit codes {file_codes} ({time.time() - t1:.0f} s)")
    failures = service_failures + file_failures
    for f in failures:
        print("FAIL " + f)
    print(f"{args.requests + args.files - len(failures)} passed, {len(failures)} failed")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
