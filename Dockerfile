# syntax=docker/dockerfile:1
# GPUFlow images; docker-compose.yml builds both targets:
#   node   gpuflow-node (host daemon) and gpuflow (renter CLI), release build, on Debian slim,
#          running as the non-root user `gpuflow`
#   chain  anvil, forge and cast from the npm packages pinned in contracts/package-lock.json,
#          with the contracts precompiled: the compose devnet's chain and deploy job
# Build one with `docker build --target node -t gpuflow-node .`.

ARG RUST_VERSION=1.90
ARG DEBIAN=bookworm

# ---- build: cargo build --release of the two binaries ------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS build
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

# ---- node: the runtime image ------------------------------------------------------------
FROM debian:${DEBIAN}-slim AS node
# ca-certificates: HTTPS RPC endpoints; curl: the compose healthcheck on the node API.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
# uid 1000, like the `node` user of the chain image: both write to the shared /devnet volume.
RUN useradd --uid 1000 --create-home --home-dir /home/gpuflow gpuflow \
 && mkdir -p /var/lib/gpuflow /devnet \
 && chown gpuflow:gpuflow /var/lib/gpuflow /devnet
COPY --from=build /out/gpuflow-node /out/gpuflow /usr/local/bin/
COPY docker/entrypoint.sh /usr/local/bin/gpuflow-entrypoint
USER gpuflow
ENV GPUFLOW_DATA_DIR=/var/lib/gpuflow
WORKDIR /home/gpuflow
# p2p (TCP and QUIC); the HTTP API stays on 127.0.0.1 inside the container.
EXPOSE 4001/tcp 4001/udp
ENTRYPOINT ["gpuflow-entrypoint"]
CMD ["gpuflow-node", "run"]

# ---- chain: pinned Foundry (anvil, forge, cast) and the contracts -------------------------
FROM node:22-${DEBIAN}-slim AS chain
RUN mkdir -p /opt/gpuflow/contracts /devnet \
 && chown node:node /opt/gpuflow/contracts /devnet
# The `node` user of the Node.js image: non-root.
USER node
WORKDIR /opt/gpuflow/contracts
COPY --chown=node:node contracts/package.json contracts/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY --chown=node:node contracts/ ./
# bin/{anvil,forge,cast} -> the native binaries npm installed; compile once at build time
# (solcjs through tools/solc, no download) so the deploy job only broadcasts.
RUN tools/link-bins.sh && bin/forge build && mkdir -p deployments
ENV PATH=/opt/gpuflow/contracts/bin:$PATH
COPY docker/deploy.sh /usr/local/bin/gpuflow-deploy
EXPOSE 8545
CMD ["anvil", "--host", "0.0.0.0", "--port", "8545"]
