# The annex-p2phttp image: one image for every app, the command selects it
# (serve | gateway | proxy-worker | lock-service). See README.md, "Deploying".
#
#   docker build -t annex-p2phttp .
#   docker run -p 9417:9417 --user "$(stat -c %u:%g /srv/annex)" -v /srv/annex:/data/repos \
#       annex-p2phttp serve --directory /data/repos --wideopen
# The container must be able to write to the repositories: run it as their owner (--user, as
# above) or chown them to 10001:10001, the image's user. Its log says which it cannot write to.
# No `# syntax=` line: BuildKit would fetch a frontend from a registry; offline builds work.

# Build: every package compiled with the dev dependencies.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY . .
RUN npm ci && npm run build
# What the runtime needs: package manifests, compiled output and the files it reads beside it
# (libs/locks/lua: its Redis scripts), the command; nothing else.
RUN set -eu; mkdir -p /out; \
    cp package.json package-lock.json /out/; \
    cp -r bin /out/bin; \
    for d in libs/* apps/*; do \
      if [ -f "$d/package.json" ]; then \
        mkdir -p "/out/$d"; cp "$d/package.json" "/out/$d/"; \
        for f in dist lua; do if [ -d "$d/$f" ]; then cp -r "$d/$f" "/out/$d/$f"; fi; done; \
      fi; \
    done; \
    find /out -name '*.tsbuildinfo' -delete

# Production dependencies only.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY --from=build /out/ ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

# Runtime: Node.js, git and git-annex >= 10.20240731 (on Debian 12 from bookworm-backports,
# taken from the mirror the base image's apt sources already name).
FROM node:24-bookworm-slim AS runtime
COPY scripts/install-deps.sh /tmp/install-deps.sh
# tini runs as PID 1: it forwards SIGTERM to the server and reaps what git-annex leaves behind.
RUN bash /tmp/install-deps.sh --runtime \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh
RUN groupadd --system --gid 10001 annex \
    && useradd --system --uid 10001 --gid annex --home-dir /home/annex --create-home \
      --shell /usr/sbin/nologin annex \
    && mkdir -p /data/repos && chown annex:annex /data/repos
WORKDIR /app
COPY --from=deps /app/ ./
COPY deploy/docker/healthcheck.js deploy/docker/init-demo.sh /app/deploy/docker/
RUN ln -s /app/bin/annex-p2phttp.js /usr/local/bin/annex-p2phttp
ENV NODE_ENV=production \
    HOME=/home/annex \
    GIT_AUTHOR_NAME=annex-p2phttp GIT_AUTHOR_EMAIL=annex-p2phttp@localhost \
    GIT_COMMITTER_NAME=annex-p2phttp GIT_COMMITTER_EMAIL=annex-p2phttp@localhost
USER 10001:10001
VOLUME ["/data/repos"]
# 9417: the HTTP API (gateway, serve); 9418: proxy-worker data port; 9419: lock-service health.
EXPOSE 9417 9418 9419
# Asks /healthz on the port of whichever app is running (read from the container's command).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "/app/deploy/docker/healthcheck.js"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "annex-p2phttp"]
CMD ["serve", "--directory", "/data/repos"]
