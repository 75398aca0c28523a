#!/usr/bin/env bash
# Install sglang 0.5.17 on a CPU-only torch for the plugin tests (tests/cpu, marker `sglang`), and fetch
# the 0.5.17 and 0.5.23 wheels that the patch and importer tests read (.cache/sglang-wheels/).
#
#   bash scripts/ci/install_sglang_cpu.sh          (PYTHON=... to pick the interpreter)
#
# sglang's own requirements are a CUDA stack (torch==2.11, flashinfer, sgl-kernel, ...), so sglang is
# installed with --no-deps, followed by the packages that `import sglang.srt.plugins` and the fused-MoE
# modules import. Those are resolved with a constraint that pins the installed torch, so pip can never
# swap the CPU torch for a CUDA one; the script checks that at the end.
set -euo pipefail

cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
SGLANG_VERSION=0.5.17
WHEEL_VERSIONS=(0.5.17 0.5.23)
WHEEL_DIR=.cache/sglang-wheels
pip_install() { "$PY" -m pip install --disable-pip-version-check --prefer-binary "$@"; }

torch_before=$("$PY" -c 'import torch; print(torch.__version__)')
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==${torch_before}" >"$constraints"

pip_install --no-deps "sglang==${SGLANG_VERSION}"

# What sglang imports on the way to sglang.srt.plugins and the fused-MoE modules (pins: sglang's own
# where it has one). The others come in as their dependencies, under the torch constraint.
pip_install -c "$constraints" \
  "apache-tvm-ffi==0.1.11" "openai==2.6.1" "transformers==5.12.1" "xgrammar==0.2.1" \
  aiohttp compressed-tensors dill einops gguf IPython loguru msgspec orjson partial_json_parser pillow \
  psutil pybase64 pydantic pyzmq requests sentencepiece starlette tqdm triton

# sglang/srt/utils/common.py does `from torchvision.io import decode_jpeg` at import. PyPI's Linux
# torchvision wheels are CUDA builds; from 0.18 on their import fails on a CPU torch
# (register_fake("torchvision::nms") needs the C ops). 0.16.2 imports without its C ops (it warns), and
# nothing on the tested paths calls it. --no-deps: its metadata pins torch 2.1.
pip_install --no-deps "torchvision==0.16.2"

# The tests discover the plugin through its installed entry point. Register it if it is not (editable,
# pure Python: the kernel is not built here).
if ! "$PY" -c 'import sys; from importlib.metadata import entry_points as e; sys.exit(not any(p.name == "sgl_kernel_ext" for p in e(group="sglang.srt.plugins")))'; then
  SGL_KERNEL_EXT_NO_BUILD=1 pip_install --no-deps --no-build-isolation -e .
fi

torch_after=$("$PY" -c 'import torch; print(torch.__version__)')
if [[ "$torch_after" != "$torch_before" ]]; then
  echo "install_sglang_cpu.sh: torch changed from $torch_before to $torch_after" >&2
  exit 1
fi

# Wheels for tests/cpu/test_patches.py and the 0.5.23 importer test. Best effort: those tests skip,
# naming the reason, when the wheels are missing.
mkdir -p "$WHEEL_DIR"
for v in "${WHEEL_VERSIONS[@]}"; do
  if ! compgen -G "$WHEEL_DIR/sglang-$v-*.whl" >/dev/null; then
    "$PY" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: -d "$WHEEL_DIR" "sglang==$v" ||
      echo "install_sglang_cpu.sh: could not download the sglang $v wheel; its tests will skip" >&2
  fi
done

"$PY" -W ignore -c "import sglang.srt.plugins, sglang.srt.layers.moe.fused_moe_triton; print('sglang', '${SGLANG_VERSION}', 'imports on torch', '${torch_after}')"
