/*
 * migrate.c: see migrate.h.  QEMU-NOTES-style facts behind the choices:
 * QEMU's default max-bandwidth (128 MiB/s) throttles a save to a file, and
 * with no cap the default 300 ms downtime-limit lets it switch over at once
 * with a long pause; 10 ms gave pauses of a few ms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"
#include "remote.h"
#include "util.h"

int migrate_has_cap(json_t *caps, const char *cap)
{
	size_t i;
	json_t *c;

	json_array_foreach(caps, i, c) {
		const char *name = json_string_value(json_object_get(c, "capability"));

		if (name != NULL && strcmp(name, cap) == 0)
			return 1;
	}
	return 0;
}

int migrate_cap_state(json_t *caps, const char *cap)
{
	size_t i;
	json_t *c;

	json_array_foreach(caps, i, c) {
		const char *name = json_string_value(json_object_get(c, "capability"));

		if (name != NULL && strcmp(name, cap) == 0)
			return json_is_true(json_object_get(c, "state"));
	}
	return 0;
}

/* The capabilities we switch on, in the order QEMU must see them. */
static const char *const *wanted_caps(const struct migrate_plan *plan)
{
	static const char *const with_ram[] = { "events", "multifd", "mapped-ram", NULL };
	static const char *const bg[] = { "events", "background-snapshot", NULL };
	static const char *const plain[] = { "events", NULL };
	static const char *const shared[] = { "events", "x-ignore-shared", NULL };
	static const char *const shared_live[] = { "events", "x-ignore-shared",
						   "pause-before-switchover", NULL };

	if (plan->ignore_shared)
		return plan->switchover ? shared_live : shared;
	if (plan->background)
		return bg;
	return plan->mapped_ram ? with_ram : plain;
}

/* Whether CAP, on now, must go off for this plan: another mode's
 * capability (left on by another tool, or by a qckpt that was killed)
 * that QEMU will not combine with ours, or that would change the save. */
static int cap_in_the_way(const struct migrate_plan *plan, json_t *caps, const char *cap)
{
	static const char *const exclusive[] = { "background-snapshot", "multifd",
						 "mapped-ram", "x-ignore-shared",
						 "pause-before-switchover", NULL };

	if (!migrate_cap_state(caps, cap))
		return 0;
	for (const char *const *w = wanted_caps(plan); *w; w++)
		if (strcmp(*w, cap) == 0)
			return 0;
	for (const char *const *x = exclusive; *x; x++)
		if (strcmp(*x, cap) == 0)
			return 1;
	return 0;
}

/* x-ignore-shared left on by someone would leave a shared RAM file out
 * of a save that has no copy of it; pause-before-switchover would hold a
 * save that nobody continues. */
static const char *const known_caps[] = { "background-snapshot", "multifd",
					  "mapped-ram", "x-ignore-shared",
					  "pause-before-switchover", NULL };

static void plan_caps(struct migrate_plan *plan, json_t *caps, json_t *params,
		      const char *id);

void migrate_plan_init(struct migrate_plan *plan, json_t *caps,
		       json_t *params, int background, const char *id)
{
	memset(plan, 0, sizeof *plan);
	plan->background = background;
	/* mapped-ram needs a seekable file: transport and background-snapshot
	 * does not combine with multifd, so they are exclusive. */
	plan->use_fdset = migrate_has_cap(caps, "mapped-ram");
	plan->mapped_ram = !background && plan->use_fdset &&
			   migrate_has_cap(caps, "multifd");
	plan_caps(plan, caps, params, id);
}

void migrate_plan_init_ignore_shared(struct migrate_plan *plan, json_t *caps,
				     json_t *params, const char *id)
{
	memset(plan, 0, sizeof *plan);
	plan->ignore_shared = 1;
	/* QEMU stops the guest itself, its migration set up already, and
	 * waits for migrate-continue while the RAM file is reflinked: the
	 * setup stays out of the pause (job-ramfile.c). */
	plan->switchover = migrate_has_cap(caps, "pause-before-switchover");
	/* file: where QEMU has it (fd: to a file is deprecated there) */
	plan->use_fdset = migrate_has_cap(caps, "mapped-ram");
	plan_caps(plan, caps, params, id);
}

