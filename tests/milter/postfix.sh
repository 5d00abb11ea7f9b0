#!/bin/bash
# postfix.sh - m365-milter attached to a real Postfix on loopback, with
# swaks as the devices (XCLIENT gives each its LAN address) and a test sink
# as the next hop.  The issue's scenarios:
#  (a) scanner@printer.local arrives as the default sender, From rewritten;
#  (b) a From the submitter may not use gets 550 5.7.60 at the device;
#  (c) an external recipient in direct-send mode is refused at RCPT;
#  (d) a SASL-authenticated submitter is recognised by its login;
#  (e) a milter killed mid-session gives the device a 4xx, and the retry
#      after the restart succeeds;
# plus a forged route header removed and an 8 KiB+ From refused.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
top_srcdir=$(cd "$top_srcdir" && pwd)
top_builddir=$(cd "$top_builddir" && pwd)
. "$top_srcdir/tests/lib/postfix.sh"
for tool in postfix swaks saslpasswd2; do
	command -v $tool >/dev/null || { echo "ERROR: $tool not installed (apt-get install postfix swaks; sh tools/install-deps)"; exit 99; }
done

tmp=$(mktemp -d /tmp/m365-pf.XXXXXX)
chmod 755 "$tmp"
milter_pid=
sink_pid=
cleanup() {
	pf_stop
	[ -n "$milter_pid" ] && kill "$milter_pid" 2>/dev/null && wait "$milter_pid" 2>/dev/null
	[ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

failures=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect() { # expect WHAT HAYSTACK NEEDLE
	case $2 in *"$3"*) ok "$1" ;; *) fail "$1: no \"$3\" in:"; echo "$2" | tail -n 8 ;; esac
}

smtp_port=$(free_port)
milter_port=$(free_port)
sink_port=$(free_port)

mkdir "$tmp/sink"
/usr/bin/python3 "$top_srcdir/tests/lib/smtpsink.py" --port "$sink_port" --dir "$tmp/sink" &
sink_pid=$!

sed -e "s|@PORT@|$milter_port|" -e "s|@DIR@|$tmp|" -e "s|@ON_ERROR@|tempfail|" \
	"$top_srcdir/tests/milter/milter.conf.in" > "$tmp/m365relay.conf"
echo s > "$tmp/app.secret"; chmod 600 "$tmp/app.secret"
echo c > "$tmp/relay.crt"; echo k > "$tmp/relay.key"; chmod 600 "$tmp/relay.key"
"$top_builddir/cli/m365ctl" -c "$tmp/m365relay.conf" route-key >/dev/null || exit 1
chown nobody "$tmp/route.key" # the milter's user = in milter.conf.in

start_milter() {
	"$top_builddir/milter/m365-milter" -f -c "$tmp/m365relay.conf" 2>>"$tmp/milter.log" &
	milter_pid=$!
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$milter_port") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "milter did not listen"
	return 1
}
start_milter || exit 1

pf_init "$tmp/pf" "$smtp_port"
pf_set "relayhost = [127.0.0.1]:$sink_port" \
	"smtpd_milters = inet:127.0.0.1:$milter_port" \
	"non_smtpd_milters = inet:127.0.0.1:$milter_port" \
	"milter_protocol = 6" \
	"milter_default_action = tempfail"
pf_sasl erp secret
pf_start || exit 1

device() { # device CLIENT-IP SWAKS-ARGS...
	local ip=$1
	shift
	swaks --server "127.0.0.1:$smtp_port" --xclient-addr "$ip" --timeout 20 "$@" 2>&1
}

