"""Load and check an experiment config against schemas/config.schema.yaml.

The Snakefile and every ``sparks`` command call :func:`load_config` / :func:`check_config`, so a
bad key fails the same way, in one line naming the key and the fix, before any job runs.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Self

import jsonschema
import yaml

from sparks import layout, registry
from sparks.methods import attribution_names, method_names, training_method
from sparks.sources import check_model_source, is_hub_id

_PACKAGE_DIR = Path(__file__).resolve().parent
# Installed wheels carry the schema inside the package; a source checkout has it in schemas/.
_SCHEMA_CANDIDATES = (_PACKAGE_DIR / "config.schema.yaml", _PACKAGE_DIR.parents[1] / "schemas" / "config.schema.yaml")


class ConfigError(ValueError):
    """A config problem, phrased as one line that names the key and the fix."""


@cache
def schema() -> dict[str, Any]:
    for path in _SCHEMA_CANDIDATES:
        if path.is_file():
            return yaml.safe_load(path.read_text())
    raise FileNotFoundError(f"config schema not found in any of {[str(p) for p in _SCHEMA_CANDIDATES]}")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file, fill defaults and check it; raises ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass --config with the path of your experiment YAML")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from err
    return check_config(raw, source=str(path))


def check_config(raw: Any, source: str = "the config") -> dict[str, Any]:
    """Return a defaults-filled copy of ``raw`` or raise ConfigError on the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a mapping of keys (experiment, tasks, runs, ...), got {type(raw).__name__}")
    config = copy.deepcopy(raw)
    validator_cls = jsonschema.validators.validator_for(schema())
    validator = validator_cls(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError(_describe(errors[0], source))
    _check_replicate_seeds(config, source)
    _fill_defaults(config, schema(), schema())
    if config["attribute"]["exact"] == "auto":  # exact per-head effects are cheap on an embedded base only
        config["attribute"]["exact"] = "on" if config["base"]["source"] == "embedded" else "off"
    _check_semantics(config, source)
    _check_stage_settings(config, source)
    return _expand_replicates(config)


def _check_replicate_seeds(raw: dict[str, Any], source: str) -> None:
    """``seeds`` replaces ``seed`` and needs a run that trains (checked before defaults fill ``seed``);
    base seeds need an embedded base and exclude runs' seeds."""
    if (raw.get("teacher") or {}).get("seeds") is not None:
        raise ConfigError(f"config key teacher.seeds in {source}: only the base is replicated; remove it")
    if (raw.get("base") or {}).get("seeds") is not None:
        if (raw["base"].get("source") or "embedded") != "embedded":
            raise ConfigError(
                f"config key base.seeds in {source}: base replicates are pre-trained here, so base.source must be "
                "embedded; for a hub or local base, replicate the runs instead (runs.<name>.seeds)"
            )
        replicated = [name for name, run in raw["runs"].items() if run.get("seeds") is not None]
        if replicated:
            raise ConfigError(
                f"config keys base.seeds and runs.{replicated[0]}.seeds in {source}: an experiment replicates either "
                "the base or the runs on one base; remove one of them (or make two experiments)"
            )
    for name, run in raw["runs"].items():
        if run.get("seeds") is None:
            continue
        if "seed" in run:
            raise ConfigError(
                f"config key runs.{name} in {source} sets both seed and seeds; seeds lists every replicate's "
                "trainer seed, so remove seed"
            )
        if run["method"] == registry.GIVEN:
            raise ConfigError(
                f"config key runs.{name}.seeds in {source}: a models run names checkpoints that exist and "
                "trains nothing to replicate; remove seeds (replicates of a run trained elsewhere are models runs of their own)"
            )


def _expand_replicates(config: dict[str, Any]) -> dict[str, Any]:
    """A run with ``seeds`` becomes one run per seed (``layout.replicate``), each with its
    ``seed``, ``seeds`` null and ``replicate_of`` the run's name; with ``base.seeds`` every run
    that trains becomes one run per base (``layout.base_replicate``), each with its ``base_seed``.
    ``config["replicates"]`` maps each replicated run to its replicates' names, in seed order;
    ``config["claim_groups"]`` maps every run whose claims are tested (rules replicates and
    claims) to its replicates: a replicated run's, or an unreplicated run alone.
    Every run gets ``replicate_of`` and ``base_seed`` (None when it is not a replicate)."""
    runs: dict[str, Any] = {}
    groups: dict[str, list[str]] = {}
    base_seeds = config["base"]["seeds"]
    for name, run in config["runs"].items():
        run = {**run, "replicate_of": None, "base_seed": None}
        if base_seeds is not None and run["method"] != registry.GIVEN:
            groups[name] = [layout.base_replicate(name, seed) for seed in base_seeds]
            for seed, replicate in zip(base_seeds, groups[name]):
                runs[replicate] = {**run, "replicate_of": name, "base_seed": seed}
        elif run["seeds"] is not None:
            groups[name] = [layout.replicate(name, seed) for seed in run["seeds"]]
            for seed, replicate in zip(run["seeds"], groups[name]):
                runs[replicate] = {**run, "seed": seed, "seeds": None, "replicate_of": name}
        else:
            runs[name] = run
    alone = {name: [name] for name, run in runs.items() if run["replicate_of"] is None}
    return {**config, "runs": runs, "replicates": groups, "claim_groups": {**groups, **alone}}


def base_roles(config: dict[str, Any]) -> list[str]:
    """The prepared base models: ``base``, or one per base replicate (base.seeds)."""
    seeds = config["base"]["seeds"]
    return ["base"] if seeds is None else [layout.base_replicate("base", seed) for seed in seeds]


def base_role(config: dict[str, Any], run: str) -> str:
    """The prepared base model a run trains from."""
    seed = config["runs"][run]["base_seed"]
    return "base" if seed is None else layout.base_replicate("base", seed)


def model_section(config: dict[str, Any], role: str) -> tuple[dict[str, Any], int]:
    """The config section of a prepared model's role (base, teacher or a base replicate) and the
    seed its pre-training adds to the experiment's."""
    if role in ("base", "teacher"):
        return config[role], 0
    for seed in config["base"]["seeds"] or ():
        if role == layout.base_replicate("base", seed):
            return config["base"], seed
    raise ValueError(
        f"model role {role!r} is not base, teacher or one of base.seeds' replicates ({', '.join(base_roles(config))})"
    )


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        target = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _fill_defaults(value: Any, node: dict[str, Any], root: dict[str, Any]) -> None:
    node = _resolve(node, root)
    if not isinstance(value, dict):
        return
    for key, sub in node.get("properties", {}).items():
        sub = _resolve(sub, root)
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            _fill_defaults(value[key], sub, root)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        for key in value:
            if key not in node.get("properties", {}):
                _fill_defaults(value[key], extra, root)


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(error: jsonschema.ValidationError, source: str) -> str:
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(_resolve(error.schema, schema()).get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = f"{key}." if error.absolute_path else ""
        return f"unknown config key {where}{unknown[0]} in {source}; allowed keys here: {', '.join(allowed)} (check the spelling)"
    if error.validator == "required":
        missing = error.message.split("'")[1]
        where = f"{key}." if error.absolute_path else ""
        return f"config key {where}{missing} is missing in {source}; add it (see schemas/config.schema.yaml)"
    if error.validator == "enum":
        return f"config key {key} = {error.instance!r} in {source} is not one of {error.validator_value}; use one of those"
    if error.validator == "type":
        return f"config key {key} = {error.instance!r} in {source} must be of type {error.validator_value}; fix its value"
    if error.validator == "propertyNames":
        return f"config name {error.instance!r} under {key} in {source} must use only letters and digits; rename it"
    return f"config key {key} in {source}: {error.message}; fix its value (see schemas/config.schema.yaml)"


def _check_model_source(key: str, model: dict[str, Any], source: str) -> None:
    src = model["source"]
    tokenizer = model.get("tokenizer")
    if tokenizer is not None:
        if src != "embedded":
            raise ConfigError(
                f"config key {key}.tokenizer in {source} applies to embedded models only ({key}.source = {src!r} "
                "brings its own tokenizer); remove it or set source: embedded"
            )
        if not is_hub_id(tokenizer) and not (Path(tokenizer).expanduser() / "tokenizer.json").is_file():
            raise ConfigError(
                f"config key {key}.tokenizer = {tokenizer!r} in {source}: no tokenizer.json in that folder; "
                'give a local tokenizer folder or a hub id such as "Qwen/Qwen2.5-Math-1.5B"'
            )
    if src == "embedded" or is_hub_id(src):
        return
    path = Path(src).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"config key {key}.source = {src!r} in {source}: no model folder with a config.json at {path}; "
            'give an existing local model folder, a hub id such as "Qwen/Qwen2.5-Math-1.5B", or "embedded"'
        )


def _check_semantics(config: dict[str, Any], source: str) -> None:
    for role in ("base", "teacher"):
        model = config[role]
        _check_model_source(role, model, source)
        if role == "base":  # the attributed model's architecture (a teacher only writes text)
            check_model_source(model["source"], f"config key base.source = {model['source']!r} in {source}", ConfigError)
        shape = model["shape"]
        if shape["hidden_size"] % shape["n_heads"] or shape["n_heads"] % shape["n_kv_heads"]:
            raise ConfigError(
                f"config key {role}.shape in {source}: hidden_size ({shape['hidden_size']}) must be divisible by "
                f"n_heads ({shape['n_heads']}) and n_heads by n_kv_heads ({shape['n_kv_heads']}); change them"
            )
    for name, task in config["tasks"].items():
        if task["source"] != "synthetic" and task["path"] is None:
            continue
        if task["source"] != "synthetic" and not is_hub_id(task["path"]) and not Path(task["path"]).exists():
            raise ConfigError(
                f"config key tasks.{name}.path = {task['path']!r} in {source} does not exist; "
                "give a local dataset folder or a hub dataset id"
            )
    for name, run in config["runs"].items():
        if run["task"] not in config["tasks"]:
            raise ConfigError(
                f"config key runs.{name}.task = {run['task']!r} in {source} names no task; "
                f"use one of: {', '.join(config['tasks'])}"
            )
        unknown = [t for t in run["evaluate_on"] or () if t not in config["tasks"]]
        if unknown:
            raise ConfigError(
                f"config key runs.{name}.evaluate_on names {unknown[0]!r} in {source}, which is not under tasks; "
                f"use some of: {', '.join(config['tasks'])}"
            )
        _check_train_heads(name, run, config, source)
        _check_head_policy(name, run, config, source)
        if (run["method"] == registry.GIVEN) != (run["checkpoints"] is not None):
            raise ConfigError(
                f"config key runs.{name}.checkpoints in {source}: "
                + (
                    "a run with method models needs its checkpoints (a folder of checkpoint-N/, or a list of {step, source})"
                    if run["method"] == registry.GIVEN
                    else f"only runs with method models name their checkpoints (this one trains: {run['method']}); remove it"
                )
            )
        if run["method"] == registry.GIVEN:
            from sparks.sources import given_checkpoints

            try:
                given_checkpoints(run["checkpoints"], f"runs.{name}.checkpoints")
            except ValueError as err:
                raise ConfigError(f"{err} (in {source})") from None
            continue
        if run["save_steps"] > run["max_steps"]:
            raise ConfigError(
                f"config key runs.{name}.save_steps = {run['save_steps']} in {source} exceeds max_steps = "
                f"{run['max_steps']}; lower save_steps or raise max_steps"
            )
        _check_difficulties(f"runs.{name}.difficulties", run["difficulties"], run["task"], config["tasks"][run["task"]])
        _check_trainer(name, run, source)
        if run["method"] == "distill":
            teacher = run["distill"]["teacher"]
            if teacher not in ("teacher", "base"):
                _check_model_source(f"runs.{name}.distill.teacher", {"source": teacher}, source)
        if run["method"] == "grpo" and run["batch_size"] % run["grpo"]["num_generations"]:
            raise ConfigError(
                f"config key runs.{name}.batch_size = {run['batch_size']} in {source} must be a multiple of "
                f"runs.{name}.grpo.num_generations = {run['grpo']['num_generations']}; change one of them"
            )


def _check_train_heads(name: str, run: dict[str, Any], config: dict[str, Any], source: str) -> None:
    """``runs.<name>.train_heads``: a training run's, with head names (in the embedded base's shape;
    a hub or local base's shape is checked when training loads it) and no weight decay."""
    from sparks.types import check_heads, parse_heads

    key = f"runs.{name}.train_heads"
    if run["train_heads"] is None:
        return
    if run["method"] == registry.GIVEN:
        raise ConfigError(f"config key {key} in {source}: a models run trains nothing; remove train_heads")
    try:
        heads = parse_heads(run["train_heads"], key)
        if config["base"]["source"] == "embedded":
            shape = config["base"]["shape"]
            check_heads(heads, shape["n_layers"], shape["n_heads"], key)
    except ValueError as err:
        raise ConfigError(f"config key {err} (in {source})") from None
    if run["trainer"].get("weight_decay"):
        raise ConfigError(
            f"config key runs.{name}.trainer.weight_decay in {source}: with {key}, AdamW would decay the frozen heads' "
            "slices of the q_proj/o_proj tensors the trained heads share; remove weight_decay"
        )


def task_difficulties(task: dict[str, Any]) -> list[str]:
    """A task's difficulty names, easiest first: a synthetic task's as its config lists them, one
    ``all`` for a hub task."""
    return list(task["difficulties"]) if task["source"] == "synthetic" else ["all"]


def pairs_kind(attribute: dict[str, Any], task: str) -> str:
    """Which pairs ``task``'s circuits are scored on (``attribute.pairs``: one kind, or task -> kind)."""
    pairs = attribute["pairs"]
    return pairs if isinstance(pairs, str) else pairs.get(task, "operand")


def compares_pairs(config: dict[str, Any], run: str) -> bool:
    """Whether ``run`` (a replicate: its replicated run) is also scored on style pairs (attribute.compare_pairs)."""
    settings = config["runs"][run]
    return (settings.get("replicate_of") or run) in config["attribute"]["compare_pairs"]


POLICIES = ("freeze", "train_only", "anchor")


def head_sets(run: dict[str, Any]) -> dict[str, list[str] | dict[str, Any]]:
    """The head set each policy of a run's ``heads`` section names (policies it does not set left out)."""
    heads = run["heads"] or {}
    return {p: heads[p]["heads"] if p == "anchor" else heads[p] for p in POLICIES if heads.get(p) is not None}


def describe(spec: list[str] | dict[str, Any]) -> str:
    """A head set as the config spells it: ``a1.h3 a2.h0`` or ``emergent_of: sft``."""
    if isinstance(spec, list):
        return " ".join(spec)
    ((key, value),) = spec.items()
    return f"{key}: {value}"


def paired_run(config: dict[str, Any], run: str, ref: str) -> str:
    """The run whose tables a reference to run ``ref`` reads for policy run ``run`` (an expanded
    config): ``ref`` itself, or for a replicated ``ref`` its replicate with ``run``'s seed."""
    if ref not in config["replicates"]:
        return ref
    group = config["runs"][run]["replicate_of"]
    twin = ref + run[len(group) :] if group is not None else None
    if twin not in config["replicates"][ref]:
        raise ConfigError(
            f"config key runs.{group or run}.heads names run {ref!r}, whose replicates {config['replicates'][ref]} "
            f"do not pair with {run!r} by seed; give both the same seeds, or use robust_of: {ref}"
        )
    return twin


def eval_sets(config: dict[str, Any], run: str) -> list[str]:
    """The tasks whose evaluation problems a run's checkpoints answer: its own task first (the
    one its circuits, failure anatomy and report section are about), then ``runs.<name>.evaluate_on``."""
    own = config["runs"][run]["task"]
    return [own, *(t for t in config["runs"][run]["evaluate_on"] or () if t != own)]


def fixed_circuit_size(top_n: int, faithfulness_target: float | None) -> int | None:
    """The edges every circuit keeps (aggregate.top_n), or None where each checkpoint's circuit is
    the fewest top edges reaching aggregate.faithfulness_target (sparks.aggregate.circuit_size_per_step)."""
    return top_n if faithfulness_target is None else None


def trl_config_class(method: str) -> type:
    """The TRL dataclass a training method's ``trainer`` section is handed to."""
    import trl

    return getattr(trl, training_method(method).trl_config)


def _check_trainer(name: str, run: dict[str, Any], source: str) -> None:
    """Every key of ``runs.<name>.trainer`` is a field of its TRL config and not one sparks sets."""
    import dataclasses
    import difflib

    if not run["trainer"] or run["method"] == registry.GIVEN:
        return  # TRL is imported only for a config that passes settings through
    cls = trl_config_class(run["method"])
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in run["trainer"]:
        owned = training_method(run["method"]).all_owned
        if key in owned:
            raise ConfigError(
                f"config key runs.{name}.trainer.{key} in {source}: sparks sets it from its own settings; use "
                + owned[key].format(run=name)
            )
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=3, cutoff=0.6)
            raise ConfigError(
                f"config key runs.{name}.trainer.{key} in {source} is not a field of TRL's {cls.__name__}"
                + (f"; did you mean {', '.join(close)}?" if close else "; see its documentation for the fields")
            )


