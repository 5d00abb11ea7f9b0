/*
 * check_modes.c - how a message sent as a mailbox goes (lib/policy/policy.h,
 * step 5): smtp-auth, graph (a pinned domain, or a mailbox with
 * smtp_auth = no) and hve (High Volume Email accounts, internal recipients
 * only, refused at RCPT otherwise).  One configuration, one case a row.
 */
#include "config.h"

#include <check.h>
#include <string.h>

#include "common.h"
#include "policy/policy.h"
#include "testconf.h"

/* clang-format off */
static const char *modes_conf =
	"tenant \"contoso\" {\n"
	"  accepted_domains = { \"contoso.com\", \"*.contoso.com\" }\n"
	"  mx_endpoint = \"contoso-com.mail.protection.outlook.com\"\n"
	"}\n"
	"app \"a\" { tenant = \"contoso\" client_id = \"cid\" client_secret_file = \"app.secret\" }\n"
	"mailbox \"scanner@contoso.com\" { app = \"a\" send_as = { \"noreply@contoso.com\" } }\n"
	"mailbox \"nosmtp@contoso.com\" { app = \"a\" smtp_auth = no send_as = { \"@g2.contoso.com\" } }\n"
	"mailbox \"news@contoso.com\" { app = \"a\" hve = yes }\n"
	"mailbox \"basic@contoso.com\" { password_file = \"ops.pw\" }\n"
	"connector \"onprem\" { tenant = \"contoso\" type = ip }\n"
	/* auto, the domain's mailbox has no SMTP AUTH: Graph */
	"domain \"g2.contoso.com\" { default_sender = \"app@g2.contoso.com\" mailbox = \"nosmtp@contoso.com\" }\n"
	/* pinned graph with an ordinary mailbox */
	"domain \"g.contoso.com\" { mode = graph default_sender = \"scanner@contoso.com\" mailbox = \"scanner@contoso.com\" }\n"
	/* pinned hve */
	"domain \"h.contoso.com\" { mode = hve default_sender = \"news@contoso.com\" mailbox = \"news@contoso.com\" }\n"
	/* auto, the HVE account is the domain's, a connector for the rest */
	"domain \"hc.contoso.com\" { default_sender = \"news@contoso.com\" mailbox = \"news@contoso.com\" connector = \"onprem\" }\n"
	"domain \"contoso.com\" { default_sender = \"scanner@contoso.com\" mailbox = \"scanner@contoso.com\" }\n"
	"submitter \"nosmtp\" { sasl_logins = { \"g2\" } domain = \"g2.contoso.com\" send_as = { \"@g2.contoso.com\" } }\n"
	"submitter \"graph\" { sasl_logins = { \"g\" } domain = \"g.contoso.com\" send_as = { \"scanner@contoso.com\", \"news@contoso.com\" } }\n"
	"submitter \"graph-basic\" { sasl_logins = { \"gb\" } domain = \"g.contoso.com\" mailbox = \"basic@contoso.com\"\n"
	"  send_as = { \"basic@contoso.com\" } }\n"
	"submitter \"news\" { sasl_logins = { \"news\" } domain = \"contoso.com\" mailbox = \"news@contoso.com\"\n"
	"  send_as = { \"news@contoso.com\" } }\n"
	"submitter \"hve\" { sasl_logins = { \"h\" } domain = \"h.contoso.com\" send_as = { \"news@contoso.com\" } }\n"
	"submitter \"hc\" { sasl_logins = { \"hc\" } domain = \"hc.contoso.com\" send_as = { \"news@contoso.com\" } }\n"
	"submitter \"lan\" { sasl_logins = { \"lan\" } domain = \"contoso.com\"\n"
	"  send_as = { \"scanner@contoso.com\", \"news@contoso.com\" } }\n";
/* clang-format on */

#define R(...)                                                                                     \
	{                                                                                          \
		__VA_ARGS__, NULL                                                                  \
	}

struct mcase {
	const char *name;
	const char *login, *from;
	const char *rcpts[4];
	/* expected */
	enum verdict verdict;
	const char *reason, *mode, *mailbox, *connector;
	int n_int, n_ext, n_refused;
	const char *refused_xcode, *refused_reason; /* the first refused RCPT's */
};

