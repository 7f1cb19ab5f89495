
import pytest
from conftest import ROOT

from udasa_ray.cli import main
from udasa_ray.config import Config, ConfigError, load_config, parse_override
from udasa_ray.runs import UNREAD_AS, section_hash

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_defaults_are_the_offline_default():
    """The built-in config runs with no network: every model and data source it names ships in a
    package (bundled:) or is a lexicon scorer, and no endpoint is configured."""
    cfg = load_config().to_dict()
    named = {"models.policy": cfg["models"]["policy"], "data.source": cfg["data"]["source"],
             "scoring.semantic.model": cfg["scoring"]["semantic"]["model"],
             "scoring.factual.model": cfg["scoring"]["factual"]["model"],
             **{f"eval.{k}": v for k, v in cfg["eval"].items() if k.endswith("_source")}}
    assert all(v.startswith("bundled:") for v in named.values()), named
    assert cfg["scoring"]["value"]["backend"] == "profanity" and cfg["eval"]["judge"]["backend"] == "offline"
    assert cfg["scoring"]["value"]["endpoint"] is None and cfg["generation"]["backend"] == "hf"


def test_every_rule_names_a_real_key():
    """A rule's key is what its error message names: it must exist in the schema."""
    import operator

    from udasa_ray.config.validate import RULES

    cfg = load_config()
    for section, rules in RULES.items():
        for key, holds, _ in rules:
            operator.attrgetter(key)(getattr(cfg, section))  # AttributeError on a typo
            assert holds(getattr(cfg, section)), f"{section}.{key}: the default breaks its own rule"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_recipes_load(path):
    assert isinstance(load_config(path), Config)


def test_recipes_exist():
    assert {p.name for p in CONFIGS} >= {"tiny-cpu.yaml", "llama7b.yaml", "llama30b.yaml"}
    assert load_config(ROOT / "configs" / "llama7b.yaml").generation.backend == "vllm"
    assert load_config(ROOT / "configs" / "tiny-cpu.yaml").generation.backend == "hf"


def test_dotted_overrides_are_typed():
    cfg = load_config(None, ["generation.n=7", "generation.temperature=0.5", "curriculum.thresholds=[0.3, 0.6]",
                             "data.limit=null", "generation.vllm.replicas=3"])
    assert cfg.generation.n == 7 and cfg.generation.temperature == 0.5
    assert cfg.curriculum.thresholds == [0.3, 0.6] and cfg.data.limit is None
    assert cfg.generation.vllm.replicas == 3


def test_int_is_accepted_for_float():
    assert load_config(None, ["generation.temperature=1"]).generation.temperature == 1.0


