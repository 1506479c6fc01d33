# GPUFlow images; docker-compose.yml builds them:
#   chain          anvil, forge and cast from the npm packages pinned in contracts/package-lock.json,
#                  with the contracts precompiled: the compose devnet's chain and deploy job
#   node           gpuflow-node (host daemon) and gpuflow (renter CLI), a release build from
#                  source (stage `build`), on Debian slim, running as the non-root user `gpuflow`
#   node-prebuilt  the same image with binaries built outside Docker: gpuflow-node and gpuflow
#                  copied from $PREBUILT_DIR in the build context (a cargo build on this
#                  machine, for Debian 12 / glibc 2.36 or older)
# Build one with `docker build --target node -t gpuflow/node:dev .`.
#
# Base images are build arguments with the public images as defaults; pass local ones (e.g.
# those scripts/build-base-images.sh builds from Debian packages) to build without a registry:
#   docker build --build-arg DEBIAN_IMAGE=gpuflow-local/debian:… --target node-prebuilt …
#
# Stage order matters for Docker's classic builder (docker-compose v1, `docker build` without
# BuildKit), which builds every stage up to the target: `chain` and `node-prebuilt` come first
# and need nothing of the Rust build. The `node` target's build uses cache mounts (`RUN
# --mount`), which need BuildKit (Docker 23+ by default, or DOCKER_BUILDKIT=1 with buildx).
#
# contracts/node_modules: `npm ci` needs the npm registry at build time; when
# docker/prebuilt/contracts/node_modules exists (an `npm ci` of the same lockfile, e.g. `make
# tools`, copied there), the chain image takes it instead and needs no npm registry.

ARG RUST_IMAGE=rust:1.90-slim-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG NODEJS_IMAGE=node:22-bookworm-slim

# ---- chain: pinned Foundry (anvil, forge, cast) and the contracts -------------------------
FROM ${NODEJS_IMAGE} AS chain
# ca-certificates: cast and forge (rustls) refuse to start without system CA certificates,
# which the Node.js slim images do not keep.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /opt/gpuflow/contracts /devnet \
 && chown node:node /opt/gpuflow/contracts /devnet
# The `node` user of the Node.js image: non-root.
USER node
WORKDIR /opt/gpuflow/contracts
COPY --chown=node:node contracts/package.json contracts/package-lock.json ./
# A node_modules staged in docker/prebuilt/contracts/ (nothing, when none is staged), else npm
# ci from the registry. (A fixed path, not $PREBUILT_DIR: a build argument used in this stage
# would make every RUN here miss the classic builder's cache when its value changes.)
COPY --chown=node:node docker/prebuilt/contracts/ ./
RUN if [ -d node_modules ]; then echo "using the staged contracts/node_modules"; \
    else npm ci --no-audit --no-fund --loglevel=error; fi
COPY --chown=node:node contracts/ ./
# bin/{anvil,forge,cast} -> the native binaries npm installed; compile once at build time
# (solcjs through tools/solc, no download) so the deploy job only broadcasts.
RUN tools/link-bins.sh && bin/forge build && mkdir -p deployments
ENV PATH=/opt/gpuflow/contracts/bin:$PATH
COPY docker/deploy.sh /usr/local/bin/gpuflow-deploy
EXPOSE 8545
CMD ["anvil", "--host", "0.0.0.0", "--port", "8545"]

# ---- node-base: what both node images share ----------------------------------------------
FROM ${DEBIAN_IMAGE} AS node-base
# ca-certificates: HTTPS RPC endpoints; curl: the compose healthcheck on the node API;
# iptables: the Docker runtime's fence around lease networks (as root, in the host's network
# namespace); openssh-sftp-server and busybox-static: the SSH tools the Docker runtime mounts
# into lease containers (SFTP, and `nc` for ssh -L).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl iptables \
    openssh-sftp-server busybox-static \
 && rm -rf /var/lib/apt/lists/*
# uid 1000, like the `node` user of the chain image: both write to the shared /devnet volume.
RUN useradd --uid 1000 --create-home --home-dir /home/gpuflow gpuflow \
 && mkdir -p /var/lib/gpuflow /devnet \
 && chown gpuflow:gpuflow /var/lib/gpuflow /devnet
COPY docker/entrypoint.sh /usr/local/bin/gpuflow-entrypoint
ENV GPUFLOW_DATA_DIR=/var/lib/gpuflow
WORKDIR /home/gpuflow
# p2p (TCP and QUIC); the HTTP API stays on 127.0.0.1 inside the container.
EXPOSE 4001/tcp 4001/udp
ENTRYPOINT ["gpuflow-entrypoint"]
CMD ["gpuflow-node", "run"]

# ---- node-prebuilt: the node image with binaries built outside Docker ----------------------
FROM node-base AS node-prebuilt
ARG PREBUILT_DIR=docker/prebuilt
COPY ${PREBUILT_DIR}/gpuflow-node ${PREBUILT_DIR}/gpuflow /usr/local/bin/
# A binary that does not run here (built against a newer glibc) fails the build, not the node.
RUN gpuflow-node --version && gpuflow --version
USER gpuflow

# ---- build: cargo build --release of the two binaries ------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The whole workspace: cargo needs every member's manifest, and the lockfile pins every crate.
COPY . .
# The cache mounts keep the registry and target dir between builds; the binaries are copied
# out of the mounted target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gpuflow-node -p gpuflow \
 && mkdir -p /out \
 && cp target/release/gpuflow-node target/release/gpuflow /out/

# ---- node: the runtime image, built from source --------------------------------------------
FROM node-base AS node
COPY --from=build /out/gpuflow-node /out/gpuflow /usr/local/bin/
USER gpuflow
