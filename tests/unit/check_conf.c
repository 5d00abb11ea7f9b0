/*
 * check_conf.c - configuration loading: defaults, typing, references, line
 * numbers, the domain file, limits.  (Broken files, one per rule, are in
 * tests/conf/bad/ and run through m365ctl check-config.)
 */
#include "config.h"

#include <check.h>

#include "common.h"
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/conf_text.h"
#include "util/util.h"
#include "testconf.h"

static const char *minimal = "tenant \"contoso\" {\n"
                             "  accepted_domains = { \"contoso.com\" }\n"
                             "}\n"
                             "domain \"contoso.com\" {\n"
                             "  default_sender = \"scanner@contoso.com\"\n"
                             "}\n"
                             "submitter \"lan\" {\n"
                             "  clients = { \"192.168.1.0/24\" }\n"
                             "}\n";

START_TEST(test_defaults)
{
	struct diag d = {0};
	struct conf *c = tc_load(minimal, NULL, &d);

	tc_diag_print(&d);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(d.n_errors, 0);
	ck_assert_str_eq(c->user, "m365relay");
	ck_assert_str_eq(c->state_dir, "/var/lib/m365relay");
	ck_assert_str_eq(c->milter.socket, "unix:/var/spool/postfix/m365relay/milter.sock");
	ck_assert_str_eq(c->milter.pid_file, "/run/m365relay/m365-milter.pid");
	ck_assert_int_eq(c->milter.on_error, FAIL_TEMPFAIL);
	ck_assert_int_eq(c->n_tenants, 1);
	ck_assert_str_eq(c->tenants[0].smtp_host, "smtp.office365.com");
	ck_assert_int_eq(c->tenants[0].smtp_port, 587);
	ck_assert_int_eq(c->tenants[0].mx_port, 25);
	ck_assert_str_eq(c->tenants[0].authority, "https://login.microsoftonline.com");
	ck_assert_str_eq(c->tenants[0].scope, "https://outlook.office365.com/.default");
	ck_assert_str_eq(c->tenants[0].tenant_id, "contoso.com");
	ck_assert(c->tenants[0].direct_send);
	ck_assert_int_eq(c->n_domains, 1);
	ck_assert_int_eq(c->domains[0].mode, MODE_AUTO);
	ck_assert(!c->domains[0].rewrite_header_from);
	/* The only domain policy applies to a submitter that names none. */
	ck_assert_ptr_eq(c->submitters[0].domain, &c->domains[0]);
	conf_free(c);
	diag_free(&d);
	tc_cleanup();
}
END_TEST

static const char *full =
    "// a comment\n"
    "# another\n"
    "/* a block\n   comment */\n"
    "user = nobody\n"
    "state_dir = \"/tmp/state\"\n"
    "domain_file = \"domains.conf\"\n"
    "milter { socket = \"inet:8891@127.0.0.1\" on_error = reject timeout = 30 }\n"
    "tenant \"contoso\" {\n"
    "  accepted_domains = { \"Contoso.COM\", # a comment in a list\n"
    "                       \"*.contoso.com\" }\n"
    "  authority = https://login.microsoftonline.us  # unquoted, // inside a word\n"
    "  smtp_host = \"smtp.office365.us\"\n"
    "  direct_send = no\n"
    "}\n"
    "app \"a1\" { client_id = \"cid\" client_secret_file = \"app.secret\" }\n"
    "mailbox \"mb@contoso.com\" {\n"
    "  app = \"a1\"\n"
    "  send_as = { \"@contoso.com\" }\n"
    "  messages = \"5/2s\"\n"
    "  recipients = \"100/1h\"\n"
    "  sessions = 2\n"
    "  recipients_per_message = 50\n"
    "}\n"
    "mailbox \"basic@contoso.com\" { password_file = \"ops.pw\" }\n"
    "connector \"c1\" { type = certificate certificate_file = \"relay.crt\" key_file = "
    "\"relay.key\" }\n"
    "submitter \"erp\" { sasl_logins = { \"erp\" } domain = \"contoso.com\" mailbox = "
    "\"mb@contoso.com\" }\n";