# sink_wait N - until the sink holds N messages (20 s at most)
sink_wait() {
	for _ in $(seq 200); do
		[ "$(ls "$tmp/sink" | grep -c '\.json$')" -ge "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

# sink_get N FIELD - a field of the N-th message received (by time)
sink_get() {
	/usr/bin/python3 - "$tmp/sink" "$1" "$2" <<'PY'
import json, os, sys
d, n, field = sys.argv[1], int(sys.argv[2]), sys.argv[3]
msgs = sorted((json.load(open(os.path.join(d, f))) for f in os.listdir(d) if f.endswith(".json")),
              key=lambda m: m["time"])
v = msgs[n - 1][field]
print(" ".join(v) if isinstance(v, list) else v)
PY
}

# (a) a LAN scanner with a made-up sender, writing to a colleague
out=$(device 192.168.10.7 --from scanner@printer.local --to alice@contoso.com \
	--header 'From: "Scanner 3F" <scanner@printer.local>' \
	--header 'X-M365Relay-Route: v=2; mode=relay; tenant=contoso; domain=contoso.com; submitter=evil; connector=onprem')
expect "(a) scanner accepted" "$out" "250 2.0.0 Ok: queued"
qid=$(echo "$out" | sed -n 's/.*Ok: queued as \([0-9A-Za-z]*\).*/\1/p' | head -n1)
if sink_wait 1; then
	expect "(a) envelope sender rewritten" "$(sink_get 1 mail_from)" "scanner@contoso.com"
	data=$(sink_get 1 data)
	expect "(a) header From rewritten, display name kept" "$data" "From: Scanner 3F <scanner@contoso.com>"
	expect "(a) Reply-To holds the original" "$data" "Reply-To: Scanner 3F <scanner@printer.local>"
	expect "(a) route header added" "$data" "X-M365Relay-Route: v=2; mode=direct-send; tenant=contoso; domain=contoso.com; submitter=scanners"
	expect "(a) route signed for Postfix's queue id" "$data" "submitter=scanners; qid=$qid; key="
	case $data in *"submitter=evil"*) fail "(a) forged route header kept" ;; *) ok "(a) forged route header removed" ;; esac
else
	fail "(a) nothing reached the next hop"
fi

# (b) the scanner claims to be the CEO
out=$(device 192.168.10.7 --from scanner@contoso.com --to alice@contoso.com \
	--header 'From: "scanner@contoso.com" <ceo@contoso.com>')
expect "(b) Send As refused at the device" "$out" "550 5.7.60 SMTP; Client does not have permissions to send as this sender"

# (c) a printer on a direct-send domain writes outside
out=$(device 10.1.2.3 --from mfp@fabrikam.com --to x@gmail.com --header 'From: mfp@fabrikam.com')
expect "(c) external recipient refused at RCPT" "$out" "<** 550 5.7.54 Direct Send can only reach the organisation's own mailboxes; <x@gmail.com> is outside fabrikam.com"
expect "(c) at RCPT time" "$out" " -> RCPT TO:<x@gmail.com>"

# (c) again, with an internal recipient first: Postfix has opened the queue
# file when the external one is refused, and the milter's line names it.
out=$(device 10.1.2.3 --from mfp@fabrikam.com --to a@fabrikam.com,x@gmail.com \
	--header 'From: mfp@fabrikam.com')
qid_c=$(echo "$out" | sed -n 's/.*Ok: queued as \([0-9A-Za-z]*\).*/\1/p' | head -n1)
expect "(c) the internal recipient is accepted" "$out" "250 2.0.0 Ok: queued"
if [ -n "$qid_c" ] && grep -qE "^[0-9T:.-]+Z m365-milter\[[0-9]+\]: $qid_c: recipient <x@gmail.com> refused: 550 5.7.54" "$tmp/milter.log"; then
	ok "(c) the refusal of the second recipient carries the queue id $qid_c"
else
	fail "(c) no refusal line with queue id '$qid_c': $(grep 'x@gmail.com' "$tmp/milter.log" | tail -n 2)"
fi
sink_wait 2 || fail "(c) the internal recipient's copy did not arrive"

