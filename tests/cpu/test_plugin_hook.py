"""The hook's decisions and the plugin's bookkeeping, in this process, without sglang.

``align_hook`` gets a stand-in for SGLang's function and ``ops.moe_align_for_fused_moe`` is replaced by
a recorder; each test gets a fresh plugin state.
"""

from __future__ import annotations

import json
import logging

import pytest

from sgl_kernel_ext import ops, plugin, sglang_compat

OURS_TAG = "ours"


@pytest.fixture
def state(monkeypatch):
    fresh = plugin._ProcessState()
    monkeypatch.setattr(plugin, "_state", fresh)
    for name in (plugin.SWITCH_ENV, plugin.STATUS_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    return fresh


@pytest.fixture
def kernel(monkeypatch):
    calls = []

    def moe_align_for_fused_moe(topk_ids, block_size, num_experts, ignore_invalid_expert=False):
        calls.append((topk_ids, block_size, num_experts, ignore_invalid_expert))
        return OURS_TAG

    monkeypatch.setattr(ops, "moe_align_for_fused_moe", moe_align_for_fused_moe)
    return calls


def sglangs(topk_ids, block_size, num_experts, ignore_invalid_expert=False, *, return_inactive_prefix_count=False,
            pad_expert_ids=False):
    """Stands in for SGLang 0.5.23's wrapper."""
    return "sglang"


@pytest.mark.parametrize("args, kwargs, expected", [
    (("ids", 64, 256), {}, ("ids", 64, 256, False)),
    (("ids", 64, 256, True), {}, ("ids", 64, 256, True)),
    (("ids",), {"block_size": 64, "num_experts": 256, "ignore_invalid_expert": True}, ("ids", 64, 256, True)),
    (("ids", 64, 256), {"return_inactive_prefix_count": False, "pad_expert_ids": False}, ("ids", 64, 256, False)),
    (("ids", 64, 256), {"return_inactive_prefix_count": True}, None),
    (("ids", 64, 256), {"pad_expert_ids": True}, None),
    (("ids", 64, 256), {"some_future_flag": False}, None),  # unknown meaning, even when false
])
def test_our_call(args, kwargs, expected):
    assert plugin._our_call(*args, **kwargs) == expected


def test_hook_runs_ours_and_counts(state, kernel):
    assert plugin.align_hook(sglangs, "ids", 64, 256) == OURS_TAG
    assert plugin.align_hook(sglangs, "ids", 64, 256, True) == OURS_TAG
    assert [c[1:] for c in kernel] == [(64, 256, False), (64, 256, True)]
    assert (state.calls, state.fallback_calls) == (2, 0)


@pytest.mark.parametrize("args, kwargs", [
    (("ids", 64, 256), {"return_inactive_prefix_count": True}),
    (("ids", 64, 256), {"pad_expert_ids": True}),
    (("ids", 64, 256, False, "extra"), {}),
    (("ids",), {}),
])
def test_hook_hands_other_calls_to_sglang(state, kernel, args, kwargs):
    seen = []

    def original(*a, **kw):
        seen.append((a, kw))
        return "sglang"

    assert plugin.align_hook(original, *args, **kwargs) == "sglang"
    assert seen == [(args, kwargs)] and not kernel  # passed on exactly as given
    assert (state.calls, state.fallback_calls) == (0, 1)


def test_hook_leaves_experimental_lora_path_to_sglang(state, kernel):
    state.wrapper_globals = {sglang_compat.LORA_OPTI_GLOBAL: True}
    assert plugin.align_hook(sglangs, "ids", 64, 256) == "sglang" and not kernel


def test_kernel_error_falls_back_and_warns_once(state, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(ops, "moe_align_for_fused_moe", broken)
    with caplog.at_level(logging.WARNING, logger=plugin.__name__):
        assert plugin.align_hook(sglangs, "ids", 64, 256) == "sglang"
        assert plugin.align_hook(sglangs, "ids", 64, 256) == "sglang"
    assert (state.kernel_errors, state.fallback_calls, state.calls) == (2, 2, 0)
    assert len([r for r in caplog.records if "kernel exploded" in r.getMessage()]) == 1


def test_first_call_rewrites_status_file(state, kernel, monkeypatch, tmp_path):
    monkeypatch.setenv(plugin.STATUS_DIR_ENV, str(tmp_path / "status"))
    state.implementation = plugin.OURS
    plugin.align_hook(sglangs, "ids", 64, 256)
    (written,) = (tmp_path / "status").iterdir()
    first = json.loads(written.read_text())
    assert written.name == f"{first['pid']}.json" and first["calls"] == 1
    assert {"pid", "argv", "implementation", "reason", "patched", "calls"} <= set(first)
    plugin.align_hook(sglangs, "ids", 64, 256)
    assert json.loads(written.read_text())["calls"] == 1  # written on the first call only


@pytest.mark.parametrize("value", ["0", "off", "false", "No"])
def test_switch_off_values(state, monkeypatch, value):
    monkeypatch.setenv(plugin.SWITCH_ENV, value)
    plugin.register()
    assert (state.implementation, state.reason) == ("sglang", f"{plugin.SWITCH_ENV}={value}")


def test_register_never_raises(state, monkeypatch, caplog):
    def explode(version=None):
        raise ZeroDivisionError("inside the plugin")

    monkeypatch.setattr(sglang_compat, "align_wrapper", explode)
    with caplog.at_level(logging.WARNING, logger=plugin.__name__):
        plugin.register()
    assert state.implementation == "sglang" and "ZeroDivisionError: inside the plugin" in state.reason
    assert [r.levelno for r in caplog.records if "inside the plugin" in r.getMessage()] == [logging.WARNING]


def test_extension_failure_falls_back(state, monkeypatch):
    monkeypatch.setattr(sglang_compat, "align_wrapper", lambda version=None: sglang_compat.SGLANG_0_5_17)

    def load():
        raise ops.ExtensionUnavailable("no GPU (simulated)")

    monkeypatch.setattr(ops, "load", load)
    plugin.register()
    assert state.implementation == "sglang" and "no GPU (simulated)" in state.reason


def test_activates_once_per_process(state, monkeypatch):
    monkeypatch.setenv(plugin.SWITCH_ENV, "0")
    plugin.register()
    monkeypatch.setenv(plugin.SWITCH_ENV, "1")
    plugin.activate_for_launcher()  # a second path in the same process does nothing
    assert state.mode == "plugin" and state.implementation == "sglang"


def test_status_without_plugin(state):
    got = plugin.status()
    assert got["implementation"] == "sglang" and got["patched"] == [] and got["calls"] == 0
    assert got["mode"] is None and "has not run" in got["reason"]
