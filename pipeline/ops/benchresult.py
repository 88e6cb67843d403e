"""The bench's result: the JSON object `mailsla bench --json` prints, and its summary table.

Made by `mailsla bench` once every run is in (pipeline/ops/bench.py collects them into a
`Measured`). Every rate is the median of its runs with `_min`, `_max` and `_runs` beside it
(pipeline/ops/repeats.py); ratios are of medians. Pure: no process, no Kafka, so a unit test
checks the shape and the arithmetic on made-up runs.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from pipeline.ops.repeats import figure, ratio, spread

SCALING_ASSUMES = (
    "Each join process has one core and its own partitions: here process i runs pinned to core i "
    "(taskset) over its own topic pair holding the same events (as a consumer group of N gives each "
    "process 1/N of the partitions, without the rebalance). The broker shares these two cores "
    "(unpinned) and no sink runs (results stay in Kafka). Per-process rate at N=2 vs N=1 shows what "
    "sharing the machine costs; with the broker and the sink on other cores, N processes on N cores "
    "give about N times the N=1 per-process rate while the broker and the sink keep up (the sink "
    "figure is the other limit). Partitions cap N (MAILSLA_PARTITIONS).")


@dataclass
class Measured:
    """Every run's raw figures, as the bench collected them."""

    events: int
    repeat: int
    produce_eps: float
    ceiling: list[float]
    noop_batched: list[dict[str, float]]  # benchruns.noop_run
    faust_take_events: list[dict[str, float]]
    layouts: dict[str, list[dict[str, Any]]]  # layout -> its runs (benchruns.pipeline_run)
    join_processes: dict[str, int]  # layout -> join processes in it
    sink: list[dict[str, float]]  # sinkbench.measure
    sink_messages: int
    state: dict[str, Any]  # statebench.summarize
    pinned: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # N -> benchruns.pinned_run runs
    pinned_skipped: str | None = None
    pinned_events: int = 0  # events each pinned process read
    digests: dict[str, Any] = field(default_factory=dict)
    ingest: list[dict[str, Any]] = field(default_factory=list)  # ingestbench.measure, one per round
    machine: dict[str, Any] = field(default_factory=dict)


