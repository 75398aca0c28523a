import pathlib

import pytest
import torch

HERE = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no GPU: tests/gpu runs on a CUDA or ROCm device")
    for item in items:
        if HERE in pathlib.Path(item.fspath).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def built_extension():
    """Built (or loaded) once, before the first GPU test; never set up where the tests are skipped."""
    import sgl_kernel_ext

    return sgl_kernel_ext.load()
