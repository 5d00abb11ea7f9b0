#!/bin/bash
# daemon.sh - m365-milter's process life as root, where it matters:
#  - a symbolic link planted as the pid file (in a directory the service
#    user owns) is refused, and the file it points to is left untouched;
#  - a second m365-milter with the same pid file stops before touching the
#    socket, and the first one keeps serving it;
#  - m365ctl status run as root on a fresh state directory creates the
#    store as the service user (else every delivery after it would defer
#    with "Permission denied"), and refuses when that user does not exist.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
top_srcdir=$(cd "$top_srcdir" && pwd)
top_builddir=$(cd "$top_builddir" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (it starts the milter as root, as systemd-less installs do)"; exit 77; }

tmp=$(mktemp -d /tmp/m365-daemon.XXXXXX)
chmod 755 "$tmp"
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	for p in $pids; do wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

. "$top_srcdir/tests/lib/common.sh"
port=$(free_port)
mkdir "$tmp/run"
chown nobody "$tmp/run" # the service user's directory, as /run/m365relay is
sed -e "s|@PORT@|$port|" -e "s|@DIR@|$tmp|" -e "s|@ON_ERROR@|tempfail|" \
	"$top_srcdir/tests/milter/milter.conf.in" |
	sed -e "s|pid_file = .*|pid_file = \"$tmp/run/milter.pid\"|" > "$tmp/m365relay.conf"
grep -q "pid_file = \"$tmp/run/milter.pid\"" "$tmp/m365relay.conf" || { echo "FAIL: no pid_file line"; exit 1; }
echo s > "$tmp/app.secret"; chmod 600 "$tmp/app.secret"
echo c > "$tmp/relay.crt"; echo k > "$tmp/relay.key"; chmod 600 "$tmp/relay.key"
"$top_builddir/cli/m365ctl" -c "$tmp/m365relay.conf" route-key >/dev/null || exit 1
milter=$top_builddir/milter/m365-milter

# start_first STDERR - run the milter in the background ($first), wait for its socket
start_first() {
	"$milter" -f -c "$tmp/m365relay.conf" 2>"$1" &
	first=$!
	pids="$first"
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.05
	done
}

# refused WHAT TEXT - another start must fail with exit status 1, saying TEXT
refused() {
	out=$(timeout 20 "$milter" -f -c "$tmp/m365relay.conf" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		fail "$1: it started"
	elif [ "$rc" -ne 1 ]; then
		fail "$1: exit status $rc, not 1: $out"
	else
		case $out in *"$2"*) ok "$1: $(echo "$out" | tail -n1)" ;; *) fail "$1: $out" ;; esac
	fi
}

# 1. The pid file is a symlink to a root-owned file.
echo "precious" > "$tmp/victim"
ln -s "$tmp/victim" "$tmp/run/milter.pid"
refused "symlinked pid file refused" "is a symbolic link"
[ "$(cat "$tmp/victim")" = precious ] && [ "$(stat -c %U "$tmp/victim")" = root ] &&
	ok "the file it points to is untouched" || fail "victim changed: $(stat -c '%U %s' "$tmp/victim")"
rm -f "$tmp/run/milter.pid"

# A hard link (where protected_hardlinks allows one) is refused too.
touch "$tmp/run/other"
ln "$tmp/run/other" "$tmp/run/milter.pid"
refused "hard-linked pid file refused" "not a plain file of ours"
rm -f "$tmp/run/milter.pid" "$tmp/run/other"

# 2. Two instances.
start_first "$tmp/first.log"
[ "$(cat "$tmp/run/milter.pid" 2>/dev/null)" = "$first" ] && ok "pid file holds the first pid" ||
	fail "pid file: $(cat "$tmp/run/milter.pid" 2>&1)"
refused "second instance refused" "already running (pid $first"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
	ok "the first instance still serves its socket"
else
	fail "the socket went away"
