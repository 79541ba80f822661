"""What every figure shares: the Agg backend (set once, here), the seaborn theme, the default
size, and writing a figure out (files, atomically; or SVG text for the report to embed)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.figure import Figure

from sparks.atomic import atomic_file

FIGSIZE = (8, 6)


def theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem``.png and ``stem``.svg atomically; closes the figure."""
    return save_files(fig, [stem.with_suffix(".png"), stem.with_suffix(".svg")])


def save_files(fig: Figure, paths: list[Path]) -> list[Path]:
    """Write the figure to each of ``paths`` (format from the suffix) atomically; closes it."""
    for path in paths:
        with atomic_file(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip("."))
    plt.close(fig)
    return list(paths)


def svg(fig: Figure) -> str:
    """The figure as SVG text (vector, sharp at any zoom); closes it."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
