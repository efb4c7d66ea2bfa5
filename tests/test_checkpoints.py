import hashlib
import json

import pytest
import torch

from pipeline import checkpoints
from pipeline.checkpoints import (RUN_RECORD, CheckpointError, CheckpointWriter, capture,
                                  clear_stale, epoch_path, load_backbone, read_checkpoint,
                                  read_run_record, recorded_sha256, restore, resumable,
                                  run_epochs, settings_differences, verified_sha256,
                                  write_run_record)
from pipeline.io import save_torch
from pipeline.learning import make_rule
from pipeline.models import build_model, layer_outputs
from pipeline.objectives import ObjectiveNet

HEADER = {"model_name": "lenet-supervised-fa-s0", "arch": "lenet", "objective": "supervised",
          "rule": "fa", "n_classes": 3, "input_size": 16, "settings": {"lr": 0.1}}


def live_run(seed):
    """A small fa net after one SGD step, its optimizers and generators."""
    torch.manual_seed(seed)
    rule = make_rule("fa")
    net = rule.convert(ObjectiveNet(build_model("lenet", 3, 16)))
    optimizers = rule.optimizers(net, lr=0.1, momentum=0.9, weight_decay=0.0)
    rule.step(net, torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0]), optimizers)
    generators = (torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1))
    return net, optimizers, generators


def write_run(model_dir, epochs):
    net, optimizers, generators = live_run(0)
    with CheckpointWriter() as writer:
        for epoch in range(epochs + 1):
            writer.save(epoch_path(model_dir, epoch),
                        capture(net, optimizers, generators, header=HEADER, epoch=epoch,
                                metrics={"loss": 1.0}, alignment=[]))
    return net, optimizers, generators


def test_paths_and_epochs_of_a_run(tmp_path):
    assert epoch_path(tmp_path, 7) == tmp_path / "epoch_007.pt"
    with pytest.raises(FileNotFoundError, match="no checkpoints epoch_\\*.pt"):
        run_epochs(tmp_path)
    write_run(tmp_path, 2)
    assert run_epochs(tmp_path) == {e: epoch_path(tmp_path, e) for e in (0, 1, 2)}


def test_restore_puts_back_what_capture_took(tmp_path):
    net, optimizers, generators = write_run(tmp_path, 0)
    checkpoint = read_checkpoint(epoch_path(tmp_path, 0))
    other, other_optimizers, other_generators = live_run(1)
    restore(checkpoint, other, other_optimizers, other_generators)
    again = capture(other, other_optimizers, other_generators, header=HEADER, epoch=0,
                    metrics={"loss": 1.0}, alignment=[])
    assert again.keys() == checkpoint.keys()
    for key in ("state_dict", "heads"):
        assert all(torch.equal(again[key][k], checkpoint[key][k]) for k in checkpoint[key])
    assert all(torch.equal(a["momentum_buffer"], b["momentum_buffer"]) for a, b in
               zip(again["optimizer"]["state"].values(), checkpoint["optimizer"]["state"].values()))
    assert torch.equal(other_generators[0].get_state(), generators[0].get_state())
    assert torch.equal(other_generators[1].get_state(), generators[1].get_state())


def test_load_backbone_rebuilds_the_rule_layers_and_weights(tmp_path):
    net, _, _ = write_run(tmp_path, 0)
    backbone = load_backbone(read_checkpoint(epoch_path(tmp_path, 0)), "cpu")
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())
    assert backbone.state_dict().keys() == net.backbone.state_dict().keys()   # weight_fb too
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ours, theirs = layer_outputs(backbone, x), layer_outputs(net.backbone.eval(), x)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_resumable_stops_at_a_corrupt_file_and_drops_other_settings(tmp_path):
    write_run(tmp_path, 2)
    assert [c["epoch"] for c in resumable(tmp_path, HEADER, 2)] == [0, 1, 2]
    assert [c["epoch"] for c in resumable(tmp_path, HEADER, 1)] == [0, 1]
    path = epoch_path(tmp_path, 1)
    path.write_bytes(path.read_bytes()[:100])
    assert [c["epoch"] for c in resumable(tmp_path, HEADER, 2)] == [0]
    assert resumable(tmp_path, {**HEADER, "settings": {"lr": 0.2}}, 2) == []


