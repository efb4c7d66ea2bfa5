"""A small client of the DANDI Archive REST API: list assets, read their digests, download.

Endpoints (notes/data-sources.md §0; dandi/dandi-cli ``dandiapi.py``):
``GET /dandisets/{id}/versions/{version}/assets/`` pages through assets (follow ``next`` until
null; ``metadata=1`` inlines each asset's metadata), ``GET .../assets/{asset_id}/`` returns one
asset's metadata, and ``GET /assets/{asset_id}/download/`` redirects to the blob. Each blob
asset's metadata carries ``digest["dandi:dandi-etag"]`` (always) and ``digest["dandi:sha2-256"]``
(sometimes); downloads are verified against both when present, and the size against
``contentSize``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fnmatch import fnmatch

import requests

from pipeline.data.fetch.download import DownloadError, Remote
from pipeline.data.fetch.remote import get_json

log = logging.getLogger(__name__)

DANDI_API = "https://api.dandiarchive.org/api"
ETAG_RE = re.compile(r"^[0-9a-f]{32}-\d{1,5}$")


@dataclass(frozen=True)
class DandiAsset:
    """One blob asset of a dandiset version.

    Attributes
    ----------
    asset_id : str
    path : str
        Path inside the dandiset, e.g. ``sub-699733573/sub-699733573_ses-715093703.nwb``.
    size : int
        Bytes, from the metadata's ``contentSize`` (or the listing's ``size``).
    digests : dict of str to str
        ``{"dandi-etag": ..., "sha256": ...}`` (sha256 only when DANDI has computed it).
    download_url : str
        ``{api}/assets/{asset_id}/download/`` (answers with a redirect to the blob).
    """

    asset_id: str
    path: str
    size: int
    digests: dict
    download_url: str

    def remote(self, path: str | None = None) -> Remote:
        """The `Remote` that `pipeline.data.fetch.download.fetch` verifies this asset against."""
        return Remote(url=self.download_url, path=path or self.path, size=self.size,
                      digests=dict(self.digests))


def parse_digests(metadata: dict, *, source: str) -> dict:
    """Map DANDI's ``digest`` block onto the downloader's algorithm names.

    Raises
    ------
    DownloadError
        When the dandi-etag is missing or malformed (dandi-cli refuses such assets too).
    """
    digest = metadata.get("digest") or {}
    etag = digest.get("dandi:dandi-etag")
    if not isinstance(etag, str) or not ETAG_RE.match(etag):
        raise DownloadError(f"{source}: asset metadata has no valid digest['dandi:dandi-etag'] "
                            f"(expected <32 hex>-<parts>); found {etag!r}")
    digests = {"dandi-etag": etag}
    if digest.get("dandi:sha2-256"):
        digests["sha256"] = str(digest["dandi:sha2-256"]).lower()
    return digests


def _asset(record: dict, metadata: dict, api_url: str, source: str) -> DandiAsset:
    size = metadata.get("contentSize", record.get("size"))
    if not isinstance(size, int) or size < 0:
        raise DownloadError(f"{source}: asset {record.get('path')!r} has no valid contentSize; "
                            f"found {size!r}")
    return DandiAsset(asset_id=record["asset_id"], path=record["path"], size=size,
                      digests=parse_digests(metadata, source=f"{source} {record['path']}"),
                      download_url=f"{api_url.rstrip('/')}/assets/{record['asset_id']}/download/")


def list_assets(dandiset: str, version: str = "draft", *, api_url: str = DANDI_API,
                glob: str | None = None, path_prefix: str | None = None, dataset: str = "dandi",
                page_size: int = 100, session: requests.Session | None = None,
                **get_kwargs) -> list[DandiAsset]:
    """All blob assets of a dandiset version (every page), with their sizes and digests.

    Parameters
    ----------
    dandiset : str
        Six-digit dandiset id, e.g. "000021".
    version : str
        "draft" or a published version id.
    api_url : str
        API root; tests point it at a local server.
    glob, path_prefix : str, optional
        Server-side filters (also applied here, so a server that ignores them still works).
    dataset : str
        Name used in log lines and errors.
    page_size : int
        Assets per page requested (the server may send fewer; ``next`` is followed).
    session : requests.Session, optional
    **get_kwargs
        ``retries``, ``backoff``, ``timeout`` for `pipeline.data.fetch.remote.get_json`.

    Returns
    -------
    list of DandiAsset
        In listing order; Zarr assets (no blob) are skipped with a log line.
    """
    session = session or requests.Session()
    api_url = api_url.rstrip("/")
    base = f"{api_url}/dandisets/{dandiset}/versions/{version}/assets/"
    params = {"page_size": page_size, "metadata": 1, "order": "path"}
    if glob:
        params["glob"] = glob
    if path_prefix:
        params["path"] = path_prefix
    url, assets, pages = base, [], 0
    while url:
        page = get_json(url, dataset=dataset, params=params if url == base else None,
                        session=session, **get_kwargs)
        pages += 1
        if not isinstance(page, dict) or "results" not in page:
            raise DownloadError(f"{dataset}: {url} is not a DANDI asset page (no 'results')")
        for record in page["results"]:
            if record.get("blob") is None:
                log.info("%s: skipping non-blob (Zarr) asset %s", dataset, record.get("path"))
                continue
            if glob and not fnmatch(record["path"], glob):
                continue
            if path_prefix and not record["path"].startswith(path_prefix):
                continue
            metadata = record.get("metadata")
            if metadata is None:
                metadata = asset_metadata(dandiset, version, record["asset_id"], api_url=api_url,
                                          dataset=dataset, session=session, **get_kwargs)
            assets.append(_asset(record, metadata, api_url, f"{dataset}: {base}"))
        url = page.get("next")
    log.info("%s: %d assets listed from dandiset %s/%s in %d pages", dataset, len(assets),
             dandiset, version, pages)
    return assets


def asset_metadata(dandiset: str, version: str, asset_id: str, *, api_url: str = DANDI_API,
                   dataset: str = "dandi", session=None, **get_kwargs) -> dict:
    """The metadata JSON of one asset (``digest``, ``contentSize``, ``contentUrl``, ...)."""
    url = f"{api_url.rstrip('/')}/dandisets/{dandiset}/versions/{version}/assets/{asset_id}/"
    return get_json(url, dataset=dataset, session=session, **get_kwargs)
