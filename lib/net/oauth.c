/*
 * oauth.c - tokens: the shared cache, the token endpoint (libcurl), the
 * JSON (json-c), the client assertion (OpenSSL).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "curl_dl.h"
#include "oauth.h"
#include "util/sbuf.h"
#include "util/util.h"

#define RESPONSE_MAX       (64 * 1024)
#define JSON_DEPTH_MAX     8       /* the answers are two levels deep */
#define TOKEN_LIFETIME_MAX (86400) /* seconds a token may claim to live */
#define SECRET_MAX         1024
#define ASSERTION_LIFETIME 300 /* "5-10 minutes after nbf at most" */

static int efail(struct oauth_err *e, enum oauth_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
efail(struct oauth_err *e, enum oauth_code code, const char *fmt, ...)
{
	va_list ap;

	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return -1;
}

static const struct {
	long code;
	const char *hint;
} aadsts_hints[] = {
    {7000215, "client_secret_file holds the secret's ID or a stale secret: "
              "put the secret VALUE in it"},
    {7000222, "the client secret has expired: create a new one in the app "
              "registration"},
    {7000218, "no credential was sent: give the app client_secret_file or "
              "certificate_file and key_file"},
    {700027, "the assertion's signature was refused: key_file does not match "
             "the certificate uploaded to the app registration, or the "
             "certificate was not uploaded (or has expired)"},
    {700024, "the assertion is outside its validity window: check the "
             "gateway's clock (NTP)"},
    {700016, "no such application in this tenant: check client_id and the "
             "tenant's tenant_id"},
    {90002, "no such tenant: check the tenant's tenant_id (GUID or "
            "verified domain)"},
    {900023, "the tenant_id is not a valid tenant: use its GUID or a "
             "verified domain"},
    {70011, "the scope is wrong: SMTP AUTH needs "
            "https://outlook.office365.com/.default"},
    {500011, "the Office 365 Exchange Online service principal is missing "
             "from the tenant, or the app lacks SMTP.SendAsApp"},
    {7000112, "the application is disabled in the tenant"},
    {700021, "the assertion's audience is not this token endpoint"},
    {50013, "the assertion failed signature validation: check key_file and "
            "the certificate registered for the app"},
};

const char *
oauth_aadsts_hint(long code)
{
	size_t i;

	for (i = 0; i < NELEM(aadsts_hints); i++)
		if (aadsts_hints[i].code == code)
			return aadsts_hints[i].hint;
	return NULL;
}

int
oauth_token_url(const struct app *app, char *buf, size_t size)
{
	const struct tenant *t = app->tenant;
	int n;

	if (t == NULL)
		return -1;
	n = snprintf(buf, size, "%s/%s/oauth2/v2.0/token", t->authority,
	             t->tenant_id ? t->tenant_id : "");
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* base64url without padding */
static int
b64url(const unsigned char *in, size_t len, char *out, size_t size)
{
	size_t need = 4 * ((len + 2) / 3) + 1, i, o = 0;
	int n;

	if (size < need)
		return -1;
	n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	for (i = 0; i < (size_t)n; i++) {
		char c = out[i];
		if (c == '=')
			break;
		out[o++] = c == '+' ? '-' : c == '/' ? '_' : c;
	}
	out[o] = '\0';
	return (int)o;
}

/* Client assertion -------------------------------------------------------------- */

int
oauth_assertion(const struct app *app, const char *token_url, uint64_t now, char *buf, size_t size,
                struct oauth_err *e)
{
	unsigned char der_hash[SHA256_DIGEST_LENGTH], jti[16], *der = NULL;
	unsigned char *sig = NULL;
	char header[256], claims[1024], h64[512], c64[2048], x5t[64], uuid[40];
	char signing[2600];
	EVP_PKEY *key = NULL;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	X509 *cert = NULL;
	size_t siglen = 0;
	FILE *fp;
	int derlen, rc = -1;
	bool pss = app->assertion == ASSERTION_PS256;

	fp = fopen(app->certificate_file, "r");
	if (fp == NULL)
		return efail(e, OAUTH_ELOCAL, "certificate %s: %s", app->certificate_file,
		             strerror(errno));
	cert = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	if (cert == NULL)
		return efail(e, OAUTH_ELOCAL, "certificate %s: not a PEM certificate",
		             app->certificate_file);
	fp = fopen(app->key_file, "r");
	if (fp == NULL) {
		X509_free(cert);
		return efail(e, OAUTH_ELOCAL, "key %s: %s", app->key_file, strerror(errno));
	}
	key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	if (key == NULL) {
		efail(e, OAUTH_ELOCAL, "key %s: not a PEM private key", app->key_file);
		goto out;
	}
	if (X509_check_private_key(cert, key) != 1) {
		efail(e, OAUTH_ELOCAL, "key %s does not match certificate %s", app->key_file,
		      app->certificate_file);
		goto out;
	}
	derlen = i2d_X509(cert, &der);
	if (derlen <= 0) {
		efail(e, OAUTH_ELOCAL, "certificate %s: cannot encode", app->certificate_file);
		goto out;
	}
	/* x5t#S256: SHA-256 of the DER; x5t: SHA-1 (the older documentation). */
	if (pss)
		SHA256(der, (size_t)derlen, der_hash);
	else
		SHA1(der, (size_t)derlen, der_hash);
	b64url(der_hash, pss ? SHA256_DIGEST_LENGTH : SHA_DIGEST_LENGTH, x5t, sizeof(x5t));
	snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"%s\":\"%s\"}",
	         pss ? "PS256" : "RS256", pss ? "x5t#S256" : "x5t", x5t);
	if (RAND_bytes(jti, sizeof(jti)) != 1) {
		efail(e, OAUTH_ELOCAL, "no random bytes for the assertion id");
		goto out;
	}
	jti[6] = (jti[6] & 0x0f) | 0x40;
	jti[8] = (jti[8] & 0x3f) | 0x80;
	snprintf(uuid, sizeof(uuid),
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", jti[0],
	         jti[1], jti[2], jti[3], jti[4], jti[5], jti[6], jti[7], jti[8], jti[9], jti[10],
	         jti[11], jti[12], jti[13], jti[14], jti[15]);
	snprintf(claims, sizeof(claims),
	         "{\"aud\":\"%s\",\"iss\":\"%s\",\"sub\":\"%s\",\"jti\":\"%s\","
	         "\"nbf\":%llu,\"iat\":%llu,\"exp\":%llu}",
	         token_url, app->client_id, app->client_id, uuid, (unsigned long long)now,
	         (unsigned long long)now, (unsigned long long)(now + ASSERTION_LIFETIME));
	b64url((unsigned char *)header, strlen(header), h64, sizeof(h64));
	if (b64url((unsigned char *)claims, strlen(claims), c64, sizeof(c64)) < 0) {
		efail(e, OAUTH_ELOCAL, "assertion claims too long");
		goto out;
	}
	snprintf(signing, sizeof(signing), "%s.%s", h64, c64);
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, key) != 1 ||
	    (pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1)) ||
	    EVP_DigestSign(md, NULL, &siglen, (unsigned char *)signing, strlen(signing)) != 1 ||
	    (sig = malloc(siglen)) == NULL ||
	    EVP_DigestSign(md, sig, &siglen, (unsigned char *)signing, strlen(signing)) != 1) {
		efail(e, OAUTH_ELOCAL, "cannot sign the assertion with %s (an RSA key is needed)",
		      app->key_file);
		goto out;
	}
	{
		char s64[1400];
		int n;
		if (b64url(sig, siglen, s64, sizeof(s64)) < 0) {
			efail(e, OAUTH_ELOCAL, "signature too long");
			goto out;
		}
		n = snprintf(buf, size, "%s.%s", signing, s64);
		if (n < 0 || (size_t)n >= size) {
			efail(e, OAUTH_ELOCAL, "assertion too long");
			goto out;
		}
	}
	rc = 0;
