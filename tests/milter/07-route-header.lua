-- Step 5 and the route header: the milter owns it.  Copies sent by a
-- client are deleted; exactly one, with the mode chosen, is added, signed
-- with run.sh's route key for the queue id and the sender.  The expected
-- values were computed with Python's hmac from the description in
-- lib/policy/route.h (tests/transport/harness.py sign_route does the same).
-- expect-log: Q7A: client=[192.168.10.7] submitter=scanners sender=<scanner@contoso.com> from=<scanner@contoso.com> from_action=keep mode=direct-send
-- expect-log: Q7B: client=[192.168.10.7] submitter=scanners sender=<scanner@contoso.com> from=<scanner@contoso.com> from_action=keep mode=smtp-auth mailbox=scanner@contoso.com
dofile(common)
start()
local conn = session("192.168.10.7")

check(mail(conn, "<scanner@contoso.com>", {i = "Q7A"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, "RCPT")
check(eom(conn, {{ROUTE, "v=2; mode=relay; tenant=contoso; domain=contoso.com; submitter=x; connector=onprem"},
                 {"From", "scanner@contoso.com"},
                 {ROUTE, "forged"}}) == SMFIR_CONTINUE, "accepted")
check(mt.eom_check(conn, MT_HDRDELETE, ROUTE), "client copies of the route header deleted")
check(mt.getheader(conn, ROUTE, 0) ==
	"v=2; mode=direct-send; tenant=contoso; domain=contoso.com; submitter=scanners; " ..
	"qid=Q7A; key=2a2e8e3d; mac=2bf03598fbc5b304c10672fcc59237a2d59eeed659d27a31ac3413179e1c8d59",
	"auto, all internal: direct-send, signed")
check(mt.getheader(conn, ROUTE, 1) == nil, "exactly one route header added")

check(mail(conn, "<scanner@contoso.com>", {i = "Q7B"}) == SMFIR_CONTINUE, "MAIL")
check(rcpt(conn, "<alice@contoso.com>") == SMFIR_CONTINUE, "RCPT internal")
check(rcpt(conn, "<bob@example.net>") == SMFIR_CONTINUE, "RCPT external")
check(eom(conn, {{"From", "scanner@contoso.com"}}) == SMFIR_CONTINUE, "accepted")
check(mt.getheader(conn, ROUTE, 0) ==
	"v=2; mode=smtp-auth; tenant=contoso; domain=contoso.com; submitter=scanners; " ..
	"mailbox=scanner@contoso.com; qid=Q7B; key=2a2e8e3d; " ..
	"mac=e4ca134387dd71f3458ddb86d40ebb9bfa982472d4c55cf27a61e31c49ec7230",
	"auto, external with a mailbox: smtp-auth, signed")
mt.disconnect(conn)
