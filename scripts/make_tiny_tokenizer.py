"""Write the tiny tokenizers of the e2e model folders (tests/e2e/models/*).

SGLang loads a tokenizer even with ``--load-format dummy``, so each model folder
ships a small byte-level BPE tokenizer (a few hundred tokens, every id far below
the model's vocabulary size) next to its ``config.json``:

  * ``tokenizer.json``         (built here with the ``tokenizers`` library),
  * ``tokenizer_config.json``  (``PreTrainedTokenizerFast`` + bos/eos/pad tokens).

No ``generation_config.json`` is written on purpose: SGLang treats a missing one
as "no model defaults", so request sampling parameters stay exactly what the
tests send. The output is deterministic: running this script again rewrites the
same bytes (checked with ``--check``).

    python scripts/make_tiny_tokenizer.py            # (re)write both folders
    python scripts/make_tiny_tokenizer.py --check    # exit 1 if a file would change
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "tests" / "e2e" / "models"

# Special tokens first (ids 0, 1, ...), in the spirit of each model family.
SPECIAL = {
    "deepseek-v3-3l": {
        "tokens": ["<|begin_of_sentence|>", "<|end_of_sentence|>", "<|pad|>"],
        "bos": "<|begin_of_sentence|>", "eos": "<|end_of_sentence|>", "pad": "<|pad|>",
        "model_max_length": 163840,
    },
    "qwen3-moe-a3b-like": {
        "tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>",
        "model_max_length": 40960,
    },
}
VOCAB_SIZE = 320  # 3 specials + 256 bytes + merges

# A fixed little corpus, so the merges are deterministic.
CORPUS = [
    "The capital of France is Paris. The capital of the United Kingdom is London.",
    "Today is a sunny day and I like to go for a walk in the park.",
    "A mixture of experts routes every token to a few experts; the kernel sorts the tokens by expert.",
    "def forward(self, hidden_states): return self.experts(hidden_states, self.gate(hidden_states))",
    "0123456789 + - * / = ( ) [ ] { } < > , . ; : ! ? ' \" # @ % & _",
] * 4


def build(name: str) -> tuple[str, str]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    spec = SPECIAL[name]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=spec["tokens"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tokenizer_json = json.dumps(json.loads(tok.to_str()), indent=1, ensure_ascii=False, sort_keys=False) + "\n"
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": spec["bos"],
        "eos_token": spec["eos"],
        "pad_token": spec["pad"],
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": spec["model_max_length"],
    }
    return tokenizer_json, json.dumps(cfg, indent=2) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 if a file differs")
    ap.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    args = ap.parse_args(argv)
    changed = []
    for name in SPECIAL:
        folder = args.models_dir / name
        tokenizer_json, tokenizer_cfg = build(name)
        for fname, text in (("tokenizer.json", tokenizer_json), ("tokenizer_config.json", tokenizer_cfg)):
            path = folder / fname
            old = path.read_text(encoding="utf-8") if path.exists() else None
            if old == text:
                continue
            changed.append(str(path))
            if not args.check:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    verb = "differ" if args.check else "written"
    print(f"{len(changed)} file(s) {verb}" + "".join(f"\n  {p}" for p in changed))
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
