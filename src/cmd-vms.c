/*
 * cmd-vms.c: "qckpt vms [NAME...]", Hyper-V's Get-VM: every registered VM
 * (or the named ones) probed at once on one libuv loop: run state, QEMU
 * version, memory, disks, and from the catalog the number of checkpoints
 * and the latest one.  A table, JSON lines (--json, the VM objects that
 * `qckpt checkpoint -` reads) or names only (--names).
 *
 * A QMP monitor serves one client at a time, so each probe connects, sends
 * its queries at once, and closes as soon as the replies are in.  Each probe
 * has its own deadline (--timeout): a dead socket, or a monitor that never
 * greets because another client holds it, costs at most that long and never
 * delays the others.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blockdev.h"
#include "catalog.h"
#include "cmd.h"
#include "log.h"
#include "output.h"
#include "registry.h"
#include "util.h"
#include "vmconn.h"

/* Probes in flight at once: each holds a socket, so stay well below the
 * usual limit of 1024 open files. */
#define VMS_MAX_IN_FLIGHT 128
#define VMS_DEFAULT_TIMEOUT_MS 2000u

static int cmd_vms_exec(int argc, char **argv);

const struct cmd_entry cmd_vms_entry = {
	.name = "vms",
	.alias = "get-vm",
	.usage = "[--json|--names] [--timeout SECONDS] [NAME[,NAME...]...]",
	.summary = "show the registered VMs: state, QEMU version, memory, disks, checkpoints",
	.exec = cmd_vms_exec,
	.flags = CMD_F_REMOTE,
	.json_option = "--json",
	.columns = (const char *const[]){ "Name", "State", "QemuVersion", "MemoryMiB", "Disks", "CheckpointCount", "LatestCheckpoint", NULL },
};

struct vms_cmd;

/* One VM's probe: connect, query-name (vmconn), then query-status,
 * query-memory-size-summary and query-block in flight together. */
struct probe {
	struct vmconn conn;
	uv_timer_t deadline;
	struct vms_cmd *cmd;
	const struct registry_entry *entry;
	int finished;
	int replies_pending;
	char *state;         /* query-status "status", NULL if not known */
	json_t *memory;      /* query-memory-size-summary reply, or NULL */
	json_t *block;       /* query-block reply, or NULL */
	char version[64];
	char error[512];     /* why the VM is unreachable; "" when it answered */
	const char *reason;  /* the same in a few words, for the table */
};

struct vms_cmd {
	uv_loop_t loop;
	struct probe *probes;
	size_t count;
	size_t next;         /* the next probe to start */
	size_t in_flight;
	unsigned timeout_ms;
};

static void probe_start_more(struct vms_cmd *cmd);

static void probe_finish(struct probe *p, const char *why)
{
	if (p->finished)
		return;
	p->finished = 1;
	if (why != NULL) {
		snprintf(p->error, sizeof p->error, "%s",
			 why[0] ? why : "no answer");
		p->reason = p->conn.reason ? p->conn.reason : "error";
	}
	uv_timer_stop(&p->deadline);
	uv_close((uv_handle_t *)&p->deadline, NULL);
	/* Close now: the monitor is free for the next client at once.
	 * Replies still pending complete with QMP_ECLOSED and are ignored. */
	vmconn_close(&p->conn, NULL);
	p->cmd->in_flight--;
	probe_start_more(p->cmd);
}

/* A reply arrived (or failed); the probe is done when the last one is in. */
static int probe_reply(struct probe *p, int status,
		       const struct qmp_error *qerr, const char *what)
{
	if (p->finished)
		return -1;
	p->replies_pending--;
	if (status < 0 && status != QMP_ECOMMAND) {
		vmconn_explain(&p->conn, status, qerr, what);
		probe_finish(p, p->conn.error);
		return -1;
	}
	if (status == QMP_ECOMMAND)
		verbose_vm(p->entry->name, "%s: %s", what,
			   qerr && qerr->desc ? qerr->desc : "failed");
	return status;
}

static void probe_done_if_complete(struct probe *p)
{
	if (!p->finished && p->replies_pending == 0)
		probe_finish(p, NULL);
}

static void on_status(qmp_client *client, int status, json_t *result,
		      const struct qmp_error *qerr, void *arg)
{
	struct probe *p = arg;
	const char *s;

	if (probe_reply(p, status, qerr, "query-status") < 0)
		return;
	s = json_string_value(json_object_get(result, "status"));
	/* postmigrate is QEMU's word for a guest stopped by a save: to the
	 * user it is paused (cont resumes it, qckpt checkpoints it again). */
	if (s != NULL && strcmp(s, "postmigrate") == 0)
		s = "paused";
	p->state = xstrdup(s ? s : "unknown");
	probe_done_if_complete(p);
}

