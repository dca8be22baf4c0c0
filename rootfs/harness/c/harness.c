/* Function-style runs of C (rootfs/harness/README.md): linked with the user's main.c, reads
 * the request from stdin, finds the function by name (dlsym; the program is linked with
 * -rdynamic), calls it with the test's JSON arguments and writes the outcome to descriptor
 * 3 as one line tagged "R". stdout stays the user's. No `viz` steps in C.
 *
 * Arguments: the request's `args` is a JSON array of positional arguments (a single
 * value is one argument). Each becomes one or more parameters of the C function:
 *   integer or boolean          long long
 *   array of integers           long long *items, long long count
 *   array of arrays of integers long long *cells (row-major), long long rows, long long cols
 *   string                      const char *s (NUL-terminated), long long length
 *   null                        long long 0
 * and the function returns long long (the JSON value). Every parameter is passed as one
 * machine word through a pointer of type long long (*)(long long x 12): the x86-64 and
 * AArch64 calling conventions pass integers and pointers alike in the same registers and
 * stack slots, and a callee ignores arguments it does not declare. Floating-point
 * parameters are not supported (they travel in other registers).
 *
 * Memory: malloc, calloc, realloc and free are wrapped to count the bytes allocated (by
 * malloc_usable_size), so a call's own peak allocation above what existed before it (the
 * arguments included) is measured exactly; memory a function takes by other means (mmap,
 * the stack) is not counted. */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STEP_FD 3
#define MAX_WORDS 12
#define BATCH_NS 2000000LL
#define MAX_BATCH 100000LL
#define MAX_COPY_BYTES (16LL << 20)
#define MAX_REPETITIONS 100

/* ---- the allocation counter ---- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static long long heap_now, heap_peak;

static void counted(long long delta) {
    long long now = __atomic_add_fetch(&heap_now, delta, __ATOMIC_RELAXED);
    long long peak = __atomic_load_n(&heap_peak, __ATOMIC_RELAXED);
    while (now > peak && !__atomic_compare_exchange_n(&heap_peak, &peak, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

void *malloc(size_t n) {
    void *p = __libc_malloc(n);
    if (p) counted((long long)malloc_usable_size(p));
    return p;
}

void *calloc(size_t n, size_t size) {
    void *p = __libc_calloc(n, size);
    if (p) counted((long long)malloc_usable_size(p));
    return p;
}

void *realloc(void *old, size_t n) {
    long long before = old ? (long long)malloc_usable_size(old) : 0;
    void *p = __libc_realloc(old, n);
    if (p) counted((long long)malloc_usable_size(p) - before);
    else if (n == 0 && old) counted(-before);
    return p;
}

void free(void *p) {
    if (p) counted(-(long long)malloc_usable_size(p));
    __libc_free(p);
}

/* ---- output ---- */

typedef struct {
    char *data;
    size_t len, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = __libc_realloc(b->data, cap);
        if (!d) _exit(70);
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static void putf(buf *b, long long v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", v);
    put(b, tmp, (size_t)n);
}

static void put_json_string(buf *b, const char *s) {
    put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(b, e, 2);
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            put(b, e, 6);
        } else {
            put(b, (const char *)&c, 1);
        }
    }
    put(b, "\"", 1);
}

static void emit(buf *b) {
    put(b, "\n", 1);
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = write(STEP_FD, b->data + off, b->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) _exit(71);
        off += (size_t)n;
    }
}

__attribute__((noreturn)) static void fail(const char *kind, const char *message) {
    buf b = {0};
    puts_(&b, "R{\"ok\":false,\"kind\":");
    put_json_string(&b, kind);
    puts_(&b, ",\"error\":");
    put_json_string(&b, message);
    puts_(&b, "}");
    fflush(stdout);
    emit(&b);
    /* As harness.py: a missing entry point is the code's shape, not a crash. */
    exit(strcmp(kind, "entry") == 0 ? 0 : 1);
}

/* ---- a small JSON reader (the request comes from the agent, the args from the test) ---- */

