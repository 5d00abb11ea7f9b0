-- Step 4: a From outside the accepted domains is rewritten to the default
-- sender (display name kept, made safe), the original goes to Reply-To,
-- and a Sender that would contradict the new From is removed.
-- expect-log: Q6A: client=[192.168.10.7] submitter=scanners sender=<scanner@printer.local> -> <scanner@contoso.com> from=<scanner@printer.local> from_action=rewrite mode=direct-send
dofile(common)
start()
local conn = session("192.168.10.7")

check(mail(conn, "<scanner@printer.local>", {i = "Q6A"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, "RCPT")
check(eom(conn, {{"From", "\"Scanner 3F\" <scanner@printer.local>"},
                 {"Sender", "mfp@printer.local"}, {"Subject", "scan"}}) == SMFIR_CONTINUE,
	"accepted")
check(mt.eom_check(conn, MT_HDRCHANGE, "From", "Scanner 3F <scanner@contoso.com>"),
	"From rewritten, display name kept")
check(mt.getheader(conn, "Reply-To", 0) == "Scanner 3F <scanner@printer.local>",
	"Reply-To carries the original address")
check(mt.eom_check(conn, MT_HDRDELETE, "Sender"), "Sender removed")

-- An @ in the display name is quoted in the new From; an existing
-- Reply-To is left as it is.
check(mail(conn, "<scanner@printer.local>", {i = "Q6B"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, "RCPT")
check(eom(conn, {{"From", "\"ops@evil.example\" <scan@printer.local>"},
                 {"Reply-To", "helpdesk@contoso.com"}}) == SMFIR_CONTINUE, "accepted")
check(mt.eom_check(conn, MT_HDRCHANGE, "From", "\"ops@evil.example\" <scanner@contoso.com>"),
	"display name with @ quoted")
check(not mt.eom_check(conn, MT_HDRADD, "Reply-To"), "existing Reply-To kept, none added")

-- No From at all: the domain rewrites, so one is added.
check(mail(conn, "<scanner@contoso.com>", {i = "Q6C"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, "RCPT")
check(eom(conn, {{"Subject", "no from"}}) == SMFIR_CONTINUE, "accepted")
check(mt.eom_check(conn, MT_HDRADD, "From", "scanner@contoso.com"), "From added")
mt.disconnect(conn)
