// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * netray exec: one record per execve/execveat, with the syscall's result.
 *
 * The path and argv are copied at syscall entry, while the caller's memory
 * still holds them, into exec_pending (keyed by thread id); the record is
 * completed and sent to the ring at exit, when the result is known. After a
 * successful exec the exit runs in the new image, so comm is the new
 * program's name while path/argv are the ones captured at entry.
 *
 * The same exec_enter()/exec_exit() pair is fed by four front ends; every
 * program is SEC("?...") (not loaded by default) and userspace enables the set
 * of the one backend the kernel accepts (netray-exec's backend.rs):
 *   tracepoint      syscalls:sys_{enter,exit}_execve[at], sched:sched_process_exec
 *   raw tracepoint  raw_syscalls sys_enter/sys_exit (every syscall, filtered
 *                   by number), raw sched_process_exec
 *   kprobe          ksyscall/kretsyscall execve[at], raw sched_process_exec
 *   fentry          fentry/fexit on the arch's syscall functions (target set
 *                   by userspace), tp_btf sched_process_exec
 *
 * No vmlinux.h: the few kernel structs read through CO-RE are declared below
 * with preserve_access_index, so the build needs no kernel BTF.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "exec_abi.h"

#ifndef AT_FDCWD
#define AT_FDCWD -100
#endif

/* ---- kernel structs, relocated by CO-RE at load ---------------------------- */

struct task_struct {
	int tgid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

/* Saved user registers; which flavour exists tells the arch (libbpf drops the
 * ___suffix when matching kernel types). */
struct pt_regs___x86 {
	unsigned long di, si, dx, ax, orig_ax;
} __attribute__((preserve_access_index));

struct pt_regs___arm64 {
	__u64 regs[31];
	__s32 syscallno;
} __attribute__((preserve_access_index));

/* The syscall's first three arguments (all exec needs), from saved user regs. */
static __always_inline unsigned long regs_arg(const void *regs, int n)
{
	if (bpf_core_field_exists(struct pt_regs___x86, di)) {
		const struct pt_regs___x86 *r = regs;

		return n == 0 ? BPF_CORE_READ(r, di) : n == 1 ? BPF_CORE_READ(r, si) : BPF_CORE_READ(r, dx);
	}
	if (bpf_core_field_exists(struct pt_regs___arm64, regs)) {
		const struct pt_regs___arm64 *r = regs;

		return n == 0 ? BPF_CORE_READ(r, regs[0]) : n == 1 ? BPF_CORE_READ(r, regs[1]) : BPF_CORE_READ(r, regs[2]);
	}
	return 0;
}

/* A function's return value, from a kretprobe's regs. */
static __always_inline long regs_ret(const void *regs)
{
	if (bpf_core_field_exists(struct pt_regs___x86, ax))
		return BPF_CORE_READ((const struct pt_regs___x86 *)regs, ax);
	if (bpf_core_field_exists(struct pt_regs___arm64, regs))
		return BPF_CORE_READ((const struct pt_regs___arm64 *)regs, regs[0]);
	return 0;
}

/* The syscall number, from saved user regs (still valid at syscall exit). */
static __always_inline long regs_syscall_nr(const void *regs)
{
	if (bpf_core_field_exists(struct pt_regs___x86, orig_ax))
		return BPF_CORE_READ((const struct pt_regs___x86 *)regs, orig_ax);
	if (bpf_core_field_exists(struct pt_regs___arm64, syscallno))
		return BPF_CORE_READ((const struct pt_regs___arm64 *)regs, syscallno);
	return -1;
}

/* libbpf fills this from the running kernel: with a syscall wrapper the kprobe's
 * first argument is the user regs, not the syscall's first argument. */
extern _Bool LINUX_HAS_SYSCALL_WRAPPER __kconfig __weak;

/* ---- configuration and maps ---------------------------------------------- */

const volatile struct nr_exec_config exec_cfg = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only execs in flight use memory */
	__uint(max_entries, 10240);
	__type(key, __u32);		/* tid at entry */
	__type(value, struct nr_exec_event);
} exec_pending SEC(".maps");

/* A zeroed record to insert into exec_pending, which is then filled in place:
 * no per-CPU scratch that a preempted program could share. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nr_exec_event);
} exec_blank SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);	/* set by userspace before load */
} exec_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nr_exec_stats);
} exec_stats SEC(".maps");

#define STAT_ADD(field)                                                  \
	do {                                                             \
		__u32 __zero = 0;                                        \
		struct nr_exec_stats *__s = bpf_map_lookup_elem(&exec_stats, &__zero); \
		if (__s)                                                 \
			__sync_fetch_and_add(&__s->field, 1);            \
	} while (0)

/* ---- the shared logic ----------------------------------------------------- */

/* Copies a user string; returns 1 if it was longer than the buffer, -1 if it
 * could not be read. */
