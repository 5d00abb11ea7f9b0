#!/bin/sh
# explain.sh - m365ctl explain reports the policy's decision for a
# submission against the shipped samples (what an administrator runs to
# ask "what happens to mail from this scanner?").
set -eu
. "${top_srcdir:-.}/tests/conf/sample-sandbox.sh"
ctl() { "$top_builddir/cli/m365ctl" -c "$tmp/m365relay.conf" explain "$@"; }
expect() { # expect OUTPUT TEXT
	case $1 in *"$2"*) echo "ok: $2" ;; *) fail "missing \"$2\" in:
$1" ;; esac
}

# A LAN scanner with a made-up sender writes to a colleague.
out=$(ctl --client 192.168.10.7 --sender '<scanner@printer.local>' \
	--rcpt '<alice@contoso.com>' --from '"Scanner 3F" <scanner@printer.local>') ||
	fail "scanner refused: $out"
expect "$out" "sender:      <scanner@printer.local> rewritten to <scanner@contoso.com>"
expect "$out" "header From: rewritten to Scanner 3F <scanner@contoso.com>"
expect "$out" "Reply-To:    added Scanner 3F <scanner@printer.local>"
expect "$out" "delivery:    direct-send"

# The same scanner writing outside goes through the connector.
out=$(ctl --client 192.168.10.7 --sender '<noreply@contoso.com>' \
	--rcpt '<bob@gmail.com>' --from 'noreply@contoso.com')
expect "$out" "delivery:    relay through connector onprem"

# Claiming to be somebody else is refused with Microsoft's words; exit 1.
if out=$(ctl --client 192.168.10.7 --sender '<noreply@contoso.com>' \
	--rcpt '<bob@contoso.com>' --from '"noreply@contoso.com" <ceo@contoso.com>'); then
	fail "Send As not refused"
fi
expect "$out" "verdict:     550 5.7.60 SMTP; Client does not have permissions to send as this sender"

# An unknown client.
if out=$(ctl --client 198.51.100.1 --sender '<>' --rcpt '<bob@contoso.com>'); then
	fail "unknown client accepted"
fi
expect "$out" "verdict:     550 5.7.1 Client [198.51.100.1] is not allowed"

# fabrikam.com is pinned to Direct Send: an external recipient is refused.
cat >> "$tmp/m365relay.conf" <<'CONF'
submitter "fab-printers" {
	clients = { "10.20.0.0/16" }
	domain = "fabrikam.com"
	send_as = { "@fabrikam.com" }
}
CONF
out=$(ctl --client 10.20.1.1 --sender '<mfp@fabrikam.com>' --rcpt '<a@fabrikam.com>' \
	--rcpt '<x@gmail.com>' --from 'mfp@fabrikam.com')
expect "$out" "recipient:   <x@gmail.com> refused: 550 5.7.54 Direct Send can only reach the organisation's own mailboxes"
expect "$out" "recipient:   <a@fabrikam.com> internal"

# A mailbox without SMTP AUTH goes through Graph; an HVE account reaches
# internal recipients only, and explain says why.
cat >> "$tmp/m365relay.conf" <<'CONF'
mailbox "reports@contoso.com" { app = "relay-app" smtp_auth = no }
mailbox "newsletter@contoso.com" { app = "relay-app" hve = yes }
submitter "reports" { sasl_logins = { "reports" } domain = "contoso.com" mailbox = "reports@contoso.com"
	send_as = { "reports@contoso.com" } }
submitter "newsletter" { sasl_logins = { "newsletter" } domain = "contoso.com"
	mailbox = "newsletter@contoso.com" send_as = { "newsletter@contoso.com" } }
CONF
out=$(ctl --login reports --sender '<reports@contoso.com>' --rcpt '<bob@gmail.com>' \
	--from 'reports@contoso.com')
expect "$out" "delivery:    graph as mailbox reports@contoso.com"
expect "$out" "(Microsoft Graph sendMail: the mailbox has smtp_auth = no)"
out=$(ctl --login newsletter --sender '<newsletter@contoso.com>' --rcpt '<a@contoso.com>' \
	--rcpt '<bob@gmail.com>' --from 'newsletter@contoso.com')
expect "$out" "recipient:   <bob@gmail.com> refused: 550 5.7.54 High Volume Email can only reach the organisation's own mailboxes"
expect "$out" "delivery:    hve as mailbox newsletter@contoso.com"
expect "$out" "(an HVE account: High Volume Email, internal recipients only)"

# Usage errors exit 2.
set +e
ctl --sender '<a@b.c>' >/dev/null 2>&1; rc=$?
set -e
[ "$rc" -eq 2 ] || fail "missing --rcpt gave exit $rc, expected 2"
echo "ok: explain"
