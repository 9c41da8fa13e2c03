"""download(): resume, integrity checks and offline errors, against a local HTTP server."""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from partialstyle.errors import PartialStyleError
from partialstyle.segment.yolact import CONFIGS
from partialstyle.weights import fetch_yolact as yolact_fetch
from partialstyle.weights.fetch_yolact import fetch_yolact
from partialstyle.weights.http_download import download


class _FileHandler(BaseHTTPRequestHandler):
    """Serves server.files[path]; honours "Range: bytes=N-" unless server.ignore_range;
    stops sending after byte server.cut_at when that is set."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.requests.append((self.path, self.headers.get("Range")))
        body = self.server.files.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404, "no such file")
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and not self.server.ignore_range:
            start = int(range_header.removeprefix("bytes=").removesuffix("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        end = len(body) if self.server.cut_at is None else self.server.cut_at
        self.wfile.write(body[start:end])  # cut_at: the connection drops after that byte

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
    httpd.files = {}
    httpd.requests = []
    httpd.ignore_range = False
    httpd.cut_at = None
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _payload(size: int = 3_000_000, seed: int = 7) -> bytes:
    # Deterministic, incompressible-looking bytes (several download chunks long).
    blocks = (hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(size // 32 + 1))
    return b"".join(blocks)[:size]


def test_download_writes_the_file_and_checks_size_and_hash(server, tmp_path):
    body = _payload()
    server.files["/model.bin"] = body
    dest = tmp_path / "models" / "model.bin"
    result = download(
        f"{server.url}/model.bin",
        dest,
        expected_size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    assert result == dest
    assert dest.read_bytes() == body
    assert not (tmp_path / "models" / "model.bin.part").exists()
    # A complete file is not fetched again.
    download(f"{server.url}/model.bin", dest, expected_size=len(body))
    assert len(server.requests) == 1


def test_download_resumes_a_truncated_part_file(server, tmp_path):
    body = _payload()
    server.files["/model.bin"] = body
    dest = tmp_path / "model.bin"
    (tmp_path / "model.bin.part").write_bytes(body[:1_234_567])
    download(f"{server.url}/model.bin", dest, expected_size=len(body))
    assert dest.read_bytes() == body
    assert server.requests == [("/model.bin", "bytes=1234567-")]


def test_interrupted_download_keeps_its_part_and_resumes_on_the_next_call(server, tmp_path):
    body = _payload()
    server.files["/model.bin"] = body
    server.cut_at = 2_000_000
    dest = tmp_path / "model.bin"
    with pytest.raises(PartialStyleError) as error:
        download(f"{server.url}/model.bin", dest)
    assert "run the same command again to resume" in str(error.value)
    assert "\n" not in str(error.value)
    assert not dest.exists()
    assert (tmp_path / "model.bin.part").read_bytes() == body[:2_000_000]

    server.cut_at = None
    download(f"{server.url}/model.bin", dest)
    assert dest.read_bytes() == body
    assert server.requests[-1] == ("/model.bin", "bytes=2000000-")


def test_download_restarts_when_the_server_ignores_the_range(server, tmp_path):
    body = _payload()
    server.files["/model.bin"] = body
    server.ignore_range = True
    (tmp_path / "model.bin.part").write_bytes(b"x" * 1000)  # stale bytes that must not survive
    download(f"{server.url}/model.bin", tmp_path / "model.bin")
    assert (tmp_path / "model.bin").read_bytes() == body


def test_download_of_an_already_complete_part_file_finishes_it(server, tmp_path):
    body = _payload(50_000)
    server.files["/model.bin"] = body
    (tmp_path / "model.bin.part").write_bytes(body)
    download(f"{server.url}/model.bin", tmp_path / "model.bin")  # server answers 416
    assert (tmp_path / "model.bin").read_bytes() == body


def test_size_mismatch_is_a_one_line_error_and_leaves_no_file(server, tmp_path):
    body = _payload(100_000)
    server.files["/model.bin"] = body
    dest = tmp_path / "model.bin"
    with pytest.raises(PartialStyleError) as error:
        download(f"{server.url}/model.bin", dest, expected_size=len(body) + 5)
    message = str(error.value)
    assert f"is {len(body)} bytes but {len(body) + 5} were expected" in message
    assert "\n" not in message
    assert not dest.exists()


def test_hash_mismatch_deletes_the_download(server, tmp_path):
    server.files["/model.bin"] = _payload(10_000)
    with pytest.raises(PartialStyleError, match="SHA-256 mismatch"):
        download(f"{server.url}/model.bin", tmp_path / "model.bin", sha256="0" * 64)
    assert not (tmp_path / "model.bin").exists()
    assert not (tmp_path / "model.bin.part").exists()


def test_a_web_page_instead_of_the_file_is_refused(server, tmp_path):
    server.files["/model.bin"] = b"<!DOCTYPE html><html><body>Sign in</body></html>"
    with pytest.raises(PartialStyleError, match="a web page instead of the file"):
        download(f"{server.url}/model.bin", tmp_path / "model.bin")
    assert not (tmp_path / "model.bin").exists()


def test_http_error_is_a_one_line_error(server, tmp_path):
    with pytest.raises(PartialStyleError) as error:
        download(f"{server.url}/missing.bin", tmp_path / "missing.bin")
    assert "HTTP 404" in str(error.value)
    assert "\n" not in str(error.value)


def test_unreachable_host_is_a_one_line_error(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PartialStyleError) as error:
        download(f"http://127.0.0.1:{port}/model.bin", tmp_path / "model.bin")
    message = str(error.value)
    assert message.startswith(f"cannot download http://127.0.0.1:{port}/model.bin")
    assert "check the internet connection" in message
    assert "\n" not in message


def test_fetch_yolact_downloads_under_the_official_name(server, tmp_path, monkeypatch):
    body = b"PK\x03\x04" + _payload(20_000)
    server.files["/yolact-resnet50/resolve/main/yolact_resnet50_54_800000.pth"] = body
    monkeypatch.setattr(yolact_fetch, "_HUB", server.url)
    path = fetch_yolact("yolact_resnet50", tmp_path)
    assert path == tmp_path / "yolact_resnet50_54_800000.pth"
    assert path.read_bytes() == body
    assert server.requests[0][0].endswith("yolact_resnet50_54_800000.pth?download=true")


def test_fetch_yolact_refuses_non_pytorch_files_and_unknown_names(server, tmp_path, monkeypatch):
    server.files["/yolact-darknet53/resolve/main/yolact_darknet53_54_800000.pth"] = b"GIF89a..."
    monkeypatch.setattr(yolact_fetch, "_HUB", server.url)
    with pytest.raises(PartialStyleError, match="did not return a PyTorch checkpoint"):
        fetch_yolact("yolact_darknet53", tmp_path)
    assert not (tmp_path / "yolact_darknet53_54_800000.pth").exists()
    with pytest.raises(PartialStyleError, match="unknown YOLACT model 'yolact_tiny'"):
        fetch_yolact("yolact_tiny", tmp_path)


def test_official_urls_are_the_hugging_face_reuploads():
    assert set(yolact_fetch.OFFICIAL_WEIGHTS) == set(CONFIGS)
    assert yolact_fetch.weights_url("yolact_plus_base") == (
        "https://huggingface.co/dbolya/yolact-plus-base/resolve/main/"
        "yolact_plus_base_54_800000.pth?download=true"
    )
