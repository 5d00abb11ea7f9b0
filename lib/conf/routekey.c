/*
 * routekey.c - read and write the route key file (see routekey.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"
#include "routekey.h"
#include "util/sbuf.h"

/* key_ok - printable ASCII, no spaces, of a sensible length */
static const char *
key_ok(const char *k, size_t n)
{
	size_t i;

	if (n < ROUTE_KEY_MIN)
		return "a key needs at least 32 characters (m365ctl route-key makes one)";
	if (n > ROUTE_KEY_MAX)
		return "a key of more than 256 characters";
	for (i = 0; i < n; i++)
		if (k[i] <= ' ' || k[i] > '~')
			return "a key holds a space or a character that is not printable ASCII";
	return NULL;
}

int
route_keys_read(const char *path, struct arena *a, struct route_key **keys, size_t *n,
                struct routekey_err *err)
{
	char line[ROUTE_KEY_MAX + 3];
	unsigned lineno = 0;
	struct route_key *k;
	FILE *fp;
	int fd;

	*keys = NULL;
	*n = 0;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || (fp = fdopen(fd, "r")) == NULL) {
		M3_FAIL(err, RK_EFILE, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	k = arena_alloc(a, ROUTE_KEYS_MAX * sizeof(*k));
	if (k == NULL) {
		fclose(fp);
		M3_FAIL(err, RK_ENOMEM, "out of memory");
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		size_t len = strlen(line);
		const char *why;
		char *copy;
		lineno++;
		if (len > 0 && line[len - 1] != '\n' && !feof(fp)) {
			M3_FAIL(err, RK_EFORMAT, "%s line %u: a key of more than %d characters",
			        path, lineno, ROUTE_KEY_MAX);
			goto fail;
		}
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
		                   line[len - 1] == ' ' || line[len - 1] == '\t'))
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		if ((why = key_ok(line, len)) != NULL) {
			M3_FAIL(err, RK_EFORMAT, "%s line %u: %s", path, lineno, why);
			goto fail;
		}
		if (*n == ROUTE_KEYS_MAX) {
			M3_FAIL(err, RK_EFORMAT, "%s: more than %d keys", path, ROUTE_KEYS_MAX);
			goto fail;
		}
		copy = arena_strndup(a, line, len);
		if (copy == NULL) {
			M3_FAIL(err, RK_ENOMEM, "out of memory");
			goto fail;
		}
		k[*n].secret = copy;
		k[*n].len = len;
		route_key_id(copy, len, k[*n].id);
		(*n)++;
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(fp);
	if (*n == 0) {
		M3_FAIL(err, RK_EFORMAT, "%s holds no key (m365ctl route-key makes one)", path);
		return -1;
	}
	*keys = k;
	return 0;
fail:
	OPENSSL_cleanse(line, sizeof(line));
	fclose(fp);
	*n = 0;
	return -1;
}

int
route_keys_write(const char *path, size_t keep, uid_t uid, gid_t gid, struct routekey_err *err)
{
	unsigned char raw[32];
	char hex[2 * sizeof(raw) + 1];
	struct route_key *old = NULL;
	size_t n_old = 0, i;
	struct arena *a = arena_new();
	struct sbuf b, tmp;
	int fd = -1, rc = -1;

	sbuf_init(&b, 64 * 1024);
	sbuf_init(&tmp, 4096);
	if (a == NULL) {
		M3_FAIL(err, RK_ENOMEM, "out of memory");
		goto out;
	}
	if (keep > 0 && access(path, F_OK) == 0 && route_keys_read(path, a, &old, &n_old, err) < 0)
		goto out;
	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		M3_FAIL(err, RK_ELOCAL, "no random bytes from OpenSSL");
		goto out;
	}
	sbuf_adds(&b, "# m365relay route keys: the first signs, every one verifies "
	              "(m365ctl route-key)\n");
	m3_hex(raw, sizeof(raw), hex);
	sbuf_adds(&b, hex);
	sbuf_adds(&b, "\n");
	OPENSSL_cleanse(hex, sizeof(hex));
	for (i = 0; i < n_old && i < keep; i++) {
		sbuf_add(&b, old[i].secret, old[i].len);
		sbuf_adds(&b, "\n");
	}
	sbuf_addf(&tmp, "%s.new.%ld", path, (long)getpid());
	if (b.failed || tmp.failed) {
		M3_FAIL(err, RK_ENOMEM, "out of memory");
		goto out;
	}
	fd = open(tmp.s, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		M3_FAIL(err, RK_EFILE, "%s: %s", tmp.s, strerror(errno));
		goto out;
	}
	if (write(fd, b.s, b.len) != (ssize_t)b.len || fsync(fd) < 0) {
		M3_FAIL(err, RK_EFILE, "writing %s: %s", tmp.s, strerror(errno));
		goto out;
	}
	if (geteuid() == 0 && fchown(fd, uid, gid) < 0) {
		M3_FAIL(err, RK_EFILE, "chown %s: %s", tmp.s, strerror(errno));
		goto out;
	}
	if (rename(tmp.s, path) < 0) {
		M3_FAIL(err, RK_EFILE, "rename %s to %s: %s", tmp.s, path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0 && tmp.s != NULL)
		unlink(tmp.s);
	OPENSSL_cleanse(raw, sizeof(raw));
	sbuf_cleanse(&b);
	sbuf_free(&b);
	sbuf_free(&tmp);
	arena_free(a);
	return rc;
}

void
route_key_id(const char *secret, size_t len, char out[ROUTE_KID_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	memset(md, 0, sizeof(md));
	if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, "m365relay-route-key\n", 20) == 1 &&
	    EVP_DigestUpdate(ctx, secret, len) == 1)
		EVP_DigestFinal_ex(ctx, md, &n);
	EVP_MD_CTX_free(ctx);
	m3_hex(md, ROUTE_KID_LEN / 2, out);
}
