#!/usr/bin/env bash
# A private, throwaway PostgreSQL server for tests and benchmarks (Debian's `postgresql` package, see setup.sh).
#
#   scripts/pg.sh start DIR   create a cluster in DIR (when DIR holds none yet) and start it; prints the libpq
#                             conninfo of its database `veil` on stdout
#   scripts/pg.sh halt DIR    stop the server, keep the cluster (`start DIR` starts it again)
#   scripts/pg.sh crash DIR   stop it as a crash would (immediate: no checkpoint; `start DIR` recovers)
#   scripts/pg.sh stop DIR    stop the server and remove DIR
#
# The server listens on a Unix socket in DIR only (listen_addresses = ''), trusts local connections, keeps fsync
# on, and writes nothing outside DIR. DIR must be short (the socket path DIR/.s.PGSQL.5432 must fit in 107
# bytes), e.g. a mktemp -d under /tmp. initdb and pg_ctl refuse to run as root: as root the cluster belongs to the
# `postgres` system user (DIR is chowned to it) and the tools run through runuser; otherwise they run as the caller.
# Exit status: 0 done, 1 failed, 2 usage, 3 the PostgreSQL server binaries are not installed.
set -euo pipefail

usage() {
  echo "usage: scripts/pg.sh start|halt|crash|stop DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
dir=$2
case "$dir" in
  /*) ;;
  *) dir="$(pwd)/$dir" ;;
esac
dir=${dir%/}

# The newest installed major version (/usr/lib/postgresql/15/bin on Debian 12), else whatever is on PATH.
bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then
    echo "$d"
  elif command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  else
    echo "pg.sh: the PostgreSQL server is not installed (Debian: apt-get install postgresql)" >&2
    exit 3
  fi
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

server_running() {
  [ -f "$dir/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1
}

prepare_dir() {
  if [ ${#dir} -gt 80 ]; then
    echo "pg.sh: $dir is too long for a Unix socket directory (at most 80 bytes)" >&2
    exit 2
  fi
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    id -u postgres >/dev/null 2>&1 || { echo "pg.sh: no 'postgres' system user to own the cluster" >&2; exit 1; }
    chown postgres: "$dir"
    runuser -u postgres -- test -w "$dir" ||
      { echo "pg.sh: user postgres cannot reach $dir (is a parent directory private?)" >&2; exit 1; }
  fi
}

init_cluster() {
  as_owner "$bin/initdb" -D "$dir/data" --auth=trust --username=postgres --encoding=UTF8 --locale=C \
    --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  cat >>"$dir/data/postgresql.conf" <<EOF

# scripts/pg.sh: a private server on a Unix socket only
listen_addresses = ''
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
max_connections = 200
EOF
}

start() {
  bin=$(bindir)
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    prepare_dir
    init_cluster
  fi
  if ! server_running; then
    as_owner "$bin/pg_ctl" start -w -t 60 -D "$dir/data" -l "$dir/server.log" >/dev/null ||
      { tail -n 20 "$dir/server.log" >&2; exit 1; }
  fi
  if ! as_owner "$bin/psql" -X -q -At -h "$dir" -U postgres -d postgres \
      -c "SELECT 1 FROM pg_database WHERE datname = 'veil'" | grep -q 1; then
    as_owner "$bin/createdb" -h "$dir" -U postgres veil
  fi
  echo "host=$dir dbname=veil user=postgres"
}

halt() {
  bin=$(bindir)
  if server_running; then
    as_owner "$bin/pg_ctl" stop -w -t 60 -m "${1:-fast}" -D "$dir/data" >/dev/null
  fi
}

case "$cmd" in
  start) start ;;
  halt) halt ;;
  crash) halt immediate ;;
  stop)
    if [ -d "$dir" ]; then
      if [ -f "$dir/data/PG_VERSION" ]; then
        halt || true
      fi
      rm -rf "$dir"
    fi
    ;;
  *) usage ;;
esac
