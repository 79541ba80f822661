"""The benchmark stage: head interventions, answer extraction, sample and pass tables."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from conftest import REPO

from sparks.config import ConfigError, load_config
from sparks.data.answers import extract_answer, is_correct
from sparks.evaluate import EvaluateSettings, pass_table, sample_table
from sparks.evaluate.interventions import HeadIntervention, control_heads, head_means, intervene, random_heads_like
from sparks.generate import generate
from sparks.model.load import load_model, load_tokenizer
from sparks.types import HeadId

PROMPTS = ["3+4*2=", "7*8+1=", "2+2=", "9*9*9+3="]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def logits(model, tok, change=None):
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad(), intervene(model, change):
        return model(**batch).logits


def test_scaling_by_one_changes_nothing(model, tok):
    heads = (HeadId(0, 1), HeadId(1, 3))
    plain = generate(model, tok, PROMPTS, 12)
    with intervene(model, HeadIntervention("scale", heads, alpha=1.0)):
        scaled = generate(model, tok, PROMPTS, 12)
    assert scaled == plain
    torch.testing.assert_close(logits(model, tok, HeadIntervention("scale", heads, 1.0)), logits(model, tok))


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_ablating_a_whole_layer_changes_the_output(model, tok, ablation):
    layer = tuple(HeadId(0, h) for h in range(model.config.num_attention_heads))
    means = head_means(model, tok, PROMPTS)
    change = HeadIntervention("ablate", layer, ablation=ablation, means=means)
    assert not torch.allclose(logits(model, tok, change), logits(model, tok))
    assert not model.model.layers[0].self_attn.o_proj._forward_pre_hooks  # hooks are gone after the block


def test_mean_ablation_needs_means():
    with pytest.raises(ValueError, match="head_means"):
        HeadIntervention("ablate", (HeadId(0, 0),), ablation="mean")


def test_random_heads_come_from_the_same_layers():
    heads = (HeadId(1, 2), HeadId(3, 0), HeadId(3, 5))
    control = random_heads_like(heads, n_heads=8, seed=1, exclude=heads)
    assert sorted(h.layer for h in control) == [1, 3, 3] and not set(control) & set(heads)
    assert control == random_heads_like(heads, n_heads=8, seed=1, exclude=heads)


def test_controls_draw_from_their_own_pools():
    """base_circuit: heads of the starting model's circuit (no cohort step), never an emergent one;
    outside: heads in no circuit of the run; each as many as the emergent heads, fixed by the seed."""
    cohorts = pl.DataFrame(
        {
            "layer": [0, 0, 1, 1, 2, 3],
            "head": [0, 1, 0, 3, 2, 1],
            "cohort_step": [None, None, None, 40, 80, None],
            "status": ["maintained", "lost", "maintained", "emergent", "emergent", "maintained"],
        },
        schema_overrides={"cohort_step": pl.Int64},
    )
    emergent = (HeadId(1, 3), HeadId(2, 2))
    base = {HeadId(0, 0), HeadId(0, 1), HeadId(1, 0), HeadId(3, 1)}
    ever = base | set(emergent)
    for seed in range(5):
        drawn = control_heads("base_circuit", emergent, cohorts, n_layers=4, n_heads=4, seed=seed)
        assert len(drawn) == 2 and set(drawn) <= base
        outside = control_heads("outside", emergent, cohorts, n_layers=4, n_heads=4, seed=seed)
        assert len(outside) == 2 and not set(outside) & ever
        same = control_heads("same_layer", emergent, cohorts, n_layers=4, n_heads=4, seed=seed)
        assert sorted(h.layer for h in same) == [1, 2] and not set(same) & set(emergent)
    assert control_heads("outside", emergent, cohorts, 4, 4, seed=3) == control_heads("outside", emergent, cohorts, 4, 4, seed=3)
    many = tuple(HeadId(layer, head) for layer in range(4) for head in range(4) if HeadId(layer, head) not in base)
    assert set(control_heads("base_circuit", many, cohorts, 4, 4, seed=0)) == base  # a small pool gives all it has
    with pytest.raises(ValueError, match="same_layer, base_circuit, outside"):
        control_heads("nearby", emergent, cohorts, 4, 4, seed=0)


@pytest.mark.parametrize(
    "text",
    ["", "<think>", "<think>1+2;3", "</think>", "<think></think>", "<think>x</think>abc", "9" * 5000, "ü<think>ß</think>", None],
)
def test_malformed_generations_have_no_answer_or_a_number(text):
    answer = extract_answer(text)
    assert answer is None or answer.lstrip("-").replace(".", "").isdigit()
    assert is_correct(text, "3") in (True, False)
    assert extract_answer("<think>1+2;3") is None and extract_answer("<think>1+2;3</think>3") == "3"


def test_sample_and_pass_tables(model, tok):
    problems = pl.DataFrame(
        {"problem_id": [0, 1], "difficulty": ["easy", "hard"], "question": ["2+2=", "3+4*2+9="], "answer": ["4", "3"]}
    )
    settings = EvaluateSettings.defaults(n_samples=3, k=(1, 3), max_new_tokens=8, temperature=1.0)
    samples = sample_table(model, tok, problems, settings, seed=0)
    assert samples.height == 6 and samples["k"].to_list() == [0, 1, 2, 0, 1, 2]
    assert samples["n_tokens"].max() <= 8
    table = pass_table(samples, settings.k)
    assert table.height == 4 and table["pass_at_k"].is_between(0, 1).all()
    first = table.filter(pl.col("k_samples") == 1)
    assert (first["pass_at_k"] == first["all_correct_at_k"]).all()  # at k = 1 both are the accuracy
    by_k = samples.sort("k").group_by("difficulty", maintain_order=True).agg(pl.col("correct").first())
    assert dict(zip(first["difficulty"], first["success_at_k"])) == {d: float(c) for d, c in by_k.rows()}  # the first sample
    assert (table["n_problems"] == 1).all() and table["accuracy_se"].is_null().all()  # one problem per difficulty


def test_pass_table_gives_the_standard_error_over_problems():
    samples = pl.DataFrame(
        {"difficulty": ["easy"] * 4, "sample_id": [0, 0, 1, 1], "k": [0, 1, 0, 1], "correct": [True, True, True, False]}
    )
    row = pass_table(samples, (1,)).row(0, named=True)
    assert row["accuracy"] == 0.75 and row["n_problems"] == 2
    assert row["accuracy_se"] == pytest.approx(np.std([1.0, 0.5], ddof=1) / np.sqrt(2))


def test_hub_samples_are_prompted_by_the_template_and_judged_by_math_verify(monkeypatch, qwen25_tokenizer):
    """Evaluation of a hub task: every prompt is the chat template's, and the answers are read by
    math-verify after the <think> a template opened (a number inside a cut-off trace is no answer)."""
    import sparks.generate
    from sparks.data.prompting import Prompter, PromptSettings

    tok = qwen25_tokenizer.__class__.from_pretrained(qwen25_tokenizer.name_or_path)
    tok.chat_template = (
        "{% for m in messages %}{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|Assistant|><think>\n{% endif %}"
    )
    replies = iter(["we add 48 and 24\n</think>\n\nAdding 48 and 24 gives $\\boxed{72}$.", "48 + 24 = 72, so 72"])
    seen = []

    def fake_generate(model, tokenizer, prompts, *args, **kwargs):
        seen.extend(prompts)
        return [next(replies) for _ in prompts]

    monkeypatch.setattr(sparks.generate, "generate", fake_generate)
    problems = pl.DataFrame({"problem_id": [0], "difficulty": ["all"], "question": ["What is 48+24?"], "answer": ["72"]})
    settings = EvaluateSettings.defaults(n_samples=2, k=(1, 2))
    samples = sample_table(None, tok, problems, settings, source="gsm8k", prompter=Prompter(tok, PromptSettings.defaults()))
    assert all(p.endswith("<|Assistant|><think>\n") for p in seen)
    assert samples["correct"].to_list() == [True, False]  # the number-only checker would read 48 in the first
    assert samples["answer"].to_list() == ["72", None]
    assert samples["completion"][0].startswith("<think>we add 48")


def test_a_nucleus_of_one_token_samples_the_greedy_completion(model, tok):
    from sparks.generate import generate

    prompts = ["2+2=", "3+4*2+9="]
    greedy = generate(model, tok, prompts, 8)
    assert generate(model, tok, prompts, 8, temperature=1.0, top_p=1e-6, seed=3) == greedy


def test_the_intervened_heads_are_the_emergent_ones_or_one_think_modes_own():
    from sparks.evaluate import EvaluateSettings, intervened_heads

    cohorts = pl.DataFrame(
        {"layer": [0, 1, 1], "head": [2, 0, 3], "cohort_step": [None, 40, 80], "status": ["maintained", "emergent", "emergent"]},
        schema_overrides={"cohort_step": pl.Int64},
    )
    modes = pl.DataFrame(
        {
            "step": [0, 0, 0, 10, 10, 10],
            "layer": [0, 1, 2, 0, 1, 2],
            "head": [1, 1, 1, 1, 1, 1],
            "mode": ["think_off_only", "both", "think_on_only", "both", "think_off_only", "think_off_only"],
        }
    )
    assert intervened_heads(EvaluateSettings.defaults(), cohorts, None) == (HeadId(1, 0), HeadId(1, 3))
    off = EvaluateSettings.defaults(heads="think_off_only")
    assert intervened_heads(off, cohorts, modes) == (HeadId(1, 1), HeadId(2, 1))  # at the last compared step
    with pytest.raises(ValueError, match="--think-modes"):
        intervened_heads(off, cohorts, None)


def test_top_k_of_one_and_min_p_of_one_sample_the_greedy_completion(model, tok):
    """Each filter really applies on the hf path: keeping only the most likely token is greedy.
    Off is off: the same seed over the whole distribution gives other completions."""
    greedy = generate(model, tok, PROMPTS, 8)
    assert generate(model, tok, PROMPTS, 8, temperature=1.0, seed=3) != greedy
    assert generate(model, tok, PROMPTS, 8, temperature=1.0, seed=3, top_k=0) != greedy
    assert generate(model, tok, PROMPTS, 8, temperature=1.0, seed=3, top_k=1) == greedy
    assert generate(model, tok, PROMPTS, 8, temperature=1.0, seed=3, min_p=1.0) == greedy


def test_greedy_ignores_the_sampling_settings(model, tok):
    greedy = generate(model, tok, PROMPTS, 8)
    assert generate(model, tok, PROMPTS, 8, top_k=3, top_p=0.5, min_p=0.5, repetition_penalty=1e9) == greedy


def test_a_repetition_penalty_steers_away_from_seen_tokens(model, tok):
    """top_k 1 picks the most likely token after the penalty: a prohibitive one never picks a
    token of the prompt or of the completion so far (the random model repeats itself without)."""
    prompt_ids = tok(PROMPTS, add_special_tokens=False)["input_ids"]
    plain = generate(model, tok, PROMPTS, 12, temperature=1.0, top_k=1, decode=False)
    penalised = generate(model, tok, PROMPTS, 12, temperature=1.0, top_k=1, repetition_penalty=1e9, decode=False)
    assert any(len(set(ids)) < len(ids) or set(ids) & set(p) for ids, p in zip(plain, prompt_ids))
    assert all(len(set(ids)) == len(ids) and not set(ids) & set(p) for ids, p in zip(penalised, prompt_ids))


def test_the_settings_reach_generate_and_the_defaults_sample_as_before(model, tok, monkeypatch):
    """Every setting is passed, off ones as transformers' off values (top_k 0, not its default
    50); with the defaults the completions are those of sparks' call before top_k, min_p and
    repetition_penalty were settings."""
    calls, real = [], model.generate

    def before(**kwargs):  # the call as sparks made it before: without min_p and repetition_penalty
        calls.append({k: v for k, v in kwargs.items() if k not in ("input_ids", "attention_mask")})
        return real(**{k: v for k, v in kwargs.items() if k not in ("min_p", "repetition_penalty")})

    now = generate(model, tok, PROMPTS, 8, temperature=1.0, top_p=0.9, seed=3)
    monkeypatch.setattr(model, "generate", before)
    assert generate(model, tok, PROMPTS, 8, temperature=1.0, top_p=0.9, seed=3) == now
    generate(model, tok, PROMPTS, 8)
    generate(model, tok, PROMPTS, 8, temperature=0.7, top_p=0.8, top_k=20, min_p=0.05, repetition_penalty=1.1)
    sampling = ("do_sample", "temperature", "top_k", "top_p", "min_p", "repetition_penalty")
    sampled, greedy, card = ({k: c[k] for k in sampling} for c in calls)
    assert sampled == {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 0.9, "min_p": None, "repetition_penalty": 1.0}
    assert greedy == {
        "do_sample": False,
        "temperature": None,
        "top_k": None,
        "top_p": None,
        "min_p": None,
        "repetition_penalty": None,
    }
    assert card == {"do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.8, "min_p": 0.05, "repetition_penalty": 1.1}


def test_evaluate_samples_with_its_settings(model, tok):
    problems = pl.DataFrame(
        {"problem_id": [0, 1], "difficulty": ["all"] * 2, "question": ["2+2=", "7*8+1="], "answer": ["4", "57"]}
    )
    greedy = sample_table(model, tok, problems, EvaluateSettings.defaults(n_samples=2, k=(1,), max_new_tokens=8, temperature=0))
    for one in ({"top_k": 1}, {"min_p": 1.0}):
        settings = EvaluateSettings.defaults(n_samples=2, k=(1,), max_new_tokens=8, temperature=1.0, **one)
        assert sample_table(model, tok, problems, settings)["completion"].to_list() == greedy["completion"].to_list()
    assert EvaluateSettings.defaults().top_k == 0 and EvaluateSettings.defaults(top_k=None).top_k is None
    with pytest.raises(ConfigError, match="evaluate.top_k"):
        EvaluateSettings.defaults(top_k=-1)


def test_the_qwen3_config_samples_as_its_card_advises_for_thinking_off():
    evaluate = load_config(REPO / "config" / "qwen3-8b-think.yaml")["evaluate"]
    assert not evaluate["think"]
    assert {k: evaluate[k] for k in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")} == {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
    }
