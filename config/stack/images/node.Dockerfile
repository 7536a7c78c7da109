# A Patroni node: PostgreSQL 15, Patroni 3.0 and python3-etcd from Debian, and pgkeep (from the
# pgkeep image the top-level Dockerfile builds) for archive_command, restore_command and
# create_replica_methods. Entry: secrets to files postgres can read, then Patroni as postgres.
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
ARG PGKEEP_IMAGE=localhost/pgkeep:dev
FROM ${PGKEEP_IMAGE} AS pgkeep

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql-15 patroni python3-etcd curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/lib/postgresql/15/main /etc/postgresql/15/main
COPY --from=pgkeep /usr/local/bin/pgkeep /usr/local/bin/pgkeep
COPY node-entrypoint.sh post-bootstrap.sh /usr/local/bin/
ENV PATH=/usr/lib/postgresql/15/bin:$PATH
EXPOSE 5432 8008
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD curl -fsS --max-time 2 http://127.0.0.1:8008/liveness || exit 1
ENTRYPOINT ["/usr/local/bin/node-entrypoint.sh"]
