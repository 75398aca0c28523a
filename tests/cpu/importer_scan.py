"""Find every module of an sglang tree that imports the fused-MoE align wrapper by name.

Reads source only (ast), so it works on an unpacked wheel of any version. A hit is
``from <m> import moe_align_block_size [as x]`` where ``<m>`` is the wrapper module or a module that
re-exports the name when it is imported (found transitively). Imports in the module body, including
under ``if``/``try``, bind at import time; imports inside a function bind at call time.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

from sgl_kernel_ext.sglang_compat import WRAPPER_ATTR, Importer


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports_of_name(root: Path, path: Path):
    """(module, bound name, source module, at_import) for each `from X import moe_align_block_size`."""
    module = _module_name(root, path)
    try:
        source = path.read_text(encoding="utf-8")
        if WRAPPER_ATTR not in source:  # most files: skip the parse
            return
        with warnings.catch_warnings():  # invalid escape sequences in sglang's strings
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, UnicodeDecodeError):
        return
    stack = [(tree, True)]
    while stack:
        node, at_import = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ImportFrom):
                for alias in child.names:
                    if alias.name == WRAPPER_ATTR:
                        yield module, alias.asname or alias.name, _absolute(module, path.name == "__init__.py", child), at_import
            inner = at_import and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            stack.append((child, inner))


def scan(site_root: Path, wrapper_module: str) -> set[Importer]:
    """Importers of ``wrapper_module.moe_align_block_size`` in ``site_root/sglang``."""
    site_root = Path(site_root)
    found = [hit for path in sorted((site_root / "sglang").rglob("*.py")) for hit in _imports_of_name(site_root, path)]
    # Modules that hold the wrapper under its own name once imported can be imported from in turn.
    sources = {wrapper_module}
    grew = True
    while grew:
        grew = False
        for module, bound, source, at_import in found:
            if at_import and bound == WRAPPER_ATTR and source in sources and module not in sources:
                sources.add(module)
                grew = True
    return {Importer(module, bound, source, at_import) for module, bound, source, at_import in found if source in sources}
