"""The "Partial Style Transfer" filter: per-instance state and the render path.

The render callback never waits for inference. Every frame it reads the filter's target
back (GPU → numpy), hands it over (the newest frame wins), and draws the newest finished
result: that frame styled a frame or two earlier (see `partialstyle.live`). Until the first
result, while something is being prepared (`preparation`: the style kernel, the models),
whenever something fails and whenever results stop coming or carry a stylization gone
stale, it passes the source through untouched. Errors reach the OBS log once, not once per
frame. Inference runs in one process shared by every filter instance
(`partialstyle.obs.remote`): nothing here imports torch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from partialstyle.obs import (
    dialog_fields,
    hotkeys,
    libobs,
    properties,
    scriptlog,
    settings,
    stats,
    ui_idle,
)
from partialstyle.obs.gpu import GpuFrames
from partialstyle.obs.pacing import StylePacer
from partialstyle.obs.preparation import Preparation
from partialstyle.obs.source_info import Runtime
from partialstyle.obs.source_info import install as install_source
from partialstyle.obs.status import Figures, status_text
from partialstyle.obs.worker import FrameWorker, Processor

SOURCE_ID = "partialstyle_filter"
DISPLAY_NAME = "Partial Style Transfer"

REPORT_EVERY = 1.0
# The dialog's figures are averaged over this many seconds; the log line's over LOG_EVERY.
STATUS_WINDOW = 10.0
# Staging that takes longer than this (running mean) means the driver copies the frame to
# CPU memory right away (Mesa's software renderers do).
SYNCHRONOUS_STAGE_SECONDS = 0.0005
# A result older than this is not drawn: the source shows live until results come again.
# While a frame is in progress (a busy CPU, not a restart) the last result is held longer:
# a styled background that hides a room should not flash the room on a hiccup.
STALE_SECONDS = 1.0
STALE_WHILE_BUSY_SECONDS = 4.0
# The inference process runs at this nice value so OBS's own threads get the CPU first.
INFERENCE_NICE = 10


def remote_processor(python: Path, values: dict[str, Any]) -> Processor:
    """The filter's processor: the core Pipeline in a child process run by `python`."""
    from partialstyle.obs.remote import RemoteProcessor

    return RemoteProcessor(python, values, nice=INFERENCE_NICE)


def _style_floor(values: dict[str, Any]) -> float:
    """The user's cap on style runs (max_fps) as the shortest pause between two; 0: none."""
    max_fps = float(values.get("max_fps") or 0.0)
    return 1.0 / max_fps if max_fps > 0 else 0.0


def missed_frames() -> int:
    """OBS's running count of frames it rendered late or skipped encoding."""
    obs = libobs.lib()
    video = obs.obs_get_video()
    skipped = obs.video_output_get_skipped_frames(video) if video else 0
    return int(obs.obs_get_lagged_frames()) + int(skipped)


def frame_interval() -> float:
    """OBS's frame interval in seconds (0 when unknown)."""
    fps = libobs.lib().obs_get_active_fps()
    return 1.0 / fps if fps > 1.0 else 0.0


