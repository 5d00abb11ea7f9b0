#!/bin/bash
# redis.sh - the store contract (tests/unit/check_store) against Redis: the
# same tests the LMDB backend passes, on a redis-server of our own on
# loopback (a free port, no persistence), stopped at the end.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
. "$top_srcdir/tests/lib/common.sh"
command -v redis-server >/dev/null || { echo "ERROR: redis-server not installed (apt-get install redis-server)"; exit 99; }
tmp=$(mktemp -d)
port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
	--daemonize yes --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log"
trap 'kill "$(cat "$tmp/redis.pid" 2>/dev/null)" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do
	redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
	sleep 0.05
done
M365_TEST_STORE=redis M365_TEST_REDIS_PORT=$port "$top_builddir/tests/unit/check_store"
