/*
 * net.c - TCP and TLS with deadlines.
 */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "net.h"
#include "util/sbuf.h"
#include "util/util.h"

void
net_init(struct net *n)
{
	memset(n, 0, sizeof(*n));
	n->fd = -1;
}

static int fail(struct net *n, enum net_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(struct net *n, enum net_code code, const char *fmt, ...)
{
	va_list ap;

	n->code = code;
	va_start(ap, fmt);
	vsnprintf(n->err, sizeof(n->err), fmt, ap);
	va_end(ap);
	return -1;
}

static long
ms_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

static void
deadline_in(struct timespec *d, int seconds)
{
	clock_gettime(CLOCK_MONOTONIC, d);
	d->tv_sec += seconds;
}

/* wait_fd - until fd is readable/writable or the deadline; 0 ok, -1 timeout/error */
static int
wait_fd(int fd, short events, const struct timespec *deadline)
{
	struct pollfd p = {fd, events, 0};
	long left;
	int rc;

	for (;;) {
		left = ms_left(deadline);
		if (left <= 0)
			return -1;
		rc = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

int
net_connect(struct net *n, const char *host, unsigned port, int timeout)
{
	struct addrinfo hints, *res = NULL, *ai;
	char ports[16];
	struct sbuf tried;
	int rc, one = 1;

	m3_strlcpy(n->host, host, sizeof(n->host));
	n->port = port;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(ports, sizeof(ports), "%u", port);
	sbuf_init(&tried, 512);
	rc = getaddrinfo(host, ports, &hints, &res);
	if (rc != 0)
		return fail(n, NET_ERESOLVE, "cannot resolve %s: %s", host, gai_strerror(rc));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct timespec deadline;
		char addr[64];
		int fd, soerr = 0, flags;
		socklen_t sl = sizeof(soerr);

		getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL, 0,
		            NI_NUMERICHOST);
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		/* Small SMTP commands must not wait for delayed ACKs. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		flags = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
		deadline_in(&deadline, timeout);
		rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (rc < 0 && errno == EINPROGRESS) {
			if (wait_fd(fd, POLLOUT, &deadline) < 0)
				soerr = ETIMEDOUT;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
				soerr = errno;
			rc = soerr ? -1 : 0;
		} else if (rc < 0) {
			soerr = errno;
		}
		if (rc == 0) {
			n->fd = fd;
			m3_strlcpy(n->peer, addr, sizeof(n->peer));
			freeaddrinfo(res);
			sbuf_free(&tried);
			return 0;
		}
		close(fd);
		sbuf_addf(&tried, "%s[%s]: %s", tried.len ? "; " : "", addr, strerror(soerr));
	}
	freeaddrinfo(res);
	fail(n, NET_ECONNECT, "cannot connect to %s port %u: %s", host, port,
	     tried.len ? sbuf_str(&tried) : "no address");
	sbuf_free(&tried);
	return -1;
}

/* TLS ------------------------------------------------------------------------------ */

static const char *
ssl_error(void)
{
	static char buf[256];
	unsigned long e = ERR_get_error();

	if (e == 0)
		return "unknown TLS error";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

/* The cache file keeps the newest session the server handed us. */
static int
new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct net *n = SSL_get_app_data(ssl);
	char tmp[1200];
	FILE *fp;
	int fd;

	if (n == NULL || n->session_cache[0] == '\0' || !SSL_SESSION_is_resumable(sess) ||
	    SSL_get_verify_result(ssl) != X509_V_OK)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.%ld", n->session_cache, (long)getpid());
	unlink(tmp); /* a leftover of a process with our pid */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return 0;
	fp = fdopen(fd, "w");
	if (fp == NULL) {
		close(fd);
		return 0;
	}
	if (PEM_write_SSL_SESSION(fp, sess) && fclose(fp) == 0)
		rename(tmp, n->session_cache); /* atomic for concurrent transports */
	else
		unlink(tmp);
	return 0; /* we did not keep a reference */
}

static SSL_SESSION *
load_session(const char *path)
{
	SSL_SESSION *s = NULL;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	FILE *fp = fd >= 0 ? fdopen(fd, "r") : NULL;

	if (fp != NULL) {
		s = PEM_read_SSL_SESSION(fp, NULL, NULL, NULL);
		fclose(fp);
	} else if (fd >= 0) {
		close(fd);
	}
	ERR_clear_error();
	return s;
}

/*
 * net_session_file - one cache file per (host, port, CA file, client
 * certificate), for verified sessions only: the name is a digest of all
 * of them, so that a session can only be resumed where the same checks
 * would have accepted a new handshake.
 */
void
net_session_file(const struct tls_opts *o, const char *host, unsigned port, char *buf, size_t size)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	char hex[33], ports[16];
	EVP_MD_CTX *ctx;

	buf[0] = '\0';
	if (o->cache_dir == NULL || !o->verify)
		return;
	ctx = EVP_MD_CTX_new();
	snprintf(ports, sizeof(ports), "%u", port);
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, host, strlen(host) + 1) != 1 ||
	    EVP_DigestUpdate(ctx, ports, strlen(ports) + 1) != 1 ||
	    EVP_DigestUpdate(ctx, "verify", 7) != 1 ||
	    EVP_DigestUpdate(ctx, o->ca_file ? o->ca_file : "(system store)",
	                     strlen(o->ca_file ? o->ca_file : "(system store)") + 1) != 1 ||
	    EVP_DigestUpdate(ctx, o->cert_file ? o->cert_file : "(no client certificate)",
	                     strlen(o->cert_file ? o->cert_file : "(no client certificate)") + 1) !=
	        1 ||
	    EVP_DigestFinal_ex(ctx, md, &len) != 1 || len < 16) {
		EVP_MD_CTX_free(ctx);
		return;
	}
	EVP_MD_CTX_free(ctx);
	m3_hex(md, 16, hex);
	if (snprintf(buf, size, "%s/tls-%s.session", o->cache_dir, hex) >= (int)size)
		buf[0] = '\0';
}