out:
	free(sig);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(key);
	OPENSSL_free(der);
	X509_free(cert);
	return rc;
}

/* The token endpoint ---------------------------------------------------------------- */

/* collect - the response body, bounded (curl aborts the transfer on 0) */
static size_t
collect(char *data, size_t sz, size_t nm, void *arg)
{
	struct sbuf *b = arg;

	if (nm != 0 && sz > SIZE_MAX / nm)
		return 0;
	return sbuf_add(b, data, sz * nm) < 0 ? 0 : sz * nm;
}

/* parse_json - one JSON object, the whole input and nothing after it */
static json_object *
parse_json(const char *text, size_t len)
{
	json_tokener *tok;
	json_object *j;

	if (len > RESPONSE_MAX || memchr(text, '\0', len) != NULL)
		return NULL;
	tok = json_tokener_new_ex(JSON_DEPTH_MAX);
	if (tok == NULL)
		return NULL;
	j = json_tokener_parse_ex(tok, text, (int)len);
	if (j != NULL) {
		/* Nothing but blanks after the object (text is not NUL-terminated). */
		size_t i = json_tokener_get_parse_end(tok);
		while (i < len &&
		       (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
			i++;
		if (json_tokener_get_error(tok) != json_tokener_success || i != len ||
		    !json_object_is_type(j, json_type_object)) {
			json_object_put(j);
			j = NULL;
		}
	}
	json_tokener_free(tok);
	return j;
}

static int
read_secret(const char *path, char *buf, size_t size, struct oauth_err *e)
{
	FILE *fp = fopen(path, "r");
	size_t n;

	if (fp == NULL)
		return efail(e, OAUTH_ELOCAL, "client_secret_file %s: %s", path, strerror(errno));
	n = fread(buf, 1, size - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	if (n == 0)
		return efail(e, OAUTH_ELOCAL, "client_secret_file %s is empty", path);
	return 0;
}

/* parse_error - the AADSTS code and text of an error response */
static void
parse_error(json_object *j, long status, struct oauth_err *e)
{
	json_object *codes, *desc, *err;
	const char *d = NULL, *nl;
	char text[600] = "";

	e->aadsts = 0;
	if (json_object_object_get_ex(j, "error_codes", &codes) &&
	    json_object_is_type(codes, json_type_array) && json_object_array_length(codes) > 0)
		e->aadsts = json_object_get_int64(json_object_array_get_idx(codes, 0));
	if (json_object_object_get_ex(j, "error_description", &desc))
		d = json_object_get_string(desc);
	if (e->aadsts == 0 && d != NULL && strncmp(d, "AADSTS", 6) == 0)
		e->aadsts = strtol(d + 6, NULL, 10);
	if (d != NULL) {
		/* The first line: "AADSTS7000215: Invalid client secret ..." */
		nl = strpbrk(d, "\r\n");
		snprintf(text, sizeof(text), "%.*s", (int)(nl ? nl - d : (long)strlen(d)), d);
	} else if (json_object_object_get_ex(j, "error", &err)) {
		snprintf(text, sizeof(text), "%s", json_object_get_string(err));
	}
	efail(e, e->aadsts != 0 ? OAUTH_EREFUSED : OAUTH_ETEMP,
	      "token endpoint answered HTTP %ld: %s", status, text[0] ? text : "(no description)");
	e->hint = oauth_aadsts_hint(e->aadsts);
}

int
oauth_parse_answer(const char *url, long status, const char *body, size_t len, uint64_t now,
                   struct oauth_token *t, struct oauth_err *e)
{
	json_object *j = parse_json(body, len), *v;
	int64_t expires_in;
	int rc = -1;

	memset(t, 0, sizeof(*t));
	if (status != 200) {
		if (j != NULL)
			parse_error(j, status, e);
		else
			efail(e, OAUTH_ETEMP, "token endpoint %s answered HTTP %ld", url, status);
		goto out;
	}
	if (j == NULL || !json_object_object_get_ex(j, "access_token", &v) ||
	    !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0) {
		efail(e, OAUTH_ETEMP, "token endpoint %s: no access_token in the answer", url);
		goto out;
	}
	if (json_object_get_string_len(v) >= (int)sizeof(t->access) ||
	    strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v)) {
		efail(e, OAUTH_ETEMP, "token endpoint %s: access_token too long", url);
		goto out;
	}
	m3_strlcpy(t->access, json_object_get_string(v), sizeof(t->access));
	/* expires_in: a number on v2, a string on v1; json-c converts both.
	 * Microsoft gives 60-90 minutes; more than a day is not believed. */
	if (!json_object_object_get_ex(j, "expires_in", &v) ||
	    (expires_in = json_object_get_int64(v)) <= 0 || expires_in > TOKEN_LIFETIME_MAX) {
		OPENSSL_cleanse(t->access, sizeof(t->access));
		t->access[0] = '\0';
		efail(e, OAUTH_ETEMP, "token endpoint %s: no usable expires_in", url);
		goto out;
	}
	t->expires_at = now + (uint64_t)expires_in;
	t->fetched = true;
	rc = 0;
out:
	json_object_put(j);
	return rc;
}

int
oauth_cache_parse(const char *text, size_t len, uint64_t now, struct oauth_token *t)
{
	json_object *j = parse_json(text, len), *a, *x;
	int64_t at;
	int rc = -1;

	memset(t, 0, sizeof(*t));
	if (j != NULL && json_object_object_get_ex(j, "access_token", &a) &&
	    json_object_is_type(a, json_type_string) && json_object_get_string_len(a) > 0 &&
	    json_object_get_string_len(a) < (int)sizeof(t->access) &&
	    strlen(json_object_get_string(a)) == (size_t)json_object_get_string_len(a) &&
	    json_object_object_get_ex(j, "expires_at", &x) &&
	    json_object_is_type(x, json_type_int) && (at = json_object_get_int64(x)) > 0 &&
	    (uint64_t)at <= now + TOKEN_LIFETIME_MAX) {
		m3_strlcpy(t->access, json_object_get_string(a), sizeof(t->access));
		t->expires_at = (uint64_t)at;
		rc = 0;
	}
	json_object_put(j);
	return rc;
}

void
oauth_https_opts(void *curl, const char *ca_file)
{
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (ca_file != NULL)
		curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file);
}

int
oauth_fetch(const struct conf *conf, const struct app *app, const char *scope,
            struct oauth_token *t, struct oauth_err *e)
{
	char url[1024], secret[SECRET_MAX], assertion[8192];
	struct sbuf body;
	char *post = NULL, *enc = NULL;
	CURL *curl = NULL;
	CURLcode cc;
	long status = 0;
	int rc = -1;

	const char *why;

	if (oauth_token_url(app, url, sizeof(url)) < 0)
		return efail(e, OAUTH_ELOCAL, "app %s: no token URL (tenant missing)", app->name);
	if (curl_load(&why) < 0)
		return efail(e, OAUTH_ELOCAL, "%s", why);
	if (app->secret_file != NULL) {
		if (read_secret(app->secret_file, secret, sizeof(secret), e) < 0)
			return -1;
	} else if (oauth_assertion(app, url, m3_time(), assertion, sizeof(assertion), e) < 0) {
		return -1;
	}
	sbuf_init(&body, RESPONSE_MAX);
	curl = curl_easy_init();
	if (curl == NULL) {
		efail(e, OAUTH_ELOCAL, "out of memory");
		goto out;
	}
	{
		char *cid = curl_easy_escape(curl, app->client_id, 0);
		char *esc_scope = curl_easy_escape(curl, scope, 0);
		enc = curl_easy_escape(curl, app->secret_file ? secret : assertion, 0);
		if (cid == NULL || esc_scope == NULL || enc == NULL ||
		    asprintf(&post, "client_id=%s&scope=%s&grant_type=client_credentials&%s=%s%s",
		             cid, esc_scope,
		             app->secret_file ? "client_secret" : "client_assertion", enc,
		             app->secret_file ? ""
		                              : "&client_assertion_type=urn%3Aietf%3Aparams%"
		                                "3Aoauth%3Aclient-assertion-type%3Ajwt-bearer") < 0)
			post = NULL;
		curl_free(cid);
		curl_free(esc_scope);
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	if (post == NULL) {
		efail(e, OAUTH_ELOCAL, "out of memory");
		goto out;
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)conf->transport.token_timeout);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	oauth_https_opts(curl, conf->transport.ca_file);
	cc = curl_easy_perform(curl);
	if (cc != CURLE_OK) {
		efail(e, OAUTH_ETEMP, "token endpoint %s: %s", url, curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	rc = oauth_parse_answer(url, status, sbuf_str(&body), body.len, m3_time(), t, e);
out:
	if (enc != NULL) {
		OPENSSL_cleanse(enc, strlen(enc));
		curl_free(enc);
	}
	if (post != NULL) {
		OPENSSL_cleanse(post, strlen(post));
		free(post);
	}
	OPENSSL_cleanse(assertion, sizeof(assertion));
	sbuf_cleanse(&body);
	sbuf_free(&body);
	if (curl != NULL)
		curl_easy_cleanup(curl);
	return rc;
}

/* The shared cache ------------------------------------------------------------------- */

static int
cache_path(const struct conf *conf, const struct app *app, const char *scope, char *buf,
           size_t size)
{
	unsigned char h[SHA256_DIGEST_LENGTH];
	char key[2048], hex[2 * SHA256_DIGEST_LENGTH + 1];
	int n;

	n = snprintf(key, sizeof(key), "%s|%s|%s|%s", app->tenant->authority,
	             app->tenant->tenant_id ? app->tenant->tenant_id : "", app->client_id, scope);
	if (n < 0 || (size_t)n >= sizeof(key))
		return -1;
	SHA256((unsigned char *)key, (size_t)n, h);
	m3_hex(h, SHA256_DIGEST_LENGTH, hex);
	n = snprintf(buf, size, "%s/tokens/%s", conf->state_dir, hex);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* cache_read - the cached token, if the file is ours and well formed */
static int
cache_read(const char *path, struct oauth_token *t)
{
	char buf[RESPONSE_MAX];
	ssize_t n;
	int fd, rc;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	rc =
	    n > 0 && (size_t)n < sizeof(buf) ? oauth_cache_parse(buf, (size_t)n, m3_time(), t) : -1;
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

static int
cache_write(const char *path, const struct oauth_token *t, struct oauth_err *e)
{
	char tmp[1200];
	json_object *j = json_object_new_object();
	const char *s;
	int fd;
	size_t len;

	json_object_object_add(j, "access_token", json_object_new_string(t->access));
	json_object_object_add(j, "expires_at", json_object_new_int64((int64_t)t->expires_at));
	s = json_object_to_json_string(j);
	len = strlen(s);
	snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid());
	unlink(tmp); /* a leftover of a process with our pid */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, s, len) != (ssize_t)len || fsync(fd) < 0) {
		efail(e, OAUTH_ELOCAL, "token cache %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		json_object_put(j);
		return -1;
	}
	close(fd);
	json_object_put(j);
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		return efail(e, OAUTH_ELOCAL, "token cache %s: %s", path, strerror(errno));
	}
	return 0;
}

static bool
usable(const struct conf *conf, const struct oauth_token *t, const char *rejected)
{
	uint64_t now = m3_time();

	if (t->access[0] == '\0' || t->expires_at <= now + (uint64_t)conf->transport.token_margin)
		return false;
	return rejected == NULL || strcmp(rejected, t->access) != 0;
}

int
oauth_get(const struct conf *conf, const struct app *app, const char *scope, const char *rejected,
          struct oauth_token *t, struct oauth_err *e)
{
	char path[1100], dir[1100], lock[1200];
	int fd, rc;

	memset(t, 0, sizeof(*t));
	memset(e, 0, sizeof(*e));
	if (cache_path(conf, app, scope, path, sizeof(path)) < 0)
		return efail(e, OAUTH_ELOCAL, "token cache path too long");
	/* Fast path: a good token, no lock. */
	if (cache_read(path, t) == 0 && usable(conf, t, rejected))
		return 0;
	snprintf(dir, sizeof(dir), "%s/tokens", conf->state_dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return efail(e, OAUTH_ELOCAL, "token cache %s: %s", dir, strerror(errno));
	snprintf(lock, sizeof(lock), "%s.lock", path);
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return efail(e, OAUTH_ELOCAL, "token cache lock %s: %s", lock, strerror(errno));
	/* One refresh at a time: the others wait here, then find it done. */
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			close(fd);
			return efail(e, OAUTH_ELOCAL, "token cache lock %s: %s", lock,
			             strerror(errno));
		}
	}
	memset(t, 0, sizeof(*t));
	if (cache_read(path, t) == 0 && usable(conf, t, rejected)) {
		close(fd);
		return 0;
	}
	memset(t, 0, sizeof(*t));
	rc = oauth_fetch(conf, app, scope, t, e);
	if (rc == 0) {
		log_info("OAuth: new token for app %s (client %s), valid for %llus", app->name,
		         app->client_id, (unsigned long long)(t->expires_at - m3_time()));
		if (cache_write(path, t, e) < 0)
			log_warnx("%s (the token is used anyway)", e->msg);
	}
	close(fd); /* releases the lock */
	return rc;
}

int
oauth_claims(const char *token, char *json, size_t size)
{
	const char *p = strchr(token, '.'), *q;
	char b64[8192];
	size_t len, i;
	int n;

	if (p == NULL || (q = strchr(p + 1, '.')) == NULL)
		return -1;
	len = (size_t)(q - p - 1);
	if (len + 4 >= sizeof(b64))
		return -1;
	for (i = 0; i < len; i++)
		b64[i] = p[1 + i] == '-' ? '+' : p[1 + i] == '_' ? '/' : p[1 + i];
	while (len % 4)
		b64[len++] = '=';
	b64[len] = '\0';
	if (size < len)
		return -1;
	n = EVP_DecodeBlock((unsigned char *)json, (unsigned char *)b64, (int)len);
	if (n < 0)
		return -1;
	while (n > 0 && json[n - 1] == '\0')
		n--; /* EVP_DecodeBlock counts the padding */
	json[n] = '\0';
	return 0;
}