def _layout(runs: list[dict[str, Any]], join_processes: int) -> dict[str, Any]:
    eps = figure("eps", [r["eps"] for r in runs])
    return {**eps, "join_processes": join_processes, "eps_per_join_process": eps["eps"] / join_processes,
            "eps_incl_start": statistics.median(r["eps_incl_start"] for r in runs),
            "elapsed_s": statistics.median(r["elapsed_s"] for r in runs),
            "start_s": statistics.median(r["start_s"] for r in runs),
            "peak_rss_mb": max((r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb")), default=None),
            "runs": runs}


def _scaling(m: Measured, layouts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "assumes": SCALING_ASSUMES,
        "shared_cores_eps_per_join_process": {name: lay["eps_per_join_process"] for name, lay in layouts.items()},
    }
    if m.pinned_skipped:
        out["pinned_skipped"] = m.pinned_skipped
    pinned: dict[str, Any] = {}
    for n, runs in sorted(m.pinned.items()):
        per = [e for r in runs for e in r["eps_per_process"]]  # every process of every run
        sp = spread(per)
        pinned[str(n)] = {"eps_per_process": sp["median"], "eps_per_process_min": sp["min"],
                          "eps_per_process_max": sp["max"],
                          "eps_total": statistics.median(r["eps_total"] for r in runs), "runs": runs}
    out["pinned"] = pinned
    out["pinned_events_per_process"] = m.pinned_events
    one = pinned.get("1", {}).get("eps_per_process")
    out["per_process_vs_1"] = {n: ratio(p["eps_per_process"], one) if one else None for n, p in pinned.items()}
    return out


def result(m: Measured) -> dict[str, Any]:
    """The bench's JSON object (see the README's Performance section for each key)."""
    layouts = {name: _layout(runs, m.join_processes[name]) for name, runs in m.layouts.items()}
    best_name = max(layouts, key=lambda name: layouts[name]["eps"])
    best = layouts[best_name]
    out: dict[str, Any] = {"events": m.events, "repeat": m.repeat, "produce_eps": m.produce_eps}
    out |= figure("ceiling_eps", m.ceiling)
    for name, runs in (("noop_batched_eps", m.noop_batched), ("faust_take_events_eps", m.faust_take_events)):
        out |= figure(name, [r["eps"] for r in runs])
        out[f"{name}_from_first_record"] = statistics.median(r["eps_from_first_record"] for r in runs)
    out["layouts"] = layouts
    out |= {"best_layout": best_name, "best_eps": best["eps"], "best_eps_min": best["eps_min"],
            "best_eps_max": best["eps_max"]}
    out["ratio_to_noop"] = ratio(best["eps"], out["noop_batched_eps"])
    out["ratio_to_ceiling"] = ratio(best["eps"], out["ceiling_eps"])
    out["ratio_to_faust_take_events"] = ratio(best["eps"], out["faust_take_events_eps"])
    out["ratio_to_faust_noop"] = out["ratio_to_faust_take_events"]  # the name of earlier rounds
    out["noop_batched_to_ceiling"] = ratio(out["noop_batched_eps"], out["ceiling_eps"])
    out |= figure("sink_rows_per_s", [r["rows_per_s"] for r in m.sink])
    out["sink_first_rows_per_s"] = statistics.median(r["first_rows_per_s"] for r in m.sink)
    out["sink_revision_rows_per_s"] = statistics.median(r["revision_rows_per_s"] for r in m.sink)
    out["sink_messages"] = m.sink_messages
    out["state_bytes_per_pending"] = m.state["state_bytes_per_pending"]
    out["state_bytes_per_finished"] = m.state["state_bytes_per_finished"]
    out["state"] = {k: v for k, v in m.state.items() if k != "runs"}
    out["scaling"] = _scaling(m, layouts)
    if m.ingest:
        out |= figure("ingest_lines_per_s", [r["lines_per_s"] for r in m.ingest])
        out["ingest_parse_lines_per_s"] = statistics.median(r["parse_lines_per_s"] for r in m.ingest)
    out["digests"] = m.digests
    out["machine"] = m.machine
    return out


def _mmm(r: dict[str, Any], key: str, unit: str) -> str:
    if r["repeat"] == 1 or f"{key}_min" not in r:
        return f"{r[key]:,.0f} {unit}"
    return f"{r[key]:,.0f} {unit} (min {r[f'{key}_min']:,.0f}, max {r[f'{key}_max']:,.0f})"


def _x(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(r: dict[str, Any]) -> list[str]:
    """The summary lines the bench prints at its end (medians; min and max when repeated)."""
    k = r["repeat"]
    out = [f"summary ({r['events']:,} events; {'median of ' + str(k) + ' runs' if k > 1 else 'one run'} each):",
           f"  ceiling            {_mmm(r, 'ceiling_eps', 'ev/s')}  bare aiokafka consumer + orjson",
           f"  no-op, batched     {_mmm(r, 'noop_batched_eps', 'ev/s')}  the join's consumer path, nothing done",
           f"  no-op, take_events {_mmm(r, 'faust_take_events_eps', 'ev/s')}  Faust's per-record path"]
    for name, lay in r["layouts"].items():
        out.append(f"  {name:<18} {_mmm(lay | {'repeat': k}, 'eps', 'ev/s')}, "
                   f"{lay['eps_per_join_process']:,.0f} per join process")
    out.append(f"  best               {r['best_layout']}: {_x(r['ratio_to_noop'], 2)} of the batched no-op, "
               f"{_x(r['ratio_to_faust_take_events'], 2)} of take_events, {_x(r['ratio_to_ceiling'], 3)} of the ceiling")
    out.append(f"  sink               {_mmm(r, 'sink_rows_per_s', 'rows/s')}  first verdicts "
               f"{r['sink_first_rows_per_s']:,.0f}, revisions {r['sink_revision_rows_per_s']:,.0f} "
               f"({r['sink_messages']:,} messages twice)")
    out.append(f"  state              {r['state_bytes_per_pending']} B per pending, "
               f"{r['state_bytes_per_finished']} B per finished (memory store, RSS)")
    for store, kinds in r["state"]["stores"].items():
        if store != "memory":
            out.append(f"  state {store:<12} " + ", ".join(
                f"{kind} RSS {f['rss_bytes_per_message']:.0f} B" + (f" / disk {f['disk_bytes_per_message']:.0f} B"
                                                                     if "disk_bytes_per_message" in f else "")
                for kind, f in kinds.items()))
    if "ingest_lines_per_s" in r:
        out.append(f"  ingest             {_mmm(r, 'ingest_lines_per_s', 'lines/s')}  Postfix log lines parsed and "
                   f"produced (parser alone {r['ingest_parse_lines_per_s']:,.0f})")
    sc = r["scaling"]
    for n, p in sc["pinned"].items():
        vs = sc["per_process_vs_1"].get(n)
        out.append(f"  pinned, N={n}        {p['eps_per_process']:,.0f} ev/s per process "
                   f"(min {p['eps_per_process_min']:,.0f}, max {p['eps_per_process_max']:,.0f})"
                   + (f", {_x(vs, 2)} of N=1" if n != "1" else ""))
    if sc.get("pinned_skipped"):
        out.append(f"  pinned             skipped: {sc['pinned_skipped']}")
    for name, d in r["digests"].items():
        if d:
            out.append(f"  t-digest           {name:<10} 200k values in {d['seconds']:.3f}s, "
                       f"max rel. error p50/p90/p99 {d['max_rel_error']:.4f}")
    return out
