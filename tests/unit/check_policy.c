/*
 * check_policy.c - the verdict engine, table-driven (lib/policy/policy.h,
 * steps 1 to 5).  One configuration, many submissions; each row states the
 * whole expected outcome.
 */
#include "config.h"

#include <check.h>

#include "common.h"
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"
#include "testconf.h"

/* The configuration and the table read best as written: one case a row. */
/* clang-format off */
static const char *policy_conf =
	"milter { max_recipients = 4 }\n"
	"tenant \"contoso\" {\n"
	"  accepted_domains = { \"contoso.com\", \"*.contoso.com\", \"fabrikam.com\" }\n"
	"  mx_endpoint = \"contoso-com.mail.protection.outlook.com\"\n"
	"}\n"
	"tenant \"tailspin\" {\n"
	"  accepted_domains = { \"tailspin.com\" }\n"
	"  direct_send = false\n"
	"}\n"
	"app \"relay-app\" { tenant = \"contoso\" client_id = \"cid\" client_secret_file = \"app.secret\" }\n"
	"mailbox \"scanner@contoso.com\" { app = \"relay-app\" send_as = { \"noreply@contoso.com\" } }\n"
	"mailbox \"erp@contoso.com\" { app = \"relay-app\" send_as = { \"billing@contoso.com\", \"@fabrikam.com\" }\n"
	"  recipients_per_message = 2 }\n"
	"mailbox \"alerts@contoso.com\" { app = \"relay-app\" }\n"
	"connector \"onprem\" { tenant = \"contoso\" type = certificate certificate_file = \"relay.crt\" key_file = \"relay.key\" }\n"
	"connector \"tsip\" { tenant = \"tailspin\" type = ip }\n"
	"domain \"contoso.com\" { default_sender = \"scanner@contoso.com\" mailbox = \"scanner@contoso.com\" rewrite_header_from = true }\n"
	"domain \"fabrikam.com\" { mode = direct-send default_sender = \"noreply@fabrikam.com\" }\n"
	"domain \"sub.contoso.com\" { default_sender = \"app@sub.contoso.com\" connector = \"onprem\" }\n"
	"domain \"apps.contoso.com\" { mode = smtp-auth default_sender = \"erp@contoso.com\" mailbox = \"erp@contoso.com\" }\n"
	"domain \"relay.contoso.com\" { mode = relay default_sender = \"relay@relay.contoso.com\" connector = \"onprem\" }\n"
	"domain \"lab.contoso.com\" { default_sender = \"lab@lab.contoso.com\" }\n"
	"domain \"tailspin.com\" { default_sender = \"ops@tailspin.com\" connector = \"tsip\" }\n"
	"submitter \"scanners\" { clients = { \"192.168.10.0/24\" } domain = \"contoso.com\"\n"
	"  send_as = { \"scanner@contoso.com\", \"noreply@contoso.com\" } }\n"
	"submitter \"kiosk\" { clients = { \"192.168.20.0/24\" } domain = \"contoso.com\" send_as = { \"kiosk@contoso.com\" } }\n"
	"submitter \"scanner-vip\" { clients = { \"192.168.10.99\" } domain = \"contoso.com\" send_as = { \"@printer.local\" } }\n"
	"submitter \"erp\" { sasl_logins = { \"erp\" } domain = \"apps.contoso.com\"\n"
	"  send_as = { \"erp@contoso.com\", \"billing@contoso.com\", \"alerts@contoso.com\", \"hr@contoso.com\" }\n"
	"  envelope_senders = { \"@contoso.com\" } }\n"
	"submitter \"printers\" { clients = { \"10.1.0.0/16\" } domain = \"fabrikam.com\" send_as = { \"@fabrikam.com\" } }\n"
	"submitter \"certdev\" { cert_subjects = { \"CN=dev1.contoso.com\" } domain = \"sub.contoso.com\" send_as = { \"@sub.contoso.com\" } }\n"
	"submitter \"relayhost\" { clients = { \"10.9.0.0/16\" } domain = \"relay.contoso.com\" send_as = { \"*\" } }\n"
	"submitter \"lab\" { clients = { \"172.16.0.0/12\" } domain = \"lab.contoso.com\" send_as = { \"@lab.contoso.com\" } }\n"
	"submitter \"tailspin\" { clients = { \"2001:db8::/32\" } domain = \"tailspin.com\" send_as = { \"@tailspin.com\" } }\n"
	"submitter \"app2\" { sasl_logins = { \"app2\" } domain = \"sub.contoso.com\" mailbox = \"erp@contoso.com\"\n"
	"  send_as = { \"billing@contoso.com\" } }\n";

#define R(...) {__VA_ARGS__, NULL}

struct pcase {
	const char *name;
	/* submission */
	const char *client, *login, *subject, *sender;
	const char *rcpts[6];
	const char *from[3];
	const char *sender_hdr;
	int reply_to;
	/* expected */
	enum verdict verdict;
	const char *xcode;  /* NULL when accepted */
	const char *reason;
	const char *submitter; /* NULL: none */
	const char *final_sender;
	int rewritten;
	const char *mode; /* NULL: not reached */
	const char *mailbox, *connector;
	enum from_action from_action;
	const char *new_from, *new_reply_to;
	int n_int, n_ext, n_refused;
	int delete_sender;
};

#define NOFROM {NULL}
#define F1(x) {x, NULL}

