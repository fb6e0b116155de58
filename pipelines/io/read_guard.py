"""Limits on what the read stage opens: confined local paths, allowed URL schemes, public http(s)
addresses only, and a byte cap on every read (`unimo_g.pipeline_config.ReadConfig`).

A read that breaks a limit raises `ReadRefused` with a stable reason token, which the readers turn
into a reject of stage `read`:
- `path_not_allowed`: a manifest's local path outside its folder and `read.allowed_roots`, or a
  file of a folder input that is a link leaving the input folder (`confine_to_root`);
- `scheme_not_allowed`: a URL scheme not in `read.remote_schemes`;
- `address_not_allowed`: an http(s) host that resolves to a loopback, link-local, private or other
  non-public address (checked on every connection, redirects included, against the address then
  connected to);
- `too_large`: more than `read.max_bytes` (an http response announcing more is not read at all);
- `http_error` (a 4xx/5xx status) and `timeout`: transient failures of an http(s) read.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import os
import posixpath
import re
import socket
import urllib.error
import urllib.request
from typing import IO, Iterable, Iterator, Optional

from unimo_g.pipeline_config import ReadConfig

HTTP_SCHEMES = ("http", "https")
CHUNK_BYTES = 1 << 20
_FILE_URL = "file://"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class ReadRefused(Exception):
    """A read the limits refuse; `reason` is the reject reason, `detail` says what and why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def scheme_of(path: str) -> Optional[str]:
    """`gs` for gs://b/x; None for a local path (and `file://` URLs)."""
    match = _SCHEME.match(path)
    if match is None or path.startswith(_FILE_URL):
        return None
    return match.group(1).lower()


# ---------------------------------------------------------------- paths


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _local(path: str) -> str:
    return path[len(_FILE_URL):] if path.startswith(_FILE_URL) else path


def confine_local(path: str, base_dir: Optional[str], config: ReadConfig) -> str:
    """The real path of a manifest's local `path` (relative to `base_dir`, or absolute).

    Raises ReadRefused(`path_not_allowed`) unless it lies inside `base_dir` (None: a manifest that
    is not local, whose local paths must be absolute) or one of `config.allowed_roots`, after
    resolving `..` and symlinks (a link inside the folder that points out of it is refused too).
    """
    path = _local(path)
    if base_dir is None and not os.path.isabs(path):
        raise ReadRefused("path_not_allowed", f"{path!r} is relative, with no local folder to resolve it in")
    real = os.path.realpath(os.path.join(base_dir or "/", path))
    roots = ([base_dir] if base_dir is not None else []) + [_local(root) for root in config.allowed_roots]
    if any(_inside(real, os.path.realpath(root)) for root in roots):
        return real
    where = f"{base_dir} and read.allowed_roots" if base_dir is not None else "read.allowed_roots"
    raise ReadRefused("path_not_allowed", f"{path!r} resolves to {real}, outside {where}")


def confine_to_root(path: str, root: str) -> str:
    """The real path of `path`, a file found by listing the local input folder `root`, when it lies
    inside that folder once links are resolved; ReadRefused(`path_not_allowed`) otherwise, before
    anything is opened. Object-store paths (no links) are returned as they are."""
    if scheme_of(path) is not None:
        return path
    real = os.path.realpath(_local(path))
    if _inside(real, os.path.realpath(_local(root))):
        return real
    raise ReadRefused("path_not_allowed", f"{path} is a link to {real}, outside the input folder {root}")


def inside_folder(paths: list[str], root: str) -> list[str]:
    """`paths`, listed in the input folder `root`; ValueError naming the first that is a link leaving
    it (for files that make up a whole input: a planning error, not one input's reject)."""
    try:
        for path in paths:
            confine_to_root(path, root)
    except ReadRefused as err:
        raise ValueError(err.detail) from None
    return paths


def join_remote(base_dir: str, path: str) -> str:
    """A relative `path` under a remote manifest's folder URL, with `.` and `..` resolved."""
    scheme, rest = base_dir.split("://", 1)
    bucket, _, prefix = rest.partition("/")
    joined = posixpath.normpath(posixpath.join("/" + prefix, path)).lstrip("/")
    return f"{scheme}://{bucket}/{joined}"


def check_scheme(url: str, config: ReadConfig) -> None:
    scheme = scheme_of(url)
    if scheme is not None and scheme not in config.remote_schemes:
        raise ReadRefused("scheme_not_allowed", f"{url}: scheme {scheme!r} is not in read.remote_schemes")


# ---------------------------------------------------------------- capped reads


