# syntax=docker/dockerfile:1
# labvirt's image: dist/ (compiled), production dependencies only, the labs,
# VM templates and cloud-init files baked in; runs as a non-root user.
#   docker build -t ghcr.io/labvirt/labvirt:0.1.0 .
# deploy/helm/labvirt runs this image (image.repository / image.tag).
ARG NODE_IMAGE=docker.io/library/node:22-bookworm-slim

# 1. Compile TypeScript to dist/ (needs the dev dependencies).
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: "prepare" would compile before the sources are here.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/bundle-client-node.mjs ./scripts/
COPY src ./src
# What `npm run build` does: tsc, the web pages' scripts and styles bundled
# into dist/web/assets/ (src/ is not in the image), and @kubernetes/client-node
# bundled and minified into dist/kube/client-node.js (≈ 35 MiB less RSS).
RUN npm run build

# 2. Production dependencies only, with ssh2's native crypto binding compiled
# (python3, make and g++ here only; Node's headers are the image's own, in
# /usr/local/include/node, so nothing is fetched). Without the binding ssh2
# falls back to WebAssembly for chacha20-poly1305 — OpenSSH's first choice —
# and the SSH gateway spends about 3 ms more CPU per MiB relayed
# (docs/benchmarks.md). CI_CHECK_FAIL=ssh2 makes a failed compile fail the
# build, and the last check refuses an image without the binding, instead of
# shipping the slow path silently. Other install scripts stay off.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm_config_nodedir=/usr/local CI_CHECK_FAIL=ssh2 npm rebuild ssh2 \
 && (npm_config_nodedir=/usr/local npm rebuild cpu-features || echo "cpu-features not built: ssh2 keeps its default cipher order") \
 && node -e "if (!require('ssh2/lib/protocol/crypto.js').bindingAvailable) { console.error('ssh2: native crypto binding missing'); process.exit(1); }" \
 && npm cache clean --force

# 3. What runs.
FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY labs ./labs
COPY vm-templates ./vm-templates
COPY cloud-init ./cloud-init
# `labvirt` on the PATH (kubectl exec ... -- labvirt doctor); the app stays root-owned and read-only.
RUN ln -s /app/bin/labvirt.js /usr/local/bin/labvirt \
 && groupadd --system --gid 10001 labvirt \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin labvirt
USER 10001:10001
# HTTP API (and /metrics, /healthz, /readyz), SSH gateway.
EXPOSE 8080 2222
ENTRYPOINT ["node", "/app/bin/labvirt.js"]
CMD ["serve", "--config", "/etc/labvirt/labvirt.yaml"]