def _check_head_policy(name: str, run: dict[str, Any], config: dict[str, Any], source: str) -> None:
    """``runs.<name>.heads``: a training run's, not with train_heads, freeze or train_only (not
    both), literal heads in the embedded base's shape, references to other runs that exist (a
    replicated one for robust_of) and lead back to none of its own; no weight decay."""
    from sparks.types import check_heads, parse_heads

    key = f"config key runs.{name}.heads in {source}"
    policy = run["heads"]
    if policy is None:
        return
    if run["method"] == registry.GIVEN or run["train_heads"] is not None:
        raise ConfigError(
            f"{key}: "
            + (
                "a models run trains nothing"
                if run["method"] == registry.GIVEN
                else "give train_heads or heads.train_only, not both"
            )
            + "; remove it"
        )
    if policy.get("freeze") is not None and policy.get("train_only") is not None:
        raise ConfigError(
            f"{key} sets both freeze and train_only; give one (freeze keeps its heads, train_only trains only its heads)"
        )
    if (policy.get("freeze") is not None or policy.get("train_only") is not None) and run["trainer"].get("weight_decay"):
        raise ConfigError(f"{key}: AdamW would decay the frozen heads' slices of q_proj/o_proj; remove trainer.weight_decay")
    plain = policy.get("compare_to")
    if plain is not None and (plain not in config["runs"] or plain == name or config["runs"][plain].get("heads")):
        raise ConfigError(f"{key}: compare_to names {plain!r}, which is not another run without heads under runs")
    for part, spec in policy.items():
        if part == "compare_to" or spec is None:
            continue
        spec = spec["heads"] if part == "anchor" else spec
        if isinstance(spec, list):
            try:
                heads = parse_heads(spec, f"runs.{name}.heads.{part}")
                if config["base"]["source"] == "embedded":
                    check_heads(
                        heads,
                        config["base"]["shape"]["n_layers"],
                        config["base"]["shape"]["n_heads"],
                        f"runs.{name}.heads.{part}",
                    )
            except ValueError as err:
                raise ConfigError(f"config key {err} (in {source})") from None
            continue
        ((ref_key, ref),) = spec.items()
        if ref_key == "calculation_heads":
            continue
        if ref not in config["runs"] or ref == name:
            raise ConfigError(
                f"{key}: {part} names {ref_key}: {ref!r}, which is not another run under runs; use one of: "
                + ", ".join(r for r in config["runs"] if r != name)
            )
        if ref_key == "robust_of" and config["runs"][ref]["seeds"] is None and config["base"]["seeds"] is None:
            raise ConfigError(f"{key}: robust_of: {ref!r} needs a replicated run (runs.{ref}.seeds); use emergent_of: {ref}")
    seen, todo = set(), [name]
    while todo:  # the runs this policy waits for, and theirs: none may be this run
        current = todo.pop()
        for part, spec in (config["runs"][current]["heads"] or {}).items():
            if part == "compare_to" or spec is None:
                continue
            spec = spec["heads"] if part == "anchor" else spec
            ref = next(iter(spec.values())) if isinstance(spec, dict) and "calculation_heads" not in spec else None
            if ref == name:
                raise ConfigError(
                    f"{key}: its head sets lead back to run {name!r} through {current!r}; a run cannot wait for itself"
                )
            if ref in config["runs"] and ref not in seen:  # an unknown run is refused where it is named
                seen.add(ref)
                todo.append(ref)


