"""The printed tables and the bar chart of a run."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from .formats import PACKAGES
from .run import BenchResult
from .strategies import BASELINE, N_ROWS, PARTIAL_TREES


#: (figure key, column title, kind) of the two printed tables.
COLD_COLUMNS = [
    ("cold_start", "cold start", "s"),
    ("interpreter", "interpreter", "s"),
    ("import", "import", "s"),
    ("load", "load", "s"),
    ("first_predict", "1st predict", "s"),
]
AFTER_COLUMNS = [
    ("size", "file size", "bytes"),
    ("save", "save", "s"),
    ("partial", "partial load", "s"),
    ("predict_1", "predict 1 row", "s"),
    ("predict_1000", f"predict {N_ROWS} rows", "s"),
    ("load_rss", "load peak mem", "bytes"),
    ("mismatch", f"differ from sklearn (of {N_ROWS})", "count"),
]


def human_bytes(n: float) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def human_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def _cell(figures: Mapping[str, float], baseline: Mapping[str, float] | None, key: str, kind: str) -> str:
    if key not in figures:
        return "-"
    value = figures[key]
    if kind == "count":
        return f"{value:.0f}"
    text = human_bytes(value) if kind == "bytes" else human_seconds(value)
    if key == "partial" and figures.get("partial_is_full"):
        text += "*"
    if baseline is not None and key in baseline and baseline[key] > 0:
        text += f" ({value / baseline[key]:.2f}x)"
    return text


def format_tables(result: BenchResult, *, markdown: bool = False) -> str:
    """The two tables (cold start; size, memory and latency after load) as text or markdown."""
    baseline = result.figures.get(BASELINE)
    model = result.model
    lines = [
        f"{model.get('label', model['estimator'])}: {model['estimator']}, {model['n_trees']} trees, "
        f"{model['n_nodes']:,} nodes, {human_bytes(model['nbytes'])} in memory; "
        f"medians of {result.repeat} fresh processes; (ratio) = strategy / {BASELINE}, lower is better",
    ]
    if result.environment:
        lines.append(environment_line(result.environment))
    lines.append("")
    tables = (("cold start: fresh process to first one-row prediction", COLD_COLUMNS), ("size, memory and latency", AFTER_COLUMNS))
    for i, (title, columns) in enumerate(tables):
        header = ["strategy"] + [c[1] for c in columns]
        body = [[name] + [_cell(fig, baseline, key, kind) for key, _, kind in columns] for name, fig in result.figures.items()]
        if i == 0:  # one line per skipped strategy, with the reason
            body += [[name] + [f"skipped: {reason}"] + [""] * (len(columns) - 1) for name, reason in result.skipped.items()]
        lines.append(f"**{title}**\n" if markdown else title)
        lines.extend(_render(header, body, markdown=markdown))
        lines.append("")
    if any(f.get("partial_is_full") for f in result.figures.values()):
        lines.append(f"partial load: the first {_partial_k(result)} trees (gradient boosting: stages); * a full load, the format cannot do less")
    return "\n".join(lines).rstrip() + "\n"


def environment_line(env: Mapping[str, str]) -> str:
    """One line: versions, how treeshard is installed, and how the children got their bytecode."""
    versions = ", ".join(f"{name} {env[key]}" for name, key in (("Python", "python"), ("numpy", "numpy"), ("sklearn", "sklearn"), ("treeshard", "treeshard")) if key in env)
    peers = ", ".join(f"{d} {env[d]}" for d in sorted({d for d, _ in PACKAGES.values()}) if env.get(d, "not installed") != "not installed")
    parts = [versions, f"treeshard from {env.get('treeshard_install', '?')}", f"bytecode {env.get('bytecode', '?')}"]
    if peers:
        parts.insert(1, peers)
    return "environment: " + "; ".join(parts)


def _partial_k(result: BenchResult) -> int:
    return min(PARTIAL_TREES, int(result.model.get("n_units", PARTIAL_TREES)))


def _render(header: list[str], body: list[list[str]], *, markdown: bool) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in body]
        return out
    widths = [max(len(row[i]) for row in [header, *body] if not (row[1].startswith("skipped") and i > 0)) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for row in body:
        if row[1].startswith("skipped"):
            out.append(row[0].ljust(widths[0]) + "  " + row[1])
            continue
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return out


def plot(result: BenchResult, path: str | os.PathLike) -> None:
    """A bar chart of the main figures, one panel each (needs matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "--plot needs matplotlib: pip install 'treeshard[bench]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.figures)
    y = list(range(len(names)))[::-1]
    panels = [
        ("cold start to first prediction (s)", None),
        ("file size (MB)", ("size", 1 / 2**20)),
        ("load peak memory (MB)", ("load_rss", 1 / 2**20)),
        ("load (s, fresh process)", ("load", 1.0)),
        ("predict 1 row (ms)", ("predict_1", 1e3)),
        (f"predict {N_ROWS} rows (ms)", ("predict_1000", 1e3)),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(18, 4 + 0.75 * len(names)), constrained_layout=True)
    colors = {"pickle": "#888888", "joblib": "#4c72b0", "skops": "#dd8452", "treeshard": "#55a868"}

    def color(name: str) -> str:
        return next((c for prefix, c in colors.items() if name.startswith(prefix)), "#c44e52")

    for ax, (title, spec) in zip(axes.ravel(), panels):
        if spec is None:
            parts = [("interpreter", "#bbbbbb"), ("import", "#8172b3"), ("load", "#4c72b0"), ("first_predict", "#55a868")]
            left = [0.0] * len(names)
            for key, c in parts:
                widths = [result.figures[n].get(key, 0.0) for n in names]
                ax.barh(y, widths, left=left, color=c, label=key.replace("_", " "))
                left = [a + b for a, b in zip(left, widths)]
            base = result.figures.get(BASELINE, {}).get("cold_start")
            for yi, n in zip(y, names):
                ax.text(result.figures[n]["cold_start"], yi, " " + _label(result.figures[n]["cold_start"], base), va="center", fontsize=11)
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=4, fontsize=11, frameon=False)
        else:
            key, scale = spec
            values = [result.figures[n].get(key, math.nan) * scale for n in names]
            ax.barh(y, values, color=[color(n) for n in names])
            base = result.figures.get(BASELINE, {}).get(key)
            base = None if base is None else base * scale
            for yi, v in zip(y, values):
                if not math.isnan(v):
                    ax.text(v, yi, " " + _label(v, base), va="center", fontsize=11)
        if base:
            ax.axvline(base, color="black", linestyle="--", linewidth=1)
        ax.set_title(title, fontsize=14)
        ax.set_yticks(y, names, fontsize=12)
        ax.tick_params(axis="x", labelsize=11)
        ax.margins(x=0.32)
    model = result.model
    fig.suptitle(
        f"{model.get('label', model['estimator'])}: {model['estimator']}, {model['n_trees']} trees, "
        f"{human_bytes(model['nbytes'])} in memory; medians of {result.repeat} fresh processes "
        f"(dashed line and ratios: vs {BASELINE} uncompressed)",
        fontsize=15,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _label(value: float, base: float | None) -> str:
    """A bar's label: three significant digits, never in exponent form.

    >>> _label(2048.4, 1024.2), _label(0.01234, None), _label(12.0, None)
    ('2,048 (2.00x)', '0.0123', '12')
    """
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if base:
        text += f" ({value / base:.2f}x)"
    return text