/* tls_io - run one SSL call to completion within the deadline */
static int
tls_wait(struct net *n, int rc, const struct timespec *deadline)
{
	switch (SSL_get_error(n->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		return wait_fd(n->fd, POLLIN, deadline) < 0 ? -2 : 0;
	case SSL_ERROR_WANT_WRITE:
		return wait_fd(n->fd, POLLOUT, deadline) < 0 ? -2 : 0;
	default:
		return -1;
	}
}

/*
 * hashed_dir - whether dir holds certificates by subject hash ("8 hex
 * digits.N", as c_rehash and Debian's update-ca-certificates make them)
 */
static bool
hashed_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;

	if (d == NULL)
		return false;
	while (!found && (e = readdir(d)) != NULL)
		found = strlen(e->d_name) >= 10 && strspn(e->d_name, "0123456789abcdef") == 8 &&
		        e->d_name[8] == '.' &&
		        strspn(e->d_name + 9, "0123456789") == strlen(e->d_name + 9);
	closedir(d);
	return found;
}

/*
 * system_store - the system's trusted CAs.  OpenSSL's default paths read
 * its default file first, on Debian the whole bundle (some 140
 * certificates parsed per delivery: 21 ms of CPU); the hashed directory
 * holds the same certificates and is read one issuer at a time, as
 * verification asks.  So the directory alone when it is known to be the
 * whole store: named by the administrator (SSL_CERT_DIR) and hashed, or
 * the default one, hashed, with OpenSSL's default file inside it (the
 * bundle update-ca-certificates writes beside the hash links it makes,
 * from the same certificates).  A directory only partly hashed (a hand
 * made link in another layout) would fail every verification: there, and
 * when SSL_CERT_FILE is set, OpenSSL's defaults.
 */
