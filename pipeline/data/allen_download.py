"""Where the Allen Brain Observatory data live, and downloading them into ``data/raw/``.

- Neuropixels (Visual Coding, brain_observatory_1.1): session NWB files of DANDI 000021,
  listed through the DANDI API and verified against their DANDI etag / sha256
  (`pipeline.data.dandi`); the natural-scene template TIFFs from the Allen warehouse, listed by
  the RMA query AllenSDK's ``EcephysProjectWarehouseApi`` uses (notes/data-sources.md §1).
- Two-photon (Visual Coding 2p): the experiment table ``ophys_experiments.json`` and the NWB 1
  files ``ophys_experiment_data/{id}.nwb`` on the public S3 bucket, verified against the size
  and ETag of the bucket's own listing (§2).

Each download writes ``manifest.json`` beside the files: what was fetched, from where, and how it
was verified. The assemble steps read only the files a manifest lists.
"""

from __future__ import annotations

import json
import logging
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import requests

from pipeline.data.allen_stimuli import TEMPLATE_RE
from pipeline.data.dandi import list_assets
from pipeline.data.download import (DownloadError, Remote, fetch, fetch_all, get_json, get_text,
                                    head, write_manifest)

log = logging.getLogger(__name__)

SESSION_GLOB = "sub-*/sub-*_ses-*.nwb"
SESSION_RE = re.compile(r"_ses-(?P<session>\d+)\.nwb$")
ALLEN_API = "https://api.brain-map.org"
ECEPHYS_PRODUCT_ID = 714914585
TEMPLATE_QUERY = ("criteria=model::WellKnownFile,rma::criteria,"
                  "well_known_file_type[name$eq'Stimulus'][attachable_type$eq'Product']"
                  "[attachable_id$eq{product_id}]")
S3_2P = "https://allen-brain-observatory.s3.us-west-2.amazonaws.com"
S3_2P_PREFIX = "visual-coding-2p"
NATURAL_SCENES_SESSION = "three_session_B"


def _http(settings: dict) -> dict:
    """The retry settings of a dataset block, as keyword arguments of `fetch` / `get_json`."""
    return {k: settings[k] for k in ("retries", "backoff", "timeout") if k in settings}


# ---------------------------------------------------------------------------- Neuropixels

def template_remotes(api_url: str = ALLEN_API, product_id: int = ECEPHYS_PRODUCT_ID, *,
                     dataset: str, session=None, page_size: int = 50, **http) -> list[Remote]:
    """The natural-scene template TIFFs of the ecephys product, from the warehouse RMA API.

    Pages with ``rma::options[start_row][num_rows]`` until ``total_rows`` are read. Files are
    numbered by the ``.../<n>.tiff`` in their path (AllenSDK's ``scene_re``); the warehouse
    publishes no checksum, so they are verified by ``file_size`` when the record has it and by
    the announced Content-Length otherwise.
    """
    api_url = api_url.rstrip("/")
    query = TEMPLATE_QUERY.format(product_id=product_id)
    records, start, total = [], 0, None
    while total is None or start < total:
        url = (f"{api_url}/api/v2/data/query.json?{query},rma::options[start_row$eq{start}]"
               f"[num_rows$eq{page_size}][order$eq'id']")
        page = get_json(url, dataset=dataset, session=session, **http)
        if not isinstance(page, dict) or not page.get("success", False) or "msg" not in page:
            raise DownloadError(f"{dataset}: warehouse query {url} failed: "
                                f"{str(page)[:200]}")
        records += page["msg"]
        total = int(page.get("total_rows", len(records)))
        if not page["msg"]:
            break
        start += len(page["msg"])
    remotes = []
    for record in records:
        match = TEMPLATE_RE.match(record.get("path", ""))
        if match is None:
            continue                              # natural movies and other stimuli
        size = record.get("file_size")
        remotes.append(Remote(url=f"{api_url}{record['download_link']}",
                              path=f"natural_scene_templates/{int(match['num'])}.tiff",
                              size=size if isinstance(size, int) else None))
    if not remotes:
        raise DownloadError(f"{dataset}: the warehouse lists no natural-scene template for "
                            f"product {product_id} ({api_url})")
    log.info("%s: %d natural-scene templates listed", dataset, len(remotes))
    return sorted(remotes, key=lambda r: int(TEMPLATE_RE.match("/" + r.path)["num"]))


def neuropixels_session_assets(settings: dict, *, dataset: str, session=None) -> list:
    """The DANDI session assets (no ``_probe-`` files) selected by the dataset block."""
    assets = list_assets(settings["dandiset"], settings["version"], api_url=settings["api_url"],
                         glob=SESSION_GLOB, dataset=dataset, session=session,
                         **_http(settings))
    assets = [a for a in assets if "_probe-" not in a.path and SESSION_RE.search(a.path)]
    wanted = settings.get("sessions")
    if wanted is not None:
        wanted = {str(s) for s in wanted}
        found = {SESSION_RE.search(a.path)["session"] for a in assets}
        if wanted - found:
            raise DownloadError(f"{dataset}: sessions {sorted(wanted - found)} are not in "
                                f"dandiset {settings['dandiset']}/{settings['version']}")
        assets = [a for a in assets if SESSION_RE.search(a.path)["session"] in wanted]
    if not assets:
        raise DownloadError(f"{dataset}: no session file matches {SESSION_GLOB} in dandiset "
                            f"{settings['dandiset']}/{settings['version']}")
    return assets


