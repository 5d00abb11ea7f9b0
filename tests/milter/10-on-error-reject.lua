-- Step 7 with on_error = reject: the configured action is honoured.
-- on_error: reject
-- expect-log: Q10: internal error: cannot change the envelope sender; answering reject
dofile(common)
start()
local conn = session_without_chgfrom("192.168.10.7")
check(mail(conn, "<scanner@printer.local>", {i = "Q10"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, "RCPT")
check(eom(conn, {{"From", "scanner@contoso.com"}}) == SMFIR_REPLYCODE, "internal error answered")
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.3.0", "Gateway internal error"), "550 5.3.0 reject")
mt.disconnect(conn)