static const struct mcase cases[] = {
    {.name = "auto: a mailbox without SMTP AUTH sends through Graph",
     .login = "g2",
     .from = "app@g2.contoso.com",
     .rcpts = R("<x@example.net>"),
     .verdict = VERDICT_ACCEPT,
     .reason = "ok",
     .mode = "graph",
     .mailbox = "nosmtp@contoso.com",
     .n_ext = 1},
    {.name = "pinned graph with an ordinary mailbox",
     .login = "g",
     .from = "scanner@contoso.com",
     .rcpts = R("<x@example.net>", "<a@contoso.com>"),
     .verdict = VERDICT_ACCEPT,
     .reason = "ok",
     .mode = "graph",
     .mailbox = "scanner@contoso.com",
     .n_int = 1,
     .n_ext = 1},
    {.name = "pinned graph: an external recipient never goes as the HVE account of the From",
     .login = "g",
     .from = "news@contoso.com",
     .rcpts = R("<x@example.net>"),
     .verdict = VERDICT_REJECT,
     .reason = "send-as-denied-mailbox",
     .mode = "graph",
     .mailbox = "scanner@contoso.com",
     .n_ext = 1},
    {.name = "pinned graph, internal only: the From's HVE account sends as itself",
     .login = "g",
     .from = "news@contoso.com",
     .rcpts = R("<a@contoso.com>"),
     .verdict = VERDICT_ACCEPT,
     .reason = "ok",
     .mode = "hve",
     .mailbox = "news@contoso.com",
     .n_int = 1},
    {.name = "pinned graph with a Basic mailbox: waits for the configuration",
     .login = "gb",
     .from = "basic@contoso.com",
     .rcpts = R("<a@contoso.com>"),
     .verdict = VERDICT_TEMPFAIL,
     .reason = "config-incomplete",
     .mode = "graph",
     .mailbox = "basic@contoso.com",
     .n_int = 1},
    {.name = "a submitter given an HVE account: hve for internal recipients",
     .login = "news",
     .from = "news@contoso.com",
     .rcpts = R("<a@contoso.com>", "<b@sub.contoso.com>"),
     .verdict = VERDICT_ACCEPT,
     .reason = "ok",
     .mode = "hve",
     .mailbox = "news@contoso.com",
     .n_int = 2},
    {.name = "a submitter given an HVE account: external recipients refused at RCPT",
     .login = "news",
     .from = "news@contoso.com",
     .rcpts = R("<a@contoso.com>", "<x@example.net>"),
     .verdict = VERDICT_ACCEPT,
     .reason = "ok",
     .mode = "hve",
     .mailbox = "news@contoso.com",
     .n_int = 1,
     .n_refused = 1,
     .refused_xcode = "5.7.54",
     .refused_reason = "hve-external"},
    {.name = "pinned hve: external refused, internal accepted",
     .login = "h",
     .from = "news@contoso.com",
     .rcpts = R("<x@example.net>", "<a@contoso.com>"),
     .verdict = VERDICT_ACCEPT,
     .reason = "ok",
     .mode = "hve",
     .mailbox = "news@contoso.com",
     .n_int = 1,
     .n_refused = 1,
     .refused_xcode = "5.7.54",
     .refused_reason = "hve-external"},
    {.name = "auto, the domain's HVE account and a connector: external goes by relay",
     .login = "hc",
     .from = "news@contoso.com",
     .rcpts = R("<x@example.net>"),
     .verdict = VERDICT_ACCEPT,
     .reason = "ok",
     .mode = "relay",
     .connector = "onprem",
     .n_ext = 1},
    {.name = "auto, internal only, no mailbox of its own: Direct Send, whatever the From",
     .login = "lan",
     .from = "news@contoso.com",
     .rcpts = R("<a@contoso.com>"),
     .verdict = VERDICT_ACCEPT,
     .reason = "ok",
     .mode = "direct-send",
     .n_int = 1},
    {.name = "ordinary mailboxes still use SMTP AUTH",
     .login = "lan",
     .from = "scanner@contoso.com",
     .rcpts = R("<x@example.net>"),
     .verdict = VERDICT_ACCEPT,
     .reason = "ok",
     .mode = "smtp-auth",
     .mailbox = "scanner@contoso.com",
     .n_ext = 1},
};

static struct conf *mconf;

static void
setup(void)
{
	struct diag d = {0};

	mconf = tc_load(modes_conf, NULL, &d);
	if (mconf == NULL)
		tc_diag_print(&d);
	diag_free(&d);
	ck_assert_ptr_nonnull(mconf);
}

static void
teardown(void)
{
	conf_free(mconf);
	tc_cleanup();
}

