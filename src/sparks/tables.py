"""Every Parquet table sparks writes: one polars schema each, checked on write and on read.

All tables are long format and carry the provenance columns. ``write_table`` checks the
schema and primary-key uniqueness, writes to a temporary file beside the target and renames it
(``os.replace``), so a crash never leaves a half-written table that a rerun would trust.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

import sparks
from sparks.atomic import atomic_file
from sparks.registry import FAILURE_CATEGORIES

PROVENANCE = pl.Schema(
    {
        "experiment": pl.String,
        "run": pl.String,  # null for tables made before any run (task data, base model)
        "step": pl.Int64,  # null where no checkpoint applies
        "task": pl.String,
        "model_hash": pl.String,
        "config_hash": pl.String,
        "sparks_version": pl.String,
        "created_at": pl.Datetime("us", "UTC"),
        "machine": pl.String,  # what can make two runs of one config differ: see machine()
    }
)

EVAL_COLUMNS = {
    "difficulty": pl.String,
    "sample_id": pl.Int64,  # the problem (problem_id in {task}_problems.parquet)
    "k": pl.Int64,  # which of the problem's n samples (0 .. n-1)
    "correct": pl.Boolean,
    "n_tokens": pl.Int64,  # generated tokens
    "answer": pl.String,  # extracted answer; null when there is none
    "completion": pl.String,  # the generated text
}

SCHEMAS: dict[str, pl.Schema] = {
    "problems": pl.Schema(
        {
            "problem_id": pl.Int64,
            "split": pl.String,  # train | eval
            "difficulty": pl.String,
            "n_ops": pl.Int64,  # null for hub datasets
            "question": pl.String,
            "trace": pl.String,  # the reasoning without <think> tags
            "reply": pl.String,  # what a worked answer says after its trace (null: the bare answer)
            "answer": pl.String,
        }
    ),
    "pairs": pl.Schema(
        {
            "pair_id": pl.Int64,
            "difficulty": pl.String,
            "think": pl.Boolean,
            "clean": pl.String,
            "corrupt": pl.String,
            "clean_answer": pl.String,
            "corrupt_answer": pl.String,  # null when unknown (hub datasets)
            "n_tokens": pl.Int64,
            "kind": pl.String,  # operand (one operand changed) | style (two models' openings of the answer)
            "clean_opening": pl.String,  # style: the reasoning model's sampled opening, whole (null for operand pairs)
            "corrupt_opening": pl.String,  # style: the starting model's sampled opening, whole
            "opening_tokens": pl.Int64,  # style: tokens of each opening kept in clean and corrupt
        }
    ),
    "accuracy": pl.Schema(
        {
            "difficulty": pl.String,
            "think": pl.Boolean,
            "n": pl.Int64,
            "correct": pl.Int64,
            "accuracy": pl.Float64,
        }
    ),
    "teacher_traces": pl.Schema(
        {
            # one row per teacher sample of a distill run's training problems (provenance run: the distill run)
            "problem_id": pl.Int64,
            "sample": pl.Int64,  # 0 .. samples_per_problem - 1
            "question": pl.String,
            "answer": pl.String,  # the reference
            "prompt": pl.String,  # what the teacher was given (its own chat template when it has one)
            "completion": pl.String,  # what it wrote
            "trace": pl.String,  # the completion's reasoning (null: no closed trace)
            "reply": pl.String,  # what follows the trace
            "correct": pl.Boolean,  # by the task's checker; only_correct keeps these
            "teacher": pl.String,  # the teacher's folder or hub id
            "prompt_form": pl.String,  # chat_template | plain
            "think": pl.Boolean,
            "temperature": pl.Float64,
            "max_new_tokens": pl.Int64,
        }
    ),
    "train_log": pl.Schema(
        {
            # provenance "step" is the trainer's global step of each log entry
            "epoch": pl.Float64,
            "loss": pl.Float64,
            "reward": pl.Float64,
            "reward_std": pl.Float64,
            "reward_correctness": pl.Float64,  # unweighted mean of each named reward
            "reward_format": pl.Float64,
            "kl": pl.Float64,
            "learning_rate": pl.Float64,
            "grad_norm": pl.Float64,
            "entropy": pl.Float64,
            "frac_reward_zero_std": pl.Float64,
            "mean_completion_length": pl.Float64,
            "mean_token_accuracy": pl.Float64,
            "anchor": pl.Float64,  # activation-anchoring penalty, unweighted (sparks.train.anchor); null: no anchor
        }
    ),
    "heads": pl.Schema(
        {
            "layer": pl.Int64,
            "head": pl.Int64,
            "kv_head": pl.Int64,  # the KV head whose k and v inputs this head shares (GQA)
            "score": pl.Float64,  # node score of the head's output (its o_proj input slice)
            "abs_score": pl.Float64,
            "rank": pl.Int64,  # 1 = largest |score| at this checkpoint
            "score_q": pl.Float64,  # sum of the edge scores into the head's q input
            "score_k": pl.Float64,  # ... into its KV head's k input (shared within the group)
            "score_v": pl.Float64,  # ... into its KV head's v input (shared within the group)
            "score_out": pl.Float64,  # sum of the edge scores out of the head (equals score)
            "weight_change": pl.Float64,  # ||W - W_base|| / ||W_base|| of its q rows, q bias, o columns (null: base unreadable)
        }
    ),
    "edges": pl.Schema(
        {
            "src": pl.String,  # input | a{l}.h{h} | m{l}
            "dst": pl.String,  # a{l}.h{h} (q) | a{l}.kv{g} (k, v) | m{l} | logits
            "dst_input": pl.String,  # q | k | v | mlp | logits
            "score": pl.Float64,
            "abs_score": pl.Float64,
            "rank": pl.Int64,  # 1 = largest |score| at this checkpoint
        }
    ),
    "pair_edges": pl.Schema(
        {
            "pair_id": pl.Int64,  # the pair in {task}_pairs.parquet (with difficulty and think)
            "difficulty": pl.String,
            "think": pl.Boolean,
            "scores": pl.List(pl.Float32),  # this pair's edge scores, in the order of the graph's edges
        }
    ),
    "head_effects": pl.Schema(
        {
            # exact patching (sparks.attribute.patching); no rows with attribute.exact off
            "pair_id": pl.Int64,  # the pair in the pairs table (as in pair_edges)
            "difficulty": pl.String,
            "think": pl.Boolean,
            "layer": pl.Int64,
            "head": pl.Int64,
            "effect": pl.Float64,  # m(head's output patched to its corrupted value, every position) - m(clean)
        }
    ),
    "faithfulness": pl.Schema(
        {
            "n_edges": pl.Int64,  # circuit size: the top n_edges edges by |score|
            "edge_fraction": pl.Float64,
            "metric_circuit": pl.Float64,  # mean metric with every other edge patched to corrupted
            "faithfulness": pl.Float64,  # (m(circuit) - m(corrupt)) / (m(model) - m(corrupt))
            "metric_model": pl.Float64,
            "metric_corrupt": pl.Float64,
            "cpr": pl.Float64,  # area under the faithfulness curve (same on every row)
            "cmd": pl.Float64,  # area under |1 - faithfulness| (same on every row)
        }
    ),
    "circuit": pl.Schema(
        {
            # provenance "step" is the checkpoint of each row
            "node": pl.String,  # a{layer}.h{head}
            "layer": pl.Int64,
            "head": pl.Int64,
            "in_circuit": pl.Boolean,  # active: some circuit edge touches the head
            "n_edges": pl.Int64,  # circuit edges touching it (out, q, or k/v of its KV head)
            "status": pl.String,  # at this checkpoint: maintained | emergent | transient | new | lost | inactive (aggregate.circuits)
        }
    ),
    "think_modes": pl.Schema(
        {
            # provenance "step" and "model_hash" are the compared checkpoint of each row
            "node": pl.String,
            "layer": pl.Int64,
            "head": pl.Int64,
            "active_think_on": pl.Boolean,  # in the top-N circuit on think-on pairs
            "n_edges_think_on": pl.Int64,
            "score_think_on": pl.Float64,  # EAP-IG node score on think-on pairs
            "rank_think_on": pl.Int64,
            "active_think_off": pl.Boolean,
            "n_edges_think_off": pl.Int64,
            "score_think_off": pl.Float64,
            "rank_think_off": pl.Int64,
            "mode": pl.String,  # both | think_on_only | think_off_only | neither
        }
    ),
    "cohorts": pl.Schema(
        {
            "layer": pl.Int64,
            "head": pl.Int64,
            "cohort_step": pl.Int64,  # first step at which the emergence test calls it (null for base heads)
            "first_step": pl.Int64,  # first step at which it is active
            "last_step": pl.Int64,
            "active_steps": pl.Int64,  # number of checkpoints at which it is active
            "status": pl.String,  # emergent (in the final circuit) | transient (gone from it) | maintained | lost
        }
    ),
    "importance": pl.Schema(
        {
            # provenance "step" is each checkpoint; the study's App. A.6 (sparks.aggregate.importance)
            "layer": pl.Int64,
            "head": pl.Int64,
            "importance": pl.Float64,  # sum of |score| of the circuit edges leaving the head, normalised to sum 1 per step
            "effect": pl.Float64,  # (I - I_first) / (I + I_first + 1e-6) against the first checkpoint; null at it
            "mean_effect": pl.Float64,  # the head's effect averaged over the checkpoints after the first (Eq. 9)
        }
    ),
    "frequency": pl.Schema(
        {
            "layer": pl.Int64,
            "head": pl.Int64,
            "frequency": pl.Float64,  # fraction of checkpoints at which it is active
            "active_in_base": pl.Boolean,
            "active_in_final": pl.Boolean,
        }
    ),
    "stability": pl.Schema(
        {
            # provenance "step" is the checkpoint of each row; the paired emergence test (sparks.aggregate.bootstrap)
            "layer": pl.Int64,
            "head": pl.Int64,
            "p_in_circuit": pl.Float64,  # share of bootstrap resamples of the pairs whose circuit touches the head
            "p_change": pl.Float64,  # share of the same resamples out at the base and in here (null at the base)
            "effect": pl.Float64,  # mean exact per-head effect over the patched pairs (null: attribute.exact off)
            "effect_se": pl.Float64,  # its standard error over pairs
            "effect_change": pl.Float64,  # mean over the same pairs of effect here - effect at the base
            "change_low": pl.Float64,  # its paired 95 % interval
            "change_high": pl.Float64,
            "called": pl.Boolean,  # passes the test here: in the circuit, not in the base's, p_change, exact change
        }
    ),
    "agreement": pl.Schema(
        {
            # provenance "step" is the checkpoint; EAP-IG head scores against exact effects (sparks.aggregate.agreement)
            "n_heads": pl.Int64,
            "pearson": pl.Float64,  # of |EAP-IG node score| and |mean exact effect| over the heads
            "spearman": pl.Float64,
            "top_k": pl.Int64,  # the circuit's active heads at the step (at least 1)
            "top_k_overlap": pl.Float64,  # share of the top k heads by EAP-IG that are in the top k by exact effect
        }
    ),
    "planted": pl.Schema(
        {
            # a run that trained only runs.<name>.train_heads (sparks.aggregate.planted); no rows otherwise
            "detector": pl.String,  # emergence_test | exact_change (top k) | weight_change (top k, the trivial baseline)
            "n_planted": pl.Int64,  # k: the heads the run trained
            "n_detected": pl.Int64,
            "true_positives": pl.Int64,
            "precision": pl.Float64,  # true_positives / n_detected (null when nothing is detected)
            "recall": pl.Float64,  # true_positives / n_planted
            "detected": pl.String,  # e.g. "a2.h3 a3.h5"
            "planted": pl.String,
        }
    ),
    "circuit_rules": pl.Schema(
        {
            # provenance "step" is the checkpoint; the emergence test under each circuit-size rule
            "rule": pl.String,  # top_n | faithfulness (aggregate.faithfulness_target, or aggregate.compare_faithfulness)
            "n_edges": pl.Int64,  # the circuit's size at the step under the rule
            "n_active": pl.Int64,  # heads its circuit touches
            "n_called": pl.Int64,  # heads the emergence test calls at the step
            "called": pl.String,  # their names
        }
    ),
    "null_calls": pl.Schema(
        {
            # provenance "step" is the checkpoint; the pair-halves null (sparks.aggregate.calls)
            "direction": pl.String,  # a_to_b | b_to_a: which half plays the base
            "n_pairs": pl.Int64,  # pairs in each half
            "n_called": pl.Int64,  # heads the emergence test calls between the halves: false emergences
            "heads": pl.String,  # their names, e.g. "a1.h3 a2.h0"
            # heads in the later half's point circuit and not in the other's: the circuit-set
            # difference splitting the pairs alone makes (the think-off breadth claim's null)
            "n_only": pl.Int64,
        }
    ),
    "similarity": pl.Schema(
        {
            # provenance "step" is the later checkpoint of each consecutive pair
            "previous_step": pl.Int64,
            "jaccard_edges": pl.Float64,  # |E_t & E_prev| / |E_t | E_prev| of the circuits' edge sets
            "jaccard_heads": pl.Float64,  # the same for their active heads
        }
    ),
    "eval": pl.Schema(
        {
            # provenance "step" is the evaluated checkpoint
            **EVAL_COLUMNS,
        }
    ),
    "intervention_samples": pl.Schema(
        {
            # provenance "step": the final checkpoint (ablate) or the starting model (scale)
            "kind": pl.String,  # ablate | scale
            "heads_from": pl.String,  # none | emergent | a control (as in interventions)
            "seed": pl.Int64,  # random-head draw (null otherwise)
            "alpha": pl.Float64,  # scale factor (null for ablate and unmodified)
            **EVAL_COLUMNS,
        }
    ),
    "failures": pl.Schema(
        {
            # provenance "step": the checkpoint that generated the sample
            "origin": pl.String,  # eval | intervention
            "kind": pl.String,  # null for eval samples; else ablate | scale
            "heads_from": pl.String,  # null for eval samples; else none | emergent | random
            "seed": pl.Int64,
            "alpha": pl.Float64,
            "difficulty": pl.String,
            "sample_id": pl.Int64,
            "k": pl.Int64,
            "correct": pl.Boolean,
            "category": pl.String,  # one of sparks.registry.FAILURE_CATEGORIES
            "n_steps": pl.Int64,  # steps in the trace
            "n_tokens": pl.Int64,  # generated tokens
            "first_bad_step": pl.Int64,  # 0-based index of the first wrong step; null when none
            "bad_step": pl.String,  # its text
            "answer_abandoned": pl.Boolean,  # wrong, though the trace had reached the right answer
        }
    ),
    "failure_changes": pl.Schema(
        {
            "comparison": pl.String,  # final_vs_base | {evaluate.heads}_vs_{control} (scaled, same alpha; each control)
            "alpha": pl.Float64,  # scale factor (emergent_vs_* only)
            "difficulty": pl.String,
            "category": pl.String,
            "share_before": pl.Float64,  # base checkpoint / a control's heads
            "share_after": pl.Float64,  # final checkpoint / the intervened heads (evaluate.heads)
            "delta": pl.Float64,  # share_after - share_before
            "ci_low": pl.Float64,  # 95 % bootstrap interval of delta, resampling problems
            "ci_high": pl.Float64,
            "n_problems": pl.Int64,
        }
    ),
    "passk": pl.Schema(
        {
            # provenance "step" is the evaluated checkpoint
            "difficulty": pl.String,
            "k_samples": pl.Int64,  # k of the three estimators (1 .. evaluate.n_samples)
            "accuracy": pl.Float64,  # mean over all samples (the same for every k)
            "accuracy_se": pl.Float64,  # standard error of the per-problem accuracy over problems
            "n_problems": pl.Int64,
            "pass_at_k": pl.Float64,  # unbiased 1 - C(n-c, k)/C(n, k), mean over problems
            "success_at_k": pl.Float64,  # the study's Eq. 18: a correct one among the first k samples (generation order), mean over problems
            "all_correct_at_k": pl.Float64,  # unbiased C(c, k)/C(n, k) (all k correct), mean over problems
        }
    ),
    "emergence": pl.Schema(
        {
            # provenance "step" is each checkpoint after the base
            "emergent_active": pl.Int64,  # emergent heads active at the step (from their cohort on)
            "new_heads": pl.Int64,  # heads whose cohort is the step
            "reward": pl.Float64,  # mean reward over the training steps since the previous checkpoint
            "pearson_r": pl.Float64,  # r(emergent_active, reward) over the checkpoints (same on every row)
            "pearson_low": pl.Float64,  # its Fisher-z 95 % interval (null below 4 checkpoints)
            "pearson_high": pl.Float64,
        }
    ),
    "head_policy": pl.Schema(
        {
            # one row per (policy, head) of a run's runs.<name>.heads, resolved (sparks.train.policy)
            "policy": pl.String,  # freeze | train_only | anchor
            "layer": pl.Int64,
            "head": pl.Int64,
            "head_set": pl.String,  # the set as the config names it: a1.h3 a2.h0, or emergent_of: sft
            "weight": pl.Float64,  # the anchor's weight (null for freeze and train_only)
        }
    ),
    "pair_kinds": pl.Schema(
        {
            # one row per head that either kind's cohorts hold (attribute.compare_pairs)
            "layer": pl.Int64,
            "head": pl.Int64,
            "status_operand": pl.String,  # the head's cohort status on operand pairs (null: never active there)
            "status_style": pl.String,  # and on style pairs, think on
            "cohort_step_operand": pl.Int64,  # first step the emergence test calls it (null: not called)
            "cohort_step_style": pl.Int64,
            "called_operand": pl.Boolean,  # an emergence call (cohort_step not null) on operand pairs
            "called_style": pl.Boolean,
            "agree": pl.Boolean,  # called under both kinds or under neither
        }
    ),
    "think_overlap": pl.Schema(
        {
            # provenance "step" is the compared checkpoint
            "both": pl.Int64,  # heads active on think-on and think-off pairs
            "think_on_only": pl.Int64,
            "think_off_only": pl.Int64,
            "jaccard": pl.Float64,  # both / (both + on only + off only); null when no head is active
        }
    ),
    "failure_shares": pl.Schema(
        {
            # provenance "step": the checkpoint that generated the samples; random-head draws pooled
            "origin": pl.String,  # eval | intervention
            "kind": pl.String,
            "heads_from": pl.String,
            "alpha": pl.Float64,
            "difficulty": pl.String,
            **{category: pl.Float64 for category in FAILURE_CATEGORIES},  # share of samples per category
            "abandoned": pl.Float64,  # share of samples that were wrong although the trace had reached the answer
            "n_samples": pl.Int64,
            "n_correct": pl.Int64,
            "tokens": pl.Int64,  # generated tokens, all samples
            "tokens_per_correct": pl.Float64,  # tokens / n_correct (null when none is correct)
        }
    ),
    "calculation_heads": pl.Schema(
        {
            # one row per head of a starting model and difficulty, plus its "all" row (sparks.failures.calculation);
            # provenance "run": the model's role (base), "step" null
            "layer": pl.Int64,
            "head": pl.Int64,
            "difficulty": pl.String,  # a task difficulty, or "all": every eval sample
            "n_samples": pl.Int64,  # samples behind each share (the same with and without the ablation: paired)
            "calc_share": pl.Float64,  # share of all samples classified calculation_error with the head ablated alone
            "calc_share_base": pl.Float64,  # the same without ablation (same problems, same seed)
            "calc_rise": pl.Float64,  # calc_share - calc_share_base
            "accuracy": pl.Float64,  # share correct with the head ablated
            "accuracy_base": pl.Float64,
            "accuracy_change": pl.Float64,  # accuracy - accuracy_base
            "rank": pl.Int64,  # the head's rank by calc_rise on its "all" row (1 = largest; ties: lower layer, head)
            "selected": pl.Boolean,  # rank <= top_k and calc_rise > 0 on its "all" row (the same on every row of the head)
        }
    ),
    # The replicates stage (sparks.aggregate.replicates and .claims); provenance "run" is the
    # replicated run's name (runs.<name> with seeds), its replicates are runs of their own.
    "replicate_heads": pl.Schema(
        {
            "replicate": pl.String,  # the replicate's run name (sparks.layout.replicate)
            "seed": pl.Int64,  # its trainer seed (base seed for base replicates)
            "layer": pl.Int64,
            "head": pl.Int64,
            "status": pl.String,  # its cohort status there (emergent | transient | maintained | lost); null: never in that circuit
            "cohort_step": pl.Int64,
            "frequency": pl.Float64,  # share of that replicate's checkpoints with the head active
            "emergent": pl.Boolean,
            "n_replicates": pl.Int64,
            # over the replicates; null for base replicates, whose heads are not the same heads:
            "emergent_in": pl.Int64,  # replicates in which the head is emergent
            "share": pl.Float64,  # emergent_in / n_replicates
            "robust": pl.Boolean,  # share >= aggregate.robust_share: the heads the replicates' interventions target
        }
    ),
    "replicate_jaccard": pl.Schema(
        {
            "replicate_a": pl.String,
            "replicate_b": pl.String,
            "n_a": pl.Int64,  # emergent heads in each
            "n_b": pl.Int64,
            "n_shared": pl.Int64,
            "jaccard": pl.Float64,  # n_shared / union; null when both are empty
        }
    ),
    "replicate_counts": pl.Schema(
        {
            "status": pl.String,  # emergent | transient | maintained | lost
            "layer": pl.Int64,  # null: all layers
            "n_replicates": pl.Int64,
            "counts": pl.List(pl.Int64),  # heads with the status in each replicate, in seed order
            "mean": pl.Float64,
            "low": pl.Float64,  # 95 % t interval over replicates (null with one)
            "high": pl.Float64,
        }
    ),
    "replicate_timing": pl.Schema(
        {
            "replicate": pl.String,
            "seed": pl.Int64,  # trainer seed, or base seed for base replicates
            "n_emergent": pl.Int64,
            "first_cohort_step": pl.Int64,  # null: nothing emerged
            "median_cohort_step": pl.Float64,
            "last_cohort_step": pl.Int64,
        }
    ),
    "replicate_reward": pl.Schema(
        {
            "n_replicates": pl.Int64,
            "n_points": pl.Int64,  # checkpoint-to-checkpoint changes with a reward, all replicates
            "pooled_r": pl.Float64,  # Pearson r of the changes in emergent heads active and in reward, pooled (null: too few)
            "pooled_low": pl.Float64,  # block-bootstrap 95 % interval over checkpoints
            "pooled_high": pl.Float64,
            "replicate_r": pl.List(pl.Float64),  # each replicate's own r of changes, in seed order
            "mean_r": pl.Float64,
            "mean_r_low": pl.Float64,  # 95 % t interval over replicates
            "mean_r_high": pl.Float64,
        }
    ),
    "replicate_accuracy": pl.Schema(
        {
            # provenance "step" is the checkpoint step of each row (the same in every replicate)
            "difficulty": pl.String,
            "n_replicates": pl.Int64,
            "accuracy_mean": pl.Float64,
            "accuracy_low": pl.Float64,  # 95 % t interval over replicates
            "accuracy_high": pl.Float64,
            "accuracy_min": pl.Float64,
            "accuracy_max": pl.Float64,
            "change_mean": pl.Float64,  # accuracy minus the replicate's first checkpoint (the shared base)
            "change_low": pl.Float64,
            "change_high": pl.Float64,
        }
    ),
    "replicate_claims": pl.Schema(
        {
            "claim": pl.String,  # stable_heads | reward_tracking | gain_{difficulty} | ablation_cost | ablation_vs_{control} | overthinking_easy | think_off_broader
            "statement": pl.String,
            "statistic": pl.String,
            "n_replicates": pl.Int64,
            "value": pl.Float64,  # mean over replicates (pooled r for reward_tracking)
            "low": pl.Float64,  # 95 % interval
            "high": pl.Float64,
            "p_value": pl.Float64,  # one-sided, in the claim's direction, read back from the interval (null: not tested)
            "p_adjusted": pl.Float64,  # Holm over the run's tested claims (the verdict's)
            "verdict": pl.String,  # reproduced | contradicted | inconclusive | not testable here (sparks.aggregate.claims)
            "detail": pl.String,
        }
    ),
    "policy_comparison": pl.Schema(
        {
            # a head-policy run (runs.<name>.heads.compare_to) against its plain run, final checkpoints, replicates
            # paired by seed, paired on problems (sparks.aggregate.policies); provenance "run": the policy run
            "policy": pl.String,  # the head policy as the config names it, e.g. "freeze calculation_heads: 2"
            "plain": pl.String,  # the plain run it is compared with (heads.compare_to)
            # accuracy_{difficulty|all} | calculation_error_{difficulty} | no_trace_{difficulty} | heads_policy
            # | heads_plain | H1 | H2 | H3 | combined
            "name": pl.String,
            "kind": pl.String,  # accuracy | calculation_error | no_trace | heads | hypothesis
            "difficulty": pl.String,  # a task difficulty, "all" (accuracy over every one); null: heads, combined
            "statement": pl.String,
            "statistic": pl.String,
            "n_replicates": pl.Int64,
            "value": pl.Float64,  # changes: policy minus plain; hypotheses: positive supports; heads: emergent heads per replicate
            "low": pl.Float64,  # 95 % interval (crossed over replicates and problems)
            "high": pl.Float64,
            "p_value": pl.Float64,  # changes: two-sided; hypotheses: one-sided in their direction (null: not tested)
            "p_adjusted": pl.Float64,  # H1-H3: Holm over the group's hypotheses
            "verdict": pl.String,  # hypothesis rows: reproduced | contradicted | inconclusive | not testable here
            "detail": pl.String,  # heads rows: "a1.h1 (2/3), a3.h6 (1/3)" (replicates emergent in), or "none"
        }
    ),
    "interventions": pl.Schema(
        {
            # provenance "step": the final checkpoint (ablate) or the starting model (scale)
            "kind": pl.String,  # ablate | scale
            # none (unmodified model) | the intervened heads (evaluate.heads: emergent, think_off_only, think_on_only)
            # | a control of sparks.registry.CONTROLS:
            # same_layer (random heads, emergent heads' layers) | base_circuit (starting model's circuit) | outside (no circuit)
            "heads_from": pl.String,
            "seed": pl.Int64,  # the control's draw; null otherwise
            "heads": pl.String,  # e.g. "a3.h6 a1.h4"
            "alpha": pl.Float64,  # scale factor; null for ablation and for the unmodified model
            "difficulty": pl.String,
            "n_samples": pl.Int64,
            "accuracy": pl.Float64,  # mean over all samples
            "k_samples": pl.Int64,
            "pass_at_k": pl.Float64,
            "success_at_k": pl.Float64,  # as in passk
            "all_correct_at_k": pl.Float64,
        }
    ),
}

KEYS: dict[str, tuple[str, ...]] = {
    "teacher_traces": ("experiment", "run", "problem_id", "sample"),
    "problems": ("experiment", "task", "problem_id"),
    "pairs": ("experiment", "task", "difficulty", "think", "pair_id"),
    "accuracy": ("experiment", "run", "step", "task", "difficulty", "think"),
    "train_log": ("experiment", "run", "step"),
    "heads": ("experiment", "run", "step", "task", "layer", "head"),
    "edges": ("experiment", "run", "step", "task", "src", "dst", "dst_input"),
    "faithfulness": ("experiment", "run", "step", "task", "n_edges"),
    "pair_edges": ("experiment", "run", "step", "task", "difficulty", "think", "pair_id"),
    "head_effects": ("experiment", "run", "step", "task", "difficulty", "think", "pair_id", "layer", "head"),
    "circuit": ("experiment", "run", "step", "task", "layer", "head"),
    "think_modes": ("experiment", "run", "step", "task", "layer", "head"),
    "cohorts": ("experiment", "run", "task", "layer", "head"),
    "frequency": ("experiment", "run", "task", "layer", "head"),
    "importance": ("experiment", "run", "step", "task", "layer", "head"),
    "stability": ("experiment", "run", "step", "task", "layer", "head"),
    "similarity": ("experiment", "run", "step", "task"),
    "agreement": ("experiment", "run", "step", "task"),
    "null_calls": ("experiment", "run", "step", "task", "direction"),
    "planted": ("experiment", "run", "task", "detector"),
    "circuit_rules": ("experiment", "run", "step", "task", "rule"),
    "eval": ("experiment", "run", "step", "task", "sample_id", "k"),
    "interventions": ("experiment", "run", "step", "task", "kind", "heads_from", "seed", "alpha", "difficulty"),
    "intervention_samples": ("experiment", "run", "step", "task", "kind", "heads_from", "seed", "alpha", "sample_id", "k"),
    "failures": ("experiment", "run", "step", "task", "origin", "kind", "heads_from", "seed", "alpha", "sample_id", "k"),
    "failure_changes": ("experiment", "run", "task", "comparison", "alpha", "difficulty", "category"),
    "passk": ("experiment", "run", "step", "task", "difficulty", "k_samples"),
    "emergence": ("experiment", "run", "step", "task"),
    "think_overlap": ("experiment", "run", "step", "task"),
    "pair_kinds": ("experiment", "run", "task", "layer", "head"),
    "head_policy": ("experiment", "run", "policy", "layer", "head"),
    "failure_shares": ("experiment", "run", "step", "task", "origin", "kind", "heads_from", "alpha", "difficulty"),
    "calculation_heads": ("experiment", "run", "task", "layer", "head", "difficulty"),
    "replicate_heads": ("experiment", "run", "task", "replicate", "layer", "head"),
    "replicate_jaccard": ("experiment", "run", "task", "replicate_a", "replicate_b"),
    "replicate_counts": ("experiment", "run", "task", "status", "layer"),
    "replicate_timing": ("experiment", "run", "task", "replicate"),
    "replicate_reward": ("experiment", "run", "task"),
    "replicate_accuracy": ("experiment", "run", "step", "task", "difficulty"),
    "replicate_claims": ("experiment", "run", "task", "claim"),
    "policy_comparison": ("experiment", "run", "task", "name"),
}


def full_schema(table: str) -> pl.Schema:
    if table not in SCHEMAS:
        raise KeyError(f"unknown table {table!r}; known tables: {', '.join(SCHEMAS)}")
    return pl.Schema({**PROVENANCE, **SCHEMAS[table]})


def file_hash(paths: Iterable[Path]) -> str:
    """Short sha256 over files' bytes (e.g. a model's safetensors), for the model_hash column."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@functools.cache
