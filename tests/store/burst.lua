-- burst.lua - send `count` messages through the milter as the SASL submitter
-- erp (smtp-auth as erp@contoso.com) and count the answers at end of message.
-- Globals: port, count, tag.
local sock = "inet:" .. port .. "@127.0.0.1"
local accepted, refused = 0, 0
local conn = mt.connect(sock, 100, 0.05)
assert(conn, "cannot connect to " .. sock)
assert(mt.conninfo(conn, "app.example", "203.0.113.50") == nil)
for i = 1, tonumber(count) do
	assert(mt.macro(conn, SMFIC_MAIL, "{auth_authen}", "erp", "i", tag .. i) == nil)
	assert(mt.mailfrom(conn, "<billing@contoso.com>") == nil)
	assert(mt.getreply(conn) == SMFIR_CONTINUE, "MAIL " .. i)
	assert(mt.rcptto(conn, "<customer" .. i .. "@example.net>") == nil)
	assert(mt.getreply(conn) == SMFIR_CONTINUE, "RCPT " .. i)
	assert(mt.header(conn, "From", "billing@contoso.com") == nil)
	assert(mt.eom(conn) == nil)
	if mt.getreply(conn) == SMFIR_CONTINUE then
		accepted = accepted + 1
	else
		refused = refused + 1
	end
end
mt.disconnect(conn)
mt.echo("accepted=" .. accepted .. " refused=" .. refused)