def read_capped(handle: IO[bytes], max_bytes: int, where: str) -> bytes:
    """All of `handle`, or ReadRefused(`too_large`) once more than `max_bytes` arrive."""
    parts, size = [], 0
    while chunk := handle.read(min(CHUNK_BYTES, max_bytes + 1 - size)):
        parts.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise ReadRefused("too_large", f"{where}: more than read.max_bytes={max_bytes} bytes")
    return b"".join(parts)


def iter_lines_capped(handle: IO[bytes], max_bytes: int) -> Iterator[Optional[bytes]]:
    """The lines of `handle` (each with its newline), None in place of a line longer than
    `max_bytes`: that line's bytes are skipped as they arrive, never held. Reads `handle.read(n)`
    only, so it works on every file object Beam and fsspec return (compressed ones too)."""
    buffer, skipping = b"", False
    while chunk := handle.read(CHUNK_BYTES):
        buffer += chunk
        start = 0
        while (newline := buffer.find(b"\n", start)) >= 0:
            line, start = buffer[start : newline + 1], newline + 1
            if skipping:  # the end of an overlong line
                skipping = False
            else:
                yield line if len(line) <= max_bytes + 1 else None
        buffer = buffer[start:]
        if skipping:
            buffer = b""
        elif len(buffer) > max_bytes:
            yield None
            buffer, skipping = b"", True
    if buffer and not skipping:
        yield buffer


# ---------------------------------------------------------------- http(s)


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """False for loopback, link-local (169.254.169.254, the cloud metadata service), private,
    shared (100.64/10), multicast, reserved and unspecified addresses, IPv4-mapped ones included."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not address.is_multicast


def _checked_addresses(host: str, port: int, allow_private: bool) -> list[tuple]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise OSError(f"cannot resolve {host!r}: {err}") from None
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if not allow_private and not is_public(address):
            raise ReadRefused("address_not_allowed", f"{host} resolves to the non-public address {address}")
    return infos


def _guarded_connection(allow_private: bool):
    """`socket.create_connection` that connects only to the addresses it has checked."""

    def create_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None):
        host, port = address
        error: Optional[OSError] = None
        for family, kind, proto, _, sockaddr in _checked_addresses(host, port, allow_private):
            sock = socket.socket(family, kind, proto)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as err:
                sock.close()
                error = err
        raise error or OSError(f"no address for {host!r}")

    return create_connection


@functools.lru_cache(maxsize=8)
def _opener(config: ReadConfig) -> urllib.request.OpenerDirector:
    """urllib without proxies, file:// or ftp://: http(s) through connections that check addresses,
    redirects only to allowed schemes."""
    create = _guarded_connection(config.allow_private_addresses)

    class GuardedHTTP(http.client.HTTPConnection):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._create_connection = create

    class GuardedHTTPS(http.client.HTTPSConnection):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._create_connection = create

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(GuardedHTTP, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(GuardedHTTPS, req, context=self._context)

    class RedirectHandler(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            check_scheme(newurl, config)
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    opener = urllib.request.OpenerDirector()
    handlers: Iterable = (HTTPHandler(), HTTPSHandler(), RedirectHandler(), urllib.request.HTTPErrorProcessor(),
                          urllib.request.HTTPDefaultErrorHandler())
    for handler in handlers:
        opener.add_handler(handler)
    return opener


def fetch_http(url: str, config: ReadConfig) -> bytes:
    """The body of an http(s) GET, within the limits of `config` (see the module docstring).

    Raises ReadRefused, or OSError for other network failures (connection refused, bad URL).
    """
    check_scheme(url, config)
    request = urllib.request.Request(url, headers={"User-Agent": "unimo-g-toolkit"})
    try:
        with _opener(config).open(request, timeout=config.http_timeout_s) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > config.max_bytes:
                raise ReadRefused("too_large", f"{url}: Content-Length {length} > read.max_bytes={config.max_bytes}")
            return read_capped(response, config.max_bytes, url)
    except urllib.error.HTTPError as err:
        raise ReadRefused("http_error", f"{url}: HTTP {err.code} {err.reason}") from None
    except (socket.timeout, TimeoutError) as err:
        raise ReadRefused("timeout", f"{url}: no answer within {config.http_timeout_s} s ({err})") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, ReadRefused):
            raise err.reason from None
        if isinstance(err.reason, (socket.timeout, TimeoutError)):
            raise ReadRefused("timeout", f"{url}: no answer within {config.http_timeout_s} s") from None
        raise OSError(f"{url}: {err.reason}") from None
