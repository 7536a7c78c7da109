# Garage, the S3-compatible store of this stack (production: MinIO or S3 itself; or
# docker.io/dxflrs/garage). The binary is built from crates.io by scripts/install-deps.sh and
# copied into the build context by scripts/stack.sh.
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${RUNTIME_IMAGE}
COPY garage /usr/local/bin/garage
EXPOSE 3900 3901
ENTRYPOINT ["garage", "-c", "/etc/garage.toml"]
CMD ["server"]
