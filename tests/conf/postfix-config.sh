#!/bin/sh
# postfix-config.sh - m365ctl postfix-config prints lines Postfix takes as
# they are: "main" fed line by line to postconf -e and "master" appended to
# master.cf give back the same values from postconf; the milter address is
# relative to the queue directory (a chrooted smtpd reaches it) when the
# socket lies under it, absolute with a warning otherwise, and Sendmail's
# inet:PORT@HOST is turned into Postfix's inet:HOST:PORT.
set -eu
. "${top_srcdir:-.}/tests/conf/sample-sandbox.sh"
. "$top_srcdir/tests/lib/postfix.sh"
command -v postconf >/dev/null || fail "postconf missing: apt-get install postfix"
conf=$tmp/m365relay.conf
pf_init "$tmp/pf" 2525
export MAIL_CONFIG=$tmp/pf/etc # postconf, as m365ctl runs it, reads this one
q=$tmp/pf/queue

# set_socket VALUE - milter { socket } in the sample
set_socket() {
	sed -i "s|^\([[:space:]]*\)socket = .*|\1socket = \"$1\"|" "$conf"
	grep -q "socket = \"$1\"" "$conf" || fail "no socket line in the sample"
}

set_socket "unix:$q/m365relay/milter.sock"
"$ctl" -c "$conf" postfix-config master >> "$MAIL_CONFIG/master.cf"
entry=$(postconf -M m365/unix)
case $entry in
*"pipe flags=q user=nobody null_sender= argv=/"*"/m365-transport -c $tmp/m365relay.conf -q \${queue_id} -f \${sender} -a \${client_address}"*)
	echo "ok: master entry: $entry" ;;
*) fail "master entry: $entry" ;;
esac
case $entry in *" -c $tmp/m365relay.conf "*) ;; *) fail "no -c for a non-default configuration: $entry" ;; esac
[ "$(postconf -hF m365/unix/process_limit)" = 10 ] || fail "process limit: $(postconf -F m365/unix/process_limit)"
[ "$(postconf -hF m365/unix/chroot)" = n ] || fail "the transport must not be chrooted"

"$ctl" -c "$conf" postfix-config main > "$tmp/main"
grep -qx "smtpd_milters = unix:m365relay/milter.sock" "$tmp/main" ||
	fail "socket under the queue directory: $(grep smtpd_milters "$tmp/main")"
if grep -q '^#' "$tmp/main"; then fail "comments in 'main'"; fi
while IFS= read -r line; do postconf -e "$line"; done < "$tmp/main"
[ "$(postconf -h smtpd_milters)" = "unix:m365relay/milter.sock" ] || fail "smtpd_milters: $(postconf -h smtpd_milters)"
[ "$(postconf -h milter_default_action)" = tempfail ] || fail "milter_default_action"
[ "$(postconf -xh non_smtpd_milters)" = "unix:m365relay/milter.sock" ] ||
	fail "non_smtpd_milters: $(postconf -xh non_smtpd_milters)"
[ "$(postconf -h m365_destination_recipient_limit)" = 500 ] ||
	fail "recipient limit $(postconf -h m365_destination_recipient_limit)"
echo "ok: main lines accepted by postconf -e, values read back"

# --lmtp: the spawn(8) service and the lmtp(8) settings, taken as they are.
"$ctl" -c "$conf" postfix-config --lmtp master >> "$MAIL_CONFIG/master.cf"
entry=$(postconf -M m365lmtp/unix)
case $entry in
*"spawn user=nobody argv=/"*"/m365-transport -c $tmp/m365relay.conf -L"*)
	echo "ok: LMTP master entry: $entry" ;;
*) fail "LMTP master entry: $entry" ;;
esac
"$ctl" -c "$conf" postfix-config --lmtp main > "$tmp/main-lmtp"
while IFS= read -r line; do postconf -e "$line"; done < "$tmp/main-lmtp"
[ "$(postconf -h default_transport)" = "lmtp:unix:private/m365lmtp" ] ||
	fail "default_transport: $(postconf -h default_transport)"
[ "$(postconf -h lmtp_send_xforward_command)" = yes ] || fail "no XFORWARD"
[ "$(postconf -h m365lmtp_time_limit)" = 3600s ] || fail "spawn time limit: $(postconf -h m365lmtp_time_limit)"
postfix -c "$MAIL_CONFIG" check 2>&1 | grep -i m365 && fail "postfix check complains"
echo "ok: --lmtp lines accepted by postconf and postfix check"

# --handoff: the same pipe(8) entry, running m365-handoff (renamed here to
# sit next to the first).
"$ctl" -c "$conf" postfix-config --handoff master | sed 's/^m365 /m365ho /' >> "$MAIL_CONFIG/master.cf"
entry=$(postconf -M m365ho/unix)
case $entry in
*"pipe flags=q user=nobody null_sender= argv=/"*"/m365-handoff -c $tmp/m365relay.conf -q \${queue_id} -f \${sender} -a \${client_address}"*)
	echo "ok: handoff master entry: $entry" ;;
*) fail "handoff master entry: $entry" ;;
esac
out=$("$ctl" -c "$conf" postfix-config --handoff)
case $out in *"m365-transport -D"*"/m365relay/transport.sock"*) ;; *) fail "no word of the daemon: $out" ;; esac
postfix -c "$MAIL_CONFIG" check 2>&1 | grep -i m365 && fail "postfix check complains"
echo "ok: --handoff entry accepted by postconf and postfix check"

set_socket "unix:/run/elsewhere/milter.sock"
out=$("$ctl" -c "$conf" postfix-config)
echo "$out" | grep -qx "smtpd_milters = unix:/run/elsewhere/milter.sock" || fail "absolute: $out"
case $out in *"WARNING: unix:/run/elsewhere/milter.sock is outside Postfix's queue directory $q"*)
	echo "ok: a socket outside the queue directory is named with a warning" ;;
*) fail "no chroot warning: $out" ;; esac

set_socket "inet:8891@127.0.0.1"
"$ctl" -c "$conf" postfix-config main | grep -qx "smtpd_milters = inet:127.0.0.1:8891" ||
	fail "inet: $("$ctl" -c "$conf" postfix-config main | head -n1)"
set_socket "inet6:8891@::1"
"$ctl" -c "$conf" postfix-config main | grep -qx "smtpd_milters = inet:\[::1\]:8891" ||
	fail "inet6: $("$ctl" -c "$conf" postfix-config main | head -n1)"
echo "ok: inet sockets in Postfix's form"

# No secret is needed to print the wiring; a broken file is refused.
rm -f "$tmp/secrets/relay-app.secret"
"$ctl" -c "$conf" postfix-config main >/dev/null || fail "needs the secrets"
echo "bogus {" >> "$conf"
if "$ctl" -c "$conf" postfix-config main >/dev/null 2>&1; then fail "a broken file gave lines"; fi
"$ctl" -c "$conf" postfix-config extra >/dev/null 2>&1 && fail "an unknown argument was taken"
echo "ok: postfix-config"
