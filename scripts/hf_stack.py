"""Check the Python Hugging Face stack kiln's tests use (tests/models/hf.rs): torch,
transformers and peft import at the pinned versions (.ci/run installs them), and a tiny
GPT-2 runs. Exit status 0 when usable; prints the versions."""
import sys

try:
    import torch
    import transformers
    import jinja2  # noqa: F401 - peft's save_pretrained writes its model card with it
    import peft
    from transformers import GPT2Config, GPT2LMHeadModel
except Exception as e:  # noqa: BLE001 - any import failure means "not usable"
    print(f"hf stack: {e}", file=sys.stderr)
    sys.exit(1)

WANT = {"transformers": "4.44.2", "peft": "0.12.0"}
HAVE = {"transformers": transformers.__version__, "peft": peft.__version__}
if HAVE != WANT:
    print(f"hf stack: have {HAVE}, want {WANT}", file=sys.stderr)
    sys.exit(1)
m = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_positions=4))
assert m(torch.tensor([[1, 2]])).logits.shape == (1, 2, 11)
print(f"torch {torch.__version__}, transformers {HAVE['transformers']}, peft {HAVE['peft']}")
