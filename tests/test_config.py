"""RunConfig: presets validate, errors name the file and the field, overrides, YAML round trip."""

from __future__ import annotations

import pytest
import yaml

from outfitrec.train.config import (
    ConfigError,
    RunConfig,
    config_from_dict,
    list_presets,
    load_config,
    parse_override,
)


def _write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_every_shipped_preset_round_trips_and_names_its_role():
    """Each preset loads, survives its own YAML dump unchanged, and is what its name says (role, distillation)."""
    names = list_presets()
    assert {"fmnist_teacher", "fmnist_student", "tiny_teacher", "tiny_student"} <= set(names)
    for name in names:
        cfg = load_config(name)
        again = config_from_dict(yaml.safe_load(cfg.to_yaml()), source=name)
        assert again == cfg, name
        assert cfg.role == ("teacher" if name.endswith("_teacher") else "student"), name
        distilled = name.endswith("_distilled")
        assert (cfg.loss.teacher is not None) == distilled and (cfg.loss.kind != "softmax") == distilled, name


def test_every_field_is_documented():
    def walk(model_cls, prefix=""):
        for name, field in model_cls.model_fields.items():
            assert field.description, f"{prefix}{name} has no description"
            sub = field.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                walk(sub, f"{prefix}{name}.")

    walk(RunConfig)


def test_unknown_key_names_file_and_key(tmp_path):
    path = _write(tmp_path, "data:\n  path: x\n  negativs: 3\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: unknown key 'data\.negativs'"):
        load_config(path)


def test_wrong_type_names_file_and_field(tmp_path):
    path = _write(tmp_path, "data:\n  path: x\noptim:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: field 'optim\.epochs'.*'many'"):
        load_config(path)
    path = _write(tmp_path, "data:\n  path: x\nmodel:\n  size: huge\n")
    with pytest.raises(ConfigError, match=r"field 'model\.size'"):
        load_config(path)


def test_missing_data_path_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'data'"):
        load_config(_write(tmp_path, "name: x\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_distillation_needs_a_teacher():
    with pytest.raises(ConfigError, match="needs loss.teacher"):
        config_from_dict({"data": {"path": "x"}, "loss": {"kind": "fnd"}})
    cfg = config_from_dict({"data": {"path": "x"}, "loss": {"kind": "fnd", "teacher": "runs/t"}})
    assert cfg.loss.kind == "fnd"


def test_threshold_aggregate_forms():
    for agg in ("mean", "min", "median", "q0.25", "q1"):
        assert config_from_dict({"data": {"path": "x"}, "loss": {"threshold": agg}}).loss.threshold == agg
    with pytest.raises(ConfigError, match="loss.threshold"):
        config_from_dict({"data": {"path": "x"}, "loss": {"threshold": "max"}})


def test_overrides_apply_and_are_checked(tmp_path):
    path = _write(tmp_path, "data:\n  path: x\n")
    cfg = load_config(path, ["optim.lr=0.01", "model.size=student", "loss.teacher=null", "contrastive.enabled=true"])
    assert cfg.optim.lr == 0.01 and cfg.model.size == "student" and cfg.contrastive.enabled
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    with pytest.raises(ConfigError, match=r"--set optim\.lrr=1.*unknown key 'optim\.lrr'"):
        load_config(path, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(path, ["optim.lr"])
    with pytest.raises(ConfigError, match="is not a section"):
        load_config(path, ["data.path.x=1"])


def test_resolved_yaml_round_trips():
    cfg = load_config("fmnist_student", ["loss.alpha=-0.5"])
    again = config_from_dict(__import__("yaml").safe_load(cfg.to_yaml()), "resolved")
    assert again == cfg
