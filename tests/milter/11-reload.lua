-- SIGHUP reloads all or nothing: a broken file is reported (every error)
-- and the running configuration stays; a good file takes effect.
-- expect-log: SIGHUP: reloading
-- expect-log: error: no such option 'bogus'
-- expect-log: has errors; keeping the running configuration
-- expect-log: reload: configuration
-- expect-log: Q11C: client=[192.168.10.7] submitter=- sender=<scanner@contoso.com> from=<> from_action=keep mode=- mailbox=- connector=- internal=0 external=0 refused=0 verdict=reject reason=unknown-submitter
dofile(common)
start()

local function read(path)
	local f = assert(io.open(path, "r"))
	local s = f:read("*a")
	f:close()
	return s
end
local function write(path, s)
	local f = assert(io.open(path .. ".new", "w"))
	f:write(s)
	f:close()
	assert(os.rename(path .. ".new", path))
end
local function accepted(ip, qid)
	local conn = session(ip)
	local r = mail(conn, "<scanner@contoso.com>", {i = qid})
	mt.disconnect(conn)
	return r == SMFIR_CONTINUE
end

check(accepted("192.168.10.7", "Q11A"), "scanner accepted before any reload")
local good = read(conf)

-- A broken file: the old configuration keeps running.
write(conf, good .. "\nbogus = 1\nsubmitter \"x\" {\n")
mt.signal(1) -- SIGHUP
wait_log("has errors; keeping the running configuration", 1, "the supervisor to refuse the broken file")
check(accepted("192.168.10.7", "Q11B"), "broken reload ignored: scanner still accepted")

-- A good file that moves the scanners to another network.
local moved = string.gsub(good, "192%.168%.10%.0/24", "192.168.20.0/24")
write(conf, moved)
mt.signal(1)
-- (logged by the worker once it has swapped the configuration in)
wait_log("reload: configuration .* loaded", 1, "the worker to load the good file")
check(not accepted("192.168.10.7", "Q11C"), "good reload applied: old network refused")
check(accepted("192.168.20.7", "Q11D"), "good reload applied: new network accepted")
