/*
 * check_route.c - the route header: what the milter writes, the transport
 * reads back; anything else is refused.  The signature: bound to every
 * field, the queue id and the envelope sender; made with the first key,
 * checked with any; a known answer computed by another implementation
 * (Python's hmac) pins the exact bytes that are signed.
 */
#include "config.h"

#include <check.h>

#include "common.h"
#include <stdlib.h>
#include <string.h>

#include "conf/routekey.h"
#include "policy/route.h"

static const char *k1 = "0123456789abcdef0123456789abcdef-one";
static const char *k2 = "0123456789abcdef0123456789abcdef-two";

static void
make_key(struct route_key *k, const char *secret)
{
	k->secret = secret;
	k->len = strlen(secret);
	route_key_id(secret, k->len, k->id);
}

static void
sample(struct route *r)
{
	memset(r, 0, sizeof(*r));
	r->mode = MODE_SMTP_AUTH;
	strcpy(r->tenant, "contoso");
	strcpy(r->domain, "contoso.com");
	strcpy(r->submitter, "erp");
	strcpy(r->mailbox, "erp@contoso.com");
}

static void
addr(struct addr *a, const char *text)
{
	struct addr_err e;

	ck_assert_int_eq(addr_parse_path(text, strlen(text), true, a, &e), 0);
}

