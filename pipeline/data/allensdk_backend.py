"""Fetch Allen sessions with AllenSDK itself, in AllenSDK's own interpreter (backend `allensdk`).

Run as a script by the rule ``fetch_allensdk``, never imported by the pipeline: allensdk 2.16
pins numpy < 1.24 and pandas 1.5, so it lives in its own environment (``envs/allensdk.yaml``
under ``--software-deployment-method conda``, otherwise the venv ``.venv-allensdk``; see
README "AllenSDK"). It needs only the standard library and allensdk::

    <allensdk python> pipeline/data/allensdk_backend.py ecephys <cache_dir> <report.json> \
        --settings '<datasets.allen_neuropixels.download as JSON>'

``ecephys``: ``EcephysProjectCache.from_warehouse`` (host from ``templates_url``, RMA timeout
from ``rma_timeout``), the brain_observatory_1.1 sessions of its session table (or the ids in
``sessions``), ``get_session_data`` with AllenSDK's unit filters for each (it opens the file, and
AllenSDK's call caching fetches again, over it, a file it cannot read), and the
natural-scene templates the warehouse lists for the ecephys product. ``ophys``:
``BrainObservatoryCache`` (host ``warehouse_url``), the experiments of ``session_type`` in
``areas`` (or the ids in ``experiments``), failed containers excluded, and the download step
of ``get_ophys_experiment_data`` for each. AllenSDK downloads into the cache folder (an
existing cache named by ``allensdk_cache`` is used and extended in place); the JSON report
lists every file with its id, and the pipeline's download step (`pipeline.data.allen_neuropixels`,
`pipeline.data.allen_ophys`) checks and registers those files in the raw layout it reads.
"""

import argparse
import json
import logging
import os
import sys
import tempfile
from urllib.parse import urlsplit

log = logging.getLogger("allensdk_backend")

SESSION_TYPE = "brain_observatory_1.1"        # the release DANDI 000021 holds
# AllenSDK's own defaults (ecephys UNIT_FILTER_DEFAULTS), which the spec keeps (spec §2.1.3).
UNIT_FILTERS = {"amplitude_cutoff_maximum": 0.1, "presence_ratio_minimum": 0.95,
                "isi_violations_maximum": 0.5}


def _host(url):
    """(scheme, host[:port]) of a warehouse URL, as AllenSDK's HTTP engines take them."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise SystemExit(f"error: warehouse URL {url!r} needs a scheme and a host")
    return parts.scheme, parts.netloc


def _manifest(cache_dir, settings):
    """The AllenSDK manifest to use: the existing cache's, or one in `cache_dir`."""
    existing = settings.get("allensdk_cache")
    if existing:
        existing = os.path.expanduser(existing)
        return existing if existing.endswith(".json") else os.path.join(existing, "manifest.json")
    os.makedirs(cache_dir, exist_ok=True)
    return os.path.join(cache_dir, "manifest.json")


