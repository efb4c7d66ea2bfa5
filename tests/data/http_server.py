"""A real HTTP server on 127.0.0.1 that serves fixture files the way the data sources do.

`FixtureServer` runs a threaded `http.server` in a background thread. It serves byte bodies
with Range support (206 / 416), JSON documents computed from the query string (paged APIs),
redirects, and two fault modes: `cut` (send the full Content-Length, then close the connection
part-way through the body) and `throttle` (send the body slowly, so a test can kill a client
mid-transfer). Every request is logged with its method, path, query and Range header.
`DandiFixture` adds the DANDI REST routes (paged asset list, per-asset metadata with digests,
``/download/`` redirecting to a blob route).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from pipeline.data.fetch.digests import dandi_part_size


@dataclass
class Request:
    method: str
    path: str
    query: dict
    range: str | None


@dataclass
class _Route:
    body: bytes | None = None
    json: object = None                 # a value, or callable(query, server) -> value
    make: object = None                 # callable(query, server) -> bytes (e.g. S3 XML)
    content_type: str = "application/octet-stream"
    redirect: str | None = None
    status: int = 200
    headers: dict = field(default_factory=dict)
    cuts: list = field(default_factory=list)     # byte offsets: one GET is cut at each, in turn
    delay: float = 0.0                           # seconds per 1 KiB chunk
    ranges: bool = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):               # keep test output clean
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head: bool):
        server: FixtureServer = self.server.fixture
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        server.requests.append(Request(self.command, parts.path, query,
                                       self.headers.get("Range")))
        route = server.routes.get(parts.path)
        if route is None:
            return self._send(404, b"not found", "text/plain", head)
        if route.redirect is not None:
            self.send_response(302)
            self.send_header("Location", server.url(route.redirect))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if route.json is not None:
            value = route.json(query, server) if callable(route.json) else route.json
            return self._send(route.status, json.dumps(value).encode(), "application/json", head)
        if route.make is not None:
            return self._send(route.status, route.make(query, server), route.content_type, head)
        return self._send_body(route, head)

    def _send(self, status, body, content_type, head):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_body(self, route: _Route, head: bool):
        body, start = route.body, 0
        requested = self.headers.get("Range")
        if requested and route.ranges and route.status == 200:
            start = int(requested.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(route.status)
        payload = body[start:] if route.status == 200 else body
        if route.ranges:
            self.send_header("Accept-Ranges", "bytes")
        for key, value in route.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if head:
            return
        cut = route.cuts.pop(0) if route.cuts else None
        if cut is not None:
            self.wfile.write(payload[:max(0, cut - start)])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)     # the client sees a body shorter than announced
            return
        step = 1024 if route.delay else len(payload) or 1
        for i in range(0, len(payload), step):
            self.wfile.write(payload[i:i + step])
            if route.delay:
                self.wfile.flush()
                time.sleep(route.delay)


class FixtureServer:
    """A threaded HTTP server on 127.0.0.1 with programmable routes; use as a context manager."""

    def __init__(self):
        self.routes: dict[str, _Route] = {}
        self.requests: list[Request] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fixture = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.02})

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path

    def add_file(self, path: str, body: bytes, **options) -> str:
        self.routes[path] = _Route(body=body, **options)
        return self.url(path)

    def add_json(self, path: str, value, **options) -> str:
        self.routes[path] = _Route(json=value, **options)
        return self.url(path)

    def add_dynamic(self, path: str, make, content_type: str) -> str:
        """Serve `make(query, server)` (bytes) at `path`."""
        self.routes[path] = _Route(make=make, content_type=content_type)
        return self.url(path)

    def add_redirect(self, path: str, target: str) -> str:
        self.routes[path] = _Route(redirect=target)
        return self.url(path)

    def cut(self, path: str, *offsets: int) -> None:
        """Cut the next GETs of `path` after these byte offsets of the file, one per GET."""
        self.routes[path].cuts.extend(offsets)

    def throttle(self, path: str, seconds_per_kib: float) -> None:
        self.routes[path].delay = seconds_per_kib

    def gets(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and r.path == path]


def dandi_etag(data: bytes) -> str:
    """The DANDI etag of `data`, computed independently of the downloader's streaming hasher."""
    part = dandi_part_size(len(data))
    parts = [data[i:i + part] for i in range(0, len(data), part)]
    if not parts:
        return hashlib.md5(b"").hexdigest() + "-0"
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"



