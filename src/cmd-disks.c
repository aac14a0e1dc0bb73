/*
 * cmd-disks.c: "qckpt disks NAME": where each disk of a VM writes now.
 * After a checkpoint the image a launch command names is frozen; scripts
 * that start QEMU themselves (not through `qckpt run`) ask here for each
 * disk's current active image.  Reads vm.json and checks each chain
 * against the files, so a script never launches on a broken one.  A VM
 * driven through a tcp:/tls: monitor is another matter: its images are
 * files of the QEMU host, so they are named as that host's (QemuHost,
 * HOST:PATH in the table) and never looked for here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "chain.h"
#include "cmd.h"
#include "log.h"
#include "output.h"
#include "registry.h"
#include "util.h"
#include "vmconn.h"

static int cmd_disks_exec(int argc, char **argv);

const struct cmd_entry cmd_disks_entry = {
	.name = "disks",
	.alias = NULL,
	.usage = "[--json] NAME",
	.summary = "each disk's original image, current active image and chain",
	.exec = cmd_disks_exec,
	.flags = CMD_F_REMOTE,
	.json_option = "--json",
	.columns = (const char *const[]){ "VMName", "Device", "ActiveImage", "OriginalImage", NULL },
};

/* The widest of a column, in display width (paths may be UTF-8). */
static size_t width(json_t *disks, const char *key, size_t min)
{
	size_t i, w = min;
	json_t *d;

	json_array_foreach(disks, i, d) {
		size_t n = output_display_width(output_str(d, key, "-"));

		if (n > w)
			w = n;
	}
	return w;
}

static void print_row(const char *device, size_t wd, const char *original,
		      size_t wo, const char *active)
{
	output_padded(stdout, device, wd + 2);
	output_padded(stdout, original, wo + 2);
	printf("%s\n", active);
}

static void print_table(json_t *disks)
{
	size_t wd = width(disks, "Device", 6), wo = width(disks, "OriginalImage", 13);
	size_t i, j;
	json_t *d, *c;

	print_row("Device", wd, "OriginalImage", wo, "ActiveImage");
	json_array_foreach(disks, i, d) {
		print_row(output_str(d, "Device", "-"), wd, output_str(d, "OriginalImage", "-"),
			  wo, output_str(d, "ActiveImage", "-"));
		/* The chain, oldest first, one image a line under the row. */
		json_array_foreach(json_object_get(d, "Chain"), j, c)
			printf("%*s  %s %s\n", (int)wd, "", j == 0 ? "chain:" : "    <-",
			       json_is_string(c) ? json_string_value(c) : "?");
	}
}

static void print_json(const char *vm, json_t *disks, const char *host)
{
	size_t i;
	json_t *d;

	json_array_foreach(disks, i, d) {
		json_t *o = json_pack("{s:s, s:O?, s:O?, s:O?, s:O?}", "VMName", vm,
				      "Device", json_object_get(d, "Device"),
				      "OriginalImage", json_object_get(d, "OriginalImage"),
				      "ActiveImage", json_object_get(d, "ActiveImage"),
				      "Chain", json_object_get(d, "Chain"));

		if (host != NULL)
			json_object_set_new(o, "QemuHost", json_string(host));
		output_json_line(o);
		json_decref(o);
	}
}

/*
 * The host whose files the disks are when that is not this one: the QEMU
 * host of a network monitor, as the checkpoint that switched the disks
 * wrote it in vm.json, else as the registry's monitor says (a vm.json of
 * an older qckpt).  NULL: this machine's files.
 */
static char *files_host(json_t *state, const struct registry_entry *e)
{
	const char *host = json_string_value(json_object_get(state, "QemuHost"));

	if (host != NULL)
		return xstrdup(host);
	return e != NULL ? vmconn_network_host(e->monitor) : NULL;
}

/* HOST:PATH, scp's way of naming another host's file ([HOST] for IPv6). */
static json_t *on_host(const char *host, json_t *path)
{
	int v6 = strchr(host, ':') != NULL;

	if (!json_is_string(path))
		return json_incref(path);
	return json_sprintf("%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "",
			    json_string_value(path));
}

/* The disks as the table shows another host's files. */
static json_t *disks_on_host(json_t *disks, const char *host)
{
	json_t *shown = json_deep_copy(disks), *d, *c;
	size_t i, j;

	json_array_foreach(shown, i, d) {
		json_t *chain = json_object_get(d, "Chain");

		json_object_set_new(d, "OriginalImage", on_host(host, json_object_get(d, "OriginalImage")));
		json_object_set_new(d, "ActiveImage", on_host(host, json_object_get(d, "ActiveImage")));
		json_array_foreach(chain, j, c)
			json_array_set_new(chain, j, on_host(host, c));
	}
	return shown;
}

static int cmd_disks_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct registry reg;
	const struct registry_entry *e;
	char err[1024], *root, *path, *host = NULL;
	const char *vm;
	json_t *state, *disks, *d;
	size_t i;
	int opt, json = 0, rc = EXIT_ALL_OK;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_disks_entry, argc, argv, CMD_COMMON_SHORT, longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return EXIT_ALL_OK;
		if (opt == 'j')
			json = 1;
		else
			return cmd_usage(&cmd_disks_entry);
	}
	if (optind + 1 != argc)
		return cmd_usage(&cmd_disks_entry);
	vm = argv[optind];
	/* The name becomes a path in the catalog: "../x" must not leave it. */
	if (!registry_valid_name(vm))
		return error("'%s' is not a VM name (letters, digits, '.', '_' and '-', not starting with '-' or '.'); see 'qckpt vms'",
			     vm), EXIT_USAGE;
	if (registry_load(cmd_registry_path, &reg, err, sizeof err) < 0)
		return error("%s", err), EXIT_USAGE;
	e = registry_find(&reg, vm);
	root = catalog_root(e);
	path = xasprintf("%s/%s/vm.json", root, vm);
	if (e == NULL && access(path, F_OK) != 0) {
		error_vm(vm, "not in the registry and no %s; check the name with 'qckpt list'", path);
		rc = EXIT_SOME_FAILED;
		goto out;
	}
	state = catalog_load_vm(root, vm);
	disks = json_object_get(state, "Disks");
	host = files_host(state, e);
	if (json) {
		print_json(vm, disks, host);
	} else if (host != NULL) {
		json_t *shown = disks_on_host(disks, host);

		print_table(shown);
		json_decref(shown);
	} else {
		print_table(disks);
	}
	if (json_array_size(disks) == 0)
		verbose_vm(vm, "no checkpoint has switched its disks yet: the images its launch command names are current");
	if (host != NULL && json_array_size(disks) > 0)
		verbose_vm(vm, "its images are files of %s, where its QEMU runs (a network monitor): qckpt does not look for them here",
			   host);
	json_array_foreach(disks, i, d) {
		if (host == NULL && chain_check(d, err, sizeof err) < 0) {
			error_vm(vm, "disk %s: %s; put the file back before launching the VM", output_str(d, "Device", "-"), err);
			rc = EXIT_SOME_FAILED;
		}
	}
	json_decref(state);
out:
	free(host);
	free(path);
	free(root);
	registry_free(&reg);
	return rc;
}
