# lib.sh - sourced by the store tests: a milter configuration with the
# store of the caller's choice, and helpers to start and stop milters.
: "${top_srcdir:=.}" "${top_builddir:=.}"
top_srcdir=$(cd "$top_srcdir" && pwd)
top_builddir=$(cd "$top_builddir" && pwd)
. "$top_srcdir/tests/lib/common.sh" # free_port, wait_until
command -v miltertest >/dev/null || { echo "ERROR: miltertest not installed (apt-get install miltertest)"; exit 99; }

tmp=$(mktemp -d)
chmod 755 "$tmp"
chown nobody "$tmp"
failures=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# write_conf NAME MILTER_PORT METRICS_PORT STORE_SECTION
write_conf() {
	echo s > "$tmp/app.secret"
	chmod 600 "$tmp/app.secret"
	cat > "$tmp/$1.conf" <<CONF
user = "nobody"
state_dir = "$tmp"
milter {
	socket = "inet:$2@127.0.0.1"
	pid_file = "$tmp/$1.pid"
	messages_action = tempfail
	metrics_listen = "127.0.0.1:$3"
}
$4
tenant "contoso" { accepted_domains = { "contoso.com" } }
app "a" { client_id = "cid" client_secret_file = "app.secret" }
mailbox "erp@contoso.com" { app = "a" send_as = { "billing@contoso.com" } messages = "30/60s" }
domain "contoso.com" { default_sender = "erp@contoso.com" mailbox = "erp@contoso.com" }
submitter "erp" { sasl_logins = { "erp" } send_as = { "billing@contoso.com" } }
CONF
}

# start_milter NAME PORT - in the foreground (background job), log NAME.log
start_milter() {
	"$top_builddir/milter/m365-milter" -f -c "$tmp/$1.conf" 2>>"$tmp/$1.log" &
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "milter $1 did not start"; cat "$tmp/$1.log"; return 1
}

# stop_milter NAME - SIGTERM, then wait for the process itself: it removes
# its pid file before it has finished exiting (and closed its socket; an
# ASan build spends a while in the leak check there).
stop_milter() {
	local pid
	[ -f "$tmp/$1.pid" ] || return 0
	pid=$(cat "$tmp/$1.pid")
	kill "$pid" 2>/dev/null || return 0
	for _ in $(seq 400); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
	echo "milter $1 (pid $pid) did not stop in 20 s"
	return 1
}

# burst PORT COUNT TAG - prints "accepted=N refused=M"
burst() {
	miltertest -D port="$1" -D count="$2" -D tag="$3" -s "$top_srcdir/tests/store/burst.lua" 2>&1 |
		tee -a "$tmp/burst.out" | grep -o 'accepted=[0-9]* refused=[0-9]*' ||
		{ echo "burst failed:" >&2; tail -5 "$tmp/burst.out" >&2; }
}

metric() { # metric PORT NAME-AND-LABELS
	curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k {print $2}'
}
