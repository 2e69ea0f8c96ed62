#!/usr/bin/env python3
"""Hugging Face tokenizer.json files and their ids, from Python's `tokenizers`, for kiln's tests.

    python3 scripts/hf_tokenizers.py make KIND OUT.json
    python3 scripts/hf_tokenizers.py encode TOKENIZER.json TEXTS.json

`make` trains a small BPE on a fixed corpus and writes it as tokenizer.json. KIND:
  legacy     Llama-2 / TinyLlama layout: normalizer Prepend("▁") + Replace(" ", "▁"), no
             pre-tokenizer, byte fallback <0x00>..<0xFF> at ids 3..258, <unk> <s> </s> special,
             the decoder Replace + ByteFallback + Fuse + Strip
  metaspace  the newer conversion: pre-tokenizer Metaspace(prepend_scheme "first", split false),
             no normalizer, byte fallback, Metaspace decoder
  split      Metaspace(prepend_scheme "always", split true)
  bytelevel  GPT-2 style byte-level BPE with <|endoftext|>
Each also has a non-special added token "<|user|>".
`encode` prints {"ids": [[...], ...], "decoded": [...]} for a JSON list of texts, without the
post-processor's tokens (add_special_tokens=False) and decoding without skipping specials.
Needs `pip install tokenizers`.
"""
import json
import sys

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A tokenizer turns text into ids, and the model reads the ids.",
    "Byte-pair encoding merges the most frequent pairs of symbols, again and again.",
    "Hello world! Hello there, world. Hello, hello, HELLO.",
    "Numbers like 1234 and 56.78 appear; so do dates: 2024-12-08.",
    "Café, naïve, résumé, über, señor: accents are letters too.",
    "Les élèves étudient la théorie des langages à l'université.",
    "日本語のテキストも少しあります。東京は大きい。",
    "Indentation\tand\ttabs\nand newlines\n\nmatter  too   sometimes.",
    "def main():\n    print('hello')\n    return 0",
] * 20

SPECIALS = ["<unk>", "<s>", "</s>"]


def sentencepiece_style(kind):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if kind == "legacy":
        tok.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
        tok.decoder = decoders.Sequence(
            [
                decoders.Replace("▁", " "),
                decoders.ByteFallback(),
                decoders.Fuse(),
                decoders.Strip(" ", 1, 0),
            ]
        )
    else:
        scheme, split = ("first", False) if kind == "metaspace" else ("always", True)
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="▁", prepend_scheme=scheme, split=split
        )
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme, split=split)
    # A small alphabet: rare characters (the kanji, emoji) go through byte fallback.
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS, limit_alphabet=60)
    tok.train_from_iterator(CORPUS, trainer)
    data = json.loads(tok.to_str())
    # Llama's layout: specials 0..2, the 256 byte tokens 3..258, then the trained vocabulary.
    vocab = data["model"]["vocab"]
    trained = sorted((i, t) for t, i in vocab.items() if t not in SPECIALS)
    new = {t: i for i, t in enumerate(SPECIALS)}
    for b in range(256):
        new[f"<0x{b:02X}>"] = len(new)
    for _, t in trained:
        new.setdefault(t, len(new))
    data["model"]["vocab"] = new
    for a in data["added_tokens"]:
        a["id"] = new[a["content"]]
    return data


def byte_level():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    return json.loads(tok.to_str())


def make(kind, out):
    data = byte_level() if kind == "bytelevel" else sentencepiece_style(kind)
    tok = Tokenizer.from_str(json.dumps(data))
    tok.add_tokens(["<|user|>"])
    tok.save(out)


def encode(path, texts_path):
    tok = Tokenizer.from_file(path)
    texts = json.load(open(texts_path, encoding="utf-8"))
    ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    decoded = [tok.decode(i, skip_special_tokens=False) for i in ids]
    print(json.dumps({"ids": ids, "decoded": decoded}))


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "make":
        make(args[1], args[2])
    elif len(args) == 3 and args[0] == "encode":
        encode(args[1], args[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
