#!/bin/bash
# cluster.sh - two milters sharing one Redis, driven at the same time, never
# admit more than the limit together; with Redis stopped they answer 4xx,
# and admission resumes when it returns.  The redis-server is our own, on
# loopback.
set -u
. "$top_srcdir/tests/store/lib.sh"
command -v redis-server >/dev/null || { echo "ERROR: redis-server not installed (apt-get install redis-server)"; exit 99; }
rp=$(free_port); m1=$(free_port); m2=$(free_port); x1=$(free_port); x2=$(free_port)
start_redis() {
	redis-server --port "$rp" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
		--daemonize yes --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log"
	for _ in $(seq 100); do
		redis-cli -p "$rp" ping 2>/dev/null | grep -q PONG && return 0
		sleep 0.05
	done
}
store="store { backend = redis redis_port = $rp prefix = \"cluster:\" }"
write_conf a "$m1" "$x1" "$store"
write_conf b "$m2" "$x2" "$store"
trap 'stop_milter a; stop_milter b; redis-cli -p $rp shutdown nosave >/dev/null 2>&1; rm -rf "$tmp"' EXIT
start_redis
start_milter a "$m1" || exit 1
start_milter b "$m2" || exit 1

burst "$m1" 20 A > "$tmp/r1" &
p1=$!
burst "$m2" 20 B > "$tmp/r2" &
p2=$!
wait "$p1" "$p2"    # not a bare wait: the milters are our children too
a1=$(sed 's/accepted=\([0-9]*\).*/\1/' "$tmp/r1"); a2=$(sed 's/accepted=\([0-9]*\).*/\1/' "$tmp/r2")
echo "milter a: $(cat "$tmp/r1"); milter b: $(cat "$tmp/r2")"
[ $((a1 + a2)) -eq 30 ] && ok "together exactly 30 of 40 admitted ($a1 + $a2)" || fail "admitted $a1 + $a2"
out=$("$top_builddir/cli/m365ctl" -c "$tmp/a.conf" status --json)
echo "$out" | grep -q '"admitted": 30,' && ok "m365ctl status on Redis: 30 admitted" || fail "status: $out"
v1=$(metric "$x1" 'm365relay_verdicts_total{verdict="accept",reason="ok"}')
v2=$(metric "$x2" 'm365relay_verdicts_total{verdict="accept",reason="ok"}')
[ "$v1" = "$a1" ] && [ "$v2" = "$a2" ] && ok "metrics match each milter's admissions" || fail "metrics $v1 $v2"

# Redis goes away: the configured 4xx, logged once; it comes back: admission resumes.
redis_pid=$(cat "$tmp/redis.pid")
redis-cli -p "$rp" shutdown nosave >/dev/null 2>&1
wait_until 10 "redis-server (pid $redis_pid) to exit" pid_gone "$redis_pid" || fail "Redis did not stop"
r=$(burst "$m1" 3 C)
[ "$r" = "accepted=0 refused=3" ] && ok "store down: refused ($r)" || fail "store down: $r"
grep -q 'reason=store-error reply="451 4.3.0 Gateway state store unavailable; try again later"' "$tmp/a.log" &&
	ok "store down: 451 4.3.0" || fail "store down reply"
n=$(grep -c 'state store failing' "$tmp/a.log")
[ "$n" = 1 ] && ok "the failure is logged once" || fail "logged $n times"
v=$(metric "$x1" 'm365relay_store_up')
[ "$v" = 0 ] && ok "metrics: store down" || fail "store_up '$v'"
start_redis
r=$(burst "$m1" 3 D)
[ "$r" = "accepted=3 refused=0" ] && ok "store back: admission resumes ($r)" || fail "store back: $r"
grep -q 'state store recovered' "$tmp/a.log" && ok "recovery logged" || fail "recovery not logged"
exit $failures
