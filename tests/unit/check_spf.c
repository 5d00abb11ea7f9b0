/*
 * check_spf.c - SPF and MX inspection against canned zones: our reading of
 * the record (count, Microsoft include, look-ups, +all, the suggestion)
 * from a table, libspf2's verdict from its zone resolver fed the same
 * table.  Also the certificate name rule of the connector.
 */
#include "config.h"

#include <check.h>

#include "common.h"
#include <string.h>

#include "net/certcheck.h"
#include "net/dns.h"
#include "net/spf.h"

#define EGRESS "203.0.113.7"
#define M365   "v=spf1 ip4:40.92.0.0/15 ip4:52.100.0.0/14 -all"

static const struct dns_fake_rr zone[] = {
    {"spf.protection.outlook.com", "TXT", M365},
    {"pass.test", "TXT", "v=spf1 ip4:203.0.113.7 include:spf.protection.outlook.com -all"},
    {"pass.test", "TXT", "google-site-verification=abc"},
    {"noinclude.test", "TXT", "v=spf1 ip4:203.0.113.0/24 -all"},
    {"notlisted.test", "TXT", "v=spf1 ip4:198.51.100.0/24 include:spf.protection.outlook.com ~all"},
    {"norecord.test", "TXT", "ms=ms12345"},
    {"two.test", "TXT", "v=spf1 ip4:203.0.113.7 -all"},
    {"two.test", "TXT", "v=spf1 include:spf.protection.outlook.com -all"},
    {"plusall.test", "TXT", "v=spf1 include:spf.protection.outlook.com +all"},
    {"nested.test", "TXT", "v=spf1 include:_spf.nested.test -all"},
    {"_spf.nested.test", "TXT", "v=spf1 ip4:203.0.113.7 include:spf.protection.outlook.com -all"},
    {"many.test", "TXT",
     "v=spf1 ip4:203.0.113.7 include:a.many.test include:b.many.test "
     "include:spf.protection.outlook.com mx a ~all"},
    {"a.many.test", "TXT", "v=spf1 a:h1.many.test a:h2.many.test a:h3.many.test -all"},
    {"b.many.test", "TXT", "v=spf1 a:h4.many.test a:h5.many.test exists:h6.many.test -all"},
    {"v6.test", "TXT", "v=spf1 ip6:2001:db8::/32 include:spf.protection.outlook.com -all"},
    /* includes itself 12 times: 12^10 walks without a bound */
    {"loop.test", "TXT",
     "v=spf1 include:loop.test include:loop.test include:loop.test "
     "include:loop.test include:loop.test include:loop.test "
     "include:loop.test include:loop.test include:loop.test "
     "include:loop.test include:loop.test include:loop.test -all"},
};
#define NZONE (sizeof(zone) / sizeof(zone[0]))

static struct dns *dns;
static void *z;

static void
setup(void)
{
	dns = dns_fake(zone, NZONE);
	z = spf_zone_new(zone, NZONE);
	ck_assert_ptr_nonnull(dns);
	ck_assert_ptr_nonnull(z);
}

static void
teardown(void)
{
	dns_free(dns);
	spf_zone_free(z);
}

static void
inspect(const char *domain, const char *ip, struct spf_report *r)
{
	struct spf_err err;

	ck_assert_msg(spf_inspect(dns, z, domain, ip, r, &err) == 0, "%s", err.msg);
}

START_TEST(test_pass)
{
	struct spf_report r;

	inspect("pass.test", EGRESS, &r);
	ck_assert_uint_eq(r.n_records, 1);
	ck_assert(r.has_m365_include);
	ck_assert(r.pass);
	ck_assert_str_eq(r.result, "pass");
	ck_assert(!r.plus_all);
	ck_assert_int_eq(r.lookups, 1);
	ck_assert_str_eq(r.suggestion, "");
}
END_TEST

START_TEST(test_missing_include)
{
	struct spf_report r;

	inspect("noinclude.test", EGRESS, &r);
	ck_assert(r.pass);
	ck_assert(!r.has_m365_include);
	/* existing mechanisms kept, a strict -all kept */
	ck_assert_str_eq(r.suggestion,
	                 "v=spf1 ip4:203.0.113.0/24 include:spf.protection.outlook.com -all");
}
END_TEST

START_TEST(test_not_listed)
{
	struct spf_report r;

	inspect("notlisted.test", EGRESS, &r);
	ck_assert(!r.pass);
	ck_assert_str_eq(r.result, "softfail");
	ck_assert(r.has_m365_include);
	ck_assert_str_eq(r.suggestion, "v=spf1 ip4:203.0.113.7 ip4:198.51.100.0/24 "
	                               "include:spf.protection.outlook.com ~all");
	/* IPv6 egress gets an ip6: mechanism */
	inspect("v6.test", "2001:db9::1", &r);
	ck_assert(!r.pass);
	ck_assert_str_eq(r.suggestion, "v=spf1 ip6:2001:db9::1 ip6:2001:db8::/32 "
	                               "include:spf.protection.outlook.com -all");
	inspect("v6.test", "2001:db8::25", &r);
	ck_assert(r.pass);
}
END_TEST