def test_run_record_lists_exactly_the_run_epochs(tmp_path):
    write_run(tmp_path, 3)
    write_run_record(tmp_path, HEADER, 1, complete=True, seconds={0: 0.5, 1: 2.0})
    record = read_run_record(tmp_path)
    assert (record["epochs"], record["complete"]) == (1, True)
    assert record["seconds"] == {"0": 0.5, "1": 2.0}
    assert record["header"] == HEADER
    assert run_epochs(tmp_path) == {0: epoch_path(tmp_path, 0), 1: epoch_path(tmp_path, 1)}
    assert read_run_record(tmp_path / "elsewhere") is None


def test_clear_stale_keeps_this_runs_checkpoints_only(tmp_path, caplog):
    write_run(tmp_path, 3)
    (tmp_path / ".epoch_004.pt.tmp-00000000").write_bytes(b"x")
    with caplog.at_level("WARNING"):
        clear_stale(tmp_path, HEADER, epochs=1, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch_000.pt", "epoch_000.pt.sha256", "epoch_001.pt", "epoch_001.pt.sha256"]
    assert "removing epoch_002.pt, epoch_003.pt" in caplog.text and "epochs: 3 -> 1" in caplog.text


def test_clear_stale_names_the_differing_settings(tmp_path, caplog):
    write_run(tmp_path, 1)
    with caplog.at_level("WARNING"):
        clear_stale(tmp_path, {**HEADER, "settings": {"lr": 0.2}}, epochs=1, keep=0)
    assert not list(tmp_path.iterdir())
    assert "settings.lr: 0.1 -> 0.2" in caplog.text


def test_settings_differences_walks_nested_keys():
    assert settings_differences({"a": 1, "s": {"lr": 0.1, "x": (1,)}},
                                {"a": 1, "s": {"lr": 0.2, "x": [1], "y": 3}}) == [
        "s.lr: 0.1 -> 0.2", "s.y: '<absent>' -> 3"]


def test_verified_sha256_checks_the_checksum_returns_the_record_and_is_cached(tmp_path,
                                                                             monkeypatch):
    """A record with a checksum: the file is checked by the checksum, never hashed by sha256."""
    write_run(tmp_path, 0)
    path = epoch_path(tmp_path, 0)
    hashed, checked = [], []
    sha256, checksum = hashlib.sha256, checkpoints.file_checksum
    monkeypatch.setattr(hashlib, "sha256", lambda *a: hashed.append(1) or sha256(*a))
    monkeypatch.setattr(checkpoints, "file_checksum", lambda *a: checked.append(1) or checksum(*a))
    digest = verified_sha256(path)
    assert digest == json.loads(path.with_name("epoch_000.pt.sha256").read_text())["sha256"]
    read_checkpoint(path)
    assert verified_sha256(path) == digest and (len(checked), len(hashed)) == (1, 0)  # once
    checkpoints.forget_verified()
    assert verified_sha256(path) == digest and len(checked) == 2    # a fresh job's first read
    assert RUN_RECORD == "run.json"


def test_a_record_without_checksum_is_checked_by_its_sha256(tmp_path):
    """Records written before the checksum was recorded: the file is hashed and compared."""
    write_run(tmp_path, 0)
    path, sidecar = epoch_path(tmp_path, 0), tmp_path / "epoch_000.pt.sha256"
    record = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({"sha256": record["sha256"]}))
    checkpoints.forget_verified()
    assert verified_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps({"sha256": "0" * 64}))
    checkpoints.forget_verified()
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint: its sha256 is .* says "
                                              r"0000000000000000…"):
        verified_sha256(path)


