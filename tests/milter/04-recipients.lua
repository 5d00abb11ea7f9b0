-- Step 3: Direct Send cannot reach outside; the external recipient is
-- refused at RCPT, the internal one goes on.
-- expect-log: Q4A: recipient <x@gmail.com> refused: 550 5.7.54 Direct Send can only reach the organisation's own mailboxes; <x@gmail.com> is outside fabrikam.com reason=direct-send-external
-- expect-log: Q4A: client=[10.1.2.3] submitter=printers sender=<mfp@fabrikam.com> from=<mfp@fabrikam.com> from_action=keep mode=direct-send mailbox=- connector=- internal=2 external=0 refused=1 verdict=accept reason=ok
-- expect-log: Q4B: client=[10.1.2.3] submitter=printers sender=<mfp@fabrikam.com> from=<> from_action=keep mode=- mailbox=- connector=- internal=0 external=0 refused=1 verdict=reject reason=direct-send-external
-- An accepted recipient, then RSET: the message got no verdict, and the
-- log says so rather than "accept".
-- expect-log: Q4D: client=[10.1.2.3] submitter=printers sender=<mfp@fabrikam.com> from=<> from_action=keep mode=- mailbox=- connector=- internal=1 external=0 refused=0 verdict=none reason=aborted
dofile(common)
start()
local conn = session("10.1.2.3")
check(mail(conn, "<mfp@fabrikam.com>", {i = "Q4A"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<a@fabrikam.com>") == SMFIR_CONTINUE, "internal recipient accepted")
check(rcpt(conn, "<x@gmail.com>") == SMFIR_REPLYCODE, "external recipient refused at RCPT")
check(rcpt(conn, "<b@contoso.com>") == SMFIR_CONTINUE, "another accepted domain is internal")
check(eom(conn, {{"From", "MFP <mfp@fabrikam.com>"}}) == SMFIR_CONTINUE, "message accepted")
check(route(conn) ==
	"v=2; mode=direct-send; tenant=contoso; domain=fabrikam.com; submitter=printers",
	"route: direct-send")

-- Only external recipients: the transaction dies at RCPT and is logged once.
check(mail(conn, "<mfp@fabrikam.com>", {i = "Q4B"}) == SMFIR_CONTINUE, "second MAIL")
check(rcpt(conn, "<x@gmail.com>") == SMFIR_REPLYCODE, "refused")
assert(mt.abort(conn) == nil)
-- A command with a reply after the abort: the abort (and its log line) has
-- been handled before miltertest stops the milter.
check(mail(conn, "<mfp@fabrikam.com>", {i = "Q4C"}) == SMFIR_CONTINUE, "the session goes on")
assert(mt.abort(conn) == nil)
check(mail(conn, "<mfp@fabrikam.com>", {i = "Q4D"}) == SMFIR_CONTINUE, "MAIL after RSET")
check(rcpt(conn, "<a@fabrikam.com>") == SMFIR_CONTINUE, "internal recipient accepted")
assert(mt.abort(conn) == nil)
check(mail(conn, "<mfp@fabrikam.com>", {i = "Q4E"}) == SMFIR_CONTINUE, "and goes on again")
mt.disconnect(conn)
