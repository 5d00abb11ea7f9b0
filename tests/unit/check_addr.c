/*
 * check_addr.c - address parsing, formatting and patterns; CIDR blocks.
 */
#include "config.h"

#include <check.h>

#include "common.h"
#include <stdlib.h>
#include <string.h>

#include "addr/addr.h"
#include "addr/cidr.h"

/* Envelope paths --------------------------------------------------------------- */

struct path_case {
	const char *in;
	int ok;              /* 1 parses, 0 refused */
	const char *local;   /* expected canonical local part (ok only) */
	const char *domain;  /* expected domain (ok only) */
	const char *errpart; /* substring of the error (refused only) */
};

static const struct path_case path_cases[] = {
    {"<user@example.com>", 1, "user", "example.com", NULL},
    {"user@example.com", 1, "user", "example.com", NULL},
    {"<First.Last+tag@Example.COM>", 1, "First.Last+tag", "Example.COM", NULL},
    {"<@relay.example,@b.example:user@example.com>", 1, "user", "example.com", NULL},
    {"<\"john doe\"@example.com>", 1, "\"john doe\"", "example.com", NULL},
    {"<\"john\"@example.com>", 1, "john", "example.com", NULL}, /* needless quotes go */
    {"<\"a\\\"b\"@example.com>", 1, "\"a\\\"b\"", "example.com", NULL},
    {"<jos\xc3\xa9@ex\xc3\xa4mple.com>", 1, "jos\xc3\xa9", "ex\xc3\xa4mple.com", NULL},
    {"<user@[192.0.2.1]>", 1, "user", "[192.0.2.1]", NULL},
    {"<user@[IPv6:2001:db8::1]>", 1, "user", "[IPv6:2001:db8::1]", NULL},
    {"<scanner@printer_3.local>", 1, "scanner", "printer_3.local", NULL},
    {"<scanner@printer.local>", 1, "scanner", "printer.local", NULL},
    {"<>", 0, NULL, NULL, "empty address"}, /* allow_null = false here */
    {"", 0, NULL, NULL, "empty address"},
    {"<user@example.com", 0, NULL, NULL, "missing closing '>'"},
    {"<user>", 0, NULL, NULL, "missing '@domain'"},
    {"<a..b@example.com>", 0, NULL, NULL, "address"},
    {"<.a@example.com>", 0, NULL, NULL, "address"},
    {"<a.@example.com>", 0, NULL, NULL, "address"},
    {"<a@-example.com>", 0, NULL, NULL, "starts with '-'"},
    {"<a@example-.com>", 0, NULL, NULL, "ends with '-'"},
    {"<a@example.com.>", 0, NULL, NULL, "ends with '.'"},
    {"<a@example..com>", 0, NULL, NULL, "empty label"},
    {"<a@[999.1.1.1]>", 0, NULL, NULL, "address literal"},
    {"<a@[IPv6:zz]>", 0, NULL, NULL, "bad IPv6"},
    {"<a@example.com> x", 0, NULL, NULL, "missing closing '>'"},
    {"a@example.com x", 0, NULL, NULL, "after address"},
    {"<a b@example.com>", 0, NULL, NULL, "local part"},
    {"<\xff@example.com>", 0, NULL, NULL, "invalid UTF-8"},
    {"<a@ex\xc0\xafmple.com>", 0, NULL, NULL, "invalid UTF-8"}, /* overlong '/' */
    {"<\"unterminated@example.com>", 0, NULL, NULL, "quoted string"},
    {"<a@b@example.com>", 0, NULL, NULL, "after address"},
};

START_TEST(test_path)
{
	const struct path_case *c = &path_cases[_i];
	struct addr a;
	struct addr_err e = {0};
	int rc = addr_parse_path(c->in, strlen(c->in), false, &a, &e);

	if (c->ok) {
		ck_assert_msg(rc == 0, "%s: refused: %s", c->in, e.msg);
		ck_assert_str_eq(a.local, c->local);
		ck_assert_str_eq(a.domain, c->domain);
	} else {
		ck_assert_msg(rc < 0, "%s: accepted", c->in);
		ck_assert_msg(strstr(e.msg, c->errpart) != NULL, "%s: error \"%s\" lacks \"%s\"",
		              c->in, e.msg, c->errpart);
	}
}
END_TEST

