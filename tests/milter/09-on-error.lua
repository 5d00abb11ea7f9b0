-- Step 7: an internal failure takes the configured action (tempfail by
-- default).  Here the MTA does not let the milter change the sender, so a
-- message that needs its sender rewritten cannot be handled correctly.
-- expect-log: Q9A: internal error: cannot change the envelope sender; answering tempfail
dofile(common)
start()
local conn = session_without_chgfrom("192.168.10.7")
check(mail(conn, "<scanner@printer.local>", {i = "Q9A"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, "RCPT")
check(eom(conn, {{"From", "scanner@contoso.com"}}) == SMFIR_REPLYCODE, "internal error answered")
check(mt.eom_check(conn, MT_SMTPREPLY, "451", "4.3.0", "Gateway temporary internal error; try again later"),
	"451 4.3.0 tempfail")
-- A message that needs no sender change still passes on this connection.
check(mail(conn, "<scanner@contoso.com>", {i = "Q9B"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, "RCPT")
check(eom(conn, {{"From", "scanner@contoso.com"}}) == SMFIR_CONTINUE, "accepted")
mt.disconnect(conn)
