"""The benchmark's plot on the runs its flags allow (no GPU: the rows are made up here, the plot is real)."""
import itertools

import pytest

from sgl_kernel_ext import bench

pytest.importorskip("matplotlib")


def _rows(models, tokens, blocks, dists, upstream=True):
    rows = []
    for i, (m, t, b, d) in enumerate(itertools.product(models, tokens, blocks, dists)):
        experts, topk = bench.MODELS[m]
        rows.append({"routing": m, "num_experts": experts, "topk": topk, "tokens": t, "block_size": b, "dist": d,
                     "ours_graph_us": 2.0 + i, "upstream_graph_us": 4.0 + i if upstream else None,
                     "ours_eager_us": 5.0 + i, "upstream_eager_us": 9.0 + i if upstream else None,
                     "correct": True})
    return rows


@pytest.mark.parametrize("models,tokens,blocks,dists,upstream", [
    (list(bench.MODELS), bench.TOKENS, bench.BLOCK_SIZES, bench.BENCH_DISTS, True),  # the full sweep
    (["Mixtral", "Qwen3-Next"], [16, 512], [16], ["uniform", "skewed"], True),  # no block 64 in the run
    (["Kimi-K2"], [2048], [128], ["skewed"], False),  # one model, one point, no uniform, no upstream
])
def test_plot_writes_a_png_for_any_subset(tmp_path, models, tokens, blocks, dists, upstream):
    path = tmp_path / "kernel.png"
    bench.plot(_rows(models, tokens, blocks, dists, upstream), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_no_rows_writes_nothing(tmp_path):
    bench.plot([], tmp_path / "kernel.png")
    assert not (tmp_path / "kernel.png").exists()
