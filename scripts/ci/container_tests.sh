#!/usr/bin/env bash
# Default command of Dockerfile.cuda / Dockerfile.rocm: the GPU and e2e tests,
#   python3 -m pytest tests/gpu tests/e2e
# after checking that the container sees a GPU (a forgotten --gpus all or
# --device=/dev/kfd would otherwise make every GPU test skip and "pass").
# Extra arguments go to pytest. Exit status: pytest's; "no tests collected" (5)
# counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

python3 - <<'EOF'
import sys

import torch

import sgl_kernel_ext

backend = f"ROCm {torch.version.hip}" if torch.version.hip else f"CUDA {torch.version.cuda}"
print(f"torch {torch.__version__} ({backend}), sgl-kernel-ext {sgl_kernel_ext.__version__}")
try:
    import sglang

    print(f"sglang {sglang.__version__}")
except ImportError:
    print("sglang: not installed")
if not torch.cuda.is_available():
    print(
        "no GPU visible in the container: run it with --gpus all (CUDA) or "
        "--device=/dev/kfd --device=/dev/dri --group-add video (ROCm)",
        file=sys.stderr,
    )
    sys.exit(1)
for i in range(torch.cuda.device_count()):
    print(f"device {i}: {torch.cuda.get_device_name(i)}")
print(f"kernel: {sgl_kernel_ext.load()} build")
EOF

paths=()
for d in tests/gpu tests/e2e; do
  if [ -d "$d" ]; then paths+=("$d"); else echo "note: $d not present in this image; skipping it"; fi
done
rc=0
python3 -m pytest "${paths[@]}" -rs "$@" || rc=$?
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: counting that as a failure" >&2
  exit 5
fi
exit "$rc"
