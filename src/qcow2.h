/*
 * qcow2.h: the little of the qcow2 format qckpt reads and writes itself:
 * a header's backing file and virtual size, and a new empty overlay.
 * QEMU and qemu-img stay the authority on everything else (data, L2
 * tables, snapshots, bitmaps); see QEMU's docs/interop/qcow2.txt.
 */
#ifndef QCOW2_H
#define QCOW2_H

#include <stdint.h>

/*
 * The backing file named in a qcow2 header (magic "QFI\xfb", offset at
 * byte 8 and size at byte 16, big-endian): 0 with *backing a new string,
 * or NULL when the image has none; -EINVAL when PATH is not qcow2; -errno.
 */
int qcow2_backing_file(const char *path, char **backing);

/*
 * The size of the disk an image of FORMAT ("qcow2" or "raw") holds, as
 * QEMU sees it: a qcow2 header's size field, a raw file's length rounded
 * up to a 512-byte sector.  0, -EINVAL (not that format), or -errno.
 */
int qcow2_disk_size(const char *path, const char *format, uint64_t *size);

/*
 * Create PATH (which must not exist) as an empty qcow2 v3 overlay of SIZE
 * bytes on BACKING, an image of BACKING_FORMAT, laid out as
 * `qemu-img create -f qcow2 -b BACKING -F BACKING_FORMAT PATH` lays it out
 * (64 KiB clusters, 16-bit refcounts, header, refcount table, refcount
 * block, L1 table), and fsync it.  Blocking: call it from the thread pool.
 * 0, or -errno with no file left behind (-EEXIST: PATH was there, and is
 * left alone).
 */
int qcow2_create_overlay(const char *path, const char *backing,
			 const char *backing_format, uint64_t size);

#endif