static void plan_caps(struct migrate_plan *plan, json_t *caps, json_t *params,
		      const char *id)
{
	const char *const *want;

	plan->fdset_id = -1;
	snprintf(plan->fdname, sizeof plan->fdname, "qckpt-%.8s", id);
	plan->saved_caps = json_array();
	for (want = wanted_caps(plan); *want; want++)
		json_array_append_new(plan->saved_caps, json_pack(
			"{s:s, s:b}", "capability", *want, "state",
			migrate_cap_state(caps, *want)));
	plan->caps_off = json_array();
	for (want = known_caps; *want; want++) {
		if (!cap_in_the_way(plan, caps, *want))
			continue;
		json_array_append_new(plan->caps_off, json_string(*want));
		json_array_append_new(plan->saved_caps, json_pack(
			"{s:s, s:b}", "capability", *want, "state", 1));
	}
	plan->saved_params = json_pack("{s:O?, s:O?, s:O?}",
		"max-bandwidth", json_object_get(params, "max-bandwidth"),
		"downtime-limit", json_object_get(params, "downtime-limit"),
		"multifd-channels", json_object_get(params, "multifd-channels"));
	plan->direct_io = json_is_boolean(json_object_get(params, "direct-io"));
	if (plan->direct_io)
		json_object_set(plan->saved_params, "direct-io",
				json_object_get(params, "direct-io"));
}

void migrate_plan_free(struct migrate_plan *plan)
{
	json_decref(plan->saved_caps);
	json_decref(plan->saved_params);
	json_decref(plan->caps_off);
	plan->saved_caps = plan->saved_params = plan->caps_off = NULL;
	free(plan->uri);
	plan->uri = NULL;
}

/* An enum of the schema whose values include every one of NAMES. */
static int schema_has_enum_with(json_t *schema, const char *const *names)
{
	size_t i, j;
	json_t *t, *v;

	json_array_foreach(schema, i, t) {
		int found = 0;

		if (!json_is_string(json_object_get(t, "meta-type")) ||
		    strcmp(json_string_value(json_object_get(t, "meta-type")), "enum") != 0)
			continue;
		for (const char *const *n = names; *n; n++) {
			int here = 0;

			json_array_foreach(json_object_get(t, "values"), j, v)
				here |= json_is_string(v) && strcmp(json_string_value(v), *n) == 0;
			json_array_foreach(json_object_get(t, "members"), j, v)
				here |= strcmp(json_string_value(json_object_get(v, "name")) ?: "", *n) == 0;
			found += here;
		}
		if (found == 3)
			return 1;
	}
	return 0;
}

int migrate_has_file_transport(json_t *caps, json_t *schema)
{
	/* MigrationAddressType (8.2): socket, exec, rdma (if built), file */
	static const char *const address_types[] = { "socket", "exec", "file", NULL };

	return migrate_has_cap(caps, "mapped-ram") ||
	       schema_has_enum_with(schema, address_types);
}

void migrate_plan_remote(struct migrate_plan *plan, const char *path,
			 int file_transport)
{
	plan->use_fdset = 0;
	free(plan->uri);
	if (file_transport) {
		plan->uri = xasprintf("file:%s", path);
	} else {
		/* 7.2: QEMU runs it with /bin/sh -c; a stream, so no mapped-ram */
		char *q = remote_shell_quote(path);

		plan->uri = xasprintf("exec:cat >%s", q);
		free(q);
	}
}

json_t *migrate_set_caps_args(const struct migrate_plan *plan)
{
	json_t *list = json_array();
	size_t i;
	json_t *off;

	/* One command: QEMU checks the combination, not each change. */
	json_array_foreach(plan->caps_off, i, off)
		json_array_append_new(list, json_pack("{s:O, s:b}", "capability",
						      off, "state", 0));
	for (const char *const *c = wanted_caps(plan); *c; c++)
		json_array_append_new(list, json_pack("{s:s, s:b}", "capability",
						      *c, "state", 1));
	return json_pack("{s:o}", "capabilities", list);
}