static __always_inline int read_user_str(char *dst, __u32 size, const char *src)
{
	char next = 0;
	long n = bpf_probe_read_user_str(dst, size, src);

	if (n < 0)
		return -1;
	/* A full buffer is either an exact fit or a cut: look at the byte that
	 * did not fit. */
	if (n == size && !bpf_probe_read_user(&next, 1, src + size - 1) && next)
		return 1;
	return 0;
}

static __always_inline void exec_enter(const char *filename, const char *const *argv,
				       int dirfd, __u32 flags)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, tgid = id >> 32;
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	struct nr_exec_event *e;
	const void *blank;
	__u32 zero = 0, i;
	int r;

	if ((exec_cfg.flags & NR_EXEC_F_PID) && tgid != exec_cfg.pid)
		return;
	if ((exec_cfg.flags & NR_EXEC_F_UID) && uid != exec_cfg.uid)
		return;

	blank = bpf_map_lookup_elem(&exec_blank, &zero);
	if (!blank)
		return;
	if (bpf_map_update_elem(&exec_pending, &tid, blank, BPF_ANY)) {
		STAT_ADD(pending_full);
		return;
	}
	e = bpf_map_lookup_elem(&exec_pending, &tid);
	if (!e)
		return;
	STAT_ADD(entered);

	e->ts_ns = bpf_ktime_get_ns();
	e->pid = tgid;
	e->tid = tid;
	e->uid = uid;
	e->dirfd = dirfd;
	e->flags = flags;

	r = read_user_str(e->filename, sizeof(e->filename), filename);
	if (r > 0)
		e->flags |= NR_EXEC_FILENAME_TRUNCATED;
	else if (r < 0)
		e->flags |= NR_EXEC_FILENAME_FAULT;

	for (i = 0; i < NR_EXEC_ARGS; i++) {
		const char *arg = NULL;

		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
			break;
		r = read_user_str(e->argv[i], NR_EXEC_ARG_LEN, arg);
		if (r > 0)
			e->arg_truncated |= 1u << i;
		else if (r < 0)
			e->arg_fault |= 1u << i;
		e->argc = i + 1;
	}
	if (i == NR_EXEC_ARGS) {
		const char *more = NULL;

		if (!bpf_probe_read_user(&more, sizeof(more), &argv[NR_EXEC_ARGS]) && more)
			e->flags |= NR_EXEC_ARGV_MORE;
	}
}

static __always_inline int comm_matches(const char *comm)
{
	int i;

	for (i = 0; i < NR_EXEC_COMM_LEN; i++) {
		if (comm[i] != exec_cfg.comm[i])
			return 0;
		if (!comm[i])
			break;
	}
	return 1;
}

static __always_inline void exec_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct nr_exec_event *e;
	__u64 now, size, wakeup = 0;
	__u32 argc;

	e = bpf_map_lookup_elem(&exec_pending, &tid);
	if (!e)
		return;
	if ((exec_cfg.flags & NR_EXEC_F_FAILED) && ret >= 0)
		goto out;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if ((exec_cfg.flags & NR_EXEC_F_COMM) && !comm_matches(e->comm))
		goto out;

	now = bpf_ktime_get_ns();
	e->duration_ns = now - e->ts_ns;
	e->ts_ns = now;
	e->ret = ret;
	task = (struct task_struct *)bpf_get_current_task();
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);

	/* Send only the argv rows in use. */
	argc = e->argc;
	if (argc > NR_EXEC_ARGS)
		argc = NR_EXEC_ARGS;
	size = __builtin_offsetof(struct nr_exec_event, argv) + (__u64)argc * NR_EXEC_ARG_LEN;
	if (exec_cfg.wakeup_bytes)
		wakeup = bpf_ringbuf_query(&exec_events, BPF_RB_AVAIL_DATA) + size >= exec_cfg.wakeup_bytes
				 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&exec_events, e, size, wakeup))
		STAT_ADD(lost);
	else
		STAT_ADD(sent);
out:
	bpf_map_delete_elem(&exec_pending, &tid);
}

/* A non-leader thread that execs takes over the leader's pid: move its entry
 * to the id its syscall exit will run under. */
static __always_inline void exec_rekey(__u32 old_tid)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct nr_exec_event *e;

	if (old_tid == tid)
		return;
	e = bpf_map_lookup_elem(&exec_pending, &old_tid);
	if (!e)
		return;
	if (bpf_map_update_elem(&exec_pending, &tid, e, BPF_ANY))
		STAT_ADD(pending_full);
	bpf_map_delete_elem(&exec_pending, &old_tid);
}

/* ---- backend: syscall tracepoints ----------------------------------------- */

/* Layouts from events/syscalls/sys_{enter,exit}_execve/format (stable ABI). */
struct sys_enter_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	unsigned long args[6];
};

struct sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	long ret;
};

struct sched_process_exec_ctx {
	__u64 common;
	__u32 filename_loc;
	__s32 pid;
	__s32 old_pid;
};

SEC("?tracepoint/syscalls/sys_enter_execve")
int exec_tp_enter_execve(struct sys_enter_ctx *ctx)
{
	exec_enter((const char *)ctx->args[0], (const char *const *)ctx->args[1], AT_FDCWD, 0);
	return 0;
}