static void on_memory(qmp_client *client, int status, json_t *result,
		      const struct qmp_error *qerr, void *arg)
{
	struct probe *p = arg;

	if (probe_reply(p, status, qerr, "query-memory-size-summary") < 0)
		return;
	p->memory = json_incref(result);
	probe_done_if_complete(p);
}

static void on_block(qmp_client *client, int status, json_t *result,
		     const struct qmp_error *qerr, void *arg)
{
	struct probe *p = arg;

	if (probe_reply(p, status, qerr, "query-block") < 0)
		return;
	p->block = json_incref(result);
	probe_done_if_complete(p);
}

static void on_ready(struct vmconn *conn, int status)
{
	static const struct {
		const char *command;
		qmp_reply_cb cb;
	} queries[] = {
		{ "query-status", on_status },
		{ "query-memory-size-summary", on_memory },
		{ "query-block", on_block },
	};
	struct probe *p = conn->data;

	if (status < 0) {
		probe_finish(p, conn->error);
		return;
	}
	snprintf(p->version, sizeof p->version, "%s", conn->qmp.version_string);
	for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
		int rc = qmp_client_execute(&conn->qmp, queries[i].command, NULL,
					    queries[i].cb, p);

		if (rc < 0) {
			vmconn_explain(conn, rc, NULL, queries[i].command);
			probe_finish(p, conn->error);
			return;
		}
		p->replies_pending++;
	}
}

static void on_deadline(uv_timer_t *timer)
{
	struct probe *p = timer->data;

	snprintf(p->error, sizeof p->error,
		 "no answer within %u ms on %s; QMP serves one client at a time, so another tool may hold the monitor: give QEMU a second -qmp socket for qckpt",
		 p->cmd->timeout_ms, p->entry->monitor);
	p->reason = "no answer";
	probe_finish(p, NULL);
}

static void probe_start(struct probe *p)
{
	struct vms_cmd *cmd = p->cmd;
	const struct registry_entry *e = p->entry;

	cmd->in_flight++;
	uv_timer_init(&cmd->loop, &p->deadline);
	p->deadline.data = p;
	p->conn.data = p;
	/* vmconn's own connect timeout gives the clearer message when the
	 * monitor never greets; the deadline also bounds the queries. */
	if (vmconn_open(&cmd->loop, &p->conn, e->name, e->monitor, e->name,
			cmd->timeout_ms, on_ready) < 0) {
		probe_finish(p, p->conn.error);
		return;
	}
	uv_timer_start(&p->deadline, on_deadline, cmd->timeout_ms, 0);
}

static void probe_start_more(struct vms_cmd *cmd)
{
	while (cmd->next < cmd->count && cmd->in_flight < VMS_MAX_IN_FLIGHT)
		probe_start(&cmd->probes[cmd->next++]);
}

/* ---- what is printed ---------------------------------------------------- */

/* Every drive with a medium: {"Device", "ActiveImage", "Format",
 * "ReadOnly"}.  Empty drives (a CD-ROM without a disc) are left out. */
static json_t *disks_from_block(json_t *block, int *writable, int *readonly)
{
	json_t *disks = json_array(), *b;
	size_t i;

	*writable = *readonly = 0;
	json_array_foreach(block, i, b) {
		json_t *ins = json_object_get(b, "inserted");
		const char *device = json_string_value(json_object_get(b, "device"));
		const char *node = json_string_value(json_object_get(ins, "node-name"));
		char *qdev = blockdev_device_from_qdev(json_string_value(json_object_get(b, "qdev")));
		int ro = json_is_true(json_object_get(ins, "ro"));

		if (ins == NULL) {
			free(qdev);
			continue;
		}
		if (device == NULL || device[0] == '\0')
			device = qdev ? qdev : node ? node : "?";
		json_array_append_new(disks, json_pack("{s:s,s:s?,s:s?,s:b}",
			"Device", device,
			"ActiveImage", json_string_value(json_object_get(ins, "file")),
			"Format", json_string_value(json_object_get(ins, "drv")),
			"ReadOnly", ro));
		free(qdev);
		if (ro)
			(*readonly)++;
		else
			(*writable)++;
	}
	return disks;
}

/* The VM object (--json); field names are fixed, scripts depend on them. */
/* QEMU's run state, or "unreachable". */
static const char *probe_state(const struct probe *p)
{
	return p->error[0] ? "unreachable" : p->state ? p->state : "unknown";
}

/* The table's State column: the state, and why when unreachable
 * ("unreachable: no socket").  Returns its length. */
static int probe_state_text(const struct probe *p, char *out, size_t len)
{
	if (p->error[0])
		return snprintf(out, len, "%s: %s", probe_state(p), p->reason);
	return snprintf(out, len, "%s", probe_state(p));
}

