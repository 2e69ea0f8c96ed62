#!/usr/bin/env python3
"""Tiny Hugging Face Llama models for kiln's tests (transformers as the reference).

    python3 scripts/hf_llama.py make DIR TIED SCALING IDS
    python3 scripts/hf_llama.py logits DIR IDS

`make` builds a random LlamaForCausalLM (2 layers, hidden 64, 4 heads, 2 kv heads, SwiGLU of
176, vocab 101, rms_norm_eps 1e-5, rope_theta 5000; TIED = tie|untie; SCALING = none|linear|llama3),
with random norm weights too (ones would hide a mix-up), saves it with save_pretrained
(safetensors), and writes DIR/logits.json: {"ids": [...], "logits": [[...], ...]} for IDS
(comma-separated). `logits` loads DIR with from_pretrained and prints the same JSON for IDS.
Needs torch and transformers (Debian's python3-torch; `pip install transformers`).
"""
import json
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def logits(model, ids):
    with torch.no_grad():
        out = model(torch.tensor([ids])).logits[0]
    return {"ids": ids, "logits": out.tolist()}


def make(path, tied, scaling, ids):
    scalings = {
        "none": None,
        "linear": {"rope_type": "linear", "factor": 2.0},
        "llama3": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    }
    cfg = LlamaConfig(
        vocab_size=101,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=5000.0,
        rope_scaling=scalings[scaling],
        tie_word_embeddings=tied == "tie",
    )
    torch.manual_seed(7)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            else:
                # std 0.02 (transformers' init) leaves logits near zero; make them count.
                p.copy_(0.15 * torch.randn_like(p))
    model.save_pretrained(path, safe_serialization=True)
    with open(f"{path}/logits.json", "w") as f:
        json.dump(logits(model, ids), f)


def main():
    args = sys.argv[1:]
    if len(args) == 5 and args[0] == "make":
        make(args[1], args[2], args[3], [int(i) for i in args[4].split(",")])
    elif len(args) == 3 and args[0] == "logits":
        model = LlamaForCausalLM.from_pretrained(args[1]).eval()
        print(json.dumps(logits(model, [int(i) for i in args[2].split(",")])))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
