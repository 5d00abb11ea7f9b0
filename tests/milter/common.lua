-- common.lua - helpers for the m365-milter miltertest scripts.
-- Globals from run.sh: milter (binary), conf (file), port, dir.

SOCK = "inet:" .. port .. "@127.0.0.1"
ROUTE = "X-M365Relay-Route"
SEND_AS = "SMTP; Client does not have permissions to send as this sender"

function start()
	mt.startfilter(milter, "-f", "-c", conf)
end

-- session(ip [, macros for MAIL]) - connect and announce a client
function session(ip)
	local conn = mt.connect(SOCK, 100, 0.05)
	assert(conn, "cannot connect to the milter at " .. SOCK)
	assert(mt.conninfo(conn, "client.example", ip) == nil, "conninfo")
	assert(mt.getreply(conn) == SMFIR_CONTINUE, "connect not continued")
	return conn
end

-- session_without_chgfrom(ip) - an MTA that offers header changes but
-- not changing the sender (miltertest takes the protocol options third
-- and the actions fourth, whatever its manual says)
function session_without_chgfrom(ip)
	local conn = mt.connect(SOCK, 100, 0.05)
	assert(conn, "cannot connect to the milter at " .. SOCK)
	assert(mt.negotiate(conn, nil, nil, SMFIF_ADDHDRS + SMFIF_CHGHDRS) == nil, "negotiate")
	assert(mt.conninfo(conn, "client.example", ip) == nil, "conninfo")
	return conn
end

function mail(conn, sender, macros)
	if macros ~= nil then
		-- One packet: a second SMFIC_MACRO for MAIL replaces the first.
		local args = {}
		for k, v in pairs(macros) do
			table.insert(args, k)
			table.insert(args, v)
		end
		local unpack = table.unpack or unpack
		assert(mt.macro(conn, SMFIC_MAIL, unpack(args)) == nil, "macro")
	end
	assert(mt.mailfrom(conn, sender) == nil, "mailfrom")
	return mt.getreply(conn)
end

function rcpt(conn, r)
	assert(mt.rcptto(conn, r) == nil, "rcptto " .. r)
	return mt.getreply(conn)
end

-- headers(conn, {{name, value}, ...}) then end of message; returns reply
function eom(conn, hdrs)
	for _, h in ipairs(hdrs) do
		assert(mt.header(conn, h[1], h[2]) == nil, "header " .. h[1])
	end
	assert(mt.eom(conn) == nil, "eom")
	return mt.getreply(conn)
end

-- check(cond, what) - miltertest does not print a failing script's error,
-- so say it before stopping.
function check(cond, what)
	if not cond then
		mt.echo("FAILED: " .. what)
		error("FAILED: " .. what, 2)
	end
	mt.echo("ok: " .. what)
end

-- route(conn) - the route header the milter added, without what signs it
-- (qid, key, mac: 07-route-header.lua checks those)
function route(conn)
	local v = mt.getheader(conn, ROUTE, 0)
	if v == nil then
		return nil
	end
	return (string.gsub(v, "; qid=.*$", ""))
end

-- wait_log(pattern, n, what) - until the milter's log (run.sh's dir/log,
-- its stderr) has n lines matching the Lua pattern, polling every 0.05 s
-- for 20 s at most; then fail naming what was awaited.
function wait_log(pattern, n, what)
	for _ = 1, 400 do
		local f = assert(io.open(dir .. "/log", "r"))
		local seen = 0
		for line in f:lines() do
			if string.find(line, pattern) then
				seen = seen + 1
			end
		end
		f:close()
		if seen >= n then
			return
		end
		mt.sleep(0.05)
	end
	check(false, "timed out after 20 s waiting for " .. what .. " (" .. n .. " x '" .. pattern .. "' in the log)")
end
