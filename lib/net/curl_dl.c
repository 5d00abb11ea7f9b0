/*
 * curl_dl.c - load libcurl on first use (curl_dl.h says why).
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>

#include "curl_dl.h"

struct curl_api m3_curl;

static int state; /* 0 not tried, 1 loaded, -1 failed */
static char failure[256];

int
curl_loaded(void)
{
	return state == 1;
}

int
curl_load(const char **why)
{
	CURLcode (*global_init)(long);
	void *h;

	if (state != 0) {
		*why = failure;
		return state == 1 ? 0 : -1;
	}
	state = -1;
	h = dlopen(M3_CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(failure, sizeof(failure), "cannot load %s (install libcurl4): %s",
		         M3_CURL_SONAME, dlerror());
		*why = failure;
		return -1;
	}
#define SYM(field, name)                                                                           \
	do {                                                                                       \
		*(void **)&m3_curl.field = dlsym(h, name);                                         \
		if (m3_curl.field == NULL)                                                         \
			goto missing;                                                              \
	} while (0)
	SYM(easy_init, "curl_easy_init");
	SYM(easy_setopt, "curl_easy_setopt");
	SYM(easy_perform, "curl_easy_perform");
	SYM(easy_getinfo, "curl_easy_getinfo");
	SYM(easy_reset, "curl_easy_reset");
	SYM(easy_cleanup, "curl_easy_cleanup");
	SYM(easy_strerror, "curl_easy_strerror");
	SYM(easy_escape, "curl_easy_escape");
	SYM(free, "curl_free");
	SYM(slist_append, "curl_slist_append");
	SYM(slist_free_all, "curl_slist_free_all");
#undef SYM
	*(void **)&global_init = dlsym(h, "curl_global_init");
	if (global_init == NULL)
		goto missing;
	if (global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(failure, sizeof(failure), "%s: curl_global_init failed", M3_CURL_SONAME);
		*why = failure;
		return -1;
	}
	state = 1;
	*why = "";
	return 0;
missing:
	snprintf(failure, sizeof(failure), "%s: a function is missing: %s", M3_CURL_SONAME,
	         dlerror());
	*why = failure;
	return -1;
}
