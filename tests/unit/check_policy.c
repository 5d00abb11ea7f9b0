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
	{.name = "unknown client refused",
	  .client = "8.8.8.8", .sender = "<a@contoso.com>", .rcpts = R("<b@contoso.com>"),
	  .from = F1("a@contoso.com"), .verdict = VERDICT_REJECT, .xcode = "5.7.1",
	  .reason = "unknown-submitter", .final_sender = "", .new_from = "", .new_reply_to = ""},
	{.name = "unknown login from unknown address refused",
	  .client = "203.0.113.9", .login = "nobody", .sender = "<a@contoso.com>",
	  .rcpts = R("<b@contoso.com>"), .from = F1("a@contoso.com"), .verdict = VERDICT_REJECT,
	  .xcode = "5.7.1", .reason = "unknown-submitter", .final_sender = "", .new_from = "",
	  .new_reply_to = ""},
	{.name = "no client address at all refused",
	  .sender = "<a@contoso.com>", .rcpts = R("<b@contoso.com>"),
	  .from = F1("a@contoso.com"), .verdict = VERDICT_REJECT, .xcode = "5.7.1",
	  .reason = "unknown-submitter", .final_sender = "", .new_from = "", .new_reply_to = ""},
	{.name = "client block recognised",
	  .client = "192.168.10.5", .sender = "<scanner@contoso.com>",
	  .rcpts = R("<alice@contoso.com>"), .from = F1("scanner@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "scanner@contoso.com", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 1},
	{.name = "most specific block wins",
	  .client = "192.168.10.99", .sender = "<scan@printer.local>",
	  .rcpts = R("<alice@contoso.com>"), .from = F1("scan@printer.local"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanner-vip",
	  .final_sender = "scanner@contoso.com", .rewritten = 1, .mode = "direct-send",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "IPv4-mapped IPv6 client matched as IPv4",
	  .client = "::ffff:192.168.10.5", .sender = "<scanner@contoso.com>",
	  .rcpts = R("<alice@contoso.com>"), .from = F1("scanner@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "scanner@contoso.com", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 1},
	{.name = "IPv6 client block",
	  .client = "2001:db8:5::1", .sender = "<ops@tailspin.com>",
	  .rcpts = R("<x@tailspin.com>"), .from = F1("ops@tailspin.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "tailspin",
	  .final_sender = "ops@tailspin.com", .mode = "relay", .connector = "tsip",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "SASL login recognised, case-insensitively",
	  .client = "203.0.113.9", .login = "ERP", .sender = "<erp@contoso.com>",
	  .rcpts = R("<bob@gmail.com>"), .from = F1("erp@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "erp",
	  .final_sender = "erp@contoso.com", .mode = "smtp-auth", .mailbox = "erp@contoso.com",
	  .new_from = "", .new_reply_to = "", .n_ext = 1},
	{.name = "SASL login beats the client block",
	  .client = "192.168.10.5", .login = "erp", .sender = "<erp@contoso.com>",
	  .rcpts = R("<bob@gmail.com>"), .from = F1("erp@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "erp",
	  .final_sender = "erp@contoso.com", .mode = "smtp-auth", .mailbox = "erp@contoso.com",
	  .new_from = "", .new_reply_to = "", .n_ext = 1},
	{.name = "certificate subject recognised",
	  .client = "203.0.113.9", .subject = "CN=dev1.contoso.com",
	  .sender = "<dev1@sub.contoso.com>", .rcpts = R("<bob@gmail.com>"),
	  .from = F1("dev1@sub.contoso.com"), .verdict = VERDICT_ACCEPT, .reason = "ok",
	  .submitter = "certdev", .final_sender = "dev1@sub.contoso.com", .mode = "relay",
	  .connector = "onprem", .new_from = "", .new_reply_to = "", .n_ext = 1},
	{.name = "certificate subject must match exactly",
	  .client = "203.0.113.9", .subject = "CN=dev1.contoso.com,O=x",
	  .sender = "<dev1@sub.contoso.com>", .rcpts = R("<bob@gmail.com>"),
	  .from = F1("dev1@sub.contoso.com"), .verdict = VERDICT_REJECT, .xcode = "5.7.1",
	  .reason = "unknown-submitter", .final_sender = "", .new_from = "", .new_reply_to = ""},
	/* Step 2: envelope sender */
	{.name = "null sender never rewritten",
	  .client = "192.168.10.5", .sender = "<>", .rcpts = R("<alice@contoso.com>"),
	  .from = F1("scanner@contoso.com"), .verdict = VERDICT_ACCEPT, .reason = "ok",
	  .submitter = "scanners", .final_sender = "", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 1},
	{.name = "foreign sender rewritten to the default sender",
	  .client = "192.168.10.5", .sender = "<scanner@printer.local>",
	  .rcpts = R("<alice@contoso.com>"), .from = F1("scanner@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "scanner@contoso.com", .rewritten = 1, .mode = "direct-send",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "allowed sender in an accepted domain kept",
	  .client = "192.168.10.5", .sender = "<noreply@contoso.com>",
	  .rcpts = R("<alice@contoso.com>"), .from = F1("noreply@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "noreply@contoso.com", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 1},
	{.name = "sender in an accepted domain but not allowed rewritten",
	  .client = "192.168.10.5", .sender = "<ceo@contoso.com>",
	  .rcpts = R("<alice@contoso.com>"), .from = F1("scanner@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "scanner@contoso.com", .rewritten = 1, .mode = "direct-send",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "unparseable sender rewritten",
	  .client = "192.168.10.5", .sender = "<scanner@@bad>",
	  .rcpts = R("<alice@contoso.com>"), .from = F1("scanner@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "scanner@contoso.com", .rewritten = 1, .mode = "direct-send",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "allowed pattern outside accepted domains still rewritten",
	  .client = "192.168.10.99", .sender = "<scan@printer.local>",
	  .rcpts = R("<alice@contoso.com>"), .from = F1("scan@printer.local"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanner-vip",
	  .final_sender = "scanner@contoso.com", .rewritten = 1, .mode = "direct-send",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "envelope_senders pattern keeps a sender",
	  .client = "203.0.113.9", .login = "erp", .sender = "<billing@contoso.com>",
	  .rcpts = R("<bob@gmail.com>"), .from = F1("billing@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "erp",
	  .final_sender = "billing@contoso.com", .mode = "smtp-auth",
	  .mailbox = "erp@contoso.com", .new_from = "", .new_reply_to = "", .n_ext = 1},
	{.name = "bare sender (no brackets) accepted",
	  .client = "192.168.10.5", .sender = "noreply@contoso.com",
	  .rcpts = R("alice@contoso.com"), .from = F1("noreply@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "noreply@contoso.com", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 1},
	/* Step 3: recipients */
	{.name = "internal, wildcard-internal and external recipients classified",
	  .client = "192.168.10.5", .sender = "<noreply@contoso.com>",
	  .rcpts = R("<a@contoso.com>", "<b@mfp.contoso.com>", "<C@CONTOSO.COM>", "<d@gmail.com>"),
	  .from = F1("noreply@contoso.com"), .verdict = VERDICT_ACCEPT, .reason = "ok",
	  .submitter = "scanners", .final_sender = "noreply@contoso.com", .mode = "smtp-auth",
	  .mailbox = "scanner@contoso.com", .new_from = "", .new_reply_to = "", .n_int = 3,
	  .n_ext = 1},
	{.name = "look-alike domains are external",
	  .client = "10.9.1.1", .sender = "<relay@relay.contoso.com>",
	  .rcpts = R("<a@contoso.com.evil.net>", "<b@evilcontoso.com>", "<c@fabrikam.co>"),
	  .from = F1("relay@relay.contoso.com"), .verdict = VERDICT_ACCEPT, .reason = "ok",
	  .submitter = "relayhost", .final_sender = "relay@relay.contoso.com", .mode = "relay",
	  .connector = "onprem", .new_from = "", .new_reply_to = "", .n_ext = 3},
	{.name = "direct-send domain refuses an external recipient",
	  .client = "10.1.2.3", .sender = "<mfp@fabrikam.com>",
	  .rcpts = R("<a@fabrikam.com>", "<x@gmail.com>"), .from = F1("mfp@fabrikam.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "printers",
	  .final_sender = "mfp@fabrikam.com", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 1, .n_refused = 1},
	{.name = "only external recipients on direct-send: whole message refused",
	  .client = "10.1.2.3", .sender = "<mfp@fabrikam.com>", .rcpts = R("<x@gmail.com>"),
	  .from = F1("mfp@fabrikam.com"), .verdict = VERDICT_REJECT, .xcode = "5.7.54",
	  .reason = "direct-send-external", .submitter = "printers",
	  .final_sender = "mfp@fabrikam.com", .new_from = "", .new_reply_to = "", .n_refused = 1},
	{.name = "auto domain without mailbox or connector refuses external",
	  .client = "172.16.4.4", .sender = "<lab@lab.contoso.com>",
	  .rcpts = R("<x@gmail.com>", "<y@contoso.com>"), .from = F1("lab@lab.contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "lab",
	  .final_sender = "lab@lab.contoso.com", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 1, .n_refused = 1},
	{.name = "bad recipient syntax refused",
	  .client = "192.168.10.5", .sender = "<noreply@contoso.com>",
	  .rcpts = R("<a b@contoso.com>", "<ok@contoso.com>"), .from = F1("noreply@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "noreply@contoso.com", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 1, .n_refused = 1},
	/* Step 5: mode */
	{.name = "auto: all internal -> direct-send",
	  .client = "192.168.10.5", .sender = "<noreply@contoso.com>",
	  .rcpts = R("<a@contoso.com>", "<b@fabrikam.com>"), .from = F1("noreply@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "noreply@contoso.com", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 2},
	{.name = "auto: external with a mailbox -> smtp-auth",
	  .client = "192.168.10.5", .sender = "<noreply@contoso.com>",
	  .rcpts = R("<x@gmail.com>"), .from = F1("noreply@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "noreply@contoso.com", .mode = "smtp-auth",
	  .mailbox = "scanner@contoso.com", .new_from = "", .new_reply_to = "", .n_ext = 1},
	{.name = "auto: external with a connector -> relay",
	  .client = "203.0.113.9", .subject = "CN=dev1.contoso.com",
	  .sender = "<dev1@sub.contoso.com>", .rcpts = R("<x@gmail.com>", "<y@contoso.com>"),
	  .from = F1("dev1@sub.contoso.com"), .verdict = VERDICT_ACCEPT, .reason = "ok",
	  .submitter = "certdev", .final_sender = "dev1@sub.contoso.com", .mode = "relay",
	  .connector = "onprem", .new_from = "", .new_reply_to = "", .n_int = 1, .n_ext = 1},
	{.name = "auto: tenant refuses Direct Send -> relay even when internal",
	  .client = "2001:db8::7", .sender = "<ops@tailspin.com>",
	  .rcpts = R("<x@tailspin.com>"), .from = F1("ops@tailspin.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "tailspin",
	  .final_sender = "ops@tailspin.com", .mode = "relay", .connector = "tsip",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "pinned smtp-auth even for internal recipients",
	  .client = "203.0.113.9", .login = "erp", .sender = "<erp@contoso.com>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("erp@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "erp",
	  .final_sender = "erp@contoso.com", .mode = "smtp-auth", .mailbox = "erp@contoso.com",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "pinned relay",
	  .client = "10.9.1.1", .sender = "<relay@relay.contoso.com>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("relay@relay.contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "relayhost",
	  .final_sender = "relay@relay.contoso.com", .mode = "relay", .connector = "onprem",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "pinned direct-send, internal",
	  .client = "10.1.2.3", .sender = "<mfp@fabrikam.com>",
	  .rcpts = R("<a@fabrikam.com>", "<b@contoso.com>"),
	  .from = F1("\"MFP\" <mfp@fabrikam.com>"), .verdict = VERDICT_ACCEPT, .reason = "ok",
	  .submitter = "printers", .final_sender = "mfp@fabrikam.com", .mode = "direct-send",
	  .new_from = "", .new_reply_to = "", .n_int = 2},
	{.name = "auto: a submitter's own mailbox wins over the connector",
	  .client = "203.0.113.9", .login = "app2", .sender = "<billing@contoso.com>",
	  .rcpts = R("<x@gmail.com>"), .from = F1("billing@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "app2",
	  .final_sender = "billing@contoso.com", .mode = "smtp-auth",
	  .mailbox = "erp@contoso.com", .new_from = "", .new_reply_to = "", .n_ext = 1},
	{.name = "auto: a submitter's own mailbox, internal recipients too",
	  .client = "203.0.113.9", .login = "app2", .sender = "<billing@contoso.com>",
	  .rcpts = R("<y@contoso.com>"), .from = F1("billing@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "app2",
	  .final_sender = "billing@contoso.com", .mode = "smtp-auth",
	  .mailbox = "erp@contoso.com", .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "recipients over milter { max_recipients } get 452 4.5.3",
	  .client = "203.0.113.9", .login = "erp", .sender = "<erp@contoso.com>",
	  .rcpts = R("<a@x.example>", "<b@x.example>", "<c@x.example>", "<d@x.example>", "<e@x.example>"),
	  .from = F1("erp@contoso.com"), .verdict = VERDICT_ACCEPT, .reason = "ok",
	  .submitter = "erp", .final_sender = "erp@contoso.com", .mode = "smtp-auth",
	  .mailbox = "erp@contoso.com", .new_from = "", .new_reply_to = "", .n_ext = 4,
	  .n_refused = 1},
	/* Step 4: Send As */
	{.name = "From allowed for the submitter kept",
	  .client = "192.168.10.5", .sender = "<scanner@contoso.com>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("Scanner <scanner@contoso.com>"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "scanner@contoso.com", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 1},
	{.name = "From in an accepted domain not allowed: 5.7.60",
	  .client = "192.168.10.5", .sender = "<scanner@contoso.com>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("ceo@contoso.com"),
	  .verdict = VERDICT_REJECT, .xcode = "5.7.60", .reason = "send-as-denied",
	  .submitter = "scanners", .final_sender = "scanner@contoso.com", .mode = "direct-send",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "an @ in the display name does not fool Send As",
	  .client = "192.168.10.5", .sender = "<scanner@contoso.com>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("\"scanner@contoso.com\" <ceo@contoso.com>"),
	  .verdict = VERDICT_REJECT, .xcode = "5.7.60", .reason = "send-as-denied",
	  .submitter = "scanners", .final_sender = "scanner@contoso.com", .mode = "direct-send",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "foreign From rewritten with display name and Reply-To",
	  .client = "192.168.10.5", .sender = "<scanner@printer.local>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("\"Scanner 3F\" <scanner@printer.local>"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "scanner@contoso.com", .rewritten = 1, .mode = "direct-send",
	  .from_action = FROM_REWRITE, .new_from = "Scanner 3F <scanner@contoso.com>",
	  .new_reply_to = "Scanner 3F <scanner@printer.local>", .n_int = 1},
	{.name = "foreign From rewritten for a submitter not allowed the default sender",
	  .client = "192.168.20.4", .sender = "<kiosk@printer.local>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("kiosk@printer.local"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "kiosk",
	  .final_sender = "scanner@contoso.com", .rewritten = 1, .mode = "direct-send",
	  .from_action = FROM_REWRITE, .new_from = "scanner@contoso.com",
	  .new_reply_to = "kiosk@printer.local", .n_int = 1},
	{.name = "the default sender as From, when the domain rewrites to it",
	  .client = "192.168.20.4", .sender = "<kiosk@contoso.com>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("scanner@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "kiosk",
	  .final_sender = "kiosk@contoso.com", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 1},
	{.name = "foreign From rewritten, existing Reply-To kept",
	  .client = "192.168.10.5", .sender = "<scanner@printer.local>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("scanner@printer.local"), .reply_to = 1,
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "scanner@contoso.com", .rewritten = 1, .mode = "direct-send",
	  .from_action = FROM_REWRITE, .new_from = "scanner@contoso.com", .new_reply_to = "",
	  .n_int = 1},
	{.name = "display name with @ quoted when rewritten",
	  .client = "192.168.10.5", .sender = "<scan@printer.local>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("\"ceo@contoso.com\" <scan@printer.local>"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "scanner@contoso.com", .rewritten = 1, .mode = "direct-send",
	  .from_action = FROM_REWRITE, .new_from = "\"ceo@contoso.com\" <scanner@contoso.com>",
	  .new_reply_to = "\"ceo@contoso.com\" <scan@printer.local>", .n_int = 1},
	{.name = "foreign From without rewriting: 5.7.60",
	  .client = "10.1.2.3", .sender = "<mfp@fabrikam.com>", .rcpts = R("<a@fabrikam.com>"),
	  .from = F1("mfp@printer.local"), .verdict = VERDICT_REJECT, .xcode = "5.7.60",
	  .reason = "send-as-denied", .submitter = "printers",
	  .final_sender = "mfp@fabrikam.com", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 1},
	{.name = "missing From added when rewriting",
	  .client = "192.168.10.5", .sender = "<scanner@contoso.com>",
	  .rcpts = R("<a@contoso.com>"), .verdict = VERDICT_ACCEPT, .reason = "ok",
	  .submitter = "scanners", .final_sender = "scanner@contoso.com", .mode = "direct-send",
	  .from_action = FROM_ADD, .new_from = "scanner@contoso.com", .new_reply_to = "",
	  .n_int = 1},
	{.name = "missing From refused without rewriting",
	  .client = "10.1.2.3", .sender = "<mfp@fabrikam.com>", .rcpts = R("<a@fabrikam.com>"),
	  .verdict = VERDICT_REJECT, .xcode = "5.6.0", .reason = "no-from",
	  .submitter = "printers", .final_sender = "mfp@fabrikam.com", .mode = "direct-send",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "two From headers refused",
	  .client = "192.168.10.5", .sender = "<scanner@contoso.com>",
	  .rcpts = R("<a@contoso.com>"),
	  .from = {"scanner@contoso.com", "noreply@contoso.com", NULL},
	  .verdict = VERDICT_REJECT, .xcode = "5.6.0", .reason = "several-from",
	  .submitter = "scanners", .final_sender = "scanner@contoso.com", .mode = "direct-send",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "From with two addresses refused",
	  .client = "192.168.10.5", .sender = "<scanner@contoso.com>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("scanner@contoso.com, noreply@contoso.com"),
	  .verdict = VERDICT_REJECT, .xcode = "5.6.0", .reason = "from-several-addresses",
	  .submitter = "scanners", .final_sender = "scanner@contoso.com", .mode = "direct-send",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "unparseable From refused without rewriting",
	  .client = "10.1.2.3", .sender = "<mfp@fabrikam.com>", .rcpts = R("<a@fabrikam.com>"),
	  .from = F1("Scanner"), .verdict = VERDICT_REJECT, .xcode = "5.6.0",
	  .reason = "from-syntax", .submitter = "printers", .final_sender = "mfp@fabrikam.com",
	  .mode = "direct-send", .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "unparseable From replaced when rewriting",
	  .client = "192.168.10.5", .sender = "<scanner@contoso.com>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("Scanner <broken"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "scanner@contoso.com", .mode = "direct-send",
	  .from_action = FROM_REWRITE, .new_from = "scanner@contoso.com", .new_reply_to = "",
	  .n_int = 1},
	{.name = "Sender header not allowed: 5.7.60",
	  .client = "192.168.10.5", .sender = "<scanner@contoso.com>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("scanner@contoso.com"),
	  .sender_hdr = "ceo@contoso.com", .verdict = VERDICT_REJECT, .xcode = "5.7.60",
	  .reason = "send-as-denied", .submitter = "scanners",
	  .final_sender = "scanner@contoso.com", .mode = "direct-send", .new_from = "",
	  .new_reply_to = "", .n_int = 1},
	{.name = "Sender header allowed",
	  .client = "192.168.10.5", .sender = "<scanner@contoso.com>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("noreply@contoso.com"),
	  .sender_hdr = "scanner@contoso.com", .verdict = VERDICT_ACCEPT, .reason = "ok",
	  .submitter = "scanners", .final_sender = "scanner@contoso.com", .mode = "direct-send",
	  .new_from = "", .new_reply_to = "", .n_int = 1},
	{.name = "Sender header removed when From is rewritten",
	  .client = "192.168.10.5", .sender = "<scanner@contoso.com>",
	  .rcpts = R("<a@contoso.com>"), .from = F1("x@printer.local"),
	  .sender_hdr = "y@printer.local", .verdict = VERDICT_ACCEPT, .reason = "ok",
	  .submitter = "scanners", .final_sender = "scanner@contoso.com", .mode = "direct-send",
	  .from_action = FROM_REWRITE, .new_from = "scanner@contoso.com",
	  .new_reply_to = "x@printer.local", .n_int = 1, .delete_sender = 1},
	/* Step 4 in smtp-auth mode: the mailbox must agree */
	{.name = "mailbox has Send As on the From",
	  .client = "192.168.10.5", .sender = "<noreply@contoso.com>",
	  .rcpts = R("<x@gmail.com>"), .from = F1("noreply@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "scanners",
	  .final_sender = "noreply@contoso.com", .mode = "smtp-auth",
	  .mailbox = "scanner@contoso.com", .new_from = "", .new_reply_to = "", .n_ext = 1},
	{.name = "submitter allows but the mailbox may not: 5.7.60",
	  .client = "203.0.113.9", .login = "erp", .sender = "<erp@contoso.com>",
	  .rcpts = R("<x@gmail.com>"), .from = F1("hr@contoso.com"), .verdict = VERDICT_REJECT,
	  .xcode = "5.7.60", .reason = "send-as-denied-mailbox", .submitter = "erp",
	  .final_sender = "erp@contoso.com", .mode = "smtp-auth", .mailbox = "erp@contoso.com",
	  .new_from = "", .new_reply_to = "", .n_ext = 1},
	{.name = "From that is itself a mailbox selects that mailbox",
	  .client = "203.0.113.9", .login = "erp", .sender = "<alerts@contoso.com>",
	  .rcpts = R("<x@gmail.com>"), .from = F1("alerts@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "erp",
	  .final_sender = "alerts@contoso.com", .mode = "smtp-auth",
	  .mailbox = "alerts@contoso.com", .new_from = "", .new_reply_to = "", .n_ext = 1},
	{.name = "rewritten sender follows the selected mailbox",
	  .client = "203.0.113.9", .login = "erp", .sender = "<daemon@erp.local>",
	  .rcpts = R("<x@gmail.com>"), .from = F1("alerts@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "erp",
	  .final_sender = "alerts@contoso.com", .rewritten = 1, .mode = "smtp-auth",
	  .mailbox = "alerts@contoso.com", .new_from = "", .new_reply_to = "", .n_ext = 1},
	{.name = "kept envelope sender the mailbox may not use: 5.7.60",
	  .client = "203.0.113.9", .login = "erp", .sender = "<payroll@contoso.com>",
	  .rcpts = R("<x@gmail.com>"), .from = F1("erp@contoso.com"), .verdict = VERDICT_REJECT,
	  .xcode = "5.7.60", .reason = "send-as-denied-mailbox", .submitter = "erp",
	  .final_sender = "payroll@contoso.com", .mode = "smtp-auth",
	  .mailbox = "erp@contoso.com", .new_from = "", .new_reply_to = "", .n_ext = 1},
	{.name = "null sender in smtp-auth mode",
	  .client = "203.0.113.9", .login = "erp", .sender = "<>", .rcpts = R("<x@gmail.com>"),
	  .from = F1("erp@contoso.com"), .verdict = VERDICT_ACCEPT, .reason = "ok",
	  .submitter = "erp", .final_sender = "", .mode = "smtp-auth",
	  .mailbox = "erp@contoso.com", .new_from = "", .new_reply_to = "", .n_ext = 1},
	{.name = "relay mode does not consult any mailbox",
	  .client = "10.9.1.1", .sender = "<relay@relay.contoso.com>",
	  .rcpts = R("<x@gmail.com>"), .from = F1("anyone@contoso.com"),
	  .verdict = VERDICT_ACCEPT, .reason = "ok", .submitter = "relayhost",
	  .final_sender = "relay@relay.contoso.com", .mode = "relay", .connector = "onprem",
	  .new_from = "", .new_reply_to = "", .n_ext = 1},
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
