/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: the layout of a layered client's state disk.
 *
 * In layered mode the root is overlayfs over a shared read-only base; the
 * client's own files live on its state disk, an ext4 filesystem whose
 * root holds the overlay's upper and work directories and the identity
 * of the base the client last booted on.  The agent writes it at boot;
 * imgtool upgrade-report and commit --layered read it offline.
 *
 *   /upper     the upper layer: the client's files, whiteouts (character
 *              devices 0/0) and opaque directories (trusted.overlay.opaque
 *              "y") over the base
 *   /work      overlayfs's work directory
 *   /base-id   one line, "size=N sum=HEX desc=DESCRIPTION": DESCRIPTION
 *              is the base export's NBD_INFO_DESCRIPTION, for a version
 *              of an image store "nbdroot-base NAME VERSION sha256:HEX"
 */
#ifndef NBDROOT_LAYERED_STATE_H
#define NBDROOT_LAYERED_STATE_H

#define STATE_UPPER "upper"
#define STATE_WORK "work"
#define STATE_BASE_ID "base-id"
/* what precedes the description in base-id */
#define STATE_BASE_ID_DESC " desc="

#endif
