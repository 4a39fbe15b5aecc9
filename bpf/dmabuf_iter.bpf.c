// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// dmabufd's accounting scan in the kernel: BPF iterators that walk every task's fd table and
// address space and emit only what refers to a dma-buf, as fixed-size binary records
// (src/bpf/records.rs parses them; the layouts below and there change together).
//
// CO-RE without vmlinux.h: each kernel struct is declared with only the fields read here and
// `preserve_access_index`, so the loader (aya) relocates every field offset against the running
// kernel's BTF. One object serves every kernel with BTF and the iterators (task_file 5.8+,
// task_vma 5.12+, dmabuf 6.16+; the fd-table walk on iter/task needs bpf_loop, 5.17+). Build: clang -O2 -g -target bpf -c (build.rs, feature `bpf`).
//
// A file is a dma-buf when its inode lives on the dma-buf pseudo filesystem (superblock magic
// DMA_BUF_MAGIC): one compare, no strings, and exactly the files /proc shows as `/dmabuf:`.

typedef unsigned char __u8;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;

#define SEC(name) __attribute__((section(name), used))
#define CORE __attribute__((preserve_access_index))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

#define DMA_BUF_MAGIC 0x444d4142 /* "DMAB" */
#define NAME_LEN 32              /* DMA_BUF_NAME_LEN: names are at most 31 bytes */
#define EXPORTER_LEN 64

#define TASK_COMM_LEN 16
#define PF_EXITING 0x00000004

#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_ANY 0

// Helpers by number (include/uapi/linux/bpf.h).
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
                                   __u64 flags) = (void *)2;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size, const void *src) = (void *)115;
static long (*bpf_seq_write)(void *m, const void *data, __u32 len) = (void *)127;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx,
                        __u64 flags) = (void *)181;

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} CORE;

struct super_block {
	unsigned long s_magic;
} CORE;

struct inode {
	struct super_block *i_sb;
	unsigned long i_ino;
	__s64 i_size;
} CORE;

struct file {
	struct inode *f_inode;
	void *private_data;
	const void *f_op;
} CORE;

struct dma_buf {
	unsigned long size;
	const char *exp_name;
	const char *name;
	struct file *file;
} CORE;

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
	unsigned long *open_fds;
} CORE;

struct files_struct {
	struct fdtable *fdt;
} CORE;

struct mm_struct;

typedef struct {
	__u32 val;
} kuid_t;

struct cred {
	kuid_t uid;
} CORE;

struct task_struct {
	unsigned int flags;
	__s32 pid;
	__s32 tgid;
	struct files_struct *files;
	struct mm_struct *mm;
	struct task_struct *group_leader;
	const struct cred *real_cred;
	char comm[TASK_COMM_LEN];
} CORE;

struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
	unsigned long vm_pgoff;
	struct file *vm_file;
} CORE;

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} CORE;

struct bpf_iter__task_vma {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	struct vm_area_struct *vma;
} CORE;

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} CORE;

struct bpf_iter__dmabuf {
	struct bpf_iter_meta *meta;
	struct dma_buf *dmabuf;
} CORE;

// Record kinds; every record starts with its kind.
enum {
	REC_BUFFER = 1,
	REC_FD = 2,
	REC_VMA = 3,
	REC_PROCESS = 4,
	REC_TABLE = 5,
	REC_TABLE_FD = 6,
	REC_TABLE_CUT = 7,
	REC_TABLE_VOID = 8,
};

// Dma-buf fds of one table that one run of dmabuf_tables writes. A run's output must fit the
// kernel's seq buffer (8 pages; the kernel fails the read with E2BIG when one object's output
// alone does not): a process, a table, this many fds, a cut and a void, 32 + 24 + 24 * 1300 +
// 16 + 16 bytes, fit with 4 KiB pages.
#define TABLE_FDS_PER_RUN 1300

// Once per buffer and pass (see `seen`): identity, size and the names the kernel holds.
struct buffer_rec {
	__u32 kind;
	__u32 pad;
	__u64 inode;
	__u64 size;
	char name[NAME_LEN];
	char exporter[EXPORTER_LEN];
};

