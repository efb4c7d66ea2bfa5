"""HTTP GETs with retries and exponential backoff, and the errors every download raises.

A host that never answers (DNS failure, refused connection, timeout) ends in `HostUnreachable`,
whose one-line message names the dataset and the host and points to the offline default.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

import requests

log = logging.getLogger(__name__)

OFFLINE_HINT = ("check the network (or proxy settings), or run the offline default instead: "
                "`snakemake --cores all` with config.yaml (synthetic data, no downloads)")


class DownloadError(RuntimeError):
    """A file could not be fetched or verified; the message names the dataset and the file."""


class HostUnreachable(DownloadError):
    """No connection to the host at all (DNS failure, refused, timed out) after every retry."""


def reason(err: Exception) -> str:
    """A short human reason for a connection failure."""
    text = str(err)
    for needle, why in [("Name or service not known", "DNS lookup failed"),
                        ("nodename nor servname", "DNS lookup failed"),
                        ("Temporary failure in name resolution", "DNS lookup failed"),
                        ("getaddrinfo failed", "DNS lookup failed"),
                        ("Connection refused", "connection refused"),
                        ("Network is unreachable", "network unreachable"),
                        ("No route to host", "no route to host")]:
        if needle in text:
            return why
    if isinstance(err, requests.Timeout):
        return "timed out"
    return type(err).__name__


def unreachable(dataset: str, url: str, err: Exception) -> HostUnreachable:
    """The one-line error for a host that never answered: dataset, host, reason, way out."""
    host = urlsplit(url).netloc
    return HostUnreachable(f"{dataset}: cannot reach {host} ({reason(err)}) for {url}; "
                           f"{OFFLINE_HINT}")


def sleep_backoff(backoff: float, attempt: int) -> None:
    """Wait backoff · 2^attempt seconds, at most a minute."""
    time.sleep(min(backoff * 2 ** attempt, 60.0))


RETRY_STATUS = {408, 429, 500, 502, 503, 504}
# Without any answer yet, these are unlikely to heal within a backoff: fail after one retry.
HOPELESS = ("DNS lookup failed", "connection refused")


def give_up(err: Exception, attempt: int, retries: int, connected: bool) -> bool:
    """Whether the failed `attempt` (0-based) is the last one."""
    return attempt >= retries or (not connected and attempt >= 1 and reason(err) in HOPELESS)


def get_json(url: str, *, dataset: str, params=None, session=None, retries: int = 5,
             backoff: float = 1.0, timeout: float = 60.0):
    """GET a JSON document with retries and backoff.

    Raises
    ------
    HostUnreachable
        When no connection could be made on any attempt (names the dataset and host).
    DownloadError
        On an HTTP error status or a body that is not JSON.
    """
    return _get(url, dataset=dataset, params=params, session=session, retries=retries,
                backoff=backoff, timeout=timeout, decode="json")


def get_text(url: str, *, dataset: str, params=None, session=None, retries: int = 5,
             backoff: float = 1.0, timeout: float = 60.0) -> str:
    """GET a small text document (e.g. an S3 listing) with retries and backoff; see `get_json`."""
    return _get(url, dataset=dataset, params=params, session=session, retries=retries,
                backoff=backoff, timeout=timeout, decode="text")


def head(url: str, *, dataset: str, session=None, retries: int = 5, backoff: float = 1.0,
         timeout: float = 60.0):
    """HEAD a URL (redirects followed) with retries; returns the (case-insensitive) headers."""
    return _get(url, dataset=dataset, params=None, session=session, retries=retries,
                backoff=backoff, timeout=timeout, decode="headers")


def _get(url, *, dataset, params, session, retries, backoff, timeout, decode):
    session = session or requests.Session()
    connected = False
    for attempt in range(retries + 1):
        try:
            if decode == "headers":
                response = session.head(url, timeout=timeout, allow_redirects=True)
            else:
                response = session.get(url, params=params, timeout=timeout)
            connected = True
            if response.status_code in RETRY_STATUS and attempt < retries:
                log.warning("%s: HTTP %d from %s; retry %d of %d", dataset, response.status_code,
                            response.url, attempt + 1, retries)
                sleep_backoff(backoff, attempt)
                continue
            if response.status_code != 200:
                raise DownloadError(f"{dataset}: HTTP {response.status_code} for {response.url}")
            if decode == "headers":
                return response.headers
            if decode == "text":
                return response.text
            try:
                return response.json()
            except ValueError as err:
                raise DownloadError(f"{dataset}: {response.url} did not return JSON "
                                    f"({err}); first bytes {response.text[:80]!r}") from err
        except (requests.ConnectionError, requests.Timeout) as err:
            if give_up(err, attempt, retries, connected):
                if not connected:
                    raise unreachable(dataset, url, err) from err
                raise DownloadError(f"{dataset}: {url}: {reason(err)} after {retries + 1} "
                                    f"attempts") from err
            log.warning("%s: %s for %s; retry %d of %d", dataset, reason(err), url,
                        attempt + 1, retries)
            sleep_backoff(backoff, attempt)
    raise AssertionError("the retry loop always returns or raises")
