#!/usr/bin/env bash
# Starts / stops a throwaway PostgreSQL 15 server for the store tests and benchmarks.
#
#   pg_server.sh start <dir> <port>   initdb a cluster, listen on 127.0.0.1:<port> (unix socket
#                                     next to the cluster), create database logn_test owned by
#                                     user logn (password logn); writes the URL to <dir>/url.
#   pg_server.sh stop  <dir> <port>   stop the server and delete it and <dir>.
#   pg_server.sh halt  <dir> <port>   stop the server (immediate shutdown, as an outage), keep
#                                     its data;   pg_server.sh resume <dir> <port>  start it again.
#
# PostgreSQL refuses to run as root, and CI runs as root: the server then runs as the `postgres`
# user (runuser), in a directory that user owns — <dir>/pg, or a fresh directory under /tmp when
# the postgres user cannot reach <dir> (e.g. a checkout under /root). Run as any other user, it
# runs as that user in <dir>/pg.
# With no PostgreSQL installed, `start` fails when CI=true (the PostgreSQL tests must run in CI)
# and otherwise exits 0 without a URL file, so the tests skip.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
port=${3:-}
if [[ -z "$cmd" || -z "$dir" || -z "$port" ]]; then
  echo "usage: $0 start|stop|halt|resume <dir> <port>" >&2
  exit 2
fi

pgbin=${LOGN_PG_BIN:-}
if [[ -z "$pgbin" ]]; then
  for candidate in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [[ -x "$candidate/initdb" ]]; then pgbin=$candidate; break; fi
  done
fi

as_root() { [[ "$(id -u)" -eq 0 ]]; }
as_pg() {
  if as_root; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Stops the server recorded in <dir>/run_dir (if any) and removes its files.
stop_server() {
  local run=""
  [[ -f "$dir/run_dir" ]] && run=$(cat "$dir/run_dir")
  if [[ -n "$run" && -n "$pgbin" && -f "$run/pgdata/postmaster.pid" ]]; then
    as_pg "$pgbin/pg_ctl" -D "$run/pgdata" -m fast -w stop >/dev/null 2>&1 ||
      as_pg "$pgbin/pg_ctl" -D "$run/pgdata" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [[ -n "$run" && "$run" != "$dir/pg" ]]; then rm -rf "$run"; fi
  rm -rf "$dir"
}

# Starts the cluster in $1 (initdb'd) on 127.0.0.1:$port.
start_server() {
  as_pg "$pgbin/pg_ctl" -D "$1/pgdata" -l "$1/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$1/sock -c max_connections=200" \
    start >/dev/null || { cat "$1/server.log" >&2; exit 1; }
}

case "$cmd" in
  start)
    if [[ -z "$pgbin" ]]; then
      if [[ "${CI:-}" == "true" ]]; then
        echo "pg_server.sh: no PostgreSQL server binaries (install the 'postgresql' package)" >&2
        exit 1
      fi
      echo "pg_server.sh: PostgreSQL not installed; the PostgreSQL tests will skip (outside CI)"
      exit 0
    fi
    # A server left over from an interrupted run holds the port: stop it first.
    stop_server
    mkdir -p "$dir"
    run="$dir/pg"
    if as_root; then
      mkdir -p "$run"
      if ! runuser -u postgres -- test -x "$dir"; then
        rm -rf "$run"
        run=$(mktemp -d /tmp/logn-store-pg-XXXXXX)
        chmod 755 "$run"
      fi
    fi
    mkdir -p "$run/sock"
    echo "$run" > "$dir/run_dir"
    echo logn > "$run/pwfile"
    if as_root; then chown -R postgres: "$run"; fi
    as_pg "$pgbin/initdb" -D "$run/pgdata" -U logn --pwfile="$run/pwfile" -E UTF8 \
      --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$run/initdb.log" 2>&1 || {
      cat "$run/initdb.log" >&2; exit 1; }
    start_server "$run"
    as_pg "$pgbin/createdb" -h "$run/sock" -p "$port" -U logn logn_test
    echo "postgres://logn:logn@127.0.0.1:$port/logn_test" > "$dir/url"
    echo "pg_server.sh: PostgreSQL running in $run: $(cat "$dir/url")"
    ;;
  stop)
    stop_server
    ;;
  halt|resume)
    run=$(cat "$dir/run_dir")
    if [[ "$cmd" == halt ]]; then
      as_pg "$pgbin/pg_ctl" -D "$run/pgdata" -m immediate -w stop >/dev/null
    else
      start_server "$run"
    fi
    ;;
  *)
    echo "usage: $0 start|stop|halt|resume <dir> <port>" >&2
    exit 2
    ;;
esac
