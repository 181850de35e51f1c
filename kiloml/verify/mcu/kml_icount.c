/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml instruction counter: a QEMU TCG plugin (plugin API version 1, QEMU >= 4.2).
 *
 * Counts guest instructions executed between a call to the harness's begin
 * marker and its end marker, one line per measured region, into a file:
 *
 *   -plugin kml_icount.so,begin=0x...,end=0x...,out=FILE[,limit=N][,mark=0x...]
 *
 * A line holds the region's count, then the count at each call of the optional
 * mark function inside it (the generated code calls one between its stages).
 *
 * Counting is per translation block (all instructions of a block are counted
 * when it starts executing); the harness raises no interrupts, so blocks run to
 * their end and the count is exact and identical run to run. If one region
 * runs more than `limit` instructions the firmware is declared hung: the plugin
 * writes "hang <address of the last block>" and ends QEMU with status 3.
 *
 * Debian ships QEMU without the plugin header, so the few declarations this
 * plugin needs are written out below, matching include/qemu/qemu-plugin.h.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

enum block_kind { BLOCK_PLAIN, BLOCK_BEGIN, BLOCK_END, BLOCK_MARK };
#define MAX_MARKS 64

struct block {
    uint64_t vaddr;
    uint64_t n_insns;
    enum block_kind kind;
};

static uint64_t begin_addr, end_addr, mark_addr;
static uint64_t marks[MAX_MARKS];
static int n_marks;
static uint64_t limit = UINT64_C(2000000000);
static FILE *out;
static bool counting;
static uint64_t count;

static void on_exec(unsigned int vcpu_index, void *userdata)
{
    const struct block *b = userdata;
    (void)vcpu_index;
    if (b->kind == BLOCK_BEGIN) {
        counting = true;
        count = 0;
        n_marks = 0;
        return;
    }
    if (b->kind == BLOCK_END) {
        if (counting) {
            int i;
            fprintf(out, "%" PRIu64, count);
            for (i = 0; i < n_marks; ++i) {
                fprintf(out, " %" PRIu64, marks[i]);
            }
            fputc('\n', out);
        }
        counting = false;
        return;
    }
    if (b->kind == BLOCK_MARK && counting && n_marks < MAX_MARKS) {
        marks[n_marks++] = count;
    }
    if (counting) {
        count += b->n_insns;
        if (count > limit) {
            fprintf(out, "hang 0x%" PRIx64 "\n", b->vaddr);
            fflush(out);
            _exit(3);
        }
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    struct block *b = malloc(sizeof *b); /* lives as long as the translation may run */
    (void)id;
    if (b == NULL) {
        return;
    }
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->n_insns = qemu_plugin_tb_n_insns(tb);
    b->kind = b->vaddr == begin_addr ? BLOCK_BEGIN
              : b->vaddr == end_addr ? BLOCK_END
              : (mark_addr != 0 && b->vaddr == mark_addr) ? BLOCK_MARK
                                                          : BLOCK_PLAIN;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void on_qemu_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    if (out != NULL) {
        fclose(out);
        out = NULL;
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    const char *path = NULL;
    int i;
    (void)info;
    for (i = 0; i < argc; ++i) {
        if (strncmp(argv[i], "begin=", 6) == 0) {
            begin_addr = strtoull(argv[i] + 6, NULL, 0) & ~UINT64_C(1); /* Thumb bit */
        } else if (strncmp(argv[i], "end=", 4) == 0) {
            end_addr = strtoull(argv[i] + 4, NULL, 0) & ~UINT64_C(1);
        } else if (strncmp(argv[i], "out=", 4) == 0) {
            path = argv[i] + 4;
        } else if (strncmp(argv[i], "mark=", 5) == 0) {
            mark_addr = strtoull(argv[i] + 5, NULL, 0) & ~UINT64_C(1);
        } else if (strncmp(argv[i], "limit=", 6) == 0) {
            limit = strtoull(argv[i] + 6, NULL, 0);
        } else {
            fprintf(stderr, "kml_icount: unknown argument '%s'\n", argv[i]);
            return -1;
        }
    }
    if (path == NULL || begin_addr == 0 || end_addr == 0) {
        fprintf(stderr, "kml_icount: needs begin=, end= and out=\n");
        return -1;
    }
    out = fopen(path, "w");
    if (out == NULL) {
        fprintf(stderr, "kml_icount: cannot write %s\n", path);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
    return 0;
}
