-- Malformed input never crashes the milter and gets a defined answer.
-- fabrikam.com does not rewrite header From, so bad From headers are refused.
-- expect-log: Q8A: client=[10.1.2.3] submitter=printers sender=<mfp@fabrikam.com> from=<> from_action=keep mode=direct-send mailbox=- connector=- internal=1 external=0 refused=0 verdict=reject reason=no-from reply="550 5.6.0 Message has no From header"
-- expect-log: Q8B: client=[10.1.2.3] submitter=printers sender=<mfp@fabrikam.com> from=<> from_action=keep mode=direct-send mailbox=- connector=- internal=1 external=0 refused=0 verdict=reject reason=several-from reply="550 5.6.0 Message has several From headers"
-- expect-log: Q8C: client=[10.1.2.3] submitter=printers sender=<mfp@fabrikam.com> from=<> from_action=keep mode=direct-send mailbox=- connector=- internal=1 external=0 refused=0 verdict=reject reason=from-several-addresses
-- expect-log: Q8D: client=[10.1.2.3] submitter=printers sender=<mfp@fabrikam.com> from=<> from_action=keep mode=direct-send mailbox=- connector=- internal=1 external=0 refused=0 verdict=reject reason=from-syntax reply="550 5.6.0 The From header cannot be parsed: invalid UTF-8"
-- expect-log: Q8F: client=[10.1.2.3] submitter=printers sender=<mfp@fabrikam.com> from=<mfp@fabrikam.com> from_action=keep mode=direct-send mailbox=- connector=- internal=1 external=0 refused=0 verdict=accept
-- expect-log: Q8G: client=[10.1.2.3] submitter=printers sender=<mfp@fabrikam.com> from=<> from_action=keep mode=direct-send mailbox=- connector=- internal=1 external=0 refused=0 verdict=reject reason=from-syntax reply="550 5.6.0 The From header cannot be parsed: address without '@domain': unexpected end"
-- expect-log: Q8H: client=[10.1.2.3] submitter=printers sender=<mfp@fabrikam.com> from=<mfp@fabrikam.com> from_action=keep mode=direct-send mailbox=- connector=- internal=1 external=0 refused=0 verdict=reject reason=sender-syntax
dofile(common)
start()
local conn = session("10.1.2.3")

local function try(qid, hdrs, want_text, what)
	check(mail(conn, "<mfp@fabrikam.com>", {i = qid}) == SMFIR_CONTINUE, qid .. " MAIL")
	check(rcpt(conn, "<a@fabrikam.com>") == SMFIR_CONTINUE, qid .. " RCPT")
	local r = eom(conn, hdrs)
	if want_text == nil then
		check(r == SMFIR_CONTINUE, qid .. " " .. what)
	else
		check(r == SMFIR_REPLYCODE, qid .. " " .. what)
		check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.6.0", want_text),
			qid .. " replies 550 5.6.0 " .. want_text)
	end
end

try("Q8A", {{"Subject", "no from"}}, "Message has no From header", "no From refused")
try("Q8B", {{"From", "a@fabrikam.com"}, {"From", "b@fabrikam.com"}},
	"Message has several From headers", "two From headers refused")
try("Q8C", {{"From", "a@fabrikam.com, b@fabrikam.com"}},
	"The From header holds several addresses; send one", "two addresses in From refused")
try("Q8D", {{"From", "J\255rg <mfp@fabrikam.com>"}},
	"The From header cannot be parsed: invalid UTF-8", "invalid UTF-8 refused")
-- (A From over the parser's 8 KiB bound is tested through Postfix:
-- miltertest 2.11 overflows its own 2 KiB buffer on such a header.)
try("Q8F", {{"From", "J\195\182rg M\195\188ller <mfp@fabrikam.com>"}}, nil, "UTF-8 display name accepted")
try("Q8G", {{"From", "Printer"}},
	"The From header cannot be parsed: address without '@domain': unexpected end",
	"From without an address refused")
try("Q8H", {{"From", "mfp@fabrikam.com"}, {"Sender", "a@fabrikam.com b@x"}},
	"The Sender header must hold one address", "bad Sender refused")
-- Many other headers, some huge, are ignored without trouble.
local many = {{"From", "mfp@fabrikam.com"}}
for n = 1, 200 do
	table.insert(many, {"X-Filler-" .. n, string.rep("y", 900)})
end
try("Q8I", many, nil, "200 large unrelated headers")
mt.disconnect(conn)