def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """What makes the same config and seed give different numbers on another machine: the CPU
    (floating-point order of its kernels), the torch version and its threads, deterministic
    algorithms, the accelerator. Tables whose ``machine`` differs are replicates, not copies."""
    torch = sys.modules.get("torch")  # a stage that computed nothing with torch has not imported it
    parts = [f"{_cpu()} ({platform.machine()})"]
    try:
        parts.append(f"torch {importlib.metadata.version('torch')}")
    except importlib.metadata.PackageNotFoundError:
        parts.append("no torch")
    if torch is not None:
        parts.append(f"{torch.get_num_threads()} threads")
        parts.append(f"deterministic {'on' if torch.are_deterministic_algorithms_enabled() else 'off'}")
        parts.append(f"cuda {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu")
    return "; ".join(parts)


def with_provenance(
    df: pl.DataFrame,
    *,
    experiment: str,
    run: str | None,
    step: int | None,
    task: str | None,
    model_hash: str | None,
    config_hash: str,
) -> pl.DataFrame:
    """Prepend the provenance columns: one value for the whole table, except columns ``df``
    already has (a train log's per-row ``step``)."""
    values: dict[str, Any] = {
        "experiment": experiment,
        "run": run,
        "step": step,
        "task": task,
        "model_hash": model_hash,
        "config_hash": config_hash,
        "sparks_version": sparks.__version__,
        "created_at": datetime.now(UTC),
        "machine": machine(),
    }
    columns = [pl.lit(v, dtype=PROVENANCE[k]).alias(k) for k, v in values.items() if k not in df.columns]
    return df.with_columns(columns).select(list(PROVENANCE) + [c for c in df.columns if c not in PROVENANCE])


