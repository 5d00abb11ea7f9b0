/*
 * fuzz_dns.c - libFuzzer target for DNS answers (from any domain's name
 * servers): TXT records joined from their strings, with and without the
 * SPF filter, and MX host names.
 *
 *   tests/fuzz/fuzz_dns -max_total_time=60 tests/fuzz/corpus/dns
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/dns.h"
#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
is_spf(const char *t)
{
	return m3_ncasecmp(t, "v=spf1", 6) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char txt[DNS_RECORDS_MAX][DNS_TXT_MAX];
	static char mx[DNS_RECORDS_MAX][DNS_NAME_MAX];
	size_t n, i;

	if (dns_parse_txt(data, size, NULL, txt, DNS_RECORDS_MAX, &n) == 0)
		for (i = 0; i < n; i++)
			if (memchr(txt[i], '\0', DNS_TXT_MAX) == NULL)
				abort();
	if (dns_parse_txt(data, size, is_spf, txt, 2, &n) == 0)
		for (i = 0; i < n; i++)
			if (!is_spf(txt[i]))
				abort();
	if (dns_parse_mx(data, size, mx, DNS_RECORDS_MAX, &n) == 0)
		for (i = 0; i < n; i++)
			if (memchr(mx[i], '\0', DNS_NAME_MAX) == NULL)
				abort();
	return 0;
}
