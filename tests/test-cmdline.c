/*
 * test-cmdline.c: unit tests of src/cmdline.c (reading and rewriting QEMU
 * command lines as QEMU reads them), src/chain.c (qcow2 headers, chains
 * in vm.json against the files), src/qcow2.c (new overlays, held
 * against qemu-img's own) and src/memsum.c (memory-state checksums).  No QEMU needed: qcow2 headers are written by
 * hand, and qemu-img reads what qcow2.c writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chain.h"
#include "cmdline.h"
#include "memsum.h"
#include "qcow2.h"
#include "testutil.h"
#include "util.h"

static char tmpdir[] = "/tmp/qckpt-test-cmdline-XXXXXX";

static void from_words(struct cmdline *c, const char *const *words)
{
	size_t n = 0;

	while (words[n])
		n++;
	cmdline_init(c, (char *const *)words, n);
}

static void test_qopts_parse_doubles_commas_and_keeps_the_implied_key(void **state)
{
	struct qopts o;
	char *text;

	qopts_parse("a,,b.img,process=x,debug-threads=on", "guest", &o);
	assert_int_equal(o.n, 3);
	assert_string_equal(qopts_get(&o, "guest"), "a,b.img");
	assert_string_equal(qopts_get(&o, "process"), "x");
	text = qopts_format(&o);
	assert_string_equal(text, "a,,b.img,process=x,debug-threads=on");
	free(text);
	qopts_free(&o);

	qopts_parse("unix:/x,server,nowait", NULL, &o);
	assert_string_equal(qopts_get(&o, "server"), "on"); /* a bare flag */
	assert_true(qopts_true(qopts_get(&o, "server")));
	qopts_free(&o);
}

static void test_options_without_value_do_not_swallow_the_next(void **state)
{
	const char *w[] = { "qemu", "-nodefaults", "-S", "-drive", "file=a.img", "--snapshot",
			    "-append", "-name x", NULL };
	struct cmdline c;
	char *name;

	from_words(&c, w);
	/* "-name x" is -append's value, not a -name */
	name = cmdline_guest_name(&c);
	assert_null(name);
	cmdline_free(&c);
}

static void test_guest_name_from_name_option(void **state)
{
	const char *w[] = { "qemu", "-name", "guest=web,,1,process=p", "-m", "128", NULL };
	const char *w2[] = { "qemu", "--name", "db,debug-threads=on", NULL };
	struct cmdline c;
	char *name;

	from_words(&c, w);
	name = cmdline_guest_name(&c);
	assert_string_equal(name, "web,1");
	free(name);
	cmdline_free(&c);
	from_words(&c, w2);
	name = cmdline_guest_name(&c);
	assert_string_equal(name, "db");
	free(name);
	cmdline_free(&c);
}

static void test_qmp_monitors_are_found_in_every_spelling(void **state)
{
	const char *none[] = { "qemu", "-monitor", "stdio", "-mon", "chardev=c0", NULL };
	const char *qmp[] = { "qemu", "-qmp", "unix:/run/a.qmp,server=on,wait=off", NULL };
	const char *pretty[] = { "qemu", "-qmp-pretty", "unix:/run/b.qmp,server,nowait", NULL };
	const char *client[] = { "qemu", "-qmp", "unix:/run/c.qmp", NULL };
	const char *chardev[] = { "qemu", "-chardev", "socket,id=obs,path=/run/obs",
				  "-mon", "chardev=obs,mode=control",
				  "-chardev", "socket,id=m,path=/run/d,,e.qmp,server=on,wait=off",
				  "-mon", "m,mode=control", NULL };
	const char *tcp[] = { "qemu", "-qmp", "tcp:localhost:4444,server=on,wait=off", NULL };
	struct cmdline c;
	char *addr;

	from_words(&c, none);
	assert_int_equal(cmdline_find_qmp(&c, &addr), 0);
	assert_null(addr);
	cmdline_free(&c);
	from_words(&c, qmp);
	assert_int_equal(cmdline_find_qmp(&c, &addr), 1);
	assert_string_equal(addr, "unix:/run/a.qmp");
	free(addr);
	cmdline_free(&c);
	from_words(&c, pretty);
	assert_int_equal(cmdline_find_qmp(&c, &addr), 1);
	assert_string_equal(addr, "unix:/run/b.qmp");
	free(addr);
	cmdline_free(&c);
	from_words(&c, client);
	assert_int_equal(cmdline_find_qmp(&c, &addr), 1);
	assert_null(addr); /* QEMU connects out: nothing for qckpt to reach */
	cmdline_free(&c);
	from_words(&c, chardev);
	assert_int_equal(cmdline_find_qmp(&c, &addr), 2);
	assert_string_equal(addr, "unix:/run/d,e.qmp"); /* the server one */
	free(addr);
	cmdline_free(&c);
	from_words(&c, tcp);
	assert_int_equal(cmdline_find_qmp(&c, &addr), 1);
	assert_string_equal(addr, "tcp:localhost:4444");
	free(addr);
	cmdline_free(&c);
}

/* The callback of the rewrite tests: "/w/base,x.raw" and "/w/old.qcow2"
 * move to "/w/new,1.qcow2"; "/w/missing.img" is refused. */
