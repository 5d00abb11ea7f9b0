-- A worker that dies mid-session is restarted by the supervisor; the MTA
-- sees that one session fail and the next one succeeds.
-- expect-log: worker killed by signal 9; restarting
dofile(common)
start()
local conn = session("192.168.10.7")
check(mail(conn, "<scanner@contoso.com>", {i = "Q12A"}) == SMFIR_CONTINUE, "MAIL before the crash")
local rc = os.execute("kill -9 $(pgrep -P $(cat " .. dir .. "/milter.pid))")
check(rc == true or rc == 0, "worker killed")
wait_log("worker killed by signal 9; restarting", 1, "the supervisor to see the worker die")
check(mt.rcptto(conn, "<alice@contoso.com>") ~= nil, "the session in flight fails")
wait_log("worker %d+ started", 1, "the supervisor to start a new worker")
conn = session("192.168.10.7")
check(mail(conn, "<scanner@contoso.com>", {i = "Q12B"}) == SMFIR_CONTINUE, "a new session works after the restart")
check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, "RCPT")
check(eom(conn, {{"From", "scanner@contoso.com"}}) == SMFIR_CONTINUE, "accepted")
mt.disconnect(conn)
