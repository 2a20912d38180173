#!/usr/bin/env bash
# The README's main-job command: install (idempotent) then run the simulated tabletop demo end to end on the
# embedded defaults (simulated RGB-D camera -> z123 node -> local Ray -> segmentation -> reconstruction -> meshes).
# Extra arguments go to `z123 demo` (see `z123 demo --help`); outputs land in outputs/demo by default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/z123 demo "$@"
