-- High Volume Email reaches internal recipients only: a submitter whose
-- messages go as an HVE account has external recipients refused at RCPT,
-- like Direct Send; its internal ones go by hve.  A mailbox without SMTP
-- AUTH sends through Graph.
-- expect-log: Q14A: recipient <x@gmail.com> refused: 550 5.7.54 High Volume Email can only reach the organisation's own mailboxes; <x@gmail.com> is outside contoso.com reason=hve-external
-- expect-log: Q14A: client=[203.0.113.7] submitter=newsletter sender=<news@contoso.com> from=<news@contoso.com> from_action=keep mode=hve mailbox=news@contoso.com connector=- internal=1 external=0 refused=1 verdict=accept reason=ok
-- expect-log: Q14B: client=[203.0.113.7] submitter=alerts sender=<alerts@contoso.com> from=<alerts@contoso.com> from_action=keep mode=graph mailbox=alerts@contoso.com connector=- internal=0 external=1 refused=0 verdict=accept reason=ok
dofile(common)
start()
local conn = session("203.0.113.7")
check(mail(conn, "<news@contoso.com>", {["{auth_authen}"] = "newsletter", i = "Q14A"}) == SMFIR_CONTINUE,
	"MAIL")
check(rcpt(conn, "<x@gmail.com>") == SMFIR_REPLYCODE, "external recipient refused at RCPT")
check(rcpt(conn, "<a@contoso.com>") == SMFIR_CONTINUE, "internal recipient accepted")
check(eom(conn, {{"From", "News <news@contoso.com>"}}) == SMFIR_CONTINUE, "message accepted")
check(route(conn) ==
	"v=2; mode=hve; tenant=contoso; domain=contoso.com; submitter=newsletter; mailbox=news@contoso.com",
	"route: hve")
mt.disconnect(conn)

conn = session("203.0.113.7")
check(mail(conn, "<alerts@contoso.com>", {["{auth_authen}"] = "alerts", i = "Q14B"}) == SMFIR_CONTINUE,
	"MAIL")
check(rcpt(conn, "<x@gmail.com>") == SMFIR_CONTINUE, "external recipient accepted for Graph")
check(eom(conn, {{"From", "alerts@contoso.com"}}) == SMFIR_CONTINUE, "message accepted")
check(route(conn) ==
	"v=2; mode=graph; tenant=contoso; domain=contoso.com; submitter=alerts; mailbox=alerts@contoso.com",
	"route: graph")
mt.disconnect(conn)