def _check_difficulties(key: str, names: list[str] | None, task_name: str, task: dict[str, Any]) -> None:
    known = task_difficulties(task)
    unknown = [d for d in names or [] if d not in known]
    if unknown:
        raise ConfigError(
            f"config key {key} names {unknown[0]!r}, which task {task_name!r} does not have; use some of: {', '.join(known)}"
        )


def _check_attribute(section: dict[str, Any], key: str = "attribute") -> None:
    _check_name(f"{key}.metric", section["metric"], registry.METRICS)
    _check_name(f"{key}.method", section["method"], attribution_names())
    style = section["pairs"] == "style" or (isinstance(section["pairs"], dict) and "style" in section["pairs"].values())
    if style and (not section["think"] or section["compare_think_at"] != "none"):
        raise ConfigError(
            f"{key}.pairs = style: style pairs are think-on prompts whose openings the models sampled; "
            f"set {key}.think: true and {key}.compare_think_at: none"
        )
    if section["metric"] == "kl" and section["ig_steps"] == 1:
        raise ConfigError(
            f"{key}.ig_steps = 1 with {key}.metric = kl: plain EAP takes the gradient on the clean run, where "
            f"the KL gradient is exactly zero; raise {key}.ig_steps (e.g. 5) or use metric logit_diff"
        )