enum kind { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct json {
    enum kind kind;
    long long num;
    int integral;
    char *str;
    size_t len;
    struct json *items; /* arrays: elements; objects: alternating key (J_STR), value */
    size_t count;
} json;

static const char *at;

static void skip(void) {
    while (*at == ' ' || *at == '\t' || *at == '\n' || *at == '\r') at++;
}

static int parse(json *out);

static int parse_string(json *out) {
    at++; /* the quote */
    buf b = {0};
    put(&b, "", 0);
    while (*at && *at != '"') {
        char c = *at++;
        if (c == '\\') {
            char e = *at++;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': {
                unsigned v = 0;
                for (int i = 0; i < 4; i++) {
                    if (!isxdigit((unsigned char)*at)) return 0;
                    char h = *at++;
                    v = v * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
                }
                /* UTF-8 of the code unit (surrogate pairs are kept as two sequences). */
                char u[3];
                if (v < 0x80) { u[0] = (char)v; put(&b, u, 1); }
                else if (v < 0x800) { u[0] = (char)(0xc0 | (v >> 6)); u[1] = (char)(0x80 | (v & 0x3f)); put(&b, u, 2); }
                else { u[0] = (char)(0xe0 | (v >> 12)); u[1] = (char)(0x80 | ((v >> 6) & 0x3f)); u[2] = (char)(0x80 | (v & 0x3f)); put(&b, u, 3); }
                continue;
            }
            case 0: return 0;
            default: c = e;
            }
        }
        put(&b, &c, 1);
    }
    if (*at != '"') return 0;
    at++;
    out->kind = J_STR;
    out->str = b.data;
    out->len = b.len;
    return 1;
}

static int parse_list(json *out, char close, int object) {
    at++;
    size_t cap = 0;
    out->kind = object ? J_OBJ : J_ARR;
    out->items = NULL;
    out->count = 0;
    skip();
    if (*at == close) { at++; return 1; }
    for (;;) {
        if (out->count + 2 > cap) {
            cap = cap ? cap * 2 : 8;
            json *items = __libc_realloc(out->items, cap * sizeof *items);
            if (!items) return 0;
            out->items = items;
        }
        skip();
        if (object) {
            if (*at != '"' || !parse_string(&out->items[out->count++])) return 0;
            skip();
            if (*at++ != ':') return 0;
            skip();
        }
        if (!parse(&out->items[out->count++])) return 0;
        skip();
        if (*at == ',') { at++; continue; }
        if (*at == close) { at++; return 1; }
        return 0;
    }
}

static int parse(json *out) {
    skip();
    memset(out, 0, sizeof *out);
    if (*at == '"') return parse_string(out);
    if (*at == '[') return parse_list(out, ']', 0);
    if (*at == '{') return parse_list(out, '}', 1);
    if (!strncmp(at, "null", 4)) { at += 4; out->kind = J_NULL; return 1; }
    if (!strncmp(at, "true", 4)) { at += 4; out->kind = J_BOOL; out->num = 1; out->integral = 1; return 1; }
    if (!strncmp(at, "false", 5)) { at += 5; out->kind = J_BOOL; out->integral = 1; return 1; }
    if (*at == '-' || isdigit((unsigned char)*at)) {
        char *end;
        errno = 0;
        long long v = strtoll(at, &end, 10);
        int integral = errno == 0 && *end != '.' && *end != 'e' && *end != 'E';
        if (!integral) strtod(at, &end);
        at = end;
        out->kind = J_NUM;
        out->num = v;
        out->integral = integral;
        return 1;
    }
    return 0;
}

static json *field(json *obj, const char *key) {
    if (obj->kind != J_OBJ) return NULL;
    for (size_t i = 0; i + 1 < obj->count; i += 2)
        if (!strcmp(obj->items[i].str, key)) return &obj->items[i + 1];
    return NULL;
}

/* ---- arguments as an image: every buffer in one block, words with offsets ---- */

typedef struct {
    size_t size;             /* bytes of the block */
    unsigned char *pristine; /* the block as parsed */
    int words;
    long long word[MAX_WORDS];
    int offset[MAX_WORDS]; /* 1: word[i] is an offset into the block */
} image;

static char problem[256];

static size_t aligned(size_t n) { return (n + 7) & ~(size_t)7; }

