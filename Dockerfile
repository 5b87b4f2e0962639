# nagare container image: Debian slim with journalctl (systemd) for the journal source, and the single binary.
#   bash scripts/release.sh && docker build -t nagare:0.1.0 .
FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends systemd ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/nagare /var/lib/nagare
ARG ARCH=x64
COPY dist/nagare-linux-${ARCH} /usr/local/bin/nagare
COPY deploy/kubernetes/nagare.yaml /etc/nagare/nagare.yaml
ENV NAGARE_DATA_DIR=/var/lib/nagare
VOLUME ["/var/lib/nagare"]
# Reading the host's journal and container logs needs root inside the container (the files are root-owned on
# the host); the filesystem is mounted read-only by the manifests.
ENTRYPOINT ["/usr/local/bin/nagare"]
CMD ["run", "-c", "/etc/nagare/nagare.yaml"]
