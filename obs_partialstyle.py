"""Partial Style Transfer for OBS Studio: add this script in Tools → Scripts.

It makes the partialstyle environment importable inside OBS's own Python, registers the
"Partial Style Transfer" video filter once per OBS process and shows whether everything it
needs is in place. Only the light OBS glue (numpy, ctypes) runs inside OBS: every filter runs
its neural networks in a child process started with the environment's own Python.

The environment is, in this order: the `.venv` folder beside this script
(what install/install.sh makes), the folder set in this script's settings, or the folder in
the environment variable PARTIALSTYLE_VENV.
"""

from __future__ import annotations

import os
import site
import sys
import threading
from pathlib import Path

import obspython as obs

HERE = Path(__file__).resolve().parent
VENV_SETTING = "venv"
OBS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
TICK_MS = 500


def venv_python_version(venv: Path) -> str | None:
    """The "3.x" a virtualenv was made with, from its pyvenv.cfg or lib/python3.x folder."""
    config = venv / "pyvenv.cfg"
    if config.is_file():
        for line in config.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return ".".join(value.strip().split(".")[:2])
    found = sorted((venv / "lib").glob("python3.*"))
    return found[0].name.removeprefix("python") if found else None


def site_packages(venv: Path) -> Path | None:
    for candidate in [
        venv / "Lib" / "site-packages",
        *(venv / "lib").glob("python3.*/site-packages"),
    ]:
        if candidate.is_dir():
            return candidate
    return None


class Environment:
    """Where partialstyle's packages are and whether OBS's Python can use them."""

    def __init__(self, configured: str = ""):
        self.venv: Path | None = None
        self.problem: str | None = None
        candidates = [
            ("beside the script", HERE / ".venv"),
            ("in the script's settings", Path(configured) if configured else None),
            (
                "in PARTIALSTYLE_VENV",
                Path(os.environ["PARTIALSTYLE_VENV"])
                if os.environ.get("PARTIALSTYLE_VENV")
                else None,
            ),
        ]
        for origin, venv in candidates:
            if venv is None:
                continue
            if not (venv / "pyvenv.cfg").is_file():
                if origin != "beside the script":
                    self.problem = f"{venv} ({origin}) is not a Python virtual environment."
                continue
            version = venv_python_version(venv)
            if version != OBS_PYTHON:
                self.problem = (
                    f"OBS runs Python {OBS_PYTHON} but {venv} was made with Python {version}; "
                    f"binary packages (numpy, torch) only load in the same version. Recreate it "
                    f"with python{OBS_PYTHON} (install/install.sh --python python{OBS_PYTHON})."
                )
                continue
            self.venv, self.problem = venv, None
            return
        if self.problem is None:
            self.problem = (
                f"No environment found: run install/install.sh in {HERE}, or set the folder of "
                "an existing partialstyle virtualenv below."
            )

    def activate(self) -> None:
        packages = site_packages(self.venv) if self.venv else None
        if packages is None:
            raise RuntimeError(f"{self.venv} has no site-packages folder")
        if str(packages) not in sys.path:
            site.addsitedir(str(packages))
        if str(HERE) not in sys.path:
            sys.path.append(str(HERE))


class Status:
    """What the script's settings in the Scripts window show; filled in by `load` and a
    background check (importing torch takes seconds, so never on OBS's UI thread)."""

    def __init__(self):
        self.environment = "not checked"
        self.filter = "not registered"
        self.device = "not checked: no usable environment"
        self.models = "not checked: no usable environment"

    def text(self) -> str:
        return "\n".join(
            [
                f"Environment: {self.environment}",
                f"Python: OBS {OBS_PYTHON}",
                f"Filter: {self.filter}",
                f"Device: {self.device}",
                f"Models: {self.models}",
            ]
        )


status = Status()
loaded_venv: Path | None = None
shown_status: dict = {}  # filter handle -> what its dialog was last rebuilt with