static int fake_image(void *arg, const char *image, int writable, char **replacement, char *err,
		      size_t errlen)
{
	int *calls = arg;

	(*calls)++;
	if (strcmp(image, "/w/missing.img") == 0) {
		snprintf(err, errlen, "refused %s", image);
		return -1;
	}
	if (strcmp(image, "/w/base,x.raw") == 0 || strcmp(image, "/w/old.qcow2") == 0)
		*replacement = strdup("/w/new,1.qcow2");
	return 0;
}

static void rewrite_ok(const char *const *in, const char *const *want)
{
	struct cmdline c;
	char err[256];
	int calls = 0;

	from_words(&c, in);
	assert_int_equal(cmdline_rewrite_disks(&c, "/w", fake_image, &calls, err, sizeof err), 0);
	for (size_t i = 0; want[i] || i < c.argc; i++) {
		assert_non_null(want[i]);
		assert_true(i < c.argc);
		assert_string_equal(c.argv[i], want[i]);
	}
	cmdline_free(&c);
}

static void test_drive_gets_the_active_image_and_qcow2(void **state)
{
	const char *in[] = { "qemu", "-drive", "file=base,,x.raw,format=raw,if=virtio",
			     "-drive", "file=./data/../d.img,if=none,id=d1",
			     "-drive", "if=none,id=cd,media=cdrom,file=/w/base,,x.raw",
			     "-drive", "file=/w/old.qcow2,if=none", NULL };
	const char *want[] = { "qemu", "-drive", "file=/w/new,,1.qcow2,format=qcow2,if=virtio",
			       "-drive", "file=/w/data/../d.img,if=none,id=d1",
			       "-drive", "if=none,id=cd,media=cdrom,file=/w/base,,x.raw",
			       "-drive", "file=/w/new,,1.qcow2,if=none,format=qcow2", NULL };

	rewrite_ok(in, want);
}

static void test_hda_cdrom_and_bare_images(void **state)
{
	const char *in[] = { "qemu", "-hda", "base,x.raw", "-cdrom", "/w/old.qcow2",
			     "-m", "old.qcow2", "old.qcow2", "-hdb", "nbd:host:10809", NULL };
	const char *want[] = { "qemu", "-hda", "/w/new,1.qcow2", "-cdrom", "/w/old.qcow2",
			       "-m", "old.qcow2", "/w/new,1.qcow2", "-hdb", "nbd:host:10809", NULL };

	rewrite_ok(in, want);
}

static void test_blockdev_keyval_file_node_and_its_format_node(void **state)
{
	const char *in[] = { "qemu", "-blockdev", "driver=file,filename=/w/base,,x.raw,node-name=f0",
			     "-blockdev", "raw,file=f0,node-name=d0",
			     "-blockdev", "driver=raw,file.driver=file,file.filename=/w/old.qcow2,node-name=d1",
			     "-blockdev", "driver=file,filename=/w/base,,x.raw,node-name=ro,read-only=on",
			     NULL };
	const char *want[] = { "qemu", "-blockdev", "driver=file,filename=/w/new,,1.qcow2,node-name=f0",
			       "-blockdev", "qcow2,file=f0,node-name=d0",
			       "-blockdev", "driver=qcow2,file.driver=file,file.filename=/w/new,,1.qcow2,node-name=d1",
			       "-blockdev", "driver=file,filename=/w/base,,x.raw,node-name=ro,read-only=on",
			       NULL };

	rewrite_ok(in, want);
}

static void test_blockdev_json_flat_and_nested(void **state)
{
	const char *in[] = { "qemu",
		"-blockdev", "{\"driver\":\"file\",\"filename\":\"base,x.raw\",\"node-name\":\"f0\"}",
		"-blockdev", "{\"driver\":\"raw\",\"file\":\"f0\",\"node-name\":\"d0\"}",
		"-blockdev", "{\"driver\":\"raw\",\"node-name\":\"d1\",\"file\":{\"driver\":\"host_device\",\"filename\":\"/w/old.qcow2\"}}",
		NULL };
	const char *want[] = { "qemu",
		"-blockdev", "{\"driver\":\"file\",\"filename\":\"/w/new,1.qcow2\",\"node-name\":\"f0\"}",
		"-blockdev", "{\"driver\":\"qcow2\",\"file\":\"f0\",\"node-name\":\"d0\"}",
		"-blockdev", "{\"driver\":\"qcow2\",\"node-name\":\"d1\",\"file\":{\"driver\":\"file\",\"filename\":\"/w/new,1.qcow2\"}}",
		NULL };

	rewrite_ok(in, want);
}

static void rewrite_fails(const char *const *in, const char *msg)
{
	struct cmdline c;
	char err[512] = "";
	int calls = 0;

	from_words(&c, in);
	assert_int_equal(cmdline_rewrite_disks(&c, "/w", fake_image, &calls, err, sizeof err), -1);
	if (strstr(err, msg) == NULL)
		fail_msg("error '%s' lacks '%s'", err, msg);
	cmdline_free(&c);
}

static void test_rewrite_refusals(void **state)
{
	const char *missing[] = { "qemu", "-drive", "file=missing.img", NULL };
	const char *bare_file[] = { "qemu", "-blockdev", "driver=file,filename=/w/old.qcow2,node-name=f0",
				    "-device", "virtio-blk,drive=f0", NULL };
	const char *offset[] = { "qemu", "-blockdev", "driver=file,filename=/w/old.qcow2,node-name=f0",
				 "-blockdev", "driver=raw,file=f0,offset=512,node-name=d0", NULL };

	rewrite_fails(missing, "refused /w/missing.img");
	rewrite_fails(bare_file, "without a format node");
	rewrite_fails(offset, "offset=");
}

