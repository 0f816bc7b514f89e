/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit test of client IDs (common/export-name.c):
 *  - a MAC in any spelling (':' or '-', any case) becomes the canonical
 *    "40-01-1c-47-44-1e", which stays as it is;
 *  - IDs that are not MAC-shaped are left alone, among them IPv4 and
 *    IPv6 addresses, however they are written: no IP address is
 *    MAC-shaped, and no MAC-shaped ID is an IP address;
 *  - the export-name parser hands out the canonical ID, and leaves the
 *    export name and the boot id as they were sent.
 */
#include <config.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export-name.h"
#include "unit.h"
#include "util.h"

static void
check_normalize(const char *in, const char *want)
{
  char id[CLIENT_ID_MAX + 1];
  bool changed;

  snprintf(id, sizeof id, "%s", in);
  changed = client_id_normalize(id);
  CHECK(strcmp(id, want) == 0, "'%s' became '%s', expected '%s'", in, id, want);
  CHECK(changed == (strcmp(in, want) != 0), "'%s': normalize returned %d", in, changed);
  CHECK(!client_id_normalize(id), "'%s': the canonical '%s' changed again", in, id);
}

static bool
is_ip(const char *s)
{
  unsigned char buf[16];

  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void
check_macs(void)
{
  static const char *const spellings[] = {
    "40:01:1c:47:44:1e", "40:01:1C:47:44:1E", "40-01-1C-47-44-1E",
    "40-01-1c-47-44-1e", "40:01-1c:47-44:1E",
  };

  for (size_t i = 0; i < ARRAY_SIZE(spellings); i++) {
    check_normalize(spellings[i], "40-01-1c-47-44-1e");
    CHECK(client_id_is_mac(spellings[i], strlen(spellings[i])), "'%s' is not MAC-shaped",
          spellings[i]);
    CHECK(!is_ip(spellings[i]), "'%s' parses as an IP address", spellings[i]);
  }
  check_normalize("AB:CD:EF:0A:9B:FF", "ab-cd-ef-0a-9b-ff");
}

static void
check_others(void)
{
  static const char *const others[] = {
    /* near misses */
    "40:01:1c:47:44",
    "40:01:1c:47:44:1e:",
    "40:01:1c:47:44:1g",
    "40:01:1c:47:44:1E0",
    "0:01:1c:47:44:1e",
    "40.01.1c.47.44.1e",
    "4001.1c47.441e",
    "40011C47441E",
    "40_01_1C_47_44_1E",
    "40::01:1c:47:44:1",
    ":40:01:1c:47:44:1",
    /* names */
    "Lab-PC-07",
    "client.A",
    "A",
    /* addresses */
    "127.0.0.1",
    "10.0.2.15",
    "::1",
    "FE80::1",
    "2001:DB8::AB:CD",
    "::ffff:192.0.2.1",
    "AA:BB:CC:DD:EE:FF:0:1",
    "a:b:c:d:e:f:1:2",
    "ab:cd:ef:1:2:3::",
    "::ab:cd:ef:01:23",
  };

  for (size_t i = 0; i < ARRAY_SIZE(others); i++) {
    check_normalize(others[i], others[i]);
    CHECK(!client_id_is_mac(others[i], strlen(others[i])), "'%s' is MAC-shaped",
          others[i]);
  }
}

/* Random IPv6 addresses, with runs of zero groups for "::" and groups
 * under 0x100 for two-digit groups: none comes out MAC-shaped. */
static void
check_random_addresses(void)
{
  unsigned seed = 7;

  for (int round = 0; round < 100000; round++) {
    unsigned char a[16];
    char s[INET6_ADDRSTRLEN];

    for (int i = 0; i < 16; i++)
      a[i] = rand_r(&seed) % 4 == 0 ? (unsigned char)rand_r(&seed) : 0;
    inet_ntop(AF_INET6, a, s, sizeof s);
    CHECK(!client_id_is_mac(s, strlen(s)), "IPv6 address %s is MAC-shaped", s);
    inet_ntop(AF_INET, a, s, sizeof s);
    CHECK(!client_id_is_mac(s, strlen(s)), "IPv4 address %s is MAC-shaped", s);
  }
}

static void
check_parse(const char *wire, const char *name, const char *id, const char *boot_id)
{
  struct export_request req;
  const char *why = NULL;
  int r = export_request_parse(wire, strlen(wire), &req, &why);

  CHECK(r == 0, "'%s': refused: %s", wire, why ? why : "?");
  if (r < 0)
    return;
  CHECK(strcmp(req.name, name) == 0, "'%s': name '%s'", wire, req.name);
  CHECK(strcmp(req.id, id) == 0, "'%s': id '%s', expected '%s'", wire, req.id, id);
  CHECK(strcmp(req.boot_id, boot_id) == 0, "'%s': boot id '%s'", wire, req.boot_id);
}

int
main(void)
{
  check_macs();
  check_others();
  check_random_addresses();
  check_parse("lab@40:01:1C:47:44:1E,boot=AB:CD", "lab", "40-01-1c-47-44-1e", "AB:CD");
  check_parse("lab@40-01-1c-47-44-1e", "lab", "40-01-1c-47-44-1e", "");
  check_parse("Lab@AA-BB-CC-DD-EE-FF,boot=0f", "Lab", "aa-bb-cc-dd-ee-ff", "0f");
  check_parse("lab@FE80::1", "lab", "FE80::1", "");
  check_parse("lab@Host-7", "lab", "Host-7", "");
  check_parse("lab", "lab", "", "");

  if (failures) {
    fprintf(stderr, "unit_export_name: %d failures\n", failures);
    return 1;
  }
  printf("unit_export_name: all checks passed\n");
  return 0;
}
