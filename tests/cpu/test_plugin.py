"""The plugin against the real sglang: load_plugins() swaps the align wrapper for every importer.

Each scenario runs in a fresh interpreter (sglang_subprocess) through binding_report.py, with the fake
extension standing in for the compiled op (no GPU here). sglang 0.5.17 is the installed one
(scripts/ci/install_sglang_cpu.sh); 0.5.23 is its unpacked wheel put ahead of it on PYTHONPATH. The
scenarios are independent, so they run side by side once per module and the tests read their reports.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import sglang_wheels
from binding_report import CUDA_ONLY_BINDINGS
from importer_scan import scan
from sglang_subprocess import require_sglang, run

from sgl_kernel_ext import plugin, sglang_compat
from sgl_kernel_ext.plugin import OURS
from sgl_kernel_ext.plugin import STATUS_DIR_ENV as STATUS_DIR
from sgl_kernel_ext.plugin import SWITCH_ENV as SWITCH

SGLANG_ROOT = require_sglang()  # skips the module without sglang (not imported here: see there)

pytestmark = pytest.mark.sglang


@dataclass
class Scenario:
    version: str
    order: str  # binding_report ORDER
    env: dict = field(default_factory=dict)
    fake_extension: str = "working"
    variants: dict = field(default_factory=dict)  # binding_report VARIANTS_JSON
    status_dir: bool = False  # give the child SGL_KERNEL_EXT_STATUS_DIR


SCENARIOS = {
    "0.5.17 importers-first": Scenario("0.5.17", "importers-first"),
    "0.5.17 plugins-first": Scenario("0.5.17", "plugins-first", status_dir=True,
                                     variants={"unknown argument": {"no_such_flag": True}}),
    "0.5.23 importers-first": Scenario("0.5.23", "importers-first"),
    "0.5.23 plugins-first": Scenario("0.5.23", "plugins-first", variants={
        "flag set": {"return_inactive_prefix_count": True},
        "flags at default": {"return_inactive_prefix_count": False, "pad_expert_ids": False}}),
    "switch off": Scenario("0.5.17", "importers-first", env={SWITCH: "0"}, status_dir=True),
    "broken extension": Scenario("0.5.17", "plugins-first", fake_extension="broken"),
    "allow-list without us": Scenario("0.5.17", "plugins-first", env={"SGLANG_PLUGINS": "some_other_plugin"}),
    "allow-list with us": Scenario("0.5.17", "plugins-first",
                                   env={"SGLANG_PLUGINS": "some_other_plugin, sgl_kernel_ext"}),
    "experimental LoRA path": Scenario("0.5.17", "plugins-first", env={"SGLANG_EXPERIMENTAL_LORA_OPTI": "1"}),
}


@pytest.fixture(scope="module")
def plugin_entry_point():
    """load_plugins() finds plugins through installed entry points: ours must be registered."""
    ours = plugin.installed_entry_point()
    assert ours, ("sgl_kernel_ext's entry point (group sglang.srt.plugins) is not installed: "
                  "`pip install --no-deps --no-build-isolation -e .` or bash scripts/ci/install_sglang_cpu.sh")
    return ours


@pytest.fixture(scope="module")
def reports(plugin_entry_point, tmp_path_factory):
    """{scenario name: Ran, or the reason it cannot run here}."""
    outcomes, jobs = {}, {}
    for name, sc in SCENARIOS.items():
        try:
            root = sglang_wheels.sglang_root(sc.version)
        except pytest.skip.Exception as skipped:
            outcomes[name] = str(skipped)
            continue
        env = dict(sc.env)
        if sc.status_dir:
            env[STATUS_DIR] = str(tmp_path_factory.mktemp("status"))
        args = ["-m", "binding_report", sc.order] + ([json.dumps(sc.variants)] if sc.variants else [])
        jobs[name] = (args, env, sc.fake_extension, root)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        futures = {name: pool.submit(run, a, env=e, fake_extension=f, sglang_root=r, timeout=600)
                   for name, (a, e, f, r) in jobs.items()}
        outcomes.update({name: future.result() for name, future in futures.items()})
    return outcomes


def scenario(reports, name: str):
    """The named scenario's report (its Ran); skips when it could not run here."""
    ran = reports[name]
    if isinstance(ran, str):
        pytest.skip(ran)
    assert ran.returncode == 0 and ran.result is not None, ran.describe()
    assert ran.result["sglang_version"] == SCENARIOS[name].version, ran.describe()
    return ran


def assert_sglang_untouched(result):
    assert result["wrapper_module_is_sglangs_own"]
    assert all(result["same_object_as_wrapper_module"].values())
    assert all(ran.startswith("sglang") for ran in result["runs"].values()), result["runs"]
    assert result["status"]["patched"] == [] and result["status"]["calls"] == 0


# ---------------------------------------------------------------------------------------------------
# The version facts are complete


def test_importer_facts_match_installed_sglang():
    version = sglang_compat.installed_sglang_version()
    if version not in sglang_compat.PINNED:
        pytest.skip(f"installed sglang {version} is not one of the pinned {sorted(sglang_compat.PINNED)}")
    wrapper = sglang_compat.PINNED[version]
    assert scan(SGLANG_ROOT, wrapper.module) == set(wrapper.importers)


@pytest.mark.parametrize("version", sglang_wheels.PINNED_VERSIONS)
def test_importer_facts_match_wheel(version):
    wrapper = sglang_compat.PINNED[version]
    assert scan(sglang_wheels.unpacked(version), wrapper.module) == set(wrapper.importers)


# ---------------------------------------------------------------------------------------------------
# load_plugins() swaps the function for every importer


