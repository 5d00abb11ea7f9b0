/*
 * check_wire.c - the pieces between Microsoft 365 and Postfix, each alone:
 * the SMTP reply parser, what a reply means (classification and hint),
 * pipe(8)'s exit map, the message reader, and the client assertion (JWT)
 * the token endpoint is given, verified here with the public key.
 */
#include "config.h"

#include <check.h>

#include "common.h"
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "deliver.h"
#include "message.h"
#include "net/oauth.h"
#include "net/outcome.h"
#include "net/smtp.h"

/* SMTP replies ----------------------------------------------------------------- */

/* feed - the lines of one reply; the last add's result */
static int
feed(struct smtp_reply *r, const char *const *lines, size_t n, const char **err)
{
	size_t i;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	for (i = 0; i < n; i++) {
		rc = smtp_reply_add(r, lines[i], strlen(lines[i]), err);
		if (rc != 0)
			break;
	}
	return rc;
}

START_TEST(test_reply_multiline)
{
	static const char *const l[] = {"250-relay.example Hello", "250-PIPELINING",
	                                "250 2.0.0 SMTPUTF8"};
	struct smtp_reply r;
	const char *err = NULL;

	ck_assert_int_eq(feed(&r, l, 3, &err), 1);
	ck_assert_int_eq(r.code, 250);
	ck_assert_int_eq(r.lines, 3);
}
END_TEST

START_TEST(test_reply_enhanced)
{
	static const char *const l[] = {
	    "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"};
	struct smtp_reply r;
	const char *err = NULL;

	ck_assert_int_eq(feed(&r, l, 1, &err), 1);
	ck_assert_int_eq(r.code, 554);
	ck_assert_str_eq(r.xcode, "5.2.0");
	ck_assert_ptr_nonnull(strstr(r.text, "SubmissionQuotaExceeded"));
}
END_TEST

/* Replies a hostile or broken server may send: each refused, none "complete". */
static const char *const bad_replies[][2] = {
    {"250-first", "251 second"}, /* the code changes between lines */
    {"25", NULL},                /* too short */
    {"abc text", NULL},          /* no code */
    {"250xtext", NULL},          /* neither space nor dash after the code */
    {"099 low", NULL},           /* not a reply code */
};

START_TEST(test_reply_refused)
{
	const char *const *l = bad_replies[_i];
	struct smtp_reply r;
	const char *err = NULL;

	ck_assert_int_eq(feed(&r, l, l[1] != NULL ? 2 : 1, &err), -1);
	ck_assert_ptr_nonnull(err);
}
END_TEST

START_TEST(test_reply_control_characters)
{
	/* Taken, but made harmless: the text goes into logs and Postfix's
	 * status line. */
	static const char *const l[] = {"250 ok\001\033[31m\177 done"};
	struct smtp_reply r;
	const char *err = NULL;

	ck_assert_int_eq(feed(&r, l, 1, &err), 1);
	ck_assert_str_eq(r.text, "ok??[31m? done");
}
END_TEST

/* What a reply means -------------------------------------------------------------- */

static struct smtp_reply
reply(int code, const char *xcode, const char *text)
{
	struct smtp_reply r;

	memset(&r, 0, sizeof(r));
	r.code = code;
	snprintf(r.xcode, sizeof(r.xcode), "%s", xcode);
	snprintf(r.text, sizeof(r.text), "%s", text);
	return r;
}

static const struct {
	int code;
	const char *xcode, *text;
	enum reply_class cls;
	const char *hint_part; /* NULL: no hint */
} classes[] = {
    {250, "2.0.0", "OK <id> [Hostname=X]", RC_OK, NULL},
    {432, "4.3.2", "STOREDRV.ClientSubmit; sender thread limit exceeded", RC_TEMP,
     "concurrent SMTP AUTH sessions"},
    {451, "4.7.500", "Server busy", RC_TEMP, "throttling"},
    {354, "", "Start mail input", RC_TEMP, NULL}, /* cannot end a delivery */
    {535, "5.7.139", "Authentication unsuccessful, SmtpClientAuthentication is disabled", RC_CONFIG,
     "Set-CASMailbox"},
    {535, "5.7.139", "Authentication unsuccessful, basic authentication is disabled.", RC_CONFIG,
     "give the mailbox an app"},
    {535, "5.7.139", "something new", RC_CONFIG, "Conditional Access"},
    {554, "5.2.0", "STOREDRV.Submission.Exception:SubmissionQuotaExceededException", RC_CONFIG,
     "10,000 recipients"},
    {554, "5.2.0", "some other 5.2.0", RC_PERM, NULL},
    {550, "5.7.64", "TenantAttribution; Relay Access Denied", RC_CONFIG, "connector"},
    {550, "5.1.10", "RESOLVER.ADR.RecipientNotFound", RC_PERM, NULL},
    {552, "5.3.4", "Message size exceeds fixed maximum message size", RC_PERM, NULL},
};