static const char *full_domains = "domain \"contoso.com\" {\n"
                                  "  mode = smtp-auth\n"
                                  "  default_sender = \"noreply@contoso.com\"\n"
                                  "  mailbox = \"MB@contoso.com\"\n"
                                  "  connector = \"c1\"\n"
                                  "  rewrite_header_from = yes\n"
                                  "}\n";

START_TEST(test_full)
{
	struct diag d = {0};
	struct conf *c = tc_load(full, full_domains, &d);
	const struct mailbox_conf *mb;
	char path[300];

	tc_diag_print(&d);
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->user, "nobody");
	ck_assert_str_eq(c->milter.socket, "inet:8891@127.0.0.1");
	ck_assert_int_eq(c->milter.on_error, FAIL_REJECT);
	ck_assert_int_eq(c->milter.timeout, 30);
	ck_assert_int_eq(c->tenants[0].n_accepted, 2);
	ck_assert_str_eq(c->tenants[0].accepted[0], "contoso.com"); /* folded */
	ck_assert_str_eq(c->tenants[0].authority, "https://login.microsoftonline.us");
	ck_assert(!c->tenants[0].direct_send);
	/* Relative files start at the configuration's directory. */
	snprintf(path, sizeof(path), "%s/app.secret", tc_dir);
	ck_assert_str_eq(c->apps[0].secret_file, path);
	mb = &c->mailboxes[0];
	ck_assert_ptr_eq(mb->app, &c->apps[0]);
	ck_assert_int_eq(mb->auth, AUTH_OAUTH);
	ck_assert_int_eq(mb->messages.count, 5);
	ck_assert_int_eq(mb->messages.window, 2);
	ck_assert_int_eq(mb->recipients.count, 100);
	ck_assert_int_eq(mb->recipients.window, 3600);
	ck_assert_int_eq(mb->sessions, 2);
	ck_assert_int_eq(mb->recipients_per_message, 50);
	ck_assert_int_eq(c->mailboxes[1].auth, AUTH_BASIC);
	/* Basic authentication loads, with a warning about its retirement. */
	ck_assert(tc_diag_has(&d, "Basic authentication"));
	ck_assert_int_eq(d.n_errors, 0);
	ck_assert_int_eq(c->n_domains, 1);
	ck_assert_int_eq(c->domains[0].mode, MODE_SMTP_AUTH);
	ck_assert_ptr_eq(c->domains[0].mailbox, mb); /* case-insensitive reference */
	ck_assert_ptr_eq(c->domains[0].connector, &c->connectors[0]);
	ck_assert(c->domains[0].rewrite_header_from);
	ck_assert_ptr_eq(c->submitters[0].mailbox, mb);
	ck_assert_str_eq(c->domains[0].loc.file, tc_path("domains.conf"));
	ck_assert_int_eq(c->domains[0].loc.line, 1);
	conf_free(c);
	diag_free(&d);
	tc_cleanup();
}
END_TEST

/* The domain file is read with its own schema: a section conf_fast.c leaves
 * to libconfuse (single quotes) loads beside one it takes, and a kind the
 * file may not hold is refused, whichever reader it would suit (a review
 * found both broken in the first version of conf_fast.c: five false "no
 * such option" errors, and a mailbox silently dropped). */
START_TEST(test_domain_file_readers)
{
	struct diag d = {0};
	struct conf *c;

	c = tc_load(
	    full,
	    "domain \"contoso.com\" { mode = 'relay' connector = \"c1\" default_sender = "
	    "\"noreply@contoso.com\" }\n"
	    "domain \"sub.contoso.com\" {\n  mode = smtp-auth\n"
	    "  mailbox = \"mb@contoso.com\"\n  default_sender = \"noreply@contoso.com\"\n}\n",
	    &d);
	tc_diag_print(&d);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(d.n_errors, 0);
	ck_assert_int_eq(c->n_domains, 2);
	ck_assert_int_eq(c->domains[0].mode, MODE_RELAY);
	ck_assert_int_eq(c->domains[0].loc.line, 1);
	ck_assert_int_eq(c->domains[1].mode, MODE_SMTP_AUTH);
	ck_assert_int_eq(c->domains[1].loc.line, 2);
	conf_free(c);
	diag_free(&d);
	tc_cleanup();

	c = tc_load(full, "mailbox \"x@contoso.com\" { app = \"a1\" }\n", &d);
	tc_diag_print(&d);
	ck_assert_ptr_null(c);
	ck_assert(tc_diag_has(&d, "domains.conf:1: error: no such option 'mailbox'"));
	diag_free(&d);
	tc_cleanup();
}
END_TEST

