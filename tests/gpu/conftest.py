import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("no GPU: tests/gpu runs on a CUDA or ROCm device", allow_module_level=True)


@pytest.fixture(scope="session", autouse=True)
def built_extension():
    import sgl_kernel_ext

    return sgl_kernel_ext.load()
