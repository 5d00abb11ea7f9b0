/*
 * fuzz_token_cache.c - libFuzzer target for the shared token cache file
 * (the files under state_dir/tokens, written by any transport process; a corrupt or
 * planted file must be ignored, never trusted).  Properties: a token is
 * taken only with a non-empty access_token and an expiry within a day.
 *
 *   tests/fuzz/fuzz_token_cache -max_total_time=60 tests/fuzz/corpus/token_cache
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "net/oauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oauth_token t;

	if (oauth_cache_parse((const char *)data, size, 1000000, &t) == 0 &&
	    (t.access[0] == '\0' || t.expires_at == 0 || t.expires_at > 1000000 + 86400))
		abort();
	return 0;
}
