"""A fused CPU kernel for the style networks' region normalisation, built on first use.

Between two convolutions the 26-style network does only memory-bound work: per-channel
statistics (over the image and, with regions, per region), a per-pixel scale and shift
blended from the regions' rows, ReLU, the residual add and padding for the next conv. As
separate torch ops that is 4-6 passes over each activation; these two kernels make it two
(one read for all statistics, one read and one write for the rest), whatever the number of
regions, in fp32 or bf16 with fp32 arithmetic.

The kernel is C++ (``fused_norm.cpp`` beside this file) compiled with torch's extension
builder into the project environment by ``install/install.sh`` (a minute or two, once; keyed
by the source, torch's version and the CPU's instruction sets; see ``kernel_dir``) and loaded
from there by whoever runs it, without compiling or writing anything. If it is missing there
it is built on first use, in a child process watched by a background thread, so the first
frames use the plain torch ops meanwhile and a command that ends sooner does not cut the
build short; without a C++ compiler the plain ops stay.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from partialstyle.errors import one_line
from partialstyle.style import kernel_dir
from partialstyle.style.multistyle import STATISTICS_PRIOR_PIXELS

_log = logging.getLogger(__name__)

_SOURCE_PATH = Path(__file__).with_name("fused_norm.cpp")
# The frame passes' kernels (compositing, stabilisation), built into the same extension.
_FRAME_SOURCE_PATH = Path(__file__).parent.parent / "frame_kernels.cpp"
# The style networks' convs on AMX (for fast_conv.PackedConv), built in too.
_AMX_SOURCE_PATH = Path(__file__).with_name("amx_conv.cpp")
_SOURCES = (_SOURCE_PATH, _FRAME_SOURCE_PATH, _AMX_SOURCE_PATH)

_lock = threading.Lock()
_module: ModuleType | None = None
_state = "not started"  # "building", "ready" or "failed: <reason>"
# PARTIALSTYLE_FUSED_NORM=0 keeps the plain torch ops (for comparisons, or a broken build).
_enabled = os.environ.get("PARTIALSTYLE_FUSED_NORM", "1") != "0"


def _cpu_flags() -> str:
    """The CPU's instruction-set flags, so a kernel built with -march=native is per CPU."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return ""


def _name() -> str:
    """The extension's name: a new source, torch or CPU gets a build of its own."""
    source = "".join(path.read_text() for path in _SOURCES)
    key = hashlib.sha256((source + _cpu_flags() + torch.__version__).encode()).hexdigest()
    return f"partialstyle_fused_norm_{key[:12]}"


def _import_built(name: str) -> ModuleType | None:
    """The kernel from a search folder where it has been built, or None; reads only (the
    environment may belong to another user)."""
    for folder in kernel_dir.search_dirs():
        library = folder / name / f"{name}.so"
        if library.is_file():
            spec = importlib.util.spec_from_file_location(name, library)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    return None