// One dma-buf fd: `files` tells fd tables apart (threads after unshare(CLONE_FILES), and every
// thread of a process whose leader has exited, are visited with their own table). `size` lets
// a pass that describes no buffers (below) still size one the kernel's list did not have yet.
struct fd_rec {
	__u32 kind;
	__u32 tgid;
	__u32 tid;
	__u32 fd;
	__u64 files;
	__u64 inode;
	__u64 size;
};

// One dma-buf mapping: `mm` tells address spaces apart (a thread group shares one, but the
// iterator visits it through every thread whose fd table differs from the leader's).
// A mapping's start and end matter only as its length: 40 bytes, not 56, for what is the most
// numerous record (a compositor's buffers mapped by every client it forked).
struct vma_rec {
	__u32 kind;
	__u32 tgid;
	__u32 tid;
	__u32 pgoff; // saturated: a dma-buf mapping starts inside the buffer, far below 2^32 pages
	__u64 mm;
	__u64 inode;
	__u64 len;
};

// An fd table walked in the kernel (dmabuf_tables), before its dma-buf fds: whose it is and its
// identity, as an fd_rec says of each fd.
struct table_rec {
	__u32 kind;
	__u32 tgid;
	__u32 tid;
	__u32 pad;
	__u64 files;
};

// One dma-buf fd of the table before it: 24 bytes, not fd_rec's 40.
struct table_fd_rec {
	__u32 kind;
	__u32 pad;
	__u64 inode;
	__u64 size;
};

// The table before it has more dma-buf fds than one run writes: userspace reads the rest, fds
// `next_fd` and above, from /proc/<tgid>/task/<tid>/fd.
struct table_cut_rec {
	__u32 kind;
	__u32 tgid;
	__u32 tid;
	__u32 next_fd;
};

// The records of the table before it are void: it may have been freed while it was walked (see
// dmabuf_tables).
struct table_void_rec {
	__u32 kind;
	__u32 tgid;
	__u32 tid;
	__u32 pad;
};

// Once per process and pass, before its first fd or mapping: what /proc/<pid>/status would
// say of it (the leader's command name, unescaped, and the real uid), so that a scan reads no
// per-process file at all.
struct process_rec {
	__u32 kind;
	__u32 tgid;
	__u32 uid;
	__u32 pad;
	char comm[TASK_COMM_LEN];
};

// Which buffers a pass has described already (id = inode), keyed by the pass's session id,
// which the kernel numbers afresh for every read of an iterator: a pinned iterator read again and
// again starts each pass with nothing seen, and passes old or concurrent never mix. LRU: old
// passes' entries make room by themselves; an entry evicted within a pass only means a
// description written twice, and userspace keeps the first.
struct seen_key {
	__u64 session;
	__u64 id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct seen_key);
	__type(value, __u8);
} seen SEC(".maps");

// The process this CPU last described, as one word: the pass's session id (low 32 bits) over
// the tgid. A task's fds and VMAs come one after another, so this one compare replaces a hash
// lookup per record; a process met again after another (a thread with its own fd table, a
// reader moved to another CPU) is only described twice, which userspace ignores. One aligned
// 64-bit store cannot tear, and only a pass that has described a process ever stores its tag,
// so a match always means "described in this pass" (two live passes would need session ids
// 2^32 apart to collide).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} described SEC(".maps");

// The dma-buf file operations (`dma_buf_fops`), learnt from the first file the superblock magic
// says is a dma-buf: from then on one read and compare of `f_op` tells a dma-buf, where the
// magic takes three reads (file, inode, superblock).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dmabuf_fops SEC(".maps");

char LICENSE[] SEC("license") = "GPL";

static __attribute__((always_inline)) int is_dmabuf(struct file *file)
{
	if (!file || !file->f_inode || !file->f_inode->i_sb)
		return 0;
	return file->f_inode->i_sb->s_magic == DMA_BUF_MAGIC;
}

