#!/usr/bin/env bash
# Installs what annex-p2phttp needs from the system's package manager, as root, idempotently:
#   - git-annex >= 10.20240731 (HTTP P2P protocol v4). On Debian 12 it comes from
#     bookworm-backports, added from the same mirror the machine's apt sources already use.
#   - redis-server (the tests start private instances; cluster mode needs one).
#   - curl, and docker-compose without its recommended Docker engine (the tests run
#     `docker-compose config` on docker-compose.yml; a few Python packages).
#   - prometheus (promtool and a Prometheus the tests run against the apps to check the
#     dashboard's queries; installed without its recommended exporters, and not started).
#   - Node.js >= 20.19 (22: >= 22.13) is checked (not installed: use your distribution's or nodesource).
# With --runtime it installs only git and git-annex, without recommended packages: what the
# container image needs (see Dockerfile).
# With --deploy-test it also installs what the deploy smoke test (scripts/deploy-smoke/run.sh)
# needs: Docker's engine (docker.io; the test starts a private dockerd of its own) and
# debootstrap (it makes the base images locally).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
min_annex=10.20240731

runtime=false
deploy_test=false
case "${1:-}" in
  --runtime) runtime=true ;;
  --deploy-test) deploy_test=true ;;
  '') ;;
  *)
    echo "usage: $0 [--runtime | --deploy-test]" >&2
    exit 2
    ;;
esac
apt_install=(apt-get install -y)
$runtime && apt_install+=(--no-install-recommends)

annex_ok() {
  local v
  v=$(git annex version --raw 2>/dev/null) && dpkg --compare-versions "$v" ge "$min_annex"
}
installed() { [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) == ii* ]]; }

packages=()
wanted=(git redis-server curl)
$runtime && wanted=(git)
for p in "${wanted[@]}"; do installed "$p" || packages+=("$p"); done
# docker-compose recommends docker.io (the engine and its daemon): not wanted here; prometheus
# recommends its exporters.
lean_packages=()
if ! $runtime; then
  for p in docker-compose prometheus; do installed "$p" || lean_packages+=("$p"); done
fi
if $deploy_test; then
  for p in docker.io debootstrap; do installed "$p" || lean_packages+=("$p"); done
fi

if ! annex_ok || [ ${#packages[@]} -gt 0 ] || [ ${#lean_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: run as root (sudo $0)" >&2
    exit 1
  fi
  apt-get update
  [ ${#packages[@]} -eq 0 ] || "${apt_install[@]}" "${packages[@]}"
  [ ${#lean_packages[@]} -eq 0 ] || apt-get install -y --no-install-recommends "${lean_packages[@]}"
fi

if ! annex_ok; then
  candidate=$(apt-cache policy git-annex | awk '/Candidate:/ { print $2 }')
  if [ -n "$candidate" ] && [ "$candidate" != "(none)" ] &&
    dpkg --compare-versions "${candidate#*:}" ge "$min_annex"; then
    "${apt_install[@]}" git-annex
  else
    # Debian 12: take git-annex from bookworm-backports on the mirror apt already uses.
    targets=$(apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' | sort -u)
    mirror=$(awk '$1 == "bookworm" { print $2; exit }' <<<"$targets")
    if [ -z "$mirror" ]; then
      echo "install-deps: git-annex >= $min_annex is not available from the configured apt sources;" >&2
      echo "install it from your distribution's backports or from git-annex's own builds" >&2
      exit 1
    fi
    if ! grep -q '^bookworm-backports ' <<<"$targets"; then
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" >/etc/apt/sources.list.d/bookworm-backports.sources
      apt-get update
    fi
    "${apt_install[@]}" -t bookworm-backports git-annex
  fi
fi
annex_ok || { echo "install-deps: git-annex is still older than $min_annex" >&2; exit 1; }

node_version=$(node --version 2>/dev/null || true)
if [ -z "$node_version" ] || ! dpkg --compare-versions "${node_version#v}" ge 20.19; then
  echo "install-deps: Node.js >= 20.19 (22: >= 22.13) is required (found: ${node_version:-none})" >&2
  exit 1
fi
if $runtime; then
  echo "install-deps: git-annex $(git annex version --raw), node $node_version"
else
  echo "install-deps: git-annex $(git annex version --raw), redis-server $(redis-server --version | awk '{print $3}'), node $node_version"
fi
