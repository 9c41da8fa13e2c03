from __future__ import annotations

import functools
import socket
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from johnson_format import write_published_style_checkpoint

from partialstyle.errors import PartialStyleError
from partialstyle.weights.fetch_johnson import fetch_johnson
from partialstyle.weights.load import load_weights


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server(tmp_path):
    """A local web server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def _published_zip(path, names):
    """An archive laid out like the official saved_models.zip."""
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("saved_models/", "")
        for seed, name in enumerate(names):
            checkpoint = write_published_style_checkpoint(path.parent / f"{name}.pth", seed)
            bundle.write(checkpoint, f"saved_models/{name}.pth")
            checkpoint.unlink()


def test_fetch_extracts_loadable_checkpoints(server, tmp_path):
    base, root = server
    names = ["candy", "mosaic", "rain_princess", "udnie"]
    _published_zip(root / "saved_models.zip", names)
    dest = tmp_path / "johnson"
    paths = fetch_johnson(dest, url=f"{base}/saved_models.zip")
    assert [p.name for p in paths] == [f"{n}.pth" for n in names]
    assert not (dest / "saved_models.zip").exists()
    for path in paths:
        load_weights("johnson", path)
    # a second call finds them in place and needs no server
    (root / "saved_models.zip").unlink()
    assert fetch_johnson(dest, url=f"{base}/saved_models.zip") == paths


def test_a_web_page_instead_of_the_zip_is_reported(server, tmp_path):
    base, root = server
    (root / "saved_models.zip").write_bytes(b"PK-not-really-a-zip" * 10)
    with pytest.raises(PartialStyleError, match="did not give a zip"):
        fetch_johnson(tmp_path / "johnson", url=f"{base}/saved_models.zip")


def test_offline_is_one_clear_line(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PartialStyleError) as info:
        fetch_johnson(tmp_path / "johnson", url=f"http://127.0.0.1:{port}/saved_models.zip")
    assert "cannot download" in str(info.value) and "\n" not in str(info.value)
