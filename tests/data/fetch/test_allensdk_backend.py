"""Backend `allensdk`: pipeline/data/allensdk_backend.py in AllenSDK's own interpreter (slow).

Builds (or reuses) the isolated venv of README "AllenSDK" (allensdk==2.16.2), then runs the
backend script exactly as rule fetch_allensdk does, with AllenSDK's warehouse host pointed at
a FixtureServer on 127.0.0.1 (``from_warehouse(scheme, host)`` takes it), and registers the
result with the pipeline's download step. The venv is taken from $ALLENSDK_PYTHON, else
.venv-allensdk/bin/python, else built once in pytest's cache folder; the tests skip, with
pip's last lines as the reason, when it cannot be built (no PyPI).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import xarray as xr
import yaml

from pipeline.data.allen_neuropixels import (assemble_allen_neuropixels,
                                             download_allen_neuropixels)
from pipeline.data.allen_ophys import assemble_allen_ophys, download_allen_ophys
from tests.data.allen_fixtures import (EXPERIMENTS, N_IMAGES, SESSIONS, serve_neuropixels,
                                       serve_ophys)
from tests.data.allensdk_cache_fixtures import write_ecephys_cache, write_ophys_cache
from tests.data.http_server import DandiFixture, FixtureServer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "pipeline/data/allensdk_backend.py"
# The pip requirements of the conda environment (README "AllenSDK" installs the same): without
# hdmf<4, pip pairs allensdk's pynwb 2.8 with hdmf 6, and pynwb cannot build an NWBFile at all
# ("abstract method external_resources").
REQUIREMENTS = yaml.safe_load((REPO / "envs/allensdk.yaml").read_text())["dependencies"][-1]["pip"]
ASSEMBLE = {"n_boot": 20, "areas": ["VISp", "VISl", "VISal", "VISrl", "VISam", "VISpm"],
            "session_type": "brain_observatory_1.1", "bin_size": 0.01, "window": [0.0, 0.25],
            "unit_qc": {"amplitude_cutoff_maximum": 0.1, "presence_ratio_minimum": 0.95,
                        "isi_violations_maximum": 0.5},
            "unit_threshold": 0.5, "median_threshold": 0.3, "specimen_quantile": 0.75,
            "running_threshold": 1.0, "run_pval_threshold": 0.05, "seed": 0}


@pytest.fixture(scope="module")
def allensdk_python(request):
    """The isolated interpreter with allensdk 2.16.2; skip when it cannot be had."""
    for candidate in (os.environ.get("ALLENSDK_PYTHON"), REPO / ".venv-allensdk/bin/python"):
        if candidate and Path(candidate).exists():
            return str(candidate)
    cache = getattr(request.config, "cache", None)             # absent under -p no:cacheprovider
    folder = Path(cache.mkdir("venv-allensdk")) if cache \
        else Path(request.getfixturevalue("tmp_path_factory").mktemp("venv-allensdk"))
    python = folder / "bin/python"
    if not (folder / "ok").exists():
        steps = [[sys.executable, "-m", "venv", "--clear", str(folder)],
                 [str(python), "-m", "pip", "install", "-q", *REQUIREMENTS]]
        for step in steps:
            try:
                done = subprocess.run(step, capture_output=True, text=True, timeout=1200)
            except subprocess.TimeoutExpired:
                pytest.skip(f"building the AllenSDK venv timed out: {' '.join(step)}")
            if done.returncode:
                pytest.skip("cannot build the isolated AllenSDK venv "
                            f"({' '.join(step[-3:])}): {done.stderr.strip()[-400:]}")
        (folder / "ok").write_text("built\n")
    return str(python)


def _run_backend(python, kind, cache_dir, report, settings):
    done = subprocess.run([python, str(SCRIPT), kind, str(cache_dir), str(report), "--settings",
                           json.dumps(settings)], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(Path(report).read_text()), done.stderr


def _allen_identifiers(folder):
    """Make the fixture sessions look like the Allen files to AllenSDK's pynwb 2.8.

    The NWB identifier becomes the session id (AllenSDK reads the id from there), and the
    electrodes table is typed as the DynamicTable of NWB <= 2.8 (the fixtures are written by
    pynwb 4 as NWB 2.9's ElectrodesTable, which pynwb 2.8 does not know).
    """
    for path in Path(folder).rglob("*_ses-*.nwb"):
        if "_probe-" in path.name:
            continue
        with h5py.File(path, "r+") as f:
            session = f["general/session_id"][()].decode()
            del f["identifier"]
            f["identifier"] = session
            electrodes = f["general/extracellular_ephys/electrodes"]
            electrodes.attrs["neurodata_type"] = "DynamicTable"
            electrodes.attrs["namespace"] = "hdmf-common"


def _warehouse_session_files(server, folder):
    """Warehouse routes AllenSDK's get_session_data asks: the EcephysNwb well-known file."""
    files = {}
    for (subject, session) in SESSIONS:
        body = (Path(folder) / f"sub-{subject}/sub-{subject}_ses-{session}.nwb").read_bytes()
        files[session] = server.add_file(f"/api/v2/well_known_file_download/5{session}", body)
    route = server.routes["/api/v2/data/query.json"]
    templates = route.json

    def rma(query, srv):
        criteria = query.get("criteria", "")
        if "EcephysNwb" in criteria:
            session = criteria.split("attachable_id$eq")[1].split("]")[0]
            msg = [{"id": int("5" + session), "download_link":
                    f"/api/v2/well_known_file_download/5{session}"}] if session in files else []
            return {"success": True, "start_row": 0, "num_rows": len(msg),
                    "total_rows": len(msg), "msg": msg}
        return templates(query, srv)
    route.json = rma


def test_ecephys_backend_fetches_what_the_cache_lacks_and_matches_dandi(allensdk_python,
                                                                        tmp_path):
    with FixtureServer() as server:
        serve_neuropixels(server, tmp_path / "upstream")
        _allen_identifiers(tmp_path / "upstream")
        # The same (re-identified) files as a DANDI listing, for the reference assembly.
        dandi = DandiFixture(server, dandiset="000022")
        for subject, session in SESSIONS:
            name = f"sub-{subject}/sub-{subject}_ses-{session}.nwb"
            dandi.add(name, (tmp_path / "upstream" / name).read_bytes())
        _warehouse_session_files(server, tmp_path / "upstream")
        data = {key: (tmp_path / "upstream" / f"sub-{key[0]}/sub-{key[0]}_ses-{key[1]}.nwb")
                .read_bytes() for key in SESSIONS}
        cache = write_ecephys_cache(tmp_path / "allensdk", data)
        for leftover in (cache / "session_800002").iterdir():      # not downloaded yet
            leftover.unlink()
        settings = {"templates_url": server.base, "allensdk_cache": str(cache),
                    "rma_timeout": 60, "sessions": None, "retries": 1}
        out = tmp_path / "raw"
        server.requests.clear()
        report, log = _run_backend(allensdk_python, "ecephys", out / "allensdk",
                                   out / "allensdk/fetched.json", settings)
        gets = [r.path for r in server.requests if r.method == "GET"]
        reference = download_allen_neuropixels(
            tmp_path / "dandi", dandiset="000022", version="draft", api_url=dandi.api,
            templates_url=server.base, retries=1, backoff=0.01, timeout=10)
    # AllenSDK took 800001 from its cache and fetched 800002 and the templates from 127.0.0.1.
    assert "/api/v2/well_known_file_download/5800001" not in gets
    assert gets.count("/api/v2/well_known_file_download/5800002") == 1
    assert sorted(s["session_id"] for s in report["sessions"]) == ["800001", "800002"]
    assert len(report["templates"]) == N_IMAGES
    assert (cache / "session_800002/session_800002.nwb").read_bytes() == data[("700002",
                                                                              "800002")]
    assert report["allensdk"] == "2.16.2"
    manifest = download_allen_neuropixels(out, dandiset="000021", version="draft",
                                          api_url="unused", templates_url=server.base,
                                          retries=0, backoff=0, timeout=1, backend="allensdk")
    files = json.loads(manifest.read_text())["files"]
    sessions = {f["path"]: f for f in files if f["role"] == "session"}
    assert set(sessions) == {f"sub-{s}/sub-{s}_ses-{e}.nwb" for s, e in SESSIONS}
    assert all(f["verified_by"] == ["allensdk", "hdf5", "session_id"] for f in sessions.values())
    xr.testing.assert_identical(assemble_allen_neuropixels(manifest, **ASSEMBLE),
                                assemble_allen_neuropixels(reference, **ASSEMBLE))


def test_ecephys_backend_reports_a_session_missing_from_the_warehouse(allensdk_python,
                                                                      tmp_path):
    with FixtureServer() as server:
        serve_neuropixels(server, tmp_path / "upstream")
        _allen_identifiers(tmp_path / "upstream")
        cache = write_ecephys_cache(tmp_path / "allensdk", {
            key: (tmp_path / "upstream" / f"sub-{key[0]}/sub-{key[0]}_ses-{key[1]}.nwb")
            .read_bytes() for key in SESSIONS})
        done = subprocess.run(
            [allensdk_python, str(SCRIPT), "ecephys", str(tmp_path / "x"),
             str(tmp_path / "x/fetched.json"), "--settings", json.dumps(
                 {"templates_url": server.base, "allensdk_cache": str(cache),
                  "sessions": [800001, 123]})], cwd=REPO, capture_output=True, text=True,
            timeout=300)
    assert done.returncode != 0
    assert "sessions [123] are not brain_observatory_1.1 sessions" in done.stderr
    assert not (tmp_path / "x/fetched.json").exists()


def _warehouse_records(records: list[dict]) -> list[dict]:
    """The fixture's experiment records with the fields AllenSDK's simplify step reads."""
    out = []
    for record in records:
        specimen = dict(record.get("specimen", {}))
        specimen["donor"] = {"external_donor_name": specimen.get("name"), "transgenic_lines": [
            {"name": "Cux2-CreERT2", "transgenic_line_type_name": "driver"}]}
        out.append({"imaging_depth": 275, "experiment_container": {"failed": False},
                    **record, "specimen": specimen})
    return out


def _warehouse_ophys(server, files: dict) -> None:
    """The RMA queries BrainObservatoryCache makes (``q=`` form): eye-mapping files (none) and
    each experiment's NWBOphys well-known file, served from `files` ({id: bytes})."""
    for eid, body in files.items():
        server.add_file(f"/api/v2/well_known_file_download/9{eid}", body)

    def rma(query, _server):
        q = query.get("q", "")
        msg = []
        if "NWBOphys" in q:
            eid = int(q.split("attachable_id$eq")[1].split("]")[0])
            msg = [{"id": int(f"9{eid}"), "attachable_id": eid,
                    "download_link": f"/api/v2/well_known_file_download/9{eid}"}]
        return {"success": True, "start_row": 0, "num_rows": len(msg), "total_rows": len(msg),
                "msg": msg}
    server.add_json("/api/v2/data/query.json", rma)


def test_ophys_backend_fetches_what_the_cache_lacks_and_matches_s3(allensdk_python, tmp_path):
    with FixtureServer() as server:
        settings = serve_ophys(server, tmp_path / "upstream")
        reference = download_allen_ophys(tmp_path / "s3", **settings)
        data = {eid: (tmp_path / "upstream" / f"{eid}.nwb").read_bytes()
                for eid, *_ in EXPERIMENTS}
        _warehouse_ophys(server, data)
        records = _warehouse_records(json.loads((tmp_path / "s3/ophys_experiments.json")
                                                .read_text()))
        cache = write_ophys_cache(tmp_path / "boc", {k: v for k, v in data.items() if k != 502},
                                  records)
        out = tmp_path / "raw"
        block = {**settings, "allensdk_cache": str(cache), "warehouse_url": server.base}
        server.requests.clear()
        report, _ = _run_backend(allensdk_python, "ophys", out / "allensdk",
                                 out / "allensdk/fetched.json", block)
        gets = [r.path for r in server.requests if r.path.startswith("/api/v2/well_known")]
    assert gets == ["/api/v2/well_known_file_download/9502"]
    assert sorted(int(e["experiment_id"]) for e in report["experiments"]) == [501, 502, 503]
    manifest = download_allen_ophys(out, **{**block, "backend": "allensdk"})
    files = json.loads(manifest.read_text())["files"]
    assert [f["id"] for f in files if f["role"] == "experiment"] == [501, 502, 503]
    assemble = {"n_boot": 20}
    xr.testing.assert_identical(assemble_allen_ophys(manifest, **assemble),
                                assemble_allen_ophys(reference, **assemble))


def test_cache_paths_match_allensdk_manifest_resolution(allensdk_python, tmp_path):
    """Peer check: our reading of an AllenSDK manifest gives AllenSDK's own paths."""
    from pipeline.data.fetch.allensdk_cache import open_cache

    cache = write_ecephys_cache(tmp_path / "c", {}, listed_only=[("1", "715093703")])
    code = ("import json, sys\n"
            "from allensdk.brain_observatory.ecephys.ecephys_project_cache import "
            "EcephysProjectCache as C\n"
            "c = C.from_warehouse(manifest=sys.argv[1])\n"          # fixed() is broken in 2.16.2
            "print(json.dumps([c.get_cache_path(None, k, *a) for k, a in "
            "[('sessions', ()), ('session_nwb', (715093703, 715093703)), "
            "('natural_scene', (117,))]]))\n")
    done = subprocess.run([allensdk_python, "-c", code, str(cache / "manifest.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = [os.path.normpath(p) for p in json.loads(done.stdout.strip().splitlines()[-1])]
    ours = open_cache(cache, dataset="t")
    assert theirs == [str(ours.path("sessions")),
                      str(ours.path("session_nwb", 715093703, 715093703)),
                      str(ours.path("natural_scene", 117))]
