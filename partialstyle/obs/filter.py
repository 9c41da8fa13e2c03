"""The "Partial Style Transfer" filter: per-instance state and the render path.

The render callback never waits for inference. When the worker is about to need a frame it
reads the filter's target back (GPU → numpy), hands it over (the newest frame wins), and it
draws the newest finished result. Until the first result, and whenever something fails, it
passes the source through untouched. Errors reach the OBS log once, not once per frame.
Inference runs in a child process per filter instance (`partialstyle.obs.remote`): nothing
here imports torch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from partialstyle.obs import hotkeys, libobs, properties, scriptlog, settings, stats
from partialstyle.obs.gpu import GpuFrames
from partialstyle.obs.source_info import Runtime
from partialstyle.obs.source_info import install as install_source
from partialstyle.obs.worker import FrameWorker, Processor

SOURCE_ID = "partialstyle_filter"
DISPLAY_NAME = "Partial Style Transfer"

# Hand a frame to the worker this long before it is expected to finish the current one.
READBACK_LEAD_SECONDS = 0.05
REPORT_EVERY = 1.0
# After a settings change, frames are restyled without the max_fps cap for the style fade
# (morph_seconds) plus this long, so the stabilizer lets go of the old look quickly too.
SETTLE_SECONDS = 1.0
# The inference process runs at this nice value so OBS's own threads get the CPU first.
INFERENCE_NICE = 10


def remote_processor(python: Path, values: dict[str, Any]) -> Processor:
    """The filter's processor: the core Pipeline in a child process run by `python`."""
    from partialstyle.obs.remote import RemoteProcessor

    return RemoteProcessor(python, values, nice=INFERENCE_NICE)


class FilterInstance:
    """One filter on one source: its GPU buffers, worker thread, hotkeys and statistics."""

    def __init__(
        self,
        source: int,
        data: int | None,
        handle: int,
        runtime: Runtime,
        factory: Callable[[Any], Processor],
    ):
        self.source = source
        self.stats = stats.RenderStats()
        self.gpu: GpuFrames | None = None
        self.graphics_thread: int | None = None  # learnt in video_tick
        self._runtime = runtime
        self._logged: set[str] = set()
        self.values = settings.read(data)
        self.worker = FrameWorker(
            factory,
            self.values,
            on_error=self._log_error,
            name=f"partialstyle-{handle}",
        )
        self.handle = handle
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

    def update(self, data: int | None) -> None:
        """New settings: the frame in progress is dropped and, while a style change fades in
        and settles, frames are restyled without the max_fps cap."""
        values, self.problems = settings.keep_valid_styles(settings.read(data), self.values)
        for problem in self.problems:
            self._log_once(libobs.LOG_WARNING, f"{properties.source_label(self.source)}: {problem}")
        if settings.same_effect(values, self.values):
            self.values = values
            return  # only the dialog's own fields changed, e.g. a style still being typed
        self.values = values
        morph = max(0.0, float(self.values.get("morph_seconds") or 0.0))
        self.worker.configure(self.values, uncapped_seconds=morph + SETTLE_SECONDS)

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
        gpu = self.gpu
        if gpu is None or (gpu.width, gpu.height) != (width, height):
            if gpu is not None:
                gpu.destroy()
            self.gpu = gpu = None
            self.worker.drop_result()
            gpu = self.gpu = GpuFrames(width, height)

        # At most one costly GPU step per frame (map a staged frame, upload a result, or
        # stage a frame), so no single frame carries two of them.
        # Frames are only taken from OBS's own render: screenshots and other off-thread
        # renders may run with a different colour-space state.
        own_render = threading.get_ident() == self.graphics_thread
        busy = False
        if own_render:
            frame = gpu.read_staged()
            if frame is not None:
                self.worker.submit(frame)
                self.stats.readbacks += 1
                busy = True

        result = self.worker.latest()
        usable = result is not None and result.image.shape[:2] == (height, width)
        if usable and result.number != gpu.uploaded and (not busy or not own_render):
            gpu.upload(result.image, result.number)
            self.stats.add_result()
            busy = True

        if own_render and not busy:
            max_fps = float(self.values.get("max_fps") or 0.0)
            min_interval = 1.0 / max_fps if max_fps > 0 else 0.0
            if self.worker.wants_frame(READBACK_LEAD_SECONDS, min_interval):
                gpu.stage(target)

        if not usable or gpu.uploaded == 0:
            return False
        gpu.draw()
        return True

    def status(self) -> str:
        """The properties dialog's status: state first, measurements last (see properties)."""
        summary = self.stats.summary()
        return properties.status_text(
            self.worker.state,
            self.worker.error,
            getattr(self, "problems", ()),
            summary["processed_fps"],
            summary["render_ms_mean"],
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
        last_log = time.monotonic()
        while not self._stop_reporting.wait(REPORT_EVERY):
            summary = self.stats.summary()
            durations = list(self.worker.durations)
            summary["inference_ms_mean"] = (
                1000.0 * sum(durations) / len(durations) if durations else 0.0
            )
            summary["results"] = self.worker.results
            summary["inference_pid"] = getattr(self.worker.processor, "pid", None)
            summary["state"] = self.worker.state
            summary["error"] = self.worker.error
            stats.publish(self.name, summary)
            if time.monotonic() - last_log >= stats.LOG_EVERY:
                last_log = time.monotonic()
                libobs.log(
                    libobs.LOG_INFO,
                    f"'{self.name}': render thread {summary['render_ms_mean']:.2f} ms/frame "
                    f"(p95 {summary['render_ms_p95']:.2f}, max {summary['render_ms_max']:.2f}), "
                    f"{summary['processed_fps']:.1f} styled frames/s, "
                    f"inference {summary['inference_ms_mean']:.0f} ms",
                )


class FilterType:
    """The callbacks libobs calls (through `Runtime`'s thunks) for every instance."""

    def __init__(self, factory: Callable[[Any], Processor]):
        self.factory = factory
        self.runtime: Runtime | None = None

    def create(self, data: int | None, source: int, handle: int) -> FilterInstance:
        assert self.runtime is not None
        return FilterInstance(source, data, handle, self.runtime, self.factory)

    def destroy(self, instance: FilterInstance) -> None:
        instance.destroy()

    def get_defaults(self, data: int | None) -> None:
        settings.write_defaults(data)

    def get_properties(self, instance: FilterInstance | None) -> int:
        status = instance.status() if instance is not None else "Not running yet."
        return settings.build_properties(status)

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
    handler = FilterType(partial(remote_processor, python))
    runtime = install_source(
        SOURCE_ID, DISPLAY_NAME, libobs.OBS_SOURCE_VIDEO | libobs.OBS_SOURCE_SRGB, handler
    )
    handler.runtime = runtime
    return runtime
