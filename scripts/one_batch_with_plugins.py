"""``python -m sglang.bench_one_batch``, but with SGLang's general plugins loaded first.

sglang 0.5.17's bench_one_batch runs the model in its own process and never calls
``sglang.srt.plugins.load_plugins()`` (only the engine, the scheduler processes and
the server launchers do), so an installed plugin would not be active there. This
wrapper loads the plugins (ours included, as the scheduler process would), then
hands the command line to bench_one_batch unchanged:

    python scripts/one_batch_with_plugins.py --model-path DIR --load-format dummy ...

Any bench_one_batch argument works; scripts/bench_e2e.py starts one of these per run.

It also seeds numpy's global generator (``SGL_KERNEL_EXT_BENCH_SEED``, default 0):
bench_one_batch draws its synthetic prompts with ``np.random.randint`` and, without a
TP worker, never seeds it, so every process would otherwise route different tokens.
"""

from __future__ import annotations

import os
import random
import sys


def main() -> None:
    from sglang.srt.plugins import load_plugins

    load_plugins()
    import numpy as np

    seed = int(os.environ.get("SGL_KERNEL_EXT_BENCH_SEED", "0"))
    random.seed(seed)
    np.random.seed(seed)
    try:
        from sglang.benchmark.one_batch import cli_main
    except ImportError:  # older layout: the implementation in sglang.bench_one_batch itself
        from sglang.bench_one_batch import cli_main
    sys.argv[0] = "sglang.bench_one_batch"
    cli_main()


if __name__ == "__main__":
    main()
elif __name__ == "__mp_main__":  # a tensor-parallel worker that multiprocessing spawned from this file
    from sglang.srt.plugins import load_plugins

    load_plugins()
