/*
 * net.h - one connection to a Microsoft 365 endpoint: TCP by name (every
 * address in turn), then optionally TLS, behind one read/write interface
 * with a deadline on every operation.
 *
 * TLS is OpenSSL with TLS >= 1.2, certificate and host name verification
 * against the system store or a configured CA file, SNI, an optional client
 * certificate (certificate connectors) and session resumption from a cache
 * file per endpoint (pipe(8) starts a process per delivery: a resumed
 * handshake saves a round trip and the server's signature).
 *
 * Errors: functions return 0 or -1 with a message in net->err; a timeout
 * says so.  Nothing exits.
 */
#ifndef M3_NET_H
#define M3_NET_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

struct tls_opts {
	const char *ca_file;	   /* NULL: the system store */
	const char *cert_file;	   /* client certificate, or NULL */
	const char *key_file;
	const char *session_cache; /* file for this endpoint's session, or NULL */
	bool verify;		   /* false only for opportunistic TLS */
};

struct net {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	char host[256];	 /* the name we connected to (SNI, verification) */
	char peer[64];	 /* address actually connected */
	char rbuf[8192]; /* read buffer */
	size_t rlen, roff;
	char err[512];
	bool resumed;	    /* the TLS session was resumed */
	const char *tls_version;
	const char *session_cache;
};

/* net_connect - connect to host:port by name, each address in turn, within timeout seconds each */
int net_connect(struct net *n, const char *host, unsigned port, int timeout);
/* net_starttls - TLS handshake on the connection */
int net_starttls(struct net *n, const struct tls_opts *o, int timeout);
/* net_write - write all of buf within timeout */
int net_write(struct net *n, const void *buf, size_t len, int timeout);
/* net_readline - one line (CRLF or LF, stripped) into buf; -1 on error/timeout/EOF or a line too long */
int net_readline(struct net *n, char *buf, size_t size, int timeout);
/* net_close - close (and free TLS state) */
void net_close(struct net *n);
/* net_init - zero a struct net */
void net_init(struct net *n);

#endif
