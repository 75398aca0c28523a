"""The launcher (python -m sgl_kernel_ext.launch_server) applies the hook in processes SGLang spawns.

Checked with launcher_probe.py as the entry module: it spawns a child with the spawn start method, as
SGLang does for its scheduler, without starting a server. The fake extension stands in for the compiled
op (no GPU here); the plugin's entry point is never invoked (nothing calls load_plugins()), so whatever
is patched in the child was patched by the launcher.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from binding_report import CUDA_ONLY_BINDINGS

from sgl_kernel_ext.launch_server import DEFAULT_MODULE, split_argv
from sgl_kernel_ext.plugin import OURS, SWITCH_ENV
LAUNCH = ["-m", "sgl_kernel_ext.launch_server", "--run-module", "launcher_probe"]
RUNS = {
    "launcher": (LAUNCH, {}),
    "launcher, switch off": (LAUNCH, {SWITCH_ENV: "0"}),
    "no launcher": (["-m", "launcher_probe"], {}),
}


def test_split_argv():
    assert split_argv(["--model-path", "m", "--tp", "2"]) == (DEFAULT_MODULE, ["--model-path", "m", "--tp", "2"])
    assert split_argv(["--run-module", "sglang.bench_one_batch", "--model-path", "m"]) == (
        "sglang.bench_one_batch", ["--model-path", "m"])
    # Only as the first argument: anything later belongs to SGLang.
    assert split_argv(["--model-path", "m", "--run-module", "x"])[0] == DEFAULT_MODULE
    with pytest.raises(SystemExit):
        split_argv(["--run-module"])


@pytest.fixture(scope="module")
def probes():
    from sglang_subprocess import require_sglang, run

    require_sglang()

    with ThreadPoolExecutor(max_workers=len(RUNS)) as pool:
        futures = {name: pool.submit(run, args, env=env, timeout=600) for name, (args, env) in RUNS.items()}
        return {name: future.result() for name, future in futures.items()}


def probe(probes, name):
    ran = probes[name]
    assert ran.returncode == 0 and ran.result is not None, ran.describe()
    return ran.result


@pytest.mark.sglang
def test_launcher_patches_spawned_child(probes):
    launcher = probe(probes, "launcher")
    parent, child = launcher["parent"], launcher["child"]
    assert child["status"]["pid"] != parent["pid"]
    assert child["main_module"] == "sgl_kernel_ext.launch_server"  # how the child was reached
    for status in (parent, child["status_before_calls"]):
        assert (status["implementation"], status["mode"]) == (OURS, "launcher"), status
    target = child["status"]["target"]
    assert target in child["status_before_calls"]["patched"]  # active before the child's code ran
    assert "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe.moe_align_block_size" in (
        child["status_before_calls"]["patched"])
    assert set(child["not_bound_here"]) <= CUDA_ONLY_BINDINGS
    not_ours = {name: ran for name, ran in child["runs"].items() if ran != OURS}
    assert child["runs"] and not not_ours, not_ours
    assert child["status"]["calls"] == len(child["runs"])


@pytest.mark.sglang
def test_launcher_switch_off_reaches_child(probes):
    child = probe(probes, "launcher, switch off")["child"]
    assert child["status"]["mode"] == "launcher"
    assert child["status"]["implementation"] == "sglang" and child["status"]["patched"] == []
    assert all(ran.startswith("sglang") for ran in child["runs"].values()), child["runs"]


@pytest.mark.sglang
def test_without_launcher_child_is_untouched(probes):
    child = probe(probes, "no launcher")["child"]
    assert child["status"]["mode"] is None and child["status"]["patched"] == []
    assert all(ran.startswith("sglang") for ran in child["runs"].values()), child["runs"]


@pytest.mark.sglang
def test_launcher_runs_sglang_launch_server_by_default():
    from sglang_subprocess import require_sglang, run

    require_sglang()

    ran = run(["-m", "sgl_kernel_ext.launch_server", "--help"], timeout=300)
    assert ran.returncode == 0, ran.describe()
    assert "--model-path" in ran.stdout  # sglang.launch_server's own argument parser answered
