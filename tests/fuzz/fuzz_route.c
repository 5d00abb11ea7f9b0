/*
 * fuzz_route.c - libFuzzer target for the route header (a header any
 * sender can write): route_parse() on arbitrary bytes, and for what it
 * accepts, the canonical form and the signature.  Properties checked: a
 * parsed route formats and parses back to itself; signing it and parsing
 * the result verifies, for its queue id only; nothing the fuzzer writes
 * verifies with a key it cannot know.
 *
 *   tests/fuzz/fuzz_route -max_total_time=60 tests/fuzz/corpus/route
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/routekey.h"
#include "policy/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char secret[] = "fuzz-route-key-0123456789abcdef0123456789abcdef";
	struct route_key key;
	struct route r, back;
	struct addr sender;
	struct addr_err ae;
	char *text, buf[ROUTE_TEXT_MAX];
	const char *err;

	if (size > 4 * ROUTE_TEXT_MAX)
		return 0;
	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	key.secret = secret;
	key.len = sizeof(secret) - 1;
	route_key_id(secret, key.len, key.id);
	addr_parse_path("<a@example.com>", 15, false, &sender, &ae);
	if (route_parse(text, &r, &err) == 0) {
		/* Whatever the input, the key is not known to it. */
		if (route_verify(&r, r.qid, &sender, &key, 1) == ROUTE_TRUSTED)
			abort();
		/* The unsigned canonical form parses back to the same route. */
		back = r;
		memset(back.kid, 0, sizeof(back.kid));
		memset(back.mac, 0, sizeof(back.mac));
		if (route_format(&back, buf, sizeof(buf)) >= 0) {
			struct route again;
			if (route_parse(buf, &again, &err) != 0 ||
			    memcmp(&again, &back, sizeof(back)) != 0)
				abort();
		}
		back = r;
		if (route_sign(&back, "FUZZQID1", &sender, &key, buf, sizeof(buf)) >= 0) {
			if (route_parse(buf, &back, &err) != 0 ||
			    route_verify(&back, "FUZZQID1", &sender, &key, 1) != ROUTE_TRUSTED ||
			    route_verify(&back, "FUZZQID2", &sender, &key, 1) == ROUTE_TRUSTED)
				abort();
		}
	}
	free(text);
	return 0;
}