def fetch_ecephys(cache_dir, settings):
    """Sessions and scene templates through EcephysProjectCache; returns the report."""
    from allensdk.brain_observatory.ecephys.ecephys_project_cache import EcephysProjectCache

    scheme, host = _host(settings.get("templates_url", "https://api.brain-map.org"))
    manifest = _manifest(cache_dir, settings)
    cache = EcephysProjectCache.from_warehouse(
        scheme=scheme, host=host, manifest=manifest,
        timeout=int(settings.get("rma_timeout", 1200)),
        fetch_tries=int(settings.get("retries", 5)) + 1)
    table = cache.get_session_table()
    table = table[table["session_type"] == SESSION_TYPE]
    wanted = settings.get("sessions")
    if wanted is not None:
        wanted = [int(s) for s in wanted]
        missing = sorted(set(wanted) - set(int(i) for i in table.index))
        if missing:
            raise SystemExit(f"error: sessions {missing} are not {SESSION_TYPE} sessions of the "
                             f"warehouse session table ({manifest})")
        table = table.loc[wanted]
    sessions = []
    for session_id, row in table.iterrows():
        session = cache.get_session_data(int(session_id), **UNIT_FILTERS)
        path = cache.get_cache_path(None, cache.SESSION_NWB_KEY, int(session_id),
                                    int(session_id))
        try:
            n_units = int(len(session.units))
        except Exception as err:                 # metrics tables may need the warehouse
            log.warning("session %s: units not read (%s: %s)", session_id,
                        type(err).__name__, err)
            n_units = None
        log.info("session %s: %s (%s units pass AllenSDK's filters)", session_id, path, n_units)
        sessions.append({"session_id": str(int(session_id)), "specimen_id": str(
            int(row["specimen_id"])), "path": os.path.abspath(path), "units": n_units})
    listed = cache.fetch_api.stimulus_templates["scene_number"].dropna()
    templates = []
    for number in sorted(int(n) for n in listed):
        cache.get_natural_scene_template(number)
        templates.append({"number": number, "path": os.path.abspath(
            cache.get_cache_path(None, cache.NATURAL_SCENE_KEY, number))})
    return {"kind": "ecephys", "manifest": os.path.abspath(manifest), "sessions": sessions,
            "templates": templates}


def _opens_as_hdf5(path):
    """Whether h5py opens `path`; HDF5 refuses a file shorter than its recorded end."""
    import h5py

    try:
        with h5py.File(path, "r"):
            return True
    except OSError:
        return False


def fetch_ophys(cache_dir, settings):
    """Natural-scene experiments through BrainObservatoryCache; returns the report."""
    from allensdk.core.brain_observatory_cache import BrainObservatoryCache

    manifest = _manifest(cache_dir, settings)
    boc = BrainObservatoryCache(manifest_file=manifest,
                                base_uri=settings.get("warehouse_url", "https://api.brain-map.org"))
    experiments = boc.get_ophys_experiments(
        ids=settings.get("experiments"), targeted_structures=settings["areas"],
        session_types=[settings.get("session_type", "three_session_B")])
    out = []
    for record in sorted(experiments, key=lambda r: r["id"]):
        path = boc.get_cache_path(None, boc.EXPERIMENT_DATA_KEY, record["id"])
        # What get_ophys_experiment_data does before it opens the file with AllenSDK's NWB 1
        # reader: the pipeline reads the file with its own reader, and checks it on register.
        boc.api.save_ophys_experiment_data(record["id"], path, strategy="lazy")
        if not _opens_as_hdf5(path):
            # "lazy" trusts any file already there, e.g. one a killed download left short.
            log.warning("experiment %s: %s does not open as HDF5; fetching it again",
                        record["id"], path)
            os.remove(path)
            boc.api.save_ophys_experiment_data(record["id"], path, strategy="lazy")
            if not _opens_as_hdf5(path):
                raise SystemExit(f"error: experiment {record['id']}: {path} still does not open "
                                 f"as HDF5 after a fresh download")
        log.info("experiment %s: %s", record["id"], path)
        out.append({"experiment_id": str(record["id"]), "path": os.path.abspath(path)})
    table = boc.get_cache_path(None, boc.EXPERIMENTS_KEY)
    return {"kind": "ophys", "manifest": os.path.abspath(manifest),
            "table": os.path.abspath(table), "experiments": out}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["ecephys", "ophys"])
    parser.add_argument("cache_dir", help="AllenSDK cache folder (unless allensdk_cache is set)")
    parser.add_argument("report", help="JSON list of the fetched files, written last")
    parser.add_argument("--settings", required=True, help="the dataset's download block (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = json.loads(args.settings)
    import allensdk

    log.info("allensdk %s (%s)", allensdk.__version__, sys.executable)
    fetch = fetch_ecephys if args.kind == "ecephys" else fetch_ophys
    report = dict(fetch(args.cache_dir, settings), allensdk=allensdk.__version__)
    folder = os.path.dirname(os.path.abspath(args.report))
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as tmp:
        json.dump(report, tmp, indent=1, sort_keys=True)
    os.replace(tmp.name, args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