static int
system_store(SSL_CTX *ctx)
{
	const char *dir = getenv(X509_get_default_cert_dir_env());
	char rdir[PATH_MAX], rfile[PATH_MAX];
	bool whole;

	if (getenv(X509_get_default_cert_file_env()) != NULL)
		return SSL_CTX_set_default_verify_paths(ctx);
	if (dir != NULL) {
		whole = hashed_dir(dir);
	} else {
		size_t n;
		dir = X509_get_default_cert_dir();
		whole = realpath(dir, rdir) != NULL &&
		        realpath(X509_get_default_cert_file(), rfile) != NULL &&
		        (n = strlen(rdir)) > 0 && strncmp(rfile, rdir, n) == 0 && rfile[n] == '/' &&
		        hashed_dir(dir);
	}
	if (whole)
		return SSL_CTX_load_verify_locations(ctx, NULL, dir);
	return SSL_CTX_set_default_verify_paths(ctx);
}

/*
 * local_fail - a callback's failure on our side (CA, certificate, key):
 * its message in err, for net_starttls to report instead of the
 * handshake's.
 */
static void local_fail(struct net *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
local_fail(struct net *n, const char *fmt, ...)
{
	va_list ap;

	if (n->local_failed)
		return;
	n->local_failed = true;
	va_start(ap, fmt);
	vsnprintf(n->err, sizeof(n->err), fmt, ap);
	va_end(ap);
}

/* verify_chain - the CAs, read when a chain is first to be verified */
static int
verify_chain(X509_STORE_CTX *xs, void *arg)
{
	struct net *n = arg;
	const struct tls_opts *o = n->tls_o;

	if (!n->ca_loaded) {
		if (o == NULL || (o->ca_file != NULL
		                      ? SSL_CTX_load_verify_locations(n->ctx, o->ca_file, NULL) != 1
		                      : system_store(n->ctx) != 1)) {
			local_fail(n, "TLS: CA %s: %s",
			           o != NULL && o->ca_file ? o->ca_file : "system store",
			           ssl_error());
			X509_STORE_CTX_set_error(xs, X509_V_ERR_UNSPECIFIED);
			return 0;
		}
		n->ca_loaded = true;
	}
	return X509_verify_cert(xs);
}

/* client_cert - the certificate and key, read when the server asks for them */
static int
client_cert(SSL *ssl, void *arg)
{
	struct net *n = arg;
	const struct tls_opts *o = n->tls_o;

	if (o == NULL || o->cert_file == NULL || SSL_get_certificate(ssl) != NULL)
		return 1;
	if (SSL_use_certificate_chain_file(ssl, o->cert_file) != 1) {
		local_fail(n, "TLS: client certificate %s: %s", o->cert_file, ssl_error());
		return 0;
	}
	/* A key that is not the certificate's fails here ("key values mismatch"). */
	if (SSL_use_PrivateKey_file(ssl, o->key_file, SSL_FILETYPE_PEM) != 1) {
		local_fail(n, "TLS: key %s: %s", o->key_file, ssl_error());
		return 0;
	}
	return 1;
}

/* a context made ahead (net_prepare); a handshake takes it, once */
static SSL_CTX *spare_ctx;

int
net_prepare(void)
{
	if (spare_ctx == NULL)
		spare_ctx = SSL_CTX_new(TLS_client_method());
	return spare_ctx != NULL ? 0 : -1;
}

static int
handshake(struct net *n, const struct tls_opts *o, int timeout)
{
	struct timespec deadline;
	SSL_SESSION *sess = NULL;
	int rc;

	/* a context nobody configured yet: as good as a new one, and made
	 * before the fork that made this process */
	n->ctx = spare_ctx != NULL ? spare_ctx : SSL_CTX_new(TLS_client_method());
	spare_ctx = NULL;
	if (n->ctx == NULL)
		return fail(n, NET_ELOCAL, "TLS: %s", ssl_error());
	SSL_CTX_set_min_proto_version(n->ctx, TLS1_2_VERSION);
	/* No renegotiation: the callbacks below run in the handshake alone
	 * (n->tls_o), and a kept session's struct net moves (net_moved). */
	SSL_CTX_set_options(n->ctx, SSL_OP_NO_RENEGOTIATION);
	if (o->verify) {
		SSL_CTX_set_verify(n->ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_cert_verify_callback(n->ctx, verify_chain, n);
	}
	if (o->cert_file != NULL)
		SSL_CTX_set_cert_cb(n->ctx, client_cert, n);
	net_session_file(o, n->host, n->port, n->session_cache, sizeof(n->session_cache));
	if (n->session_cache[0] != '\0') {
		SSL_CTX_set_session_cache_mode(n->ctx, SSL_SESS_CACHE_CLIENT |
		                                           SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(n->ctx, new_session);
	}
	n->ssl = SSL_new(n->ctx);
	if (n->ssl == NULL)
		return fail(n, NET_ELOCAL, "TLS: %s", ssl_error());
	SSL_set_app_data(n->ssl, n);
	SSL_set_fd(n->ssl, n->fd);
	SSL_set_tlsext_host_name(n->ssl, n->host);
	if (o->verify) {
		/* The certificate must name the host we asked for (not its address). */
		SSL_set_hostflags(n->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(n->ssl, n->host) != 1)
			return fail(n, NET_ELOCAL, "TLS: %s", ssl_error());
	}
	if (n->session_cache[0] != '\0' && (sess = load_session(n->session_cache)) != NULL) {
		SSL_set_session(n->ssl, sess);
		SSL_SESSION_free(sess);
	}
	deadline_in(&deadline, timeout);
	while ((rc = SSL_connect(n->ssl)) != 1) {
		int w = tls_wait(n, rc, &deadline);
		if (w == -2)
			return fail(n, NET_ETIMEOUT, "TLS handshake with %s timed out", n->host);
		if (w < 0) {
			long v = SSL_get_verify_result(n->ssl);
			if (n->local_failed) {
				ERR_clear_error();
				n->code = NET_ETLSCONF; /* the message is in err */
				return -1;
			}
			if (v != X509_V_OK)
				return fail(n, NET_ETLS, "TLS: certificate of %s not trusted: %s",
				            n->host, X509_verify_cert_error_string(v));
			return fail(n, NET_ETLS, "TLS handshake with %s failed: %s", n->host,
			            ssl_error());
		}
	}
	n->tls = true;
	n->resumed = SSL_session_reused(n->ssl) == 1;
	n->tls_version = SSL_get_version(n->ssl);
	if (o->verify) {
		/* Resumed or not: the certificate the session rests on was verified. */
		long v = SSL_get_verify_result(n->ssl);
		if (v != X509_V_OK || SSL_get0_peer_certificate(n->ssl) == NULL)
			return fail(n, NET_ETLS, "TLS: certificate of %s not trusted: %s", n->host,
			            v != X509_V_OK ? X509_verify_cert_error_string(v)
			                           : "no certificate");
		n->verified = true;
	}
	n->rlen = n->roff = 0; /* nothing read before STARTTLS may be used */
	return 0;
}

/* net_starttls - the handshake, with what its callbacks read on demand */
int
net_starttls(struct net *n, const struct tls_opts *o, int timeout)
{
	int rc;

	n->tls_o = o;
	n->ca_loaded = n->local_failed = false;
	rc = handshake(n, o, timeout);
	n->tls_o = NULL;
	/* The handshake is over: nothing but the app data points to n now. */
	if (n->ssl != NULL)
		SSL_set_cert_cb(n->ssl, NULL, NULL);
	if (n->ctx != NULL)
		SSL_CTX_set_cert_verify_callback(n->ctx, NULL, NULL);
	return rc;
}

void
net_moved(struct net *n)
{
	if (n->ssl != NULL)
		SSL_set_app_data(n->ssl, n);
}

void
net_peer_names(const struct net *n, char *buf, size_t size)
{
	X509 *c = n->ssl != NULL ? SSL_get1_peer_certificate(n->ssl) : NULL;
	STACK_OF(GENERAL_NAME) * sans;
	struct sbuf b;
	char cn[256] = "";
	int i;

	if (size == 0)
		return;
	buf[0] = '\0';
	if (c == NULL)
		return;
	sbuf_init(&b, size - 1);
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn,
	                              (int)sizeof(cn)) > 0)
		sbuf_adds(&b, cn);
	sans = X509_get_ext_d2i(c, NID_subject_alt_name, NULL, NULL);
	for (i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		if (g->type == GEN_DNS)
			sbuf_addf(&b, ", %.*s", ASN1_STRING_length(g->d.dNSName),
			          (const char *)ASN1_STRING_get0_data(g->d.dNSName));
	}
	GENERAL_NAMES_free(sans);
	X509_free(c);
	m3_strlcpy(buf, sbuf_str(&b), size);
	sbuf_free(&b);
}

/* I/O --------------------------------------------------------------------------------- */

int
net_write(struct net *n, const void *buf, size_t len, int timeout)
{
	struct timespec deadline;
	const char *p = buf;

	deadline_in(&deadline, timeout);
	while (len > 0) {
		ssize_t w;
		if (n->ssl != NULL) {
			int rc = SSL_write(n->ssl, p, len > 1 << 30 ? 1 << 30 : (int)len);
			if (rc <= 0) {
				int t = tls_wait(n, rc, &deadline);
				if (t == -2)
					return fail(n, NET_ETIMEOUT, "timeout writing to %s",
					            n->host);
				if (t < 0)
					return fail(n, NET_EIO, "TLS write to %s: %s", n->host,
					            ssl_error());
				continue;
			}
			w = rc;
		} else {
			w = send(n->fd, p, len, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EINTR) {
					if (wait_fd(n->fd, POLLOUT, &deadline) < 0)
						return fail(n, NET_ETIMEOUT,
						            "timeout writing to %s", n->host);
					continue;
				}
				return fail(n, NET_EIO, "write to %s: %s", n->host,
				            strerror(errno));
			}
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int
fill(struct net *n, const struct timespec *deadline)
{
	for (;;) {
		ssize_t r;
		if (n->ssl != NULL) {
			int rc = SSL_read(n->ssl, n->rbuf, sizeof(n->rbuf));
			if (rc <= 0) {
				int err = SSL_get_error(n->ssl, rc);
				if (err == SSL_ERROR_ZERO_RETURN)
					return fail(n, NET_ECLOSED, "%s closed the connection",
					            n->host);
				int t = tls_wait(n, rc, deadline);
				if (t == -2)
					return fail(n, NET_ETIMEOUT, "timeout reading from %s",
					            n->host);
				if (t < 0)
					return fail(n, NET_ECLOSED,
					            "%s closed the connection (TLS: %s)", n->host,
					            ssl_error());
				continue;
			}
			r = rc;
		} else {
			r = recv(n->fd, n->rbuf, sizeof(n->rbuf), 0);
			if (r < 0) {
				if (errno == EAGAIN || errno == EINTR) {
					if (wait_fd(n->fd, POLLIN, deadline) < 0)
						return fail(n, NET_ETIMEOUT,
						            "timeout reading from %s", n->host);
					continue;
				}
				return fail(n, NET_EIO, "read from %s: %s", n->host,
				            strerror(errno));
			}
			if (r == 0)
				return fail(n, NET_ECLOSED, "%s closed the connection", n->host);
		}
		n->rlen = (size_t)r;
		n->roff = 0;
		return 0;
	}
}

int
net_readline(struct net *n, char *buf, size_t size, int timeout)
{
	struct timespec deadline;
	size_t len = 0;

	deadline_in(&deadline, timeout);
	for (;;) {
		if (n->roff >= n->rlen && fill(n, &deadline) < 0)
			return -1;
		while (n->roff < n->rlen) {
			char c = n->rbuf[n->roff++];
			if (c == '\n') {
				if (len > 0 && buf[len - 1] == '\r')
					len--;
				buf[len] = '\0';
				return (int)len;
			}
			if (len + 1 >= size)
				return fail(n, NET_EPROTO, "%s sent a line longer than %zu bytes",
				            n->host, size);
			buf[len++] = c;
		}
	}
}

void
net_close(struct net *n)
{
	if (n->ssl != NULL) {
		SSL_shutdown(n->ssl);
		SSL_free(n->ssl);
		n->ssl = NULL;
	}
	if (n->ctx != NULL) {
		SSL_CTX_free(n->ctx);
		n->ctx = NULL;
	}
	if (n->fd >= 0) {
		close(n->fd);
		n->fd = -1;
	}
	n->tls = n->verified = n->resumed = false;
}
