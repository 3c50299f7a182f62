"""Streaming benchmark (same as `edge-agent bench`): python tests/perf/bench_stream.py [--clients 1,4] ..."""

from __future__ import annotations

import sys

from edge_agent.tools.bench import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