static json_t *probe_object(const struct probe *p, const char *host,
			    json_t *records, int *writable, int *readonly)
{
	const struct registry_entry *e = p->entry;
	json_t *o = json_object(), *latest = json_null();
	size_t n = json_array_size(records);

	*writable = *readonly = -1;
	json_object_set_new(o, "Name", json_string(e->name));
	json_object_set_new(o, "State", json_string(probe_state(p)));
	if (p->error[0]) {
		json_object_set_new(o, "Reason", json_string(p->reason));
		json_object_set_new(o, "Error", json_string(p->error));
	}
	json_object_set_new(o, "QemuVersion", p->error[0] ? json_null() :
			    json_string(p->version));
	if (p->memory != NULL) {
		json_int_t bytes = json_integer_value(json_object_get(p->memory, "base-memory")) +
				   json_integer_value(json_object_get(p->memory, "plugged-memory"));

		json_object_set_new(o, "MemoryMiB", json_integer(bytes / (1024 * 1024)));
	} else {
		json_object_set_new(o, "MemoryMiB", json_null());
	}
	json_object_set_new(o, "Disks", p->block ?
			    disks_from_block(p->block, writable, readonly) : json_null());
	json_object_set_new(o, "CheckpointCount", json_integer((json_int_t)n));
	if (n > 0) {
		json_t *r = json_array_get(records, n - 1);

		latest = json_pack("{s:O?,s:O?,s:O?}", "Id", json_object_get(r, "Id"),
				   "Name", json_object_get(r, "Name"),
				   "CreationTime", json_object_get(r, "CreationTime"));
	}
	json_object_set_new(o, "LatestCheckpoint", latest);
	json_object_set_new(o, "CheckpointType", json_string(registry_checkpoint_type_name(e->type)));
	json_object_set_new(o, "ComputerName", json_string(host));
	json_object_set_new(o, "Monitor", json_string(e->monitor));
	return o;
}

static void print_header(int state_width)
{
	printf("%-16s %-*s %-8s %7s %-6s %11s  %s\n", "Name", state_width, "State",
	       "QEMU", "Memory", "Disks", "Checkpoints", "Latest");
}

static void print_row(json_t *o, const char *state, int state_width,
		      int writable, int readonly)
{
	char mem[24] = "-", disks[24] = "-", version[16], latest[280] = "-";
	json_t *l = json_object_get(o, "LatestCheckpoint");
	const char *ver = output_str(o, "QemuVersion", "-");

	/* "7.2.0 (Debian 1:7.2+dfsg-7)" -> "7.2.0" */
	snprintf(version, sizeof version, "%.*s", (int)strcspn(ver, " "), ver);
	if (json_is_integer(json_object_get(o, "MemoryMiB")))
		snprintf(mem, sizeof mem, "%lldM",
			 (long long)json_integer_value(json_object_get(o, "MemoryMiB")));
	if (writable >= 0)
		snprintf(disks, sizeof disks, readonly > 0 ? "%d+%dro" : "%d",
			 writable, readonly);
	if (json_is_object(l)) {
		char when[32];

		output_short_time(output_str(l, "CreationTime", ""), when, sizeof when);
		snprintf(latest, sizeof latest, "%.200s (%s)", output_str(l, "Name", "?"), when);
	}
	printf("%-16s %-*s %-8s %7s %-6s %11lld  %s\n", output_str(o, "Name", "?"),
	       state_width, state, version, mem, disks,
	       (long long)json_integer_value(json_object_get(o, "CheckpointCount")),
	       latest);
}

/* ---- the command ---------------------------------------------------------- */

/* The registry entries to show, in registry order when none are named, else
 * in the order named.  Unknown names get their error line; *unknown counts
 * them. */
static const struct registry_entry **select_entries(const struct registry *reg,
						    char **names, int nnames,
						    size_t *count, int *unknown)
{
	const struct registry_entry **sel;
	size_t n = 0, cap = reg->count + 1;

	*unknown = 0;
	if (nnames == 0) {
		sel = xcalloc(cap, sizeof *sel);
		for (size_t i = 0; i < reg->count; i++)
			sel[n++] = &reg->entries[i];
		*count = n;
		return sel;
	}
	sel = xcalloc(cap, sizeof *sel);
	for (int i = 0; i < nnames; i++) {
		char *list = xstrdup(names[i]), *save = NULL;

		for (char *name = strtok_r(list, ",", &save); name != NULL;
		     name = strtok_r(NULL, ",", &save)) {
			const struct registry_entry *e = registry_find(reg, name);
			int seen = 0;

			if (e == NULL) {
				error_vm(name, "not in the registry %s; see the names with 'qckpt vms --names', add it with 'qckpt register %s MONITOR'",
					 reg->path ? reg->path : "", name);
				(*unknown)++;
				continue;
			}
			for (size_t j = 0; j < n; j++)
				seen |= sel[j] == e;
			if (seen)
				continue;
			if (n + 1 >= cap)
				sel = xrealloc(sel, (cap *= 2) * sizeof *sel);
			sel[n++] = e;
		}
		free(list);
	}
	*count = n;
	return sel;
}

