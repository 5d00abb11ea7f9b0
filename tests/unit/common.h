/*
 * common.h - what every Check suite shares: its list of tests, running it.
 */
#ifndef M3_TEST_COMMON_H
#define M3_TEST_COMMON_H

#include <check.h>
#include <stdlib.h>

/* check_run - run the suite (each test in its own process), free it, and
 * give main()'s exit status */
static inline int
check_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* CHECK_ROWS - the number of rows of a test table */
#define CHECK_ROWS(table) (sizeof(table) / sizeof((table)[0]))

/* One entry of a suite's list: a test, run once (rows 0) or once for each
 * row 0..rows-1 of its table (a loop test, _i the row). */
struct check_test {
	const TTest *test;
	size_t rows;
};
#define CHECK_TEST(t)                                                                              \
	{                                                                                          \
		(t), 0                                                                             \
	}
#define CHECK_LOOP(t, table)                                                                       \
	{                                                                                          \
		(t), CHECK_ROWS(table)                                                             \
	}

/* A suite of one test case: setup and teardown (NULL: none) run around each
 * test, in its own process; timeout in seconds (0: Check's default). */
struct check_suite {
	const char *name, *tcase;
	SFun setup, teardown;
	double timeout;
};

/* check_main - the suite with its tests in the order listed, run: main()'s
 * exit status */
static inline int
check_main(const struct check_suite *cs, const struct check_test *tests, size_t n)
{
	Suite *s = suite_create(cs->name);
	TCase *tc = tcase_create(cs->tcase);
	size_t i;

	if (cs->setup != NULL || cs->teardown != NULL)
		tcase_add_checked_fixture(tc, cs->setup, cs->teardown);
	if (cs->timeout > 0)
		tcase_set_timeout(tc, cs->timeout);
	for (i = 0; i < n; i++) {
		if (tests[i].rows > 0)
			tcase_add_loop_test(tc, tests[i].test, 0, (int)tests[i].rows);
		else
			tcase_add_test(tc, tests[i].test);
	}
	suite_add_tcase(s, tc);
	return check_run(s);
}

#endif