START_TEST(test_path_null)
{
	struct addr a;
	struct addr_err e;

	ck_assert_int_eq(addr_parse_path("<>", 2, true, &a, &e), 0);
	ck_assert(addr_is_null(&a));
	ck_assert_int_eq(addr_parse_path("", 0, true, &a, &e), 0);
	ck_assert(addr_is_null(&a));
	ck_assert_int_lt(addr_parse_path("<>", 2, false, &a, &e), 0);
}
END_TEST

START_TEST(test_path_lengths)
{
	char buf[600];
	struct addr a;
	struct addr_err e;

	/* 64-octet local part: fine; 65: refused. */
	memset(buf, 'a', 64);
	strcpy(buf + 64, "@example.com");
	ck_assert_int_eq(addr_parse_path(buf, strlen(buf), false, &a, &e), 0);
	memset(buf, 'a', 65);
	strcpy(buf + 65, "@example.com");
	ck_assert_int_lt(addr_parse_path(buf, strlen(buf), false, &a, &e), 0);
	ck_assert_str_eq(e.msg, "local part longer than 64 octets");
	/* A 64-octet label is refused. */
	strcpy(buf, "a@");
	memset(buf + 2, 'b', 64);
	strcpy(buf + 66, ".com");
	ck_assert_int_lt(addr_parse_path(buf, strlen(buf), false, &a, &e), 0);
	ck_assert_str_eq(e.msg, "domain: label longer than 63 octets");
	/* A whole address over 254 octets is refused. */
	strcpy(buf, "a@");
	for (int i = 0; i < 5; i++)
		strcat(buf, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.");
	strcat(buf, "com");
	ck_assert_int_lt(addr_parse_path(buf, strlen(buf), false, &a, &e), 0);
	/* Bytes after a NUL are not silently ignored. */
	ck_assert_int_lt(addr_parse_path("a@b.com\0x", 9, false, &a, &e), 0);
}
END_TEST

/* Header address lists -------------------------------------------------------- */

struct list_case {
	const char *in;
	int n;                /* expected count; -1: refused */
	const char *addr0;    /* first address, canonical */
	const char *display0; /* first display name */
	const char *addr1;    /* second address, if n > 1 */
};

static const struct list_case list_cases[] = {
    {"user@example.com", 1, "user@example.com", "", NULL},
    {"John Doe <john@example.com>", 1, "john@example.com", "John Doe", NULL},
    {"\"ceo@contoso.com\" <attacker@example.net>", 1, "attacker@example.net", "ceo@contoso.com",
     NULL},
    {"ceo@contoso.com <attacker@example.net>", -1, NULL, NULL, NULL},
    {"john@example.com (John Doe)", 1, "john@example.com", "John Doe", NULL},
    {"(comment) John (x) <john@example.com> (trailing)", 1, "john@example.com", "John", NULL},
    {"=?UTF-8?Q?Jos=C3=A9?= <j@example.com>", 1, "j@example.com", "=?UTF-8?Q?Jos=C3=A9?=", NULL},
    {"=?utf-8?q?ceo@contoso.com?= <j@example.com>", 1, "j@example.com",
     "=?utf-8?q?ceo@contoso.com?=", NULL},
    {"J\xc3\xb6hn <j@example.com>", 1, "j@example.com", "J\xc3\xb6hn", NULL},
    {"\"J. \\\"Q\\\" Doe\" <j@example.com>", 1, "j@example.com", "J. \"Q\" Doe", NULL},
    {"John Q. Public <jqp@example.com>", 1, "jqp@example.com", "John Q. Public", NULL},
    {"John\r\n Doe <j@example.com>", 1, "j@example.com", "John Doe", NULL},
    {"a@x.example, b@y.example", 2, "a@x.example", "", "b@y.example"},
    {"a@x.example,, b@y.example,", 2, "a@x.example", "", "b@y.example"},
    {"Undisclosed recipients:;", 0, NULL, NULL, NULL},
    {"Team: a@x.example, B <b@x.example>;", 2, "a@x.example", "", "b@x.example"},
    {"<@route.example:j@example.com>", 1, "j@example.com", "", NULL},
    {"(a (nested) comment) j@example.com", 1, "j@example.com", "", NULL},
    {"john . doe @ example . com", 1, "john.doe@example.com", "", NULL},
    {"\"john doe\"@example.com", 1, "\"john doe\"@example.com", "", NULL},
    {"", 0, NULL, NULL, NULL},
    {"John <j@example.com", -1, NULL, NULL, NULL},
    {"John", -1, NULL, NULL, NULL},
    {"<>", -1, NULL, NULL, NULL},
    {"John <>", -1, NULL, NULL, NULL},
    {"J\xff <a@b.example>", -1, NULL, NULL, NULL},
    {"a@x.example b@y.example", -1, NULL, NULL, NULL},
    {"(unclosed j@example.com", -1, NULL, NULL, NULL},
    {"((((((((((((((((((x)))))))))))))))))) j@example.com", -1, NULL, NULL, NULL},
    {"Team: a@x.example", -1, NULL, NULL, NULL},
    {"\"unterminated <j@example.com>", -1, NULL, NULL, NULL},
    {"j@exa mple.com", -1, NULL, NULL, NULL},
    {"J\x01hn <j@example.com>", -1, NULL, NULL, NULL},
    /* fuzzer find: a quoted-pair TAB made a local part SMTP cannot carry */
    {"\"a\\\tb\"@example.com", -1, NULL, NULL, NULL},
};

START_TEST(test_list)
{
	const struct list_case *c = &list_cases[_i];
	struct mailbox mb[4];
	struct addr_err e = {0};
	char buf[ADDR_TEXT_MAX + 1];
	size_t n = 99;
	int rc = addr_parse_list(c->in, strlen(c->in), mb, 4, &n, &e);

	if (c->n < 0) {
		ck_assert_msg(rc < 0, "\"%s\": accepted", c->in);
		ck_assert_msg(e.msg[0] != '\0', "\"%s\": no message", c->in);
		return;
	}
	ck_assert_msg(rc == 0, "\"%s\": refused at %zu: %s", c->in, e.off, e.msg);
	ck_assert_int_eq(n, c->n);
	if (n >= 1) {
		addr_format(&mb[0].addr, buf, sizeof(buf));
		ck_assert_str_eq(buf, c->addr0);
		ck_assert_str_eq(mb[0].display, c->display0);
	}
	if (n >= 2) {
		addr_format(&mb[1].addr, buf, sizeof(buf));
		ck_assert_str_eq(buf, c->addr1);
	}
}
END_TEST

START_TEST(test_list_limits)
{
	struct mailbox mb[2];
	struct addr_err e;
	char big[ADDR_HEADER_MAX + 10];
	size_t n;

	{
		const char *three = "a@x.example, b@x.example, c@x.example";
		ck_assert_int_lt(addr_parse_list(three, strlen(three), mb, 2, &n, &e), 0);
	}
	ck_assert_str_eq(e.msg, "too many addresses");
	ck_assert_int_eq(e.code, ADDR_ETOOMANY); /* what callers decide on */
	memset(big, ' ', sizeof(big));
	ck_assert_int_lt(addr_parse_list(big, sizeof(big), mb, 2, &n, &e), 0);
	ck_assert_str_eq(e.msg, "header value too long");
	ck_assert_int_eq(e.code, ADDR_EMALFORMED);
	ck_assert_int_lt(addr_parse_list("a@x.example\0b", 13, mb, 2, &n, &e), 0);
	ck_assert_str_eq(e.msg, "NUL byte");
	/* A display name over the bound is refused, not truncated. */
	memset(big, 'x', ADDR_DISPLAY_MAX + 1);
	strcpy(big + ADDR_DISPLAY_MAX + 1, " <a@x.example>");
	ck_assert_int_lt(addr_parse_list(big, strlen(big), mb, 2, &n, &e), 0);
}
END_TEST

/* Formatting ------------------------------------------------------------------- */

START_TEST(test_format_mailbox)
{
	struct addr a;
	struct addr_err e;
	char buf[1200];

	ck_assert_int_eq(addr_parse_path("scanner@contoso.com", 19, false, &a, &e), 0);
	addr_format_mailbox("Scanner 3F", &a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "Scanner 3F <scanner@contoso.com>");
	addr_format_mailbox("", &a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "scanner@contoso.com");
	/* An @ in a display name is quoted so nobody parses it as the address. */
	addr_format_mailbox("ceo@contoso.com", &a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "\"ceo@contoso.com\" <scanner@contoso.com>");
	addr_format_mailbox("a \"b\" \\c", &a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "\"a \\\"b\\\" \\\\c\" <scanner@contoso.com>");
	addr_format_mailbox("evil\r\nBcc: x@y", &a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "\"evil  Bcc: x@y\" <scanner@contoso.com>");
	addr_format_mailbox("=?UTF-8?Q?Jos=C3=A9?=", &a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "=?UTF-8?Q?Jos=C3=A9?= <scanner@contoso.com>");
	ck_assert_int_lt(addr_format_mailbox("x", &a, buf, 10), 0);
}
END_TEST

START_TEST(test_format_roundtrip)
{
	/* What we write parses back to the same display name and address. */
	static const char *names[] = {"ceo@contoso.com", "a \"b\" \\c", "O'Brien, Pat",
	                              "J\xc3\xb6hn (x)", "<x@y>"};
	struct addr a;
	struct mailbox mb[2];
	struct addr_err e;
	char buf[1200];
	size_t i, n;

	ck_assert_int_eq(addr_parse_path("s@contoso.com", 13, false, &a, &e), 0);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		ck_assert_int_gt(addr_format_mailbox(names[i], &a, buf, sizeof(buf)), 0);
		ck_assert_msg(addr_parse_list(buf, strlen(buf), mb, 2, &n, &e) == 0, "%s: %s", buf,
		              e.msg);
		ck_assert_int_eq(n, 1);
		ck_assert_str_eq(mb[0].display, names[i]);
		ck_assert(addr_equal(&mb[0].addr, &a));
	}
}
END_TEST