/* Which images the rewrite asks about, and whether QEMU writes them:
 * "image:w" or "image:r" per call, space-separated. */
static int record_image(void *arg, const char *image, int writable, char **replacement,
			char *err, size_t errlen)
{
	char *seen = arg;

	(void)replacement, (void)err, (void)errlen;
	snprintf(seen + strlen(seen), 1024 - strlen(seen), "%s%s:%c", seen[0] ? " " : "", image,
		 writable ? 'w' : 'r');
	return 0;
}

static void assert_images_seen(const char *const *in, const char *want)
{
	struct cmdline c;
	char err[256], seen[1024] = "";

	from_words(&c, in);
	assert_int_equal(cmdline_rewrite_disks(&c, "/w", record_image, seen, err, sizeof err), 0);
	assert_string_equal(seen, want);
	cmdline_free(&c);
}

static void test_local_protocols_are_files_and_other_protocols_are_not(void **state)
{
	const char *in[] = { "qemu", "-drive", "file=file:/w/old.qcow2,if=virtio",
			     "-hda", "host_device:/dev/sdz", "-hdb", "file:rel.img",
			     "-drive", "file=nbd:host:10809", "-hdc", "ssh://h/x.img", NULL };
	const char *want[] = { "qemu", "-drive", "file=/w/new,,1.qcow2,if=virtio,format=qcow2",
			       "-hda", "host_device:/dev/sdz", "-hdb", "file:/w/rel.img",
			       "-drive", "file=nbd:host:10809", "-hdc", "ssh://h/x.img", NULL };

	(void)state;
	/* file:/x is the file /x: it moves to the current image like /x */
	rewrite_ok(in, want);
	assert_images_seen(in, "/w/old.qcow2:w /dev/sdz:w /w/rel.img:w");
}

static void test_snapshot_and_read_only_uses_are_not_writable(void **state)
{
	const char *per_drive[] = { "qemu", "-drive", "file=/w/a.img,snapshot=on",
				    "-drive", "file=/w/b.img", "-drive", "file=/w/c.img,readonly=on",
				    "-blockdev", "driver=file,filename=/w/d.img,node-name=f,read-only=on",
				    "-cdrom", "/w/e.iso", NULL };
	const char *global[] = { "qemu", "-snapshot", "-drive", "file=/w/a.img", "-hda", "/w/b.img", NULL };

	(void)state;
	assert_images_seen(per_drive, "/w/a.img:r /w/b.img:w");
	assert_images_seen(global, "/w/a.img:r /w/b.img:r");
}

/* The phrases cmdline_find_unplaceable gives for IN, joined with '|'. */
static void assert_unplaceable(const char *const *in, const char *want)
{
	struct cmdline c;
	char why[512], all[2048] = "";
	size_t pos = 0;

	from_words(&c, in);
	while (cmdline_find_unplaceable(&c, &pos, why, sizeof why))
		snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", all[0] ? "|" : "", why);
	if (strcmp(all, want) != 0 && (want[0] == '\0' || strstr(all, want) == NULL))
		fail_msg("unplaceable: got '%s', want '%s'", all, want);
	if (want[0] == '\0')
		assert_string_equal(all, "");
	cmdline_free(&c);
}

static void test_disks_run_cannot_place_are_found(void **state)
{
	const char *fda[] = { "qemu", "-fda", "/w/floppy.img", NULL };
	const char *fdb[] = { "qemu", "--fdb", "/w/floppy.img", NULL };
	const char *pflash[] = { "qemu", "-pflash", "/w/vars.fd", NULL };
	const char *mtd[] = { "qemu", "-mtdblock", "/w/mtd.img", NULL };
	const char *sd[] = { "qemu", "-sd", "/w/sd.img", NULL };
	const char *readconfig[] = { "qemu", "-readconfig", "/w/vm.cfg", NULL };
	const char *set[] = { "qemu", "-set", "drive.d0.file=/w/other.img", NULL };
	const char *json_drive[] = { "qemu", "-drive", "file=json:{\"driver\":\"file\"},if=virtio", NULL };
	const char *json_hda[] = { "qemu", "-hda", "json:{}", NULL };
	const char *json_bare[] = { "qemu", "json:{}", NULL };
	const char *fine[] = { "qemu", "-name", "-fda", "-drive", "file=json:{},readonly=on",
			       "-drive", "file=json:{},snapshot=on", "-cdrom", "json:{}",
			       "-drive", "file=/w/a.img", NULL };
	const char *global_snapshot[] = { "qemu", "-snapshot", "-hda", "json:{}", NULL };
	const char *two[] = { "qemu", "-fda", "/w/a", "-pflash", "/w/b", NULL };

	(void)state;
	assert_unplaceable(fda, "-fda /w/floppy.img opens a writable disk");
	assert_unplaceable(fda, "-drive if=floppy,index=0,file=IMAGE");
	assert_unplaceable(fdb, "-fdb /w/floppy.img");
	assert_unplaceable(pflash, "-pflash /w/vars.fd");
	assert_unplaceable(mtd, "-mtdblock /w/mtd.img");
	assert_unplaceable(sd, "-sd /w/sd.img");
	assert_unplaceable(readconfig, "-readconfig /w/vm.cfg may define disks");
	assert_unplaceable(set, "-set drive.d0.file=/w/other.img changes options");
	assert_unplaceable(json_drive, "through json:");
	assert_unplaceable(json_hda, "-hda json:{} names a disk through json:");
	assert_unplaceable(json_bare, "the image json:{} names a disk through json:");
	assert_unplaceable(fine, "");
	assert_unplaceable(global_snapshot, "");
	assert_unplaceable(two, "-fda /w/a opens a writable disk qckpt cannot move onto its overlays; write it as -drive if=floppy,index=0,file=IMAGE|"
			   "-pflash /w/b opens a writable disk qckpt cannot move onto its overlays; write it as -drive if=pflash,format=raw,file=IMAGE");
}