def validate(df: pl.DataFrame, table: str) -> pl.DataFrame:
    """Cast to the table's schema (column order fixed) and check the primary key is unique."""
    schema = full_schema(table)
    missing = [c for c in schema if c not in df.columns]
    extra = [c for c in df.columns if c not in schema]
    if missing or extra:
        raise ValueError(f"table {table!r}: missing columns {missing}, unexpected columns {extra}")
    df = df.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()])
    key = list(KEYS[table])
    if df.select(key).is_duplicated().any():
        dupes = df.filter(df.select(key).is_duplicated()).select(key).head(3).to_dicts()
        raise ValueError(f"table {table!r}: primary key {key} is not unique, e.g. {dupes}")
    return df


def write_table(df: pl.DataFrame, table: str, path: str | Path) -> Path:
    """Validate ``df`` against ``table``'s schema and write it atomically to ``path``."""
    df = validate(df, table)
    with atomic_file(path) as tmp:
        df.write_parquet(tmp)
    return Path(path)


# The rule whose jobs write each table (rules/*.smk; sparks.workflow lists the rules): an
# unreadable input names it, so that the fix is one `snakemake --forcerun <rule>` away.
WRITTEN_BY = {
    "problems": "prepare_data", "pairs": "prepare_data (style_pairs for style pairs)", "accuracy": "prepare_model",
    "teacher_traces": "teacher_traces", "train_log": "train",
    **{name: "attribute" for name in ("heads", "edges", "pair_edges", "head_effects", "faithfulness")},
    **{name: "think_modes" for name in ("think_modes", "think_overlap")},
    "pair_kinds": "pair_kinds", "head_policy": "head_policy",
    **{name: "aggregate" for name in (
        "circuit", "cohorts", "importance", "frequency", "stability", "agreement", "planted", "circuit_rules", "null_calls",
        "similarity", "emergence",
    )},
    "eval": "evaluate", "passk": "evaluate", "interventions": "intervene", "intervention_samples": "intervene",
    **{name: "failures" for name in ("failures", "failure_changes", "failure_shares")},
    "calculation_heads": "calculation_heads",
    **{name: "replicates" for name in (
        "replicate_heads", "replicate_jaccard", "replicate_counts", "replicate_timing", "replicate_reward", "replicate_accuracy",
    )},
    "replicate_claims": "claims",
    "policy_comparison": "policy_comparison",
}  # fmt: skip


