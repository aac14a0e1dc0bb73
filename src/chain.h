/*
 * chain.h: a disk's image chain as vm.json records it ("Chain": [oldest ..
 * active]) held against the files: every image there, each overlay's qcow2
 * header naming the image below it.  `qckpt run` refuses to launch on a
 * chain that disagrees, `qckpt disks` reports it.
 */
#ifndef CHAIN_H
#define CHAIN_H

#include <stddef.h>
#include <jansson.h>

#include "qcow2.h" /* qcow2_backing_file, which every user of chains needs */

/* The backing name BACKING of OVERLAY as a path, as QEMU takes it: a
 * relative name against the overlay's directory.  New string. */
char *chain_backing_path(const char *overlay, const char *backing);

/* Whether two paths name one file: the same string, or the same inode. */
int chain_same_file(const char *a, const char *b);

/* Whether IMAGE is the disk's OriginalImage or in its Chain. */
int chain_names(json_t *disk, const char *image);

/*
 * Check a vm.json disk: a Chain that starts at OriginalImage and ends at
 * ActiveImage, every image present, each overlay's header naming the
 * image below it (a relative backing name is taken against the overlay's
 * directory, as QEMU does).  0, or -1 with what is wrong in err (no
 * advice: the caller knows what the user should do).
 */
int chain_check(json_t *disk, char *err, size_t errlen);

/*
 * The chain below IMAGE read from the qcow2 headers: [bottom .. IMAGE],
 * each backing name taken as QEMU does.  NULL with the reason in err (a
 * file in the chain unreadable, a loop).
 */
json_t *chain_from_image(const char *image, char *err, size_t errlen);

#endif
