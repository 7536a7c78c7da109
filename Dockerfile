# pgkeep: the pgkeep CLI and the pgkeepd service, with PostgreSQL's client tools.
#   docker build -t pgkeep .          (an ordinary Docker host pulls the two base images)
#   bash scripts/image.sh             (here: builds those base images offline, then this file)
# Run: docker run -v /etc/pgkeep:/etc/pgkeep:ro -p 9187:9187 pgkeep   (pgkeepd --config /etc/pgkeep/pgkeepd.toml)
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY scheduler scheduler
COPY restore-tests restore-tests
COPY tests tests
COPY config config
# No debug info, one codegen unit per crate left to the profile: the image wants a small
# binary, not a debuggable one.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_TERM_PROGRESS_WHEN=never
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p pgkeep -p pgkeep-scheduler --bins \
 && install -D -m 0755 target/release/pgkeep target/release/pgkeepd -t /out/

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/pgkeep/pgkeep
LABEL org.opencontainers.image.title="pgkeep" \
      org.opencontainers.image.description="Backup and disaster recovery for PostgreSQL clusters run by Patroni" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
# PostgreSQL's client tools (psql, pg_isready) for drills and operators; curl for the health
# check; CA certificates for https stores.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql-client-15 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/pgkeep /out/pgkeepd /usr/local/bin/
# A fixed uid, so volumes (the spool, a local repository) can be chowned ahead of time.
RUN groupadd --system --gid 10001 pgkeep \
 && useradd --system --uid 10001 --gid pgkeep --home-dir /var/lib/pgkeep --create-home pgkeep \
 && mkdir -p /etc/pgkeep && chown pgkeep:pgkeep /var/lib/pgkeep
USER pgkeep
WORKDIR /var/lib/pgkeep
EXPOSE 9187 7480
# pgkeepd's /healthz on scheduler.listen; set PGKEEP_HEALTH_URL when it listens elsewhere.
ENV PGKEEP_HEALTH_URL=http://127.0.0.1:9187/healthz
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS --max-time 4 "$PGKEEP_HEALTH_URL" || exit 1
ENTRYPOINT ["pgkeepd"]
CMD ["--config", "/etc/pgkeep/pgkeepd.toml"]
