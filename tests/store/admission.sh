#!/bin/bash
# admission.sh - the milter's admission limits on the LMDB store: 25 of 30
# messages admitted, the milter restarted, only 5 more admitted in the same
# window, each refusal naming the mailbox, the limit and when it frees;
# m365ctl status and the metrics endpoint show the same counts.
set -u
. "$top_srcdir/tests/store/lib.sh"
mp=$(free_port); xp=$(free_port)
write_conf a "$mp" "$xp" 'store { path = "store.mdb" }'
trap 'stop_milter a; rm -rf "$tmp"' EXIT

start_milter a "$mp" || exit 1
r=$(burst "$mp" 25 A)
[ "$r" = "accepted=25 refused=0" ] && ok "25 of 30 admitted ($r)" || fail "first burst: $r"
stop_milter a
start_milter a "$mp" || exit 1
r=$(burst "$mp" 10 B)
[ "$r" = "accepted=5 refused=5" ] && ok "after a restart only 5 more ($r)" || fail "second burst: $r"
if grep -qE 'reason=message-limit reply="451 4\.7\.0 erp@contoso\.com reached 30/60s messages; retry after [0-9]{2}:[0-9]{2}:[0-9]{2}Z"' "$tmp/a.log"; then
	ok "the refusal names mailbox, limit and time"
else
	fail "refusal text"; grep message-limit "$tmp/a.log" | head -2
fi

out=$("$top_builddir/cli/m365ctl" -c "$tmp/a.conf" status --json erp@contoso.com)
echo "$out"
echo "$out" | grep -q '"admitted": 30,' && ok "m365ctl status: 30 admitted" || fail "status: $out"
out=$("$top_builddir/cli/m365ctl" -c "$tmp/a.conf" status)
echo "$out"
echo "$out" | grep -qE '^erp@contoso\.com +0/30/60s +30/30/60s' && ok "m365ctl status table" || fail "status table"
v=$(metric "$xp" 'm365relay_mailbox_messages{mailbox="erp@contoso.com",stage="admitted"}')
[ "$v" = 30 ] && ok "metrics: admitted gauge 30" || fail "metrics gauge: '$v'"
v=$(metric "$xp" 'm365relay_verdicts_total{verdict="accept",reason="ok"}')
[ "$v" = 5 ] && ok "metrics: 5 accepted since the restart" || fail "metrics accept: '$v'"
v=$(metric "$xp" 'm365relay_verdicts_total{verdict="tempfail",reason="message-limit"}')
[ "$v" = 5 ] && ok "metrics: 5 refused by the message limit" || fail "metrics tempfail: '$v'"
v=$(metric "$xp" 'm365relay_store_up')
[ "$v" = 1 ] && ok "metrics: store up" || fail "metrics store_up: '$v'"
exit $failures