START_TEST(test_mode)
{
	const struct mcase *c = &cases[_i];
	const char *from[] = {c->from, NULL};
	struct submission s;
	struct policy_msg m;
	struct rcpt_verdict rv[4];
	size_t i;

	memset(&s, 0, sizeof(s));
	s.id.sasl_login = c->login;
	s.env_sender = "<>";
	s.rcpts = c->rcpts;
	while (c->rcpts[s.n_rcpts] != NULL)
		s.n_rcpts++;
	s.headers.from = from;
	s.headers.n_from = 1;
	policy_evaluate(mconf, NULL, &s, &m, rv, 4);
	ck_assert_msg(m.reply.verdict == c->verdict, "%s: verdict %s (%s %s %s)", c->name,
	              verdict_name(m.reply.verdict), m.reply.code, m.reply.xcode, m.reply.text);
	ck_assert_str_eq(reason_name(m.reply.reason), c->reason);
	ck_assert_int_eq(m.n_internal, c->n_int);
	ck_assert_int_eq(m.n_external, c->n_ext);
	ck_assert_int_eq(m.n_refused, c->n_refused);
	for (i = 0; i < s.n_rcpts && c->refused_xcode != NULL; i++)
		if (rv[i].reply.verdict == VERDICT_REJECT) {
			ck_assert_str_eq(rv[i].reply.code, "550");
			ck_assert_str_eq(rv[i].reply.xcode, c->refused_xcode);
			ck_assert_str_eq(reason_name(rv[i].reply.reason), c->refused_reason);
			ck_assert_ptr_nonnull(strstr(rv[i].reply.text, "High Volume Email"));
			break;
		}
	ck_assert_msg(c->refused_xcode == NULL || i < s.n_rcpts, "%s: no RCPT refused", c->name);
	ck_assert_msg(m.mode_chosen, "%s: no mode", c->name);
	ck_assert_msg(strcmp(mode_name(m.mode), c->mode) == 0, "%s: mode %s, expected %s", c->name,
	              mode_name(m.mode), c->mode);
	if (c->mailbox != NULL) {
		ck_assert_ptr_nonnull(m.mailbox);
		ck_assert_str_eq(m.mailbox->name, c->mailbox);
	} else {
		ck_assert_ptr_null(m.mailbox);
	}
	if (c->connector != NULL) {
		ck_assert_ptr_nonnull(m.connector);
		ck_assert_str_eq(m.connector->name, c->connector);
	}
}
END_TEST

/* The tenant's Graph endpoint follows its cloud; scope and limits follow
 * from the mailbox's kind. */
START_TEST(test_defaults)
{
	const struct tenant *t = &mconf->tenants[0];
	const struct mailbox_conf *news = NULL, *scanner = NULL;
	size_t i;

	ck_assert_str_eq(t->graph_endpoint, "https://graph.microsoft.com");
	ck_assert_str_eq(t->graph_scope, "https://graph.microsoft.com/.default");
	ck_assert_str_eq(t->hve_host, "smtp-hve.office365.com");
	ck_assert_uint_eq(t->hve_port, 587);
	for (i = 0; i < mconf->n_mailboxes; i++) {
		if (strcmp(mconf->mailboxes[i].name, "news@contoso.com") == 0)
			news = &mconf->mailboxes[i];
		if (strcmp(mconf->mailboxes[i].name, "scanner@contoso.com") == 0)
			scanner = &mconf->mailboxes[i];
	}
	ck_assert_ptr_nonnull(news);
	ck_assert_ptr_nonnull(scanner);
	ck_assert(news->hve && !scanner->hve && scanner->smtp_auth);
	ck_assert_uint_eq(news->recipients_per_message, 50);
	ck_assert_uint_eq(news->recipients.count, 100000);
	ck_assert_uint_eq(scanner->recipients.count, 10000);
	ck_assert_uint_eq(scanner->messages.count, 30);
}
END_TEST

struct cloud_case {
	const char *authority, *graph;
};

static const struct cloud_case clouds[] = {
    {"https://login.microsoftonline.us", "https://graph.microsoft.us"},
    {"https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"},
    {"https://login.partner.microsoftonline.cn", "https://microsoftgraph.chinacloudapi.cn"},
    {"https://login.microsoftonline.com/", "https://graph.microsoft.com"},
};

START_TEST(test_cloud)
{
	char text[512];
	struct diag d = {0};
	struct conf *c;

	snprintf(text, sizeof(text),
	         "tenant \"t\" { accepted_domains = { \"contoso.com\" } authority = \"%s\" }\n"
	         "app \"a\" { tenant = \"t\" client_id = \"cid\" client_secret_file = "
	         "\"app.secret\" }\n"
	         "mailbox \"m@contoso.com\" { app = \"a\" }\n"
	         "domain \"contoso.com\" { mode = graph default_sender = \"m@contoso.com\" "
	         "mailbox = \"m@contoso.com\" }\n"
	         "submitter \"s\" { sasl_logins = { \"s\" } domain = \"contoso.com\" }\n",
	         clouds[_i].authority);
	c = tc_load(text, NULL, &d);
	if (c == NULL)
		tc_diag_print(&d);
	diag_free(&d);
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->tenants[0].graph_endpoint, clouds[_i].graph);
	conf_free(c);
}
END_TEST

int
main(void)
{
	static const struct check_suite suite = {"modes", "modes", setup, teardown, 0};
	const struct check_test tests[] = {CHECK_LOOP(test_mode, cases), CHECK_TEST(test_defaults),
	                                   CHECK_LOOP(test_cloud, clouds)};

	return check_main(&suite, tests, CHECK_ROWS(tests));
}
