"""The default anti-segregation maps (down blocks) and the records written before that default changed.

Record version 1 wrote ``"method": "mtl"`` for the full method with the reference's down+up maps; since
version 2 ``"mtl"`` takes the maps from the down blocks. An old record must still regenerate its own
image, and a batch folder of old samples must never be resumed under the same key with new settings.
"""

from __future__ import annotations

import json

from anagram.method import (
    DEFAULT_ANTI_SEGREGATION_LAYERS,
    REFERENCE_ANTI_SEGREGATION_LAYERS,
    AntiSegregation,
    MultiTask,
    resolve_method,
)
from anagram.outputs.records import RECORD_VERSION, SampleRecord, read_record
from anagram.runs.request import Request, request_from_record

PROMPTS = ["a digit six", "a digit nine"]


def test_the_default_takes_the_maps_from_the_down_blocks_and_the_reference_stays_by_name():
    assert AntiSegregation().layers == DEFAULT_ANTI_SEGREGATION_LAYERS == ("down",)
    assert AntiSegregation.reference().layers == REFERENCE_ANTI_SEGREGATION_LAYERS == ("down", "up")
    assert AntiSegregation.reference(interval=2) == AntiSegregation(layers=("down", "up"), interval=2)
    assert resolve_method("mtl").anti_segregation.layers == ("down",)
    # everything else of the reference is unchanged
    default, reference = AntiSegregation(), AntiSegregation.reference()
    assert (default.step_size, default.fraction, default.target, default.interval) == (
        reference.step_size, reference.fraction, reference.target, reference.interval)


def v1_record(method) -> dict:
    record = SampleRecord(prompts=PROMPTS, full_prompts=PROMPTS, views=[{"name": "identity"}, {"name": "rotate_180"}],
                          seed=3, num_inference_steps=30, guidance_scale=3.0,
                          model={"model": "digits", "location": "digits"}, method=method).to_dict()
    return {**record, "record_version": 1}


def test_a_version_1_mtl_record_is_read_as_the_reference_it_was_made_with(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(v1_record("mtl")))
    record = read_record(path)
    assert record.record_version == RECORD_VERSION
    request, seed = request_from_record(record)
    assert seed == 3
    assert request.method == MultiTask(anti_segregation=AntiSegregation.reference())
    assert request.method != resolve_method("mtl")


def test_version_1_records_of_other_methods_are_read_unchanged(tmp_path):
    for method in ("baseline", {"balance": False, "rectify": "product", "anti_segregation": None}):
        path = tmp_path / "old.json"
        path.write_text(json.dumps(v1_record(method)))
        assert read_record(path).method == method
    payload = v1_record("baseline")
    del payload["method"]
    path.write_text(json.dumps(payload))
    assert read_record(path).method == "baseline"


def test_the_key_hashes_every_setting_so_old_and_new_mtl_samples_never_share_a_folder_name():
    new = Request.build(PROMPTS, ["identity", "rotate_180"], method="mtl")
    old = Request.build(PROMPTS, ["identity", "rotate_180"],
                        method=MultiTask(anti_segregation=AntiSegregation.reference()).to_dict())
    assert new.method_record() == "mtl"  # records keep the short name
    assert new.key() != old.key()
    assert new.key() == Request.build(PROMPTS, ["identity", "rotate_180"], method=MultiTask().to_dict()).key()
    baseline = Request.build(PROMPTS, ["identity", "rotate_180"], method="baseline")
    assert baseline.method_settings() == "baseline"