/* refused - text is refused with n_errors errors (-1: any number) and each
 * of the diagnostics in want (NULL-terminated) among its messages */
static void
refused(const char *text, int n_errors, const char *const *want)
{
	struct diag d = {0};
	struct conf *c = tc_load(text, NULL, &d);
	size_t i;

	ck_assert_ptr_null(c);
	tc_diag_print(&d);
	if (n_errors >= 0)
		ck_assert_int_eq(d.n_errors, n_errors);
	for (i = 0; want[i] != NULL; i++)
		ck_assert_msg(tc_diag_has(&d, want[i]), "no diagnostic \"%s\"", want[i]);
	diag_free(&d);
	tc_cleanup();
}

/*
 * Regression: Debian's libconfuse 3.3 counts comment lines twice.  An error
 * after several comments must still name its own line.
 */
START_TEST(test_lines_after_comments)
{
	const char *text = "# 1\n"
	                   "# 2\n"
	                   "// 3\n"
	                   "/* 4\n"
	                   "   5 */\n"
	                   "tenant \"t\" {   # 6\n"
	                   "  # 7\n"
	                   "  accepted_domains = { \"a.example\", # 8\n"
	                   "     \"b.example\" }  # 9\n"
	                   "  bogus = 1       # 10\n"
	                   "}\n";
	/* the line of the unknown option */
	const char *want[] = {"main.conf:10: error: no such option 'bogus'", NULL};

	refused(text, -1, want);
}
END_TEST

START_TEST(test_section_lines)
{
	const char *text = "tenant \"t\" {\n"
	                   "  accepted_domains = { \"a.example\" }\n"
	                   "}\n"
	                   "\n"
	                   "mailbox \"m@a.example\" {\n"
	                   "  send_as = { \"x@a.example\" }\n"
	                   "}\n";
	/* A rule about the whole section names the line the section opens on. */
	const char *want[] = {"main.conf:5: error: mailbox \"m@a.example\": give app", NULL};

	refused(text, -1, want);
}
END_TEST

START_TEST(test_every_error_reported)
{
	const char *text = "tenant \"t\" {\n"
	                   "  accepted_domains = { \"a.example\" }\n"
	                   "  mx_port = 70000\n"
	                   "}\n"
	                   "domain \"a.example\" {\n"
	                   "  default_sender = \"x@elsewhere.example\"\n"
	                   "  mode = fastest\n"
	                   "}\n"
	                   "submitter \"s\" {\n"
	                   "  clients = { \"10.0.0.1/8\" }\n"
	                   "}\n";
	const char *want[] = {
	    "main.conf:3: error: mx_port: 70000 is out of range",
	    "main.conf:6: error: default_sender: x@elsewhere.example is outside",
	    "main.conf:7: error: mode: \"fastest\" is not one of auto | smtp-auth",
	    "main.conf:10: error: clients: \"10.0.0.1/8\" is not a valid CIDR",
	    NULL,
	};

	refused(text, 4, want);
}
END_TEST

START_TEST(test_missing_file)
{
	struct diag d = {0};
	struct conf *c = conf_load("/nonexistent/m365relay.conf", &d);

	ck_assert_ptr_null(c);
	ck_assert_int_eq(d.n_errors, 1);
	ck_assert_str_eq(d.lines[0], "/nonexistent/m365relay.conf: error: cannot open: No such "
	                             "file or directory");
	diag_free(&d);
}
END_TEST

