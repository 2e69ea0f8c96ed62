#!/usr/bin/env python3
"""Open a kiln LoRA adapter in Python the way Hugging Face PEFT reads one, and write it back.

    python3 scripts/peft_roundtrip.py IN_DIR OUT_DIR

Reads IN_DIR/adapter_model.safetensors (with the `safetensors` package, as PEFT does) and
IN_DIR/adapter_config.json, checks what PEFT relies on (key names
`base_model.model.<module>.lora_A.weight` (r, in) / `.lora_B.weight` (out, r), every target
module present, the config's peft_type / r / lora_alpha / bias), then writes OUT_DIR with every
lora_B doubled and the config copied, so a Rust test can load it back and see the change.
Prints one line per module. Exit status 2 with a message when something does not match.
Needs `pip install safetensors numpy`.
"""
import json
import os
import re
import sys

from safetensors.numpy import load_file, save_file


def fail(msg):
    print(f"peft_roundtrip: {msg}", file=sys.stderr)
    sys.exit(2)


def main():
    if len(sys.argv) != 3:
        fail("usage: peft_roundtrip.py IN_DIR OUT_DIR")
    src, dst = sys.argv[1], sys.argv[2]
    cfg = json.load(open(os.path.join(src, "adapter_config.json")))
    for key, want in [("peft_type", "LORA"), ("bias", "none")]:
        if cfg.get(key) != want:
            fail(f"adapter_config.json: {key} is {cfg.get(key)!r}, PEFT needs {want!r}")
    r = cfg["r"]
    tensors = load_file(os.path.join(src, "adapter_model.safetensors"))
    pat = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])\.weight$")
    modules = {}
    for name, t in tensors.items():
        m = pat.match(name)
        if not m:
            fail(f"key {name!r} is not in PEFT's layout")
        if t.dtype.name != "float32":
            fail(f"{name}: dtype {t.dtype}, expected float32")
        modules.setdefault(m.group(1), {})[m.group(2)] = t
    for path, ab in sorted(modules.items()):
        if set(ab) != {"A", "B"}:
            fail(f"{path}: has lora_{''.join(sorted(ab))} only")
        a, b = ab["A"], ab["B"]
        if a.shape[0] != r or b.shape[1] != r:
            fail(f"{path}: A {a.shape}, B {b.shape} do not have rank {r}")
        if not any(path == t or path.endswith("." + t) for t in cfg["target_modules"]):
            fail(f"{path}: not matched by target_modules {cfg['target_modules']}")
        print(f"{path}: A {tuple(a.shape)} B {tuple(b.shape)}")
    os.makedirs(dst, exist_ok=True)
    out = {k: (v * 2.0 if k.endswith("lora_B.weight") else v) for k, v in tensors.items()}
    save_file(out, os.path.join(dst, "adapter_model.safetensors"), metadata={"format": "pt"})
    json.dump(cfg, open(os.path.join(dst, "adapter_config.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
