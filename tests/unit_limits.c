/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests of nbdsrv's connection limits (nbdsrv/limits.c), one
 * function per property:
 *  - max-connections-per-address counts an IPv4 address by itself;
 *  - it counts an IPv6 address by its /64 (one host may take a new
 *    address of its /64 for every connection), and another /64 apart;
 *  - leaving frees the slot; max-connections bounds the total.
 */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include "nbdsrv.h"
#include "unit.h"
#include "util.h"

struct config config;

static void
test_ipv4_per_address(void)
{
  config.max_conns = 0;
  config.max_conns_per_addr = 2;
  CHECK(!limits_enter("192.0.2.1") && !limits_enter("192.0.2.1"), "two from one address");
  CHECK(limits_enter("192.0.2.1") != NULL, "a third from one IPv4 address is refused");
  CHECK(!limits_enter("192.0.2.2"), "another IPv4 address is counted apart");
  limits_leave("192.0.2.1");
  CHECK(!limits_enter("192.0.2.1"), "a slot left is free again");
  limits_leave("192.0.2.1");
  limits_leave("192.0.2.1");
  limits_leave("192.0.2.2");
}

static void
test_ipv6_per_64(void)
{
  config.max_conns = 0;
  config.max_conns_per_addr = 2;
  CHECK(!limits_enter("2001:db8:1:2::1") &&
            !limits_enter("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
        "two addresses of one /64");
  CHECK(limits_enter("2001:db8:1:2:ffff::7") != NULL,
        "a third address of the same /64 is refused");
  CHECK(!limits_enter("2001:db8:1:3::1"), "the next /64 is counted apart");
  limits_leave("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
  CHECK(!limits_enter("2001:db8:1:2::99"), "a slot of the /64 left is free again");
  limits_leave("2001:db8:1:2::1");
  limits_leave("2001:db8:1:2::99");
  limits_leave("2001:db8:1:3::1");
}

static void
test_total(void)
{
  config.max_conns = 3;
  config.max_conns_per_addr = 0;
  CHECK(!limits_enter("192.0.2.1") && !limits_enter("192.0.2.2") &&
            !limits_enter("2001:db8::1"),
        "three in all");
  CHECK(limits_enter("192.0.2.4") != NULL, "a fourth is refused by max-connections");
  limits_leave("192.0.2.2");
  CHECK(!limits_enter("192.0.2.4"), "a slot left is free again");
  limits_leave("192.0.2.1");
  limits_leave("192.0.2.4");
  limits_leave("2001:db8::1");
}

static const struct {
  const char *name;
  void (*run)(void);
} tests[] = {
  { "an IPv4 address is counted by itself", test_ipv4_per_address },
  { "an IPv6 address is counted by its /64", test_ipv6_per_64 },
  { "max-connections bounds the total", test_total },
};

int
main(void)
{
  for (size_t i = 0; i < ARRAY_SIZE(tests); i++) {
    int before = failures;
    tests[i].run();
    printf("%s: %s\n", failures == before ? "ok" : "FAIL", tests[i].name);
  }
  if (failures) {
    fprintf(stderr, "unit_limits: %d checks failed\n", failures);
    return 1;
  }
  printf("unit_limits: all %zu properties hold\n", ARRAY_SIZE(tests));
  return 0;
}
