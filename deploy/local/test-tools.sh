#!/usr/bin/env bash
# test-tools.sh: what `make test` needs beyond the Rust toolchain and the services, installed
# if missing (idempotent): headless Chromium and its WebDriver for the console's browser test
# and kcat for the Kafka ingest test (Debian's packages), and the operator checks' tools (deploy/prometheus/install-tools.sh:
# promtool, prometheus, kubectl, kubernetes-validate, check-jsonschema, hadolint).
# Needs root for apt-get; CI runs as root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
  echo "[test-tools] apt-get install chromium chromium-driver" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
# kcat: tests/ingest.rs produces to the ingest topic with a client the project did not write.
if ! command -v kcat >/dev/null; then
  echo "[test-tools] apt-get install kcat" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends kcat >/dev/null
fi
bash "$here/../prometheus/install-tools.sh"