def _compile(name: str, folder: Path) -> ModuleType:
    """Build the extension into `folder`/`name` and import it; raises if it cannot."""
    # torch's extension builder logs warnings (no CUDA, compiler checks) that would land in
    # the middle of a user's terminal output; a failed build is reported by status().
    builder_log = logging.getLogger("torch.utils.cpp_extension")
    builder_level = builder_log.level
    builder_log.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load_inline

        build_directory = folder / name
        build_directory.mkdir(parents=True, exist_ok=True)
        return load_inline(
            name=name,
            cpp_sources=[path.read_text() for path in _SOURCES],
            functions=[
                "region_moments",
                "region_affine",
                "region_norm",
                "region_norm_rows",
                "mask_pyramid",
                "padded_input",
                "sigmoid_output",
                "layer_colors",
                "premultiplied_layer",
                "normalized_regions",
                "mean_abs_change",
                "steady_blend",
                "guided_upsample",
                "refine_inputs",
                "flow_maps",
                "blend_pixels",
                "round_trip_valid",
                "pixels_to_image",
                "blend_scaled",
                "blend_layer",
                "amx_available",
                "amx_pack_weight",
                "amx_conv",
                "amx_pack_row_weight",
                "amx_row_conv",
            ],
            extra_cflags=["-O3", "-march=native", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            build_directory=str(build_directory),
            verbose=False,
        )
    finally:
        builder_log.setLevel(builder_level)


def _load() -> ModuleType:
    """The built kernel, compiled first if no search folder has it; raises if it cannot."""
    name = _name()
    module = _import_built(name)
    if module is not None:
        return module
    folder = kernel_dir.writable_dir()
    if folder is None:
        places = " or ".join(str(path) for path in kernel_dir.search_dirs())
        raise RuntimeError(f"no writable folder to build the kernel in ({places})")
    return _compile(name, folder)


def _build() -> None:
    """Import the kernel if it is built; else build it in a child process of its own
    session, then import it here.

    The child finishes the build (and releases torch's lock file in the build directory)
    even if this process exits first, as a quick `partialstyle image` does; a build killed
    half way would leave the lock behind and every later build waiting on it. While it runs,
    a marker in the build folder tells OBS's process (see ``kernel_dir.build_running``).
    """
    global _module, _state
    marker = None
    try:
        name = _name()
        _module = _import_built(name)
        if _module is None:
            folder = kernel_dir.writable_dir()
            if folder is None:
                raise RuntimeError("no writable folder to build the kernel in")
            command = [sys.executable, "-m", "partialstyle.style.fused_norm", str(folder)]
            child = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            marker = kernel_dir.mark_building(folder, child.pid)
            output, _ = child.communicate(timeout=1800)
            if child.returncode != 0:
                lines = output.strip().splitlines()
                raise RuntimeError(lines[-1] if lines else f"build exited with {child.returncode}")
            _module = _load()  # built: this only imports it
        _state = "ready"
    except Exception as exc:  # no compiler, no headers, a failed build: plain ops stay
        reason = one_line(exc)
        _state = f"failed: {reason[:200]}"
        _log.info("fused normalisation kernel unavailable (%s); using plain torch ops", _state)
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)


def kernels(wait: bool = False) -> ModuleType | None:
    """The compiled kernels if ready; otherwise start building them (once) and return None.

    ``wait`` blocks until the build is done (tests, benchmarks).
    """
    global _module, _state
    if not _enabled:
        return None
    if _module is not None:
        return _module
    with _lock:
        if _state == "not started":
            try:  # built at install time: a quick import, ready for the very first frame
                _module = _import_built(_name())
            except Exception as exc:  # a broken build: try building it again
                _log.info("fused normalisation kernel could not be imported: %s", one_line(exc))
            if _module is not None:
                _state = "ready"
                return _module
            _state = "building"
            thread = threading.Thread(target=_build, name="fused-norm-build", daemon=True)
            thread.start()
            _kernels_thread[0] = thread
    if wait and _kernels_thread[0] is not None:
        _kernels_thread[0].join()
    return _module


_kernels_thread: list[threading.Thread | None] = [None]


@contextmanager
def disabled() -> Iterator[None]:
    """Use the plain torch ops inside this block (the kernels' reference in tests)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def status() -> str:
    """ "ready", "building", "not started", "disabled" or "failed: <reason>" (doctor, bench)."""
    return _state if _enabled else "disabled"


def for_frames(*tensors: Tensor) -> ModuleType | None:
    """The compiled kernels for the frame passes around the networks (compositing, masks,
    stabilisation, the networks' input) when every tensor is a float32 CPU tensor outside
    autograd, else None; like ``kernels``, starts the build if it has not started."""
    grad = torch.is_grad_enabled()
    if all(
        t.device.type == "cpu" and t.dtype == torch.float32 and not (grad and t.requires_grad)
        for t in tensors
    ):
        return kernels()
    return None


def applies(x: Tensor) -> bool:
    """Whether the kernels handle ``x`` [N,C,H,W]: CPU inference in fp32 or bf16."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and x.dim() == 4
        and x.shape[1] <= 64
        and not (torch.is_grad_enabled() and x.requires_grad)
    )


@dataclass(frozen=True)
class DeferredNorm:
    """A norm's result not written yet: the conv output it normalises and the affine rows
    ``region_norm_rows`` made for it, padded by 1 when applied. The next conv applies them as
    it reads its input (``fast_conv.PackedConv.with_moments`` on the AMX kernel), which saves
    writing the result and reading it back (15 MB each way for the 26-style network's
    full-resolution layer); anything else calls ``materialize``."""

    raw: Tensor  # the conv output [1,C,H,W], channels-last
    scale: Tensor  # [R,C] fp32: the base region's row, then the other region's difference
    shift: Tensor
    masks: Tensor  # the other region's mask [1,1,H,W] fp32, or empty (one region)
    relu: bool
    reflect: bool  # the pad's mode: reflect, else replicate

    def materialize(self, kernels: ModuleType) -> Tensor:
        """The norm's padded result, as ``fused_region_norm`` would have returned it."""
        empty = _empty(self.raw.dtype)
        return kernels.region_affine(
            self.raw, self.masks, self.scale, self.shift, empty, self.relu, 1, self.reflect, 1, 1
        )