START_TEST(test_classify)
{
	struct smtp_reply r = reply(classes[_i].code, classes[_i].xcode, classes[_i].text);
	const char *hint = reply_hint(&r);

	ck_assert_int_eq(reply_classify(&r), classes[_i].cls);
	if (classes[_i].hint_part == NULL)
		ck_assert_ptr_null(hint);
	else
		ck_assert_msg(hint != NULL && strstr(hint, classes[_i].hint_part) != NULL,
		              "%d %s: hint %s", classes[_i].code, classes[_i].xcode,
		              hint ? hint : "(none)");
}
END_TEST

/* pipe(8)'s exit map --------------------------------------------------------------- */

/* status - pipe_status() of o, and what it printed */
static int
status(const struct outcome *o, char *out, size_t size)
{
	FILE *fp = fmemopen(out, size, "w");
	int rc;

	ck_assert_ptr_nonnull(fp);
	rc = pipe_status(o, fp);
	fclose(fp);
	return rc;
}

START_TEST(test_exit_map)
{
	struct outcome o;
	struct smtp_reply r;
	char out[2048];

	memset(&o, 0, sizeof(o));
	o.kind = OUT_SENT;
	memset(out, 0, sizeof(out));
	ck_assert_int_eq(status(&o, out, sizeof(out)), EX_OK);
	ck_assert_str_eq(out, "");

	outcome_local(&o, OUT_DEFER, "4.3.5", "configuration error: %s", "x");
	memset(out, 0, sizeof(out));
	ck_assert_int_eq(status(&o, out, sizeof(out)), EX_TEMPFAIL);
	ck_assert_str_eq(out, "4.3.5 configuration error: x\n");

	/* A permanent refusal bounces with Microsoft's words... */
	r = reply(550, "5.1.10", "RESOLVER.ADR.RecipientNotFound");
	outcome_reply(&o, "smtp.office365.com", &r);
	memset(out, 0, sizeof(out));
	ck_assert_int_eq(o.kind, OUT_BOUNCE);
	ck_assert_int_eq(status(&o, out, sizeof(out)), EX_UNAVAILABLE);
	ck_assert_msg(strncmp(out, "5.1.10 ", 7) == 0, "%s", out);
	ck_assert_ptr_nonnull(strstr(out, "550 RESOLVER.ADR.RecipientNotFound"));

	/* ...one that means our configuration is wrong defers: mail waits for the fix. */
	r = reply(535, "5.7.139",
	          "Authentication unsuccessful, the user credentials were incorrect.");
	outcome_reply(&o, "smtp.office365.com", &r);
	memset(out, 0, sizeof(out));
	ck_assert_int_eq(o.kind, OUT_DEFER);
	ck_assert_int_eq(status(&o, out, sizeof(out)), EX_TEMPFAIL);
	ck_assert_msg(out[0] == '4', "a deferral's line starts with 4.X.Y: %s", out);

	/* A kind the map does not know defers (never a bounce by accident). */
	o.kind = (enum outcome_kind)42;
	ck_assert_int_eq(status(&o, out, sizeof(out)), EX_TEMPFAIL);
}
END_TEST

/* The message reader ------------------------------------------------------------- */

static void
parse(const char *text, struct message *m)
{
	struct msg_err err;
	char *buf = strdup(text);

	ck_assert_ptr_nonnull(buf);
	ck_assert_msg(message_parse(buf, strlen(text), m, &err) == 0, "%s", err.msg);
}

START_TEST(test_message_fields)
{
	static const char text[] = "From: Scanner <scan@printer.local>\n"
	                           "Subject: a long\n"
	                           " folded subject\n"
	                           "Sender: s@printer.local\n"
	                           "X-Other: x\n"
	                           "\n"
	                           "From: not a header, the body\n";
	struct message m;

	parse(text, &m);
	ck_assert_uint_eq(m.n_fields, 4);
	ck_assert_uint_eq(m.fields[1].kind, HDR_OTHER);
	ck_assert_ptr_nonnull(strstr(m.raw + m.fields[1].off, "folded"));
	ck_assert_uint_eq(m.fields[0].kind, HDR_FROM);
	ck_assert_uint_eq(m.fields[2].kind, HDR_SENDER);
	ck_assert_uint_eq(m.hdr.n_from, 1);
	ck_assert_str_eq(m.hdr.from[0], "Scanner <scan@printer.local>");
	ck_assert_str_eq(m.subject, "a long folded subject");
	ck_assert_uint_eq(m.body_off, strstr(text, "\n\nFrom:") - text + 1);
	ck_assert(!m.eightbit);
	message_free(&m);
}
END_TEST

