#!/usr/bin/env python3
"""Compile the kernel instances for every target and report per-kernel resources.

Called by scripts/ci/compile_report.sh (which installs the toolchains first).
For each target it compiles tests/compile/moe_align_instances.cu (whatever it
instantiates today), keeps the raw compiler report under
build/resource-usage/raw/<target>.log, parses it, and writes

  build/resource-usage.json  machine-readable summary
  build/resource-usage.md    Markdown table (also printed)

Targets:
  NVIDIA  sm_90, sm_80            nvcc -Xptxas -v
  AMD     gfx908, gfx90a, gfx940  Debian's hipcc (ROCm 5.2, clang 15), HIP_PLATFORM=amd
  AMD     gfx942                  Debian's clang-19 -x hip with Debian's ROCm 5.2 headers
                                  and device libs (skipped, not failed, when that
                                  toolchain itself cannot build a trivial HIP kernel)

Exit status: 0 when every required target compiled with no spill and no
scratch; 1 otherwise (compile error, spill, scratch/stack, nothing parsed).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = "tests/compile/moe_align_instances.cu"
DEBIAN_DEVICE_LIBS = Path("/usr/lib/x86_64-linux-gnu/amdgcn/bitcode")

# Published figures of the original D-C-P (distributed count / cumsum / parallel
# placement) design on MI300A; shown next to ours as a reference row.
REFERENCE = {
    "design": "original D-C-P design (published)",
    "target": "MI300A (gfx942)",
    "vgprs": 52,
    "sgprs": 48,
    "lds": "5 kB",
    "spills": 0,
    "note": "published figures, not built here",
}

# Workaround used only to diagnose an AMD compile failure: if the source builds
# once hip_runtime.h is force-included first, the failure is a header-order bug.
HIP_INCLUDE_WORKAROUND = ["-include", "hip/hip_runtime.h"]

PROBE_SOURCE = r"""
#include <hip/hip_runtime.h>
#include <hip/hip_cooperative_groups.h>
__global__ void __launch_bounds__(256) probe(int* out) {
  __shared__ int s[64];
  s[threadIdx.x % 64] = static_cast<int>(__ballot(threadIdx.x & 1) != 0);
  __syncthreads();
  atomicAdd(out, s[0] + __shfl_up(static_cast<int>(threadIdx.x), 1, 64));
  cooperative_groups::this_grid().sync();
}
"""


@dataclass
class Kernel:
    mangled: str
    name: str = ""
    entry: bool = True
    registers: int | None = None  # NVIDIA registers / AMD VGPRs (arch VGPRs)
    agprs: int | None = None
    sgprs: int | None = None
    static_shared_bytes: int | None = None  # smem (NVIDIA) / LDS (AMD), static only
    stack_bytes: int | None = None  # NVIDIA stack frame (local memory)
    scratch_bytes_per_lane: int | None = None  # AMD ScratchSize
    dynamic_stack: bool | None = None
    spill_store_bytes: int | None = None
    spill_load_bytes: int | None = None
    sgpr_spills: int | None = None
    vgpr_spills: int | None = None
    occupancy_waves_per_simd: int | None = None
    barriers: int | None = None
    cmem0_bytes: int | None = None

    def problems(self) -> list[str]:
        out = []
        for label, value in (
            ("spill stores", self.spill_store_bytes),
            ("spill loads", self.spill_load_bytes),
            ("SGPR spills", self.sgpr_spills),
            ("VGPR spills", self.vgpr_spills),
            ("stack frame (local memory)", self.stack_bytes),
            ("scratch", self.scratch_bytes_per_lane),
        ):
            if value:
                out.append(f"{label} {value}")
        if self.dynamic_stack:
            out.append("dynamic stack")
        return out


@dataclass
class Target:
    target: str
    vendor: str
    toolchain: str
    required: bool
    command: list[str] = field(default_factory=list)
    compiler_version: str = ""
    status: str = "pending"  # ok | fail | skipped
    reason: str = ""
    returncode: int | None = None
    log: str = ""
    kernels: list[Kernel] = field(default_factory=list)
    kernels_from_workaround: bool = False
    workaround: dict | None = None
    notes: list[str] = field(default_factory=list)
    error_excerpt: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# helpers


def run(cmd: list[str], env: dict | None = None, cwd: Path = ROOT, timeout: int = 900) -> tuple[int, str]:
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except FileNotFoundError as err:
        return 127, f"{err}\n"
    except subprocess.TimeoutExpired as err:
        out = err.stdout if isinstance(err.stdout, str) else (err.stdout or b"").decode(errors="replace")
        return 124, out + f"\n[timed out after {timeout} s]\n"
    return proc.returncode, proc.stdout


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def error_lines(text: str, limit: int = 12) -> list[str]:
    errs = [line.rstrip() for line in text.splitlines() if re.search(r"\berror\b", line, re.IGNORECASE)]
    return errs[:limit]


def demangle(names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    tool = shutil.which("c++filt") or shutil.which("llvm-cxxfilt")
    if tool is None:
        return {n: n for n in names}
    proc = subprocess.run([tool], input="\n".join(names) + "\n", stdout=subprocess.PIPE, text=True)
    out = proc.stdout.splitlines()
    if proc.returncode != 0 or len(out) != len(names):
        return {n: n for n in names}
    return dict(zip(names, out))


def short_name(demangled: str) -> str:
    s = demangled.strip()
    if s.startswith("void "):
        s = s[5:]
    # drop the parameter list: the last top-level "(...)"
    depth = 0
    for i, ch in enumerate(s):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            return s[:i]
    return s


def write_log(path: Path, cmd: list[str], env_note: str, output: str, rc: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"$ {env_note}{' '.join(cmd)}\n# exit status {rc}\n"
    path.write_text(header + output)


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


# ---------------------------------------------------------------------------
# parsers

_NV_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '([^']+)'")
_NV_PROPS = re.compile(r"Function properties for (\S+)")
_NV_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_NV_USED = re.compile(r"Used (\d+) registers")
_NV_BARRIERS = re.compile(r"used (\d+) barriers")
_NV_SMEM = re.compile(r"(\d+) bytes smem")
_NV_CMEM0 = re.compile(r"(\d+) bytes cmem\[0\]")


def parse_ptxas(text: str) -> list[Kernel]:
    kernels: dict[str, Kernel] = {}
    entries: set[str] = set()
    current: str | None = None
    for line in text.splitlines():
        m = _NV_ENTRY.search(line)
        if m:
            current = m.group(1)
            entries.add(current)
            kernels.setdefault(current, Kernel(mangled=current))
            continue
        m = _NV_PROPS.search(line)
        if m:
            current = m.group(1)
            kernels.setdefault(current, Kernel(mangled=current))
            continue
        if current is None:
            continue
        k = kernels[current]
        m = _NV_STACK.search(line)
        if m:
            k.stack_bytes, k.spill_store_bytes, k.spill_load_bytes = (int(g) for g in m.groups())
            continue
        m = _NV_USED.search(line)
        if m:
            k.registers = int(m.group(1))
            if (b := _NV_BARRIERS.search(line)) is not None:
                k.barriers = int(b.group(1))
            k.static_shared_bytes = int(s.group(1)) if (s := _NV_SMEM.search(line)) else 0
            if (c := _NV_CMEM0.search(line)) is not None:
                k.cmem0_bytes = int(c.group(1))
    for name, k in kernels.items():
        k.entry = name in entries
    return list(kernels.values())


_AMD_REMARK = re.compile(r"remark:\s+(.*?)\s*\[-Rpass-analysis=kernel-resource-usage\]")
_AMD_KEYS = {
    "SGPRs": "sgprs",
    "VGPRs": "registers",
    "AGPRs": "agprs",
    "ScratchSize [bytes/lane]": "scratch_bytes_per_lane",
    "Occupancy [waves/SIMD]": "occupancy_waves_per_simd",
    "SGPRs Spill": "sgpr_spills",
    "VGPRs Spill": "vgpr_spills",
    "LDS Size [bytes/block]": "static_shared_bytes",
}


def parse_amd_remarks(text: str) -> list[Kernel]:
    kernels: list[Kernel] = []
    current: Kernel | None = None
    for line in text.splitlines():
        m = _AMD_REMARK.search(line)
        if not m:
            continue
        body = m.group(1)
        if body.startswith("Function Name:"):
            current = Kernel(mangled=body.split(":", 1)[1].strip())
            kernels.append(current)
            continue
        if current is None or ":" not in body:
            continue
        key, value = (s.strip() for s in body.rsplit(":", 1))
        if key == "Dynamic Stack":
            current.dynamic_stack = value.lower() == "true"
        elif key in _AMD_KEYS:
            try:
                setattr(current, _AMD_KEYS[key], int(value))
            except ValueError:
                pass
    return kernels


# ---------------------------------------------------------------------------
# toolchains


def find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for cand in (os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"):
        if cand and Path(cand, "bin", "nvcc").exists():
            return str(Path(cand, "bin", "nvcc"))
    return None


def find_clang19() -> str | None:
    for cand in (shutil.which("clang++-19"), "/usr/lib/llvm-19/bin/clang++"):
        if cand and Path(cand).exists():
            return cand
    return None


def find_llvm_tool(name: str) -> str | None:
    for ver in (19, 18, 17, 16, 15, 14):
        p = Path(f"/usr/lib/llvm-{ver}/bin/{name}")
        if p.exists():
            return str(p)
    return shutil.which(name)


def tool_version(cmd: list[str], pattern: str) -> str:
    rc, out = run(cmd, timeout=60)
    m = re.search(pattern, out)
    return m.group(0) if m else first_line(out)


def hip_env() -> dict:
    env = dict(os.environ)
    env["HIP_PLATFORM"] = "amd"
    env.pop("HIP_COMPILER", None)
    return env


def synth_gfx942_device_libs(dest: Path) -> tuple[Path | None, str]:
    """Debian's ROCm 5.2 device libs stop at gfx940: add oclc_isa_version_942.bc.

    The per-ISA library only defines __oclc_ISA_version; gfx942's value is 9402.
    We take gfx940's bitcode, change the constant, and reassemble it.
    """
    src = DEBIAN_DEVICE_LIBS / "oclc_isa_version_940.bc"
    if not src.exists():
        return None, f"{src} not found (rocm-device-libs missing?)"
    dis, asm = find_llvm_tool("llvm-dis"), find_llvm_tool("llvm-as")
    if dis is None or asm is None:
        return None, "llvm-dis/llvm-as not found (needed to synthesize oclc_isa_version_942.bc)"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for bc in DEBIAN_DEVICE_LIBS.glob("*.bc"):
        (dest / bc.name).symlink_to(bc)
    rc, text = run([dis, str(src), "-o", "-"])
    if rc != 0 or "i32 9400" not in text:
        return None, f"could not read {src.name} with {dis}: {first_line(text)}"
    ll = dest / "oclc_isa_version_942.ll"
    ll.write_text(text.replace("i32 9400", "i32 9402").replace("oclc_isa_version_940", "oclc_isa_version_942"))
    rc, out = run([asm, str(ll), "-o", str(dest / "oclc_isa_version_942.bc")])
    if rc != 0:
        return None, f"{asm} failed: {first_line(out)}"
    return dest, f"oclc_isa_version_942.bc synthesized from gfx940's (__oclc_ISA_version = 9402) with {Path(asm).parent}"


# ---------------------------------------------------------------------------
# one target


def compile_nvidia(t: Target, source: str, out_dir: Path) -> None:
    nvcc = find_nvcc()
    if nvcc is None:
        t.status, t.reason = "fail", "nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)"
        return
    t.compiler_version = tool_version([nvcc, "--version"], r"release [0-9.]+, V[0-9.]+")
    arch = t.target.split("_", 1)[1]
    obj = out_dir / "obj" / f"{t.target}.o"
    obj.parent.mkdir(parents=True, exist_ok=True)
    t.command = [
        nvcc, f"-gencode=arch=compute_{arch},code=sm_{arch}", "-O3", "-std=c++17",
        "--expt-relaxed-constexpr", "-Xptxas", "-v", "-c", source, "-o", rel(obj),
    ]  # fmt: skip
    rc, output = run(t.command)
    log = out_dir / "raw" / f"{t.target}.log"
    write_log(log, t.command, "", output, rc)
    t.log, t.returncode = rel(log), rc
    if rc != 0:
        t.status, t.reason = "fail", f"nvcc exit status {rc}: {first_line(chr(10).join(error_lines(output)) or output)}"
        t.error_excerpt = error_lines(output) or output.splitlines()[-12:]
        return
    t.kernels = parse_ptxas(output)


def compile_amd(t: Target, source: str, out_dir: Path) -> None:
    env = hip_env()
    obj = out_dir / "obj" / f"{t.target}.o"
    obj.parent.mkdir(parents=True, exist_ok=True)
    flags = ["-O3", "-std=c++17", "-Rpass-analysis=kernel-resource-usage"]
    if t.toolchain == "hipcc":
        hipcc = shutil.which("hipcc")
        if hipcc is None:
            t.status, t.reason = "fail", "hipcc not found (apt-get install hipcc libamdhip64-dev rocm-device-libs)"
            return
        t.compiler_version = "hipcc " + tool_version(["hipcc", "--version"], r"HIP version: \S+") + (
            " / " + tool_version(["clang++-15", "--version"], r"clang version [0-9.]+") if shutil.which("clang++-15") else ""
        )
        base = [hipcc, f"--offload-arch={t.target}"] + flags
        env_note = "HIP_PLATFORM=amd "
    else:  # clang-19
        clang = find_clang19()
        if clang is None:
            t.status = "skipped"
            t.reason = "clang-19 not installed" + (
                f" ({os.environ['SKE_CLANG19_APT_ERROR']})" if os.environ.get("SKE_CLANG19_APT_ERROR") else ""
            )
            return
        t.compiler_version = tool_version([clang, "--version"], r"clang version [0-9.]+")
        devlibs, note = synth_gfx942_device_libs(out_dir / f"devlibs-{t.target}")
        t.notes.append(note)
        if devlibs is None:
            t.status, t.reason = "skipped", f"no ROCm device libraries for {t.target}: {note}"
            return
        base = [
            clang, "-x", "hip", f"--offload-arch={t.target}", "--offload-device-only", "--no-gpu-bundle-output",
            "--rocm-path=/usr", f"--rocm-device-lib-path={devlibs}",
        ] + flags  # fmt: skip
        t.notes.append(
            "device-only compile to a bare code object (--offload-device-only --no-gpu-bundle-output): Debian's "
            "clang-19 package has no clang-offload-bundler; ROCm 5.2 headers and device libs with clang 19"
        )
        env_note = ""

    # 1. probe: can this toolchain build a trivial HIP kernel at all?
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.cu"
        probe.write_text(PROBE_SOURCE)
        pcmd = base + ["-c", str(probe), "-o", str(Path(tmp) / "probe.o")]
        rc, pout = run(pcmd, env=env)
    if rc != 0:
        log = out_dir / "raw" / f"{t.target}.probe.log"
        write_log(log, pcmd, env_note, pout, rc)
        t.log = rel(log)
        t.error_excerpt = error_lines(pout) or pout.splitlines()[-12:]
        why = f"toolchain cannot build a trivial HIP kernel: {first_line(chr(10).join(t.error_excerpt))}"
        if t.required:
            t.status, t.reason = "fail", why
        else:
            t.status, t.reason = "skipped", why
        return

    # 2. the real thing, as is
    t.command = base + ["-c", source, "-o", rel(obj)]
    rc, output = run(t.command, env=env)
    log = out_dir / "raw" / f"{t.target}.log"
    write_log(log, t.command, env_note, output, rc)
    t.log, t.returncode = rel(log), rc
    if rc == 0:
        t.kernels = parse_amd_remarks(output)
        return

    t.status = "fail"
    t.error_excerpt = error_lines(output) or output.splitlines()[-12:]
    t.reason = f"compile error (exit status {rc}): {first_line(chr(10).join(t.error_excerpt))}"
    # 3. diagnose: does it build with hip_runtime.h force-included first?
    wcmd = base + HIP_INCLUDE_WORKAROUND + ["-c", source, "-o", rel(obj)]
    wrc, wout = run(wcmd, env=env)
    wlog = out_dir / "raw" / f"{t.target}.workaround.log"
    write_log(wlog, wcmd, env_note, wout, wrc)
    t.workaround = {"flags": HIP_INCLUDE_WORKAROUND, "returncode": wrc, "log": rel(wlog)}
    if wrc == 0:
        t.kernels = parse_amd_remarks(wout)
        t.kernels_from_workaround = True
        t.reason = (
            "PORTABILITY BUG: the kernel headers do not compile as is with this ROCm's headers, but do with "
            f"`-include hip/hip_runtime.h` ({hip_include_order_hint()}). "
            f"First error: {first_line(chr(10).join(t.error_excerpt))}"
        )


def hip_include_order_hint() -> str:
    p = ROOT / "sgl_kernel_ext" / "csrc" / "portability.cuh"
    try:
        text = p.read_text()
    except OSError:
        return "some header needs <hip/hip_runtime.h> before it"
    coop, runtime = text.find("<hip/hip_cooperative_groups.h>"), text.find("<hip/hip_runtime.h>")
    if coop != -1 and (runtime == -1 or coop < runtime):
        return (
            "sgl_kernel_ext/csrc/portability.cuh includes <hip/hip_cooperative_groups.h> before "
            "<hip/hip_runtime.h>; ROCm <= 5.x's cooperative-groups header is not self-contained "
            "(hipBlockDim_x etc. undeclared). Fix: include <hip/hip_runtime.h> first"
        )
    return "a header uses HIP runtime declarations before <hip/hip_runtime.h> is included; include it first"


def finish(t: Target) -> None:
    if t.status in ("fail", "skipped"):
        return
    if not t.kernels:
        t.status, t.reason = "fail", "compiled, but no per-kernel resource report was found in the output"
        return
    name_kernels(t)
    bad = [f"{k.name}: {', '.join(k.problems())}" for k in t.kernels if k.problems()]
    if bad:
        t.status, t.reason = "fail", "spills/scratch: " + "; ".join(bad)
    else:
        t.status = "ok"


def name_kernels(t: Target) -> None:
    """Readable names for the kernels parsed from a build (a diagnostic workaround's too)."""
    names = demangle([k.mangled for k in t.kernels])
    for k in t.kernels:
        k.name = short_name(names.get(k.mangled, k.mangled))


# ---------------------------------------------------------------------------
# output


def fmt(v) -> str:
    return "—" if v is None else str(v)


def spill_cell(k: Kernel) -> str:
    probs = k.problems()
    return "**" + ", ".join(probs) + "**" if probs else "none"


def markdown(targets: list[Target], source: str, commit: str) -> str:
    lines = [
        f"Resource usage of `{source}` (commit `{commit}`), per target and kernel instance.",
        "",
        "| Target | Toolchain | Kernel instance | Regs / VGPRs | SGPRs | Static smem / LDS (B) | Stack / scratch (B) | Spills | Occupancy | Status |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for t in targets:
        status = t.status.upper() if t.status != "ok" else "ok"
        if t.kernels_from_workaround:
            status = "FAIL as is (figures from `-include hip/hip_runtime.h` build)"
        if not t.kernels:
            lines.append(
                f"| {t.target} | {t.toolchain} | — | — | — | — | — | — | — | {status}: {t.reason.replace('|', '/')} |"
            )
            continue
        for k in t.kernels:
            regs = fmt(k.registers)
            if k.agprs:
                regs += f" (+{k.agprs} AGPRs)"
            stack = k.stack_bytes if t.vendor == "nvidia" else k.scratch_bytes_per_lane
            occ = f"{k.occupancy_waves_per_simd} waves/SIMD" if k.occupancy_waves_per_simd is not None else "—"
            name = k.name + ("" if k.entry else " (device function)")
            lines.append(
                f"| {t.target} | {t.toolchain} | `{name}` | {regs} | {fmt(k.sgprs)} | {fmt(k.static_shared_bytes)} "
                f"| {fmt(stack)} | {spill_cell(k)} | {occ} | {status} |"
            )
    r = REFERENCE
    lines.append(
        f"| {r['target']} | — | {r['design']} | {r['vgprs']} | {r['sgprs']} | {r['lds']} | — | none | — | reference |"
    )
    lines += [
        "",
        "Notes:",
        "- Shared memory / LDS is the static part only; the kernels' histogram rows and sorted copies live in "
        "dynamic shared memory sized at launch (`moe_align_smem_bytes()`, `moe_align_staged_smem_bytes()`, "
        "`moe_align_ranged_smem_bytes()` and `moe_align_tiny_smem_bytes()` in `sgl_kernel_ext/csrc/moe_align.cuh`), "
        "which no compiler report can show.",
        "- NVIDIA: `ptxas -v` (registers per thread; stack = local memory). Occupancy is not reported by ptxas.",
        "- AMD: `-Rpass-analysis=kernel-resource-usage` (VGPRs/SGPRs per wave lane; scratch in bytes per lane; "
        "occupancy in waves per SIMD as the compiler estimates it). gfx908/gfx90a/gfx940 use Debian's ROCm 5.2 "
        "hipcc (clang 15); gfx942 uses Debian's clang 19 with ROCm 5.2 headers and device libraries. "
        "The ROCm 7 compiler in the container images may allocate differently.",
        "- The reference row is the published figure for the original D-C-P design on MI300A, not measured here.",
    ]
    for t in targets:
        for n in t.notes:
            lines.append(f"- {t.target}: {n}")
    return "\n".join(lines) + "\n"


def git_commit() -> str:
    rc, out = run(["git", "rev-parse", "--short=12", "HEAD"], timeout=30)
    if rc != 0:
        return "unknown"
    rc2, dirty = run(["git", "status", "--porcelain", "--", "sgl_kernel_ext/csrc", "tests/compile"], timeout=30)
    return out.strip() + ("+dirty" if rc2 == 0 and dirty.strip() else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=DEFAULT_SOURCE)
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--cuda-archs", default=os.environ.get("SKE_CUDA_ARCHS", "90 80"))
    ap.add_argument("--hip-archs", default=os.environ.get("SKE_HIP_ARCHS", "gfx908 gfx90a gfx940"))
    ap.add_argument("--clang19-archs", default=os.environ.get("SKE_CLANG19_ARCHS", "gfx942"))
    ap.add_argument("-j", "--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    args = ap.parse_args(argv)

    build = (ROOT / args.build_dir).resolve()
    out_dir = build / "resource-usage"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "raw").mkdir(parents=True)
    source = args.source
    if not (ROOT / source).exists():
        print(f"resource_report: {source} not found", file=sys.stderr)
        return 1

    targets: list[Target] = []
    targets += [Target(f"sm_{a}", "nvidia", "nvcc", True) for a in args.cuda_archs.split()]
    targets += [Target(a, "amd", "hipcc", True) for a in args.hip_archs.split()]
    targets += [Target(a, "amd", "clang-19", False) for a in args.clang19_archs.split()]
    if os.environ.get("SKE_HIP_APT_ERROR"):
        for t in targets:
            if t.toolchain == "hipcc":
                t.notes.append(f"apt: {os.environ['SKE_HIP_APT_ERROR']}")

    def work(t: Target) -> Target:
        if t.vendor == "nvidia":
            compile_nvidia(t, source, out_dir)
        else:
            compile_amd(t, source, out_dir)
        if t.kernels_from_workaround:
            name_kernels(t)  # a diagnostic build: the status stays 'fail'
        else:
            finish(t)
        return t

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        targets = list(pool.map(work, targets))

    ok = all(t.status == "ok" or (t.status == "skipped" and not t.required) for t in targets)
    commit = git_commit()
    summary = {
        "source": source,
        "commit": commit,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "ok": ok,
        "dynamic_shared_memory_note": "static smem/LDS only; the histogram is dynamic shared memory sized at launch",
        "targets": [asdict(t) for t in targets],
        "reference": REFERENCE,
    }
    (build / "resource-usage.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = markdown(targets, source, commit)
    (build / "resource-usage.md").write_text(md)

    print(md)
    shown: set[tuple[str, ...]] = set()
    for t in targets:
        if t.status != "ok":
            print(f"[{t.status.upper()}] {t.target} ({t.toolchain}): {t.reason}")
            excerpt = tuple(t.error_excerpt[:8])
            if excerpt and excerpt not in shown:
                shown.add(excerpt)
                for line in excerpt:
                    print(f"    {line}")
            elif excerpt:
                print("    (same errors as above)")
            if t.log:
                print(f"    full log: {t.log}")
    print(f"wrote {rel(build / 'resource-usage.json')}, {rel(build / 'resource-usage.md')}, raw logs in {rel(out_dir / 'raw')}")
    print("resource report: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
