#!/usr/bin/python3
"""Trains the langid demo: which of six languages a line of text is in.

Data: Debian's fortune packages (read here, at training time, from the installed files):
fortunes (English), fortunes-de, fortunes-es, fortunes-it, fortunes-br (Brazilian Portuguese),
fortunes-pl. Offensive collections ("off" folders) and ASCII-art files are skipped.

Model: a WordPiece vocabulary of our own (frequent words, frequent word beginnings and endings,
every character seen) and an embedding classifier: token embeddings [V, 16] averaged over the
real tokens (ids != [PAD]), then one linear layer to six logits (fastText's shape). Its forward
takes the ids alone; the mask is computed inside.

Writes langid.pt (TorchScript), langid.json (metadata), vocab.txt, and the held-out test lines:
test.txt (one line an example) and test_labels.txt (their languages).

Run: /usr/bin/python3 models/langid/train.py   (about a minute on 2 cores)
"""
import collections
import os
import random
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
LANGS = [("en", "English", "fortunes"), ("de", "German", "fortunes-de"), ("es", "Spanish", "fortunes-es"),
         ("it", "Italian", "fortunes-it"), ("pt", "Portuguese", "fortunes-br"), ("pl", "Polish", "fortunes-pl")]
SKIP = {"art", "ascii-art", "asciiart", "banner", "off", "debian.pl", "linux", "linuxcookie", "computers",
        "computer", "informatica.fortunes", "channel-debian.fortunes", "debian", "infodrom", "linuxtag"}
MAX_LEN = 64
TRAIN_PER_LANG, TEST_PER_LANG = 4000, 50

# ---- the tokenizer, exactly as src/text.cpp splits and lower-cases --------------------------------

def is_space(c):
    o = ord(c)
    return c in " \t\n\r" or o in (0xA0, 0x2028, 0x2029, 0x3000) or 0x2000 <= o <= 0x200A

def is_control(c):
    o = ord(c)
    return (o < 0x20 and not is_space(c)) or o == 0x7F or 0x80 <= o < 0xA0 or o in (0xFFFD, 0x200B, 0xFEFF)

def is_punct(c):
    o = ord(c)
    if 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126:
        return True
    return o in (0xA1, 0xA7, 0xAB, 0xB6, 0xB7, 0xBB, 0xBF) or 0x2010 <= o <= 0x205E

def lower_one(c):
    o = ord(c)
    if 65 <= o <= 90 or (0xC0 <= o <= 0xDE and o != 0xD7): return chr(o + 32)
    if (0x100 <= o <= 0x137 and o % 2 == 0) or (0x139 <= o <= 0x148 and o % 2 == 1) or \
       (0x14A <= o <= 0x177 and o % 2 == 0) or (0x179 <= o <= 0x17E and o % 2 == 1): return chr(o + 1)
    if o == 0x178: return chr(0xFF)
    if 0x391 <= o <= 0x3AB and o != 0x3A2: return chr(o + 32)
    if 0x410 <= o <= 0x42F: return chr(o + 32)
    if 0x400 <= o <= 0x40F: return chr(o + 80)
    return c

def split(text):
    words, cur = [], ""
    for c in text:
        if is_space(c):
            if cur: words.append(cur); cur = ""
        elif is_control(c):
            continue
        elif is_punct(c):
            if cur: words.append(cur); cur = ""
            words.append(c)
        else:
            cur += c
    if cur: words.append(cur)
    return words

def lower(text):
    return "".join(lower_one(c) for c in text)

def pieces(word, vocab):
    if len(word) > 100: return ["[UNK]"]
    out, start = [], 0
    while start < len(word):
        end, found = len(word), None
        while end > start:
            p = word[start:end] if start == 0 else "##" + word[start:end]
            if p in vocab: found = p; break
            end -= 1
        if found is None: return ["[UNK]"]
        out.append(found); start = end
    return out

def encode(text, vocab):
    toks = ["[CLS]"]
    for w in split(text):
        toks += pieces(lower(w), vocab)
    toks = toks[:MAX_LEN - 1] + ["[SEP]"]
    return [vocab[t] for t in toks]

# ---- data ------------------------------------------------------------------------------------------

def files_of(package):
    listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout.split()
    out = []
    for f in listed:
        if not f.startswith("/usr/share/games/fortunes/") or f.endswith((".dat", ".u8")) or not os.path.isfile(f):
            continue
        parts = f[len("/usr/share/games/fortunes/"):].split("/")
        if any(p in SKIP for p in parts):
            continue
        out.append(f)
    return sorted(set(out))

