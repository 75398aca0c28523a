"""Test scaffold for tests/cpu: stand in for sgl_kernel_ext's compiled op on a machine without a GPU.

Python imports ``sitecustomize`` at start-up, so with this folder on PYTHONPATH every process of a test's
process tree, spawned children included, has the stand-in before any other code runs. It replaces our
own functions (``sgl_kernel_ext.ops.load`` and ``ops.moe_align_for_fused_moe``), never SGLang's.

SGL_KERNEL_EXT_TEST_FAKE_EXTENSION=working  load() succeeds; the kernel returns a tagged tuple
SGL_KERNEL_EXT_TEST_FAKE_EXTENSION=broken   load() raises ExtensionUnavailable, as with no GPU
"""

import os

FAKE_RESULT_TAG = "sgl_kernel_ext-fake-kernel"
MODE = os.environ.get("SGL_KERNEL_EXT_TEST_FAKE_EXTENSION", "")

if MODE:
    from sgl_kernel_ext import ops

    def load() -> str:
        if MODE == "broken":
            raise ops.ExtensionUnavailable("simulated by tests/cpu/fake_extension: no GPU here")
        return "fake"

    def moe_align_for_fused_moe(topk_ids, block_size, num_experts, ignore_invalid_expert=False):
        return FAKE_RESULT_TAG, block_size, num_experts, ignore_invalid_expert

    ops.load = load
    ops.moe_align_for_fused_moe = moe_align_for_fused_moe
