/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: the few Linux netlink ABI definitions it needs.
 *
 * musl-gcc does not see the kernel's UAPI headers, so the agent carries
 * these stable ABI values itself (from include/uapi/linux/netlink.h,
 * genetlink.h and nbd-netlink.h).  The NBD generic-netlink commands are
 * prefixed NBDNL_ so they never collide with the wire NBD_CMD_* values.
 */
#ifndef NBDROOT_AGENT_UAPI_H
#define NBDROOT_AGENT_UAPI_H

#include <stdint.h>
#include <sys/socket.h>

#ifndef AF_NETLINK
#define AF_NETLINK 16
#endif
#define NETLINK_GENERIC 16
#define SOL_NETLINK 270
#define NETLINK_ADD_MEMBERSHIP 1

struct sockaddr_nl {
  sa_family_t nl_family;
  unsigned short nl_pad;
  uint32_t nl_pid;
  uint32_t nl_groups;
};

struct nlmsghdr {
  uint32_t nlmsg_len;
  uint16_t nlmsg_type;
  uint16_t nlmsg_flags;
  uint32_t nlmsg_seq;
  uint32_t nlmsg_pid;
};

struct nlmsgerr {
  int error;
  struct nlmsghdr msg;
};

struct nlattr {
  uint16_t nla_len;
  uint16_t nla_type;
};

struct genlmsghdr {
  uint8_t cmd;
  uint8_t version;
  uint16_t reserved;
};

#define NLM_F_REQUEST 0x01
#define NLM_F_ACK 0x04
#define NLMSG_ERROR 0x2
#define NLMSG_DONE 0x3
#define NLA_F_NESTED (1 << 15)
#define NLA_TYPE_MASK 0x3fff
#define NL_ALIGN(len) (((len) + 3u) & ~3u)

#define GENL_ID_CTRL 0x10
#define CTRL_CMD_GETFAMILY 3
#define CTRL_ATTR_FAMILY_ID 1
#define CTRL_ATTR_FAMILY_NAME 2
#define CTRL_ATTR_MCAST_GROUPS 7
#define CTRL_ATTR_MCAST_GRP_NAME 1
#define CTRL_ATTR_MCAST_GRP_ID 2

#define NBD_GENL_NAME "nbd"
#define NBD_GENL_VER 1
#define NBD_GENL_MCAST "nbd_mc_group"

enum {
  NBDNL_ATTR_UNSPEC,
  NBDNL_ATTR_INDEX,
  NBDNL_ATTR_SIZE_BYTES,
  NBDNL_ATTR_BLOCK_SIZE_BYTES,
  NBDNL_ATTR_TIMEOUT,
  NBDNL_ATTR_SERVER_FLAGS,
  NBDNL_ATTR_CLIENT_FLAGS,
  NBDNL_ATTR_SOCKETS,
  NBDNL_ATTR_DEAD_CONN_TIMEOUT,
};

#define NBDNL_SOCK_ITEM 1
#define NBDNL_SOCK_FD 1

enum {
  NBDNL_CMD_UNSPEC,
  NBDNL_CMD_CONNECT,
  NBDNL_CMD_DISCONNECT,
  NBDNL_CMD_RECONFIGURE,
  NBDNL_CMD_LINK_DEAD,
  NBDNL_CMD_STATUS,
};

#endif
