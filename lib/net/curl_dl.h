/*
 * curl_dl.h - libcurl, loaded when it is first needed.
 *
 * libcurl brings 25 shared libraries on Debian 12 (GnuTLS, Kerberos, LDAP,
 * SSH, RTMP...), and loading them cost every pipe(8) delivery about 12 ms of
 * start-up, for a token fetched about once an hour (issue 17).  No program
 * links libcurl: the first HTTPS request (a token, a Graph call) loads it
 * with dlopen(3) and initialises it, once per process.
 *
 * Include this instead of <curl/curl.h>: the curl_* calls used in the tree
 * then go through the loaded table.  curl_load() must have succeeded first;
 * it says why it could not (libcurl4 not installed, a symbol missing).
 */
#ifndef M3_CURL_DL_H
#define M3_CURL_DL_H

#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

/* The soname Debian's libcurl4 (OpenSSL flavour) installs. */
#ifndef M3_CURL_SONAME
#define M3_CURL_SONAME "libcurl.so.4"
#endif

struct curl_api {
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_reset)(CURL *);
	void (*easy_cleanup)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	char *(*easy_escape)(CURL *, const char *, int);
	void (*free)(void *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
};
extern struct curl_api m3_curl;

/* curl_load - load and initialise libcurl (once); -1 with *why if it cannot be */
int curl_load(const char **why);
/* curl_loaded - whether this process has loaded it (for tests and benchmarks) */
int curl_loaded(void);

/* curl.h defines these two as macros (to count arguments) */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_easy_init      m3_curl.easy_init
#define curl_easy_setopt    m3_curl.easy_setopt
#define curl_easy_perform   m3_curl.easy_perform
#define curl_easy_getinfo   m3_curl.easy_getinfo
#define curl_easy_reset     m3_curl.easy_reset
#define curl_easy_cleanup   m3_curl.easy_cleanup
#define curl_easy_strerror  m3_curl.easy_strerror
#define curl_easy_escape    m3_curl.easy_escape
#define curl_free           m3_curl.free
#define curl_slist_append   m3_curl.slist_append
#define curl_slist_free_all m3_curl.slist_free_all

#endif
