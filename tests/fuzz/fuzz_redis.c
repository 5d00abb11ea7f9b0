/*
 * fuzz_redis.c - libFuzzer target for Redis replies (the shared store is
 * another program, maybe on another machine): bytes in RESP are read by
 * hiredis, and every reply goes through each of the store's checks.
 * Properties: a journal state read is one we write; counts stay within
 * the buffers given.
 *
 *   tests/fuzz/fuzz_redis -max_total_time=60 tests/fuzz/corpus/redis
 */
#include "config.h"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <stdint.h>
#include <stdlib.h>

#include "store/redis_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const redisReply *r)
{
	uint64_t t, stamps[8], live;
	struct bucket b[8];
	char dead[4][HOLDER_ID_MAX], reply[64];
	enum journal_state st;
	size_t n;

	(void)rr_pair(r, &t);
	(void)rr_flag(r);
	if (rr_stamps(r, stamps, 8, &n) == 0 && n > 8)
		abort();
	if (rr_buckets(r, b, 8, &n) == 0 && n > 8)
		abort();
	if (rr_dead_holders(r, "0000000000000000:1:1", 1000000, dead, 4, &n) == 0 && n > 4)
		abort();
	(void)rr_live_holders(r, 1000000, &live);
	if (rr_journal(r, &st, reply, sizeof(reply)) == 0 && st != JOURNAL_NONE &&
	    st != JOURNAL_ACCEPTED && st != JOURNAL_FAILED)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	redisReader *rd = redisReaderCreate();
	void *reply;
	int i;

	if (rd == NULL)
		return 0;
	rr_limit_reader(rd); /* as the store does: no array or string larger than ours */
	if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK)
		for (i = 0; i < 16 && redisReaderGetReply(rd, &reply) == REDIS_OK && reply != NULL;
		     i++) {
			check(reply);
			freeReplyObject(reply);
		}
	redisReaderFree(rd);
	return 0;
}