def load(configured: str) -> None:
    """Find and activate the environment, register the filter, check device and models."""
    global loaded_venv
    environment = Environment(configured)
    if environment.venv is not None and environment.venv == loaded_venv:
        return
    if environment.venv is None:
        status.environment = f"missing. {environment.problem}"
        return
    try:
        environment.activate()
        from partialstyle.obs import filter as partialstyle_filter
        from partialstyle.obs.launch import venv_python

        python = venv_python(environment.venv)
    except Exception as error:
        status.environment = f"{environment.venv} could not be used: {error}"
        return
    status.environment = f"{environment.venv} (Python {OBS_PYTHON}, matches OBS)"
    partialstyle_filter.install(python)
    loaded_venv = environment.venv
    status.filter = f"'{partialstyle_filter.DISPLAY_NAME}' is available in every source's Filters"
    register_reload_hotkey()
    status.device = status.models = "checking… (press Refresh status in a few seconds)"
    threading.Thread(
        target=check_device_and_models, args=(python,), name="partialstyle-check", daemon=True
    ).start()


def check_device_and_models(python: Path) -> None:
    """Asks the environment's Python (it imports torch: seconds, and never inside OBS)."""
    from partialstyle.obs.launch import check_environment

    found = check_environment(python)
    if found.error is not None:
        status.device = status.models = f"could not check: {found.error}"
        return
    status.device = f"{found.device} (the 'auto' device setting)"
    from partialstyle.obs import properties

    properties.found_device = found.device  # the dialog greys out what needs a GPU
    missing = found.missing
    status.models = (
        f"missing {', '.join(missing)}: run `partialstyle models prepare`" if missing else "ready"
    )


def register_reload_hotkey() -> None:
    from partialstyle.obs import script_reload

    def on_hotkey(pressed: bool) -> None:
        if pressed:
            script_reload.queue_reload(sys.modules[__name__])

    obs.obs_hotkey_register_frontend(
        script_reload.HOTKEY_NAME, script_reload.HOTKEY_DESCRIPTION, on_hotkey
    )


# -- the script interface OBS calls ------------------------------------------------------------


def script_description() -> str:
    """Read by OBS once per load, before the device check ends: so no status here."""
    return (
        "<b>Partial Style Transfer</b><br>"
        "Restyles the people and the background of a video source with different neural "
        "art styles. Add it to a source: right-click the source → Filters → + → "
        "Partial Style Transfer.<br><br>"
        "The environment, device and models are checked below (Refresh status).<br>"
        "Errors of the filters also show in the Script Log."
    )


def tick() -> None:
    """Twice a second, in the script's context: hand the filters' errors to the Script Log
    and let open filter dialogs show their current state."""
    if loaded_venv is None:
        return
    from partialstyle.obs import scriptlog, ui_idle
    from partialstyle.obs import status as dialog_status

    scriptlog.drain(obs.script_log)
    ui_idle.poll()  # what the user is doing, asked on Qt's thread for the next tick
    dialog_status.refresh_open_dialogs(shown_status, ui_idle.idle)


def script_load(settings) -> None:
    load(obs.obs_data_get_string(settings, VENV_SETTING))
    if loaded_venv is not None:
        from partialstyle.obs import scriptlog

        scriptlog.attach()
    obs.timer_add(tick, TICK_MS)


def script_unload() -> None:
    obs.timer_remove(tick)
    if loaded_venv is not None:
        from partialstyle.obs import scriptlog

        scriptlog.detach()


def script_update(settings) -> None:
    if status.filter == "not registered":
        load(obs.obs_data_get_string(settings, VENV_SETTING))
        if loaded_venv is not None:
            from partialstyle.obs import scriptlog

            scriptlog.attach()


def refresh_status(props, prop) -> bool:
    """The "Refresh status" button: show what the checks have found by now."""
    obs.obs_property_set_description(obs.obs_properties_get(props, "status"), status.text())
    return True


def script_properties():
    props = obs.obs_properties_create()
    text = obs.obs_properties_add_text(props, "status", status.text(), obs.OBS_TEXT_INFO)
    obs.obs_property_text_set_info_word_wrap(text, True)
    obs.obs_properties_add_button(props, "refresh_status", "Refresh status", refresh_status)
    folder = obs.obs_properties_add_path(
        props, VENV_SETTING, "Environment", obs.OBS_PATH_DIRECTORY, "", str(HERE)
    )
    obs.obs_property_set_long_description(
        folder, "The project's environment folder; only needed when it is not .venv here."
    )
    hint = obs.obs_properties_add_text(
        props,
        "environment_hint",
        "Only needed when the environment is not the .venv beside this script.",
        obs.OBS_TEXT_INFO,
    )
    obs.obs_property_text_set_info_word_wrap(hint, True)
    return props


# OBS reads the description right after importing, before script_load: check now.
load("")
