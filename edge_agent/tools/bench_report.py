"""What `edge-agent bench` prints: tables and the ratios against benchmark_app measured in the same run."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .bench_clients import Camera, Run, percentile

STAGE_KEYS = ("queue", "decode", "preprocess", "inference", "postprocess", "total")
MIB = 1 << 20


def _median(runs: list[Run], name: str) -> float:
    values = [getattr(r, name) for r in runs if getattr(r, name) == getattr(r, name)]
    return statistics.median(values) if values else float("nan")


def closed_loop(runs: dict[str, list[Run]], counts: list[int]) -> None:
    """The closed-loop table (medians of rounds), the server's stage times, and the goal ratios."""
    med = {k: Run(_median(v, "fps"), _median(v, "p50"), _median(v, "p99")) for k, v in runs.items()}
    print(f"{'':28}{'FPS':>9}{'p50 ms':>10}{'p99 ms':>10}  dropped errors")
    for label, run in med.items():
        extra = f"  {sum(r.dropped for r in runs[label]):7d} {sum(r.errors for r in runs[label]):6d}"
        p99 = "" if run.p99 != run.p99 else f"{run.p99:10.1f}"
        print(f"{label:28}{run.fps:9.1f}{run.p50:10.1f}{p99:>10}{extra if label.startswith('ws') else ''}")
    _stages(runs)
    ba_t, ba_l = med.get("benchmark_app throughput"), med.get("benchmark_app latency")
    many = f"ws {max(counts)} clients"
    if ba_t and many in med:
        ratio = med[many].fps / ba_t.fps
        print(f"{max(counts)} clients / benchmark_app throughput FPS: {ratio:.3f} (goal >= 0.92)")
    for n in counts:
        ws, eng = _labels(n)
        if ws in med and eng in med:
            print(
                f"{n} client(s): WebSocket / in-process engine FPS {med[ws].fps / med[eng].fps:.3f}, "
                f"p50 {med[ws].p50 / med[eng].p50:.3f}"
            )
    if ba_l and "ws 1 client" in med:
        ratio = med["ws 1 client"].p50 / ba_l.p50
        print(f"1 client p50 / benchmark_app latency median: {ratio:.3f} (goal <= 1.10)")


def _labels(n: int) -> tuple[str, str]:
    s = "s" if n > 1 else ""
    return f"ws {n} client{s}", f"engine {n} caller{s} (no server)"


def _stages(runs: dict[str, list[Run]]) -> None:
    """Median server timing_ms per stage over all rounds, and the event loop's CPU per frame."""
    rows = {k: v for k, v in runs.items() if k.startswith("ws") and any(r.stages for r in v)}
    if not rows:
        return
    heads = (*STAGE_KEYS, "loop CPU", "client CPU")
    print(f"{'server timing_ms (median)':28}" + "".join(f"{s:>12}" for s in heads))
    for label, rs in rows.items():
        stages = [st for r in rs for st in r.stages]
        cells = "".join(f"{statistics.median(st[s] for st in stages):12.2f}" for s in STAGE_KEYS)
        print(f"{label:28}{cells}{_median(rs, 'loop_cpu_ms'):12.2f}{_median(rs, 'client_cpu_ms'):12.2f}")


@dataclass
class OverloadRound:
    """One round of --overload: a lone closed-loop client, then the cameras, then benchmark_app."""

    lone: Run
    cameras: list[Camera]
    reference: dict[str, list[Run]]
    seconds: float

    @property
    def p99(self) -> float:
        """Processed frames' client-side p99 over all cameras."""
        return percentile([x for c in self.cameras for x in c.latencies], 99)

    @property
    def fairness(self) -> float:
        """Largest deviation of a camera's processed count from their mean (0.1 = 10%)."""
        done = [c.processed for c in self.cameras]
        mean = statistics.mean(done) if done else 0.0
        return max(abs(d - mean) for d in done) / mean if mean else float("inf")

    @property
    def answered_all(self) -> bool:
        """Every frame sent got exactly one reply, in order."""
        return all(c.order_ok and c.processed + c.dropped + c.errors == c.sent for c in self.cameras)


def overload_round(r: OverloadRound) -> None:
    """One line per camera and the round's verdict."""
    for i, c in enumerate(r.cameras):
        p50 = percentile(c.latencies, 50)
        print(
            f"camera {i}: sent {c.sent}, processed {c.processed} ({c.processed / r.seconds:.1f} fps), "
            f"dropped {c.dropped}, errors {c.errors}, p50 {p50:.1f} ms, p99 {percentile(c.latencies, 99):.1f} ms"
        )
        totals = [st["total"] for st in c.stages]
        medians = ", ".join(f"{k} {percentile([st[k] for st in c.stages], 50):.1f}" for k in STAGE_KEYS[:-1])
        print(
            f"  server timing_ms: total p50 {percentile(totals, 50):.1f}, p99 {percentile(totals, 99):.1f}; "
            f"medians {medians}"
        )
    ba = r.reference.get("benchmark_app throughput")
    total = sum(c.processed for c in r.cameras) / r.seconds
    ref = f", benchmark_app throughput {ba[0].fps:.1f} FPS ({total / ba[0].fps:.3f})" if ba else ""
    print(
        f"round: lone client p50 {r.lone.p50:.1f} ms; overload processed {total:.1f} fps{ref}; "
        f"p99 {r.p99:.1f} ms = {r.p99 / r.lone.p50:.2f} x lone p50; fairness +-{100 * r.fairness:.0f}%; "
        f"every frame answered: {'yes' if r.answered_all else 'NO'}"
    )


def overload_summary(rounds: list[OverloadRound]) -> None:
    """Medians over rounds against the goals."""
    ratio = statistics.median(r.p99 / r.lone.p50 for r in rounds)
    fair = statistics.median(r.fairness for r in rounds)
    answered = all(r.answered_all for r in rounds)
    print(
        f"overload ({len(rounds)} rounds, medians): processed p99 / lone p50 {ratio:.2f} (goal <= 4), "
        f"fairness +-{100 * fair:.0f}% (goal <= 20%), every frame answered: {'yes' if answered else 'NO'}"
    )


def memory(start: int, warm: int, active: int, clients: int, before_idle: int, idle: int, count: int) -> None:
    """RSS figures of --memory."""
    print(f"RSS after start: {start / MIB:.1f} MiB; after one client sent every photo: {warm / MIB:.1f} MiB")
    print(
        f"{clients} active sessions: {active / MIB:.1f} MiB, {(active - warm) / clients / 1024:.0f} KiB per session"
    )
    per_idle = (idle - before_idle) / max(1, count) / 1024
    print(f"{count} idle sessions: {idle / MIB:.1f} MiB, {per_idle:.1f} KiB per idle session")
