"""A report from run directories: load, check, group, then write report.md, summary.csv, runs.csv
and the plots (PNG and SVG) into one folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

from pileablate import runfolder
from pileablate.writes import writing
from pileablate.runfolder import STUDY_FILE
from pileablate.report.aggregate import PARAMS_FLAG_FRACTION, Configuration, group_runs
from pileablate.report.checks import (
    MIN_PLAUSIBLE_BITS_PER_BYTE,
    OVERFIT_GAP_NATS,
    OVERFIT_GAP_RELATIVE,
    budget_flags,
    describe_budget,
)
from pileablate.report.listings import (
    EXCLUDED_HEADERS,
    TUNING_HEADERS,
    excluded_rows,
    rich_grid,
    tuning_rows,
)
from pileablate.report.runs import Run, check_same_data, load_runs
from pileablate.report.stats import ALPHA, SIGNIFICANCE_RULE
from pileablate.report.table import (
    RUN_COLUMNS,
    SUMMARY_COLUMNS,
    markdown_grid,
    markdown_table,
    rich_table,
    run_markdown_table,
    run_rows,
    summary_rows,
    to_csv,
)
from pileablate.report.tuning import Tuning, tuning_results
from pileablate.report.verdict import (
    DEFAULT_MARGIN,
    SEEDS_CAP,
    SequentialDesign,
    Verdict,
    check_margin,
    level,
    rule_text,
    summary_line,
    verdicts_from_differences,
)

# Written by `ablate` into its runs folder: the margin and, for `--seeds auto`, the sequential design.

PLOTS = ("loss_vs_tokens", "delta_over_training", "final_val_loss", "runs_grid", "loss_vs_time", "lr_schedule")
TUNING_PLOT = "lr_sensitivity"  # drawn when the runs include learning-rate tuning runs


@dataclass
class Report:
    runs: list[Run]  # the runs the report compares (tuning runs are apart)
    configurations: list[Configuration]
    notes: list[str] = field(default_factory=list)   # mixed data (only with --mix-data)
    warnings: list[str] = field(default_factory=list)  # report-wide flags: unequal budgets, no baseline, lr at an edge
    delta_key: str = "final_val_loss"
    tuning: list[Tuning] = field(default_factory=list)
    points: list = field(default_factory=list)  # a sweep's points (report.scaling.Point), in axis order
    scaling: Optional[object] = None            # a sweep's Δ along its axes (report.scaling.Scaling)
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # by configuration label ("point/label" in a sweep)
    margin: float = DEFAULT_MARGIN              # nats/token (the unit of Δ) for "no effect"
    design: Optional[SequentialDesign] = None   # the study's sequential design, from study.json

    @property
    def delta_metric(self) -> str:
        return "val bits/byte" if self.delta_key == "val_bits_per_byte" else "val loss (nats/token)"

    @property
    def tuning_runs(self) -> list[Run]:
        return [r for t in self.tuning for r in t.runs]

    def headline(self) -> str:
        """The verdicts in one line: 'rope helps by 0.11 [0.09, 0.13]; rmsnorm: no effect beyond ±0.01; ...'."""
        apart = [f"{c.name}: not comparable ({'; '.join(c.not_comparable)})" for c in self.configurations
                 if c.not_comparable]
        return "; ".join([summary_line(self.verdicts)] * bool(self.verdicts or not apart) + apart)

    def rule(self) -> str:
        """How the verdicts were reached, including the sequential rule of a `--seeds auto` study."""
        unit = "bits/byte" if self.delta_key == "val_bits_per_byte" else "nats/token"
        return rule_text(self.margin, self.design, unit) + (f" {self.design.describe()}" if self.design else "")

    def table(self):
        """The verdicts, the compact results table, then (when there are any) the runs that do not count
        and the tuning."""
        from rich.console import Group
        from rich.text import Text

        counted = sum(len(c.counted) for c in self.configurations)
        parts = [Text.assemble(("Verdict: ", "bold"), self.headline()),
                 Text(f"(no effect: within ±{self.margin:g} of the baseline; the rule and every column are in "
                      "report.md)", style="dim")] if self.configurations else []
        parts += [rich_table(self.configurations, title=f"pileablate report: {counted} of {len(self.runs)} runs "
                            f"count, Δ on final {self.delta_metric}")]
        excluded = excluded_rows(self.configurations)
        if excluded:
            parts.append(rich_grid("Runs that do not count (in no mean, Δ or test)", EXCLUDED_HEADERS, excluded))
        if self.tuning:
            parts.append(rich_grid("Learning-rate tuning (loss on the tuning windows, held out of the validation split)",
                                   TUNING_HEADERS,
                                   tuning_rows(self.tuning), style="bold"))
        if self.scaling is not None:
            from pileablate.report.scaling_output import rich_scaling

            parts.append(rich_scaling(self.scaling))
        return Group(*parts)


def _baseline_warnings(configs: list[Configuration]) -> list[str]:
    baseline = next((c for c in configs if c.is_baseline), None)
    if baseline is None:
        return ["no baseline (a run without modifications) among the runs: no Δ"]
    if not baseline.counted:
        return ["no baseline run counts (see the runs that do not count): no Δ"]
    return []


def read_study(paths: Iterable[Path]) -> dict:
    """The study.json of the first report folder that has one ({} when none does)."""
    for path in paths:
        design = runfolder.read_study(path)
        if design is not None:
            return design
    return {}


def build_report(paths: Iterable[Path], mix_data: bool = False, runs: Optional[list[Run]] = None,
                 margin: Optional[float] = None) -> Report:
    """Load and check the runs under `paths` (or the given runs); refuses mixed data unless `mix_data`.
    Learning-rate tuning runs (role "tuning") are kept apart from the runs the report compares.
    Each comparison gets a verdict at `margin` (default: study.json's, else DEFAULT_MARGIN), under the
    sequential design study.json records."""
    paths = [Path(p) for p in paths]
    study = read_study(paths)
    if margin is not None:
        margin = check_margin(margin)
    else:
        margin = check_margin(study.get("margin", DEFAULT_MARGIN), f"the margin in {STUDY_FILE}")
    design = SequentialDesign.from_json(study.get("sequential"))
    runs = runs if runs is not None else load_runs(paths)
    report = _build(runs, mix_data, common_seeds=design is not None)
    report.margin, report.design = margin, design
    report.verdicts = _verdicts(report, margin, design)
    return report


def _build(runs: list[Run], mix_data: bool, common_seeds: bool = False) -> Report:
    compared = [r for r in runs if r.role != "tuning"]
    notes = check_same_data(compared, mix_data)
    mixed_tokenizers = len({r.tokenizer_id for r in compared if r.fingerprint}) > 1
    delta_key = "val_bits_per_byte" if mixed_tokenizers else "final_val_loss"
    if any(r.point for r in runs):
        return _sweep_report(runs, compared, notes, delta_key, common_seeds)
    configs = group_runs(compared, delta_key=delta_key, common_seeds=common_seeds)
    tuning = tuning_results([r for r in runs if r.role == "tuning"], _names(configs))
    warnings = budget_flags(compared) + (_baseline_warnings(configs) if configs else [])
    warnings += [flag for t in tuning for flag in [t.edge_flag(), t.problem] if flag]
    return Report(runs=compared, configurations=configs, notes=notes, warnings=warnings, delta_key=delta_key,
                  tuning=tuning)


def _verdicts(report: Report, margin: float, design: Optional[SequentialDesign]) -> dict[str, Verdict]:
    """A verdict per comparison with a Δ; one family, as Holm's correction is (every point of a sweep)."""
    groups = [p.configurations for p in report.points] if report.points else [report.configurations]
    compared, seeds = [], []
    for configs in groups:
        baseline = next((c for c in configs if c.is_baseline), None)
        for c in configs:
            if c.is_baseline or c.delta is None or baseline is None:
                continue
            compared.append(c)
            # Pairs for a paired test; with Welch the smaller side.
            seeds.append(min(len(c.values(report.delta_key)), len(baseline.values(report.delta_key))))
    verdicts = verdicts_from_differences([c.delta for c in compared], seeds, margin, design)
    for c, v in zip(compared, verdicts):
        c.verdict = v
        # The star is the verdict's test: at a sequential study's per-look level, not at 5% for every look.
        c.delta = replace(c.delta, level=level(design))
    return {c.name: v for c, v in zip(compared, verdicts)}


def _names(configs: list[Configuration]) -> dict[tuple, str]:
    names: dict[tuple, str] = {}
    for config in configs:
        names.setdefault(config.mods, config.name)
    return names


def _sweep_report(runs: list[Run], compared: list[Run], notes: list[str], delta_key: str,
                  common_seeds: bool = False) -> Report:
    """A sweep's runs (`ablate --sweep`): every figure, flag and tuning choice point by point, never
    across points; then the scaling analysis along the axes."""
    from pileablate.report.scaling import group_points, scaling

    configs, points = group_points(compared, delta_key, common_seeds)
    warnings, tuning = [], []
    for point in points:
        members = [r for r in compared if (r.point or "(no point)") == point.label]
        warnings += [f"{point.label}: {w}" for w in budget_flags(members) + _baseline_warnings(point.configurations)]
        point_tuning = [r for r in runs if r.role == "tuning" and (r.point or "(no point)") == point.label]
        tuning += tuning_results(point_tuning, _names(point.configurations))
    for t in tuning:  # a tuning run's own name says its point (micro/tune-...), its group may not
        point = t.runs[0].point
        if point and not t.name.startswith(f"{point}/"):
            t.name = f"{point}/{t.name}"
    warnings += [flag for t in tuning for flag in [t.edge_flag(), t.problem] if flag]
    return Report(runs=compared, configurations=configs, notes=notes, warnings=warnings, delta_key=delta_key,
                  tuning=tuning, points=points, scaling=scaling(points))


def _atomic_write(path: Path, text: str) -> None:
    from pileablate.jsonfile import write_text_atomic

    write_text_atomic(path, text)  # a full disk leaves the previous file whole


def _header(report: Report) -> list[str]:
    runs = report.runs or report.tuning_runs
    first = next((r for r in runs if r.fingerprint), runs[0])
    data = first.data
    tok = data.get("tokenizer") or {}
    counted = sum(len(c.counted) for c in report.configurations)
    lines = [
        "# pileablate report",
        "",
        *([f"**Verdict:** {report.headline()}.", "", report.rule(), ""] if report.configurations else []),
        f"{len(report.runs)} runs in {len(report.configurations)} configurations"
        + (f", and {len(report.tuning_runs)} learning-rate tuning runs" if report.tuning else "")
        + f", made {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `pileablate report`.",
        "",
        (f"- Data: `{data.get('dir', '?')}` (fingerprint `{(first.fingerprint or 'unknown')[:16]}`), "
         f"tokenizer `{tok.get('name') or tok.get('spec') or '?'}` (vocabulary {tok.get('n_vocab', '?')}).")
        if not report.notes else "- Data: MIXED, see below.",
        _budget_line(report, first),
        f"- Runs that count: {counted} of {len(report.runs)} (finished their budget, passed their guards); "
        "the others are listed apart and enter no figure.",
        f"- Δ vs baseline: difference of the mean final {report.delta_metric} to the baseline's "
        "(negative is better).",
    ]
    if report.tuning:
        lines.append("- Learning rates: chosen per configuration on the tuning windows (see Learning-rate tuning).")
    lines += [f"- **Mixed data (--mix-data):** {note}." for note in report.notes]
    return lines


def _budget_line(report: Report, first: Run) -> str:
    if report.points:  # a sweep: one budget per point (equal within each, as the flags check)
        budgets = []
        for point in report.points:
            run = next((r for c in point.configurations for r in c.runs), None)
            budgets.append(f"{point.label} {describe_budget(run.budget) if run else '?'}")
        return f"- Budget per run, by sweep point: {'; '.join(budgets)}."
    return f"- Budget per run: {describe_budget(first.budget) if not budget_flags(report.runs) else 'UNEQUAL, see flags'}."


def _statistics(configs: list[Configuration]) -> list[str]:
    """One line per comparison: Δ, its interval, which test and why, p and the Holm-adjusted p."""
    lines = ["## Statistics", "", SIGNIFICANCE_RULE, "", INTERVAL_WITHOUT_STAR, ""]
    for c in configs:
        d = c.delta
        if c.is_baseline:
            continue
        if c.not_comparable:
            lines.append(f"- {c.name}: no Δ: not comparable with the baseline ({'; '.join(c.not_comparable)}); "
                         "only the modifications, the learning rate and the seed may differ.")
        elif d is None:
            lines.append(f"- {c.name}: no Δ (no run of it, or of the baseline, counts).")
        elif d.p is None:
            lines.append(f"- {c.name}: Δ {d.delta:+.4f}; {d.why}.")
        else:
            t = "" if d.t is None else f"t = {d.t:.3f}, "
            lines.append(f"- {c.name}: Δ {d.delta:+.4f}, 95% CI [{d.ci[0]:+.4f}, {d.ci[1]:+.4f}]; {d.why}: "
                         f"{t}df = {d.df:.3g}, p = {d.p:.3g}, Holm-adjusted p = {d.p_adjusted:.3g} ({_significance(d)})"
                         + _verdict_detail(c.verdict) + ".")
    return lines + [""]


def _significance(d) -> str:
    """'significant: Holm-adjusted p below 5%', or not, at a sequential study's per-look level; beside an
    interval that excludes zero, why the two do not disagree: the interval is this comparison's alone."""
    level = f"{d.level:.2%}".replace(".00%", "%") + (", the sequential design's per-look level" if d.level < ALPHA else "")
    if d.significant:
        return f"significant: Holm-adjusted p below {level}"
    alone = "; the 95% interval excludes zero for this comparison alone" if d.ci and d.ci[0] * d.ci[1] > 0 else ""
    return f"not significant: Holm-adjusted p not below {level}{alone}"


# One train loss everywhere (tables, CSVs, flags), said once in report.md.
TRAIN_LOSS_DEFINITION = ("Train loss, in every table and CSV of this report: the mean over each run's last 10% of "
                         "logged steps (at least 5), as one batch's loss is too noisy to compare.")

INTERVAL_WITHOUT_STAR = (
    "An interval that excludes zero without a star is no contradiction: the 95% interval is that comparison's "
    "alone, while the star (and a helps/hurts verdict) needs the p-value corrected for all the report's "
    "comparisons (Holm), and for every planned look of a sequential study.")


def _verdict_detail(verdict: Optional[Verdict]) -> str:
    if verdict is None:
        return ""
    mde = "" if verdict.mde is None else (f"; smallest effect {verdict.seeds} seeds detect at 80% power: "
                                          f"{verdict.mde:.3g}")
    need = ""
    if verdict.word == "undecided":
        need = (f"; about {verdict.seeds_needed} seeds would decide" if verdict.seeds_needed
                else f"; more than {SEEDS_CAP} seeds would be needed")
    return f"; verdict: **{verdict.word}**{need}{mde}"


def _not_counted(configs: list[Configuration]) -> list[str]:
    lines = ["## Runs that do not count", ""]
    rows = excluded_rows(configs)
    if not rows:
        return lines + ["None: every run finished its budget and passed its guards.", ""]
    return lines + [markdown_grid(EXCLUDED_HEADERS, rows), "",
                    "They enter no mean, standard deviation, Δ, interval or test; their curves stay in the plots.", ""]


def _tuning(report: Report) -> list[str]:
    if not report.tuning:
        return []
    return ["## Learning-rate tuning", "", markdown_grid(TUNING_HEADERS, tuning_rows(report.tuning)), "",
            "Each configuration trains at the lr with the lowest mean final loss on the tuning windows over its "
            "tuning seeds (the tuning windows are held-out windows of the validation split, disjoint from the "
            "validation windows scored above: no token a result is scored on chose a rate), among the "
            "rates at which every tuning seed finished; a choice at the smallest or largest rate tried is flagged.",
            ""]


def _flags(report: Report) -> list[str]:
    flagged = [(c.name, f) for c in report.configurations for f in c.flags]
    lines = ["## Flags", ""]
    if not flagged and not report.warnings:
        lines.append("None: every run finished its budget, passed its guards, and shows no over-fitting "
                     "or impossible loss; every configuration is the baseline's size.")
    lines += [f"- **{warning}**" for warning in report.warnings]
    lines += [f"- {name}: {flag}" for name, flag in flagged]
    return lines + [
        "",
        f"Rules: over-fitting when the train loss (as defined under Results) is more than "
        f"{OVERFIT_GAP_NATS} nats/token and {OVERFIT_GAP_RELATIVE:.0%} below the final validation loss; "
        f"an impossible loss is one below {MIN_PLAUSIBLE_BITS_PER_BYTE} bits per byte (no model compresses "
        "text that well: a sign of leaked future tokens); sizes differ when a configuration's active "
        f"parameters are more than {PARAMS_FLAG_FRACTION:.0%} away from the baseline's; guards and flags come "
        "from each run's summary.",
        "",
    ]


CAPTIONS = {
    "loss_vs_tokens": "Validation loss against tokens: one line per configuration (mean over its seeds, band from "
                      "the lowest to the highest seed), the baseline black and on top, zoomed to where they differ",
    "delta_over_training": "Δ against the baseline over training, paired by seed (mean and its 95% interval): "
                           "whether a gap is opening or closing at the budget's end",
    "final_val_loss": "Final Δ against the baseline: 95% interval, each seed's paired difference as a dot, n seeds "
                      "and the verdict",
    "runs_grid": "Each configuration against the baseline, one panel each (seeds thin, shared zoomed axis)",
    "loss_vs_time": "Validation loss against training time",
    "lr_schedule": "Learning-rate schedules, computed from step 0",
    TUNING_PLOT: "Learning-rate sensitivity: final tuning loss against lr, every rate tried labelled, the chosen starred",
}


def _results_tables(report: Report) -> list[str]:
    if not report.points:
        return [markdown_table(report.configurations)]
    lines = []
    for point in report.points:  # a sweep: one table per point, each against its own baseline
        lines += [f"### {point.label}", "", markdown_table(point.configurations), ""]
    return lines[:-1]


def markdown(report: Report, plot_dir: Optional[str] = "plots") -> str:
    lines = _header(report)
    if not report.configurations:
        lines += ["", "No runs to compare yet: only learning-rate tuning runs."]
    if report.scaling is not None:
        from pileablate.report.scaling_output import markdown_section

        comparisons = sum(1 for c in report.configurations if c.delta is not None and c.delta.p is not None)
        lines += [""] + markdown_section(report.scaling, comparisons, plot_dir)
    lines += ["", "## Results", "", *_results_tables(report), "",
              TRAIN_LOSS_DEFINITION + " Means over the seeds that count, ± one sample standard deviation. "
              "Δ params: active parameters "
              "against the baseline's (the quantity `--match-params` matches; total parameters for all but "
              "moe). The test column says which test gave the interval and p, and why.", ""]
    lines += _statistics(report.configurations) + _not_counted(report.configurations) + _tuning(report)
    lines += _flags(report)
    if plot_dir is not None:
        lines += ["## Plots", ""]
        for stem in (PLOTS if report.configurations else ()) + ((TUNING_PLOT,) if report.tuning else ()):
            lines += [f"### {CAPTIONS[stem]}", "", f"![{CAPTIONS[stem]}]({plot_dir}/{stem}.png)", ""]
    lines += ["## Runs", "", run_markdown_table(report.runs), ""]
    if report.tuning:
        lines += ["### Tuning runs", "", run_markdown_table(report.tuning_runs), ""]
    return "\n".join(lines)


REPORT_LOCK = ".report.lock"


def write_report(report: Report, out_dir: Path, plots: bool = True) -> dict[str, Path]:
    """Write every file of the report; returns name -> path (plots as `plots/<stem>.png`). Two processes
    ending one study at once (two `ablate` commands on one runs folder) write it one after the other."""
    from pileablate.runlock import exclusive

    out_dir = Path(out_dir)
    with writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(out_dir / REPORT_LOCK), writing(out_dir):  # a plot that fails to write is said as the folder
        return _write_files(report, out_dir, plots)


def _write_files(report: Report, out_dir: Path, plots: bool) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if plots:
        from pileablate.report.plots import build_figures, save_figure

        from pileablate.report.scaling_plots import scaling_figures

        figures = {**build_figures(report.configurations, report.delta_key, report.tuning, report.margin),
                   **scaling_figures(report.scaling)}
        for stem, fig in figures.items():
            files[stem] = save_figure(fig, out_dir / "plots", stem)[0]
    metric = "val_bits_per_byte" if report.delta_key == "val_bits_per_byte" else "final_val_loss"
    _atomic_write(out_dir / "summary.csv", to_csv(summary_rows(report.configurations, metric), SUMMARY_COLUMNS))
    _atomic_write(out_dir / "runs.csv", to_csv(run_rows(report.configurations, report.tuning), RUN_COLUMNS))
    if report.scaling is not None:
        from pileablate.report.scaling_output import SCALING_CSV_COLUMNS, csv_rows

        _atomic_write(out_dir / "scaling.csv", to_csv(csv_rows(report.scaling), SCALING_CSV_COLUMNS))
        files["scaling.csv"] = out_dir / "scaling.csv"
    _atomic_write(out_dir / "report.md", markdown(report, "plots" if plots else None))
    files.update({"report.md": out_dir / "report.md", "summary.csv": out_dir / "summary.csv",
                  "runs.csv": out_dir / "runs.csv"})
    return files


def publish_to_trackers(report: "Report", files: dict, trackers, runs_dir: Path) -> None:
    """The report's table and plots beside the runs' live curves (TensorBoard, W&B), when asked."""
    if not trackers:
        return
    from pileablate.console import stderr_console
    from pileablate.report.table import markdown_table
    from pileablate.trackers import publish_report

    pngs = [p for p in files.values() if Path(p).suffix == ".png"]
    publish_report(trackers, runs_dir, markdown_table(report.configurations), pngs, stderr_console())