static const struct pcase cases[] = {
	/* Step 1: submitter recognition */
	{"unknown client refused", "8.8.8.8", NULL, NULL, "<a@contoso.com>",
	 R("<b@contoso.com>"), F1("a@contoso.com"), NULL, 0,
	 VERDICT_REJECT, "5.7.1", "unknown-submitter", NULL, "", 0, NULL, NULL, NULL,
	 FROM_KEEP, "", "", 0, 0, 0, 0},
	{"unknown login from unknown address refused", "203.0.113.9", "nobody", NULL,
	 "<a@contoso.com>", R("<b@contoso.com>"), F1("a@contoso.com"), NULL, 0,
	 VERDICT_REJECT, "5.7.1", "unknown-submitter", NULL, "", 0, NULL, NULL, NULL,
	 FROM_KEEP, "", "", 0, 0, 0, 0},
	{"no client address at all refused", NULL, NULL, NULL, "<a@contoso.com>",
	 R("<b@contoso.com>"), F1("a@contoso.com"), NULL, 0, VERDICT_REJECT, "5.7.1",
	 "unknown-submitter", NULL, "", 0, NULL, NULL, NULL, FROM_KEEP, "", "", 0, 0,
	 0, 0},
	{"client block recognised", "192.168.10.5", NULL, NULL, "<scanner@contoso.com>",
	 R("<alice@contoso.com>"), F1("scanner@contoso.com"), NULL, 0, VERDICT_ACCEPT,
	 NULL, "ok", "scanners", "scanner@contoso.com", 0, "direct-send", NULL, NULL,
	 FROM_KEEP, "", "", 1, 0, 0, 0},
	{"most specific block wins", "192.168.10.99", NULL, NULL,
	 "<scan@printer.local>", R("<alice@contoso.com>"), F1("scan@printer.local"),
	 NULL, 0, VERDICT_ACCEPT, NULL, "ok", "scanner-vip", "scanner@contoso.com", 1,
	 "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"IPv4-mapped IPv6 client matched as IPv4", "::ffff:192.168.10.5", NULL, NULL,
	 "<scanner@contoso.com>", R("<alice@contoso.com>"), F1("scanner@contoso.com"),
	 NULL, 0, VERDICT_ACCEPT, NULL, "ok", "scanners", "scanner@contoso.com", 0,
	 "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"IPv6 client block", "2001:db8:5::1", NULL, NULL, "<ops@tailspin.com>",
	 R("<x@tailspin.com>"), F1("ops@tailspin.com"), NULL, 0, VERDICT_ACCEPT, NULL,
	 "ok", "tailspin", "ops@tailspin.com", 0, "relay", NULL, "tsip", FROM_KEEP,
	 "", "", 1, 0, 0, 0},
	{"SASL login recognised, case-insensitively", "203.0.113.9", "ERP", NULL,
	 "<erp@contoso.com>", R("<bob@gmail.com>"), F1("erp@contoso.com"), NULL, 0,
	 VERDICT_ACCEPT, NULL, "ok", "erp", "erp@contoso.com", 0, "smtp-auth",
	 "erp@contoso.com", NULL, FROM_KEEP, "", "", 0, 1, 0, 0},
	{"SASL login beats the client block", "192.168.10.5", "erp", NULL,
	 "<erp@contoso.com>", R("<bob@gmail.com>"), F1("erp@contoso.com"), NULL, 0,
	 VERDICT_ACCEPT, NULL, "ok", "erp", "erp@contoso.com", 0, "smtp-auth",
	 "erp@contoso.com", NULL, FROM_KEEP, "", "", 0, 1, 0, 0},
	{"certificate subject recognised", "203.0.113.9", NULL, "CN=dev1.contoso.com",
	 "<dev1@sub.contoso.com>", R("<bob@gmail.com>"), F1("dev1@sub.contoso.com"),
	 NULL, 0, VERDICT_ACCEPT, NULL, "ok", "certdev", "dev1@sub.contoso.com", 0,
	 "relay", NULL, "onprem", FROM_KEEP, "", "", 0, 1, 0, 0},
	{"certificate subject must match exactly", "203.0.113.9", NULL,
	 "CN=dev1.contoso.com,O=x", "<dev1@sub.contoso.com>", R("<bob@gmail.com>"),
	 F1("dev1@sub.contoso.com"), NULL, 0, VERDICT_REJECT, "5.7.1",
	 "unknown-submitter", NULL, "", 0, NULL, NULL, NULL, FROM_KEEP, "", "", 0, 0,
	 0, 0},

	/* Step 2: envelope sender */
	{"null sender never rewritten", "192.168.10.5", NULL, NULL, "<>",
	 R("<alice@contoso.com>"), F1("scanner@contoso.com"), NULL, 0, VERDICT_ACCEPT,
	 NULL, "ok", "scanners", "", 0, "direct-send", NULL, NULL, FROM_KEEP, "", "",
	 1, 0, 0, 0},
	{"foreign sender rewritten to the default sender", "192.168.10.5", NULL, NULL,
	 "<scanner@printer.local>", R("<alice@contoso.com>"), F1("scanner@contoso.com"),
	 NULL, 0, VERDICT_ACCEPT, NULL, "ok", "scanners", "scanner@contoso.com", 1,
	 "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"allowed sender in an accepted domain kept", "192.168.10.5", NULL, NULL,
	 "<noreply@contoso.com>", R("<alice@contoso.com>"), F1("noreply@contoso.com"),
	 NULL, 0, VERDICT_ACCEPT, NULL, "ok", "scanners", "noreply@contoso.com", 0,
	 "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"sender in an accepted domain but not allowed rewritten", "192.168.10.5",
	 NULL, NULL, "<ceo@contoso.com>", R("<alice@contoso.com>"),
	 F1("scanner@contoso.com"), NULL, 0, VERDICT_ACCEPT, NULL, "ok", "scanners",
	 "scanner@contoso.com", 1, "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0,
	 0, 0},
	{"unparseable sender rewritten", "192.168.10.5", NULL, NULL, "<scanner@@bad>",
	 R("<alice@contoso.com>"), F1("scanner@contoso.com"), NULL, 0, VERDICT_ACCEPT,
	 NULL, "ok", "scanners", "scanner@contoso.com", 1, "direct-send", NULL, NULL,
	 FROM_KEEP, "", "", 1, 0, 0, 0},
	{"allowed pattern outside accepted domains still rewritten", "192.168.10.99",
	 NULL, NULL, "<scan@printer.local>", R("<alice@contoso.com>"),
	 F1("scan@printer.local"), NULL, 0, VERDICT_ACCEPT, NULL, "ok", "scanner-vip",
	 "scanner@contoso.com", 1, "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0,
	 0, 0},
	{"envelope_senders pattern keeps a sender", "203.0.113.9", "erp", NULL,
	 "<billing@contoso.com>", R("<bob@gmail.com>"), F1("billing@contoso.com"), NULL,
	 0, VERDICT_ACCEPT, NULL, "ok", "erp", "billing@contoso.com", 0, "smtp-auth",
	 "erp@contoso.com", NULL, FROM_KEEP, "", "", 0, 1, 0, 0},
	{"bare sender (no brackets) accepted", "192.168.10.5", NULL, NULL,
	 "noreply@contoso.com", R("alice@contoso.com"), F1("noreply@contoso.com"), NULL,
	 0, VERDICT_ACCEPT, NULL, "ok", "scanners", "noreply@contoso.com", 0,
	 "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},

	/* Step 3: recipients */
	{"internal, wildcard-internal and external recipients classified",
	 "192.168.10.5", NULL, NULL, "<noreply@contoso.com>",
	 R("<a@contoso.com>", "<b@mfp.contoso.com>", "<C@CONTOSO.COM>", "<d@gmail.com>"),
	 F1("noreply@contoso.com"), NULL, 0, VERDICT_ACCEPT, NULL, "ok", "scanners",
	 "noreply@contoso.com", 0, "smtp-auth", "scanner@contoso.com", NULL, FROM_KEEP,
	 "", "", 3, 1, 0, 0},
	{"look-alike domains are external", "10.9.1.1", NULL, NULL,
	 "<relay@relay.contoso.com>",
	 R("<a@contoso.com.evil.net>", "<b@evilcontoso.com>", "<c@fabrikam.co>"),
	 F1("relay@relay.contoso.com"), NULL, 0, VERDICT_ACCEPT, NULL, "ok",
	 "relayhost", "relay@relay.contoso.com", 0, "relay", NULL, "onprem", FROM_KEEP,
	 "", "", 0, 3, 0, 0},
	{"direct-send domain refuses an external recipient", "10.1.2.3", NULL, NULL,
	 "<mfp@fabrikam.com>", R("<a@fabrikam.com>", "<x@gmail.com>"),
	 F1("mfp@fabrikam.com"), NULL, 0, VERDICT_ACCEPT, NULL, "ok", "printers",
	 "mfp@fabrikam.com", 0, "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 1,
	 0},
	{"only external recipients on direct-send: whole message refused", "10.1.2.3",
	 NULL, NULL, "<mfp@fabrikam.com>", R("<x@gmail.com>"), F1("mfp@fabrikam.com"),
	 NULL, 0, VERDICT_REJECT, "5.7.54", "direct-send-external", "printers",
	 "mfp@fabrikam.com", 0, NULL, NULL, NULL, FROM_KEEP, "", "", 0, 0, 1, 0},
	{"auto domain without mailbox or connector refuses external", "172.16.4.4",
	 NULL, NULL, "<lab@lab.contoso.com>", R("<x@gmail.com>", "<y@contoso.com>"),
	 F1("lab@lab.contoso.com"), NULL, 0, VERDICT_ACCEPT, NULL, "ok", "lab",
	 "lab@lab.contoso.com", 0, "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0,
	 1, 0},
	{"bad recipient syntax refused", "192.168.10.5", NULL, NULL,
	 "<noreply@contoso.com>", R("<a b@contoso.com>", "<ok@contoso.com>"),
	 F1("noreply@contoso.com"), NULL, 0, VERDICT_ACCEPT, NULL, "ok", "scanners",
	 "noreply@contoso.com", 0, "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0,
	 1, 0},

	/* Step 5: mode */
	{"auto: all internal -> direct-send", "192.168.10.5", NULL, NULL,
	 "<noreply@contoso.com>", R("<a@contoso.com>", "<b@fabrikam.com>"),
	 F1("noreply@contoso.com"), NULL, 0, VERDICT_ACCEPT, NULL, "ok", "scanners",
	 "noreply@contoso.com", 0, "direct-send", NULL, NULL, FROM_KEEP, "", "", 2, 0,
	 0, 0},
	{"auto: external with a mailbox -> smtp-auth", "192.168.10.5", NULL, NULL,
	 "<noreply@contoso.com>", R("<x@gmail.com>"), F1("noreply@contoso.com"), NULL, 0,
	 VERDICT_ACCEPT, NULL, "ok", "scanners", "noreply@contoso.com", 0, "smtp-auth",
	 "scanner@contoso.com", NULL, FROM_KEEP, "", "", 0, 1, 0, 0},
	{"auto: external with a connector -> relay", "203.0.113.9", NULL,
	 "CN=dev1.contoso.com", "<dev1@sub.contoso.com>",
	 R("<x@gmail.com>", "<y@contoso.com>"), F1("dev1@sub.contoso.com"), NULL, 0,
	 VERDICT_ACCEPT, NULL, "ok", "certdev", "dev1@sub.contoso.com", 0, "relay",
	 NULL, "onprem", FROM_KEEP, "", "", 1, 1, 0, 0},
	{"auto: tenant refuses Direct Send -> relay even when internal",
	 "2001:db8::7", NULL, NULL, "<ops@tailspin.com>", R("<x@tailspin.com>"),
	 F1("ops@tailspin.com"), NULL, 0, VERDICT_ACCEPT, NULL, "ok", "tailspin",
	 "ops@tailspin.com", 0, "relay", NULL, "tsip", FROM_KEEP, "", "", 1, 0, 0, 0},
	{"pinned smtp-auth even for internal recipients", "203.0.113.9", "erp", NULL,
	 "<erp@contoso.com>", R("<a@contoso.com>"), F1("erp@contoso.com"), NULL, 0,
	 VERDICT_ACCEPT, NULL, "ok", "erp", "erp@contoso.com", 0, "smtp-auth",
	 "erp@contoso.com", NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"pinned relay", "10.9.1.1", NULL, NULL, "<relay@relay.contoso.com>",
	 R("<a@contoso.com>"), F1("relay@relay.contoso.com"), NULL, 0, VERDICT_ACCEPT,
	 NULL, "ok", "relayhost", "relay@relay.contoso.com", 0, "relay", NULL, "onprem",
	 FROM_KEEP, "", "", 1, 0, 0, 0},
	{"pinned direct-send, internal", "10.1.2.3", NULL, NULL, "<mfp@fabrikam.com>",
	 R("<a@fabrikam.com>", "<b@contoso.com>"), F1("\"MFP\" <mfp@fabrikam.com>"),
	 NULL, 0, VERDICT_ACCEPT, NULL, "ok", "printers", "mfp@fabrikam.com", 0,
	 "direct-send", NULL, NULL, FROM_KEEP, "", "", 2, 0, 0, 0},

	{"auto: a submitter's own mailbox wins over the connector", "203.0.113.9", "app2",
	 NULL, "<billing@contoso.com>", R("<x@gmail.com>"), F1("billing@contoso.com"), NULL,
	 0, VERDICT_ACCEPT, NULL, "ok", "app2", "billing@contoso.com", 0, "smtp-auth",
	 "erp@contoso.com", NULL, FROM_KEEP, "", "", 0, 1, 0, 0},
	{"auto: a submitter's own mailbox, internal recipients too", "203.0.113.9", "app2",
	 NULL, "<billing@contoso.com>", R("<y@contoso.com>"), F1("billing@contoso.com"), NULL,
	 0, VERDICT_ACCEPT, NULL, "ok", "app2", "billing@contoso.com", 0, "smtp-auth",
	 "erp@contoso.com", NULL, FROM_KEEP, "", "", 1, 0, 0, 0},

	{"recipients over milter { max_recipients } get 452 4.5.3", "203.0.113.9", "erp",
	 NULL, "<erp@contoso.com>", R("<a@x.example>", "<b@x.example>", "<c@x.example>", "<d@x.example>",
	   "<e@x.example>"),
	 F1("erp@contoso.com"), NULL, 0, VERDICT_ACCEPT, NULL, "ok", "erp", "erp@contoso.com", 0,
	 "smtp-auth", "erp@contoso.com", NULL, FROM_KEEP, "", "", 0, 4, 1, 0},

	/* Step 4: Send As */
	{"From allowed for the submitter kept", "192.168.10.5", NULL, NULL,
	 "<scanner@contoso.com>", R("<a@contoso.com>"),
	 F1("Scanner <scanner@contoso.com>"), NULL, 0, VERDICT_ACCEPT, NULL, "ok",
	 "scanners", "scanner@contoso.com", 0, "direct-send", NULL, NULL, FROM_KEEP,
	 "", "", 1, 0, 0, 0},
	{"From in an accepted domain not allowed: 5.7.60", "192.168.10.5", NULL, NULL,
	 "<scanner@contoso.com>", R("<a@contoso.com>"), F1("ceo@contoso.com"), NULL, 0,
	 VERDICT_REJECT, "5.7.60", "send-as-denied", "scanners", "scanner@contoso.com",
	 0, "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"an @ in the display name does not fool Send As", "192.168.10.5", NULL, NULL,
	 "<scanner@contoso.com>", R("<a@contoso.com>"),
	 F1("\"scanner@contoso.com\" <ceo@contoso.com>"), NULL, 0, VERDICT_REJECT,
	 "5.7.60", "send-as-denied", "scanners", "scanner@contoso.com", 0,
	 "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"foreign From rewritten with display name and Reply-To", "192.168.10.5", NULL,
	 NULL, "<scanner@printer.local>", R("<a@contoso.com>"),
	 F1("\"Scanner 3F\" <scanner@printer.local>"), NULL, 0, VERDICT_ACCEPT, NULL,
	 "ok", "scanners", "scanner@contoso.com", 1, "direct-send", NULL, NULL,
	 FROM_REWRITE, "Scanner 3F <scanner@contoso.com>",
	 "Scanner 3F <scanner@printer.local>", 1, 0, 0, 0},
	{"foreign From rewritten for a submitter not allowed the default sender",
	 "192.168.20.4", NULL, NULL, "<kiosk@printer.local>", R("<a@contoso.com>"),
	 F1("kiosk@printer.local"), NULL, 0, VERDICT_ACCEPT, NULL, "ok", "kiosk",
	 "scanner@contoso.com", 1, "direct-send", NULL, NULL, FROM_REWRITE,
	 "scanner@contoso.com", "kiosk@printer.local", 1, 0, 0, 0},
	{"the default sender as From, when the domain rewrites to it", "192.168.20.4",
	 NULL, NULL, "<kiosk@contoso.com>", R("<a@contoso.com>"), F1("scanner@contoso.com"),
	 NULL, 0, VERDICT_ACCEPT, NULL, "ok", "kiosk", "kiosk@contoso.com", 0,
	 "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"foreign From rewritten, existing Reply-To kept", "192.168.10.5", NULL, NULL,
	 "<scanner@printer.local>", R("<a@contoso.com>"), F1("scanner@printer.local"),
	 NULL, 1, VERDICT_ACCEPT, NULL, "ok", "scanners", "scanner@contoso.com", 1,
	 "direct-send", NULL, NULL, FROM_REWRITE, "scanner@contoso.com", "", 1, 0, 0, 0},
	{"display name with @ quoted when rewritten", "192.168.10.5", NULL, NULL,
	 "<scan@printer.local>", R("<a@contoso.com>"),
	 F1("\"ceo@contoso.com\" <scan@printer.local>"), NULL, 0, VERDICT_ACCEPT, NULL,
	 "ok", "scanners", "scanner@contoso.com", 1, "direct-send", NULL, NULL,
	 FROM_REWRITE, "\"ceo@contoso.com\" <scanner@contoso.com>",
	 "\"ceo@contoso.com\" <scan@printer.local>", 1, 0, 0, 0},
	{"foreign From without rewriting: 5.7.60", "10.1.2.3", NULL, NULL,
	 "<mfp@fabrikam.com>", R("<a@fabrikam.com>"), F1("mfp@printer.local"), NULL, 0,
	 VERDICT_REJECT, "5.7.60", "send-as-denied", "printers", "mfp@fabrikam.com", 0,
	 "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"missing From added when rewriting", "192.168.10.5", NULL, NULL,
	 "<scanner@contoso.com>", R("<a@contoso.com>"), NOFROM, NULL, 0,
	 VERDICT_ACCEPT, NULL, "ok", "scanners", "scanner@contoso.com", 0,
	 "direct-send", NULL, NULL, FROM_ADD, "scanner@contoso.com", "", 1, 0, 0, 0},
	{"missing From refused without rewriting", "10.1.2.3", NULL, NULL,
	 "<mfp@fabrikam.com>", R("<a@fabrikam.com>"), NOFROM, NULL, 0, VERDICT_REJECT,
	 "5.6.0", "no-from", "printers", "mfp@fabrikam.com", 0, "direct-send", NULL,
	 NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"two From headers refused", "192.168.10.5", NULL, NULL,
	 "<scanner@contoso.com>", R("<a@contoso.com>"),
	 {"scanner@contoso.com", "noreply@contoso.com", NULL}, NULL, 0, VERDICT_REJECT,
	 "5.6.0", "several-from", "scanners", "scanner@contoso.com", 0, "direct-send",
	 NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"From with two addresses refused", "192.168.10.5", NULL, NULL,
	 "<scanner@contoso.com>", R("<a@contoso.com>"),
	 F1("scanner@contoso.com, noreply@contoso.com"), NULL, 0, VERDICT_REJECT,
	 "5.6.0", "from-several-addresses", "scanners", "scanner@contoso.com", 0,
	 "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"unparseable From refused without rewriting", "10.1.2.3", NULL, NULL,
	 "<mfp@fabrikam.com>", R("<a@fabrikam.com>"), F1("Scanner"), NULL, 0,
	 VERDICT_REJECT, "5.6.0", "from-syntax", "printers", "mfp@fabrikam.com", 0,
	 "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"unparseable From replaced when rewriting", "192.168.10.5", NULL, NULL,
	 "<scanner@contoso.com>", R("<a@contoso.com>"), F1("Scanner <broken"), NULL, 0,
	 VERDICT_ACCEPT, NULL, "ok", "scanners", "scanner@contoso.com", 0,
	 "direct-send", NULL, NULL, FROM_REWRITE, "scanner@contoso.com", "", 1, 0, 0, 0},
	{"Sender header not allowed: 5.7.60", "192.168.10.5", NULL, NULL,
	 "<scanner@contoso.com>", R("<a@contoso.com>"), F1("scanner@contoso.com"),
	 "ceo@contoso.com", 0, VERDICT_REJECT, "5.7.60", "send-as-denied", "scanners",
	 "scanner@contoso.com", 0, "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0,
	 0, 0},
	{"Sender header allowed", "192.168.10.5", NULL, NULL, "<scanner@contoso.com>",
	 R("<a@contoso.com>"), F1("noreply@contoso.com"), "scanner@contoso.com", 0,
	 VERDICT_ACCEPT, NULL, "ok", "scanners", "scanner@contoso.com", 0,
	 "direct-send", NULL, NULL, FROM_KEEP, "", "", 1, 0, 0, 0},
	{"Sender header removed when From is rewritten", "192.168.10.5", NULL, NULL,
	 "<scanner@contoso.com>", R("<a@contoso.com>"), F1("x@printer.local"),
	 "y@printer.local", 0, VERDICT_ACCEPT, NULL, "ok", "scanners",
	 "scanner@contoso.com", 0, "direct-send", NULL, NULL, FROM_REWRITE,
	 "scanner@contoso.com", "x@printer.local", 1, 0, 0, 1},

	/* Step 4 in smtp-auth mode: the mailbox must agree */
	{"mailbox has Send As on the From", "192.168.10.5", NULL, NULL,
	 "<noreply@contoso.com>", R("<x@gmail.com>"), F1("noreply@contoso.com"), NULL, 0,
	 VERDICT_ACCEPT, NULL, "ok", "scanners", "noreply@contoso.com", 0, "smtp-auth",
	 "scanner@contoso.com", NULL, FROM_KEEP, "", "", 0, 1, 0, 0},
	{"submitter allows but the mailbox may not: 5.7.60", "203.0.113.9", "erp", NULL,
	 "<erp@contoso.com>", R("<x@gmail.com>"), F1("hr@contoso.com"), NULL, 0,
	 VERDICT_REJECT, "5.7.60", "send-as-denied-mailbox", "erp", "erp@contoso.com",
	 0, "smtp-auth", "erp@contoso.com", NULL, FROM_KEEP, "", "", 0, 1, 0, 0},
	{"From that is itself a mailbox selects that mailbox", "203.0.113.9", "erp",
	 NULL, "<alerts@contoso.com>", R("<x@gmail.com>"), F1("alerts@contoso.com"),
	 NULL, 0, VERDICT_ACCEPT, NULL, "ok", "erp", "alerts@contoso.com", 0,
	 "smtp-auth", "alerts@contoso.com", NULL, FROM_KEEP, "", "", 0, 1, 0, 0},
	{"rewritten sender follows the selected mailbox", "203.0.113.9", "erp", NULL,
	 "<daemon@erp.local>", R("<x@gmail.com>"), F1("alerts@contoso.com"), NULL, 0,
	 VERDICT_ACCEPT, NULL, "ok", "erp", "alerts@contoso.com", 1, "smtp-auth",
	 "alerts@contoso.com", NULL, FROM_KEEP, "", "", 0, 1, 0, 0},
	{"kept envelope sender the mailbox may not use: 5.7.60", "203.0.113.9", "erp",
	 NULL, "<payroll@contoso.com>", R("<x@gmail.com>"), F1("erp@contoso.com"), NULL,
	 0, VERDICT_REJECT, "5.7.60", "send-as-denied-mailbox", "erp",
	 "payroll@contoso.com", 0, "smtp-auth", "erp@contoso.com", NULL, FROM_KEEP, "",
	 "", 0, 1, 0, 0},
	{"null sender in smtp-auth mode", "203.0.113.9", "erp", NULL, "<>",
	 R("<x@gmail.com>"), F1("erp@contoso.com"), NULL, 0, VERDICT_ACCEPT, NULL, "ok",
	 "erp", "", 0, "smtp-auth", "erp@contoso.com", NULL, FROM_KEEP, "", "", 0, 1, 0,
	 0},
	{"relay mode does not consult any mailbox", "10.9.1.1", NULL, NULL,
	 "<relay@relay.contoso.com>", R("<x@gmail.com>"), F1("anyone@contoso.com"),
	 NULL, 0, VERDICT_ACCEPT, NULL, "ok", "relayhost", "relay@relay.contoso.com", 0,
	 "relay", NULL, "onprem", FROM_KEEP, "", "", 0, 1, 0, 0},
};
/* clang-format on */

static struct conf *pconf;

static void
setup(void)
{
	struct diag d = {0};

	pconf = tc_load(policy_conf, NULL, &d);
	if (pconf == NULL)
		tc_diag_print(&d);
	diag_free(&d);
	ck_assert_ptr_nonnull(pconf);
}

static void
teardown(void)
{
	conf_free(pconf);
	tc_cleanup();
}

/* submission_of - the row's submission (ip and sender_hdr hold parts of it) */
static void
submission_of(const struct pcase *c, struct submission *s, struct ipaddr *ip,
              const char **sender_hdr)
{
	memset(s, 0, sizeof(*s));
	if (c->client != NULL) {
		ck_assert_int_eq(ip_parse(c->client, ip), 0);
		s->id.client = ip;
	}
	s->id.sasl_login = c->login;
	s->id.cert_subject = c->subject;
	s->env_sender = c->sender;
	s->rcpts = c->rcpts;
	while (c->rcpts[s->n_rcpts] != NULL)
		s->n_rcpts++;
	s->headers.from = c->from;
	while (c->from[s->headers.n_from] != NULL)
		s->headers.n_from++;
	sender_hdr[0] = c->sender_hdr;
	s->headers.sender = sender_hdr;
	s->headers.n_sender = c->sender_hdr ? 1 : 0;
	s->headers.n_reply_to = (size_t)c->reply_to;
}

START_TEST(test_case)
{
	const struct pcase *c = &cases[_i];
	struct ipaddr ip;
	struct submission s;
	struct policy_msg m;
	struct rcpt_verdict rv[6];
	char buf[ADDR_TEXT_MAX + 1];
	const char *sender_hdr[1] = {c->sender_hdr};

	submission_of(c, &s, &ip, sender_hdr);

	policy_evaluate(pconf, NULL, &s, &m, rv, 6);

	ck_assert_msg(m.reply.verdict == c->verdict, "%s: verdict %d (%s %s %s)", c->name,
	              m.reply.verdict, m.reply.code, m.reply.xcode, m.reply.text);
	if (c->xcode != NULL)
		ck_assert_str_eq(m.reply.xcode, c->xcode);
	if (c->xcode != NULL && strcmp(c->xcode, "5.7.60") == 0) {
		/* The exact words Exchange Online uses. */
		ck_assert_str_eq(m.reply.code, "550");
		ck_assert_str_eq(m.reply.text, "SMTP; Client does not have permissions to send "
		                               "as this sender");
	}
	ck_assert_str_eq(reason_name(m.reply.reason), c->reason);
	if (c->submitter == NULL) {
		ck_assert_ptr_null(m.submitter);
		return;
	}
	ck_assert_ptr_nonnull(m.submitter);
	ck_assert_str_eq(m.submitter->name, c->submitter);
	addr_format(&m.final_sender, buf, sizeof(buf));
	ck_assert_str_eq(buf, c->final_sender);
	ck_assert_int_eq(m.sender_rewritten, c->rewritten);
	ck_assert_int_eq(m.n_internal, c->n_int);
	ck_assert_int_eq(m.n_external, c->n_ext);
	ck_assert_int_eq(m.n_refused, c->n_refused);
	if (c->mode == NULL) {
		ck_assert(!m.mode_chosen);
		return;
	}
	ck_assert(m.mode_chosen);
	ck_assert_str_eq(mode_name(m.mode), c->mode);
	if (c->mailbox != NULL) {
		ck_assert_ptr_nonnull(m.mailbox);
		ck_assert_str_eq(m.mailbox->name, c->mailbox);
	} else {
		ck_assert_ptr_null(m.mailbox);
	}
	if (c->connector != NULL) {
		ck_assert_ptr_nonnull(m.connector);
		ck_assert_str_eq(m.connector->name, c->connector);
	} else {
		ck_assert_ptr_null(m.connector);
	}
	ck_assert_int_eq(m.from_action, c->from_action);
	ck_assert_str_eq(m.new_from, c->new_from);
	ck_assert_str_eq(m.new_reply_to, c->new_reply_to);
	ck_assert_int_eq(m.delete_sender, c->delete_sender);
}
END_TEST

/*
 * The policy is idempotent: a message changed as its verdict says, and
 * submitted again by the same client, is accepted the same way with no
 * further change.  The transport relies on it when it decides again for
 * mail whose route it cannot trust (a message requeued after the milter
 * rewrote it must not turn into a refusal).
 */
START_TEST(test_idempotent)
{
	const struct pcase *c = &cases[_i];
	struct ipaddr ip;
	struct submission s;
	struct policy_msg m, m2;
	struct rcpt_verdict rv[6];
	struct edits e, e2;
	const char *sender_hdr[1] = {c->sender_hdr}, *from[3], *sender2[1];
	char env[ADDR_TEXT_MAX + 3];
	size_t i;

	if (c->verdict != VERDICT_ACCEPT)
		return;
	submission_of(c, &s, &ip, sender_hdr);
	policy_evaluate(pconf, NULL, &s, &m, rv, 6);
	ck_assert_int_eq(m.reply.verdict, VERDICT_ACCEPT);
	policy_edits(&m, &e);
	ck_assert_int_eq(e.e[e.n - 1].op, EDIT_ROUTE);
	/* The edits say what the verdict says. */
	for (i = 0; i < e.n && e.e[i].op != EDIT_SENDER; i++)
		;
	if (m.sender_rewritten && !addr_equal(&m.final_sender, &m.env_sender)) {
		ck_assert_msg(i < e.n, "%s: no sender edit", c->name);
		ck_assert_str_eq(e.e[i].value, c->final_sender);
	} else {
		ck_assert_msg(i == e.n, "%s: a sender edit", c->name);
	}
	for (i = 0; i < e.n && (e.e[i].header == NULL || strcmp(e.e[i].header, "From") != 0); i++)
		;
	if (c->from_action == FROM_KEEP)
		ck_assert_msg(i == e.n, "%s: a From edit", c->name);
	else
		ck_assert_str_eq(e.e[i].value, c->new_from);

	/* Apply the edits to the submission. */
	memcpy(from, c->from, sizeof(from));
	for (i = 0; i < e.n; i++) {
		switch (e.e[i].op) {
		case EDIT_SENDER:
			snprintf(env, sizeof(env), "<%s>", e.e[i].value);
			s.env_sender = env;
			break;
		case EDIT_HEADER_SET:
		case EDIT_HEADER_ADD:
			if (strcmp(e.e[i].header, "From") == 0) {
				from[0] = e.e[i].value;
				s.headers.n_from = 1;
			} else {
				ck_assert_str_eq(e.e[i].header, "Reply-To");
				s.headers.n_reply_to++;
			}
			break;
		case EDIT_HEADER_DROP:
			ck_assert_str_eq(e.e[i].header, "Sender");
			s.headers.n_sender = 0;
			break;
		case EDIT_ROUTE:
			break;
		}
	}
	s.headers.from = from;
	sender2[0] = c->sender_hdr;
	s.headers.sender = sender2;
	policy_evaluate(pconf, NULL, &s, &m2, rv, 6);
	ck_assert_msg(m2.reply.verdict == VERDICT_ACCEPT, "%s: second look: %s %s %s", c->name,
	              m2.reply.code, m2.reply.xcode, m2.reply.text);
	ck_assert_int_eq(m2.mode, m.mode);
	ck_assert_ptr_eq(m2.mailbox, m.mailbox);
	ck_assert_ptr_eq(m2.connector, m.connector);
	ck_assert(addr_equal(&m2.final_sender, &m.final_sender));
	policy_edits(&m2, &e2);
	ck_assert_msg(e2.n == 1 && e2.e[0].op == EDIT_ROUTE, "%s: %zu more changes", c->name,
	              e2.n - 1);
}
END_TEST

/* evaluate - a submission by hand: from client (an address, or NULL) or with
 * login (or NULL), the envelope sender, one header From, n recipients; rv
 * gets a verdict for each */
static void
evaluate(const struct policy_facts *facts, const char *client, const char *login,
         const char *sender, const char *from, const char *const *rcpts, size_t n,
         struct policy_msg *m, struct rcpt_verdict *rv)
{
	const char *froms[] = {from};
	struct submission s;
	struct ipaddr ip;

	memset(&s, 0, sizeof(s));
	if (client != NULL) {
		ck_assert_int_eq(ip_parse(client, &ip), 0);
		s.id.client = &ip;
	}
	s.id.sasl_login = login;
	s.env_sender = sender;
	s.rcpts = rcpts;
	s.n_rcpts = n;
	s.headers.from = froms;
	s.headers.n_from = 1;
	policy_evaluate(pconf, facts, &s, m, rv, n);
}

/* The per-recipient replies say why, in words an operator can act on. */
START_TEST(test_rcpt_replies)
{
	const char *rcpts[] = {"<a@fabrikam.com>", "<x@gmail.com>", "<bad@@x>"};
	struct policy_msg m;
	struct rcpt_verdict rv[3];

	evaluate(NULL, "10.1.2.3", NULL, "<mfp@fabrikam.com>", "mfp@fabrikam.com", rcpts, 3, &m,
	         rv);
	ck_assert_int_eq(rv[0].reply.verdict, VERDICT_ACCEPT);
	ck_assert(rv[0].internal);
	ck_assert_int_eq(rv[1].reply.verdict, VERDICT_REJECT);
	ck_assert_str_eq(rv[1].reply.code, "550");
	ck_assert_str_eq(rv[1].reply.xcode, "5.7.54");
	ck_assert_str_eq(rv[1].reply.text, "Direct Send can only reach the organisation's own "
	                                   "mailboxes; <x@gmail.com> is outside fabrikam.com");
	ck_assert_int_eq(rv[2].reply.verdict, VERDICT_REJECT);
	ck_assert_str_eq(rv[2].reply.code, "501");
	ck_assert_str_eq(rv[2].reply.xcode, "5.1.3");
}
END_TEST

START_TEST(test_rcpt_limit_reply)
{
	const char *rcpts[] = {"<a@x.example>", "<b@x.example>", "<c@x.example>", "<d@x.example>",
	                       "<e@x.example>"};
	struct policy_msg m;
	struct rcpt_verdict rv[5];

	evaluate(NULL, NULL, "erp", "<erp@contoso.com>", "erp@contoso.com", rcpts, 5, &m, rv);
	/* The mailbox's recipients_per_message (2) is the transport's business. */
	ck_assert_int_eq(rv[3].reply.verdict, VERDICT_ACCEPT);
	ck_assert_int_eq(rv[4].reply.verdict, VERDICT_TEMPFAIL);
	ck_assert_str_eq(rv[4].reply.code, "452");
	ck_assert_str_eq(rv[4].reply.xcode, "4.5.3");
	ck_assert_str_eq(rv[4].reply.text, "Too many recipients: this gateway takes 4 per "
	                                   "message; send the rest in another message");
}
END_TEST

START_TEST(test_summary)
{
	const char *rcpts[] = {"<a@contoso.com>"};
	struct policy_msg m;
	struct rcpt_verdict rv[1];
	char buf[1024];

	evaluate(NULL, "192.168.10.5", NULL, "<scanner@printer.local>",
	         "Scanner <scanner@printer.local>", rcpts, 1, &m, rv);
	ck_assert_str_eq(policy_summary(&m, buf, sizeof(buf)),
	                 "client=[192.168.10.5] submitter=scanners "
	                 "sender=<scanner@printer.local> -> <scanner@contoso.com> "
	                 "from=<scanner@printer.local> from_action=rewrite "
	                 "mode=direct-send mailbox=- connector=- internal=1 "
	                 "external=0 refused=0 verdict=accept reason=ok");
}
END_TEST

/* require_spf_pass: a domain marked by the milter is never a rewrite target
 * for the gateway's own sending (direct-send, relay). */
static bool spf_unauth[32];
static const struct policy_facts spf_facts = {spf_unauth};

static void
spf_submit(const char *client, const char *sender, const char *from, struct policy_msg *m)
{
	const char *rcpts[] = {"<a@contoso.com>"};
	struct rcpt_verdict rv[1];

	evaluate(&spf_facts, client, NULL, sender, from, rcpts, 1, m, rv);
}

START_TEST(test_spf_unauthorized)
{
	struct policy_msg m;
	size_t i;

	/* A fact at run time, given to the policy beside the configuration. */
	ck_assert_uint_le(pconf->n_domains, sizeof(spf_unauth) / sizeof(spf_unauth[0]));
	for (i = 0; i < pconf->n_domains; i++)
		spf_unauth[i] = strcmp(pconf->domains[i].name, "contoso.com") == 0 ||
		                strcmp(pconf->domains[i].name, "fabrikam.com") == 0;
	/* auto, a mailbox configured: smtp-auth instead of direct-send */
	spf_submit("192.168.10.5", "<scan@printer.local>", "scan@printer.local", &m);
	ck_assert_int_eq(m.reply.verdict, VERDICT_ACCEPT);
	ck_assert_str_eq(mode_name(m.mode), "smtp-auth");
	ck_assert_str_eq(m.mailbox->name, "scanner@contoso.com");
	/* pinned direct-send with a rewritten sender: the device retries later */
	spf_submit("10.1.2.3", "<mfp@printer.local>", "mfp@fabrikam.com", &m);
	ck_assert_int_eq(m.reply.verdict, VERDICT_TEMPFAIL);
	ck_assert_str_eq(m.reply.code, "451");
	ck_assert_str_eq(m.reply.xcode, "4.7.0");
	ck_assert_str_eq(reason_name(m.reply.reason), "spf-not-authorized");
	ck_assert_str_eq(m.reply.text, "SPF for fabrikam.com does not authorize this gateway "
	                               "(egress_ip); mail for it waits until the record is "
	                               "fixed (m365ctl doctor)");
	/* nothing rewritten: the device's own address goes out as it is */
	spf_submit("10.1.2.3", "<mfp@fabrikam.com>", "mfp@fabrikam.com", &m);
	ck_assert_int_eq(m.reply.verdict, VERDICT_ACCEPT);
	ck_assert_str_eq(mode_name(m.mode), "direct-send");
	/* The same submission without the facts (nothing known): not held. */
	memset(spf_unauth, 0, sizeof(spf_unauth));
	spf_submit("10.1.2.3", "<mfp@printer.local>", "mfp@fabrikam.com", &m);
	ck_assert_int_eq(m.reply.verdict, VERDICT_ACCEPT);
	ck_assert_str_eq(mode_name(m.mode), "direct-send");
}
END_TEST

int
main(void)
{
	static const struct check_suite suite = {"policy", "table", setup, teardown, 0};
	const struct check_test tests[] = {
	    CHECK_LOOP(test_case, cases),      CHECK_LOOP(test_idempotent, cases),
	    CHECK_TEST(test_rcpt_replies),     CHECK_TEST(test_rcpt_limit_reply),
	    CHECK_TEST(test_spf_unauthorized), CHECK_TEST(test_summary)};

	return check_main(&suite, tests, CHECK_ROWS(tests));
}