static __attribute__((always_inline)) long write_buffer(struct seq_file *seq, struct dma_buf *buf,
                                                        __u64 inode, __u64 size)
{
	struct buffer_rec rec = { .kind = REC_BUFFER, .inode = inode, .size = size };
	const char *name = 0, *exporter = 0;

	bpf_probe_read_kernel(&name, sizeof(name), &buf->name);
	bpf_probe_read_kernel(&exporter, sizeof(exporter), &buf->exp_name);
	if (name)
		bpf_probe_read_kernel_str(rec.name, sizeof(rec.name), name);
	if (exporter)
		bpf_probe_read_kernel_str(rec.exporter, sizeof(rec.exporter), exporter);
	return bpf_seq_write(seq, &rec, sizeof(rec));
}

static __attribute__((always_inline)) void fill_process(struct process_rec *rec,
                                                        struct task_struct *task)
{
	struct task_struct *leader = 0;
	const struct cred *cred = 0;

	rec->kind = REC_PROCESS;
	rec->tgid = task->tgid;
	// /proc/<tgid>/status names the leader, also once it has exited and another thread is
	// the one visited; its uid is the real one, as status's first Uid field.
	bpf_probe_read_kernel(&leader, sizeof(leader), &task->group_leader);
	bpf_probe_read_kernel(&cred, sizeof(cred), &task->real_cred);
	if (cred)
		bpf_probe_read_kernel(&rec->uid, sizeof(rec->uid), &cred->uid.val);
	if (leader)
		bpf_probe_read_kernel_str(rec->comm, sizeof(rec->comm), leader->comm);
}

static __attribute__((always_inline)) long write_process(struct seq_file *seq,
                                                         struct task_struct *task)
{
	struct process_rec rec = {};

	fill_process(&rec, task);
	return bpf_seq_write(seq, &rec, sizeof(rec));
}

// Describes the process and (when `describe_buffer`) the buffer behind a dma-buf file the first
// time this pass meets each, then writes `ref` (`len` bytes). A description counts as written
// only when the reference after it fit too: when the seq buffer overflows, the kernel drops this
// call's output and calls again for the same object. The passes that describe no buffer run
// where the kernel's own list (iter/dmabuf) describes them all, read by userspace just before.
static __attribute__((always_inline)) int emit(struct bpf_iter_meta *meta,
                                               struct task_struct *task, struct file *file,
                                               const void *ref, __u32 len, int describe_buffer)
{
	struct seq_file *seq = meta->seq;
	struct seen_key buffer_key = { .session = meta->session_id, .id = file->f_inode->i_ino };
	__u64 tag = (meta->session_id << 32) | (__u32)task->tgid;
	__u32 zero = 0;
	__u64 *last = bpf_map_lookup_elem(&described, &zero);
	int new_process = !last || *last != tag;
	int new_buffer = describe_buffer && !bpf_map_lookup_elem(&seen, &buffer_key);
	__u8 one = 1;

	if (new_process && write_process(seq, task))
		return 0;
	if (new_buffer) {
		struct dma_buf *buf = 0;

		bpf_probe_read_kernel(&buf, sizeof(buf), &file->private_data);
		if (!buf || write_buffer(seq, buf, buffer_key.id, file->f_inode->i_size))
			return 0;
	}
	if (bpf_seq_write(seq, ref, len))
		return 0;
	if (new_process && last)
		*last = tag;
	if (new_buffer)
		bpf_map_update_elem(&seen, &buffer_key, &one, BPF_ANY);
	return 0;
}

// Every fd of every task, describing every buffer it meets: where iter/dmabuf does not list
// them (before 6.16), or a table is too large for dmabuf_tables.
SEC("iter/task_file")
int dmabuf_fds(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;

	if (!task || !is_dmabuf(file))
		return 0;
	struct fd_rec rec = {
		.kind = REC_FD,
		.tgid = task->tgid,
		.tid = task->pid,
		.fd = ctx->fd,
		.files = (__u64)task->files,
		.inode = file->f_inode->i_ino,
		.size = file->f_inode->i_size,
	};
	return emit(ctx->meta, task, file, &rec, sizeof(rec), 1);
}