@pytest.mark.parametrize(
    "override, key",
    [
        ("generation.nn=5", "generation.nn: unknown key"),
        ("nope.x=1", "nope: unknown key"),
        ("generation.n=five", "generation.n: expected int"),
        ("generation.n=1.5", "generation.n: expected int"),
        ("generation.n=true", "generation.n: expected int"),
        ("generation.backend=tpu", "generation.backend: must be one of"),
        ("generation.n=1", "generation.n: must be >= 2"),
        ("curriculum.thresholds=[0.7, 0.4]", "curriculum.thresholds: must be increasing"),
        ("curriculum.thresholds=[0.5, 0.5]", "curriculum.thresholds: must be increasing"),
        ("curriculum.thresholds=[0.1, 0.2, 0.3, 0.4]", "curriculum.thresholds: must be at most 3"),
        ("train.lr=-1e-6", "train.lr: must be > 0"),
        ("train.lr_stage1=0", "train.lr_stage1: must be > 0"),
        ("train.ld_alpha=1.5", "train.ld_alpha: must be in [0, 1]"),
        ("train.max_failures=-2", "train.max_failures: must be >= 0, or -1 for no limit"),
        ("train.lora={enabled: true, r: 0}", "train.lora.r: must be >= 1"),
        ("train.lora={enabled: true, dropout: 1.0}", "train.lora.dropout: must be in [0, 1)"),
        ("train.lora={enabled: true, target_modules: []}", "train.lora.target_modules: must be at least one module"),
        ("train.lora.target_modules=[q_proj, 3]", "train.lora.target_modules[1]: expected str"),
        ("generation.top_p=1.5", "generation.top_p: must be in (0, 1]"),
        ("curriculum.thresholds=[0.1, x]", "curriculum.thresholds[1]: expected float"),
        ("scoring.fusion_weights=[1, a, 2]", "scoring.fusion_weights[1]: expected float"),
        ("scoring.fusion_weights=[1, 2]", "scoring.fusion_weights: must be three non-negative weights"),
        ("generation.actor_resources={GPU: many}", "generation.actor_resources.GPU: expected float"),
        ("eval.judge.backend=llm", "eval.judge.base_url: must be"),
        ("generation.rain.min_searches=9", "generation.rain.min_searches: must be >= 1 and <= rain.max_searches"),
        ("generation.rain.question=Judge {response}", "generation.rain.question: must be a text containing {prompt}"),
        ("eval.decoding=beam", "eval.decoding: must be one of"),
        ("train.loss_type=[dpo]", "train.loss_type: must be one or more distinct of sigmoid, hinge, ipo"),
        ("train.loss_type=[]", "train.loss_type: must be one or more"),
        ("train.loss_weights=[1.0, 0.5]", "train.loss_weights: must be null, or one non-negative weight per loss"),
        ("train.label_smoothing=0.5", "train.label_smoothing: must be in [0, 0.5)"),
        ("train.loss_type=[exo_pair]", "train.label_smoothing: must be > 0 for the exo_pair loss"),
        ("train.stage_loss_types=[[ipo], [bogus], [sigmoid]]", "train.loss_type: must be one or more distinct"),
        ("train.stage_loss_types=[[ipo], [hinge]]", "train.stage_loss_types: must have one list per curriculum"),
        ("generation=3", "generation: expected a mapping"),
        ("generation.n", "generation.n: an override is key=value"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert key in str(e.value)


@pytest.mark.parametrize("overrides, message", [
    (["eval.decoding=rain", "generation.backend=vllm"], "eval.decoding: rain runs on the hf generation backend"),
    (["generation.decoding=rain", "generation.mode=listwise"], "generation.decoding: must be sample with the vllm"),
])
def test_rain_needs_the_hf_backend_and_one_answer_a_request(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("generation:\n  n: 5\n  sampler: fancy\n")
    with pytest.raises(ConfigError, match="generation.sampler: unknown key"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_parse_override_nests():
    assert parse_override("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}


def test_cli_config_error_exits_2(tmp_path, capsys):
    assert main(["generate", "--run-dir", str(tmp_path), "generation.n=1"]) == 2
    err = capsys.readouterr().err
    assert "generation.n" in err and "must be >= 2" in err
    assert main(["ingest", "--run-dir", str(tmp_path), "train.lr=-0.1"]) == 2
    assert "train.lr" in capsys.readouterr().err


def test_section_hash_tracks_only_named_sections():
    a, b = load_config(), load_config(None, ["train.lr=1e-5"])
    assert section_hash(a, "generation") == section_hash(b, "generation")
    assert section_hash(a, "train") != section_hash(b, "train")


def test_placement_only_fields_do_not_change_step_hashes():
    base = load_config(None)
    placed = load_config(None, ["generation.actor_resources={accelerator_type:A10G: 1}"])
    assert placed.generation.actor_resources == {"accelerator_type:A10G": 1.0}
    assert section_hash(placed, "generation") == section_hash(base, "generation")
    assert section_hash(load_config(None, ["generation.n=3"]), "generation") != section_hash(base, "generation")


def test_a_generator_redoes_generation_and_its_absence_keeps_old_hashes():
    """models.generator came after runs existed: unset, the models hash is what it was without the
    field (a finished run stays finished); set, generation depends on it."""
    import hashlib
    import json

    base = load_config(None)
    old = base.to_dict()["models"]
    del old["generator"]
    assert section_hash(base, "models") == hashlib.sha256(json.dumps({"models": old}, sort_keys=True).encode()
                                                          ).hexdigest()[:16]
    assert section_hash(load_config(None, ["models.generator=huggyllama/llama-30b"]), "models") != \
        section_hash(base, "models")


def test_rain_gcg_and_judge_engine_settings_hash_only_where_they_are_read():
    """RAIN's budget (generation.rain) changes the generation hash only when decoding is rain; the vLLM engine's
    (generation.vllm) only on the vllm backend; GCG's and the vLLM judge's only with the robust task or the vllm
    judge on. At their defaults the fields added since
    (these, scoring.stream; scoring.actor_resources never counts) leave the hashes as they were before
    them, so finished runs stay finished."""
    import hashlib
    import json

    base = load_config(None)
    old = base.to_dict()
    for section, key in (("generation", "rain"), ("generation", "decoding"), ("generation", "actor_resources"),
                         ("scoring", "stream"), ("scoring", "actor_resources"), ("scoring", "max_error_rate"),
                         ("eval", "gcg"), ("eval", "robust_source"), ("eval", "decoding")):
        del old[section][key]
    del old["eval"]["judge"]["vllm"]
    old["generation"]["vllm"] = UNREAD_AS["generation", "vllm"][1]  # the vllm settings as every run had them
    for section in ("generation", "scoring", "eval"):
        assert section_hash(base, section) == hashlib.sha256(json.dumps({section: old[section]}, sort_keys=True)
                                                             .encode()).hexdigest()[:16]
    same = [["generation.rain.candidates=5"], ["eval.gcg.steps=3"], ["eval.judge.vllm.replicas=3"],
            ["generation.vllm.dtype=float32"]]
    for overrides in same:
        cfg = load_config(None, overrides)
        assert (section_hash(cfg, "generation"), section_hash(cfg, "eval")) == \
            (section_hash(base, "generation"), section_hash(base, "eval")), overrides
    vllm = load_config(None, ["generation.backend=vllm"])
    assert section_hash(load_config(None, ["generation.backend=vllm", "generation.vllm.dtype=float32"]),
                        "generation") != section_hash(vllm, "generation")
    rain = load_config(None, ["generation.decoding=rain"])
    assert section_hash(rain, "generation") != section_hash(base, "generation")
    assert section_hash(load_config(None, ["generation.decoding=rain", "generation.rain.candidates=5"]),
                        "generation") != section_hash(rain, "generation")
    robust = load_config(None, ['eval.tasks=["harmless", "robust"]'])
    assert section_hash(load_config(None, ['eval.tasks=["harmless", "robust"]', "eval.gcg.steps=3"]), "eval") != \
        section_hash(robust, "eval")
