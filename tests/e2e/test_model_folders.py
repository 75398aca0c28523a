"""CPU checks of the e2e model folders and of the pure-Python parts of the e2e scripts.

These run without a GPU and without sglang (conftest.py skips only the engine tests), so a
broken config, tokenizer or helper shows up before any GPU time is spent.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DSV3 = HERE / "models" / "deepseek-v3-3l"
QWEN = HERE / "models" / "qwen3-moe-a3b-like"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def cfg(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def test_deepseek_v3_config_has_the_real_dimensions():
    c = cfg(DSV3)
    assert c["architectures"] == ["DeepseekV3ForCausalLM"] and c["model_type"] == "deepseek_v3"
    real = dict(hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048, n_routed_experts=256,
                num_experts_per_tok=8, n_group=8, topk_group=4, n_shared_experts=1, q_lora_rank=1536,
                kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                num_attention_heads=128, num_key_value_heads=128, vocab_size=129280, routed_scaling_factor=2.5,
                scoring_func="sigmoid", topk_method="noaux_tc", norm_topk_prob=True, moe_layer_freq=1,
                max_position_embeddings=163840)
    assert {k: c[k] for k in real} == real
    assert c["num_hidden_layers"] == 3 and c["first_k_dense_replace"] == 1
    assert "quantization_config" not in c


def test_qwen3_moe_config_is_a3b_like():
    c = cfg(QWEN)
    assert c["architectures"] == ["Qwen3MoeForCausalLM"] and c["model_type"] == "qwen3_moe"
    real = dict(hidden_size=2048, num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768,
                num_attention_heads=32, num_key_value_heads=4, head_dim=128, vocab_size=151936,
                decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True)
    assert {k: c[k] for k in real} == real
    assert c["num_hidden_layers"] == 12
    assert "quantization_config" not in c


@pytest.mark.parametrize("folder", [DSV3, QWEN], ids=lambda p: p.name)
def test_tiny_tokenizer(folder):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    tc = json.loads((folder / "tokenizer_config.json").read_text())
    assert tc["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert not (folder / "generation_config.json").exists()
    vocab = tok.get_vocab(with_added_tokens=True)
    assert 256 < len(vocab) <= 1000
    assert max(vocab.values()) < cfg(folder)["vocab_size"]
    for name in ("bos_token", "eos_token", "pad_token"):
        if tc.get(name):
            assert tc[name] in vocab, name
    text = "The capital of France is Paris. 0123456789 {}[]"
    assert tok.decode(tok.encode(text).ids) == text


@pytest.mark.parametrize("folder", [DSV3, QWEN], ids=lambda p: p.name)
def test_transformers_loads_the_folder(folder):
    transformers = pytest.importorskip("transformers")
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = cfg(folder)["model_type"]
    if model_type not in CONFIG_MAPPING_NAMES:
        pytest.skip(f"transformers {transformers.__version__} does not know {model_type}")
    c = transformers.AutoConfig.from_pretrained(str(folder))
    t = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert c.num_hidden_layers == cfg(folder)["num_hidden_layers"]
    assert t.eos_token_id is not None and t.eos_token_id < c.vocab_size
    assert t.decode(t.encode("hello world", add_special_tokens=False)) == "hello world"
    # ids the model may emit but the tokenizer does not know decode to nothing, not to an error
    t.batch_decode([[c.vocab_size - 1, 100_000]], skip_special_tokens=True)


def test_bench_e2e_model_arithmetic(tmp_path):
    b = _load(REPO / "scripts" / "bench_e2e.py", "bench_e2e_under_test")
    assert b.moe_layer_count(cfg(DSV3)) == 2
    assert b.routed_shape(cfg(DSV3)) == (257, 9, 2048)  # shared expert fused at TP 1
    assert b.moe_layer_count(cfg(QWEN)) == 12
    assert b.routed_shape(cfg(QWEN)) == (128, 8, 768)
    folder, c = b.model_folder("qwen3-moe", 24, tmp_path)
    assert c["num_hidden_layers"] == 24 and b.moe_layer_count(c) == 24
    assert (folder / "tokenizer.json").exists() and folder != QWEN
    assert b.model_folder("deepseek-v3", None, tmp_path)[0] == DSV3
    got = b.per_length([(4096, 0.06), (16384, 0.5), (4096, 0.05), (16384, 0.4), (4096, 0.07)],
                       [4096, 16384] * 3)  # the first of each length is dropped, the median of the rest kept
    assert got == {4096: {"latency_s": [0.06, 0.05, 0.07], "tok_s": pytest.approx(4096 / 0.06)},
                   16384: {"latency_s": [0.5, 0.4], "tok_s": pytest.approx(16384 / 0.4)}}
    # lengths by position when the values came from the log (marked -1)
    assert b.per_length([(-1, 0.06), (-1, 0.5)], [4096, 16384])[16384]["tok_s"] == pytest.approx(16384 / 0.5)
    assert abs(b.gain_from_saving(100.0, 100_100.0) - 0.1) < 1e-9
    rows = [{"routing": "DeepSeek-V3", "dist": "uniform", "block_size": 64, "tokens": t, "ours_graph_us": 10.0,
             "upstream_graph_us": 10.0 + t / 1000, "ours_eager_us": None, "upstream_eager_us": None}
            for t in (4096, 16384)]
    d = b.kernel_delta(rows, "DeepSeek-V3", 16384, 64)
    assert d["tokens_row"] == 16384 and abs(d["delta_graph_us"] - 16.384) < 1e-9
    assert b.kernel_delta(rows, "DeepSeek-V3", 16384, 128) is None


def test_run_engine_helper_is_deterministic():
    r = _load(HERE / "run_engine.py", "run_engine_under_test")
    assert r.make_prompt(2048, 0) == r.make_prompt(2048, 0) != r.make_prompt(2048, 1)
    assert all(r.ID_LOW <= i < r.ID_HIGH for i in r.make_prompt(16384, 0))
    args = r.parse_args(["--model-dir", str(DSV3), "--out", "x.json", "--moe-gain", "1e9"])
    kw = r.engine_kwargs(args)
    assert json.loads(kw["json_model_override_args"]) == {"routed_scaling_factor": 2.5e9}
    assert kw["load_format"] == "dummy" and kw["disable_radix_cache"] and kw["chunked_prefill_size"] == 16384
    assert "json_model_override_args" not in r.engine_kwargs(r.parse_args(["--model-dir", str(DSV3), "--out", "x"]))
    assert r.hexf(None) is None and float.fromhex(r.hexf(-11.5)) == -11.5