class DandiFixture:
    """DANDI REST routes for one dandiset version on a `FixtureServer`.

    Routes (relative to ``{server}/api``): the paged asset list
    ``/dandisets/{id}/versions/{v}/assets/`` (``page``, ``page_size``, ``glob``, ``path``,
    ``metadata``), per-asset metadata ``/dandisets/{id}/versions/{v}/assets/{asset_id}/``, and
    ``/assets/{asset_id}/download/`` answering 302 to ``/blobs/{asset_id}``, which serves the
    bytes with Range support.
    """

    def __init__(self, server: FixtureServer, dandiset: str = "000021", version: str = "draft",
                 page_size: int = 2, inline_metadata: bool = True):
        self.server, self.dandiset, self.version = server, dandiset, version
        self.page_size = page_size
        self.inline_metadata = inline_metadata      # False: a server that ignores metadata=1
        self.assets: list[dict] = []
        self.api = server.url("/api")
        server.add_json(f"/api/dandisets/{dandiset}/versions/{version}/assets/", self._page)

    def add(self, path: str, data: bytes, *, sha256: bool = True, etag: str | None = None,
            size: int | None = None) -> dict:
        """Serve `data` as asset `path`; `etag`/`size` override the true values (bad metadata)."""
        asset_id = f"a{len(self.assets):04d}-{hashlib.md5(path.encode()).hexdigest()[:8]}"
        digest = {"dandi:dandi-etag": etag or dandi_etag(data)}
        if sha256:
            digest["dandi:sha2-256"] = hashlib.sha256(data).hexdigest()
        download = f"{self.api}/assets/{asset_id}/download/"
        metadata = {"id": f"dandiasset:{asset_id}", "path": path, "digest": digest,
                    "contentSize": len(data) if size is None else size,
                    "encodingFormat": "application/x-nwb", "contentUrl": [download]}
        record = {"asset_id": asset_id, "path": path, "size": metadata["contentSize"],
                  "blob": f"blob-{asset_id}", "zarr": None, "created": "2020-01-01T00:00:00Z",
                  "modified": "2020-01-01T00:00:00Z", "metadata": metadata}
        self.assets.append(record)
        base = f"/api/dandisets/{self.dandiset}/versions/{self.version}/assets/{asset_id}/"
        self.server.add_json(base, metadata)
        self.server.add_redirect(f"/api/assets/{asset_id}/download/", f"/blobs/{asset_id}")
        self.server.add_file(f"/blobs/{asset_id}", data)
        return record

    def _page(self, query: dict, server: FixtureServer) -> dict:
        assets = [a for a in self.assets
                  if fnmatch(a["path"], query.get("glob", "*"))
                  and a["path"].startswith(query.get("path", ""))]
        size = int(query.get("page_size", self.page_size))
        size = min(size, self.page_size)           # the server caps the page size
        page = int(query.get("page", 1))
        chunk = assets[(page - 1) * size:page * size]
        with_metadata = self.inline_metadata and query.get("metadata") in ("1", "true", "True")
        results = [{k: v for k, v in a.items() if with_metadata or k != "metadata"}
                   for a in chunk]

        def link(p):
            return server.url(f"/api/dandisets/{self.dandiset}/versions/{self.version}/assets/?"
                              + urlencode({**query, "page": p, "page_size": size}))
        return {"count": len(assets), "results": results,
                "next": link(page + 1) if page * size < len(assets) else None,
                "previous": link(page - 1) if page > 1 else None}