def test_recorded_sha256_reads_the_record_and_checks_the_size(tmp_path):
    write_run(tmp_path, 0)
    path, sidecar = epoch_path(tmp_path, 0), tmp_path / "epoch_000.pt.sha256"
    record = json.loads(sidecar.read_text())
    assert recorded_sha256(path) == record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps({"sha256": record["sha256"], "size": record["size"]}))
    assert recorded_sha256(path) is None               # no checksum to check the bytes by
    sidecar.unlink()
    assert recorded_sha256(path) is None               # no record
    sidecar.write_text(json.dumps({**record, "size": record["size"] + 1}))
    with pytest.raises(CheckpointError, match=rf"epoch_000\.pt: corrupt checkpoint: "
                                              rf"{record['size']} bytes, its record .* says"):
        recorded_sha256(path)


def test_capture_writes_the_same_bytes_from_a_restored_run(tmp_path):
    """Equal strings are one object in a checkpoint, so a resumed run's bytes match."""
    net, optimizers, generators = write_run(tmp_path, 0)
    other, other_optimizers, other_generators = live_run(1)
    restore(read_checkpoint(epoch_path(tmp_path, 0)), other, other_optimizers, other_generators)
    again = capture(other, other_optimizers, other_generators, header=HEADER, epoch=0,
                    metrics={"loss": 1.0}, alignment=[])
    save_torch(again, tmp_path / "again.pt")
    assert (tmp_path / "again.pt").read_bytes() == epoch_path(tmp_path, 0).read_bytes()


def _partial(net, optimizers, generators, epoch, batch, header=HEADER):
    state = capture(net, optimizers, generators, header=header, epoch=epoch, metrics={},
                    alignment=[])
    state["position"] = {"epoch": epoch, "batch": batch, "order": torch.arange(8),
                         "loss_sum": 0.5, "accuracy_sum": 0.25}
    state["torch_rng"] = torch.get_rng_state()
    return state


def test_resume_folder_survives_the_model_folder_and_restores_it(tmp_path):
    from pipeline.checkpoints import recover_epochs, remove_resume_dir, resume_dir, save_partial

    model_dir = tmp_path / "lenet-supervised-fa-s0"
    net, optimizers, generators = write_run(model_dir, 1)
    write_run_record(model_dir, HEADER, 3, complete=False, seconds={0: 1.0, 1: 2.0})
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    path = save_partial(model_dir, _partial(net, optimizers, generators, 2, 5))
    assert path == resume_dir(model_dir) / "partial_002_000005.pt"
    assert resume_dir(model_dir).parent == model_dir.parent       # beside, not inside
    for name in ("epoch_000.pt", "epoch_001.pt"):                  # linked, not copied
        assert (resume_dir(model_dir) / name).stat().st_ino == (model_dir / name).stat().st_ino

    import shutil
    shutil.rmtree(model_dir)
    restored = recover_epochs(model_dir)
    assert sorted(p.name for p in restored) == sorted(before)
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    assert len(resumable(model_dir, HEADER, 3)) == 2
    remove_resume_dir(model_dir)
    assert not resume_dir(model_dir).exists() and recover_epochs(model_dir) == []


def test_latest_partial_keeps_two_and_skips_damage_and_other_settings(tmp_path, caplog):
    from pipeline.checkpoints import latest_partial, resume_dir, save_partial

    model_dir = tmp_path / "m"
    net, optimizers, generators = write_run(model_dir, 1)
    for batch in (3, 7, 9):
        save_partial(model_dir, _partial(net, optimizers, generators, 2, batch))
    partials = sorted(resume_dir(model_dir).glob("partial_*.pt"))
    assert [p.name for p in partials] == ["partial_002_000007.pt", "partial_002_000009.pt"]
    assert latest_partial(model_dir, HEADER, 2)["position"]["batch"] == 9
    assert latest_partial(model_dir, HEADER, 3) is None            # another epoch
    assert latest_partial(model_dir, {**HEADER, "settings": {"lr": 0.2}}, 2) is None
    partials[-1].write_bytes(partials[-1].read_bytes()[:1000])      # truncated
    assert latest_partial(model_dir, HEADER, 2)["position"]["batch"] == 7
    assert "partial_002_000009.pt unreadable" in caplog.text


