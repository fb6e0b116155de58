"""Bounded, confined reads: manifest paths stay inside the manifest's folder or `read.allowed_roots`,
URL schemes are allowed per config, http(s) reaches public addresses only, and every read stops at
`read.max_bytes`. Each refusal is a read-stage reject with its reason; nothing else is lost.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.io.read_guard import ReadRefused, fetch_http, is_public
from pipelines.io.source_formats import ReadUnit, load_entry, read_unit, read_webdataset
from pipelines.io.sources import plan_read
from tests.pipelines.test_end_to_end import run_job
from unimo_g.pipeline_config import ReadConfig


def _png(width: int = 32, height: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _read(path: Path, config: ReadConfig = ReadConfig(), input_format: str = "auto") -> dict:
    """{source_key: (has image, error reason)} of every input of `path`, read without Beam."""
    plan = plan_read(str(path), input_format)
    out = {}
    for unit in plan.units:
        for item in read_unit(unit, config):
            sample = load_entry(item, config) if plan.format in ("jsonl", "parquet") else item
            out[sample.source_key] = (sample.image is not None, sample.error_reason)
    return out


def _manifest(path: Path, images: list[str]) -> Path:
    path.write_text("\n".join(json.dumps({"image": image, "caption": "a red square", "key": image})
                              for image in images) + "\n")
    return path


# ---------------------------------------------------------------- confinement


@pytest.fixture
def layout(tmp_path):
    """tmp/data/{manifest.jsonl, in/a.png, link.png -> ../outside/b.png}, tmp/outside/b.png."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "in").mkdir(parents=True)
    outside.mkdir()
    (data / "in" / "a.png").write_bytes(_png())
    (outside / "b.png").write_bytes(_png(33))
    os.symlink(outside / "b.png", data / "link.png")
    images = ["in/a.png", str(data / "in" / "a.png"), "in/../in/a.png", "../outside/b.png", str(outside / "b.png"),
              "file://" + str(outside / "b.png"), "link.png", "/etc/hostname"]
    return _manifest(data / "manifest.jsonl", images), outside


def test_manifest_paths_outside_its_folder_are_rejected(layout):
    manifest, outside = layout
    assert _read(manifest) == {
        "in/a.png": (True, None),
        str(manifest.parent / "in" / "a.png"): (True, None),
        "in/../in/a.png": (True, None),
        "../outside/b.png": (False, "path_not_allowed"),
        str(outside / "b.png"): (False, "path_not_allowed"),
        "file://" + str(outside / "b.png"): (False, "path_not_allowed"),
        "link.png": (False, "path_not_allowed"),  # a symlink out of the folder
        "/etc/hostname": (False, "path_not_allowed"),
    }


def test_allowed_roots_open_more_folders(layout):
    manifest, outside = layout
    read = _read(manifest, ReadConfig(allowed_roots=(str(outside),)))
    assert {key for key, (has_image, _) in read.items() if not has_image} == {"/etc/hostname"}


def test_remote_manifest_relative_paths_stay_in_its_bucket():
    from pipelines.io.source_formats import resolve

    assert resolve("gs://b/run/m", "x/../y.png") == "gs://b/run/m/y.png"
    assert resolve("gs://b/run/m", "../../../../etc/y.png") == "gs://b/etc/y.png"  # cannot leave the bucket
    with pytest.raises(ReadRefused, match="path_not_allowed"):
        resolve("gs://b/run/m", "/etc/passwd")
    assert resolve("gs://b/run/m", "/data/x.png", ReadConfig(allowed_roots=("/data",))) == "/data/x.png"
    with pytest.raises(ReadRefused, match="scheme_not_allowed"):
        resolve("/data", "ftp://h/x.png")
    assert resolve("/data", "s3://b/x.png") == "s3://b/x.png"


def test_read_config_validates():
    with pytest.raises(ValueError, match="write gs, not gs://"):
        ReadConfig(remote_schemes=("gs://",))
    with pytest.raises(ValueError, match="not a local folder"):
        ReadConfig(allowed_roots=("gs://b/x",))
    with pytest.raises(ValueError, match="read.max_bytes must be >= 1"):
        ReadConfig(max_bytes=0)


# ---------------------------------------------------------------- byte caps