def fused_region_norm(
    kernels: ModuleType,
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    other_masks: Tensor | None,
    base: int | None,
    eps: float,
    *,
    relu: bool = False,
    residual: Tensor | None = None,
    out_pad: int = 0,
    pad_mode: str = "reflect",
    subpixel: bool = False,
    out_block: int = 1,
    moments: Tensor | None = None,
    deferred: bool = False,
) -> Tensor | DeferredNorm:
    """Region instance norm of one image [1,C,H,W] with the fused kernels.

    ``gamma``/``beta`` are the regions' rows [R,C] (fp32); ``other_masks`` (fp32
    [1,R-1,H,W], contiguous) are the masks of every region but ``base``, in order, or None
    when R = 1 (the masks sum to 1, so the base's is implied). Then ReLU, + ``residual``,
    padding by ``out_pad``: the result of ``multistyle.region_statistics`` and the blended
    affine, in one call and two passes over memory (one reads ``x`` for every statistic, the
    other writes the padded result); the statistics in between are computed in fp64.

    As in ``region_norm.FastSpatialCIN``, the base region's sums are the whole image's minus
    the others', and its row is the starting point to which the others add their masked
    differences, so pixels outside every other region cost no more than without regions.

    With ``subpixel``, ``x`` [1,4C,H/2,W/2] is an upsampling conv's output before
    ``pixel_shuffle(x, 2)`` (``fast_conv.PackedConv(..., shuffle=False)``): the kernel reads
    the upsampled image from it. ``out_block`` 2 returns the padded result as
    ``pixel_unshuffle(result, 2)``, the input of a conv on 2x2 pixel blocks. Both save a
    pass over the full-resolution image. ``moments``: the statistics' sums the conv that
    wrote ``x`` made as it wrote it (``fast_conv.PackedConv.with_moments``), so that the
    kernel only writes.

    ``deferred`` returns a ``DeferredNorm`` instead, where one can stand for the result: a
    pad of 1, no residual, ``x`` the image itself, at most one other region.
    """
    x = x if x.stride(1) == 1 else x.contiguous(memory_format=torch.channels_last)
    if residual is not None and residual.stride(1) != 1:
        residual = residual.contiguous(memory_format=torch.channels_last)
    masks = _empty(torch.float32) if other_masks is None else other_masks
    base = -1 if base is None else base
    moments = _empty(torch.float64) if moments is None else moments
    if (
        deferred
        and out_pad == 1
        and residual is None
        and not subpixel
        and out_block == 1
        and masks.shape[1:2] in ((), (1,))
    ):
        scale, shift = kernels.region_norm_rows(
            x, masks, gamma, beta, base, eps, STATISTICS_PRIOR_PIXELS, 1, moments
        )
        return DeferredNorm(x, scale, shift, masks, relu, pad_mode == "reflect")
    # The kernel makes gamma and beta fp32 itself and reads rows that are views of a wider
    # table in place: no call or copy here.
    return kernels.region_norm(
        x,
        masks,
        gamma,
        beta,
        base,
        eps,
        STATISTICS_PRIOR_PIXELS,
        _empty(x.dtype) if residual is None else residual,
        relu,
        out_pad,
        pad_mode == "reflect",
        2 if subpixel else 1,
        out_block,
        moments,
    )


def padded_input(image: Tensor, pad: int, dtype: torch.dtype, block: int = 1) -> Tensor:
    """A style network's input: ``image`` [N,C,H,W] reflect-padded by ``pad``, channels-last,
    in ``dtype``, and with ``block`` 2 as ``pixel_unshuffle(padded, 2)`` (a blocked conv's
    input); in one pass of the kernel for one fp32 CPU image, else with torch ops."""
    module = for_frames(image) if image.dim() == 4 and image.shape[0] == 1 else None
    if (
        module is not None
        and dtype in (torch.float32, torch.bfloat16)
        and (block == 1 or all((side + 2 * pad) % 2 == 0 for side in image.shape[-2:]))
    ):
        return module.padded_input(image, pad, dtype == torch.bfloat16, block)
    padded = torch.nn.functional.pad(image, [pad] * 4, mode="reflect")
    padded = padded.to(dtype, memory_format=torch.channels_last)
    return torch.nn.functional.pixel_unshuffle(padded, block) if block > 1 else padded


