"""Where the fused kernel is built and found, and how OBS's process sees a build running."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from partialstyle.style import kernel_dir


def test_the_environment_folder_comes_first_and_the_user_folder_is_the_fallback(
    tmp_path, monkeypatch
):
    monkeypatch.delenv(kernel_dir.DIR_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    prefix = tmp_path / "venv"
    assert kernel_dir.search_dirs(prefix) == (
        prefix / kernel_dir.FOLDER,
        tmp_path / "cache" / "partialstyle" / "kernels",
    )
    assert kernel_dir.writable_dir(prefix) == prefix / kernel_dir.FOLDER
    monkeypatch.setenv(kernel_dir.DIR_VARIABLE, str(tmp_path / "packaged"))
    assert kernel_dir.environment_dir(prefix) == tmp_path / "packaged"


def test_a_running_build_is_seen_and_a_dead_ones_marker_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv(kernel_dir.DIR_VARIABLE, str(tmp_path / "kernels"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = kernel_dir.writable_dir()
    assert kernel_dir.build_running() is None
    builder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        kernel_dir.mark_building(folder, builder.pid)
        seconds = kernel_dir.build_running(now=time.time() + 40.0)
        assert seconds is not None and 39.0 <= seconds <= 41.0
    finally:
        builder.kill()
        builder.wait()
    assert kernel_dir.build_running() is None  # its process is gone
    (folder / kernel_dir.MARKER).write_text("not json")
    assert kernel_dir.build_running() is None


def test_a_built_kernel_loads_for_another_user_without_writing(tmp_path):
    """Built once into a folder (install.sh), then used with another HOME from a folder it
    cannot write: no build, nothing written to either. The environment's build is copied
    when it has one (install.sh made it); otherwise it is built here (about a minute)."""
    folder = tmp_path / "kernels"
    installed = kernel_dir.environment_dir()
    if installed.is_dir() and any(installed.glob("*/*.so")):
        shutil.copytree(installed, folder, ignore=shutil.ignore_patterns(kernel_dir.MARKER))
    env = dict(os.environ, PARTIALSTYLE_KERNEL_DIR=str(folder))
    build = [sys.executable, "-m", "partialstyle.style.fused_norm"]
    built = subprocess.run(build, env=env, capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr
    assert str(folder) in built.stdout
    home = tmp_path / "other-home"
    home.mkdir()
    before = sorted(path.relative_to(folder) for path in folder.rglob("*"))
    for path in (folder, *folder.rglob("*")):
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        code = (
            "from partialstyle.style import fused_norm; "
            "k = fused_norm.kernels(); print(k is not None, fused_norm.status())"
        )
        env.update(HOME=str(home), XDG_CACHE_HOME="")
        used = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    finally:
        for path in (folder, *folder.rglob("*")):
            path.chmod(path.stat().st_mode | 0o200)
    assert used.stdout.split() == ["True", "ready"], used.stderr
    assert sorted(path.relative_to(folder) for path in folder.rglob("*")) == before
    assert list(home.iterdir()) == []
