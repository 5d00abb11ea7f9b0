-- spf-gate.lua - require_spf_pass at SMTP time (run by test_doctor.py in
-- its network namespace, where dnsmasq serves pass.test and notlisted.test).
-- Globals: milter (binary), conf (file), port, common (tests/milter/common.lua).
dofile(common)

function send(ip, qid, sender, rcpt, from)
	local conn = mt.connect(SOCK, 100, 0.05)
	assert(conn, "cannot connect to the milter at " .. SOCK)
	check(mt.conninfo(conn, "device.example", ip) == nil, "connect " .. ip)
	check(mt.getreply(conn) == SMFIR_CONTINUE, "connect continued")
	assert(mt.macro(conn, SMFIC_MAIL, "i", qid) == nil, "macro")
	check(mt.mailfrom(conn, sender) == nil and mt.getreply(conn) == SMFIR_CONTINUE, "MAIL " .. sender)
	check(mt.rcptto(conn, rcpt) == nil and mt.getreply(conn) == SMFIR_CONTINUE, "RCPT " .. rcpt)
	assert(mt.header(conn, "From", from) == nil, "header")
	assert(mt.eom(conn) == nil, "eom")
	return conn, mt.getreply(conn)
end

start()

-- A device of notlisted.test, whose SPF does not list the gateway: the
-- rewritten sender would fail SPF at Microsoft, so the device retries later.
local conn, r = send("192.168.2.5", "QSPF1", "<dev@printer.local>", "<a@notlisted.test>",
	"scanner@notlisted.test")
check(r == SMFIR_REPLYCODE, "tempfail at end of message")
check(mt.eom_check(conn, MT_SMTPREPLY, "451", "4.7.0",
	"SPF for notlisted.test does not authorize this gateway (203.0.113.7); " ..
	"mail for it waits until the record is fixed (m365ctl doctor)"), "451 4.7.0 reply")
mt.disconnect(conn)

-- pass.test lists it: accepted, sender rewritten.
conn, r = send("192.168.1.5", "QSPF2", "<dev@printer.local>", "<a@pass.test>", "scanner@pass.test")
check(r == SMFIR_CONTINUE, "pass.test accepted")
check(mt.eom_check(conn, MT_HDRADD, "X-M365Relay-Route"), "route header added")
mt.disconnect(conn)