/* Bytes the argument needs in the block; 0 with `problem` set if it cannot be passed. */
static size_t need(json *a, int index) {
    switch (a->kind) {
    case J_NULL: case J_BOOL: return 0;
    case J_NUM:
        if (!a->integral) snprintf(problem, sizeof problem, "argument %d is not an integer: C functions take integers", index + 1);
        return 0;
    case J_STR: return aligned(a->len + 1);
    case J_OBJ:
        snprintf(problem, sizeof problem, "argument %d is an object: C functions take integers, strings and arrays of them", index + 1);
        return 0;
    case J_ARR: {
        if (a->count && a->items[0].kind == J_ARR) {
            size_t cols = a->items[0].count;
            for (size_t i = 0; i < a->count; i++) {
                json *row = &a->items[i];
                if (row->kind != J_ARR || row->count != cols) {
                    snprintf(problem, sizeof problem, "argument %d: rows must be arrays of one length", index + 1);
                    return 0;
                }
                for (size_t j = 0; j < cols; j++)
                    if (row->items[j].kind != J_NUM || !row->items[j].integral) {
                        snprintf(problem, sizeof problem, "argument %d: cells must be integers", index + 1);
                        return 0;
                    }
            }
            return aligned(a->count * cols * sizeof(long long)) + 8;
        }
        for (size_t i = 0; i < a->count; i++)
            if ((a->items[i].kind != J_NUM && a->items[i].kind != J_BOOL) || !a->items[i].integral) {
                snprintf(problem, sizeof problem, "argument %d: array items must be integers", index + 1);
                return 0;
            }
        return aligned(a->count * sizeof(long long)) + 8;
    }
    }
    return 0;
}

static void push(image *im, long long w, int offset) {
    if (im->words >= MAX_WORDS) {
        snprintf(problem, sizeof problem, "more than %d parameters", MAX_WORDS);
        return;
    }
    im->word[im->words] = w;
    im->offset[im->words] = offset;
    im->words++;
}

static int build(json *args, image *im) {
    json one = {0};
    json *list = args;
    if (args->kind != J_ARR) {
        one.kind = J_ARR;
        one.items = args;
        one.count = 1;
        list = &one;
    }
    size_t size = 8;
    for (size_t i = 0; i < list->count; i++) {
        size += need(&list->items[i], (int)i);
        if (problem[0]) return 0;
    }
    memset(im, 0, sizeof *im);
    im->size = size;
    im->pristine = __libc_calloc(1, size);
    if (!im->pristine) { snprintf(problem, sizeof problem, "the arguments do not fit in memory"); return 0; }
    size_t off = 8; /* offset 0 never holds data: a valid pointer for empty arrays */
    for (size_t i = 0; i < list->count && !problem[0]; i++) {
        json *a = &list->items[i];
        switch (a->kind) {
        case J_NULL: push(im, 0, 0); break;
        case J_BOOL: case J_NUM: push(im, a->num, 0); break;
        case J_STR:
            memcpy(im->pristine + off, a->str, a->len);
            push(im, (long long)off, 1);
            push(im, (long long)a->len, 0);
            off += aligned(a->len + 1);
            break;
        case J_ARR: {
            long long *cells = (long long *)(im->pristine + off);
            size_t cols = a->count && a->items[0].kind == J_ARR ? a->items[0].count : 0;
            if (a->count && a->items[0].kind == J_ARR) {
                for (size_t r = 0; r < a->count; r++)
                    for (size_t c = 0; c < cols; c++) cells[r * cols + c] = a->items[r].items[c].num;
                push(im, (long long)off, 1);
                push(im, (long long)a->count, 0);
                push(im, (long long)cols, 0);
                off += aligned(a->count * cols * sizeof(long long)) + 8;
            } else {
                for (size_t r = 0; r < a->count; r++) cells[r] = a->items[r].num;
                push(im, (long long)off, 1);
                push(im, (long long)a->count, 0);
                off += aligned(a->count * sizeof(long long)) + 8;
            }
            break;
        }
        case J_OBJ: break;
        }
    }
    return !problem[0];
}

/* The words of a call on a copy of the block at `base`. */
static void words_at(const image *im, unsigned char *base, long long *w) {
    for (int i = 0; i < MAX_WORDS; i++)
        w[i] = i < im->words ? (im->offset[i] ? (long long)(intptr_t)(base + im->word[i]) : im->word[i]) : 0;
}

