-- Step 4: Send As.  A From the submitter may not use is refused at end of
-- message with Microsoft's own words; so is one the mailbox may not use.
-- expect-log: Q5A: client=[192.168.10.7] submitter=scanners sender=<scanner@contoso.com> from=<ceo@contoso.com> from_action=keep mode=direct-send mailbox=- connector=- internal=1 external=0 refused=0 verdict=reject reason=send-as-denied reply="550 5.7.60 SMTP; Client does not have permissions to send as this sender"
-- expect-log: Q5B: client=[192.168.10.7] submitter=scanners sender=<scanner@contoso.com> from=<ceo@contoso.com>
-- expect-log: Q5C: client=[203.0.113.50] submitter=erp sender=<erp@contoso.com> from=<hr@contoso.com> from_action=keep mode=smtp-auth mailbox=erp@contoso.com connector=- internal=0 external=1 refused=0 verdict=reject reason=send-as-denied-mailbox
-- expect-log: Q5D: client=[192.168.10.7] submitter=scanners sender=<noreply@contoso.com> from=<noreply@contoso.com> from_action=keep mode=smtp-auth mailbox=scanner@contoso.com connector=- internal=0 external=1 refused=0 verdict=accept
dofile(common)
start()
local conn = session("192.168.10.7")

check(mail(conn, "<scanner@contoso.com>", {i = "Q5A"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, "RCPT")
check(eom(conn, {{"From", "ceo@contoso.com"}}) == SMFIR_REPLYCODE, "Send As refused")
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.60", SEND_AS), "exact 550 5.7.60 reply")
check(not mt.eom_check(conn, MT_HDRADD, ROUTE), "no route header on a refused message")

-- An @ in the display name does not make it the address.
check(mail(conn, "<scanner@contoso.com>", {i = "Q5B"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, "RCPT")
check(eom(conn, {{"From", "\"scanner@contoso.com\" <ceo@contoso.com>"}}) == SMFIR_REPLYCODE,
	"display-name trick refused")
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.60", SEND_AS), "exact reply")

-- In smtp-auth mode the mailbox may send as noreply@: accepted.
check(mail(conn, "<noreply@contoso.com>", {i = "Q5D"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<bob@example.net>") == SMFIR_CONTINUE, "RCPT external")
check(eom(conn, {{"From", "noreply@contoso.com"}}) == SMFIR_CONTINUE, "mailbox Send As allowed")
mt.disconnect(conn)

-- The submitter may use hr@, its mailbox erp@ may not: refused.
conn = session("203.0.113.50")
check(mail(conn, "<erp@contoso.com>", {["{auth_authen}"] = "erp", i = "Q5C"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<customer@example.net>") == SMFIR_CONTINUE, "RCPT")
check(eom(conn, {{"From", "HR <hr@contoso.com>"}}) == SMFIR_REPLYCODE, "mailbox Send As refused")
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.60", SEND_AS), "exact reply")
mt.disconnect(conn)