static int parse_timeout(const char *text, unsigned *ms)
{
	double s;

	if (parse_double(text, 0, 3600, &s) < 0 || !(s > 0))
		return error("--timeout %s: give seconds, more than 0 and at most 3600 (e.g. 2 or 0.5)",
			     text);
	*ms = (unsigned)(s * 1000 + 0.5);
	if (*ms == 0)
		*ms = 1;
	return 0;
}

/* Probe the selected VMs and print them; returns how many were unreachable. */
int cmd_vms_probe_and_print(const struct registry_entry **sel, size_t count,
			    unsigned timeout_ms, int json)
{
	struct vms_cmd cmd = { .timeout_ms = timeout_ms, .count = count };
	char host[256] = "localhost";
	int unreachable = 0, state_width = 14; /* "finish-migrate" */
	uint64_t start = mono_ms();

	gethostname(host, sizeof host);
	host[sizeof host - 1] = '\0';
	cmd.probes = xcalloc(count ? count : 1, sizeof *cmd.probes);
	for (size_t i = 0; i < count; i++) {
		cmd.probes[i].cmd = &cmd;
		cmd.probes[i].entry = sel[i];
	}
	uv_loop_init(&cmd.loop);
	probe_start_more(&cmd);
	uv_run(&cmd.loop, UV_RUN_DEFAULT);
	uv_loop_close(&cmd.loop);
	verbose_vm(NULL, "probed %zu VMs in %llu ms", count,
		   (unsigned long long)(mono_ms() - start));

	if (!json) {
		/* The State column as wide as its longest entry. */
		for (size_t i = 0; i < count; i++) {
			char state[128];
			int w = probe_state_text(&cmd.probes[i], state, sizeof state);

			if (w > state_width)
				state_width = w;
		}
		print_header(state_width);
	}
	for (size_t i = 0; i < count; i++) {
		struct probe *p = &cmd.probes[i];
		char *root = catalog_root(p->entry);
		json_t *records = catalog_list(root, p->entry->name);
		int writable, readonly;
		json_t *o = probe_object(p, host, records, &writable, &readonly);

		if (json) {
			output_json_line(o);
		} else {
			char state[128];

			probe_state_text(p, state, sizeof state);
			print_row(o, state, state_width, writable, readonly);
		}
		json_decref(o);
		json_decref(records);
		free(root);
	}
	fflush(stdout);
	/* The reasons after the table, one line per VM, as every failure. */
	for (size_t i = 0; i < count; i++) {
		struct probe *p = &cmd.probes[i];

		if (p->error[0]) {
			error_vm(p->entry->name, "unreachable: %s", p->error);
			unreachable++;
		}
		free(p->state);
		json_decref(p->memory);
		json_decref(p->block);
	}
	free(cmd.probes);
	return unreachable;
}

static int cmd_vms_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "json", no_argument, NULL, 'j' },
		{ "names", no_argument, NULL, 'N' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const struct registry_entry **sel;
	struct registry reg;
	unsigned timeout_ms = VMS_DEFAULT_TIMEOUT_MS;
	char err[512];
	int opt, json = 0, names = 0, unknown, failed = 0;
	size_t count;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_vms_entry, argc, argv, CMD_COMMON_SHORT "t:", longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return EXIT_ALL_OK;
		if (opt == 'j')
			json = 1;
		else if (opt == 'N')
			names = 1;
		else if (opt == 't') {
			if (parse_timeout(optarg, &timeout_ms) < 0)
				return EXIT_USAGE;
		} else
			return cmd_usage(&cmd_vms_entry);
	}
	if (json && names) {
		error("--json and --names exclude each other");
		return cmd_usage(&cmd_vms_entry);
	}
	if (registry_load(cmd_registry_path, &reg, err, sizeof err) < 0)
		return error("%s", err), EXIT_USAGE;
	sel = select_entries(&reg, argv + optind, argc - optind, &count, &unknown);
	if (names) {
		/* Names only: no VM is contacted. */
		for (size_t i = 0; i < count; i++)
			printf("%s\n", sel[i]->name);
	} else {
		failed = cmd_vms_probe_and_print(sel, count, timeout_ms, json);
	}
	free(sel);
	registry_free(&reg);
	return failed || unknown ? EXIT_SOME_FAILED : EXIT_ALL_OK;
}