/* ---- the call ---- */

typedef long long (*entry_fn)(long long, long long, long long, long long, long long, long long,
                              long long, long long, long long, long long, long long, long long);

#define CALL(f, w) (f)(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10], w[11])

static long long empty(long long a, long long b, long long c, long long d, long long e, long long f,
                       long long g, long long h, long long i, long long j, long long k, long long l) {
    (void)a; (void)b; (void)c; (void)d; (void)e; (void)f; (void)g; (void)h; (void)i; (void)j; (void)k; (void)l;
    return 0;
}

/* Through a volatile pointer, so the compiler cannot inline or drop the empty call. */
static entry_fn volatile empty_call = empty;
static volatile long long sink;

static long long cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long wall_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void snake(const char *name, char *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; name[i] && n + 2 < cap; i++) {
        unsigned char c = (unsigned char)name[i];
        if (isupper(c) && i > 0 && (islower((unsigned char)name[i - 1]) || isdigit((unsigned char)name[i - 1]))) out[n++] = '_';
        out[n++] = isalnum(c) ? (char)tolower(c) : '_';
    }
    out[n] = 0;
}

static void camel(const char *snaked, char *out, size_t cap) {
    size_t n = 0;
    int up = 0;
    for (size_t i = 0; snaked[i] && n + 1 < cap; i++) {
        if (snaked[i] == '_') { up = n > 0; continue; }
        out[n++] = up ? (char)toupper((unsigned char)snaked[i]) : snaked[i];
        up = 0;
    }
    out[n] = 0;
}

