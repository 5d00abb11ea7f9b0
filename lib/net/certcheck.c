/*
 * certcheck.c - connector certificate checks (OpenSSL).
 */
#include "config.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "addr/addr.h"
#include "certcheck.h"
#include "util/util.h"

/*
 * A name belongs to an accepted domain when it is the domain, a host below
 * it, or "*.domain" / "*.sub.domain" (the reference, section 4.4:
 * TlsSenderCertificateName is an SMTP domain, wildcards allowed, but not
 * embedded ones).
 */
bool
cert_name_in_domain(const char *name, const char *domain)
{
	size_t nl = strlen(name), dl = strlen(domain);

	if (domain[0] == '*' && domain[1] == '.') {
		domain += 2;
		dl -= 2;
	}
	if (name[0] == '*') {
		if (name[1] != '.')
			return false; /* an embedded wildcard never matches */
		name += 2;
		nl -= 2;
	} else if (strchr(name, '*') != NULL) {
		return false;
	}
	if (nl == dl)
		return m3_casecmp(name, domain) == 0;
	return nl > dl && name[nl - dl - 1] == '.' && m3_casecmp(name + nl - dl, domain) == 0;
}

int
cert_inspect(const char *cert_file, const char *key_file, const char *ca_file,
             const struct tenant *t, struct cert_report *r, struct cert_err *err)
{
	STACK_OF(X509) *chain = sk_X509_new_null();
	STACK_OF(GENERAL_NAME) * sans;
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL, *extra;
	FILE *fp;
	int i, days, secs, rc = -1;
	size_t j;

	memset(r, 0, sizeof(*r));
	fp = fopen(cert_file, "r");
	if (fp == NULL) {
		M3_FAIL(err, CERT_EREAD, "%s: cannot read: %s", cert_file, strerror(errno));
		goto out;
	}
	cert = PEM_read_X509(fp, NULL, NULL, NULL);
	/* The rest of the file is the chain the gateway will present. */
	while ((extra = PEM_read_X509(fp, NULL, NULL, NULL)) != NULL)
		sk_X509_push(chain, extra);
	fclose(fp);
	ERR_clear_error();
	if (cert == NULL) {
		M3_FAIL(err, CERT_EFORMAT, "%s: not a PEM certificate", cert_file);
		goto out;
	}
	/* Names: the CN, then the DNS subject alternative names. */
	{
		char cn[256];
		if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn,
		                              sizeof(cn)) > 0)
			m3_strlcpy(r->names[r->n_names++], cn, sizeof(r->names[0]));
	}
	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && r->n_names < CERT_NAMES_MAX;
	     i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		if (g->type == GEN_DNS)
			snprintf(r->names[r->n_names++], sizeof(r->names[0]), "%.*s",
			         ASN1_STRING_length(g->d.dNSName),
			         (const char *)ASN1_STRING_get0_data(g->d.dNSName));
	}
	GENERAL_NAMES_free(sans);
	for (j = 0; j < r->n_names && r->matched[0] == '\0'; j++) {
		size_t k;
		for (k = 0; t != NULL && k < t->n_accepted; k++)
			if (cert_name_in_domain(r->names[j], t->accepted[k])) {
				m3_strlcpy(r->matched, r->names[j], sizeof(r->matched));
				break;
			}
	}
	/* The key. */
	if (key_file != NULL && (fp = fopen(key_file, "r")) != NULL) {
		key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
		fclose(fp);
		r->key_matches = key != NULL && X509_check_private_key(cert, key) == 1;
		ERR_clear_error();
	}
	/* The dates. */
	if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(cert)) == 1)
		r->days_left = days - (secs < 0 ? 1 : 0);
	{
		BIO *b = BIO_new(BIO_s_mem());
		int n;
		if (b != NULL && ASN1_TIME_print(b, X509_get0_notAfter(cert)) == 1 &&
		    (n = BIO_read(b, r->not_after, sizeof(r->not_after) - 1)) > 0)
			r->not_after[n] = '\0';
		BIO_free(b);
	}
	/* The chain, as Microsoft would build it from what we present. */
	store = X509_STORE_new();
	ctx = X509_STORE_CTX_new();
	if (store == NULL || ctx == NULL)
		goto out;
	if (ca_file != NULL ? X509_STORE_load_file(store, ca_file) != 1
	                    : X509_STORE_set_default_paths(store) != 1) {
		snprintf(r->chain_err, sizeof(r->chain_err), "cannot load the CA store");
	} else if (X509_STORE_CTX_init(ctx, store, cert, chain) == 1) {
		/* Dates are reported on their own; the chain check is about issuers. */
		X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_NO_CHECK_TIME);
		r->chain_ok = X509_verify_cert(ctx) == 1;
		if (!r->chain_ok)
			m3_strlcpy(r->chain_err,
			           X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)),
			           sizeof(r->chain_err));
	}
	ERR_clear_error();
	rc = 0;
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	EVP_PKEY_free(key);
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	return rc;
}