static __attribute__((always_inline)) int vma(struct bpf_iter__task_vma *ctx, int describe)
{
	struct task_struct *task = ctx->task;
	struct vm_area_struct *vma = ctx->vma;

	if (!task || !vma)
		return 0;
	struct file *file = vma->vm_file;
	if (!is_dmabuf(file))
		return 0;
	unsigned long pgoff = vma->vm_pgoff;
	struct vma_rec rec = {
		.kind = REC_VMA,
		.tgid = task->tgid,
		.tid = task->pid,
		.pgoff = pgoff > 0xffffffff ? 0xffffffff : pgoff,
		.mm = (__u64)task->mm,
		.inode = file->f_inode->i_ino,
		.len = vma->vm_end - vma->vm_start,
	};
	return emit(ctx->meta, task, file, &rec, sizeof(rec), describe);
}

// One fd table, walked by bpf_loop eight fds at a time (dmabuf_tables): a byte of the open-fds
// bitmap tells which of them to look at, and one read takes their eight file pointers.
struct table_walk {
	struct seq_file *seq;
	__u64 fds;      // the table's fd array: struct file *[max_fds]
	__u64 open_fds; // its bitmap of open fds
	__u64 word;     // the bitmap's word for the current 64 fds
	__u64 fops;     // dma_buf_fops once known, else 0
	__u32 groups;   // eight fds each: max_fds is a multiple of 64
	__u32 bits;     // which fds of the current group are open
	__u32 started;  // the process and table records are written
	__u32 full;     // the seq buffer is full, or the table cut: stop
	__u32 written;  // dma-buf fds written
	__u32 at;       // the current group's first fd
	struct file *group[8];
	struct process_rec process;
	struct table_rec table;
};

static __attribute__((always_inline)) int magic_is_dmabuf(struct file *f)
{
	struct inode *inode = 0;
	struct super_block *sb = 0;
	unsigned long magic = 0;

	bpf_probe_read_kernel(&inode, sizeof(inode), &f->f_inode);
	if (inode)
		bpf_probe_read_kernel(&sb, sizeof(sb), &inode->i_sb);
	if (sb)
		bpf_probe_read_kernel(&magic, sizeof(magic), &sb->s_magic);
	return magic == DMA_BUF_MAGIC;
}

// bpf_loop's callback for fd `k` of the current group: 0 goes on, 1 stops (the table is cut,
// or the seq buffer is full: the kernel then drops this task's output and shows the task again
// after the next read).
static long table_fd(__u64 k, struct table_walk *w)
{
	struct file *f;
	const void *op = 0;
	struct inode *inode = 0;

	if (!((w->bits >> (k & 7)) & 1))
		return 0;
	f = w->group[k & 7];
	if (!f)
		return 0;
	bpf_probe_read_kernel(&op, sizeof(op), &f->f_op);
	if ((__u64)op != w->fops) {
		if (w->fops || !magic_is_dmabuf(f))
			return 0;
		w->fops = (__u64)op;
	}
	struct table_fd_rec rec;
	bpf_probe_read_kernel(&inode, sizeof(inode), &f->f_inode);
	if (!inode)
		return 0;
	// Field by field: an initializer would leave its image in .rodata, a map for nothing.
	rec.kind = REC_TABLE_FD;
	rec.pad = 0;
	rec.inode = 0;
	rec.size = 0;
	bpf_probe_read_kernel(&rec.inode, sizeof(rec.inode), &inode->i_ino);
	bpf_probe_read_kernel(&rec.size, sizeof(rec.size), &inode->i_size);
	if (!w->started) {
		w->started = 1;
		if (bpf_seq_write(w->seq, &w->process, sizeof(w->process)) ||
		    bpf_seq_write(w->seq, &w->table, sizeof(w->table))) {
			w->full = 1;
			return 1;
		}
	}
	if (w->written >= TABLE_FDS_PER_RUN) {
		struct table_cut_rec cut;

		cut.kind = REC_TABLE_CUT;
		cut.tgid = w->table.tgid;
		cut.tid = w->table.tid;
		cut.next_fd = w->at + (k & 7);
		bpf_seq_write(w->seq, &cut, sizeof(cut));
		w->full = 1;
		return 1;
	}
	if (bpf_seq_write(w->seq, &rec, sizeof(rec))) {
		w->full = 1;
		return 1;
	}
	w->written++;
	return 0;
}