static void test_absolute_paths_and_quoting(void **state)
{
	const char *w[] = { "qemu", "-append", "console=ttyS0 it's", "-m", "128", NULL };
	struct cmdline c;
	char *s;

	s = cmdline_absolute("/home/u", "./vm//disk.img");
	assert_string_equal(s, "/home/u/vm/disk.img");
	free(s);
	s = cmdline_absolute("/", "a.img");
	assert_string_equal(s, "/a.img");
	free(s);
	from_words(&c, w);
	s = cmdline_quote(&c);
	assert_string_equal(s, "qemu -append 'console=ttyS0 it'\\''s' -m 128");
	free(s);
	cmdline_free(&c);
}

/* ---- chains ---- */

static char *tpath(const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", tmpdir, name) > 0);
	return p;
}

/* A minimal qcow2 header naming BACKING (or none). */
static void write_qcow2(const char *path, const char *backing)
{
	unsigned char h[512] = { 'Q', 'F', 'I', 0xfb, 0, 0, 0, 3 };
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	size_t len = backing ? strlen(backing) : 0;

	assert_true(fd >= 0);
	if (backing) {
		h[15] = 200; /* backing_file_offset = 200 */
		h[19] = (unsigned char)len;
		memcpy(h + 200, backing, len);
	}
	assert_int_equal(write(fd, h, sizeof h), (ssize_t)sizeof h);
	close(fd);
}

static json_t *disk_of(const char *const *chain)
{
	json_t *c = json_array();
	size_t n = 0;

	while (chain[n])
		json_array_append_new(c, json_string(chain[n++]));
	return json_pack("{s:s, s:s, s:s, s:o}", "Device", "drv0", "OriginalImage", chain[0],
			 "ActiveImage", chain[n - 1], "Chain", c);
}

static void test_chain_checks_headers_against_the_catalog(void **state)
{
	char *base = tpath("base.raw"), *ov1 = tpath("ov1.qcow2"), *ov2 = tpath("ov2.qcow2");
	char *other = tpath("other.qcow2"), *backing = NULL, err[512];
	const char *chain[] = { base, ov1, ov2, NULL };
	json_t *disk;
	FILE *f = fopen(base, "w");

	fputs("raw data", f);
	fclose(f);
	write_qcow2(ov1, base);
	write_qcow2(ov2, "ov1.qcow2"); /* relative to its directory, as QEMU reads it */
	write_qcow2(other, NULL);
	assert_int_equal(qcow2_backing_file(ov1, &backing), 0);
	assert_string_equal(backing, base);
	free(backing);
	assert_int_equal(qcow2_backing_file(other, &backing), 0);
	assert_null(backing);
	assert_int_equal(qcow2_backing_file(base, &backing), -EINVAL);

	disk = disk_of(chain);
	assert_int_equal(chain_check(disk, err, sizeof err), 0);
	assert_true(chain_names(disk, ov1));
	assert_false(chain_names(disk, other));

	/* an overlay naming another backing file than the chain says */
	write_qcow2(ov2, other);
	assert_int_equal(chain_check(disk, err, sizeof err), -1);
	assert_non_null(strstr(err, "names backing file"));
	/* a missing overlay */
	unlink(ov2);
	assert_int_equal(chain_check(disk, err, sizeof err), -1);
	assert_non_null(strstr(err, "missing"));
	json_decref(disk);
	/* a chain that does not end at the active image */
	disk = disk_of(chain);
	json_object_set_new(disk, "ActiveImage", json_string(other));
	assert_int_equal(chain_check(disk, err, sizeof err), -1);
	assert_non_null(strstr(err, "not at its active image"));
	json_decref(disk);
	unlink(base);
	unlink(ov1);
	unlink(other);
	free(base);
	free(ov1);
	free(ov2);
	free(other);
}

/* ---- qcow2.c: new overlays, as qemu-img makes them ---------------------- */

/* A shell command's exit status, and (OUT) what it printed: popen, as
 * this program runs no event loop. */
static int sh(const char *cmd, char **out)
{
	FILE *p = popen(cmd, "r");
	char buf[4096];
	size_t n, len = 0;
	char *text = xstrdup("");
	int status;

	assert_non_null(p);
	while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
		text = realloc(text, len + n + 1);
		memcpy(text + len, buf, n);
		len += n;
		text[len] = '\0';
	}
	status = pclose(p);
	if (out)
		*out = text;
	else
		free(text);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* `qemu-img info` of PATH as JSON. */
