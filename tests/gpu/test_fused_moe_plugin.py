"""SGLang's own Triton ``fused_experts`` gives bit-identical output with the plugin on and off.

DeepSeek-V3 MoE shapes: 256 experts, top-8 (grouped, sigmoid scores + correction bias, as the model
routes), hidden 7168, intermediate 2048, bf16, random weights (randn * 0.02), at 1, 512, 4096 and 16384
tokens. The plugin acts once per process, when ``load_plugins()`` runs, so each setting runs in its own
interpreter (this file run as a script) with ``SGL_KERNEL_EXT_MOE_ALIGN=1`` or ``0``; both build the same
inputs from the same seed and save inputs' top-k ids, outputs and the plugin's ``status()``. The test
then compares with ``torch.equal`` and checks that our kernel ran in the "on" process (``calls``) and not
in the "off" one.

    python -m pytest tests/gpu/test_fused_moe_plugin.py     (needs a GPU, sglang, this package installed)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

NUM_EXPERTS, TOP_K, N_GROUP, TOPK_GROUP = 256, 8, 8, 4
HIDDEN, INTERMEDIATE = 7168, 2048
TOKENS = (1, 512, 4096, 16384)
SEED = 1234
WORKER_TIMEOUT_S = 1800  # first runs compile Triton kernels for each shape

pytestmark = [pytest.mark.gpu, pytest.mark.sglang]


# ---------------------------------------------------------------------------------------------------
# Worker: one process, one switch setting


def deepseek_v3_routing(hidden, gate, correction_bias):
    """Top-8 of 256 experts in 4 of 8 groups, sigmoid scores + bias for the choice (noaux_tc), as
    DeepSeek-V3 routes (sglang's biased_grouped_topk_impl)."""
    logits = hidden.float() @ gate.float().t()
    scores = logits.sigmoid()
    choice = scores + correction_bias
    num_tokens = hidden.shape[0]
    group_scores = choice.view(num_tokens, N_GROUP, -1).topk(2, dim=-1).values.sum(dim=-1)
    groups = group_scores.topk(TOPK_GROUP, dim=-1, sorted=False).indices
    group_mask = torch.zeros_like(group_scores).scatter_(1, groups, 1)
    expert_mask = group_mask.repeat_interleave(NUM_EXPERTS // N_GROUP, dim=1).bool()
    topk_ids = choice.masked_fill(~expert_mask, float("-inf")).topk(TOP_K, dim=-1, sorted=False).indices
    topk_weights = scores.gather(1, topk_ids)
    topk_weights = topk_weights / topk_weights.sum(dim=-1, keepdim=True)
    return topk_weights.float(), topk_ids.to(torch.int32), logits


def publish_default_server_args() -> None:
    """fused_experts reads process-wide config that an engine publishes; outside one, publish defaults
    the way SGLang's own test kit does (0.5.17: runtime_context; older: the global server args)."""
    try:
        from sglang.srt.runtime_context import get_context
    except ImportError:
        from sglang.srt.server_args import ServerArgs, set_global_server_args_for_scheduler

        set_global_server_args_for_scheduler(ServerArgs(model_path="dummy"))
        return
    get_context().override_server_args().install()


def init_single_gpu_groups() -> None:
    """fused_experts asks for the TP group (symmetric-memory output): a world of one, as an engine at TP 1."""
    import socket

    from sglang.srt.distributed import init_distributed_environment, initialize_model_parallel

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="nccl",
                                 distributed_init_method=f"tcp://127.0.0.1:{port}")
    initialize_model_parallel(tensor_model_parallel_size=1)


def worker(out_dir: Path) -> None:
    from sglang.srt.plugins import load_plugins

    load_plugins()  # as every SGLang process does; our plugin reads SGL_KERNEL_EXT_MOE_ALIGN here
    publish_default_server_args()
    init_single_gpu_groups()

    from sglang.srt.layers.moe.fused_moe_triton import fused_experts
    from sglang.srt.layers.moe.moe_runner import MoeRunnerConfig
    from sglang.srt.layers.moe.topk import StandardTopKOutput

    from sgl_kernel_ext import plugin

    device = torch.device("cuda")
    gen = torch.Generator(device=device).manual_seed(SEED)

    def randn(*shape, scale):
        return torch.randn(*shape, generator=gen, device=device, dtype=torch.bfloat16).mul_(scale)

    w1 = randn(NUM_EXPERTS, 2 * INTERMEDIATE, HIDDEN, scale=0.02)  # gate and up projections
    w2 = randn(NUM_EXPERTS, HIDDEN, INTERMEDIATE, scale=0.02)
    gate = randn(NUM_EXPERTS, HIDDEN, scale=0.02)
    correction_bias = randn(NUM_EXPERTS, scale=0.01).float()
    hidden_all = randn(max(TOKENS), HIDDEN, scale=1.0)
    config = MoeRunnerConfig(num_experts=NUM_EXPERTS, num_local_experts=NUM_EXPERTS, top_k=TOP_K,
                             hidden_size=HIDDEN, intermediate_size_per_partition=INTERMEDIATE,
                             params_dtype=torch.bfloat16, activation="silu", is_gated=True, inplace=False)
    calls = {}
    for num_tokens in TOKENS:
        hidden = hidden_all[:num_tokens].contiguous()
        topk_weights, topk_ids, logits = deepseek_v3_routing(hidden, gate, correction_bias)
        before = plugin.status()["calls"]
        out = fused_experts(hidden, w1, w2, StandardTopKOutput(topk_weights, topk_ids, logits), config)
        torch.cuda.synchronize()
        calls[num_tokens] = plugin.status()["calls"] - before
        torch.save({"out": out.cpu(), "topk_ids": topk_ids.cpu()}, out_dir / f"tokens-{num_tokens}.pt")
    status = plugin.status()
    status["calls_per_size"] = calls
    (out_dir / "status.json").write_text(json.dumps(status, indent=1))


# ---------------------------------------------------------------------------------------------------
# Test


def run_worker(out_dir: Path, switch: str) -> dict:
    out_dir.mkdir(parents=True)
    from sgl_kernel_ext import plugin

    env = {**os.environ, plugin.SWITCH_ENV: switch}
    env.pop(plugin.STATUS_DIR_ENV, None)
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([repo] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    done = subprocess.run([sys.executable, __file__, "--worker", str(out_dir)], env=env, capture_output=True,
                          text=True, timeout=WORKER_TIMEOUT_S)
    assert done.returncode == 0, (f"worker with SGL_KERNEL_EXT_MOE_ALIGN={switch} failed:\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-8000:]}")
    return json.loads((out_dir / "status.json").read_text())


def load(out_dir: Path, num_tokens: int) -> dict:
    return torch.load(out_dir / f"tokens-{num_tokens}.pt")


def differences(a_dir: Path, b_dir: Path) -> dict:
    """{tokens: description} for every size whose outputs are not bit-identical."""
    found = {}
    for num_tokens in TOKENS:
        a, b = load(a_dir, num_tokens), load(b_dir, num_tokens)
        assert torch.equal(a["topk_ids"], b["topk_ids"]), f"{num_tokens} tokens: the two runs routed differently"
        if not torch.equal(a["out"], b["out"]):
            diff = (a["out"].float() - b["out"].float()).abs()
            found[num_tokens] = f"{int((diff > 0).sum())} elements differ, max |diff| {float(diff.max()):.3g}"
    return found


@pytest.fixture(scope="module")
def plugin_runs(tmp_path_factory):
    # Checked without importing sglang here: the workers import it, each in its own process.
    import importlib.util

    from sgl_kernel_ext import plugin

    spec = importlib.util.find_spec("sglang")
    if spec is None or not (Path(spec.origin).parent / "srt" / "plugins" / "hook_registry.py").exists():
        pytest.skip("needs sglang with its plugin framework (0.5.16 and later)")

    if plugin.installed_entry_point() is None:
        pytest.fail("sgl_kernel_ext's plugin entry point is not installed: `python -m pip install --no-build-isolation .`")
    base = tmp_path_factory.mktemp("fused_moe_plugin")
    return {switch: (base / switch, run_worker(base / switch, value)) for switch, value in (("on", "1"), ("off", "0"))}


def test_plugin_on_runs_our_kernel(plugin_runs):
    _, status = plugin_runs["on"]
    assert status["implementation"] == "sgl_kernel_ext", status
    assert status["calls_per_size"] == {str(n): 1 for n in TOKENS}, status  # one align per fused_experts
    assert status["fallback_calls"] == 0 and status["kernel_errors"] == 0, status


def test_plugin_off_leaves_sglang(plugin_runs):
    _, status = plugin_runs["off"]
    assert status["implementation"] == "sglang" and status["reason"] == "SGL_KERNEL_EXT_MOE_ALIGN=0", status
    assert status["calls"] == 0 and status["patched"] == [], status


def test_fused_experts_bit_identical_on_and_off(plugin_runs, tmp_path):
    (on_dir, _), (off_dir, _) = plugin_runs["on"], plugin_runs["off"]
    found = differences(on_dir, off_dir)
    if found:
        # Tell a difference our kernel makes from run-to-run noise in SGLang's path: a second "off" run.
        run_worker(tmp_path / "off-again", "0")
        control = differences(off_dir, tmp_path / "off-again")
        verdict = ("a second 'off' run matched the first, so the difference comes with the plugin" if not control
                   else f"two 'off' runs differ too ({control}): SGLang's path is not deterministic here")
        pytest.fail(f"fused_experts on vs off differ: {found}; {verdict}")


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker(Path(sys.argv[2]))