/* Patterns ------------------------------------------------------------------------ */

START_TEST(test_domain_match)
{
	ck_assert(domain_match("contoso.com", "contoso.com"));
	ck_assert(domain_match("contoso.com", "CONTOSO.Com"));
	ck_assert(!domain_match("contoso.com", "sub.contoso.com"));
	ck_assert(!domain_match("contoso.com", "contoso.com.evil.net"));
	ck_assert(!domain_match("contoso.com", "evilcontoso.com"));
	ck_assert(domain_match("*.contoso.com", "sub.contoso.com"));
	ck_assert(domain_match("*.contoso.com", "a.b.CONTOSO.COM"));
	ck_assert(!domain_match("*.contoso.com", "contoso.com"));
	ck_assert(!domain_match("*.contoso.com", "evilcontoso.com"));
	ck_assert(!domain_match("*.contoso.com", ".contoso.com"));
}
END_TEST

START_TEST(test_addr_match)
{
	struct addr a, null;
	struct addr_err e;

	addr_parse_path("Scanner@Contoso.com", 19, false, &a, &e);
	addr_parse_path("<>", 2, true, &null, &e);
	ck_assert(addr_match("*", &a));
	ck_assert(!addr_match("*", &null));
	ck_assert(addr_match("@contoso.com", &a));
	ck_assert(addr_match("scanner@contoso.com", &a));
	ck_assert(!addr_match("scanner2@contoso.com", &a));
	ck_assert(!addr_match("scanne@contoso.com", &a));
	ck_assert(!addr_match("@*.contoso.com", &a));
	addr_parse_path("x@mfp.contoso.com", 17, false, &a, &e);
	ck_assert(addr_match("@*.contoso.com", &a));
	ck_assert(!addr_match("@contoso.com", &a));
	ck_assert(!addr_match("nonsense", &a));
}
END_TEST

