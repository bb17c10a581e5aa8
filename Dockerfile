# LogN Serve: logn_server + the logn CLI + the bundled demo models (every models/NAME/ with a
# model.pt and a model.json).
#   docker build -t logn-serve .
#   docker run --rm -p 8500:8500 -p 8501:8501 logn-serve
# Every RUN calls only scripts/ that CI runs too (scripts/test, tests/deploy) or plain commands;
# tests/deploy/check_manifests.py enforces that. scripts/container-test builds and runs the image.

FROM debian:bookworm-slim AS build
WORKDIR /src
# The runtime stage starts from this same base: keep its package list, so that stage-runtime
# copies only the libraries the base lacks.
RUN cp /var/lib/dpkg/status /var/lib/dpkg/status.base
# Dependencies first, so editing sources does not re-run apt-get.
COPY scripts/install-deps scripts/select-blas scripts/
RUN ./scripts/install-deps
COPY . .
ENV LOGN_TARGETS="logn_server logn"
RUN ./scripts/build /src/build
RUN ./scripts/stage-runtime --base-status /var/lib/dpkg/status.base /src/build /stage

# The runtime: the base image plus /opt/logn (bin/, models/, and lib/: the shared-library closure
# of the two binaries, with the BLAS scripts/select-blas chose), not apt's dependency tree of
# libtorch (OpenCV's Mesa, LLVM, Perl... that logn_server never loads).
FROM debian:bookworm-slim
WORKDIR /opt/logn
COPY --from=build /stage /opt/logn
# System CA roots, for `logn --tls` and postgres:// URLs with sslmode=verify-full.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN echo /opt/logn/lib > /etc/ld.so.conf.d/00-logn.conf \
 && ldconfig \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /var/lib/logn \
      --shell /usr/sbin/nologin logn \
 && mkdir -p /var/lib/logn \
 && chown logn:logn /var/lib/logn
# The embedded SQLite store lives here; mount a volume to keep statistics across containers.
VOLUME ["/var/lib/logn"]
USER 10001:10001
EXPOSE 8500 8501
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/opt/logn/bin/logn", "health", "--server", "127.0.0.1:8500", "--deadline", "3", "--retries", "1"]
ENTRYPOINT ["/opt/logn/bin/logn_server"]
CMD ["--model=/opt/logn/models/demo_ce/model.pt", "--store=sqlite:///var/lib/logn/stats.db"]
