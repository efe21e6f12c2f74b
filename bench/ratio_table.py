#!/usr/bin/env python3
"""Markdown ratio tables from Google Benchmark JSON output (python3 stdlib only).

    python3 bench/ratio_table.py [--stat median|mean|min] [--time real|cpu]
                                 [-o report.md] results.json [more.json ...]

Naming convention: every benchmark is `<family>/<variant>/<size>`, optionally followed by
Google Benchmark's own suffixes (`/real_time`, `/min_time:0.5`, `/iterations:N`, ...) and,
for aggregates, `_median` etc. The size may have several parts (`1024/64`, `n:1024`); a
`threads:N` part is kept in it. The candidate is the variant `spruce`; a family may have
more candidates whose names start with `spruce` (`spruce_exact`). All other variants
(`nth_element`, `memcpy`, `eigen_dense`, ...) are baselines.

For each family, one table with a row per (size, variant): the time in milliseconds (the
median over repetitions when the run had them, else the single run; real time unless
--time cpu), items/s and bytes/s when the benchmark set them, and `time / spruce`, the
variant's time over the reference's time at that size. The reference is `spruce`, or
else the first `spruce*` variant present at that size; a baseline at 3.00 is three times
slower than spruce. Below each table, the geometric mean of each variant's ratios.
Missing variants, sizes without a reference and failed runs show as such; the exit status
is 1 only when an input file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, field

# Path components Google Benchmark appends to a run name that do not identify the size.
CONTROL_WORDS = {"real_time", "manual_time", "process_time"}
CONTROL_KEYS = {"min_time", "min_warmup_time", "iterations", "repeats"}
TIME_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
CANDIDATE = "spruce"


@dataclass
class Sample:
    time_ms: float
    items_per_second: float | None = None
    bytes_per_second: float | None = None


@dataclass
class Entry:
    """Everything seen for one (family, size, variant)."""

    source: str = ""
    runs: list[Sample] = field(default_factory=list)
    aggregates: dict[str, Sample] = field(default_factory=dict)
    repetitions: int = 0
    errors: list[str] = field(default_factory=list)


def split_run_name(run_name: str) -> tuple[str, str, str]:
    parts = run_name.split("/")
    family = parts[0]
    variant = parts[1] if len(parts) > 1 else "?"
    size_parts = [
        p for p in parts[2:]
        if p not in CONTROL_WORDS and p.split(":", 1)[0] not in CONTROL_KEYS
    ]
    return family, variant, "/".join(size_parts) or "-"


def run_name_of(bench: dict) -> str:
    if "run_name" in bench:
        return bench["run_name"]
    name = bench["name"]
    agg = bench.get("aggregate_name")
    if bench.get("run_type") == "aggregate" and agg and name.endswith("_" + agg):
        name = name[: -len(agg) - 1]
    return name


def sample_of(bench: dict, time_key: str) -> Sample:
    unit = TIME_TO_MS.get(bench.get("time_unit", "ns"), 1e-6)
    return Sample(
        time_ms=float(bench[time_key]) * unit,
        items_per_second=bench.get("items_per_second"),
        bytes_per_second=bench.get("bytes_per_second"),
    )


def natural_key(text: str):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def is_candidate(variant: str) -> bool:
    return variant.startswith(CANDIDATE)


def fmt_ms(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    digits = max(0, 3 - math.floor(math.log10(abs(v))))  # four significant digits
    return f"{v:.{digits}f}"


def fmt_rate(v: float | None, binary: bool, unit: str = "") -> str:
    if v is None:
        return ""
    base = 1024.0 if binary else 1000.0
    prefixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi"] if binary else ["", "k", "M", "G", "T", "P"]
    i = 0
    while abs(v) >= base and i < len(prefixes) - 1:
        v /= base
        i += 1
    return f"{v:.3g} {prefixes[i]}{unit}/s"


def md(text: str) -> str:
    return text.replace("|", "\\|")


class Report:
    def __init__(self, stat: str, time_key: str):
        self.stat = stat
        self.time_key = time_key
        # family -> size -> variant -> Entry; dicts keep first-appearance order.
        self.families: dict[str, dict[str, dict[str, Entry]]] = {}
        self.variant_order: dict[str, int] = {}
        self.contexts: list[tuple[str, dict]] = []
        self.unreadable: list[str] = []

    def add_file(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            benchmarks = doc["benchmarks"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"ratio_table.py: cannot read {path}: {e}", file=sys.stderr)
            self.unreadable.append(path)
            return
        self.contexts.append((path, doc.get("context", {})))
        for bench in benchmarks:
            family, variant, size = split_run_name(run_name_of(bench))
            self.variant_order.setdefault(variant, len(self.variant_order))
            by_variant = self.families.setdefault(family, {}).setdefault(size, {})
            entry = by_variant.get(variant)
            if entry is None or entry.source != path:
                if entry is not None:
                    print(f"ratio_table.py: {family}/{variant}/{size} from {path} replaces "
                          f"the one from {entry.source}", file=sys.stderr)
                entry = by_variant[variant] = Entry(source=path)
            entry.repetitions = max(entry.repetitions, int(bench.get("repetitions", 1) or 1))
            if bench.get("error_occurred") or bench.get("skipped"):
                entry.errors.append(
                    bench.get("error_message") or bench.get("skip_message") or "skipped")
                continue
            if bench.get("run_type") == "aggregate":
                if bench.get("aggregate_unit", "time") == "time":
                    entry.aggregates[bench.get("aggregate_name", "")] = sample_of(
                        bench, self.time_key)
            else:
                entry.runs.append(sample_of(bench, self.time_key))

    def value(self, entry: Entry) -> tuple[Sample | None, int]:
        """The entry's representative sample and how many runs it summarises."""
        n = len(entry.runs)
        if self.stat in entry.aggregates:
            return entry.aggregates[self.stat], max(n, entry.repetitions)
        if n == 0:
            return None, 0
        if n == 1:
            return entry.runs[0], 1
        pick = {"median": statistics.median, "mean": statistics.fmean, "min": min}[self.stat]

        def counter(name):
            vals = [getattr(r, name) for r in entry.runs if getattr(r, name) is not None]
            return pick(vals) if vals else None

        return Sample(pick([r.time_ms for r in entry.runs]),
                      counter("items_per_second"), counter("bytes_per_second")), n

    def reference(self, variants: dict[str, Entry]) -> str | None:
        if CANDIDATE in variants and self.value(variants[CANDIDATE])[0]:
            return CANDIDATE
        for v in sorted(variants, key=self.variant_order.__getitem__):
            if is_candidate(v) and self.value(variants[v])[0]:
                return v
        return None

    def render(self) -> str:
        out = ["# spruce benchmarks: time relative to spruce", ""]
        for path, ctx in self.contexts:
            bits = [f"`{ctx.get('executable', path)}`"]
            if "host_name" in ctx:
                bits.append(f"host {ctx['host_name']}")
            if "num_cpus" in ctx:
                bits.append(f"{ctx['num_cpus']} CPUs @ {ctx.get('mhz_per_cpu', '?')} MHz")
            if ctx.get("cpu_scaling_enabled"):
                bits.append("**CPU frequency scaling on: timings are noisy**")
            if "load_avg" in ctx:
                bits.append("load " + " ".join(f"{x:.2f}" for x in ctx["load_avg"]))
            if "date" in ctx:
                bits.append(ctx["date"])
            out.append("- " + ", ".join(bits))
        if self.contexts:
            out.append("")
        time_label = "real" if self.time_key == "real_time" else "CPU"
        out.append(f"Times are {time_label} time in ms, the {self.stat} of the repetitions "
                   f"when there were several. `time / spruce` > 1: slower than spruce.")
        out.append("")
        if not self.families:
            out.append("_No benchmark results._")
        for family, sizes in self.families.items():
            out.extend(self.render_family(family, sizes))
        return "\n".join(out).rstrip() + "\n"

    def render_family(self, family: str, sizes: dict[str, dict[str, Entry]]) -> list[str]:
        rows, ratios, notes = [], {}, []
        has_items = has_bytes = False
        for size in sorted(sizes, key=natural_key):
            variants = sizes[size]
            ref = self.reference(variants)
            ref_ms = self.value(variants[ref])[0].time_ms if ref else None
            if ref is None:
                notes.append(f"size {size}: no spruce result, so no ratios")
            order = sorted(variants, key=lambda v: (
                v != ref, not is_candidate(v), self.variant_order[v]))
            for v in order:
                entry = variants[v]
                sample, n = self.value(entry)
                if sample is None:
                    msg = "; ".join(sorted(set(entry.errors))) or "no result"
                    rows.append([size, v, f"error: {msg}", "", "", "", ""])
                    continue
                has_items |= sample.items_per_second is not None
                has_bytes |= sample.bytes_per_second is not None
                if ref_ms and ref_ms > 0:
                    r = sample.time_ms / ref_ms
                    ratio = f"{r:.2f}"
                    if v != ref and r > 0:
                        ratios.setdefault(v, []).append(r)
                else:
                    ratio = "n/a"
                rows.append([size, v, fmt_ms(sample.time_ms),
                             fmt_rate(sample.items_per_second, False),
                             fmt_rate(sample.bytes_per_second, True, "B"), str(n), ratio])
        header = ["size", "variant", "time (ms)", "items/s", "bytes/s", "runs", "time / spruce"]
        keep = [True, True, True, has_items, has_bytes, True, True]
        numeric = [False, False, True, True, True, True, True]

        def line(cells):
            return "| " + " | ".join(md(c) for c, k in zip(cells, keep) if k) + " |"

        out = [f"## {family}", "", line(header),
               "|" + "|".join(("---:" if num else "---") for num, k in zip(numeric, keep) if k)
               + "|"]
        out.extend(line(r) for r in rows)
        out.append("")
        if ratios:
            parts = []
            for v in sorted(ratios, key=self.variant_order.__getitem__):
                rs = ratios[v]
                g = math.exp(statistics.fmean(math.log(x) for x in rs))
                parts.append(f"{v} {g:.2f} ({len(rs)} size{'s' if len(rs) != 1 else ''})")
            out.append("Geometric mean of time / spruce: " + ", ".join(parts) + ".")
            out.append("")
        for note in notes:
            out.append(f"_Note: {note}._")
        if notes:
            out.append("")
        return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        description="Print markdown ratio tables (time / spruce) from Google Benchmark JSON.")
    ap.add_argument("files", nargs="+", help="--benchmark_out=... JSON files")
    ap.add_argument("--stat", choices=["median", "mean", "min"], default="median",
                    help="statistic over repetitions (default: median)")
    ap.add_argument("--time", choices=["real", "cpu"], default="real",
                    help="which time to compare (default: real)")
    ap.add_argument("-o", "--output", help="also write the tables to this file")
    args = ap.parse_args(argv)

    report = Report(args.stat, "real_time" if args.time == "real" else "cpu_time")
    for path in args.files:
        report.add_file(path)
    text = report.render()
    sys.stdout.write(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    return 1 if report.unreadable else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