def download_allen_neuropixels(out_dir, settings: dict, *, dataset: str = "allen_neuropixels",
                               manifest_name: str = "manifest.json") -> Path:
    """Fetch the selected sessions and the scene templates; write ``out_dir/manifest.json``.

    Parameters
    ----------
    out_dir : path-like
        The dataset's cache, ``data/raw/allen_neuropixels``; verified files already there are
        not downloaded again.
    settings : dict
        The dataset's config block: dandiset, version, api_url, sessions (null = all),
        templates_url, retries, backoff, timeout.
    dataset : str
        Name for log lines and errors.
    manifest_name : str
        File name of the manifest in `out_dir` (another name lets a partial download share the
        cache without replacing the pipeline's manifest).

    Returns
    -------
    pathlib.Path
        The manifest.
    """
    out_dir = Path(out_dir)
    session = requests.Session()
    http = _http(settings)
    assets = neuropixels_session_assets(settings, dataset=dataset, session=session)
    results = fetch_all([a.remote() for a in assets], out_dir, dataset=dataset,
                        session=session, **http)
    files = [{"path": a.path, "role": "session", "url": a.download_url, "asset_id": a.asset_id,
              "session_id": SESSION_RE.search(a.path)["session"], "sha256": r.sha256,
              "size": r.size, "verified_by": r.verified_by} for a, r in zip(assets, results)]
    templates = template_remotes(settings["templates_url"], dataset=dataset, session=session,
                                 **http)
    for remote, result in zip(templates, fetch_all(templates, out_dir, dataset=dataset,
                                                   session=session, **http)):
        files.append({"path": remote.path, "role": "template", "url": remote.url,
                      "sha256": result.sha256, "size": result.size,
                      "verified_by": result.verified_by})
    source = {"dandiset": settings["dandiset"], "version": settings["version"],
              "api_url": settings["api_url"], "templates_url": settings["templates_url"]}
    manifest = out_dir / manifest_name
    write_manifest(manifest, dataset, source, files)
    log.info("%s: %d sessions and %d templates verified; manifest %s", dataset, len(assets),
             len(templates), manifest)
    return manifest


# ---------------------------------------------------------------------------- two-photon

def s3_list(base_url: str, prefix: str, *, dataset: str, session=None,
            **http) -> dict[str, tuple[int, str]]:
    """Key → (size, ETag) of every object under `prefix` (S3 ListObjectsV2, all pages)."""
    base_url = base_url.rstrip("/")
    objects, token = {}, None
    while True:
        params = {"list-type": "2", "prefix": prefix}
        if token:
            params["continuation-token"] = token
        text = get_text(f"{base_url}/", params=params, dataset=dataset, session=session, **http)
        try:
            root = ET.fromstring(text)
        except ET.ParseError as err:
            raise DownloadError(f"{dataset}: S3 listing of {base_url}/{prefix} is not XML "
                                f"({err})") from err
        for element in root.iter():                 # drop the S3 namespace
            element.tag = element.tag.rpartition("}")[2]
        for item in root.iter("Contents"):
            objects[item.findtext("Key")] = (int(item.findtext("Size")),
                                             item.findtext("ETag", "").strip('"'))
        if root.findtext("IsTruncated") != "true":
            break
        token = root.findtext("NextContinuationToken")
        if not token:
            raise DownloadError(f"{dataset}: truncated S3 listing of {prefix} without a "
                                f"NextContinuationToken")
    log.info("%s: %d objects listed under %s/%s", dataset, len(objects), base_url, prefix)
    return objects


def s3_index(base_url: str, prefix: str, keys, *, dataset: str, session=None,
             **http) -> dict[str, tuple[int, str]]:
    """Size and ETag of `keys`: from the bucket listing, or from HEAD when listing is refused.

    Anonymous ListObjectsV2 on the Allen bucket is unverified; a 403 falls back to one HEAD
    request per object (Content-Length and ETag).
    """
    try:
        return s3_list(base_url, prefix, dataset=dataset, session=session, **http)
    except DownloadError as err:
        if "HTTP 403" not in str(err):
            raise
        log.warning("%s: the bucket refuses listing (%s); asking each object with HEAD",
                    dataset, err)
    out = {}
    for key in keys:
        headers = head(f"{base_url.rstrip('/')}/{key}", dataset=dataset, session=session, **http)
        if "Content-Length" not in headers:
            raise DownloadError(f"{dataset}: HEAD {base_url}/{key} sent no Content-Length")
        out[key] = (int(headers["Content-Length"]), headers.get("ETag", "").strip('"'))
    return out