json_t *migrate_restore_caps_args(const struct migrate_plan *plan)
{
	/* Reverse order: QEMU checks dependencies (mapped-ram needs multifd
	 * off-switching last is fine, but keep it symmetric). */
	json_t *list = json_array();

	for (size_t i = json_array_size(plan->saved_caps); i-- > 0;)
		json_array_append(list, json_array_get(plan->saved_caps, i));
	return json_pack("{s:o}", "capabilities", list);
}

json_t *migrate_set_params_args(const struct migrate_plan *plan)
{
	json_t *p = json_pack("{s:i, s:i}", "max-bandwidth", 0,
			      "downtime-limit", MIGRATE_DOWNTIME_LIMIT_MS);

	if (plan->mapped_ram)
		json_object_set_new(p, "multifd-channels",
				    json_integer(MIGRATE_MULTIFD_CHANNELS));
	/* direct-io left on (by the user, or by a restore's load that did not
	 * get to switch it off) makes QEMU 10.0.2 look for an O_DIRECT fd in
	 * the fdset, which holds only our plain one: the save fails ("Failed
	 * to find file descriptor with matching flags").  Off for the save,
	 * back as it was after. */
	if (plan->direct_io)
		json_object_set_new(p, "direct-io", json_false());
	return p;
}

json_t *migrate_restore_params_args(const struct migrate_plan *plan)
{
	json_t *p = json_deep_copy(plan->saved_params);

	if (!plan->mapped_ram)
		json_object_del(p, "multifd-channels");
	return p;
}

const char *migrate_fd_command(const struct migrate_plan *plan)
{
	return plan->use_fdset ? "add-fd" : "getfd";
}

json_t *migrate_fd_args(const struct migrate_plan *plan)
{
	if (plan->use_fdset)
		return json_pack("{s:s}", "opaque", plan->fdname);
	return json_pack("{s:s}", "fdname", plan->fdname);
}

void migrate_fd_reply(struct migrate_plan *plan, json_t *result)
{
	json_t *id = json_object_get(result, "fdset-id");

	if (json_is_integer(id))
		plan->fdset_id = (int)json_integer_value(id);
}

const char *migrate_release_command(const struct migrate_plan *plan)
{
	return plan->use_fdset ? "remove-fd" : "closefd";
}

json_t *migrate_release_args(const struct migrate_plan *plan)
{
	if (plan->use_fdset)
		return json_pack("{s:i}", "fdset-id", plan->fdset_id);
	return json_pack("{s:s}", "fdname", plan->fdname);
}

json_t *migrate_args(const struct migrate_plan *plan)
{
	char uri[64];

	if (plan->uri != NULL)
		return json_pack("{s:s}", "uri", plan->uri);
	if (plan->use_fdset)
		snprintf(uri, sizeof uri, "file:/dev/fdset/%d", plan->fdset_id);
	else
		snprintf(uri, sizeof uri, "fd:%s", plan->fdname);
	return json_pack("{s:s}", "uri", uri);
}

json_t *migrate_record_caps(const struct migrate_plan *plan)
{
	json_t *list = json_array();

	for (const char *const *c = wanted_caps(plan); *c; c++)
		if (strcmp(*c, "events") != 0)
			json_array_append_new(list, json_string(*c));
	return list;
}

int migrate_max_live_passes(void)
{
	const char *env = getenv("QCKPT_LIVE_MAX_PASSES");
	long n;

	return env && parse_long(env, 2, 1000, &n) == 0 ? (int)n : MIGRATE_MAX_LIVE_PASSES;
}

json_t *migrate_one_cap_args(const char *cap, int state)
{
	return json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability", cap,
			 "state", state);
}

json_t *migrate_fingerprint(json_t *query_migrate)
{
	const char *status = json_string_value(json_object_get(query_migrate, "status"));
	json_t *ram = json_object_get(query_migrate, "ram");

	if (status == NULL || strcmp(status, "completed") != 0 ||
	    json_integer_value(json_object_get(query_migrate, "total-time")) <= 0 ||
	    !json_is_integer(json_object_get(ram, "transferred")))
		return NULL;
	return json_pack("{s:O, s:O?, s:O}",
			 "TotalTimeMs", json_object_get(query_migrate, "total-time"),
			 "DowntimeMs", json_object_get(query_migrate, "downtime"),
			 "RamBytes", json_object_get(ram, "transferred"));
}