static json_t *img_info(const char *path)
{
	char *cmd = fmt("qemu-img info --output=json '%s' 2>&1", path), *out;
	json_t *info = sh(cmd, &out) == 0 ? json_loads(out, 0, NULL) : NULL;

	if (info == NULL)
		print_message("%s: %s", cmd, out);
	free(cmd);
	free(out);
	return info;
}

static int img_check(const char *path)
{
	char *cmd = fmt("qemu-img check '%s' 2>&1", path), *out;
	int status = sh(cmd, &out);

	if (status != 0)
		print_message("%s: %s", cmd, out);
	free(cmd);
	free(out);
	return status;
}

static int have_qemu_img(void)
{
	return sh("qemu-img --version >/dev/null 2>&1", NULL) == 0;
}

/* Ours and qemu-img's overlay of BASE (FORMAT) read the same to qemu-img. */
static void same_as_qemu_img(const char *base, const char *format)
{
	char *ours = tpath("ours.qcow2"), *theirs = tpath("theirs.qcow2"), *cmd;
	uint64_t size = 0;
	json_t *a, *b;
	const char *keys[] = { "virtual-size", "cluster-size", "format", "backing-filename",
			       "backing-filename-format", "full-backing-filename", NULL };

	assert_int_equal(qcow2_disk_size(base, format, &size), 0);
	assert_int_equal(qcow2_create_overlay(ours, base, format, size), 0);
	cmd = fmt("qemu-img create -q -f qcow2 -b '%s' -F %s '%s'", base, format, theirs);
	assert_int_equal(sh(cmd, NULL), 0);
	free(cmd);
	assert_int_equal(img_check(ours), 0);
	a = img_info(ours);
	b = img_info(theirs);
	assert_non_null(a);
	assert_non_null(b);
	for (size_t i = 0; keys[i]; i++) {
		char *va = json_dumps(json_object_get(a, keys[i]), JSON_ENCODE_ANY);
		char *vb = json_dumps(json_object_get(b, keys[i]), JSON_ENCODE_ANY);

		assert_non_null(va);
		assert_string_equal(va, vb);
		free(va);
		free(vb);
	}
	assert_int_equal(json_integer_value(json_object_get(a, "virtual-size")), (json_int_t)size);
	json_decref(a);
	json_decref(b);
	unlink(ours);
	unlink(theirs);
	free(ours);
	free(theirs);
}