SEC("?tracepoint/syscalls/sys_enter_execveat")
int exec_tp_enter_execveat(struct sys_enter_ctx *ctx)
{
	exec_enter((const char *)ctx->args[1], (const char *const *)ctx->args[2], (int)ctx->args[0],
		   NR_EXEC_AT);
	return 0;
}

SEC("?tracepoint/syscalls/sys_exit_execve")
int exec_tp_exit_execve(struct sys_exit_ctx *ctx)
{
	exec_exit(ctx->ret);
	return 0;
}

SEC("?tracepoint/syscalls/sys_exit_execveat")
int exec_tp_exit_execveat(struct sys_exit_ctx *ctx)
{
	exec_exit(ctx->ret);
	return 0;
}

SEC("?tracepoint/sched/sched_process_exec")
int exec_tp_sched_exec(struct sched_process_exec_ctx *ctx)
{
	exec_rekey(ctx->old_pid);
	return 0;
}

/* ---- backend: raw syscall tracepoints -------------------------------------- */

/* sys_enter(regs, id), sys_exit(regs, ret): run for every syscall. */
SEC("?raw_tracepoint/sys_enter")
int exec_raw_enter(struct bpf_raw_tracepoint_args *ctx)
{
	const void *regs = (const void *)ctx->args[0];
	long nr = ctx->args[1];

	if (nr == exec_cfg.nr_execve)
		exec_enter((const char *)regs_arg(regs, 0), (const char *const *)regs_arg(regs, 1),
			   AT_FDCWD, 0);
	else if (nr == exec_cfg.nr_execveat)
		exec_enter((const char *)regs_arg(regs, 1), (const char *const *)regs_arg(regs, 2),
			   (int)regs_arg(regs, 0), NR_EXEC_AT);
	return 0;
}

SEC("?raw_tracepoint/sys_exit")
int exec_raw_exit(struct bpf_raw_tracepoint_args *ctx)
{
	long nr = regs_syscall_nr((const void *)ctx->args[0]);

	if (nr == exec_cfg.nr_execve || nr == exec_cfg.nr_execveat)
		exec_exit(ctx->args[1]);
	return 0;
}

/* sched_process_exec(task, old_pid, bprm) */
SEC("?raw_tracepoint/sched_process_exec")
int exec_raw_sched_exec(struct bpf_raw_tracepoint_args *ctx)
{
	exec_rekey((__u32)ctx->args[1]);
	return 0;
}

/* ---- backend: kprobes on the syscall functions ----------------------------- */

static __always_inline const void *ksyscall_regs(const void *ctx)
{
	return LINUX_HAS_SYSCALL_WRAPPER ? (const void *)regs_arg(ctx, 0) : ctx;
}

SEC("?ksyscall/execve")
int exec_kprobe_execve(void *ctx)
{
	const void *regs = ksyscall_regs(ctx);

	exec_enter((const char *)regs_arg(regs, 0), (const char *const *)regs_arg(regs, 1), AT_FDCWD, 0);
	return 0;
}

SEC("?ksyscall/execveat")
int exec_kprobe_execveat(void *ctx)
{
	const void *regs = ksyscall_regs(ctx);

	exec_enter((const char *)regs_arg(regs, 1), (const char *const *)regs_arg(regs, 2),
		   (int)regs_arg(regs, 0), NR_EXEC_AT);
	return 0;
}

SEC("?kretsyscall/execve")
int exec_kretprobe_execve(void *ctx)
{
	exec_exit(regs_ret(ctx));
	return 0;
}

SEC("?kretsyscall/execveat")
int exec_kretprobe_execveat(void *ctx)
{
	exec_exit(regs_ret(ctx));
	return 0;
}

/* ---- backend: fentry/fexit on the syscall functions ------------------------ */

/* Targets (e.g. __x64_sys_execve, whose one argument is the user regs) are
 * set by userspace; tracing programs get their arguments as a u64 array. */
SEC("?fentry")
int exec_fentry_execve(__u64 *ctx)
{
	const void *regs = (const void *)ctx[0];

	exec_enter((const char *)regs_arg(regs, 0), (const char *const *)regs_arg(regs, 1), AT_FDCWD, 0);
	return 0;
}

SEC("?fentry")
int exec_fentry_execveat(__u64 *ctx)
{
	const void *regs = (const void *)ctx[0];

	exec_enter((const char *)regs_arg(regs, 1), (const char *const *)regs_arg(regs, 2),
		   (int)regs_arg(regs, 0), NR_EXEC_AT);
	return 0;
}

SEC("?fexit")
int exec_fexit_execve(__u64 *ctx)
{
	exec_exit((long)ctx[1]);
	return 0;
}

SEC("?fexit")
int exec_fexit_execveat(__u64 *ctx)
{
	exec_exit((long)ctx[1]);
	return 0;
}

/* sched_process_exec(task, old_pid, bprm) */
SEC("?tp_btf/sched_process_exec")
int exec_btf_sched_exec(__u64 *ctx)
{
	exec_rekey((__u32)ctx[1]);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