def _s3_remote(base_url: str, key: str, listing: dict, path: str, dataset: str) -> Remote:
    if key not in listing:
        raise DownloadError(f"{dataset}: {key} is not in the bucket listing of {base_url}")
    size, etag = listing[key]
    return Remote(url=f"{base_url.rstrip('/')}/{key}", path=path, size=size,
                  digests={"s3-etag": etag} if etag else {})


def _experiment_fields(record: dict) -> dict:
    """The fields the selection needs, from a raw RMA or a simplified AllenSDK record."""
    structure = record.get("targeted_structure")
    if isinstance(structure, dict):
        structure = structure.get("acronym")
    specimen = record.get("specimen") if isinstance(record.get("specimen"), dict) else {}
    container = record.get("experiment_container")
    failed = record.get("failed", False) or (isinstance(container, dict)
                                             and container.get("failed", False))
    return {"id": int(record["id"]), "area": structure,
            "session_type": record.get("stimulus_name", record.get("session_type")),
            "container_id": record.get("experiment_container_id"),
            "specimen": specimen.get("name", record.get("specimen_name")),
            "failed": bool(failed)}


def select_experiments(records: list[dict], *, areas, session_type=NATURAL_SCENES_SESSION,
                       experiments=None) -> list[dict]:
    """Experiments with natural scenes in the wanted areas, failed containers excluded."""
    chosen = []
    wanted = None if experiments is None else {int(e) for e in experiments}
    for record in records:
        fields = _experiment_fields(record)
        if wanted is not None and fields["id"] not in wanted:
            continue
        if fields["failed"] or fields["session_type"] != session_type:
            continue
        if fields["area"] not in areas:
            continue
        chosen.append(fields)
    if wanted is not None and wanted - {e["id"] for e in chosen}:
        raise DownloadError(f"experiments {sorted(wanted - {e['id'] for e in chosen})} are not "
                            f"{session_type} experiments in {list(areas)}")
    return sorted(chosen, key=lambda e: e["id"])


def download_allen_ophys(out_dir, settings: dict, *, dataset: str = "allen_ophys",
                         manifest_name: str = "manifest.json") -> Path:
    """Fetch the experiment table and the selected NWB files; write ``out_dir/manifest.json``.

    Parameters
    ----------
    out_dir : path-like
        The dataset's cache, ``data/raw/allen_ophys``.
    settings : dict
        The dataset's config block: s3_url, areas, session_type, experiments (null = all),
        retries, backoff, timeout.
    dataset : str
        Name for log lines and errors.
    manifest_name : str
        File name of the manifest in `out_dir` (another name lets a partial download share the
        cache without replacing the pipeline's manifest).

    Returns
    -------
    pathlib.Path
        The manifest.
    """
    out_dir = Path(out_dir)
    session = requests.Session()
    http = _http(settings)
    base = settings["s3_url"]
    table_key = f"{S3_2P_PREFIX}/ophys_experiments.json"
    table_remote = _s3_remote(base, table_key, s3_index(base, table_key, [table_key],
                                                        dataset=dataset, session=session, **http),
                              "ophys_experiments.json", dataset)
    table = fetch(table_remote, out_dir, dataset=dataset, session=session, **http)
    try:
        records = json.loads(table.path.read_text())
    except ValueError as err:
        raise DownloadError(f"{table.path}: not JSON ({err})") from err
    chosen = select_experiments(records, areas=settings["areas"],
                                session_type=settings["session_type"],
                                experiments=settings.get("experiments"))
    if not chosen:
        raise DownloadError(f"{dataset}: no {settings['session_type']} experiment in "
                            f"{settings['areas']} in {table.path}")
    prefix = f"{S3_2P_PREFIX}/ophys_experiment_data/"
    listing = s3_index(base, prefix, [f"{prefix}{e['id']}.nwb" for e in chosen],
                       dataset=dataset, session=session, **http)
    remotes = [_s3_remote(base, f"{prefix}{e['id']}.nwb", listing,
                          f"ophys_experiment_data/{e['id']}.nwb", dataset) for e in chosen]
    results = fetch_all(remotes, out_dir, dataset=dataset, session=session, **http)
    files = [{"path": table_remote.path, "role": "experiment_table", "url": table_remote.url,
              "sha256": table.sha256, "size": table.size, "verified_by": table.verified_by}]
    files += [{"path": r.path, "role": "experiment", "url": r.url, "sha256": res.sha256,
               "size": res.size, "verified_by": res.verified_by, **e}
              for e, r, res in zip(chosen, remotes, results)]
    manifest = out_dir / manifest_name
    write_manifest(manifest, dataset, {"s3_url": base, "prefix": S3_2P_PREFIX}, files)
    log.info("%s: %d experiments verified; manifest %s", dataset, len(chosen), manifest)
    return manifest