class FilterInstance:
    """One filter on one source: its GPU buffers, worker thread, hotkeys and statistics."""

    def __init__(
        self,
        source: int,
        data: int | None,
        handle: int,
        runtime: Runtime,
        factory: Callable[[Any], Processor],
        environment: Path | None = None,  # the project environment: its kernel folder
    ):
        self.source = source
        self.figures: Figures | None = None
        self.dialog_builds = 0  # how often OBS built this filter's dialog, and its last status
        self.dialog_status = ""
        self.stats = stats.RenderStats()
        self.gpu: GpuFrames | None = None
        self.graphics_thread: int | None = None  # learnt in video_tick
        self._runtime = runtime
        self._logged: set[str] = set()
        self.values = properties.read(data)
        self.pacer = StylePacer(_style_floor(self.values))
        self._stage_seconds = 0.0  # running mean of GpuFrames.stage
        self._own_frames = 0  # frames of OBS's own render seen while the worker was ready
        self.worker = FrameWorker(
            factory,
            self.values,
            on_error=self._log_error,
            name=f"partialstyle-{handle}",
        )
        self.handle = handle
        self.preparation = Preparation(
            environment,
            lambda text: scriptlog.report(libobs.LOG_INFO, f"{self.label}: {text}"),
            time.monotonic(),
        )
        self.hotkeys: dict[int, str] = {}  # registered on the parent, once it is known
        self._stop_reporting = threading.Event()
        self._reporter = threading.Thread(
            target=self._report_loop, name=f"partialstyle-stats-{handle}", daemon=True
        )
        self._reporter.start()

    @property
    def name(self) -> str:
        raw = libobs.lib().obs_source_get_name(self.source)
        return raw.decode("utf-8", "replace") if raw else "?"

    @property
    def label(self) -> str:
        """ "'Camera' / 'Partial Style'": which source and filter a log line is about."""
        return properties.source_label(self.source)

    def update(self, data: int | None) -> None:
        """New settings: the frame in progress is dropped; the next frame uses them."""
        ui_idle.edited()
        values, self.problems = settings.keep_valid_styles(properties.read(data), self.values)
        for problem in self.problems:
            self._log_once(libobs.LOG_WARNING, f"{properties.source_label(self.source)}: {problem}")
        if settings.same_effect(values, self.values):
            self.values = values
            return  # only the dialog's own fields changed, e.g. a style still being typed
        self.values = values
        self.pacer.floor = _style_floor(self.values)
        self.worker.configure(self.values)

    def render(self) -> bool:
        """The video_render body; False asks the caller to pass the source through.

        Screenshots render from other threads, but always inside the graphics context, whose
        mutex keeps these calls one at a time.
        """
        started = time.perf_counter()
        try:
            return self._render()
        finally:
            self.stats.add_render(time.perf_counter() - started)

    def _render(self) -> bool:
        obs = libobs.lib()
        target = obs.obs_filter_get_target(self.source)
        if not target:
            return False
        width = obs.obs_source_get_base_width(target)
        height = obs.obs_source_get_base_height(target)
        if not width or not height:
            return False
        if self.preparation.waiting:
            return False  # nothing is sent while the kernel builds: it gets the CPU
        gpu = self.gpu
        if gpu is None or (gpu.width, gpu.height) != (width, height):
            if gpu is not None:
                gpu.destroy()
            self.gpu = gpu = None
            self.worker.drop_result()
            gpu = self.gpu = GpuFrames(width, height)

        # Every frame OBS renders goes to the inference process: the one staged on the
        # previous render is read back (its copy has finished by now), this one is staged.
        # Frames are only taken from OBS's own render: screenshots and other off-thread
        # renders may run with a different colour-space state.
        step = time.perf_counter()
        if threading.get_ident() == self.graphics_thread and self.worker.state == "ready":
            self._read_back(gpu)  # a frame staged on an earlier render, if any
            step = self._timed("readback", step)
            self._own_frames += 1
            if self._own_frames % self.pacer.stride == 0:  # every frame unless OBS lags
                gpu.stage(target, self._draws_with_default_effect(target))
                staged = time.perf_counter()
                self._stage_seconds += 0.1 * (staged - step - self._stage_seconds)
                step = self._timed("stage", step)
                # A driver that copies while staging (software rendering) has the frame
                # ready now: reading it at once saves a frame of delay at no cost.
                # Elsewhere the copy runs on the GPU, and the frame is read next render.
                if self._stage_seconds > SYNCHRONOUS_STAGE_SECONDS:
                    self._read_back(gpu)
                    step = self._timed("readback", step)

        result = self.worker.latest()
        usable = result is not None and result.image.shape[:2] == (height, width)
        if usable and result.number != gpu.uploaded:
            gpu.upload(result.image, result.number)
            self.stats.add_result()
            step = self._timed("upload", step)
        # A result that stopped coming (the inference process stalls or restarts) would
        # freeze the picture: show the live source instead.
        working = self.worker.busy and not self.worker.recovering  # slow, not failing
        limit = STALE_WHILE_BUSY_SECONDS if working else STALE_SECONDS
        stale = time.monotonic() - gpu.uploaded_at > limit
        if not usable or gpu.uploaded == 0 or stale or self.preparation.stale_style:
            return False
        gpu.draw()
        return True

    def _read_back(self, gpu: GpuFrames) -> None:
        frame = gpu.read_staged()
        if frame is not None:
            self.worker.submit(frame)
            self.stats.readbacks += 1

    def _timed(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.stats.add_step(name, now - since)
        return now

    def _draws_with_default_effect(self, target: int) -> bool:
        """Whether `target` must be rendered inside the default effect (see GpuFrames.stage):
        the filter's parent, synchronous, and not drawing with its own effect."""
        obs = libobs.lib()
        if target != obs.obs_filter_get_parent(self.source):
            return False
        flags = obs.obs_source_get_output_flags(target)
        return not flags & (libobs.OBS_SOURCE_ASYNC | libobs.OBS_SOURCE_CUSTOM_DRAW)

    def status(self) -> str:
        """The properties dialog's status: state first, measurements last (see properties)."""
        state, waiting = self.worker.state, self.preparation
        return status_text(
            state,
            self.worker.error,
            (*getattr(self, "problems", ()), *dialog_fields.typed_problems(self.values)),
            self.figures,
            preparing=waiting.building,
            loading_for=time.monotonic() - waiting.created if state == "loading" else None,
            stale_style=waiting.stale_style,
        )

    def stop(self) -> None:
        """End the threads and the inference process (bounded; safe to call twice)."""
        self._stop_reporting.set()
        self.worker.stop()
        if self._reporter is not threading.current_thread():
            self._reporter.join(2.0)

    def tick(self) -> None:
        """video_tick: register the hotkeys as soon as the filter has a parent."""
        if not self.hotkeys:
            parent = libobs.lib().obs_filter_get_parent(self.source)
            if parent:
                self.hotkeys = hotkeys.register(parent, self.handle, self._runtime.hotkey_thunk)

    def destroy(self) -> None:
        hotkeys.unregister(self.hotkeys)
        self.hotkeys = {}
        self.stop()
        stats.publish(self.name, None)
        if self.gpu is not None:
            obs = libobs.lib()
            obs.obs_enter_graphics()
            try:
                self.gpu.destroy()
            finally:
                obs.obs_leave_graphics()
            self.gpu = None

    def hotkey(self, hotkey_id: int) -> None:
        name = self.hotkeys.get(hotkey_id)
        if name is not None:
            hotkeys.trigger(self.source, name)

    def _log_error(self, message: str) -> None:
        label = properties.source_label(self.source)
        self._log_once(libobs.LOG_ERROR, f"{label}: {message} (showing the source unstyled)")

    def _log_once(self, level: int, message: str) -> None:
        if message not in self._logged:
            self._logged.add(message)
            scriptlog.report(level, message)  # also to Tools → Scripts → Script Log

    def _report_loop(self) -> None:
        last_log = last_report = time.monotonic()
        while not self._stop_reporting.wait(REPORT_EVERY):
            now = time.monotonic()
            elapsed, last_report = now - last_report, now
            pause = self.pacer.update(missed_frames(), elapsed)
            processor = self.worker.processor
            stylizations = getattr(processor, "stylizations", 0)
            keyframe_age = getattr(processor, "keyframe_age", None)
            interval = frame_interval()
            # keyframe_age counts OBS's frames (the inference process measures it in seconds)
            self.preparation.follow(now, self.worker.state, keyframe_age, interval)
            if processor is not None and hasattr(processor, "pace"):
                processor.pace(pause, interval)
            self.stats.sample(
                now,
                results=self.stats.results,
                stylizations=stylizations,
                waits=getattr(processor, "waits", 0),
                in_line=getattr(processor, "in_line", 0),
            )
            rates = self.stats.rates(STATUS_WINDOW)
            summary = self.stats.summary()
            summary["style_pause"] = pause
            summary["frame_stride"] = self.pacer.stride
            summary["holding_back"] = self.pacer.describe()
            summary["missed_frames"] = missed_frames()
            summary["stylizations"] = stylizations
            summary["styles_per_second"] = rates.get("stylizations", 0.0)
            # Frames past the bound: waiting for the style thread, or styled in line.
            summary["waits_per_second"] = rates.get("waits", 0.0)
            summary["styled_in_line_per_second"] = rates.get("in_line", 0.0)
            summary["keyframe_age"] = keyframe_age
            summary["preparing"] = self.preparation.building
            summary["stale_style"] = self.preparation.stale_style
            summary["dialog_builds"] = self.dialog_builds
            summary["dialog_status"] = self.dialog_status
            durations = list(self.worker.durations)
            summary["inference_ms_mean"] = (
                1000.0 * sum(durations) / len(durations) if durations else 0.0
            )
            # Of that, the inference process's own time (the rest is the hand-over).
            child = list(getattr(processor, "recent_seconds", ()))
            summary["inference_own_ms_mean"] = 1000.0 * sum(child) / len(child) if child else 0.0
            summary["results"] = self.worker.results
            summary["inference_pid"] = getattr(self.worker.processor, "pid", None)
            summary["state"] = self.worker.state
            summary["error"] = self.worker.error
            self.figures = Figures(
                styled_fps=rates.get("results", 0.0),
                refreshes_per_second=summary["styles_per_second"],
                keyframe_age=summary["keyframe_age"],
                render_ms=summary["render_ms_mean"],
                holding_back=summary["holding_back"],
            )
            stats.publish(self.name, summary)
            if time.monotonic() - last_log >= stats.LOG_EVERY:
                last_log = time.monotonic()
                rates = self.stats.rates(stats.LOG_EVERY)
                libobs.log(libobs.LOG_INFO, stats.log_line(self.label, summary, rates))


class FilterType:
    """The callbacks libobs calls (through `Runtime`'s thunks) for every instance."""

    def __init__(self, factory: Callable[[Any], Processor], environment: Path | None = None):
        self.factory = factory
        self.environment = environment
        self.runtime: Runtime | None = None

    def create(self, data: int | None, source: int, handle: int) -> FilterInstance:
        assert self.runtime is not None
        return FilterInstance(source, data, handle, self.runtime, self.factory, self.environment)

    def destroy(self, instance: FilterInstance) -> None:
        instance.destroy()

    def get_defaults(self, data: int | None) -> None:
        properties.write_defaults(data)

    def get_properties(self, instance: FilterInstance | None) -> int:
        if instance is None:
            return properties.build("Not running yet.")
        instance.dialog_status = status = instance.status()
        instance.dialog_builds += 1
        return properties.build(status, instance.values)

    def update(self, instance: FilterInstance, data: int | None) -> None:
        instance.update(data)

    def video_tick(self, instance: FilterInstance, seconds: float) -> None:
        instance.graphics_thread = threading.get_ident()  # ticks run on OBS's graphics thread
        instance.tick()

    def video_render(self, instance: FilterInstance, effect: int | None) -> bool:
        return instance.render()

    def hotkey(self, instance: FilterInstance, hotkey_id: int) -> None:
        instance.hotkey(hotkey_id)

    def shutdown(self, instance: FilterInstance) -> None:
        instance.stop()


def install(python: Path) -> Runtime:
    """Register the filter with OBS (once per process) or, after a script reload, swap in
    this code's callbacks for the old ones. `python` runs the inference processes."""
    # python is <environment>/bin/python (not resolved: that would leave the environment)
    handler = FilterType(partial(remote_processor, python), python.parent.parent)
    runtime = install_source(
        SOURCE_ID, DISPLAY_NAME, libobs.OBS_SOURCE_VIDEO | libobs.OBS_SOURCE_SRGB, handler
    )
    handler.runtime = runtime
    return runtime
