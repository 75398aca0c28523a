"""`python -m sgl_kernel_ext bench [...]`: the kernel benchmark; `info`: what loads here."""

import sys


def main() -> int:
    cmd, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("info", [])
    if cmd == "bench":
        from sgl_kernel_ext.bench import main as bench

        return bench(rest)
    if cmd == "info":
        import torch

        from sgl_kernel_ext import ExtensionUnavailable, __version__, load

        print(f"sgl-kernel-ext {__version__}, torch {torch.__version__}")
        try:
            print(f"kernel: {load()} build on {torch.cuda.get_device_name()}")
        except ExtensionUnavailable as err:
            print(f"kernel unavailable: {err}")
            return 1
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