def _check_intervened_heads(config: dict[str, Any], source: str) -> None:
    if config["evaluate"]["heads"] != "emergent" and config["attribute"]["compare_think_at"] == "none":
        raise ConfigError(
            f"config key evaluate.heads = {config['evaluate']['heads']!r} in {source} takes its heads from the think-mode "
            "comparison; set attribute.compare_think_at to ends or all"
        )


def _check_evaluate(section: dict[str, Any], key: str = "evaluate") -> None:
    _check_name(f"{key}.ablation", section["ablation"], registry.ABLATIONS)
    for control in section["controls"]:
        _check_name(f"{key}.controls", control, registry.CONTROLS)
    if any(k > section["n_samples"] for k in section["k"]):
        raise ConfigError(
            f"{key}.k = {list(section['k'])} needs every k <= {key}.n_samples ({section['n_samples']}); "
            "raise n_samples or lower k"
        )


SECTION_CHECKS = {"attribute": _check_attribute, "evaluate": _check_evaluate}  # what the schema cannot say


def _check_name(key: str, name: str, valid: tuple[str, ...]) -> None:
    if name not in valid:
        raise ConfigError(f"config key {key} = {name!r} is not one of {', '.join(valid)}; use one of those")


def _check_stage_settings(config: dict[str, Any], source: str) -> None:
    try:
        for section, check in SECTION_CHECKS.items():
            check(config[section])
        for name, run in config["runs"].items():
            _check_name(f"runs.{name}.method", run["method"], method_names())
            for reward in run["grpo"]["rewards"]:
                _check_name(f"runs.{name}.grpo.rewards.{reward}", reward, registry.REWARDS)
    except ConfigError as err:
        raise ConfigError(f"{err} (in {source})") from None
    for name, task in config["tasks"].items():
        _check_difficulties("attribute.difficulties", config["attribute"]["difficulties"], name, task)
    _check_intervened_heads(config, source)
    _check_compared_pairs(config, source)
    pairs = config["attribute"]["pairs"]
    unknown = sorted(set(pairs) - set(config["tasks"])) if isinstance(pairs, dict) else []
    if unknown:
        raise ConfigError(
            f"config key attribute.pairs names task {unknown[0]!r}, which is not under tasks in {source}; "
            f"use some of: {', '.join(config['tasks'])}"
        )


