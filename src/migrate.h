/*
 * migrate.h: how a memory state is saved, decided from what QEMU offers
 * (query-migrate-capabilities), never from its version number:
 *  - "mapped-ram" offered (QEMU >= 9, which also has the file: transport):
 *    file: through an fdset (add-fd), with mapped-ram and multifd channels
 *    (the fastest measured) except for background snapshots;
 *  - otherwise fd: through getfd (QEMU 7.2 rejects file:; QEMU 10 warns
 *    that fd: to a file is deprecated).
 * Also the tuned parameters (no bandwidth cap, a small downtime-limit) and
 * the arguments that put the user's settings back afterwards.
 */
#ifndef MIGRATE_H
#define MIGRATE_H

#include <jansson.h>

#define MIGRATE_DOWNTIME_LIMIT_MS 10
#define MIGRATE_MULTIFD_CHANNELS 2
/* Iterations after which a live save that does not converge stops the
 * guest to finish (memory dirtied faster than it can be written);
 * $QCKPT_LIVE_MAX_PASSES overrides it. */
#define MIGRATE_MAX_LIVE_PASSES 12
int migrate_max_live_passes(void);

struct migrate_plan {
	int use_fdset;    /* file:/dev/fdset/N through add-fd (QEMU >= 9) */
	int mapped_ram;   /* with mapped-ram + multifd (not for background) */
	int background;   /* background-snapshot */
	int ignore_shared; /* x-ignore-shared: RAM in a shared file stays out */
	int switchover;   /* with pause-before-switchover (ram-file mode) */
	int fdset_id;     /* from add-fd, -1 before */
	char fdname[32];  /* for getfd / fd: */
	json_t *saved_caps;   /* the user's capability states we change */
	json_t *saved_params; /* the user's parameters we change */
	json_t *caps_off;     /* capabilities of another mode, on, that we
			       * switch off for this save (and back after) */
	int direct_io;        /* QEMU offers the direct-io parameter (>= 9.1) */
	/* A network monitor: a URI QEMU opens on its own host (file: or
	 * exec:cat), no fd handed over; NULL otherwise. */
	char *uri;
};

/* Does QEMU offer CAP (from a query-migrate-capabilities reply)? */
int migrate_has_cap(json_t *caps, const char *cap);

/* Its state (on/off) in a query-migrate-capabilities reply; 0 if absent. */
int migrate_cap_state(json_t *caps, const char *cap);
/* migrate-set-capabilities arguments that set one capability. */
json_t *migrate_one_cap_args(const char *cap, int state);

/*
 * What tells one completed save from any other in QEMU's query-migrate
 * reply (total time, downtime, RAM bytes), for the record (MemoryState's
 * Migration): a guest still stopped by that save (postmigrate) still has
 * that memory.  NULL unless the reply is of a completed migration whose
 * total time QEMU has filled in.
 */
json_t *migrate_fingerprint(json_t *query_migrate);

/* Fill the plan from the probes. */
void migrate_plan_init(struct migrate_plan *plan, json_t *caps,
		       json_t *params, int background, const char *id);
/* The device state alone of a VM whose RAM is a shared file (ram-file
 * mode): x-ignore-shared, no mapped-ram or multifd (a few hundred KiB);
 * with pause-before-switchover where QEMU offers it. */
void migrate_plan_init_ignore_shared(struct migrate_plan *plan, json_t *caps,
				     json_t *params, const char *id);
void migrate_plan_free(struct migrate_plan *plan);

/* Does QEMU take file: URIs (8.2; from query-qmp-schema: the migration
 * address types, socket exec file)?  mapped-ram implies it (9.0). */
int migrate_has_file_transport(json_t *caps, json_t *schema);
/*
 * A network monitor: the memory goes to PATH on QEMU's host, opened by
 * QEMU itself: "file:PATH" (with mapped-ram where the plan has it) when
 * file_transport, else "exec:cat >'PATH'" (QEMU 7.2; shell-quoted, any
 * byte of PATH arrives unchanged).  After migrate_plan_init.
 */
void migrate_plan_remote(struct migrate_plan *plan, const char *path,
			 int file_transport);

json_t *migrate_set_caps_args(const struct migrate_plan *plan);
json_t *migrate_restore_caps_args(const struct migrate_plan *plan);
json_t *migrate_set_params_args(const struct migrate_plan *plan);
json_t *migrate_restore_params_args(const struct migrate_plan *plan);

/* The command that hands QEMU the memory file: getfd or add-fd (not for
 * a plan with a uri: nothing is handed over). */
const char *migrate_fd_command(const struct migrate_plan *plan);
json_t *migrate_fd_args(const struct migrate_plan *plan);
/* Take add-fd's reply (the fdset id). */
void migrate_fd_reply(struct migrate_plan *plan, json_t *result);
/* The command and arguments that release it again. */
const char *migrate_release_command(const struct migrate_plan *plan);
json_t *migrate_release_args(const struct migrate_plan *plan);

json_t *migrate_args(const struct migrate_plan *plan);

/* The capabilities a restore must set, for the record. */
json_t *migrate_record_caps(const struct migrate_plan *plan);

#endif
