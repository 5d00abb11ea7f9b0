-- Step 2: the envelope sender is kept, rewritten, or (null) left alone.
-- expect-log: Q3A: client=[192.168.10.7] submitter=scanners sender=<> from=<scanner@contoso.com> from_action=keep mode=direct-send
-- expect-log: Q3B: client=[192.168.10.7] submitter=scanners sender=<scanner@printer.local> -> <scanner@contoso.com> from=<scanner@contoso.com>
-- expect-log: Q3C: client=[192.168.10.7] submitter=scanners sender=<noreply@contoso.com> from=<noreply@contoso.com> from_action=keep mode=direct-send
-- expect-log: Q3D: client=[192.168.10.7] submitter=scanners sender=<ceo@contoso.com> -> <scanner@contoso.com>
-- reject-log: Q3A: client=[192.168.10.7] submitter=scanners sender=<> ->
dofile(common)
start()
local conn = session("192.168.10.7")

local function one(qid, sender)
	check(mail(conn, sender, {i = qid}) == SMFIR_CONTINUE, qid .. " MAIL " .. sender)
	check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, qid .. " RCPT")
	local from = sender == "<noreply@contoso.com>" and "noreply@contoso.com" or "scanner@contoso.com"
	check(eom(conn, {{"From", from}}) == SMFIR_CONTINUE, qid .. " accepted")
end

one("Q3A", "<>")                      -- null sender: never rewritten
one("Q3B", "<scanner@printer.local>") -- foreign: rewritten (smfi_chgfrom)
one("Q3C", "<noreply@contoso.com>")   -- accepted domain and allowed: kept
one("Q3D", "<ceo@contoso.com>")       -- accepted domain but not allowed: rewritten
mt.disconnect(conn)