fi
[ "$(cat "$tmp/run/milter.pid" 2>/dev/null)" = "$first" ] && ok "pid file still the first's" ||
	fail "pid file overwritten"
# A SIGTERM to the worker is libmilter's to take (a clean stop, then the
# supervisor starts another); the reload thread once took it and the worker
# died of the signal.
w=$(pgrep -P "$first" | head -n1)
if [ -n "$w" ]; then
	kill -TERM "$w"
	for _ in $(seq 100); do
		grep -q "worker \(exited\|killed\)" "$tmp/first.log" && break
		sleep 0.05
	done
	if grep -q "worker killed by signal 15" "$tmp/first.log"; then
		fail "SIGTERM killed the worker outright: $(grep worker "$tmp/first.log" | tail -n2)"
	elif grep -q "worker exited with status 0" "$tmp/first.log"; then
		ok "SIGTERM stops the worker cleanly"
	else
		fail "worker after SIGTERM: $(tail -n3 "$tmp/first.log")"
	fi
else
	fail "no worker process under $first"
fi
kill "$first"
wait "$first"
pids=""
[ ! -e "$tmp/run/milter.pid" ] && ok "pid file removed at stop" || fail "pid file left"

# 3. log_file: time-stamped lines, and a new file after a rotation + SIGHUP.
sed -i "1i log_file = \"$tmp/run/milter.log\"" "$tmp/m365relay.conf"
start_first "$tmp/stderr.log"
if grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z m365-milter\[[0-9]+\]: started' "$tmp/run/milter.log"; then
	ok "log_file has time-stamped lines"
else
	fail "log_file: $(cat "$tmp/run/milter.log" 2>&1)"
fi
mv "$tmp/run/milter.log" "$tmp/run/milter.log.1"
kill -HUP "$first"
for _ in $(seq 100); do
	grep -q "SIGHUP: reloading" "$tmp/run/milter.log" 2>/dev/null && break
	sleep 0.05
done
grep -q "SIGHUP: reloading" "$tmp/run/milter.log" 2>/dev/null && ok "reopened after a rotation (SIGHUP)" ||
	fail "no new log_file after SIGHUP: $(ls "$tmp/run")"
kill "$first"
wait "$first"
pids=""
[ ! -s "$tmp/stderr.log" ] && ok "nothing on stderr with log_file set" || fail "stderr: $(cat "$tmp/stderr.log")"
sed -i '/^log_file = /d' "$tmp/m365relay.conf"

# 4. m365ctl status as root on a fresh state directory.
mkdir "$tmp/state"
chown nobody "$tmp/state"
sed -i "s|^state_dir = .*|state_dir = \"$tmp/state\"|" "$tmp/m365relay.conf"
grep -q "^state_dir = \"$tmp/state\"" "$tmp/m365relay.conf" || echo "state_dir = \"$tmp/state\"" >> "$tmp/m365relay.conf"
sed -i "s|store {[^}]*}||" "$tmp/m365relay.conf"
if out=$("$top_builddir/cli/m365ctl" -c "$tmp/m365relay.conf" status 2>&1); then
	owners=$(stat -c %U "$tmp/state"/* | sort -u | tr '\n' ' ')
	[ "$owners" = "nobody " ] && ok "status as root created the store as the service user" ||
		fail "store files owned by: $owners ($(ls -l "$tmp/state"))"
else
	fail "status failed: $out"
fi
sed -i 's|^user = .*|user = "no-such-user-m365"|' "$tmp/m365relay.conf"
rm -rf "$tmp/state"/*
if out=$("$top_builddir/cli/m365ctl" -c "$tmp/m365relay.conf" status 2>&1); then
	fail "status ran as root without a service user"
else
	case $out in *'service user "no-such-user-m365" does not exist'*) ok "refused without a service user" ;;
	*) fail "unexpected: $out" ;; esac
	[ -z "$(ls "$tmp/state")" ] && ok "and created nothing" || fail "created: $(ls "$tmp/state")"
fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
