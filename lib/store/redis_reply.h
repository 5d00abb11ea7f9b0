/*
 * redis_reply.h - what the Redis store makes of a server's replies.  The
 * server is another program, on another machine perhaps: every reply is
 * checked for the shape the command promises (types, element counts,
 * numbers that are numbers, a journal state that exists) before anything
 * is read from it.  A reply of any other shape is an error (the store
 * then fails safe: the milter answers store { on_error }, the transport
 * defers), never a crash or a value made up from garbage.
 *
 * Pure (holder liveness aside, which looks at /proc for this machine's
 * processes); fuzzed by tests/fuzz/fuzz_redis.c.  Internal to lib/store*.
 */
#ifndef M3_REDIS_REPLY_H
#define M3_REDIS_REPLY_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "window.h"

#define RR_BAD        (-2) /* a reply of the wrong shape */
#define SLOT_LEASE_MS (30ULL * 60 * 1000)
#define HOLDER_ID_MAX 64

#define RR_ARRAY_MAX  65536         /* elements of an array reply we accept */
#define RR_STRING_MAX (1024 * 1024) /* bytes of a string reply */

/*
 * rr_limit_reader - refuse, as hiredis reads them, arrays and strings
 * larger than any reply of ours can be: hiredis 0.14 allocates an array
 * of the announced size before reading it ("*300000000" from a hostile
 * or broken server would cost gigabytes).  The reader then reports an
 * out-of-memory error and the command fails.
 */
void rr_limit_reader(redisReader *r);
/* rr_pair - a script's {ok, time}: STORE_OK or STORE_FULL with *t, or RR_BAD */
int rr_pair(const redisReply *r, uint64_t *t);
/* rr_flag - a script's 0/1: STORE_OK (1), STORE_FULL (0), or RR_BAD */
int rr_flag(const redisReply *r);
/* rr_stamps - ZRANGEBYSCORE ... WITHSCORES: the scores (at most cap), or RR_BAD */
int rr_stamps(const redisReply *r, uint64_t *out, size_t cap, size_t *n);
/* rr_buckets - HGETALL of a recipient hash, oldest first (at most cap), or RR_BAD */
int rr_buckets(const redisReply *r, struct bucket *out, size_t cap, size_t *n);
/* rr_dead_holders - HGETALL of a slot hash: holders that are gone (not mine), or RR_BAD */
int rr_dead_holders(const redisReply *r, const char *mine, uint64_t now, char dead[][HOLDER_ID_MAX],
                    size_t cap, size_t *n);
/* rr_live_holders - HGETALL of a slot hash: how many holders are alive, or RR_BAD */
int rr_live_holders(const redisReply *r, uint64_t now, uint64_t *n);
/* rr_journal - HGET of a journal entry "STATE|TIME|REPLY" (nil: none), or RR_BAD */
int rr_journal(const redisReply *r, enum journal_state *state, char *reply, size_t size);
/* rr_holder_dead - is the holder "boot:pid:start" that took its slot at since gone? */
bool rr_holder_dead(const char *id, const char *since, uint64_t now);

#endif