/* Where the first header and the body start, and what is 8-bit. */
static const struct {
	const char *text;
	size_t n_fields;
	size_t first_off; /* the first field's offset */
	int no_body;      /* body_off is raw_len */
	int eightbit, utf8_headers;
} shapes[] = {
    /* An mbox "From " line before the headers is not a field. */
    {"From scan@printer.local Wed Dec  2 05:00:00 2026\nFrom: a@b.example\n\nbody\n", 1,
     sizeof("From scan@printer.local Wed Dec  2 05:00:00 2026\n") - 1, 0, 0, 0},
    {"Subject: only headers\nX-A: b\n", 2, 0, 1, 0, 0},
    {"Subject: \xc3\xa9t\xc3\xa9\n\n8bit body \xe9\n", 1, 0, 0, 1, 1},
};

START_TEST(test_message_shapes)
{
	struct message m;

	parse(shapes[_i].text, &m);
	ck_assert_uint_eq(m.n_fields, shapes[_i].n_fields);
	ck_assert_uint_eq(m.fields[0].off, shapes[_i].first_off);
	if (shapes[_i].no_body)
		ck_assert_uint_eq(m.body_off, m.raw_len);
	ck_assert_int_eq(m.eightbit, shapes[_i].eightbit);
	ck_assert_int_eq(m.utf8_headers, shapes[_i].utf8_headers);
	message_free(&m);
}
END_TEST

/* The client assertion ------------------------------------------------------------ */

static char dir[] = "/tmp/check_wire.XXXXXX";
static char cert_file[64], key_file[64];
static EVP_PKEY *pkey;

/* make_cert - an RSA key and a self-signed certificate, as PEM files */
static int
make_cert(void)
{
	X509 *x = X509_new();
	X509_NAME *name;
	FILE *fp;

	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(cert_file, sizeof(cert_file), "%s/app.pem", dir);
	snprintf(key_file, sizeof(key_file), "%s/app.key", dir);
	pkey = EVP_RSA_gen(2048);
	if (pkey == NULL || x == NULL)
		return -1;
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pkey);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"app", -1, -1,
	                           0);
	X509_set_issuer_name(x, name);
	if (X509_sign(x, pkey, EVP_sha256()) <= 0)
		return -1;
	if ((fp = fopen(cert_file, "w")) == NULL)
		return -1;
	PEM_write_X509(fp, x);
	fclose(fp);
	if ((fp = fopen(key_file, "w")) == NULL)
		return -1;
	PEM_write_PrivateKey(fp, pkey, NULL, NULL, 0, NULL, NULL);
	fclose(fp);
	X509_free(x);
	return 0;
}