START_TEST(test_limit_parse)
{
	struct limit l;
	const char *err;
	char buf[32];

	ck_assert_int_eq(limit_parse("30/60s", &l, &err), 0);
	ck_assert_int_eq(l.count, 30);
	ck_assert_int_eq(l.window, 60);
	ck_assert_str_eq(limit_format(&l, buf, sizeof(buf)), "30/60s");
	ck_assert_int_eq(limit_parse("10000/24h", &l, &err), 0);
	ck_assert_int_eq(l.window, 86400);
	ck_assert_str_eq(limit_format(&l, buf, sizeof(buf)), "10000/24h");
	ck_assert_int_eq(limit_parse("30/1m", &l, &err), 0);
	ck_assert_int_eq(l.window, 60);
	ck_assert_int_eq(limit_parse("1/2d", &l, &err), 0);
	ck_assert_int_eq(l.window, 172800);
	ck_assert_str_eq(limit_format(&l, buf, sizeof(buf)), "1/2d");
	ck_assert_int_lt(limit_parse("30/60", &l, &err), 0);
	ck_assert_int_lt(limit_parse("30 per minute", &l, &err), 0);
	ck_assert_int_lt(limit_parse("/60s", &l, &err), 0);
	ck_assert_int_lt(limit_parse("30/60sx", &l, &err), 0);
	ck_assert_int_lt(limit_parse("-1/60s", &l, &err), 0);
	ck_assert_int_lt(limit_parse("1/8d", &l, &err), 0);
}
END_TEST

START_TEST(test_conf_text)
{
	const char *in = "a = \"x # not a comment\" # comment\n"
	                 "b = https://host/path // comment\n"
	                 "s \"t\" { c = 'q // q' }\n"
	                 "/* x\n y */ m { }\n";
	struct conf_text t;

	ck_assert_int_eq(conf_text_prepare(in, strlen(in), NULL, &t), 0);
	ck_assert_ptr_nonnull(strstr(t.buf, "\"x # not a comment\""));
	ck_assert_ptr_null(strstr(t.buf, "# comment"));
	ck_assert_ptr_nonnull(strstr(t.buf, "https://host/path"));
	ck_assert_ptr_null(strstr(t.buf, "// comment"));
	ck_assert_ptr_nonnull(strstr(t.buf, "'q // q'"));
	ck_assert_int_eq(strlen(t.buf), strlen(in)); /* same length, same lines */
	ck_assert_int_eq(t.n_marks, 2);
	ck_assert_str_eq(t.marks[0].name, "s");
	ck_assert_str_eq(t.marks[0].title, "t");
	ck_assert_int_eq(t.marks[0].line, 3);
	ck_assert_str_eq(t.marks[1].name, "m");
	ck_assert(!t.marks[1].has_title);
	ck_assert_int_eq(t.marks[1].line, 5);
	ck_assert_ptr_nonnull(strstr(t.buf, "s \"t\" {"));
	conf_text_free(&t);
}
END_TEST

/* Titles of the kinds named go from the text libconfuse reads; the marks
 * keep them, with their lines, and a title split by an escaped newline
 * keeps the line count. */
START_TEST(test_conf_text_titles)
{
	static const char *const titled[] = {"s", NULL};
	const char *in = "s \"t\" { c = 1 }\n"
	                 "m \"u\" { }\n"
	                 "s 'a\\\nb' {\n}\n"
	                 "s { }\n";
	const struct sec_mark **top;
	struct conf_text t;

	ck_assert_int_eq(conf_text_prepare(in, strlen(in), titled, &t), 0);
	ck_assert_int_eq(strlen(t.buf), strlen(in));
	ck_assert_ptr_nonnull(strstr(t.buf, "s     { c = 1 }\n"));
	ck_assert_ptr_nonnull(strstr(t.buf, "m \"u\" { }")); /* not a titled kind */
	ck_assert_ptr_null(strchr(t.buf, '\''));
	ck_assert_int_eq(conf_text_top(&t, "s", &top), 3);
	ck_assert_str_eq(top[0]->title, "t");
	ck_assert_int_eq(top[0]->line, 1);
	ck_assert_str_eq(top[1]->title, "ab");
	ck_assert_int_eq(top[1]->line, 3);
	ck_assert(!top[2]->has_title);
	ck_assert_int_eq(top[2]->line, 6);
	free(top);
	conf_text_free(&t);
}
END_TEST

/* A file of 1,500 mailboxes and 600 submitters: every look-up through the
 * indexes, file order kept, and an error deep in the file reported at its
 * own line.  Every seventh mailbox is written in a form conf_fast.c leaves
 * to libconfuse (a single-quoted value): the two readers' sections are
 * paired back in file order, across libconfuse's pieces (conf.c). */