def lines_of(package):
    """Each fortune, whitespace collapsed, as one example; 25..240 characters of mostly letters."""
    seen, out = set(), []
    for f in files_of(package):
        raw = open(f, "rb").read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        for fortune in text.split("\n%\n"):
            line = " ".join(fortune.split())
            if line.startswith("--") or "\t" in line:
                continue
            letters = sum(ch.isalpha() for ch in line)
            if not 25 <= len(line) <= 240 or letters < 0.7 * len(line) or line in seen:
                continue
            seen.add(line)
            out.append(line)
    return out

def build_vocab(texts):
    words = collections.Counter()
    for t in texts:
        for w in split(t):
            words[lower(w)] += 1
    chars = sorted({c for w in words for c in w})
    begins, ends = collections.Counter(), collections.Counter()
    for w, n in words.items():
        for k in (2, 3, 4):
            if len(w) > k:
                begins[w[:k]] += n
                ends["##" + w[-k:]] += n
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [w for w, n in words.most_common(6000) if n >= 3 and len(w) > 1]
    vocab += [b for b, n in begins.most_common(1500) if n >= 5]
    vocab += [e for e, n in ends.most_common(2500) if n >= 5]
    vocab += chars + ["##" + c for c in chars]
    unique = list(dict.fromkeys(v for v in vocab if v and "\n" not in v))
    return unique

class LangId(torch.nn.Module):
    def __init__(self, vocab_size, classes, dim=16):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab_size, dim)
        self.classifier = torch.nn.Linear(dim, classes)

    def forward(self, ids):
        mask = (ids != 0).to(torch.float32).unsqueeze(2)    # [N, L, 1]: [PAD] is id 0
        pooled = (self.embedding(ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.classifier(pooled)

def batch_of(seqs):
    longest = max(len(s) for s in seqs)
    return torch.tensor([s + [0] * (longest - len(s)) for s in seqs], dtype=torch.long)

def main():
    random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    train, test = [], []
    for k, (code, name, package) in enumerate(LANGS):
        lines = lines_of(package)
        random.shuffle(lines)
        if len(lines) < TEST_PER_LANG + 500:
            sys.exit(f"{package}: only {len(lines)} usable fortunes")
        test += [(t, k) for t in lines[:TEST_PER_LANG]]
        train += [(t, k) for t in lines[TEST_PER_LANG:TEST_PER_LANG + TRAIN_PER_LANG]]
        print(f"{code}: {len(lines)} fortunes, {min(TRAIN_PER_LANG, len(lines) - TEST_PER_LANG)} for training")
    vocab_list = build_vocab([t for t, _ in train])
    vocab = {t: i for i, t in enumerate(vocab_list)}
    print(f"vocabulary: {len(vocab_list)} tokens")
    xs = [encode(t, vocab) for t, _ in train]
    ys = torch.tensor([k for _, k in train])
    model = LangId(len(vocab_list), len(LANGS))
    # Balanced classes: each language's loss weighs the same however many fortunes it has.
    counts = torch.bincount(ys, minlength=len(LANGS)).float()
    loss_fn = torch.nn.CrossEntropyLoss(weight=counts.sum() / (len(LANGS) * counts))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    order = list(range(len(xs)))
    for epoch in range(12):
        random.shuffle(order)
        total = 0.0
        for b in range(0, len(order), 64):
            idx = order[b:b + 64]
            opt.zero_grad()
            loss = loss_fn(model(batch_of([xs[i] for i in idx])), ys[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch}: loss {total / len(xs):.4f}")
    model.eval()
    with torch.no_grad():
        correct = sum(int(model(batch_of([encode(t, vocab)])).argmax(1).item() == k) for t, k in test)
    print(f"held-out accuracy: {correct}/{len(test)} = {correct / len(test):.3f}")
    scripted = torch.jit.script(model)
    scripted.save(os.path.join(HERE, "langid.pt"))
    with open(os.path.join(HERE, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab_list) + "\n")
    with open(os.path.join(HERE, "test.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(t for t, _ in test) + "\n")
    with open(os.path.join(HERE, "test_labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(LANGS[k][0] for _, k in test) + "\n")
    import json
    meta = {"modality": "text", "labels": [name for _, name, _ in LANGS], "output": "logits",
            "description": "language of a line of text, trained on Debian's fortune packages by models/langid/train.py",
            "tokenizer": {"vocab": "vocab.txt", "lower_case": True, "strip_accents": False, "max_length": MAX_LEN,
                          "pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]",
                          "inputs": "ids"}}
    with open(os.path.join(HERE, "langid.json"), "w") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
        f.write("\n")

if __name__ == "__main__":
    main()