static entry_fn find_entry(const char *entry, const char *name) {
    char s[128], c[128];
    const char *tried[3];
    int count = 0;
    if (entry && *entry) {
        tried[count++] = entry;
    } else if (name && *name) {
        snake(name, s, sizeof s);
        camel(s, c, sizeof c);
        tried[count++] = s;
        tried[count++] = c;
        tried[count++] = name;
    }
    for (int i = 0; i < count; i++) {
        void *f = dlsym(RTLD_DEFAULT, tried[i]);
        if (f) {
            entry_fn fn;
            memcpy(&fn, &f, sizeof fn);
            return fn;
        }
    }
    char msg[512];
    if (!count) snprintf(msg, sizeof msg, "no function to call: name the algorithm or set the entry point");
    else if (entry && *entry) snprintf(msg, sizeof msg, "the entry point \"%s\" is not a function of the submitted code (static functions cannot be called)", entry);
    else if (!strcmp(s, c)) snprintf(msg, sizeof msg, "no function to call: define %s (not static)", s);
    else snprintf(msg, sizeof msg, "no function to call: define %s or %s (not static)", s, c);
    fail("entry", msg);
    return NULL;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(void) {
    buf in = {0};
    char chunk[65536];
    ssize_t n;
    while ((n = read(0, chunk, sizeof chunk)) > 0) put(&in, chunk, (size_t)n);
    put(&in, "", 0);
    json req;
    at = in.data;
    if (!parse(&req) || req.kind != J_OBJ) fail("exception", "the request is not a JSON object");
    json *args = field(&req, "args");
    json *entry = field(&req, "entry");
    json *name = field(&req, "name");
    json *reps = field(&req, "repetitions");
    json *budget = field(&req, "budgetMs");
    long long repetitions = reps && reps->kind == J_NUM ? reps->num : 0;
    if (repetitions > MAX_REPETITIONS) repetitions = MAX_REPETITIONS;
    long long budget_ns = (budget && budget->kind == J_NUM && budget->num > 0 ? budget->num : 1000) * 1000000LL;
    entry_fn fn = find_entry(entry && entry->kind == J_STR ? entry->str : "", name && name->kind == J_STR ? name->str : "");

    json none = {0};
    image im;
    if (!build(args ? args : &none, &im)) fail("entry", problem);
    unsigned char *work = __libc_malloc(im.size);
    if (!work) fail("exception", "the arguments do not fit in memory");
    memcpy(work, im.pristine, im.size);
    long long w[MAX_WORDS];
    words_at(&im, work, w);

    long long wall0 = wall_ns(), cpu0 = cpu_ns();
    long long value = CALL(fn, w);
    long long first_ns = cpu_ns() - cpu0;
    long long time_us = (wall_ns() - wall0) / 1000;
    int mutated = memcmp(work, im.pristine, im.size) != 0;

    buf out = {0};
    puts_(&out, "R{\"ok\":true,\"timeUs\":");
    putf(&out, time_us);
    if (repetitions > 0) {
        long long calls[MAX_REPETITIONS], empties[MAX_REPETITIONS];
        int done = 0;
        long long per_call = first_ns > 0 ? first_ns : 1;
        long long batch = BATCH_NS / per_call;
        if (batch < 1) batch = 1;
        if (batch > MAX_BATCH) batch = MAX_BATCH;
        long long copy_cap = MAX_COPY_BYTES / (long long)(im.size ? im.size : 1);
        if (mutated && batch > copy_cap) batch = copy_cap > 0 ? copy_cap : 1;
        long long spent = first_ns;
        if (!mutated && first_ns < budget_ns) {
            /* One call's time is a poor guess for fast calls: grow the batch until it lasts
             * about BATCH_NS (see harness.py). */
            while (batch < MAX_BATCH && spent < budget_ns) {
                long long t0 = cpu_ns();
                for (long long i = 0; i < batch; i++) sink = CALL(fn, w);
                long long took = cpu_ns() - t0;
                spent += took;
                if (took >= BATCH_NS / 2) break;
                long long grow = BATCH_NS / (took > 0 ? took : 1);
                batch *= grow > 2 ? grow : 2;
                if (batch > MAX_BATCH) batch = MAX_BATCH;
            }
        }
        unsigned char *copies = NULL;
        if (mutated) {
            copies = __libc_malloc((size_t)batch * im.size);
            if (!copies) fail("exception", "no memory for copies of the arguments");
        }
        while (first_ns < budget_ns && done < repetitions && spent < budget_ns) {
            long long t0, t1, t2;
            if (mutated) {
                /* Fresh arguments for every call, copied before the clock starts. */
                for (long long i = 0; i < batch; i++) memcpy(copies + i * im.size, im.pristine, im.size);
                t0 = cpu_ns();
                for (long long i = 0; i < batch; i++) {
                    words_at(&im, copies + i * im.size, w);
                    sink = CALL(fn, w);
                }
                t1 = cpu_ns();
                for (long long i = 0; i < batch; i++) {
                    words_at(&im, copies + i * im.size, w);
                    sink = CALL(empty_call, w);
                }
                t2 = cpu_ns();
            } else {
                t0 = cpu_ns();
                for (long long i = 0; i < batch; i++) sink = CALL(fn, w);
                t1 = cpu_ns();
                for (long long i = 0; i < batch; i++) sink = CALL(empty_call, w);
                t2 = cpu_ns();
            }
            calls[done] = (t1 - t0) / batch;
            empties[done] = (t2 - t1) / batch;
            done++;
            spent += t2 - t0;
        }
        __libc_free(copies);
        if (!done) {
            calls[0] = first_ns;
            empties[0] = 0;
            done = 1;
        }
        qsort(empties, (size_t)done, sizeof *empties, cmp_ll);
        /* The call's own peak allocation, on fresh arguments: everything that existed before
         * (the arguments too) is the base. */
        memcpy(work, im.pristine, im.size);
        words_at(&im, work, w);
        long long base = __atomic_load_n(&heap_now, __ATOMIC_RELAXED);
        __atomic_store_n(&heap_peak, base, __ATOMIC_RELAXED);
        sink = CALL(fn, w);
        long long peak = __atomic_load_n(&heap_peak, __ATOMIC_RELAXED) - base;
        puts_(&out, ",\"cpuNs\":[");
        for (int i = 0; i < done; i++) {
            if (i) puts_(&out, ",");
            putf(&out, calls[i] > 0 ? calls[i] : 0);
        }
        puts_(&out, "],\"emptyNs\":");
        putf(&out, empties[done / 2] > 0 ? empties[done / 2] : 0);
        puts_(&out, ",\"peakBytes\":");
        putf(&out, peak > 0 ? peak : 0);
    }
    puts_(&out, ",\"value\":");
    putf(&out, value);
    puts_(&out, "}");
    fflush(stdout);
    emit(&out);
    return 0;
}
