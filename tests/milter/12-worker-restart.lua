-- A worker that dies mid-session is restarted by the supervisor; the MTA
-- sees that one session fail and the next one succeeds.
-- expect-log: worker killed by signal 9; restarting
dofile(common)
start()
local conn = session("192.168.10.7")
check(mail(conn, "<scanner@contoso.com>", {i = "Q12A"}) == SMFIR_CONTINUE, "MAIL before the crash")
local rc = os.execute("kill -9 $(pgrep -P $(cat " .. dir .. "/milter.pid))")
check(rc == true or rc == 0, "worker killed")
mt.sleep(0.3)
check(mt.rcptto(conn, "<alice@contoso.com>") ~= nil, "the session in flight fails")
mt.sleep(1.5)
conn = session("192.168.10.7")
check(mail(conn, "<scanner@contoso.com>", {i = "Q12B"}) == SMFIR_CONTINUE, "a new session works after the restart")
check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, "RCPT")
check(eom(conn, {{"From", "scanner@contoso.com"}}) == SMFIR_CONTINUE, "accepted")
mt.disconnect(conn)
