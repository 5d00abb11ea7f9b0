/*
 * common.h - what every Check suite shares: running it.
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

#endif