class TableError(ValueError):
    """An input file that is not a readable table of the kind its flag says: one line naming the
    file, the table and the rule that writes it."""

    def __init__(self, path: str | Path, table: str, reason: str):
        rule = WRITTEN_BY.get(table, "its stage")
        super().__init__(
            f"{path} is not a readable {table} table ({reason}); it is written by rule {rule}: "
            f"rerun it (snakemake --forcerun {rule.split()[0]}) or pass the right file"
        )


def _reason(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__


def check_files(paths: str | Path | list[str | Path], table: str) -> None:
    """Check that each file exists, is Parquet (its footer reads) and has ``table``'s columns,
    without reading its data (for stages that read columns of large tables themselves)."""
    for path in paths if isinstance(paths, list) else [paths]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist; run the stage that writes it first (snakemake {path})")
        try:
            columns = pl.read_parquet_schema(path)
        except Exception as err:  # polars raises several kinds for a damaged file
            raise TableError(path, table, _reason(err)) from None
        missing = [c for c in full_schema(table) if c not in columns]
        if missing:
            raise TableError(path, table, f"missing columns {missing}")


def read_table(paths: str | Path | list[str | Path], table: str) -> pl.DataFrame:
    """Read one file, a glob or a list of files, and validate against ``table``'s schema; a file
    that is missing, damaged or of another table fails naming it (:class:`TableError`)."""
    files = [str(p) for p in paths] if isinstance(paths, list) else [str(paths)]
    if not any(ch in f for f in files for ch in "*?["):  # a glob is checked as it is read
        check_files(files, table)
    try:
        frame = pl.scan_parquet(files if isinstance(paths, list) else files[0]).collect()
    except Exception as err:
        raise TableError(", ".join(files), table, _reason(err)) from None
    try:
        return validate(frame, table)
    except (ValueError, pl.exceptions.PolarsError) as err:
        raise TableError(", ".join(files), table, _reason(err)) from None


def files_by_step(paths: list[str | Path], table: str, steps: Iterable[int]) -> dict[int, str]:
    """step -> the file among ``paths`` that holds it (each file's own provenance ``step``), checked
    to cover exactly the manifest's ``steps``, each once."""
    steps = list(steps)
    found: dict[int, str] = {}
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist; run the stage that writes it first (snakemake {path})")
        for step in pl.read_parquet(path, columns=["step"]).unique()["step"]:
            if step in found:
                raise ValueError(f"{table} tables {found[step]} and {path} both hold step {step}; pass each checkpoint once")
            found[step] = str(path)
    if sorted(found) != sorted(steps):
        raise ValueError(
            f"the {table} tables hold steps {sorted(found)}, the manifest lists {sorted(steps)}; pass one per checkpoint"
        )
    return {step: found[step] for step in steps}