# (d) an application logged in with SASL from an address no block covers
out=$(device 203.0.113.50 --auth LOGIN --auth-user erp --auth-password secret \
	--from billing@contoso.com --to customer@example.net --header 'From: Billing <billing@contoso.com>')
expect "(d) SASL submitter accepted" "$out" "250 2.0.0 Ok: queued"
if sink_wait 3; then
	expect "(d) recognised by its login: route" "$(sink_get 3 data)" \
		"X-M365Relay-Route: v=2; mode=smtp-auth; tenant=contoso; domain=contoso.com; submitter=erp; mailbox=erp@contoso.com; qid="
else
	fail "(d) nothing reached the next hop"
fi
out=$(device 203.0.113.50 --from billing@contoso.com --to customer@example.net)
expect "(d) the same client without the login is refused" "$out" "550 5.7.1 Client [203.0.113.50] is not allowed"

# A From over the parser's 8 KiB bound: refused, not truncated or crashed.
big=$(head -c 9000 /dev/zero | tr '\0' x)
out=$(device 10.1.2.3 --from mfp@fabrikam.com --to a@fabrikam.com --header "From: $big <mfp@fabrikam.com>")
expect "huge From refused" "$out" "550 5.6.0 The From header cannot be parsed: header value too long"

# (e) the milter dies while a device is mid-session
out=$(/usr/bin/python3 - "$smtp_port" "$tmp" <<'PY'
import os, signal, smtplib, subprocess, sys, time
port, tmp = int(sys.argv[1]), sys.argv[2]
s = smtplib.SMTP("127.0.0.1", port, timeout=20)
s.ehlo("scanner")
s.docmd("XCLIENT", "ADDR=192.168.10.7")
s.ehlo("scanner")
print("MAIL", s.mail("scanner@contoso.com"))
sup = int(open(tmp + "/milter.pid").read())
kids = subprocess.run(["pgrep", "-P", str(sup)], capture_output=True, text=True).stdout.split()
pids = [sup] + [int(k) for k in kids]
for pid in pids:
    os.kill(pid, signal.SIGKILL)
def gone(pid):  # exited (a zombie holds no socket) or reaped
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
end = time.monotonic() + 10
while not all(gone(p) for p in pids):
    if time.monotonic() > end:
        sys.exit("timed out after 10 s waiting for the killed milter (pids %s) to exit" % pids)
    time.sleep(0.05)
print("RCPT", s.rcpt("alice@contoso.com"))
try:
    print("DATA", s.data(b"From: scanner@contoso.com\r\nSubject: during the crash\r\n\r\nx\r\n"))
except smtplib.SMTPException as e:
    print("DATA error", e)
s.close()
PY
)
expect "(e) device gets a 4xx while the milter is down" "$out" "(451, b'4.7.1"
wait "$milter_pid" 2>/dev/null
milter_pid=
start_milter || exit 1
out=$(device 192.168.10.7 --from scanner@contoso.com --to alice@contoso.com \
	--header 'From: scanner@contoso.com' --header 'Subject: retry after restart')
expect "(e) the retry after the restart succeeds" "$out" "250 2.0.0 Ok: queued"
if sink_wait 4; then
	expect "(e) the retry reached the next hop" "$(sink_get 4 data)" "Subject: retry after restart"
else
	fail "(e) the retry did not reach the next hop"
fi

# Every message the milter saw was logged once, with Postfix's queue id.
n_lines=$(grep -c 'submitter=' "$tmp/milter.log")
n_ids=$(grep -oE ' m365-milter\[[0-9]+\]: [0-9A-F]{8,}: client=' "$tmp/milter.log" | sort -u | wc -l)
[ "$n_ids" -ge 3 ] && ok "verdict lines carry Postfix queue ids ($n_ids)" || fail "queue ids in the log: $n_ids"
echo "--- milter log ($n_lines verdict lines)"
cat "$tmp/milter.log"
echo "--- postfix log"
tail -n 30 "$(pf_log)"
[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all Postfix scenarios passed"