def _check_compared_pairs(config: dict[str, Any], source: str) -> None:
    for name in config["attribute"]["compare_pairs"]:
        key = f"config key attribute.compare_pairs in {source}"
        if name not in config["runs"]:
            raise ConfigError(f"{key} names run {name!r}, which is not under runs; use some of: {', '.join(config['runs'])}")
        task = config["runs"][name]["task"]
        if pairs_kind(config["attribute"], task) != "operand":
            raise ConfigError(
                f"{key} names run {name!r}, whose circuits on {task!r} are already style pairs (attribute.pairs); "
                "compare_pairs scores operand-pair circuits on style pairs too: remove it there"
            )


class Section:
    """A frozen dataclass that is a typed view of one schema section, filled from a checked config.

    Subclasses set ``SCHEMA_PATH`` (e.g. ``("properties", "attribute")``) and declare one field per
    key they read, without defaults: the defaults live in the schema only. List values become tuples.
    """

    SCHEMA_PATH: ClassVar[tuple[str, ...]]

    @classmethod
    def of(cls, section: dict[str, Any]) -> Self:
        """The view of a defaults-filled section (extra keys of the section are ignored)."""
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        return cls(**{n: tuple(section[n]) if isinstance(section[n], list) else section[n] for n in names})

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Self:
        """The view of a top-level section of a config that check_config has filled."""
        if cls.SCHEMA_PATH[0] != "properties":
            raise TypeError(f"{cls.__name__} views a nested section; build it with {cls.__name__}.of(section)")
        return cls.of(config[cls.SCHEMA_PATH[1]])

    @classmethod
    def defaults(cls, **overrides: Any) -> Self:
        """The schema's defaults with ``overrides``, checked as check_config would (ConfigError)."""
        node = schema()
        for part in cls.SCHEMA_PATH:
            node = node[part]
        node = _resolve(node, schema())
        key = ".".join(p for p in cls.SCHEMA_PATH if p not in ("properties", "$defs"))
        section = {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}
        errors = list(jsonschema.validators.validator_for(schema())({**node, "$defs": schema()["$defs"]}).iter_errors(section))
        if errors:
            path = ".".join([key, *map(str, errors[0].absolute_path)])
            raise ConfigError(f"config key {path}: {errors[0].message}; fix its value (see schemas/config.schema.yaml)")
        _fill_defaults(section, node, schema())
        if key in SECTION_CHECKS:
            SECTION_CHECKS[key](section, key)
        return cls.of(section)


def check_task(config: dict[str, Any], task: str) -> None:
    """A stage's --task must name a task of the config."""
    if task not in config["tasks"]:
        raise ConfigError(f"--task {task!r} is not in the config's tasks ({', '.join(config['tasks'])}); pass one of them")


def config_hash(section: Any) -> str:
    """A short, stable hash of a config section (keys sorted), for provenance columns."""
    blob = json.dumps(section, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def run_provenance(config: dict[str, Any], run: str, task: str, *sections: str) -> dict[str, Any]:
    """Provenance of a table that spans a run's checkpoints (per-row ``step`` where it has one);
    its config hash covers the named config sections."""
    return {
        "experiment": config["experiment"],
        "run": run,
        "step": None,
        "task": task,
        "model_hash": None,
        "config_hash": config_hash({s: config[s] for s in sections}),
    }