START_TEST(test_pattern_check)
{
	struct addr_err e;

	ck_assert_int_eq(addr_pattern_check("*", &e), 0);
	ck_assert_int_eq(addr_pattern_check("@contoso.com", &e), 0);
	ck_assert_int_eq(addr_pattern_check("@*.contoso.com", &e), 0);
	ck_assert_int_eq(addr_pattern_check("a.b@contoso.com", &e), 0);
	ck_assert_int_lt(addr_pattern_check("contoso.com", &e), 0);
	ck_assert_int_lt(addr_pattern_check("a@*contoso.com", &e), 0);
	ck_assert_int_lt(addr_pattern_check("a b@contoso.com", &e), 0);
	ck_assert_int_lt(addr_pattern_check("@contoso..com", &e), 0);
	ck_assert_int_eq(domain_pattern_check("*.contoso.com", &e), 0);
	ck_assert_int_lt(domain_pattern_check("*contoso.com", &e), 0);
	ck_assert_int_lt(domain_pattern_check("[192.0.2.1]", &e), 0);
	ck_assert_int_lt(domain_pattern_check("contoso.com.", &e), 0);
}
END_TEST

/* CIDR ------------------------------------------------------------------------------ */

START_TEST(test_cidr)
{
	struct cidr c;
	struct ipaddr ip;
	const char *err;

	ck_assert_int_eq(cidr_parse("192.168.10.0/24", &c, &err), 0);
	ip_parse("192.168.10.77", &ip);
	ck_assert(cidr_match(&c, &ip));
	ip_parse("192.168.11.1", &ip);
	ck_assert(!cidr_match(&c, &ip));
	ip_parse("::ffff:192.168.10.5", &ip); /* dual-stack Postfix */
	ck_assert(cidr_match(&c, &ip));
	ck_assert_int_eq(cidr_parse("10.0.0.5", &c, &err), 0);
	ck_assert_int_eq(c.prefix, 32);
	ck_assert_int_eq(cidr_parse("2001:db8::/32", &c, &err), 0);
	ip_parse("2001:db8:1::9", &ip);
	ck_assert(cidr_match(&c, &ip));
	ip_parse("192.168.10.5", &ip);
	ck_assert(!cidr_match(&c, &ip));
	ck_assert_int_eq(cidr_parse("0.0.0.0/0", &c, &err), 0);
	ck_assert(cidr_match(&c, &ip));
	ck_assert_int_eq(cidr_parse("192.168.10.0/23", &c, &err), 0);
	ip_parse("192.168.11.200", &ip);
	ck_assert(cidr_match(&c, &ip));
	ck_assert_int_lt(cidr_parse("10.0.0.5/24", &c, &err), 0);
	ck_assert_ptr_nonnull(strstr(err, "host bits"));
	ck_assert_int_lt(cidr_parse("10.0.0.0/33", &c, &err), 0);
	ck_assert_int_lt(cidr_parse("10.0.0.0/", &c, &err), 0);
	ck_assert_int_lt(cidr_parse("10.0.0.0/8x", &c, &err), 0);
	ck_assert_int_lt(cidr_parse("10.0.0/8", &c, &err), 0);
	ck_assert_int_lt(cidr_parse("printer.local", &c, &err), 0);
	ck_assert_int_lt(cidr_parse("2001:db8::/129", &c, &err), 0);
	ck_assert_int_eq(ip_parse("[192.0.2.1]", &ip), 0);
	ck_assert_int_eq(ip_parse("IPv6:2001:db8::1", &ip), 0);
	ck_assert_int_lt(ip_parse("300.1.1.1", &ip), 0);
}
END_TEST

int
main(void)
{
	static const struct check_suite suite = {"addr", "core", NULL, NULL, 0};
	const struct check_test tests[] = {CHECK_LOOP(test_path, path_cases),
	                                   CHECK_TEST(test_path_null),
	                                   CHECK_TEST(test_path_lengths),
	                                   CHECK_LOOP(test_list, list_cases),
	                                   CHECK_TEST(test_list_limits),
	                                   CHECK_TEST(test_format_mailbox),
	                                   CHECK_TEST(test_format_roundtrip),
	                                   CHECK_TEST(test_domain_match),
	                                   CHECK_TEST(test_addr_match),
	                                   CHECK_TEST(test_pattern_check),
	                                   CHECK_TEST(test_cidr)};

	return check_main(&suite, tests, CHECK_ROWS(tests));
}
