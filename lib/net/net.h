/*
 * lib/net/ - everything that talks to the network: TCP and TLS (net.h),
 * the SMTP client (smtp.h) and what its replies mean (outcome.h), DNS
 * (dns.h), SPF (spf.h, spfgate.h), certificates (certcheck.h), the OAuth
 * token endpoint and cache (oauth.h).  May include util/, addr/ and conf/;
 * never policy/ or store/.
 *
 * net.h - one connection to a Microsoft 365 endpoint: TCP by name (every
 * address in turn), then optionally TLS, behind one read/write interface
 * with a deadline on every operation.
 *
 * TLS is OpenSSL with TLS >= 1.2, certificate and host name verification
 * against the system store or a configured CA file, SNI, an optional client
 * certificate (certificate connectors) and session resumption from a cache
 * file (pipe(8) starts a process per delivery: a resumed handshake saves a
 * round trip and the server's signature).  A session is cached only from a
 * verified handshake, and under a name made from everything that verified
 * it (host, port, CA, client certificate): a session from an unverified
 * (opportunistic) handshake can never be resumed where verification is
 * required.  After every verified handshake, resumed or not, the
 * verification result is checked again.
 *
 * The CA file (or store) and the client certificate are read only when
 * the handshake needs them - the server's chain to verify, the server
 * asking for a certificate - so a resumed session reads neither (about
 * 1.5 ms of a 20 ms pipe(8) delivery).  A CA, certificate or key that
 * cannot be used fails that handshake with NET_ETLSCONF and its own
 * message, as before.
 *
 * Errors: functions return 0 or -1 with a message in net->err; a timeout
 * says so.  Nothing exits.
 */
#ifndef M3_NET_H
#define M3_NET_H

#include <stdbool.h>
#include <stddef.h>

struct tls_opts {
	const char *ca_file;   /* NULL: the system store */
	const char *cert_file; /* client certificate, or NULL */
	const char *key_file;
	const char *cache_dir; /* where sessions are kept, or NULL for none */
	bool verify;           /* false only for opportunistic TLS */
};

struct ssl_ctx_st;
struct ssl_st;

/* What went wrong, for decisions (err is for people). */
enum net_code {
	NET_OK,
	NET_ERESOLVE, /* the name does not resolve */
	NET_ECONNECT, /* no address of it accepted the connection */
	NET_ETLSCONF, /* our side of TLS: CA file, client certificate, key */
	NET_ETLS,     /* the handshake failed or the peer is not trusted */
	NET_ETIMEOUT, /* the peer did not answer in time */
	NET_ECLOSED,  /* the peer closed the connection */
	NET_EIO,      /* a read or write failed */
	NET_EPROTO,   /* the peer broke the protocol (a line too long, a bad reply) */
	NET_ELOCAL,   /* refused on our side before sending (a bad command, memory) */
};

struct net {
	int fd;
	enum net_code code;     /* of the last failure */
	struct ssl_ctx_st *ctx; /* OpenSSL's, private to net.c */
	struct ssl_st *ssl;
	char host[256]; /* the name we connected to (SNI, verification) */
	unsigned port;
	char peer[64];   /* address actually connected */
	char rbuf[8192]; /* read buffer */
	size_t rlen, roff;
	char err[512];
	bool tls;      /* the connection is under TLS */
	bool verified; /* ... with the peer's certificate verified */
	bool resumed;  /* the TLS session was resumed */
	const char *tls_version;
	char session_cache[1100]; /* this connection's cache file, "" for none */
	/* During the handshake: what the callbacks load on demand, and
	 * whether one of them failed (its message is in err). */
	const struct tls_opts *tls_o;
	bool ca_loaded, local_failed;
};

/* net_connect - connect to host:port by name, each address in turn, within timeout seconds each */
int net_connect(struct net *n, const char *host, unsigned port, int timeout);
/* net_starttls - TLS handshake on the connection */
int net_starttls(struct net *n, const struct tls_opts *o, int timeout);
/* net_write - write all of buf within timeout */
int net_write(struct net *n, const void *buf, size_t len, int timeout);
/* net_readline - one line (CRLF or LF, stripped) into buf; -1 on error/timeout/EOF or a line too
 * long */
int net_readline(struct net *n, char *buf, size_t size, int timeout);
/* net_close - close (and free TLS state) */
void net_close(struct net *n);
/* net_peer_names - the server certificate's CN and DNS names, ", " between ("" if none) */
void net_peer_names(const struct net *n, char *buf, size_t size);
/* net_session_file - the cache file for these options and this host:port ("" for none) */
void net_session_file(const struct tls_opts *o, const char *host, unsigned port, char *buf,
                      size_t size);
/* net_init - zero a struct net */
void net_init(struct net *n);
/* net_moved - after a struct net was copied to n (a kept session): what
 * OpenSSL calls back with (a late session ticket) points to n */
void net_moved(struct net *n);
/* net_prepare - make one TLS context ahead, before a fork (the handoff
 * daemon: transport/forkserver.c); the next handshake in each forked
 * process takes it instead of making its own.  0, or -1 if it could not
 * be made (the handshake then makes its own) */
int net_prepare(void);

#endif
