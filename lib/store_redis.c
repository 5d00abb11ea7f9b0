/*
 * store_redis.c - placeholder until the Redis backend lands ([limits]):
 * a configuration that asks for it is refused at open with a clear error.
 */
#include "config.h"

#include "store_impl.h"

struct store *
store_redis_open(const struct conf *conf, struct store_err *err)
{
	(void)conf;
	store_fail(err, "store backend redis is not available in this version");
	return NULL;
}
