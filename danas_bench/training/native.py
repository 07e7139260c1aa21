"""The engine's C kernels (``conv3.c``): 3-tap, stride-1 grouped 1-D convolutions on the tall layout.

oneDNN, under ``torch.nn.functional.conv2d``, reorders every activation of such a small-group
convolution into its blocked layout and back, about half of the call (docs/performance.md); the C
loops read the plain layout. Built at first use with the system C compiler (``cc``, ``-O3
-march=native``) into a cache keyed by the source, the compiler and the CPU (``DANAS_NATIVE_CACHE``,
default ``~/.cache/danas-bench/native``); where that fails, or with ``DANAS_NATIVE=0``, the engine
keeps using ``conv2d`` (same results up to float rounding) and says so once.

Loading a shared library runs its code, so the cache is guarded: its folders are the user's own with
mode 0700 (a cache owned by another user, or writable by others, is refused with a warning), and the
``.so``'s sha256 is recorded beside it at build time and checked before every load; a library that
does not match (corrupt, truncated, replaced) is rebuilt.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

SRC = Path(__file__).with_name("conv3.c")
_FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]


def _cpu_id() -> str:
    """What ``-march=native`` compiles for: the CPU's model and feature lines (x86 ``model name`` and
    ``flags``, ARM ``CPU part`` and ``Features``), so a home directory shared by different machines
    keeps one build per CPU."""
    keys = ("model name", "flags", "cpu part", "features", "cpu implementer")
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    seen = sorted({ln.strip() for ln in lines if ln.lower().startswith(keys)})
    return "\n".join(seen) or f"{platform.machine()} {platform.processor()}"


class UnsafeCache(RuntimeError):
    """The kernel cache folder is not safe to load code from."""


def _private_dir(d: Path) -> None:
    """Create ``d`` with mode 0700, or check an existing one: a real folder, owned by this user, not
    writable by group or others (anyone who can write there can make this process run their code)."""
    if not d.exists():
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d, 0o700)  # (mkdir's mode is masked by the umask)
    st = os.lstat(d)
    import stat

    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeCache(f"{d} is not a folder (a symlink or file)")
    if st.st_uid != os.getuid():
        raise UnsafeCache(f"{d} belongs to another user (uid {st.st_uid})")
    if st.st_mode & 0o022:
        raise UnsafeCache(
            f"{d} is writable by {'others' if st.st_mode & 0o002 else 'its group'} "
            f"(mode {stat.S_IMODE(st.st_mode):o}); `chmod 700 {d}` and remove what you did not build"
        )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build(cc: str, so: Path) -> None:
    """Compile into a private temp folder beside ``so``; record the sha256; rename both into place."""
    with tempfile.TemporaryDirectory(dir=so.parent) as tmp:  # build aside, then rename: atomic
        out = Path(tmp) / "conv3.so"
        subprocess.run([cc, *_FLAGS, "-o", str(out), str(SRC)], capture_output=True, text=True, check=True)
        digest = Path(tmp) / "conv3.so.sha256"
        digest.write_text(_sha256(out) + "\n")
        os.replace(out, so)
        os.replace(digest, so.with_name("conv3.so.sha256"))


def _verified(so: Path) -> bool:
    """Whether ``so`` is a file of ours, not writable by others, whose sha256 is the recorded one."""
    rec = so.with_name("conv3.so.sha256")
    try:
        st = os.lstat(so)
        return (
            st.st_uid == os.getuid()
            and not st.st_mode & 0o022
            and os.path.isfile(so)
            and not os.path.islink(so)
            and rec.read_text().strip() == _sha256(so)
        )
    except OSError:
        return False


@functools.cache
def _lib():
    if os.environ.get("DANAS_NATIVE", "1") == "0":
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    try:
        if cc is None:
            raise RuntimeError("no C compiler (cc) on PATH")
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True).stdout
        key = hashlib.sha256("\0".join([SRC.read_text(), version, " ".join(_FLAGS), _cpu_id()]).encode()).hexdigest()[
            :16
        ]
        root = Path(os.environ.get("DANAS_NATIVE_CACHE", Path.home() / ".cache" / "danas-bench" / "native"))
        so = root / key / "conv3.so"
        _private_dir(root)
        _private_dir(so.parent)
        if not _verified(so):  # missing, or not what was built here: (re)build it
            from filelock import FileLock

            with FileLock(str(so.parent / ".build.lock")):  # one builder at a time (worker processes)
                if not _verified(so):
                    _build(cc, so)
                if not _verified(so):
                    raise UnsafeCache(f"{so} does not match its recorded sha256 right after the build")
        lib = ctypes.CDLL(str(so))
    except UnsafeCache as e:
        warnings.warn(
            f"danas-bench: C kernel cache refused: {e}; the engine uses torch's conv2d (same results up "
            f"to rounding, slower); set DANAS_NATIVE_CACHE to a private folder to use the kernels",
            stacklevel=2,
        )
        return None
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        warnings.warn(
            f"danas-bench: C kernels unavailable ({detail.strip()[:300]}); the engine uses "
            f"torch's conv2d for 1-D 3-tap convolutions (same results up to rounding, slower)",
            stacklevel=2,
        )
        return None
    ptr, long = ctypes.c_void_p, ctypes.c_long
    lib.conv3_forward.argtypes = [ptr, ptr, ptr, ptr, long, long, long, long, long]
    lib.conv3_weight_grad.argtypes = [ptr, ptr, ptr, long, long, long, long, long]
    return lib


def available() -> bool:
    """Whether the C kernels are built and loaded (building them on first call)."""
    return _lib() is not None


def _dims(x: torch.Tensor, w: torch.Tensor, groups: int, *others) -> tuple[int, int, int, int, int]:
    """(groups, in, out, B, L), after checking every shape, dtype and device: the C loops trust them.
    The kernels are not differentiable, so tensors that autograd is recording are refused (the engine
    calls them from its hand-written backward)."""
    tensors = (x, w, *others)
    if any(t.device.type != "cpu" for t in tensors):
        raise ValueError(f"conv3 runs on CPU tensors, got {[str(t.device) for t in tensors]}")
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise ValueError(
            "conv3 is not differentiable: call it under torch.no_grad() (the engine does, in its own "
            "backward), or use torch's convolution"
        )
    ok = (
        x.dim() == 4
        and x.shape[0] == 1
        and groups > 0
        and x.shape[1] % groups == 0
        and w.dim() in (3, 4)
        and w.shape[-1] == 3
        and (w.dim() == 3 or w.shape[2] == 1)
        and w.shape[0] % groups == 0
        and w.shape[1] == x.shape[1] // groups
    )
    if not ok or any(t.dtype != torch.float32 for t in tensors):
        raise ValueError(
            f"conv3 expects a float32 tall 1-D activation (1, G*C, B, L) and a 3-tap weight "
            f"(G*C_out, C, 1, 3) for G={groups} groups, got {tuple(x.shape)} {x.dtype} and "
            f"{tuple(w.shape)} {w.dtype}"
        )
    return groups, x.shape[1] // groups, w.shape[0] // groups, x.shape[2], x.shape[3]


def _call(name: str, *args) -> None:
    if getattr(_lib(), name)(*args):
        raise MemoryError(f"{name}: out of memory for its row masks")


def conv3(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, groups: int) -> torch.Tensor:
    """``conv2d(x, w, bias, 1, (0, 1), 1, groups)`` for w of shape (G*co, ci, 1, 3)."""
    g, ci, co, b, n = _dims(x, w, groups, *([] if bias is None else [bias]))
    if bias is not None and bias.numel() != g * co:
        raise ValueError(f"conv3: bias has {bias.numel()} values for {g * co} output channels")
    x, w = x.contiguous(), w.contiguous()
    bias = None if bias is None else bias.contiguous()
    y = x.new_empty((1, g * co, b, n))
    _call(
        "conv3_forward",
        x.data_ptr(),
        w.data_ptr(),
        None if bias is None else bias.data_ptr(),
        y.data_ptr(),
        g,
        ci,
        co,
        b,
        n,
    )
    return y


def conv3_backward(grad: torch.Tensor, x: torch.Tensor, w: torch.Tensor, groups: int):
    """(input gradient, weight gradient) of :func:`conv3` without bias."""
    g, ci, co, b, n = _dims(x, w, groups, grad)
    if tuple(grad.shape) != (1, g * co, b, n):
        raise ValueError(f"conv3_backward: gradient of shape {tuple(grad.shape)} for an output of {(1, g * co, b, n)}")
    grad, x = grad.contiguous(), x.contiguous()
    # the input gradient is the forward convolution of grad with each group's weight transposed
    # (in <-> out) and flipped (tap t <-> 2 - t)
    wt = w.reshape(g, co, ci, 3).transpose(1, 2).flip(-1).contiguous()
    gx, gw = torch.empty_like(x), torch.empty((g * co, ci, 3), dtype=x.dtype)
    _call("conv3_forward", grad.data_ptr(), wt.data_ptr(), None, gx.data_ptr(), g, co, ci, b, n)
    _call("conv3_weight_grad", grad.data_ptr(), x.data_ptr(), gw.data_ptr(), g, ci, co, b, n)
    return gx, gw.view(w.shape)