START_TEST(test_no_record)
{
	struct spf_report r;

	inspect("norecord.test", EGRESS, &r);
	ck_assert_uint_eq(r.n_records, 0);
	ck_assert(!r.pass);
	ck_assert_str_eq(r.result, "none");
	ck_assert_str_eq(r.suggestion,
	                 "v=spf1 ip4:203.0.113.7 include:spf.protection.outlook.com ~all");
	inspect("nxdomain.test", EGRESS, &r);
	ck_assert_uint_eq(r.n_records, 0);
	ck_assert(!r.pass);
}
END_TEST

START_TEST(test_two_records)
{
	struct spf_report r;

	inspect("two.test", EGRESS, &r);
	ck_assert_uint_eq(r.n_records, 2);
	ck_assert(!r.pass); /* RFC 7208 4.5: permerror */
	ck_assert_str_eq(r.result, "permerror");
	/* the merge keeps both records' mechanisms, once each */
	ck_assert_str_eq(r.suggestion, "v=spf1 ip4:203.0.113.7 "
	                               "include:spf.protection.outlook.com -all");
}
END_TEST

START_TEST(test_too_many_lookups)
{
	struct spf_report r;

	inspect("many.test", EGRESS, &r);
	/* include a, include b, include m365, mx, a, 3 a: in a, 3 in b */
	ck_assert_int_eq(r.lookups, 11);
	ck_assert(r.has_m365_include);
	inspect("nested.test", EGRESS, &r);
	ck_assert_int_eq(r.lookups, 2);
	ck_assert(r.has_m365_include); /* found through a nested include */
	ck_assert(r.pass);
	/* A hostile record cannot make the walk explode: it stops past 10. */
	inspect("loop.test", EGRESS, &r);
	ck_assert_int_gt(r.lookups, SPF_MAX_LOOKUPS);
	ck_assert_int_lt(r.lookups, 200);
}
END_TEST

START_TEST(test_plus_all)
{
	struct spf_report r;

	inspect("plusall.test", "192.0.2.99", &r);
	ck_assert(r.plus_all);
	ck_assert(r.pass); /* anybody passes: that is the problem */
	ck_assert_str_eq(r.suggestion, "v=spf1 include:spf.protection.outlook.com ~all");
}
END_TEST

START_TEST(test_mx_form)
{
	char buf[300];
	char mx[4][DNS_NAME_MAX];
	struct dns_err err;
	struct spf_err serr;
	struct spf_report r;
	size_t n;
	static const struct dns_fake_rr mxz[] = {
	    {"contoso.com", "MX", "contoso-com.mail.protection.outlook.com"},
	    {"dead.test", "SERVFAIL", ""}};
	struct dns *d = dns_fake(mxz, 2);

	mx_endpoint_form("contoso.com", buf, sizeof(buf));
	ck_assert_str_eq(buf, "contoso-com.mail.protection.outlook.com");
	mx_endpoint_form("Sub.Fabrikam.co.uk", buf, sizeof(buf));
	ck_assert_str_eq(buf, "sub-fabrikam-co-uk.mail.protection.outlook.com");
	ck_assert_int_eq(dns_mx(d, "CONTOSO.com", mx, 4, &n, &err), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(mx[0], "contoso-com.mail.protection.outlook.com");
	ck_assert_int_eq(dns_mx(d, "fabrikam.com", mx, 4, &n, &err), 0);
	ck_assert_uint_eq(n, 0);
	/* A name server that fails is a temporary error, not "no records",
	 * and SPF passes the code on. */
	ck_assert_int_eq(dns_mx(d, "dead.test", mx, 4, &n, &err), -1);
	ck_assert_int_eq(err.code, DNS_ETEMP);
	ck_assert_int_eq(spf_inspect(d, NULL, "dead.test", NULL, &r, &serr), -1);
	ck_assert_int_eq(serr.code, SPF_ETEMP);
	ck_assert_ptr_nonnull(strstr(serr.msg, "dead.test"));
	dns_free(d);
}
END_TEST

START_TEST(test_cert_names)
{
	ck_assert(cert_name_in_domain("contoso.com", "contoso.com"));
	ck_assert(cert_name_in_domain("relay.contoso.com", "contoso.com"));
	ck_assert(cert_name_in_domain("RELAY.Contoso.COM", "contoso.com"));
	ck_assert(cert_name_in_domain("*.contoso.com", "contoso.com"));
	ck_assert(cert_name_in_domain("relay.contoso.com", "*.contoso.com"));
	ck_assert(!cert_name_in_domain("relaycontoso.com", "contoso.com"));
	ck_assert(!cert_name_in_domain("contoso.com.evil.net", "contoso.com"));
	ck_assert(!cert_name_in_domain("relay*.contoso.com", "contoso.com"));
	ck_assert(!cert_name_in_domain("*contoso.com", "contoso.com"));
	ck_assert(!cert_name_in_domain("*.com", "contoso.com"));
}
END_TEST

int
main(void)
{
	static const struct check_suite suite = {"spf", "zone", setup, teardown, 0};
	const struct check_test tests[] = {
	    CHECK_TEST(test_pass),        CHECK_TEST(test_missing_include),
	    CHECK_TEST(test_not_listed),  CHECK_TEST(test_no_record),
	    CHECK_TEST(test_two_records), CHECK_TEST(test_too_many_lookups),
	    CHECK_TEST(test_plus_all),    CHECK_TEST(test_mx_form),
	    CHECK_TEST(test_cert_names)};

	return check_main(&suite, tests, CHECK_ROWS(tests));
}
