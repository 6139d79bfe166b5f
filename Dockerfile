# syntax=docker/dockerfile:1
#
# One image with both programs, spinel-server and spinel-agent.
#
#   docker build -t spinel:dev .
#
# The build stage compiles the binaries (the `dist` profile of Cargo.toml:
# release with whole-program optimisation) with the Rust toolchain
# image (it carries gcc, which the ring crate needs; the protos are compiled
# with protox, so no protoc). The runtime stage is a slim Debian of the same
# release, so the binaries find the glibc they were linked against. Both
# stages can be changed with --build-arg RUST_VERSION=... / DEBIAN_RELEASE=...
# (keep the two on the same Debian release).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between
# builds (BuildKit, the default builder of current Docker and Podman). The
# target directory is a cache, so the binaries are copied out in the same
# step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p spinel-server -p spinel-agent \
       --bin spinel-server --bin spinel-agent \
    && install -D -m 0755 -t /out target/dist/spinel-server target/dist/spinel-agent

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: for a kube_config_file or a federation peer that uses a
# public CA. Nothing else is needed at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 spinel \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin spinel
COPY --from=build /out/ /usr/local/bin/
# The server runs as this unprivileged user. The agent's DaemonSet asks for
# root explicitly: it reads other containers' /proc entries and writes to
# host directories (see docs/kubernetes.md).
USER 65532:65532
CMD ["spinel-server", "--help"]
