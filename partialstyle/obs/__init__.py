"""The OBS Studio glue: the "Partial Style Transfer" filter and the `partialstyle obs` commands.

Nothing here runs on import: `obs_partialstyle.py` (the script users add in OBS) calls
`partialstyle.obs.filter.install()`. The core (partialstyle.*) never imports this package, and
inside OBS this package never imports torch: inference runs in `inference_server` processes.
"""
