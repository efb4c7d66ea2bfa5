"""Reuse of an existing AllenSDK cache (pipeline/data/fetch/allensdk_cache.py), no allensdk needed.

The Allen fixtures are served on 127.0.0.1 as DANDI 000021, the warehouse and the 2p bucket; an
AllenSDK cache folder in AllenSDK's own layout holds some of the same files, one of them
truncated. Every request the server receives is counted.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

from pipeline.cli import main as cli
from pipeline.config import validate_config
from pipeline.data.allen_neuropixels import assemble_allen_neuropixels
from pipeline.data.allen_ophys import assemble_allen_ophys
from pipeline.data.fetch.allensdk_cache import (CacheError, ecephys_sessions, open_cache,
                                                ophys_experiments)
from tests.data.allen_fixtures import (EXPERIMENTS, N_IMAGES, SESSIONS, serve_neuropixels,
                                       serve_ophys, template_tiff)
from tests.data.allensdk_cache_fixtures import write_ecephys_cache, write_ophys_cache
from tests.data.http_server import FixtureServer

REPO = Path(__file__).resolve().parents[3]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
TRUNCATED_TEMPLATE = 3


def _block(name: str, download: dict) -> dict:
    block = {"download": download, "assemble": {"n_boot": 20}}
    return validate_config({"datasets": {name: block}}, SCHEMA)["datasets"][name]


def _session_routes(server, session_id: str) -> set[str]:
    """Every path of the fixture server that serves one session (metadata, redirect, bytes)."""
    asset_ids = {path.split("/")[3] for path in server.routes
                 if path.startswith("/api/assets/")}              # /api/assets/{id}/download/
    mine = set()
    for asset_id in asset_ids:
        meta = [p for p in server.routes if p.endswith(f"/assets/{asset_id}/")]
        if meta and server.routes[meta[0]].json["path"].endswith(f"_ses-{session_id}.nwb"):
            mine |= {meta[0], f"/api/assets/{asset_id}/download/", f"/blobs/{asset_id}"}
    return mine


def _with_template_sizes(server) -> None:
    """Make the warehouse listing publish file_size, as the template reuse needs."""
    route = server.routes["/api/v2/data/query.json"]
    rma = route.json

    def sized(query, srv):
        page = rma(query, srv)
        for record in page.get("msg", []):
            if record.get("path", "").endswith(".tiff"):
                number = int(record["path"].rsplit("/", 1)[1].split(".")[0])
                record["file_size"] = len(template_tiff(number))
        return page
    route.json = sized


@pytest.fixture(scope="module")
def neuropixels(tmp_path_factory):
    """Server, settings, a DANDI-path download, and an AllenSDK cache with 800002 truncated."""
    root = tmp_path_factory.mktemp("allensdk_np")
    with FixtureServer() as server:
        download = serve_neuropixels(server, root / "upstream")
        _with_template_sizes(server)
        data = {key: (root / "upstream" / f"sub-{key[0]}/sub-{key[0]}_ses-{key[1]}.nwb")
                .read_bytes() for key in SESSIONS}
        intact = data[("700001", "800001")]
        truncated = data[("700002", "800002")][: len(data[("700002", "800002")]) // 2]
        templates = {n: template_tiff(n) for n in range(N_IMAGES)}
        templates[TRUNCATED_TEMPLATE] = templates[TRUNCATED_TEMPLATE][:100]
        cache = write_ecephys_cache(
            root / "allensdk", {("700001", "800001"): intact, ("700002", "800002"): truncated},
            templates=templates, listed_only=[("700003", "800003")])
        # A session file the cache's table does not list: never matched by its name.
        stray = cache / "session_800009" / "session_800009.nwb"
        stray.parent.mkdir()
        stray.write_bytes(intact)
        plain = _block("allen_neuropixels", download)
        assert cli(["download_allen_neuropixels", str(root / "dandi"), "--settings",
                    json.dumps(plain["download"])]) == 0
        yield server, download, cache, root


def _reuse(neuropixels, out: str, **keys):
    server, download, cache, root = neuropixels
    settings = _block("allen_neuropixels", {**download, "allensdk_cache": str(cache), **keys})
    server.requests.clear()
    assert cli(["download_allen_neuropixels", str(root / out), "--settings",
                json.dumps(settings["download"])]) == 0
    return json.loads((root / out / "manifest.json").read_text()), list(server.requests)


def test_cache_tables_match_sessions_by_id(neuropixels):
    _, _, cache, _ = neuropixels
    found = ecephys_sessions(open_cache(cache, dataset="t"), dataset="t")
    # 800003 is listed but was never downloaded; 800009 exists but is not listed.
    assert sorted(found) == ["800001", "800002"]
    assert found["800001"] == cache / "session_800001" / "session_800001.nwb"
    assert open_cache(cache / "manifest.json", dataset="t").manifest == cache / "manifest.json"


def test_reuse_takes_intact_files_without_requests_and_refetches_truncated(neuropixels,
                                                                           caplog):
    server, _, cache, root = neuropixels
    with caplog.at_level(logging.WARNING, logger="pipeline.data.fetch.allensdk_cache"):
        manifest, requests = _reuse(neuropixels, "reuse")
    paths = [r.path for r in requests]
    intact, truncated = _session_routes(server, "800001"), _session_routes(server, "800002")
    assert not intact & set(paths)                      # not one request for 800001
    assert sum(p.startswith("/blobs/") for p in paths) == 1
    assert [p for p in paths if p in truncated and p.startswith("/blobs/")]
    template_gets = [p for p in paths if p.startswith("/api/v2/well_known_file_download/")]
    assert template_gets == [f"/api/v2/well_known_file_download/{10 + TRUNCATED_TEMPLATE}"]
    # Only the listings (which carry the checksums) and the two damaged files were asked for.
    assert set(paths) - truncated - set(template_gets) <= {
        "/api/dandisets/000021/versions/draft/assets/", "/api/v2/data/query.json"}
    by_path = {f["path"]: f for f in manifest["files"]}
    session1 = "sub-700001/sub-700001_ses-800001.nwb"
    assert by_path[session1]["reused_from"] == str(cache / "session_800001/session_800001.nwb")
    assert "reused_from" not in by_path["sub-700002/sub-700002_ses-800002.nwb"]
    assert by_path[session1]["verified_by"] == ["size", "dandi-etag", "sha256"]
    assert sum("reused_from" in f for f in manifest["files"]) == 1 + N_IMAGES - 1
    assert manifest["source"]["allensdk_cache"] == str(cache / "manifest.json")
    local = root / "reuse" / session1
    assert local.is_symlink() and local.resolve() == (cache / "session_800001/session_800001"
                                                      ".nwb").resolve()
    # The failing files are named one by one, with the reason.
    failures = [r.getMessage() for r in caplog.records if "failed verification" in r.getMessage()]
    assert len(failures) == 2
    assert any("session_800002.nwb" in m and "expected" in m for m in failures)
    assert any(f"natural_scene_{TRUNCATED_TEMPLATE}.tiff" in m for m in failures)
    # The damaged cache file itself is left as it was (never overwritten through a link).
    assert (cache / "session_800002/session_800002.nwb").stat().st_size < \
        (root / "reuse/sub-700002/sub-700002_ses-800002.nwb").stat().st_size


def test_reused_assembly_equals_the_dandi_paths(neuropixels):
    _, _, _, root = neuropixels
    if not (root / "reuse/manifest.json").exists():
        _reuse(neuropixels, "reuse")
    block = _block("allen_neuropixels", {})["assemble"]
    ours = assemble_allen_neuropixels(root / "reuse/manifest.json", **block)
    dandi = assemble_allen_neuropixels(root / "dandi/manifest.json", **block)
    assert ours.sizes["neuroid"] > 0
    xr.testing.assert_identical(ours, dandi)


def test_second_run_requests_no_file(neuropixels):
    _reuse(neuropixels, "again")
    _, requests = _reuse(neuropixels, "again")
    assert not [r for r in requests if r.path.startswith(("/blobs/", "/api/v2/well_known"))]


def test_same_size_wrong_bytes_fail_the_etag_and_are_fetched(neuropixels, tmp_path, caplog):
    server, download, cache, root = neuropixels
    data = bytearray((cache / "session_800001/session_800001.nwb").read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = write_ecephys_cache(tmp_path / "bad", {("700001", "800001"): bytes(data)})
    settings = _block("allen_neuropixels", {**download, "allensdk_cache": str(bad),
                                            "allensdk_cache_mode": "copy",
                                            "sessions": ["800001"]})
    server.requests.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.data.fetch.allensdk_cache"):
        assert cli(["download_allen_neuropixels", str(tmp_path / "raw"), "--settings",
                    json.dumps(settings["download"])]) == 0
    assert [r for r in server.requests if r.path in _session_routes(server, "800001")
            and r.path.startswith("/blobs/")]
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "session_800001.nwb" in message and "dandi-etag" in message
    local = tmp_path / "raw/sub-700001/sub-700001_ses-800001.nwb"
    assert not local.is_symlink()
    assert local.read_bytes() == (root / "dandi/sub-700001/sub-700001_ses-800001.nwb").read_bytes()


def test_copy_mode_makes_independent_files(neuropixels, tmp_path):
    _, download, cache, _ = neuropixels
    settings = _block("allen_neuropixels", {**download, "allensdk_cache": str(cache),
                                            "allensdk_cache_mode": "copy",
                                            "sessions": ["800001"]})
    assert cli(["download_allen_neuropixels", str(tmp_path), "--settings",
                json.dumps(settings["download"])]) == 0
    local = tmp_path / "sub-700001/sub-700001_ses-800001.nwb"
    assert local.is_file() and not local.is_symlink()
    assert os.stat(local).st_ino != os.stat(cache / "session_800001/session_800001.nwb").st_ino


def test_a_folder_without_manifest_is_a_one_line_error(neuropixels, tmp_path):
    _, download, _, _ = neuropixels
    settings = _block("allen_neuropixels", {**download, "allensdk_cache": str(tmp_path)})
    with pytest.raises(SystemExit, match=r"allensdk_cache .*no AllenSDK manifest"):
        cli(["download_allen_neuropixels", str(tmp_path / "raw"), "--settings",
             json.dumps(settings["download"])])
    with pytest.raises(CacheError, match="no manifest entry 'sessions'"):
        (tmp_path / "manifest.json").write_text(json.dumps({"manifest": [
            {"key": "BASEDIR", "type": "dir", "spec": "."}]}))
        ecephys_sessions(open_cache(tmp_path, dataset="t"), dataset="t")


def test_default_manifest_has_no_allensdk_trace(neuropixels):
    _, _, _, root = neuropixels
    manifest = json.loads((root / "dandi/manifest.json").read_text())
    assert "allensdk_cache" not in manifest["source"]
    assert not any("reused_from" in f for f in manifest["files"])


# ---------------------------------------------------------------------------- backend: allensdk
# What the download step does with the report of pipeline/data/allensdk_backend.py; the report
# is written here by hand (the backend itself runs in test_allensdk_backend.py, slow).

def _backend_report(out, cache, sessions, n_templates=N_IMAGES):
    report = {"kind": "ecephys", "manifest": str(cache / "manifest.json"), "allensdk": "2.16.2",
              "sessions": [{"session_id": session, "specimen_id": specimen, "units": None,
                            "path": str(cache / f"session_{session}/session_{session}.nwb")}
                           for specimen, session in sessions],
              "templates": [{"number": n, "path": str(
                  cache / f"natural_scene_templates/natural_scene_{n}.tiff")}
                  for n in range(n_templates)]}
    (out / "allensdk").mkdir(parents=True, exist_ok=True)
    (out / "allensdk/fetched.json").write_text(json.dumps(report))


def _register(out, download):
    settings = _block("allen_neuropixels", {**download, "backend": "allensdk"})
    return cli(["download_allen_neuropixels", str(out), "--settings",
                json.dumps(settings["download"])])


def test_backend_files_are_registered_in_the_raw_layout(neuropixels, tmp_path):
    server, download, _, root = neuropixels
    cache = write_ecephys_cache(tmp_path / "sdk", {
        key: (root / "dandi" / f"sub-{key[0]}/sub-{key[0]}_ses-{key[1]}.nwb").read_bytes()
        for key in SESSIONS}, templates={n: template_tiff(n) for n in range(N_IMAGES)})
    _backend_report(tmp_path / "raw", cache, SESSIONS)
    server.requests.clear()
    assert _register(tmp_path / "raw", download) == 0
    assert not server.requests                            # registering asks nothing
    manifest = json.loads((tmp_path / "raw/manifest.json").read_text())
    assert manifest["source"]["backend"] == "allensdk"
    sessions = [f for f in manifest["files"] if f["role"] == "session"]
    assert [f["path"] for f in sessions] == [f"sub-{a}/sub-{a}_ses-{b}.nwb" for a, b in SESSIONS]
    assert all(f["verified_by"] == ["allensdk", "hdf5", "session_id"] for f in sessions)
    block = _block("allen_neuropixels", {})["assemble"]
    xr.testing.assert_identical(
        assemble_allen_neuropixels(tmp_path / "raw/manifest.json", **block),
        assemble_allen_neuropixels(root / "dandi/manifest.json", **block))


def test_backend_files_that_fail_their_check_are_listed_and_not_registered(neuropixels,
                                                                           tmp_path):
    _, download, _, root = neuropixels
    data = {key: (root / "dandi" / f"sub-{key[0]}/sub-{key[0]}_ses-{key[1]}.nwb").read_bytes()
            for key in SESSIONS}
    data[("700002", "800002")] = data[("700002", "800002")][:5000]          # truncated
    cache = write_ecephys_cache(tmp_path / "sdk", data,
                                templates={n: template_tiff(n) for n in range(N_IMAGES)})
    # 800001's file given as session 800003: the session id inside does not match.
    (cache / "session_800003").mkdir()
    (cache / "session_800003/session_800003.nwb").symlink_to(
        cache / "session_800001/session_800001.nwb")
    _backend_report(tmp_path / "raw", cache, [("700001", "800001"), ("700002", "800002"),
                                              ("700003", "800003")])
    with pytest.raises(SystemExit) as err:
        _register(tmp_path / "raw", download)
    message = str(err.value)
    assert "2 files AllenSDK fetched failed their check" in message
    assert "session_800002.nwb: not a readable HDF5/NWB file" in message
    assert "session_800003.nwb: general/session_id is '800001', expected '800003'" in message
    assert not (tmp_path / "raw/manifest.json").exists()


def test_backend_without_its_report_names_the_rule(neuropixels, tmp_path):
    _, download, _, _ = neuropixels
    with pytest.raises(SystemExit, match=r"needs .*fetched\.json, written by the rule "
                                         r"fetch_allensdk"):
        _register(tmp_path / "raw", download)


# ---------------------------------------------------------------------------- two-photon

def test_ophys_reuse_matches_experiments_by_id_and_refetches_truncated(tmp_path):
    with FixtureServer() as server:
        download = serve_ophys(server, tmp_path / "upstream")
        plain = _block("allen_ophys", download)
        assert cli(["download_allen_ophys", str(tmp_path / "s3"), "--settings",
                    json.dumps(plain["download"])]) == 0
        data = {eid: (tmp_path / "upstream" / f"{eid}.nwb").read_bytes()
                for eid, *_ in EXPERIMENTS}
        data[502] = data[502][:-1000]                          # truncated
        records = json.loads((tmp_path / "s3/ophys_experiments.json").read_text())
        cache = write_ophys_cache(tmp_path / "boc", data, records)
        assert sorted(ophys_experiments(open_cache(cache, dataset="t"), dataset="t")) == \
            ["501", "502", "503", "504"]
        settings = _block("allen_ophys", {**download, "allensdk_cache": str(cache)})
        server.requests.clear()
        assert cli(["download_allen_ophys", str(tmp_path / "reuse"), "--settings",
                    json.dumps(settings["download"])]) == 0
        gets = [r.path for r in server.requests if r.path.endswith(".nwb")]
    assert gets == ["/visual-coding-2p/ophys_experiment_data/502.nwb"]
    manifest = json.loads((tmp_path / "reuse/manifest.json").read_text())
    reused = sorted(f["id"] for f in manifest["files"] if "reused_from" in f)
    assert reused == [501, 503]                                # 504 (VISrl) is not selected
    block = plain["assemble"]
    xr.testing.assert_identical(assemble_allen_ophys(tmp_path / "reuse/manifest.json", **block),
                                assemble_allen_ophys(tmp_path / "s3/manifest.json", **block))


# ---------------------------------------------------------------------------- the rules

def test_download_rules_params_and_the_allensdk_step(tmp_path):
    """One dry run of the repository's data rules: allen_neuropixels at the defaults keeps its
    old params (the new keys stay out, so existing caches rerun nothing); allen_ophys with
    backend allensdk runs fetch_allensdk first, in $ALLENSDK_PYTHON."""
    snakefile = tmp_path / "Snakefile"      # the repository's data rules, without other stages
    snakefile.write_text(
        "from pipeline.config import validate_config\n"
        f"configfile: {str(REPO / 'config.yaml')!r}\n"
        f"config = validate_config(config, {str(SCHEMA)!r}, source='config')\n"
        f"include: {str(REPO / 'workflow/rules/common.smk')!r}\n"
        "wildcard_constraints:\n    dataset=r'[a-z0-9_]+',\n"
        f"include: {str(REPO / 'workflow/rules/data.smk')!r}\n")
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"datasets": {
        "synthetic_mouse": None, "allen_neuropixels": {"download": {}},
        "allen_ophys": {"download": {"backend": "allensdk", "allensdk_cache": "/c"}}}}))
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(tmp_path / "work"),
         "-n", "-p", "data/raw/allen_neuropixels/manifest.json",
         "data/raw/allen_ophys/manifest.json", "--configfile", str(config)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "ALLENSDK_PYTHON": "/opt/sdk/bin/python"})
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    commands = [line.removeprefix("Shell command: ") for line in
                (done.stdout + done.stderr).splitlines() if line.startswith("Shell command: ")]
    neuropixels = [c for c in commands if "download_allen_neuropixels" in c][0]
    settings = json.loads(neuropixels.split("--settings '")[1].split("'")[0])
    assert sorted(settings) == ["api_url", "backoff", "dandiset", "retries", "sessions",
                                "templates_url", "timeout", "version"]
    fetch = [c for c in commands if "allensdk_backend.py" in c]
    assert len(fetch) == 1 and fetch[0].startswith(
        f"/opt/sdk/bin/python {REPO / 'pipeline/data/allensdk_backend.py'} ophys "
        f"data/raw/allen_ophys/allensdk data/raw/allen_ophys/allensdk/fetched.json")
    ophys = json.loads(fetch[0].split("--settings '")[1].split("'")[0])
    assert ophys["backend"] == "allensdk" and ophys["allensdk_cache"] == "/c"
    assert "warehouse_url" not in ophys                      # at its default