START_TEST(test_roundtrip)
{
	struct route r, back;
	char buf[1024];
	const char *err = NULL;

	sample(&r);
	ck_assert_int_gt(route_format(&r, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "v=2; mode=smtp-auth; tenant=contoso; domain=contoso.com; "
	                      "submitter=erp; mailbox=erp@contoso.com");
	ck_assert_int_eq(route_parse(buf, &back, &err), 0);
	ck_assert_int_eq(memcmp(&r, &back, sizeof(r)), 0);
	ck_assert_int_lt(route_format(&r, buf, 20), 0);
}
END_TEST

static const char *bad[] = {
    "",
    "v=1; mode=relay; domain=a.example; connector=c", /* the old, unsigned form */
    "mode=relay; domain=a.example; connector=c",
    "v=2; mode=teleport; domain=a.example",
    "v=2; mode=relay; domain=a.example",                    /* relay without connector */
    "v=2; mode=smtp-auth; domain=a.example",                /* without mailbox */
    "v=2; mode=direct-send",                                /* without domain */
    "v=2; mode=direct-send; domain=a.example; tenant=t",    /* without submitter */
    "v=2; mode=direct-send; domain=a.example; submitter=s", /* without tenant */
    "v=2; mode=direct-send; domain=a.example; color=red",
    "v=2; mode=direct-send; domain=a b.example",
    "v=2; mode=direct-send; domain",
    "v=2; mode=direct-send; domain=",
    "v=2; mode=direct-send; domain=a.example; domain=b.example", /* twice */
    "v=2; mode=direct-send; domain=a.example; mac=00",           /* short mac */
    "v=2; mode=direct-send; domain=a.example; key=1a2b3c4d",     /* key without mac */
    "v=2; mode=direct-send; domain=a.example; key=1A2B3C4D; mac="
    "0000000000000000000000000000000000000000000000000000000000000000",
    "v=2; mode=direct-send; domain=a.example; qid=A B",
};

START_TEST(test_refused)
{
	struct route r;
	const char *err = NULL;

	ck_assert_msg(route_parse(bad[_i], &r, &err) < 0, "accepted: %s", bad[_i]);
	ck_assert_ptr_nonnull(err);
}
END_TEST

START_TEST(test_too_long)
{
	char buf[ROUTE_TEXT_MAX + 64];
	struct route r;
	const char *err;

	memset(buf, 0, sizeof(buf));
	strcpy(buf, "v=2; mode=direct-send; domain=a.example; tenant=");
	memset(buf + strlen(buf), 'x', ROUTE_TEXT_MAX);
	ck_assert_int_lt(route_parse(buf, &r, &err), 0);
}
END_TEST

START_TEST(test_folded)
{
	struct route r;
	const char *err;

	/* A header folded by an MTA still reads. */
	ck_assert_int_eq(route_parse(" v=2; mode=relay;\r\n\ttenant=contoso; "
	                             "domain=contoso.com; submitter=s; connector=onprem",
	                             &r, &err),
	                 0);
	ck_assert_int_eq(r.mode, MODE_RELAY);
	ck_assert_str_eq(r.connector, "onprem");
}
END_TEST

/* The exact bytes signed, against Python's hmac (HACKING has the recipe). */
START_TEST(test_known_answer)
{
	struct route_key k;
	struct route r;
	struct addr sender;
	char buf[ROUTE_TEXT_MAX];

	make_key(&k, k1);
	ck_assert_str_eq(k.id, "bd33ef86");
	sample(&r);
	addr(&sender, "Billing@CONTOSO.com"); /* the domain's case does not matter */
	ck_assert_int_gt(route_sign(&r, "4XyZ12AbC", &sender, &k, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "v=2; mode=smtp-auth; tenant=contoso; domain=contoso.com; "
	                      "submitter=erp; mailbox=erp@contoso.com; qid=4XyZ12AbC; "
	                      "key=bd33ef86; mac=807568a50270e86d15c47a28ea956c8c2750d31f36"
	                      "afc1c476c38a8aa0cde68a");
}
END_TEST

START_TEST(test_signed)
{
	struct route_key keys[2];
	struct route r, back;
	struct addr sender, other, null;
	char buf[ROUTE_TEXT_MAX], *p;
	const char *err;

	make_key(&keys[0], k2);
	make_key(&keys[1], k1);
	addr(&sender, "billing@contoso.com");
	addr(&other, "ceo@contoso.com");
	addr(&null, "<>");
	sample(&r);
	ck_assert_int_gt(route_sign(&r, "ABC123", &sender, &keys[1], buf, sizeof(buf)), 0);
	ck_assert_int_eq(route_parse(buf, &back, &err), 0);
	/* Any key of the file verifies (rotation): here the second. */
	ck_assert_int_eq(route_verify(&back, "ABC123", &sender, keys, 2), ROUTE_TRUSTED);
	/* Not when the file no longer holds it. */
	ck_assert_int_eq(route_verify(&back, "ABC123", &sender, keys, 1), ROUTE_UNKNOWN_KEY);
	/* No keys at all: nothing can be trusted. */
	ck_assert_int_eq(route_verify(&back, "ABC123", &sender, keys, 0), ROUTE_UNSIGNED);
	/* Another queue id: genuine, but for another message. */
	ck_assert_int_eq(route_verify(&back, "DEF456", &sender, keys, 2), ROUTE_OTHER_QUEUE_ID);
	/* Another sender. */
	ck_assert_int_eq(route_verify(&back, "ABC123", &other, keys, 2), ROUTE_FORGED);
	ck_assert_int_eq(route_verify(&back, "ABC123", &null, keys, 2), ROUTE_FORGED);
	/* Any field changed. */
	strcpy(back.mailbox, "ceo@contoso.com");
	ck_assert_int_eq(route_verify(&back, "ABC123", &sender, keys, 2), ROUTE_FORGED);
	ck_assert_int_eq(route_parse(buf, &back, &err), 0);
	back.mode = MODE_RELAY;
	strcpy(back.connector, "onprem");
	ck_assert_int_eq(route_verify(&back, "ABC123", &sender, keys, 2), ROUTE_FORGED);
	ck_assert_int_eq(route_parse(buf, &back, &err), 0);
	strcpy(back.qid, "DEF456"); /* the queue id in the header edited to match */
	ck_assert_int_eq(route_verify(&back, "DEF456", &sender, keys, 2), ROUTE_FORGED);
	/* Unsigned. */
	ck_assert_int_eq(route_parse("v=2; mode=smtp-auth; tenant=contoso; domain=contoso.com; "
	                             "submitter=erp; mailbox=erp@contoso.com",
	                             &back, &err),
	                 0);
	ck_assert_int_eq(route_verify(&back, "ABC123", &sender, keys, 2), ROUTE_UNSIGNED);
	/* Folding on the way does not change what is verified. */
	p = strstr(buf, "; domain=");
	memmove(p + 3, p + 1, strlen(p + 1) + 1);
	p[1] = '\r';
	p[2] = '\n';
	p[3] = '\t';
	ck_assert_int_eq(route_parse(buf, &back, &err), 0);
	ck_assert_int_eq(route_verify(&back, "ABC123", &sender, keys, 2), ROUTE_TRUSTED);
	/* The null sender signs as itself. */
	sample(&r);
	ck_assert_int_gt(route_sign(&r, "ABC123", &null, &keys[0], buf, sizeof(buf)), 0);
	ck_assert_int_eq(route_parse(buf, &back, &err), 0);
	ck_assert_int_eq(route_verify(&back, "ABC123", &null, keys, 2), ROUTE_TRUSTED);
	ck_assert_int_eq(route_verify(&back, "ABC123", &sender, keys, 2), ROUTE_FORGED);
}
END_TEST

int
main(void)
{
	static const struct check_suite suite = {"route", "core", NULL, NULL, 0};
	const struct check_test tests[] = {
	    CHECK_TEST(test_roundtrip), CHECK_LOOP(test_refused, bad), CHECK_TEST(test_too_long),
	    CHECK_TEST(test_folded),    CHECK_TEST(test_known_answer), CHECK_TEST(test_signed)};

	return check_main(&suite, tests, CHECK_ROWS(tests));
}
