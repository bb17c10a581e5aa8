# LogN Serve: logn_server + the logn CLI + the two bundled demo models.
#   docker build -t logn-serve .
#   docker run --rm -p 8500:8500 -p 8501:8501 logn-serve
# Every RUN calls only scripts/ that CI runs too (scripts/test, tests/deploy), since no container
# engine runs in CI; tests/deploy/check_manifests.py enforces that.

FROM debian:bookworm-slim AS build
WORKDIR /src
# Dependencies first, so editing sources does not re-run apt-get.
COPY scripts/install-deps scripts/install-deps
RUN ./scripts/install-deps
COPY . .
ENV LOGN_TARGETS="logn_server logn"
RUN ./scripts/build /src/build
RUN ./scripts/stage-runtime /src/build /stage

FROM debian:bookworm-slim
WORKDIR /opt/logn
COPY scripts/install-runtime-deps scripts/select-blas /usr/local/share/logn/scripts/
RUN /usr/local/share/logn/scripts/install-runtime-deps --clean
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /var/lib/logn \
      --shell /usr/sbin/nologin logn \
 && mkdir -p /var/lib/logn \
 && chown logn:logn /var/lib/logn
COPY --from=build /stage /opt/logn
# The embedded SQLite store lives here; mount a volume to keep statistics across containers.
VOLUME ["/var/lib/logn"]
USER 10001:10001
EXPOSE 8500 8501
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/opt/logn/bin/logn", "health", "--server", "127.0.0.1:8500", "--deadline", "3", "--retries", "1"]
ENTRYPOINT ["/opt/logn/bin/logn_server"]
CMD ["--model=/opt/logn/models/demo_ce/model.pt", "--store=sqlite:///var/lib/logn/stats.db"]