/* unb64url - decode one JWT part; its length, or -1 */
static int
unb64url(const char *in, size_t n, unsigned char *out, size_t size)
{
	char b64[4096];
	size_t i;
	int len;

	if (n + 4 >= sizeof(b64))
		return -1;
	for (i = 0; i < n; i++)
		b64[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
	while (i % 4 != 0)
		b64[i++] = '=';
	b64[i] = '\0';
	if (size < i)
		return -1;
	len = EVP_DecodeBlock(out, (unsigned char *)b64, (int)i);
	if (len < 0)
		return -1;
	while (n > 0 && i > n) { /* padding decodes to zero bytes we drop */
		len--;
		i--;
	}
	return len;
}

static json_object *
part_json(const char *p, size_t n)
{
	unsigned char buf[2048];
	int len = unb64url(p, n, buf, sizeof(buf) - 1);

	ck_assert_int_gt(len, 0);
	buf[len] = '\0';
	return json_tokener_parse((char *)buf);
}

/* verifies - EVP_DigestVerify of sig over data with the test key, as alg says */
static int
verifies(enum assertion_alg alg, const unsigned char *sig, size_t siglen, const char *data,
         size_t len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	int rc;

	ck_assert_ptr_nonnull(md);
	ck_assert_int_eq(EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pkey), 1);
	if (alg == ASSERTION_PS256) {
		ck_assert_int_eq(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
		ck_assert_int_eq(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
	}
	rc = EVP_DigestVerify(md, sig, siglen, (const unsigned char *)data, len);
	EVP_MD_CTX_free(md);
	return rc;
}

static void
check_assertion(enum assertion_alg alg)
{
	static const char url[] = "https://login.example/contoso.onmicrosoft.com/oauth2/v2.0/token";
	struct app app = {0};
	struct oauth_err e = {0};
	char jwt[4096];
	const char *d1, *d2;
	json_object *h, *c, *v;
	unsigned char sig[1024];
	int siglen;

	app.client_id = "11111111-2222-3333-4444-555555555555";
	app.certificate_file = cert_file;
	app.key_file = key_file;
	app.assertion = alg;
	ck_assert_msg(oauth_assertion(&app, url, 1700000000, jwt, sizeof(jwt), &e) == 0, "%s",
	              e.msg);
	d1 = strchr(jwt, '.');
	ck_assert_ptr_nonnull(d1);
	d2 = strchr(d1 + 1, '.');
	ck_assert_ptr_nonnull(d2);
	ck_assert_ptr_null(strchr(d2 + 1, '.'));

	h = part_json(jwt, (size_t)(d1 - jwt));
	ck_assert_ptr_nonnull(h);
	ck_assert(json_object_object_get_ex(h, "alg", &v));
	ck_assert_str_eq(json_object_get_string(v), alg == ASSERTION_PS256 ? "PS256" : "RS256");
	ck_assert(json_object_object_get_ex(h, alg == ASSERTION_PS256 ? "x5t#S256" : "x5t", &v));
	ck_assert_uint_eq(strlen(json_object_get_string(v)), alg == ASSERTION_PS256 ? 43 : 27);
	c = part_json(d1 + 1, (size_t)(d2 - d1 - 1));
	ck_assert_ptr_nonnull(c);
	ck_assert(json_object_object_get_ex(c, "aud", &v));
	ck_assert_str_eq(json_object_get_string(v), url);
	ck_assert(json_object_object_get_ex(c, "iss", &v));
	ck_assert_str_eq(json_object_get_string(v), app.client_id);
	ck_assert(json_object_object_get_ex(c, "sub", &v));
	ck_assert_str_eq(json_object_get_string(v), app.client_id);
	ck_assert(json_object_object_get_ex(c, "nbf", &v));
	ck_assert_int_eq(json_object_get_int64(v), 1700000000);
	ck_assert(json_object_object_get_ex(c, "exp", &v));
	ck_assert_int_gt(json_object_get_int64(v), 1700000000);
	ck_assert_int_le(json_object_get_int64(v), 1700000000 + 600);
	ck_assert(json_object_object_get_ex(c, "jti", &v));
	ck_assert_uint_eq(strlen(json_object_get_string(v)), 36);

	/* The signature verifies with the certificate's key, over "header.claims". */
	siglen = unb64url(d2 + 1, strlen(d2 + 1), sig, sizeof(sig));
	ck_assert_int_eq(siglen, 256);
	ck_assert_int_eq(verifies(alg, sig, (size_t)siglen, jwt, (size_t)(d2 - jwt)), 1);
	/* ...and not over anything else. */
	jwt[0] ^= 1;
	ck_assert_int_ne(verifies(alg, sig, (size_t)siglen, jwt, (size_t)(d2 - jwt)), 1);
	json_object_put(h);
	json_object_put(c);
}

START_TEST(test_assertion_ps256)
{
	check_assertion(ASSERTION_PS256);
}
END_TEST

START_TEST(test_assertion_rs256)
{
	check_assertion(ASSERTION_RS256);
}
END_TEST

START_TEST(test_assertion_wrong_key)
{
	struct app app = {0};
	struct oauth_err e = {0};
	char other[80], jwt[4096];
	EVP_PKEY *k = EVP_RSA_gen(2048);
	FILE *fp;

	snprintf(other, sizeof(other), "%s/other.key", dir);
	fp = fopen(other, "w");
	ck_assert_ptr_nonnull(fp);
	PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL);
	fclose(fp);
	EVP_PKEY_free(k);
	app.client_id = "x";
	app.certificate_file = cert_file;
	app.key_file = other;
	app.assertion = ASSERTION_PS256;
	ck_assert_int_eq(
	    oauth_assertion(&app, "https://l/t/oauth2/v2.0/token", 1, jwt, sizeof(jwt), &e), -1);
	ck_assert_int_eq(e.code, OAUTH_ELOCAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "does not match"));
	unlink(other);
}
END_TEST

int
main(void)
{
	static const struct check_suite suite = {"wire", "core", NULL, NULL, 30};
	const struct check_test tests[] = {
	    CHECK_TEST(test_reply_multiline),          CHECK_TEST(test_reply_enhanced),
	    CHECK_TEST(test_reply_control_characters), CHECK_LOOP(test_reply_refused, bad_replies),
	    CHECK_LOOP(test_classify, classes),        CHECK_TEST(test_exit_map),
	    CHECK_TEST(test_message_fields),           CHECK_LOOP(test_message_shapes, shapes),
	    CHECK_TEST(test_assertion_ps256),          CHECK_TEST(test_assertion_rs256),
	    CHECK_TEST(test_assertion_wrong_key)};
	int failed;

	if (make_cert() < 0) {
		fprintf(stderr, "check_wire: cannot make a test key and certificate in %s\n", dir);
		return EXIT_FAILURE;
	}
	failed = check_main(&suite, tests, CHECK_ROWS(tests));
	unlink(cert_file);
	unlink(key_file);
	rmdir(dir);
	EVP_PKEY_free(pkey);
	return failed;
}
