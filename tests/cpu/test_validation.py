"""Host-side argument checks and the no-GPU report (no GPU needed)."""

import pytest
import torch

import sgl_kernel_ext
from sgl_kernel_ext import ops


def _bufs(numel=16, buckets=9, block=4, device="cpu"):
    from sgl_kernel_ext.reference import required_sizes

    n, m = required_sizes(numel, buckets, block)
    return [torch.empty(k, dtype=torch.int32, device=device) for k in (n, m, 1, buckets + 1)]


def _args(**over):
    args = dict(topk_ids=torch.zeros(4, 4, dtype=torch.int32), num_experts=9, block_size=4)
    args.update(over)
    return args, _bufs(args["topk_ids"].numel(), args["num_experts"], args["block_size"])


def _check(args, bufs):
    ops.check_args(args["topk_ids"], args["num_experts"], args["block_size"], *bufs)


def test_cpu_tensor_is_rejected_naming_the_device():
    args, bufs = _args()
    with pytest.raises(ValueError, match="topk_ids must be on a GPU.*cpu"):
        _check(args, bufs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int16, torch.uint8, torch.bool])
def test_bad_id_dtype(dtype):
    args, bufs = _args(topk_ids=torch.zeros(4, 4, dtype=dtype))
    with pytest.raises(TypeError, match=f"int32 or int64, got {dtype}"):
        _check(args, bufs)


def test_not_a_tensor():
    with pytest.raises(TypeError, match="topk_ids must be a torch.Tensor"):
        ops.check_args([[1, 2]], 9, 4, *_bufs())


def _on_fake_gpu(monkeypatch):
    """Let the device check pass on CPU tensors, to reach the later checks."""
    monkeypatch.setattr(torch.Tensor, "device", property(lambda t: torch.device("cuda", 0)))


@pytest.mark.parametrize("experts,match", [(0, "num_experts = 0"), (-3, "num_experts = -3"),
                                           (ops.MAX_NUM_EXPERTS + 1, f"num_experts = {ops.MAX_NUM_EXPERTS + 1}")])
def test_num_experts_range(monkeypatch, experts, match):
    _on_fake_gpu(monkeypatch)
    with pytest.raises(ValueError, match=match):
        ops.check_args(torch.zeros(4, 4, dtype=torch.int32), experts, 4, *_bufs())


def test_block_size_and_types(monkeypatch):
    _on_fake_gpu(monkeypatch)
    ids = torch.zeros(4, 4, dtype=torch.int32)
    with pytest.raises(ValueError, match="block_size = 0"):
        ops.check_args(ids, 9, 0, *_bufs())
    with pytest.raises(TypeError, match="block_size must be an int"):
        ops.check_args(ids, 9, 4.0, *_bufs())
    with pytest.raises(TypeError, match="num_experts must be an int"):
        ops.check_args(ids, True, 4, *_bufs())


def test_non_contiguous_ids(monkeypatch):
    _on_fake_gpu(monkeypatch)
    ids = torch.zeros(4, 8, dtype=torch.int32)[:, ::2]
    with pytest.raises(ValueError, match="topk_ids must be contiguous"):
        ops.check_args(ids, 9, 4, *_bufs())


@pytest.mark.parametrize("which,name", [(0, "sorted_token_ids"), (1, "experts_ids"), (2, "num_tokens_post_pad"),
                                        (3, "cumsum_buffer")])
def test_small_or_bad_buffers(monkeypatch, which, name):
    _on_fake_gpu(monkeypatch)
    ids = torch.zeros(4, 4, dtype=torch.int32)
    bufs = _bufs()
    small = list(bufs)
    small[which] = bufs[which][:0]
    with pytest.raises(ValueError, match=f"{name} holds 0 elements"):
        ops.check_args(ids, 9, 4, *small)
    wrong = list(bufs)
    wrong[which] = bufs[which].to(torch.int64)
    with pytest.raises(TypeError, match=f"{name} must be int32"):
        ops.check_args(ids, 9, 4, *wrong)
    strided = list(bufs)
    strided[which] = torch.empty(bufs[which].numel() * 2 + 2, dtype=torch.int32)[::2]
    with pytest.raises(ValueError, match=f"{name} must be contiguous"):
        ops.check_args(ids, 9, 4, *strided)


def test_too_many_ids(monkeypatch):
    _on_fake_gpu(monkeypatch)
    big = torch.empty(0, dtype=torch.int32)  # reports 2**31 elements without allocating them
    monkeypatch.setattr(torch.Tensor, "numel", lambda t: 2**31 if t is big else t.nelement())
    with pytest.raises(ValueError, match="must be < 2\\*\\*31"):
        ops.check_args(big, 9, 4, *_bufs())


def test_empty_input_is_valid(monkeypatch):
    _on_fake_gpu(monkeypatch)
    ops.check_args(torch.zeros(0, 8, dtype=torch.int32), 9, 4, *_bufs(numel=0))


def test_check_ids_names_the_bad_value():
    with pytest.raises(ValueError, match="outside \\[-1, 7\\].*first: 8"):
        ops.check_ids(torch.tensor([[0, 8]]), 9)
    ops.check_ids(torch.tensor([[-1, 7]]), 9)


def test_load_reports_missing_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(sgl_kernel_ext.ExtensionUnavailable, match="needs an NVIDIA .* or AMD .* GPU; torch sees none"):
        ops._jit_build()


def test_public_call_on_cpu_raises_value_error_not_build_error():
    args, bufs = _args()
    with pytest.raises(ValueError, match="on a GPU"):
        sgl_kernel_ext.moe_align_block_size(args["topk_ids"], 9, 4, *bufs)


def test_cli_info_reports_no_gpu(capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    import sys

    from sgl_kernel_ext.__main__ import main

    ops.load.cache_clear()
    monkeypatch.setattr(sys, "argv", ["sgl_kernel_ext", "info"])
    assert main() == 1
    assert "torch sees none" in capsys.readouterr().out
