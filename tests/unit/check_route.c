/*
 * check_route.c - the route header: what the milter writes, the transport
 * reads back; anything else is refused.
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

START_TEST(test_roundtrip)
{
	struct route r, back;
	char buf[1024];
	const char *err = NULL;

	memset(&r, 0, sizeof(r));
	r.mode = MODE_SMTP_AUTH;
	strcpy(r.tenant, "contoso");
	strcpy(r.domain, "contoso.com");
	strcpy(r.submitter, "erp");
	strcpy(r.mailbox, "erp@contoso.com");
	ck_assert_int_gt(route_format(&r, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "v=1; mode=smtp-auth; tenant=contoso; domain=contoso.com; "
			      "submitter=erp; mailbox=erp@contoso.com");
	ck_assert_int_eq(route_parse(buf, &back, &err), 0);
	ck_assert_int_eq(memcmp(&r, &back, sizeof(r)), 0);
	ck_assert_int_lt(route_format(&r, buf, 20), 0);
}
END_TEST

static const char *bad[] = {
	"",
	"v=2; mode=relay; domain=a.example; connector=c",
	"mode=relay; domain=a.example; connector=c",
	"v=1; mode=teleport; domain=a.example",
	"v=1; mode=relay; domain=a.example",		 /* relay without connector */
	"v=1; mode=smtp-auth; domain=a.example",	 /* without mailbox */
	"v=1; mode=direct-send",			 /* without domain */
	"v=1; mode=direct-send; domain=a.example; color=red",
	"v=1; mode=direct-send; domain=a b.example",
	"v=1; mode=direct-send; domain",
	"v=1; mode=direct-send; domain=",
};

START_TEST(test_refused)
{
	struct route r;
	const char *err = NULL;

	ck_assert_msg(route_parse(bad[_i], &r, &err) < 0, "accepted: %s", bad[_i]);
	ck_assert_ptr_nonnull(err);
}
END_TEST

START_TEST(test_folded)
{
	struct route r;
	const char *err;

	/* A header folded by an MTA still reads. */
	ck_assert_int_eq(route_parse(" v=1; mode=relay;\r\n\ttenant=contoso; "
				     "domain=contoso.com; submitter=s; connector=onprem",
				     &r, &err), 0);
	ck_assert_int_eq(r.mode, MODE_RELAY);
	ck_assert_str_eq(r.connector, "onprem");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("route");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_roundtrip);
	tcase_add_loop_test(tc, test_refused, 0, sizeof(bad) / sizeof(bad[0]));
	tcase_add_test(tc, test_folded);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
