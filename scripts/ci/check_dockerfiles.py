#!/usr/bin/env python3
"""Structural check of the repository's Dockerfiles (no Docker needed).

For every Dockerfile given (default: Dockerfile, Dockerfile.*, *.Dockerfile at
the repository root), with the repository root as build context:
  * every COPY/ADD source exists and is not excluded by .dockerignore
    (COPY --from=<stage> and URL sources are not context files and are skipped);
  * every repository file a RUN/CMD/ENTRYPOINT names (scripts/..., tests/...,
    paths ending in .sh/.py that exist relative to the Dockerfile's WORKDIR
    copies) exists in the repository;
  * every FROM names an explicit tag or digest (not :latest, not untagged),
    with ARG defaults substituted.
Prints one line per problem; exit status 1 if there is any.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Dockerfile instructions with continuations joined, comments dropped."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        out.append((start, buf.strip()))
        buf = ""
    if buf:
        out.append((start, buf.strip()))
    return out


class DockerIgnore:
    """.dockerignore semantics, approximately: last matching pattern wins, '!' re-includes."""

    def __init__(self, path: Path):
        self.rules: list[tuple[bool, str]] = []
        if path.exists():
            for line in path.read_text().splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                neg = line.startswith("!")
                pat = line[1:] if neg else line
                pat = pat.strip().lstrip("/").rstrip("/")
                self.rules.append((neg, pat))

    @staticmethod
    def _match(pat: str, path: str) -> bool:
        if "**" in pat:
            rx = re.escape(pat).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
            rx = rx.replace(r"\?", "[^/]")
            return re.fullmatch(rx, path) is not None
        return fnmatch.fnmatchcase(path, pat) and path.count("/") == pat.count("/")

    def excluded(self, relpath: str) -> bool:
        # A path is excluded if it, or one of its parent directories, is excluded
        # by the last matching rule (Docker checks every prefix).
        parts = relpath.split("/")
        state = False
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            for neg, pat in self.rules:
                if self._match(pat, prefix):
                    state = not neg
        return state


_TRACKED: set[str] | None = None


def tracked(relpath: str) -> bool:
    """Whether git tracks relpath (a file, or a directory with tracked files); True outside git."""
    global _TRACKED
    if _TRACKED is None:
        import subprocess

        try:
            out = subprocess.run(
                ["git", "ls-files", "-z"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True
            ).stdout.decode()
            _TRACKED = {p for p in out.split("\0") if p}
        except (OSError, subprocess.CalledProcessError):
            _TRACKED = set()
    if not _TRACKED:
        return True
    relpath = relpath.rstrip("/")
    return relpath in _TRACKED or any(p.startswith(relpath + "/") for p in _TRACKED)


PATH_TOKEN = re.compile(r"^(?:\./)?(?:scripts|tests|sgl_kernel_ext|bench|docs)/[\w./-]+$|^[\w./-]+\.(?:sh|py)$")


def check(dockerfile: Path, ignore: DockerIgnore) -> list[str]:
    problems: list[str] = []
    name = dockerfile.relative_to(ROOT)
    args: dict[str, str] = {}
    stages: set[str] = set()
    for lineno, line in logical_lines(dockerfile.read_text()):
        where = f"{name}:{lineno}"
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        rest = rest.strip()
        if instr == "ARG":
            key, eq, default = rest.partition("=")
            if eq:
                args[key.strip()] = default.strip().strip('"')
        elif instr == "FROM":
            toks = rest.split()
            toks = [t for t in toks if not t.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), toks[0])
            if len(toks) >= 3 and toks[1].upper() == "AS":
                stages.add(toks[2])
            if image in stages or image == "scratch":
                continue
            if "$" in image:
                problems.append(f"{where}: FROM {toks[0]}: ARG without a default")
            elif "@sha256:" in image:
                pass
            elif ":" not in image.rsplit("/", 1)[-1]:
                problems.append(f"{where}: FROM {image}: no tag (pin an exact tag)")
            elif image.endswith(":latest"):
                problems.append(f"{where}: FROM {image}: ':latest' is not a pinned tag")
        elif instr in ("COPY", "ADD"):
            try:
                toks = shlex.split(rest)
            except ValueError as err:
                problems.append(f"{where}: cannot parse {instr}: {err}")
                continue
            if rest.startswith("["):
                continue  # JSON form: rare here; not parsed
            if any(t.startswith("--from") for t in toks):
                continue
            toks = [t for t in toks if not t.startswith("--")]
            for src in toks[:-1]:
                if re.match(r"^[a-z]+://", src):
                    continue
                rel = src[2:] if src.startswith("./") else src
                rel = rel.rstrip("/") or "."
                if rel == ".":
                    continue
                matches = sorted(ROOT.glob(rel)) if any(c in rel for c in "*?[") else [ROOT / rel]
                matches = [m for m in matches if m.exists()]
                if not matches:
                    problems.append(f"{where}: {instr} source '{src}' does not exist in the repository")
                    continue
                for m in matches:
                    r = str(m.relative_to(ROOT))
                    if ignore.excluded(r):
                        problems.append(f"{where}: {instr} source '{r}' is excluded by .dockerignore")
                    if not tracked(r):
                        problems.append(f"{where}: {instr} source '{r}' is not tracked by git (a clean clone lacks it)")
        elif instr in ("RUN", "CMD", "ENTRYPOINT"):
            text = rest
            if text.startswith("["):
                try:
                    import json

                    toks = json.loads(text)
                except ValueError:
                    toks = text.split()
            else:
                try:
                    toks = shlex.split(text, comments=False, posix=True)
                except ValueError:
                    toks = text.split()
            for tok in toks:
                tok = tok.strip(";&|()\"'")
                if not PATH_TOKEN.match(tok) or tok.startswith("/"):
                    continue
                if not (ROOT / tok).exists() or not tracked(tok.removeprefix("./")):
                    problems.append(f"{where}: {instr} refers to '{tok}', which is not in the repository (git)")
    return problems


def main(argv: list[str]) -> int:
    files = [Path(a).resolve() for a in argv] or sorted(
        {*ROOT.glob("Dockerfile"), *ROOT.glob("Dockerfile.*"), *ROOT.glob("*.Dockerfile")}
    )
    if not files:
        print("check_dockerfiles: no Dockerfiles found")
        return 1
    ignore = DockerIgnore(ROOT / ".dockerignore")
    problems = [p for f in files for p in check(f, ignore)]
    for p in problems:
        print(p)
    names = ", ".join(str(f.relative_to(ROOT)) for f in files)
    print(f"check_dockerfiles: {names}: " + (f"{len(problems)} problem(s)" if problems else "ok"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