@pytest.mark.parametrize("name", ["0.5.17 importers-first", "0.5.17 plugins-first",
                                  "0.5.23 importers-first", "0.5.23 plugins-first"])
def test_load_plugins_swaps_every_importer(reports, name):
    result = scenario(reports, name).result
    wrapper = sglang_compat.PINNED[SCENARIOS[name].version]
    after_load = result["status_after_load"]
    assert (after_load["implementation"], after_load["mode"], after_load["build"]) == (OURS, "plugin", "fake")
    assert after_load["target"] == wrapper.target and after_load["applied"]
    if SCENARIOS[name].order == "importers-first":  # modules holding a stale copy were rebound
        stale = {f"{i.module}.{i.bound_name}" for i in wrapper.importers if i.at_import} - CUDA_ONLY_BINDINGS
        assert stale <= set(after_load["patched"]), after_load["patched"]

    assert set(result["not_bound_here"]) <= CUDA_ONLY_BINDINGS
    assert set(result["runs"]) == {f"{i.module}.{i.bound_name}" for i in wrapper.importers}
    assert all(result["same_object_as_wrapper_module"].values()), result["same_object_as_wrapper_module"]
    not_ours = {importer: ran for importer, ran in result["runs"].items() if ran != OURS}
    assert not not_ours, not_ours
    assert result["wrapper_module_runs"] == OURS and not result["wrapper_module_is_sglangs_own"]
    final = result["status"]
    assert final["calls"] == len(result["runs"]) + 1 and final["fallback_calls"] == 0
    assert f"{wrapper.module}.moe_align_block_size" in final["patched"]


# ---------------------------------------------------------------------------------------------------
# Off switch, broken extension, SGLANG_PLUGINS


def test_switch_off_leaves_sglang_untouched(reports):
    result = scenario(reports, "switch off").result
    assert result["status"]["implementation"] == "sglang"
    assert result["status"]["reason"] == f"{SWITCH}=0"
    assert_sglang_untouched(result)


def test_broken_extension_falls_back_with_warning(reports):
    ran = scenario(reports, "broken extension")
    status = ran.result["status"]
    assert status["implementation"] == "sglang" and status["mode"] == "plugin"
    assert "simulated" in status["reason"]
    assert "WARNING sgl_kernel_ext" in ran.stderr and "simulated" in ran.stderr, ran.stderr
    assert_sglang_untouched(ran.result)


def test_sglang_plugins_allow_list_without_us(reports):
    result = scenario(reports, "allow-list without us").result
    assert result["status"]["mode"] is None, "SGLang's loader ran our plugin although SGLANG_PLUGINS leaves it out"
    assert_sglang_untouched(result)


def test_sglang_plugins_allow_list_with_us(reports):
    result = scenario(reports, "allow-list with us").result
    assert result["status"]["implementation"] == OURS
    assert set(result["runs"].values()) == {OURS}


# ---------------------------------------------------------------------------------------------------
# Calls we leave to SGLang


def test_unimplemented_flag_goes_to_sglang_0_5_23(reports):
    variant = scenario(reports, "0.5.23 plugins-first").result["variant_runs"]["flag set"]
    # SGLang's own function ran: on CPU it rejects the flag with its own message.
    assert all("Inactive-prefix counts require CUDA" in ran for ran in variant["runs"].values()), variant
    assert variant["calls"] == 0 and variant["fallback_calls"] == len(variant["runs"])


def test_flags_left_at_default_use_ours_0_5_23(reports):
    variant = scenario(reports, "0.5.23 plugins-first").result["variant_runs"]["flags at default"]
    assert set(variant["runs"].values()) == {OURS} and variant["fallback_calls"] == 0


def test_unknown_argument_goes_to_sglang(reports):
    variant = scenario(reports, "0.5.17 plugins-first").result["variant_runs"]["unknown argument"]
    assert all("unexpected keyword argument 'no_such_flag'" in ran for ran in variant["runs"].values()), variant
    assert variant["calls"] == 0


def test_experimental_lora_path_goes_to_sglang(reports):
    result = scenario(reports, "experimental LoRA path").result
    assert result["status"]["implementation"] == OURS  # hooked, but every call is handed back
    assert all(ran.startswith("sglang") for ran in result["runs"].values()), result["runs"]
    assert result["status"]["calls"] == 0 and result["status"]["fallback_calls"] == len(result["runs"]) + 1


# ---------------------------------------------------------------------------------------------------
# Status files


def test_status_file_written_when_applied_and_on_first_call(reports):
    ran = scenario(reports, "0.5.17 plugins-first")
    pid = ran.result["status"]["pid"]
    at_load = ran.result["status_file_after_load"]
    assert at_load is not None, "no status file after load_plugins()"
    assert at_load["pid"] == pid and at_load["implementation"] == OURS and at_load["calls"] == 0
    assert not at_load["applied"]  # written by register(); SGLang applies the hook right after
    assert "plugins-first" in at_load["argv"]
    status_dir = Path(ran.env[STATUS_DIR])
    assert [p.name for p in status_dir.iterdir()] == [f"{pid}.json"]
    at_first_call = json.loads((status_dir / f"{pid}.json").read_text())
    assert at_first_call["calls"] == 1 and at_first_call["applied"]
    assert "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe.moe_align_block_size" in at_first_call["patched"]
    assert {"pid", "argv", "implementation", "reason", "patched", "calls"} <= set(at_first_call)


def test_status_file_on_fallback(reports):
    ran = scenario(reports, "switch off")
    written = json.loads((Path(ran.env[STATUS_DIR]) / f"{ran.result['status']['pid']}.json").read_text())
    assert written["implementation"] == "sglang" and written["reason"] == f"{SWITCH}=0"
    assert written["calls"] == 0 and written["patched"] == []
