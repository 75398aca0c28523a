"""Builds the kernel ahead of time when torch has a GPU toolchain.

`python -m pip install --no-build-isolation .` (so the build sees the installed torch)
compiles sgl_kernel_ext/_C for TORCH_CUDA_ARCH_LIST (CUDA; default 8.0;9.0;10.0)
or PYTORCH_ROCM_ARCH (ROCm). Without a toolchain, or with SGL_KERNEL_EXT_NO_BUILD=1,
the package installs pure-Python and JIT-builds the kernel on first use.
"""

import os
import sys

from setuptools import setup


def pure_python(reason):
    print(f"sgl_kernel_ext: no prebuilt kernel ({reason}); it will be JIT-built on first use", file=sys.stderr)
    return [], {}


def extensions():
    if os.environ.get("SGL_KERNEL_EXT_NO_BUILD", "0") == "1":
        return pure_python("SGL_KERNEL_EXT_NO_BUILD=1")
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as err:
        return pure_python(f"torch does not import in the build environment: {err}; "
                           "use python -m pip install --no-build-isolation")
    is_hip = torch.version.hip is not None
    if not (torch.version.cuda or is_hip):
        return pure_python(f"torch {torch.__version__} is built without CUDA or ROCm")
    if (cpp_extension.ROCM_HOME if is_hip else cpp_extension.CUDA_HOME) is None:
        return pure_python("no CUDA_HOME/ROCM_HOME toolkit found")
    if not is_hip:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0;10.0")
    nvcc = ["-O3", "-std=c++17"] + ([] if is_hip else ["--expt-relaxed-constexpr", "-lineinfo"])
    ext = cpp_extension.CUDAExtension(
        name="sgl_kernel_ext._C",
        sources=["sgl_kernel_ext/csrc/torch_binding.cu"],
        include_dirs=[os.path.abspath("sgl_kernel_ext/csrc")],
        extra_compile_args={"cxx": ["-O3", "-std=c++17"], "nvcc": nvcc},
    )
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(no_python_abi_suffix=True)}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