static char *
large_conf(int bad_line_mailbox, int *bad_line)
{
	size_t cap = 1 << 20, len = 0;
	char *t = malloc(cap);
	int i, line = 1;

#define ADD(...)                                                                                   \
	do {                                                                                       \
		int n_ = snprintf(t + len, cap - len, __VA_ARGS__);                                \
		ck_assert(n_ > 0 && (size_t)n_ < cap - len);                                       \
		for (int k_ = 0; k_ < n_; k_++)                                                    \
			line += t[len + k_] == '\n';                                               \
		len += (size_t)n_;                                                                 \
	} while (0)
	ck_assert_ptr_nonnull(t);
	ADD("tenant \"t\" {\n  accepted_domains = { \"big.example\", \"*.sub.example\" }\n}\n");
	ADD("tenant \"u\" {\n  accepted_domains = { \"a.sub.example\" }\n}\n");
	ADD("app \"a\" { tenant = \"t\" client_id = \"cid\" client_secret_file = \"app.secret\" "
	    "}\n");
	for (i = 0; i < 1500; i++) {
		if (i == bad_line_mailbox)
			*bad_line = line + 1;
		ADD("mailbox \"m%04d@big.example\" {\n  sessions = %d\n  app = %s\n}\n", i,
		    i == bad_line_mailbox ? 9 : 1 + i % 3, i % 7 == 3 ? "'a'" : "\"a\"");
		if (i == 700) /* a global between sections, in the middle of a piece */
			ADD("log_file = \"/tmp/x.log\"\n");
	}
	ADD("domain \"big.example\" { default_sender = \"m0000@big.example\" }\n");
	for (i = 0; i < 600; i++)
		ADD("submitter \"s%d\" {\n  clients = { \"10.%d.%d.0/24\" }\n"
		    "  sasl_logins = { \"Login%d\" }\n  mailbox = \"M%04d@BIG.example\"\n}\n",
		    i, i / 256, i % 256, i, i);
	ADD("submitter \"wide\" { clients = { \"10.0.0.0/8\", \"2001:db8::/32\" } }\n");
	ADD("submitter \"host\" { clients = { \"10.0.5.7\", \"2001:db8::7\" } }\n");
#undef ADD
	return t;
}

