"""Moving frames between OBS's GPU and numpy: read the filter's target back, draw a result.

Every method must run inside the graphics context (OBS holds it during video_render; elsewhere
wrap in obs_enter_graphics/obs_leave_graphics). Readback is double-buffered: a frame is staged
on one render call and mapped on the next, so the map finds the copy finished instead of
stalling the GPU.
"""

from __future__ import annotations

import ctypes
import time

import numpy as np

from partialstyle.obs import libobs


class GpuFrames:
    """A texrender, two stage surfaces and an output texture for one frame size."""

    def __init__(self, width: int, height: int):
        obs = libobs.lib()
        self.width, self.height = width, height
        self.texrender = obs.gs_texrender_create(libobs.GS_RGBA, libobs.GS_ZS_NONE)
        self.stages = [obs.gs_stagesurface_create(width, height, libobs.GS_RGBA) for _ in range(2)]
        self.texture = obs.gs_texture_create(
            width, height, libobs.GS_RGBA, 1, None, libobs.GS_DYNAMIC
        )
        self.staged: int | None = None  # index of the stage surface holding an unread frame
        self.uploaded = 0  # number of the result now in `texture` (0: none)
        self.uploaded_at = 0.0  # time.monotonic() of that upload
        if not (self.texrender and all(self.stages) and self.texture):
            self.destroy()
            raise RuntimeError(f"could not create GPU buffers for {width}x{height}")

    def destroy(self) -> None:
        obs = libobs.lib()
        if self.texrender:
            obs.gs_texrender_destroy(self.texrender)
        for stage in self.stages:
            if stage:
                obs.gs_stagesurface_destroy(stage)
        if self.texture:
            obs.gs_texture_destroy(self.texture)
        self.texrender, self.stages, self.texture = None, [], None

    def stage(self, target: int, default_effect: bool = False) -> bool:
        """Render `target` as it enters this filter and start copying it to CPU memory.

        default_effect: the target is the filter's parent and a synchronous source that
        draws with whatever effect is current (image, color, text sources): render it inside
        the default effect's "Draw" technique, as libobs does for its own filters; there is
        no current effect inside our texrender otherwise, and such a source draws nothing.
        """
        obs = libobs.lib()
        obs.gs_texrender_reset(self.texrender)
        if not obs.gs_texrender_begin(self.texrender, self.width, self.height):
            return False
        clear = (ctypes.c_float * 4)(0.0, 0.0, 0.0, 0.0)
        obs.gs_clear(libobs.GS_CLEAR_COLOR, clear, 0.0, 0)
        obs.gs_ortho(0.0, float(self.width), 0.0, float(self.height), -100.0, 100.0)
        # The caller's colour state varies (main render, screenshots): fix it so the bytes
        # read back are always the sRGB-encoded values the source shows.
        linear, framebuffer_srgb = obs.gs_get_linear_srgb(), obs.gs_framebuffer_srgb_enabled()
        obs.gs_set_linear_srgb(False)
        obs.gs_enable_framebuffer_srgb(False)
        obs.gs_blend_state_push()
        obs.gs_blend_function(libobs.GS_BLEND_ONE, libobs.GS_BLEND_ZERO)
        if default_effect:
            effect = obs.obs_get_base_effect(libobs.OBS_EFFECT_DEFAULT)
            while obs.gs_effect_loop(effect, b"Draw"):
                obs.obs_source_video_render(target)
        else:
            obs.obs_source_video_render(target)
        obs.gs_blend_state_pop()
        obs.gs_enable_framebuffer_srgb(framebuffer_srgb)
        obs.gs_set_linear_srgb(linear)
        obs.gs_texrender_end(self.texrender)
        index = 0 if self.staged is None else 1 - self.staged
        obs.gs_stage_texture(self.stages[index], obs.gs_texrender_get_texture(self.texrender))
        self.staged = index
        return True

    def read_staged(self) -> np.ndarray | None:
        """The staged frame as a fresh H×W×4 RGBA array (copied before unmapping)."""
        if self.staged is None:
            return None
        obs = libobs.lib()
        stage, self.staged = self.stages[self.staged], None
        data = ctypes.POINTER(ctypes.c_uint8)()
        linesize = ctypes.c_uint32()
        if not obs.gs_stagesurface_map(stage, ctypes.byref(data), ctypes.byref(linesize)):
            return None
        try:
            rows = np.ctypeslib.as_array(data, shape=(self.height, linesize.value))
            return rows[:, : self.width * 4].reshape(self.height, self.width, 4).copy()
        finally:
            obs.gs_stagesurface_unmap(stage)

    def upload(self, image: np.ndarray, number: int) -> None:
        image = np.ascontiguousarray(image)
        libobs.lib().gs_texture_set_image(self.texture, image.ctypes.data, self.width * 4, False)
        self.uploaded = number
        self.uploaded_at = time.monotonic()

    def draw(self) -> None:
        """Draw the output texture with OBS's default effect (sRGB-correct, premultiplied)."""
        obs = libobs.lib()
        previous = obs.gs_framebuffer_srgb_enabled()
        obs.gs_enable_framebuffer_srgb(True)
        obs.gs_blend_state_push()
        obs.gs_blend_function(libobs.GS_BLEND_ONE, libobs.GS_BLEND_INVSRCALPHA)
        effect = obs.obs_get_base_effect(libobs.OBS_EFFECT_DEFAULT)
        obs.gs_effect_set_texture_srgb(
            obs.gs_effect_get_param_by_name(effect, b"image"), self.texture
        )
        while obs.gs_effect_loop(effect, b"Draw"):
            obs.gs_draw_sprite(self.texture, 0, self.width, self.height)
        obs.gs_blend_state_pop()
        obs.gs_enable_framebuffer_srgb(previous)
