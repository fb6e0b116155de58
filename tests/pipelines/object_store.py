"""`objtest://`: an object-store-like Beam FileSystem for tests, backed by a local folder.

Paths are URLs (`objtest://bucket/key`), there are no directories (`has_dirs` is False, a "folder"
exists only through the files under it), and every call goes through Beam's `FileSystems`
dispatch, as `gs://` and `s3://` do; code that opened paths with `open()` or `pathlib` would fail.
"""

from __future__ import annotations

import os

from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

SCHEME = "objtest"
PREFIX = f"{SCHEME}://"


class ObjectStoreForTests(LocalFileSystem):
    root = None  # the local folder holding the "bucket"; set by the test

    @classmethod
    def scheme(cls):
        return SCHEME

    def _local(self, url: str) -> str:
        assert url.startswith(PREFIX), url
        return os.path.join(self.root, url[len(PREFIX):])

    def _url(self, local: str) -> str:
        return PREFIX + os.path.relpath(local, self.root)

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def has_dirs(self):
        return False

    def mkdirs(self, path):
        pass

    def _list(self, dir_or_prefix):
        """Every object whose URL starts with `dir_or_prefix` (a prefix, as object stores list)."""
        prefix = self._local(dir_or_prefix)
        for folder, _, names in os.walk(os.path.dirname(prefix) or self.root):
            for name in names:
                local = os.path.join(folder, name)
                if local.startswith(prefix):
                    yield FileMetadata(self._url(local), os.path.getsize(local), os.path.getmtime(local))

    def create(self, path, *args, **kwargs):
        os.makedirs(os.path.dirname(self._local(path)), exist_ok=True)
        return super().create(self._local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)

    def copy(self, sources, destinations):
        return super().copy([self._local(s) for s in sources], [self._local(d) for d in destinations])

    def rename(self, sources, destinations):
        return super().rename([self._local(s) for s in sources], [self._local(d) for d in destinations])

    def exists(self, path):
        return os.path.isfile(self._local(path))  # objects only: a "folder" does not exist by itself

    def size(self, path):
        return super().size(self._local(path))

    def last_updated(self, path):
        return super().last_updated(self._local(path))

    def checksum(self, path):
        return super().checksum(self._local(path))

    def metadata(self, path):
        meta = super().metadata(self._local(path))
        return FileMetadata(path, meta.size_in_bytes, meta.last_updated_in_seconds)

    def delete(self, paths):
        return super().delete([self._local(p) for p in paths])
