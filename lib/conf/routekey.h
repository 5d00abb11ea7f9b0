/*
 * routekey.h - the route key file: the secrets that sign the route header
 * (route.h).  One key a line, at least ROUTE_KEY_MIN characters of
 * printable ASCII without spaces (m365ctl route-key writes 64 hex digits);
 * '#' starts a comment line.  The first key signs, every key verifies: to
 * rotate, put a new key first and drop the old one once the queue holds no
 * mail it signed (m365ctl route-key --rotate does the first half).
 *
 * Errors: -1 with struct routekey_err: RK_EFILE (open, write, rename,
 * chown: errno's text in msg), RK_EFORMAT (what the file holds), RK_ENOMEM,
 * RK_ELOCAL (no random bytes).  Nothing exits.
 */
#ifndef M3_ROUTEKEY_H
#define M3_ROUTEKEY_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "conf.h"
#include "util/util.h"

#define ROUTE_KEY_MIN 32
#define ROUTE_KEY_MAX 256

enum routekey_code {
	RK_OK,
	RK_EFILE,   /* the file system said no */
	RK_EFORMAT, /* the file holds something that is not keys */
	RK_ENOMEM,
	RK_ELOCAL, /* no random bytes */
};

struct routekey_err {
	enum routekey_code code;
	char msg[PATH_MAX + 128];
};

/* route_keys_read - every key of path into the arena */
int route_keys_read(const char *path, struct arena *a, struct route_key **keys, size_t *n,
                    struct routekey_err *err);
/* route_keys_write - a new key first (keeping the first `keep` old ones), owned by uid:gid, 0600 */
int route_keys_write(const char *path, size_t keep, uid_t uid, gid_t gid, struct routekey_err *err);
/* route_key_id - the 8 hex digits that name a key */
void route_key_id(const char *secret, size_t len, char out[ROUTE_KID_LEN + 1]);

#endif
