/*
 * fuzz_token_answer.c - libFuzzer target for the token endpoint's answer
 * (JSON from the network): the token, its lifetime, or the AADSTS error
 * and its hint.  The first two bytes pick the HTTP status.  Properties:
 * a token is accepted only with a non-empty access_token that fits and a
 * lifetime of at most a day.
 *
 *   tests/fuzz/fuzz_token_answer -max_total_time=60 tests/fuzz/corpus/token_answer
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/oauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = {200, 400, 401, 500, 503, 200, 302, 0};
	struct oauth_token t;
	struct oauth_err e;
	long status;

	if (size < 1)
		return 0;
	status = statuses[data[0] & 7];
	memset(&e, 0, sizeof(e));
	if (oauth_parse_answer("https://fuzz.example/token", status, (const char *)data + 1,
	                       size - 1, 1000000, &t, &e) == 0) {
		if (status != 200 || t.access[0] == '\0' || t.expires_at <= 1000000 ||
		    t.expires_at > 1000000 + 86400 || !t.fetched)
			abort();
	} else if (memchr(e.msg, '\0', sizeof(e.msg)) == NULL) {
		abort();
	}
	return 0;
}
