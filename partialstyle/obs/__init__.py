"""The OBS Studio glue: the "Partial Style Transfer" filter and the `partialstyle obs` commands.

Nothing here runs on import: `obs_partialstyle.py` (the script users add in OBS) calls
`partialstyle.obs.filter.install()`. The core (partialstyle.*) never imports this package.
"""

import sys


def block_triton() -> None:
    """Hide triton from torch before torch's first import inside OBS.

    triton bundles its own LLVM, whose static initialisers crash the OBS process where Mesa
    has already loaded LLVM (llvmpipe, radeonsi). torch treats a None module as not installed.
    """
    if "torch" not in sys.modules:
        sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
