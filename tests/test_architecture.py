"""The package's shape: no import circle, nothing below the stages imports a stage, and only
sparks.layout spells a path under results/."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

SRC = REPO / "src"
STAGES = ("prepare", "train", "attribute", "aggregate", "evaluate", "failures", "plot")


def module_of(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the sparks modules it imports (at any depth: inside functions too)."""
    files = {module_of(p): p for p in (SRC / "sparks").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            targets |= {n for n in names if n in files and n.startswith("sparks")}
        # "from sparks.a import b" names module sparks.a.b when it is one, else a name in sparks.a
        graph[module] = {t for t in targets if not any(o != t and o.startswith(t + ".") for o in targets)} - {module}
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt, stack + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    assert len(graph) > 40 and graph["sparks.cli"]  # the walk found the package
    assert find_circle(graph) is None, " -> ".join(find_circle(graph))


def test_the_circle_finder_finds_one():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


ABOVE = ("sparks.cli", "sparks.plan", "sparks.workflow")


def test_nothing_imports_what_sits_above_the_stages():
    assert not {m: t for m, t in import_graph().items() if m not in ABOVE and set(t) & set(ABOVE)}


def test_nothing_below_the_stages_imports_a_stage():
    # sparks.cli, sparks.plan and sparks.workflow sit above the stages (the commands, the workflow's cost, its graph)
    below = {m: targets for m, targets in import_graph().items() if stage_of(m) is None and m not in ABOVE}
    upward = {m: sorted(t for t in targets if stage_of(t)) for m, targets in below.items()}
    assert not {m: t for m, t in upward.items() if t}


def test_stages_import_no_other_stage():
    across = {m: sorted(t for t in targets if stage_of(t) not in (None, stage_of(m))) for m, targets in import_graph().items()}
    assert not {m: t for m, t in across.items() if t and stage_of(m)}


def test_config_imports_no_stage():
    assert not [t for t in import_graph()["sparks.config"] if stage_of(t)]


def test_no_import_runs_back_up_a_layer():
    """The config is below the model library (model/tiny.py views a config section; where models
    come from is sparks.sources, below both), and the data
    library below generation (generate reads answers; no data module generates)."""
    graph = import_graph()
    assert not [t for t in graph["sparks.config"] if t.startswith("sparks.model")]
    assert not [m for m, targets in graph.items() if m.startswith("sparks.data") and "sparks.generate" in targets]


def test_only_the_layout_spells_a_results_path():
    offenders = []
    for path in (SRC / "sparks").rglob("*.py"):
        if path.name == "layout.py" and path.parent.name == "sparks":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
            if "results/" in text or text.strip("/") == "results":
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders


def test_every_stage_has_a_thin_cli_module():
    for stage in STAGES:
        cli = SRC / "sparks" / stage / "cli.py"
        assert cli.is_file(), stage
        tree = ast.parse(cli.read_text())
        top_level_imports = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module and stage_of(n.module)]
        assert not top_level_imports, f"{stage}/cli.py imports its stage at import time (do it inside main)"
        assert "make_parser" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_layout_patterns_and_paths_agree():
    from sparks import layout

    assert layout.attribution("heads") == "results/{exp}/heads/{run}/{step}/{task}.parquet"
    assert layout.attribution("heads", "sft", 30, "arith", "x") == "results/x/heads/sft/30/arith.parquet"
    assert (
        layout.attribution_in_mode("edges", True, False, "sft", 0, "arith", "x") == "results/x/think/on/edges/sft/0/arith.parquet"
    )
    assert layout.attribution_in_mode("edges", False, False, "sft", 0, "arith", "x") == layout.attribution(
        "edges", "sft", 0, "arith", "x"
    )
    assert layout.log("attribute", "{run}", "{step}") == "results/{exp}/logs/attribute/{run}/{step}.log"
    import pytest

    with pytest.raises(KeyError, match="known here"):
        layout.circuits("cohort")
