#!/bin/sh
# runtime.sh - check-config catches what the configuration file cannot
# show but the daemons would meet at run time, each broken on purpose on
# the shipped samples: the service user missing, state_dir missing or not
# the service user's, a secret it cannot read, the sendmail command
# missing.  Each gives exit 1, the problem and its fix; repaired, OK again.
set -u
. "${top_srcdir:-.}/tests/conf/sample-sandbox.sh"
conf=$tmp/m365relay.conf
failures=0
expect_error() { # expect_error WHAT TEXT FIX
	if out=$("$ctl" -c "$conf" check-config 2>&1); then
		echo "FAIL: $1: check-config passed: $out"
		failures=$((failures + 1))
		return
	fi
	case $out in
	*"error: $2"*"fix: $3"*) echo "ok: $1" ;;
	*) echo "FAIL: $1: $out"; failures=$((failures + 1)) ;;
	esac
}
expect_ok() {
	if out=$("$ctl" -c "$conf" check-config 2>&1) &&
		[ "$(printf '%s\n' "$out" | head -n 1)" = "configuration OK" ]; then
		echo "ok: $1"
	else
		echo "FAIL: $1: $out"
		failures=$((failures + 1))
	fi
}

expect_ok "the sandbox is right to start with"

rmdir "$tmp/state"
expect_error "state_dir missing" "state_dir $tmp/state: No such file or directory" \
	"mkdir -p $tmp/state && chown nobody $tmp/state"
mkdir "$tmp/state"
chmod 755 "$tmp/state"
expect_error "state_dir not the service user's" \
	"state_dir $tmp/state is not writable by the service user nobody" "chown nobody $tmp/state"
chown nobody "$tmp/state"
expect_ok "state_dir repaired"

chown root "$tmp/secrets/relay-app.secret"
expect_error "a secret the service user cannot read" \
	"client_secret_file $tmp/secrets/relay-app.secret cannot be read by the service user nobody" \
	"chown nobody $tmp/secrets/relay-app.secret"
chown nobody "$tmp/secrets/relay-app.secret"

sed -i 's|^user = .*|user = "no-such-user-m365"|' "$conf"
expect_error "the service user missing" "the service user no-such-user-m365 does not exist" \
	"useradd --system"
sed -i 's|^user = .*|user = "nobody"|' "$conf"

sed -i 's|^\tsendmail = .*|\tsendmail = "/nonexistent/sendmail"|' "$conf"
grep -q 'sendmail = "/nonexistent/sendmail"' "$conf" || { echo "FAIL: the sample has no sendmail line"; exit 1; }
expect_error "no sendmail command" \
	"transport { sendmail } /nonexistent/sendmail cannot be run (No such file or directory)" \
	"install the MTA's sendmail command"
sed -i 's|^\tsendmail = .*|\tsendmail = "/usr/sbin/sendmail"|' "$conf"
expect_ok "everything repaired"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
