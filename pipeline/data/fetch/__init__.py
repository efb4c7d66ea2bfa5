"""The transport layer of the real sources: verified, resumable downloads into ``data/raw/``.

`remote` (HTTP GETs with retries and the download errors), `digests` (checksums as the sources
publish them), `download` (`fetch` into the cache, manifests) and `dandi` (the DANDI API).
"""
