-- Step 1: a client no submitter knows is refused at MAIL FROM, never relayed.
-- expect-log: NOQUEUE: client=[203.0.113.9] submitter=- sender=<scanner@contoso.com> from=<> from_action=keep mode=- mailbox=- connector=- internal=0 external=0 refused=0 verdict=reject reason=unknown-submitter reply="550 5.7.1 Client [203.0.113.9] is not allowed to send through this gateway"
-- expect-log: Q1: client=[198.51.100.4] submitter=- sender=<a@contoso.com> from=<> from_action=keep mode=- mailbox=- connector=- internal=0 external=0 refused=0 verdict=reject reason=unknown-submitter reply="550 5.7.1 Client [198.51.100.4] login mallory is not allowed to send through this gateway"
dofile(common)
start()
local conn = session("203.0.113.9")
check(mail(conn, "<scanner@contoso.com>") == SMFIR_REPLYCODE, "unknown client refused at MAIL")
mt.disconnect(conn)
-- An unknown SASL login from an unknown address is refused too.
conn = session("198.51.100.4")
check(mail(conn, "<a@contoso.com>", {["{auth_authen}"] = "mallory", i = "Q1"}) == SMFIR_REPLYCODE,
	"unknown login refused")
mt.disconnect(conn)