static void test_a_new_overlay_reads_as_qemu_imgs_own(void **state)
{
	char *base = tpath("base.qcow2"), *raw = tpath("base.raw"), *huge = tpath("huge.raw");
	char *cmd;
	FILE *f;

	if (!have_qemu_img()) {
		if (getenv("CI") != NULL && strcmp(getenv("CI"), "true") == 0)
			fail_msg("qemu-img is missing (CI must have it: qemu-utils)");
		skip();
	}
	/* a qcow2 base; a raw one whose length is no multiple of a sector
	 * (QEMU rounds it up); a 5 TiB sparse one, whose L1 table needs two
	 * clusters (8192 entries of 512 MiB in one) */
	cmd = fmt("qemu-img create -q -f qcow2 '%s' 3G", base);
	assert_int_equal(sh(cmd, NULL), 0);
	free(cmd);
	f = fopen(raw, "w");
	assert_non_null(f);
	for (int i = 0; i < 1000; i++)
		fputc('x', f);
	fclose(f);
	assert_int_equal(truncate(raw, 1000), 0);
	f = fopen(huge, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(truncate(huge, 5LL << 40), 0);
	same_as_qemu_img(base, "qcow2");
	same_as_qemu_img(raw, "raw");
	same_as_qemu_img(huge, "raw");
	unlink(base);
	unlink(raw);
	unlink(huge);
	free(base);
	free(raw);
	free(huge);
}

static void test_a_new_overlay_never_replaces_a_file(void **state)
{
	char *path = tpath("there.qcow2"), *text;
	uint64_t size;
	FILE *f = fopen(path, "w");

	fputs("somebody's", f);
	fclose(f);
	assert_int_equal(qcow2_create_overlay(path, "/some/base.qcow2", "qcow2", 1 << 20), -EEXIST);
	text = read_file(path);
	assert_string_equal(text, "somebody's");
	free(text);
	/* not a sector multiple, or not qcow2: refused, nothing written */
	unlink(path);
	assert_int_equal(qcow2_create_overlay(path, "/some/base.qcow2", "qcow2", 1000), -EINVAL);
	assert_int_equal(access(path, F_OK), -1);
	f = fopen(path, "w");
	fputs("not qcow2 at all", f);
	fclose(f);
	assert_int_equal(qcow2_disk_size(path, "qcow2", &size), -EINVAL);
	assert_int_equal(qcow2_disk_size(path, "vmdk", &size), -EINVAL);
	unlink(path);
	free(path);
}

/* The recorded launch is running only while its pid has its start time:
 * not after the process is gone, not for a reused pid. */
static void test_launch_is_running_means_same_pid_and_start_time(void **state)
{
	long long start = proc_start_time((long)getpid());
	char comm[16] = "";
	json_t *cl;
	pid_t child;

	assert_true(start > 0);
	/* a command name with ") " in it does not shift the fields */
	prctl(PR_GET_NAME, comm);
	prctl(PR_SET_NAME, "a) 1 2 (3) 4");
	assert_true(proc_start_time((long)getpid()) == start);
	prctl(PR_SET_NAME, comm);

	cl = json_pack("{s:I, s:I}", "Pid", (json_int_t)getpid(), "StartTime", (json_int_t)start);
	assert_int_equal(cmdline_launch_is_running(cl), 1);
	json_object_set_new(cl, "StartTime", json_integer(start + 1)); /* pid reused */
	assert_int_equal(cmdline_launch_is_running(cl), 0);
	json_object_del(cl, "StartTime"); /* a vm.json that lacks it */
	assert_int_equal(cmdline_launch_is_running(cl), 0);
	json_decref(cl);

	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		_exit(0);
	assert_int_equal(waitpid(child, NULL, 0), child); /* gone */
	cl = json_pack("{s:I, s:I}", "Pid", (json_int_t)child, "StartTime", (json_int_t)start);
	assert_int_equal(cmdline_launch_is_running(cl), 0);
	assert_true(proc_start_time((long)child) == -1);
	json_decref(cl);
}

/* What export and restore --from do to the old VM's command. */
static void test_qmp_monitors_are_dropped_and_the_guest_renamed_for_another_vm(void **state)
{
	const char *words[] = { "qemu", "-m", "256", "-qmp", "unix:/run/a.qmp,server=on,wait=off",
				"-chardev", "socket,id=serial0,path=/run/serial",
				"-serial", "chardev:serial0",
				"-chardev", "socket,id=m,path=/run/m.qmp,server=on,wait=off",
				"-mon", "m,mode=control", "-qmp-pretty", "tcp:localhost:4444,server",
				"-mon", "chardev=serial0,mode=readline",
				"-name", "old,debug-threads=on", NULL };
	const char *bare[] = { "qemu", "-m", "256", NULL };
	struct cmdline c;
	char *addr, *line, *name;

	from_words(&c, words);
	assert_int_equal(cmdline_drop_qmp(&c), 3);
	assert_int_equal(cmdline_find_qmp(&c, &addr), 0);
	assert_null(addr);
	cmdline_set_guest_name(&c, "new");
	name = cmdline_guest_name(&c);
	assert_string_equal(name, "new");
	free(name);
	line = cmdline_quote(&c);
	/* the serial chardev and the HMP monitor stay; only QMP went */
	assert_string_equal(line, "qemu -m 256 -chardev socket,id=serial0,path=/run/serial -serial chardev:serial0 -mon chardev=serial0,mode=readline -name new,debug-threads=on");
	free(line);
	cmdline_free(&c);
	from_words(&c, bare);
	assert_int_equal(cmdline_drop_qmp(&c), 0);
	cmdline_set_guest_name(&c, "new");
	line = cmdline_quote(&c);
	assert_string_equal(line, "qemu -m 256 -name new");
	free(line);
	cmdline_free(&c);
}

/* A launch whose process exited but was never reaped (a zombie: this
 * container's init does not reap orphans such as a restored QEMU) keeps
 * its pid and start time in /proc, and still is not running. */
static void test_launch_is_not_running_once_its_process_is_a_zombie(void **state)
{
	int fds[2];
	char c;
	long long start;
	siginfo_t si;
	json_t *cl;
	pid_t child;

	assert_int_equal(pipe(fds), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(fds[1]);
		_exit(read(fds[0], &c, 1) < 0); /* until the parent lets go */
	}
	close(fds[0]);
	start = proc_start_time((long)child);
	assert_true(start > 0);
	cl = json_pack("{s:I, s:I}", "Pid", (json_int_t)child, "StartTime", (json_int_t)start);
	assert_int_equal(cmdline_launch_is_running(cl), 1);
	close(fds[1]);
	/* exited, not reaped (WNOWAIT): a zombie with the same start time */
	assert_int_equal(waitid(P_PID, (id_t)child, &si, WEXITED | WNOWAIT), 0);
	assert_true(proc_start_time((long)child) == start);
	assert_int_equal(proc_is_zombie((long)child), 1);
	assert_int_equal(cmdline_launch_is_running(cl), 0);
	assert_int_equal(waitpid(child, NULL, 0), child);
	json_decref(cl);
}

/* What restore's pre-start (a second QEMU of the VM beside the first)
 * cannot do: anything only one process can hold.  PHRASE: part of the
 * reason, or NULL for a command that can run twice. */
static void assert_twice(const char *const *words, const char *phrase)
{
	struct cmdline c;
	char why[512] = "";
	int blocked;

	from_words(&c, words);
	blocked = cmdline_prestart_blocker(&c, "/run/vm.qmp", why, sizeof why);
	if (phrase == NULL && blocked)
		fail_msg("%s: blocked: %s", words[2], why);
	if (phrase != NULL && (!blocked || strstr(why, phrase) == NULL))
		fail_msg("%s: want '%s', got %s'%s'", words[2], phrase, blocked ? "" : "nothing ", why);
	cmdline_free(&c);
}

static void test_what_cannot_run_in_two_qemus_at_once_is_found(void **state)
{
#define Q(...) ((const char *const[]){ "qemu", "-m", __VA_ARGS__, NULL })
	/* the VM's own QMP socket moves aside; clients, stdio, user
	 * networking without a forwarded port, disks are fine */
	assert_twice(Q("128", "-qmp", "unix:/run/vm.qmp,server=on,wait=off", "-serial", "stdio",
		       "-chardev", "socket,id=s0,path=/tmp/serial", "-serial", "chardev:s0",
		       "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
		       "-chardev", "socket,id=m,path=/run/vm.qmp,server=on,wait=off",
		       "-drive", "file=/w/a.qcow2,if=virtio", "-vnc", "none",
		       "-chardev", "file,id=log,path=/w/log,append=on", "-display", "none"), NULL);
	assert_twice(Q("pidfile", "-pidfile", "/run/vm.pid"), "-pidfile");
	assert_twice(Q("hostfwd", "-netdev", "user,id=n0,hostfwd=tcp::2222-:22"), "hostfwd=tcp::2222-:22");
	assert_twice(Q("nic", "-nic", "user,hostfwd=tcp::2222-:22"), "hostfwd");
	assert_twice(Q("tap", "-netdev", "tap,id=n0,ifname=tap0"), "-netdev tap");
	assert_twice(Q("bridge", "-nic", "bridge,br=br0"), "-nic bridge");
	assert_twice(Q("server", "-chardev", "socket,id=s,path=/tmp/s,server=on"), "/tmp/s");
	assert_twice(Q("tcp", "-chardev", "socket,id=s,port=4444,host=localhost,server=on,wait=off"),
		     "a TCP port");
	assert_twice(Q("serial", "-serial", "tcp::4444,server,nowait"), "-serial tcp:localhost:4444");
	assert_twice(Q("qmp2", "-qmp", "unix:/run/other.qmp,server"), "unix:/run/other.qmp");
	assert_twice(Q("file", "-serial", "file:/w/console.log"), "file:/w/console.log");
	assert_twice(Q("chardevfile", "-chardev", "file,id=f,path=/w/log"), "from its start");
	assert_twice(Q("vnc", "-vnc", ":1"), "-vnc :1");
	assert_twice(Q("spice", "-spice", "port=5930"), "-spice");
	assert_twice(Q("gdb", "-s"), "-s");
	assert_twice(Q("vfio", "-device", "vfio-pci,host=01:00.0"), "vfio-pci");
	assert_twice(Q("vhost", "-device", "vhost-user-fs-pci,chardev=fs"), "vhost-user-fs-pci");
	assert_twice(Q("memfile", "-object", "memory-backend-file,id=m,mem-path=/dev/shm/x,size=1G"),
		     "memory-backend-file");
	assert_twice(Q("daemon", "-daemonize"), "-daemonize");
#undef Q
}

static void test_the_vm_monitor_moves_to_a_name_beside_it(void **state)
{
	const char *words[] = { "qemu", "-qmp", "unix:/run/vm.qmp,server=on,wait=off",
				"-chardev", "socket,id=m,path=/run/vm.qmp,server=on",
				"-chardev", "socket,id=c,path=/run/vm.qmp",
				"-monitor", "unix:/run/hmp,server", NULL };
	struct cmdline c;
	char *line;

	from_words(&c, words);
	assert_int_equal(cmdline_move_unix_server(&c, "/run/vm.qmp", "/run/vm.qmp.new-1"), 2);
	line = cmdline_quote(&c);
	assert_string_equal(line, "qemu -qmp unix:/run/vm.qmp.new-1,server=on,wait=off -chardev socket,id=m,path=/run/vm.qmp.new-1,server=on -chardev socket,id=c,path=/run/vm.qmp -monitor unix:/run/hmp,server");
	free(line);
	cmdline_free(&c);
}

/* Write LEN bytes of BYTE at OFF into PATH (created sparse, SIZE long). */
static void put(const char *path, off_t size, off_t off, size_t len, int byte)
{
	int fd = open(path, O_WRONLY | O_CREAT, 0600);
	char *buf = xcalloc(1, len ? len : 1);

	assert_true(fd >= 0);
	memset(buf, byte, len);
	assert_int_equal(ftruncate(fd, size), 0);
	assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
	close(fd);
	free(buf);
}

static void sum_of(const char *path, char out[MEMSUM_LEN])
{
	assert_int_equal(memsum_path(path, out, NULL), 0);
	assert_true(memsum_known(out));
}

/* Holes and written zeros hash alike (a copy that filled the holes keeps
 * its checksum); a changed byte, a moved block or another length does not. */
static void test_memory_checksum_sees_changes_not_holes(void **state)
{
	char *a = xasprintf("%s/mem-a", tmpdir), *b = xasprintf("%s/mem-b", tmpdir);
	char sa[MEMSUM_LEN], sb[MEMSUM_LEN];
	off_t size = 64 << 20;

	/* A: sparse, data in three places, one straddling a block edge */
	unlink(a);
	put(a, size, 4096, 1000, 'x');
	put(a, size, (8 << 20) - 10, 20, 'y');
	put(a, size, size - 5, 5, 'z');
	sum_of(a, sa);
	/* B: the same bytes, every hole written as zeros */
	unlink(b);
	put(b, size, 0, (size_t)size, 0);
	put(b, size, 4096, 1000, 'x');
	put(b, size, (8 << 20) - 10, 20, 'y');
	put(b, size, size - 5, 5, 'z');
	sum_of(b, sb);
	assert_string_equal(sa, sb);
	/* one byte changed in the middle of a large file */
	put(b, size, 32 << 20, 1, 1);
	sum_of(b, sb);
	assert_string_not_equal(sa, sb);
	put(b, size, 32 << 20, 1, 0);
	sum_of(b, sb);
	assert_string_equal(sa, sb);
	/* the same data one block further on */
	unlink(b);
	put(b, size, 4096 + 65536, 1000, 'x');
	put(b, size, (8 << 20) - 10, 20, 'y');
	put(b, size, size - 5, 5, 'z');
	sum_of(b, sb);
	assert_string_not_equal(sa, sb);
	/* a file one hole longer */
	unlink(b);
	put(b, size + 4096, 4096, 1000, 'x');
	put(b, size + 4096, (8 << 20) - 10, 20, 'y');
	put(b, size + 4096, size - 5, 5, 'z');
	sum_of(b, sb);
	assert_string_not_equal(sa, sb);
	assert_false(memsum_known("xxh3-64:12"));
	assert_int_equal(memsum_path("/nonexistent/qckpt-mem", sa, NULL), -ENOENT);
	unlink(a);
	unlink(b);
	free(a);
	free(b);
}

/* The stamp taken with a checksum matches the file until its contents,
 * its metadata or the file itself (renamed over) change, and a malformed
 * stamp never does. */
static void test_memory_checksum_stamp_sees_a_changed_or_replaced_file(void **state)
{
	char *a = xasprintf("%s/stamp-a", tmpdir), *b = xasprintf("%s/stamp-b", tmpdir);
	char sum[MEMSUM_LEN];
	struct stat st, now;
	struct timespec times[2];
	json_t *stamp;

	(void)state;
	unlink(a);
	put(a, 1 << 20, 4096, 100, 'x');
	assert_int_equal(memsum_path(a, sum, &st), 0);
	stamp = memsum_stamp(&st);
	assert_int_equal(stat(a, &now), 0);
	assert_true(memsum_stamp_matches(stamp, &now));
	/* a write with the modification time put back: the change time moved */
	times[0] = now.st_atim;
	times[1] = now.st_mtim;
	put(a, 1 << 20, 4096, 1, 'y');
	assert_int_equal(utimensat(AT_FDCWD, a, times, 0), 0);
	assert_int_equal(stat(a, &now), 0);
	assert_false(memsum_stamp_matches(stamp, &now));
	json_decref(stamp);
	/* a copy renamed over it: another inode */
	assert_int_equal(stat(a, &st), 0);
	stamp = memsum_stamp(&st);
	unlink(b);
	put(b, 1 << 20, 4096, 100, 'x');
	assert_int_equal(rename(b, a), 0);
	assert_int_equal(stat(a, &now), 0);
	assert_false(memsum_stamp_matches(stamp, &now));
	json_decref(stamp);
	assert_false(memsum_stamp_matches(NULL, &now));
	stamp = json_pack("{s:s}", "Inode", "1");
	assert_false(memsum_stamp_matches(stamp, &now));
	json_decref(stamp);
	unlink(a);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qopts_parse_doubles_commas_and_keeps_the_implied_key),
		cmocka_unit_test(test_options_without_value_do_not_swallow_the_next),
		cmocka_unit_test(test_guest_name_from_name_option),
		cmocka_unit_test(test_qmp_monitors_are_found_in_every_spelling),
		cmocka_unit_test(test_qmp_monitors_are_dropped_and_the_guest_renamed_for_another_vm),
		cmocka_unit_test(test_drive_gets_the_active_image_and_qcow2),
		cmocka_unit_test(test_hda_cdrom_and_bare_images),
		cmocka_unit_test(test_blockdev_keyval_file_node_and_its_format_node),
		cmocka_unit_test(test_blockdev_json_flat_and_nested),
		cmocka_unit_test(test_rewrite_refusals),
		cmocka_unit_test(test_local_protocols_are_files_and_other_protocols_are_not),
		cmocka_unit_test(test_snapshot_and_read_only_uses_are_not_writable),
		cmocka_unit_test(test_disks_run_cannot_place_are_found),
		cmocka_unit_test(test_absolute_paths_and_quoting),
		cmocka_unit_test(test_chain_checks_headers_against_the_catalog),
		cmocka_unit_test(test_a_new_overlay_reads_as_qemu_imgs_own),
		cmocka_unit_test(test_a_new_overlay_never_replaces_a_file),
		cmocka_unit_test(test_launch_is_running_means_same_pid_and_start_time),
		cmocka_unit_test(test_launch_is_not_running_once_its_process_is_a_zombie),
		cmocka_unit_test(test_what_cannot_run_in_two_qemus_at_once_is_found),
		cmocka_unit_test(test_the_vm_monitor_moves_to_a_name_beside_it),
		cmocka_unit_test(test_memory_checksum_sees_changes_not_holes),
		cmocka_unit_test(test_memory_checksum_stamp_sees_a_changed_or_replaced_file),
	};
	int rc;

	if (mkdtemp(tmpdir) == NULL)
		return 1;
	rc = cmocka_run_group_tests_name("cmdline and chain", tests, NULL, NULL);
	rmdir(tmpdir);
	return rc;
}
