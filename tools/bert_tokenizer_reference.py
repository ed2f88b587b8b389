#!/usr/bin/python3
"""BERT's own tokenizer algorithm (google-research/bert, tokenization.py: BasicTokenizer then
WordpieceTokenizer), written out here with Python's unicodedata, as the independent reference for
Salient's C++ tokenizer (tests/test_text.cpp). Writes DIR/bert_tokens.json: a vocabulary, texts that
exercise accents, case, CJK, Unicode punctuation, whitespace and control characters, and the tokens
BERT gives each, uncased (lower case + accents stripped) and cased.

    /usr/bin/python3 tools/bert_tokenizer_reference.py DIR
"""
import json
import os
import sys
import unicodedata


def is_whitespace(c):
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def is_control(c):
    if c in "\t\n\r":
        return False
    return unicodedata.category(c).startswith("C")


def is_punctuation(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def is_chinese(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic(text, lower, strip):
    out = []
    for c in text:  # _clean_text
        if ord(c) == 0 or ord(c) == 0xFFFD or is_control(c):
            continue
        out.append(" " if is_whitespace(c) else c)
    text = "".join(" " + c + " " if is_chinese(ord(c)) else c for c in out)  # _tokenize_chinese_chars
    tokens = []
    for token in text.strip().split():
        if lower:
            token = token.lower()
        if strip:  # _run_strip_accents
            token = "".join(c for c in unicodedata.normalize("NFD", token) if unicodedata.category(c) != "Mn")
        word = ""
        for c in token:  # _run_split_on_punc
            if is_punctuation(c):
                if word:
                    tokens.append(word)
                tokens.append(c)
                word = ""
            else:
                word += c
        if word:
            tokens.append(word)
    return tokens


def wordpiece(token, vocab, unk="[UNK]", max_chars=100):
    if len(token) > max_chars:
        return [unk]
    out, start = [], 0
    while start < len(token):
        end, found = len(token), None
        while start < end:
            piece = ("##" if start > 0 else "") + token[start:end]
            if piece in vocab:
                found = piece
                break
            end -= 1
        if found is None:
            return [unk]
        out.append(found)
        start = end
    return out


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cafe", "café", "Café", "the", "The", "naive", "über", "uber",
         "resume", "ecole", "école", "ça", "ca", "va", "hello", "world", "!", "?", ",", ".", "-", "¿", "¡", "«", "»", "“", "”",
         "—", "…", "、", "。", "我", "爱", "北", "京", "東", "京", "日", "本", "ελληνικα", "αθηνα", "москва", "istanbul",
         "straße", "strasse", "##s", "##ing", "run", "zurich", "zürich", "x", "y", "(", ")", "'", "'s", "٫", "١٢"]
TEXTS = [
    "Café the naïve résumé", "ÜBER Zürich — über!", "我爱北京 東京日本", "Ça va? ¿Qué? ¡Sí!", "«hello» “world”…",
    "ΕΛΛΗΝΙΚΆ Αθήνα МОСКВА", "Straße running\u00a0runs", "x\u200by\u2028the\u3000the", "tab\there\rnew\nline",
    "soft\u00adhyphen zero\u200dwidth", "İstanbul", "résumé-école, l'école's", "ｆｕｌｌ ｗｉｄｔｈ", "١٢٫٥ ٫",
]

out = sys.argv[1] if len(sys.argv) > 1 else "."
os.makedirs(out, exist_ok=True)
vocab = set(VOCAB)
cases = []
for text in TEXTS:
    uncased = [p for t in basic(text, True, True) for p in wordpiece(t, vocab)]
    cased = [p for t in basic(text, False, False) for p in wordpiece(t, vocab)]
    cases.append({"text": text, "uncased": uncased, "cased": cased})
with open(os.path.join(out, "bert_tokens.json"), "w", encoding="utf-8") as f:
    json.dump({"vocab": VOCAB, "cases": cases}, f, ensure_ascii=False, indent=1)
print(f"{len(cases)} texts tokenized as BERT does")
