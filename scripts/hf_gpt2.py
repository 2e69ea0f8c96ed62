#!/usr/bin/python3
"""The Python side of kiln's Hugging Face GPT-2 tests (tests/models/hf.rs), with transformers.

    hf_gpt2.py make OUT_DIR TEXT     a tiny GPT-2 (2 layers, width 64, 4 heads, 32 positions)
                                     with random weights and a byte-level BPE tokenizer trained
                                     on a small corpus, saved with save_pretrained; prints
                                     {"ids": ids of TEXT by that tokenizer, "vocab_size": V}
    hf_gpt2.py logits DIR IDS        from_pretrained(DIR), eval mode; prints
                                     {"ids": [...], "logits": [[...], ...]} for IDS (1,2,3)
    hf_gpt2.py encode DIR TEXT       AutoTokenizer.from_pretrained(DIR); prints {"ids": [...]}
    hf_gpt2.py peft DIR ADIR IDS     a LoRA (r 4, alpha 8, on c_attn, c_proj, c_fc; random A and
                                     B) on DIR's model, saved to ADIR by peft, loaded back with
                                     PeftModel.from_pretrained; prints its logits for IDS

Nothing is downloaded. Runs under Debian's /usr/bin/python3 with python3-torch and the pinned
transformers (.ci/run installs them; scripts/hf_stack.py checks them).
"""
import json
import sys

import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs!",
    "  Whitespace   runs,\ttabs and\nnewlines; numbers 12345 and 3.14159.",
    "Unicode: café, naïve, Straße, 東京, emoji 🙂🚀 and more.",
    "def main():\n    return [x * 2 for x in range(10)]",
] * 4


def make(out, text):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                            eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    v = len(tok)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = GPT2Config(vocab_size=v, n_positions=32, n_embd=64, n_layer=2, n_head=4,
                     bos_token_id=eos, eos_token_id=eos)
    torch.manual_seed(18)
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():  # move every tensor off its init (LayerNorm 1/0, zero biases)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    print(json.dumps({"ids": tok(text)["input_ids"], "vocab_size": v}))


def logits(d, ids):
    model = GPT2LMHeadModel.from_pretrained(d)
    model.eval()
    ids = [int(i) for i in ids.split(",")]
    with torch.no_grad():
        out = model(torch.tensor([ids])).logits[0]
    print(json.dumps({"ids": ids, "logits": out.tolist()}))


def encode(d, text):
    print(json.dumps({"ids": AutoTokenizer.from_pretrained(d)(text)["input_ids"]}))


def peft(d, adir, ids):
    from peft import LoraConfig, PeftModel, get_peft_model

    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                     target_modules=["c_attn", "c_proj", "c_fc"])
    model = get_peft_model(GPT2LMHeadModel.from_pretrained(d), cfg)
    torch.manual_seed(7)
    with torch.no_grad():  # B starts at zero: make the adapter change the logits
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.2)
    model.save_pretrained(adir)
    model = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(d), adir)
    model.eval()
    ids = [int(i) for i in ids.split(",")]
    with torch.no_grad():
        out = model(torch.tensor([ids])).logits[0]
    print(json.dumps({"ids": ids, "logits": out.tolist()}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"make": make, "logits": logits, "encode": encode, "peft": peft}[cmd](*args)
