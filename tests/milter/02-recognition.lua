-- Step 1: submitters recognised by SASL login, certificate subject, client block.
-- expect-log: Q2A: client=[203.0.113.50] submitter=erp sender=<billing@contoso.com> from=<billing@contoso.com> from_action=keep mode=smtp-auth mailbox=erp@contoso.com connector=- internal=0 external=1 refused=0 verdict=accept reason=ok
-- expect-log: Q2B: client=[203.0.113.51] submitter=certdev sender=<dev1@sub.contoso.com> from=<dev1@sub.contoso.com> from_action=keep mode=relay mailbox=- connector=onprem internal=0 external=1 refused=0 verdict=accept reason=ok
-- expect-log: Q2C: client=[192.168.10.7] submitter=erp
dofile(common)
start()

-- An application logged in with SASL, from an address no block covers.
local conn = session("203.0.113.50")
check(mail(conn, "<billing@contoso.com>", {["{auth_authen}"] = "erp", i = "Q2A"}) == SMFIR_CONTINUE,
	"SASL login erp accepted at MAIL")
check(rcpt(conn, "<customer@example.net>") == SMFIR_CONTINUE, "external recipient accepted")
check(eom(conn, {{"From", "Billing <billing@contoso.com>"}, {"Subject", "invoice"}}) == SMFIR_CONTINUE,
	"message accepted")
check(route(conn) ==
	"v=2; mode=smtp-auth; tenant=contoso; domain=contoso.com; submitter=erp; mailbox=erp@contoso.com",
	"route: smtp-auth as the submitter's mailbox")
mt.disconnect(conn)

-- A device known by its TLS client certificate.
conn = session("203.0.113.51")
check(mail(conn, "<dev1@sub.contoso.com>", {["{cert_subject}"] = "CN=dev1.contoso.com", i = "Q2B"}) ==
	SMFIR_CONTINUE, "certificate subject accepted")
check(rcpt(conn, "<partner@example.org>") == SMFIR_CONTINUE, "external recipient accepted")
check(eom(conn, {{"From", "dev1@sub.contoso.com"}}) == SMFIR_CONTINUE, "message accepted")
check(route(conn) ==
	"v=2; mode=relay; tenant=contoso; domain=sub.contoso.com; submitter=certdev; connector=onprem",
	"route: relay through the connector")
mt.disconnect(conn)

-- A login beats the client block it comes from.
conn = session("192.168.10.7")
check(mail(conn, "<erp@contoso.com>", {["{auth_authen}"] = "ERP", i = "Q2C"}) == SMFIR_CONTINUE,
	"login recognised case-insensitively")
check(rcpt(conn, "<a@contoso.com>") == SMFIR_CONTINUE, "recipient")
check(eom(conn, {{"From", "erp@contoso.com"}}) == SMFIR_CONTINUE, "accepted")
mt.disconnect(conn)