START_TEST(test_large)
{
	struct diag d = {0};
	struct conf *c;
	struct addr a;
	struct addr_err e;
	struct ipaddr ip;
	int bad_line = 0;
	char *text, want[64];
	const struct tenant *t;

	for (int bad = 1000; bad <= 1004; bad += 4) { /* read by conf_fast.c, by libconfuse */
		text = large_conf(bad, &bad_line);
		c = tc_load(text, NULL, &d);
		ck_assert_ptr_null(c);
		snprintf(want, sizeof(want), ":%d: error: sessions", bad_line);
		tc_diag_print(&d);
		ck_assert(tc_diag_has(&d, want));
		ck_assert_int_eq(d.n_errors, 1);
		diag_free(&d);
		free(text);
	}

	text = large_conf(-1, &bad_line);
	c = tc_load(text, NULL, &d);
	tc_diag_print(&d);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->n_mailboxes, 1500);
	ck_assert_int_eq(c->n_submitters, 602);
	ck_assert_str_eq(c->log_file, "/tmp/x.log");
	ck_assert_str_eq(c->mailboxes[1499].name, "m1499@big.example"); /* file order */
	ck_assert_str_eq(c->mailboxes[1004].name, "m1004@big.example"); /* libconfuse's */
	ck_assert_int_eq(c->mailboxes[1004].sessions, 1 + 1004 % 3);
	ck_assert_int_eq(c->mailboxes[1004].loc.line, c->mailboxes[1003].loc.line + 4);
	ck_assert_int_eq(c->mailboxes[1005].loc.line, c->mailboxes[1004].loc.line + 4);
	ck_assert_int_eq(c->mailboxes[1499].sessions, 1 + 1499 % 3);
	ck_assert_int_gt(c->mailboxes[1499].loc.line, c->mailboxes[1498].loc.line);
	ck_assert_ptr_eq(c->submitters[599].mailbox, &c->mailboxes[599]);
	ck_assert_int_eq(addr_parse_path("M1234@Big.Example", 17, false, &a, &e), 0);
	ck_assert_ptr_eq(conf_mailbox(c, &a), &c->mailboxes[1234]);
	ck_assert_int_eq(addr_parse_path("m1500@big.example", 17, false, &a, &e), 0);
	ck_assert_ptr_null(conf_mailbox(c, &a));
	/* Tenants: the name, then "*.parent" from the nearest parent. */
	t = conf_tenant_of_domain(c, "BIG.example");
	ck_assert_str_eq(t->name, "t");
	ck_assert_str_eq(conf_tenant_of_domain(c, "x.y.sub.example")->name, "t");
	ck_assert_str_eq(conf_tenant_of_domain(c, "a.sub.example")->name, "u");
	ck_assert_ptr_null(conf_tenant_of_domain(c, "sub.example"));
	ck_assert_ptr_null(conf_tenant_of_domain(c, ".sub.example"));
	ck_assert_ptr_null(conf_tenant_of_domain(c, "example"));
	/* Submitters: a login, then the most specific block. */
	ck_assert_str_eq(conf_submitter_login(c, "login42")->name, "s42");
	ck_assert_ptr_null(conf_submitter_login(c, "login600"));
	ip_parse("10.1.44.9", &ip);
	ck_assert_str_eq(conf_submitter_client(c, &ip)->name, "s300");
	ip_parse("10.0.5.7", &ip);
	ck_assert_str_eq(conf_submitter_client(c, &ip)->name, "host");
	ip_parse("::ffff:10.0.5.8", &ip);
	ck_assert_str_eq(conf_submitter_client(c, &ip)->name, "s5");
	ip_parse("10.200.0.1", &ip);
	ck_assert_str_eq(conf_submitter_client(c, &ip)->name, "wide");
	ip_parse("2001:db8::7", &ip);
	ck_assert_str_eq(conf_submitter_client(c, &ip)->name, "host");
	ip_parse("2001:db8:ffff::1", &ip);
	ck_assert_str_eq(conf_submitter_client(c, &ip)->name, "wide");
	ip_parse("192.0.2.1", &ip);
	ck_assert_ptr_null(conf_submitter_client(c, &ip));
	conf_free(c);
	diag_free(&d);
	free(text);
	tc_cleanup();
}
END_TEST

/* The arena behind the configuration and conf_fast.c's scratch: chunks
 * grow, every allocation is zeroed and aligned, and after arena_reset the
 * memory handed out again is zeroed too (conf_fast.c writes it). */
START_TEST(test_arena)
{
	struct arena *a = arena_new();
	unsigned char *p[2000];
	size_t i, j;

	ck_assert_ptr_nonnull(a);
	for (int round = 0; round < 3; round++) {
		for (i = 0; i < NELEM(p); i++) {
			p[i] = arena_alloc(a, 1 + i % 300);
			ck_assert_ptr_nonnull(p[i]);
			ck_assert_int_eq((uintptr_t)p[i] % _Alignof(max_align_t), 0);
			for (j = 0; j < 1 + i % 300; j++)
				ck_assert_int_eq(p[i][j], 0);
			memset(p[i], 0xa5, 1 + i % 300);
		}
		for (i = 1; i < NELEM(p); i++) /* nothing handed out twice */
			ck_assert(p[i - 1] + 1 + (i - 1) % 300 <= p[i] || p[i] < p[i - 1]);
		arena_reset(a);
	}
	arena_free(a);
}
END_TEST

int
main(void)
{
	static const struct check_suite suite = {"conf", "core", NULL, NULL, 0};
	const struct check_test tests[] = {CHECK_TEST(test_defaults),
	                                   CHECK_TEST(test_full),
	                                   CHECK_TEST(test_lines_after_comments),
	                                   CHECK_TEST(test_section_lines),
	                                   CHECK_TEST(test_every_error_reported),
	                                   CHECK_TEST(test_missing_file),
	                                   CHECK_TEST(test_limit_parse),
	                                   CHECK_TEST(test_conf_text),
	                                   CHECK_TEST(test_conf_text_titles),
	                                   CHECK_TEST(test_large),
	                                   CHECK_TEST(test_arena),
	                                   CHECK_TEST(test_domain_file_readers)};

	return check_main(&suite, tests, CHECK_ROWS(tests));
}
