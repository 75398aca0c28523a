"""Same as `python -m sgl_kernel_ext bench`."""

import sys

from sgl_kernel_ext.bench import main

sys.exit(main())
