# etcd 3.4 from Debian (production: quay.io/coreos/etcd of the same minor works alike).
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server \
 && rm -rf /var/lib/apt/lists/*
EXPOSE 2379 2380
ENTRYPOINT ["etcd"]