// bpf_loop's callback for group `g` (fds 8g to 8g+7).
static long table_group(__u64 g, struct table_walk *w)
{
	if (g >= w->groups)
		return 1;
	if ((g & 7) == 0) {
		w->word = 0;
		bpf_probe_read_kernel(&w->word, sizeof(w->word), (void *)(w->open_fds + (g >> 3) * 8));
	}
	w->bits = (w->word >> ((g & 7) * 8)) & 0xff;
	if (!w->bits)
		return 0;
	if (bpf_probe_read_kernel(w->group, sizeof(w->group), (void *)(w->fds + g * 64)))
		return 0;
	w->at = g * 8;
	bpf_loop(8, table_fd, w, 0);
	// The verifier wants a callback's return value to be 0 or 1 as such.
	if (w->full)
		return 1;
	return 0;
}

// Every fd table, walked in the kernel: one program run per task instead of one per fd (the
// task_file iterator's per-fd lock, reference and run cost 0.8 us each under emulation, and a
// phone's processes hold a hundred other files for each dma-buf). A task's output must fit the
// kernel's seq buffer (32 KiB), so a run writes at most TABLE_FDS_PER_RUN of a table's dma-buf
// fds and then where the rest begin, for userspace to read from /proc. Describes processes
// (each time it walks one of their tables; userspace keeps the first) but no buffers: it runs
// where iter/dmabuf lists them. Threads that share their leader's table are passed over, as
// iter/task_file does.
SEC("iter/task")
int dmabuf_tables(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct files_struct *files;
	struct fdtable *fdt;
	__u32 zero = 0;

	if (!task)
		return 0;
	files = task->files;
	if (!files || (task->pid != task->tgid && files == task->group_leader->files))
		return 0;
	fdt = files->fdt;
	if (!fdt)
		return 0;
	__u64 *fops = bpf_map_lookup_elem(&dmabuf_fops, &zero);
	struct table_walk w = {
		.seq = ctx->meta->seq,
		.fds = (__u64)fdt->fd,
		.open_fds = (__u64)fdt->open_fds,
		.fops = fops ? *fops : 0,
		.groups = fdt->max_fds / 8,
		.table = { .kind = REC_TABLE, .tgid = task->tgid, .tid = task->pid, .files = (__u64)files },
	};
	fill_process(&w.process, task);
	bpf_loop(w.groups, table_group, &w, 0);
	// An atomic with fetch is a full barrier (also where the CPU reorders loads): the check
	// below reads after the walk did.
	if (fops && !__sync_fetch_and_add(fops, 0) && w.fops)
		*fops = w.fops;
	// Nothing here holds the table: an exiting task frees it (exit_files) after it is marked
	// PF_EXITING, and a task that unshares or execs puts its old table once it has a new one.
	// So a table still the task's, of a task not exiting, when the walk is over, was its table
	// all through the walk; any other walk may have read freed memory, and what it wrote is
	// voided (the task is closing its fds, or has a table this pass does not walk).
	if (w.started && (task->files != files || (task->flags & PF_EXITING))) {
		struct table_void_rec gone = {
			.kind = REC_TABLE_VOID, .tgid = task->tgid, .tid = task->pid, .pad = 0
		};
		bpf_seq_write(w.seq, &gone, sizeof(gone));
	}
	return 0;
}

// The mapping iterator twice: describing every buffer it meets, and (where iter/dmabuf lists
// them all) references only, a third of the bytes and no hash lookup per record.
SEC("iter/task_vma")
int dmabuf_vmas(struct bpf_iter__task_vma *ctx)
{
	return vma(ctx, 1);
}

SEC("iter/task_vma")
int dmabuf_vma_refs(struct bpf_iter__task_vma *ctx)
{
	return vma(ctx, 0);
}

// Every exported buffer (6.16+), held by a process or not: the kernel's buffer list.
SEC("iter/dmabuf")
int dmabuf_list(struct bpf_iter__dmabuf *ctx)
{
	struct dma_buf *buf = ctx->dmabuf;

	if (!buf)
		return 0;
	struct file *file = buf->file;
	if (!file || !file->f_inode)
		return 0;
	write_buffer(ctx->meta->seq, buf, file->f_inode->i_ino, buf->size);
	return 0;
}
