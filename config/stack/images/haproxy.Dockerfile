# HAProxy 2.6 from Debian (production: docker.io/library/haproxy:2.6 with the same haproxy.cfg
# mounted at /usr/local/etc/haproxy/haproxy.cfg).
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/*
EXPOSE 5000 5001 7000
ENTRYPOINT ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
