#!/usr/bin/env bash
# The whole test suite (tests/ plus one pass of each overhead benchmark, timing disabled).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest tests benchmarks/perf --benchmark-disable -q "$@"
