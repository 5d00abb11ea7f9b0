#!/bin/bash
# milter-overhead.sh - what attaching m365-milter costs a Postfix relay.
#
# One private Postfix on loopback (tests/lib/postfix.sh), smtp-sink as the
# next hop, smtp-source as the devices.  The same load runs alternately
# without the milter (the baseline) and with it, ROUNDS times each; the
# report gives messages per second for both and their ratio, measured in
# this run on this machine, plus the milter's CPU time per message and its
# peak memory.  The milter does its full work per message: submitter
# recognition, policy, header changes, and one admission in the LMDB store
# (the mailbox's limit is set high enough never to refuse).
#
#   bash bench/milter-overhead.sh [MESSAGES [SESSIONS [ROUNDS]]]
#
# Needs root (a private Postfix), postfix (smtp-source, smtp-sink), a built
# tree: run from the top of the source tree with top_builddir=BUILD set, or
# from the build directory.
set -eu
msgs=${1:-2000}
sessions=${2:-10}
rounds=${3:-3}
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}" "${top_builddir:=.}"
top_builddir=$(cd "$top_builddir" && pwd)
milter=$top_builddir/milter/m365-milter
[ -x "$milter" ] || { echo "no $milter: build first, or set top_builddir" >&2; exit 1; }
for t in postfix smtp-source smtp-sink; do
	command -v $t >/dev/null || { echo "$t not installed (apt-get install postfix)" >&2; exit 1; }
done
. "$top_srcdir/tests/lib/postfix.sh"

tmp=$(mktemp -d /tmp/m365-bench.XXXXXX)
chmod 755 "$tmp"
milter_pid= sink_pid=
cleanup() {
	pf_stop
	for p in $milter_pid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	[ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

smtp_port=$(free_port) inet_port=$(free_port) sink_port=$(free_port)
mkdir -p "$tmp/state"
[ -n "${BENCH_STATE_DIR:-}" ] && rmdir "$tmp/state" && ln -s "$BENCH_STATE_DIR" "$tmp/state"
chown postfix "$tmp/state"
echo s > "$tmp/app.secret"
chmod 600 "$tmp/app.secret"
# Two milters on the same store: one on a unix socket (the default and the
# recommended way), one on TCP.  They run as postfix so that Postfix can
# reach the unix socket without a group change.
write_conf() { # write_conf NAME SOCKET
	cat > "$tmp/$1.conf" <<CONF
user = "postfix"
state_dir = "$tmp/state"
milter { socket = "$2" pid_file = "$tmp/$1.pid" }
tenant "contoso" {
	accepted_domains = { "contoso.com" }
	mx_endpoint = "contoso-com.mail.protection.outlook.com"
}
app "app" { client_id = "cid" client_secret_file = "$tmp/app.secret" }
mailbox "scanner@contoso.com" { app = "app" messages = "10000/1s" recipients = "1000000/24h" }
domain "contoso.com" { mode = ${BENCH_MODE:-smtp-auth} default_sender = "scanner@contoso.com" mailbox = "scanner@contoso.com" }
submitter "lan" { clients = { "127.0.0.0/8" } domain = "contoso.com" send_as = { "scanner@contoso.com" } }
CONF
}
write_conf unix "unix:$tmp/milter.sock"
write_conf inet "inet:$inet_port@127.0.0.1"

smtp-sink -u nobody 127.0.0.1:$sink_port 256 &
sink_pid=$!
start_milter() { # start_milter NAME PROBE -> pid in $!
	"$milter" -f -c "$tmp/$1.conf" 2>"$tmp/$1.log" &
	pids="$pids $!"
	for _ in $(seq 100); do
		eval "$2" && return 0
		sleep 0.05
	done
	echo "the $1 milter did not start:" >&2
	cat "$tmp/$1.log" >&2
	exit 1
}
pids=
start_milter unix '[ -S "$tmp/milter.sock" ]'
start_milter inet '(exec 3<>"/dev/tcp/127.0.0.1/$inet_port") 2>/dev/null'
milter_pid=$pids
pf_init "$tmp/pf" "$smtp_port"
pf_set "relayhost = [127.0.0.1]:$sink_port" "milter_protocol = 6" \
	"milter_default_action = tempfail" "default_process_limit = 100"
pf_start

# The workers are the milters' children: their CPU and memory are reported.
set -- $pids
unix_worker=$(pgrep -P "$1" | head -1)
inet_worker=$(pgrep -P "$2" | head -1)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run -> prints the seconds MESSAGES take through smtp-source until the
# queue is empty (the sink took everything).
run() {
	local t0 t1
	t0=$(date +%s.%N)
	smtp-source -s "$sessions" -m "$msgs" -l 1024 -f scanner@contoso.com \
		-t alice@contoso.com "127.0.0.1:$smtp_port"
	pf_wait_queue_empty 300 || { echo "queue not empty after 300 s" >&2; exit 1; }
	t1=$(date +%s.%N)
	echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}'
}
use_milter() {
	case $1 in
	none) pf_set "smtpd_milters =" ;;
	unix) pf_set "smtpd_milters = unix:$tmp/milter.sock" ;;
	inet) pf_set "smtpd_milters = inet:127.0.0.1:$inet_port" ;;
	esac
	postfix -c "$PF_DIR/etc" reload >/dev/null 2>&1
	sleep 1
}

echo "m365-milter overhead: $msgs messages of 1 KiB, $sessions sessions, $rounds rounds"
echo "(time from the first connection until the queue is empty; smtp-sink as next hop)"
all_none= all_unix= all_inet= cpu=0
rate() { echo "$msgs $1" | awk '{printf "%4.0f", $1 / $2}'; }
for r in $(seq "$rounds"); do
	use_milter none
	n=$(run)
	use_milter unix
	c0=$(cpu_ticks "$unix_worker")
	u=$(run)
	c1=$(cpu_ticks "$unix_worker")
	cpu=$((cpu + c1 - c0))
	use_milter inet
	i=$(run)
	printf 'round %d: no milter %6.2f s (%s msg/s)  unix socket %6.2f s (%s msg/s)  inet %6.2f s (%s msg/s)\n' \
		"$r" "$n" "$(rate "$n")" "$u" "$(rate "$u")" "$i" "$(rate "$i")"
	all_none="$all_none $n" all_unix="$all_unix $u" all_inet="$all_inet $i"
done
for name in unix inet; do
	accepted=$(grep -c 'verdict=accept' "$tmp/$name.log" || true)
	[ "$accepted" -eq $((msgs * rounds)) ] ||
		{ echo "the $name milter accepted $accepted of $((msgs * rounds)): see its log" >&2; exit 1; }
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
n=$(echo "$all_none" | median)
u=$(echo "$all_unix" | median)
i=$(echo "$all_inet" | median)
echo "median: no milter $n s, unix socket $u s, inet $i s"
echo "$n $u $i" | awk '{printf "throughput relative to no milter: unix socket %.2f, inet %.2f\n", $1 / $2, $1 / $3}'
echo "$cpu $(getconf CLK_TCK) $msgs $rounds" |
	awk '{printf "milter CPU (unix socket): %.3f ms per message\n", $1 * 1000 / $2 / ($3 * $4)}'
echo "milter worker peak memory (VmHWM): unix $(awk '/VmHWM/ {print $2, $3}' "/proc/$unix_worker/status"), inet $(awk '/VmHWM/ {print $2, $3}' "/proc/$inet_worker/status")"