@pytest.mark.parametrize("epochs, every, expected", [
    (5, 1, [0, 1, 2, 3, 4, 5]), (5, 2, [0, 2, 4, 5]), (6, 3, [0, 3, 6]), (2, 5, [0, 2]),
    (0, 3, [0]), (100, 5, list(range(0, 101, 5)))])
def test_checkpoint_epochs_are_zero_every_kth_and_the_last(epochs, every, expected):
    from pipeline.checkpoints import checkpoint_epochs

    assert checkpoint_epochs(epochs, every) == expected


def test_a_checkpoint_period_sets_what_the_run_lists_resumes_and_keeps(tmp_path):
    """Under checkpoint_every = 2 of 5 epochs the run holds epochs 0, 2, 4, 5: run_epochs lists
    exactly these, resumable walks them, and clear_stale drops the others."""
    header = {**HEADER, "settings": {"lr": 0.1, "checkpoint_every": 2}}
    net, optimizers, generators = live_run(0)
    for epoch in range(6):                        # every epoch on disk: 1 and 3 are stray
        save_torch(capture(net, optimizers, generators, header=header, epoch=epoch,
                           metrics={"loss": 1.0}, alignment=[]), epoch_path(tmp_path, epoch))
    assert [c["epoch"] for c in resumable(tmp_path, header, 5)] == [0, 2, 4, 5]
    write_run_record(tmp_path, header, 5, complete=False, seconds={})
    clear_stale(tmp_path, header, epochs=5, keep=2)             # 0 and 2 are intact
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["epoch_000.pt", "epoch_002.pt"]
    write_run_record(tmp_path, header, 5, complete=True, seconds={})
    with pytest.raises(FileNotFoundError, match=r"epoch_004.pt: missing.*a checkpoint every 2"):
        run_epochs(tmp_path)
    write_run_record(tmp_path, header, 2, complete=True, seconds={})
    assert run_epochs(tmp_path) == {0: epoch_path(tmp_path, 0), 2: epoch_path(tmp_path, 2)}


def test_capture_stores_skipped_epochs_only_when_there_are_some(tmp_path):
    net, optimizers, generators = live_run(0)
    kw = dict(header=HEADER, epoch=2, metrics={"loss": 1.0}, alignment=[])
    assert "skipped" not in capture(net, optimizers, generators, **kw)
    row = {"epoch": 1, "metrics": {"loss": 2.0}, "alignment": [{"epoch": 1, "layer": "fc"}]}
    assert capture(net, optimizers, generators, **kw, skipped=[row])["skipped"] == [row]


def test_latest_partial_of_a_later_epoch_needs_the_pending_epochs_between(tmp_path):
    """With epoch checkpoints up to 1, a partial in epoch 3 continues the run only if it holds
    the rows of epoch 2 (trained, not checkpointed); one of an earlier epoch never does."""
    from pipeline.checkpoints import latest_partial, resume_dir, save_partial

    model_dir = tmp_path / "m"
    net, optimizers, generators = write_run(model_dir, 1)
    state = _partial(net, optimizers, generators, 3, 4)
    state["pending"] = [{"epoch": 2, "metrics": {"loss": 0.5}, "alignment": []}]
    save_partial(model_dir, state)
    assert latest_partial(model_dir, HEADER, 2)["pending"] == state["pending"]
    assert latest_partial(model_dir, HEADER, 3) is None            # epoch 2 was pending
    assert latest_partial(model_dir, HEADER, 1) is None            # epoch 1 is not in pending
    for path in resume_dir(model_dir).glob("partial_*"):
        path.unlink()
    save_partial(model_dir, _partial(net, optimizers, generators, 1, 4))
    assert latest_partial(model_dir, HEADER, 2) is None            # behind the checkpoints
