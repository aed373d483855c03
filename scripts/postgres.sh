#!/usr/bin/env bash
# A throwaway PostgreSQL on loopback for the tests: `start` installs it if missing (Debian),
# makes a fresh cluster and prints the database URL; `stop DIR` stops and removes it.
#   url=$(bash scripts/postgres.sh start) ... bash scripts/postgres.sh stop
set -euo pipefail
port=${TOKENLENS_PG_PORT:-54329}
dir=${TOKENLENS_PG_DIR:-/tmp/tokenlens-pg-$port}

# Run as the postgres user when we are root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
# The newest server install (a client-only package has bin/ but no initdb).
bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | while read -r d; do [ -x "$d/initdb" ] && echo "$d"; done | tail -1; }

case "${1:-}" in
  start)
    if [ -z "$(bindir)" ]; then
      sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
      echo "installing postgresql" >&2
      $sudo apt-get update -qq >&2
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    bin=$(bindir)
    [ -f "$dir/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir" -m immediate stop >&2 || true
    rm -rf "$dir" && mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_pg "$bin/initdb" -D "$dir" -U tokenlens --auth=trust -E UTF8 >/dev/null
    as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/log" -w \
      -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off" start >&2
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U tokenlens tokenlens
    echo "postgres://tokenlens@127.0.0.1:$port/tokenlens"
    ;;
  stop)
    bin=$(bindir)
    [ -n "$bin" ] && [ -f "$dir/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir" -m fast stop >&2 || true
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