def test_files_over_the_cap_are_rejected_without_reading_them(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    for key, size in (("small", 16), ("large", 64)):
        (folder / f"{key}.png").write_bytes(_png(size, size))
        (folder / f"{key}.txt").write_text("a red square")
    cap = len(_png(32, 32))
    assert _read(folder, ReadConfig(max_bytes=cap)) == {"small": (True, None), "large": (False, "too_large")}
    (folder / "small.txt").write_text("x" * (cap + 1))  # a caption is a read too
    assert _read(folder, ReadConfig(max_bytes=cap))["small"] == (False, "too_large")


def test_oversize_tar_member_rejects_its_key_only(tmp_path):
    tar_path = tmp_path / "00000.tar"
    with tarfile.open(tar_path, "w") as archive:
        for key, image in (("k0", _png(16, 16)), ("k1", _png(300, 300)), ("k2", _png(17, 17))):
            for name, data in ((f"{key}.png", image), (f"{key}.txt", b"a red square")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    cap = len(_png(17, 17)) + 10
    samples = list(read_webdataset(str(tar_path), None, ReadConfig(max_bytes=cap)))
    assert [(s.source_key, s.image is not None, s.error_reason) for s in samples] == [
        ("k0", True, None), ("k1", False, "too_large"), ("k2", True, None)]


def test_inline_bytes_and_manifest_lines_over_the_cap(tmp_path):
    big, small = _png(300, 300), _png(16, 16)
    pq.write_table(pa.table({"image": [small, big], "caption": ["c", "c"], "key": ["s", "b"]}), tmp_path / "m.parquet")
    config = ReadConfig(max_bytes=len(small) + 10)
    assert _read(tmp_path / "m.parquet", config) == {"s": (True, None), "b": (False, "too_large")}

    i2d = tmp_path / "i2d"
    i2d.mkdir()
    pq.write_table(pa.table({"key": ["s", "b"], "jpg": [small, big], "caption": ["c", "c"],
                             "status": ["success", "success"]}), i2d / "00000.parquet")
    assert _read(i2d, config) == {"s": (True, None), "b": (False, "too_large")}

    (tmp_path / "a.png").write_bytes(small)
    lines = [json.dumps({"image": "a.png", "caption": "c", "key": "before"}),
             json.dumps({"image": "a.png", "caption": "x" * 5000, "key": "long"}),
             json.dumps({"image": "a.png", "caption": "c", "key": "after"})]
    (tmp_path / "m.jsonl").write_text("\n".join(lines))
    read = _read(tmp_path / "m.jsonl", ReadConfig(max_bytes=1000))
    assert read == {"before": (True, None), f"{tmp_path / 'm.jsonl'}:2": (False, "too_large"), "after": (True, None)}


# ---------------------------------------------------------------- http(s)


def test_non_public_addresses():
    for address in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                    "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "224.0.0.1"):
        assert not is_public(ipaddress.ip_address(address)), address
    for address in ("8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"):
        assert is_public(ipaddress.ip_address(address)), address


class _Handler(BaseHTTPRequestHandler):
    """/ok.png: a PNG; /big: 4 KiB announced; /stream: up to 1 MiB with no length; /redirect -> /ok.png;
    anything else 404. Counts requests on the server."""

    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        if self.path == "/ok.png":
            self._send(200, _png(), length=True)
        elif self.path == "/big":
            self._send(200, b"x" * 4096, length=True)
        elif self.path == "/stream":
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(64):  # bounded: 1 MiB at most, stops when the client hangs up
                    self.wfile.write(b"y" * 16384)
                    self.server.streamed += 16384
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok.png")
            self.end_headers()
        else:
            self._send(404, b"no", length=True)

    def _send(self, code: int, body: bytes, length: bool):
        self.send_response(code)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.requests, server.streamed = [], 0
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_to_loopback_is_refused_before_any_request(http_server):
    server, base = http_server
    for url in (f"{base}/ok.png", base.replace("127.0.0.1", "localhost") + "/ok.png"):
        with pytest.raises(ReadRefused, match="address_not_allowed"):
            fetch_http(url, ReadConfig())
    assert server.requests == []


def test_http_reads_when_private_addresses_are_allowed(http_server):
    server, base = http_server
    config = ReadConfig(allow_private_addresses=True, max_bytes=2048, http_timeout_s=5)
    assert fetch_http(f"{base}/ok.png", config) == _png()
    assert fetch_http(f"{base}/redirect", config) == _png()
    with pytest.raises(ReadRefused, match="http_error: .* HTTP 404"):
        fetch_http(f"{base}/missing.png", config)
    with pytest.raises(ReadRefused, match="too_large: .*Content-Length 4096"):
        fetch_http(f"{base}/big", config)
    with pytest.raises(ReadRefused, match="too_large"):
        fetch_http(f"{base}/stream", config)
    assert server.requests == ["/ok.png", "/redirect", "/ok.png", "/missing.png", "/big", "/stream"]


def test_http_manifest_rejects_through_the_job(tmp_path, http_server):
    """A manifest of local paths and URLs through beam_runner: the refused inputs are read-stage
    rejects with their reasons and every input is accounted for."""
    server, base = http_server
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(_png(64, 64))
    (tmp_path / "secret.png").write_bytes(_png(65, 64))
    manifest = _manifest(data / "m.jsonl", ["a.png", "../secret.png", f"{base}/ok.png", "ftp://h/x.png"])
    out = run_job(tmp_path, "out", "--input_format", "jsonl", input_path=manifest)
    rejects = [row for path in sorted((out / "rejects").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    assert sorted((r["source"], r["stage"], r["reason"]) for r in rejects) == [
        ("../secret.png", "read", "path_not_allowed"),
        ("ftp://h/x.png", "read", "scheme_not_allowed"),
        (f"{base}/ok.png", "read", "address_not_allowed"),
    ]
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert (counts["inputs"], counts["rows"], counts["rejects"], counts["accounted"]) == (4, 1, 3, True)
    assert server.requests == []
