# syntax=docker/dockerfile:1

# Build stage: the full toolchain (TypeScript, dev dependencies) never reaches the runtime image.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No dependency needs an install script; refusing them keeps the build reproducible and safe.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Production dependencies only, installed from the same lockfile in a stage of their own so the
# runtime image gets a node_modules that never saw a dev dependency.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# Runtime: distroless has no shell and no package manager, only node and CA certificates.
# Built on bookworm, run on trixie: glibc is forward compatible, so even a future native addon works.
FROM gcr.io/distroless/nodejs24-debian13:nonroot
LABEL org.opencontainers.image.title="flashback-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Flashback private-chat token and request statistics" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
WORKDIR /app
# Files stay owned by root and read-only for the process: it writes nothing, so the container
# runs with a read-only root filesystem.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# Numeric, so Kubernetes' runAsNonRoot can verify it without resolving a user name.
USER 65532:65532
EXPOSE 9877
# node is PID 1 and receives SIGTERM itself (no npm, no shell in between); the exporter handles it
# and exits 0. Arguments given to `docker run IMAGE …` replace CMD, e.g. `--demo`.
# V8's defaults suit a server with cores and memory to spare; an exporter gets a sliver of a CPU.
# A small young generation (8 MiB semi-spaces, not up to 64) keeps each minor GC short and the
# resident size low, and collecting on the main thread only spares GC helper threads fighting
# it for that sliver. At 10,000 poll units: 100 MB less peak RSS and minor GC pauses of 3 ms
# instead of 20 to 40, at the same poll throughput (docs/benchmarks.md, which runs with these).
# No allocation-site pretenuring: after a poll round's burst V8 would allocate undici's
# per-request objects straight in old space, where they die and cost a mark-compact every
# few seconds; left young they die in scavenges (half the mark-compacts, 15 MiB less RSS).
# Old space may grow to twice what is live before a mark-compact: V8 starts marking when the
# room left is less than the young generation, and its own growing factor (about 1.5 on a
# heap this small) left 3 MB, a mark-compact every 3 s of a poll round. Since: one or two a
# round, pauses of 6–7 ms instead of 4–23, and 40 MiB less RSS (fewer compactions).
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=8", "--single-threaded-gc", "--no-allocation-site-pretenuring", "--heap-growing-percent=100", "/app/dist/main.js"]
CMD ["--config.file=/etc/flashback-exporter/config.yaml"]