def padded_activation(
    kernels: ModuleType, y: Tensor, pad: int, subpixel: bool = False, out_block: int = 1
) -> Tensor:
    """A conv's output ``y`` (one image, channels-last) reflect-padded by ``pad`` for the next
    conv, in one pass of the kernel (an identity affine); with ``subpixel``, ``y`` comes before
    ``pixel_shuffle(y, 2)`` and leaves shuffled, and ``out_block`` 2 returns the padded result
    in 2x2 blocks (``pixel_unshuffle``). As torch ops that is two or three passes, each slow on
    channels-last images."""
    scale, shift = _identity_rows(y.shape[1] // (4 if subpixel else 1))
    return kernels.region_affine(
        y,
        _empty(torch.float32),
        scale,
        shift,
        _empty(y.dtype),
        False,
        pad,
        True,
        2 if subpixel else 1,
        out_block,
    )


def normalized_regions(masks: Sequence[Tensor]) -> Tensor:
    """Soft region masks ([h,w] each, negative values taken as 0) as [1,N,h,w] masks that sum
    to 1 per pixel: where none of the regions shows (their sum at most 1e-6), any style will
    do, so the pixel is shared equally (the spatial style kinds, and the arbitrary network's
    own region weights). One pass of the compiled kernel for fp32 CPU masks, else torch ops."""
    module = for_frames(*masks)
    if module is not None:
        return module.normalized_regions(list(masks))
    stacked = torch.stack(tuple(masks)).clamp(min=0.0)
    total = stacked.sum(0, keepdim=True)
    return torch.where(total > 1e-6, stacked / total.clamp(min=1e-6), 1.0 / len(masks))[None]


def sigmoid_output(x: Tensor, height: int, width: int, shown_with: Sequence[Tensor] = ()) -> Tensor:
    """A style network's result: sigmoid of ``x``'s top-left ``height`` x ``width``, in fp32;
    one pass of the kernel for one channels-last CPU image, else torch ops.

    With ``shown_with`` (weights [height,width], where the image is shown), the result is
    the premultiplied layer [1,4,height,width] that ``compose.premultiplied_layer`` makes of
    the image and those weights, bit for bit, in the same pass: the image is never written.
    """
    module = kernels() if applies(x) and x.shape[0] == 1 and x.stride(1) == 1 else None
    if shown_with and not (x.shape[1] == 3 and all(_frame_weight(w) for w in shown_with)):
        module = None
    if module is not None:
        return module.sigmoid_output(x, height, width, list(shown_with))
    image = x[..., :height, :width].float().sigmoid()  # (in place would change an fp32 x)
    if not shown_with:
        return image
    total = shown_with[0].clone()
    for weight in shown_with[1:]:
        total += weight
    return torch.cat([image[0] * total, total[None]])[None]


def _frame_weight(weight: Tensor) -> bool:
    return weight.device.type == "cpu" and weight.dtype == torch.float32 and weight.dim() == 2


@functools.lru_cache(maxsize=8)
def _identity_rows(channels: int) -> tuple[Tensor, Tensor]:
    """Scale 1 and shift 0 for ``channels`` channels: region_affine as padding only."""
    return torch.ones(1, channels), torch.zeros(1, channels)


_empties: dict[torch.dtype, Tensor] = {}


def _empty(dtype: torch.dtype) -> Tensor:
    """An empty CPU tensor standing for "none" in a kernel argument (made once per dtype)."""
    if dtype not in _empties:
        _empties[dtype] = torch.empty(0, dtype=dtype)
    return _empties[dtype]


def _main(argv: list[str]) -> int:
    """Build the kernel (install.sh; `_build`'s child): into the given folder, else the
    environment's; says where it is. Errors go to stderr as one line."""
    try:
        name, folder = _name(), Path(argv[0]) if argv else None
        module = _import_built(name) or (_compile(name, folder) if folder else _load())
    except Exception as exc:
        print(f"fused normalisation kernel build failed: {one_line(exc)}", file=sys.stderr)
        return 1
    print(f"fused style kernel: {module.__file__}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
