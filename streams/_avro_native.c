/* The Avro binary writer and reader in C: what ``streams/avro_native.py`` builds programs for.
 *
 * A program is a tree of tuples made from a parsed schema (``avro_native.program``); this
 * module walks it over a record and appends the Avro binary encoding to a buffer. It does
 * what the generated Python writers of ``avro_writer`` do, byte for byte, including the
 * kept encodings of ``Sealed`` items (read from, and given to, their ``memo`` slot), and it
 * is as strict: any value it does not handle exactly as they do raises ``Refused``, and the
 * codec then asks the Python writer (which asks fastavro in turn). Nothing here guesses.
 *
 * Also Kafka's murmur2 hash of a key (the producers' default partitioner).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* opcodes: must match avro_native.py */
enum {
    OP_NULL = 0, OP_BOOLEAN = 1, OP_LONG = 2, OP_DATE = 3, OP_TIMESTAMP_MILLIS = 4,
    OP_STRING = 5, OP_BYTES = 6, OP_ENUM = 7, OP_RECORD = 8, OP_ARRAY = 9, OP_MAP = 10,
    OP_UNION = 11,
};
/* union branch tests: must match avro_native.py */
enum {
    IS_NONE = 0, IS_STR = 1, IS_INT = 2, IS_BOOL = 3, IS_BYTES = 4, IS_RECORD = 5, IS_MAP = 6,
    IS_LIST = 7, IS_DATE = 8, IS_DATETIME = 9,
};
/* fields of a record: how a missing one is read (r[name], r.get(name), r.get(name, default)) */
enum { F_REQUIRED = 0, F_OPTIONAL = 1, F_DEFAULT = 2 };

static PyObject *Refused;     /* avro_native.Refused */
static PyTypeObject *sealed_type = NULL;
static Py_ssize_t memo_offset = 0;  /* of Sealed's one slot, "memo": read and set in place */
static PyObject *empty_tuple = NULL;  /* the arguments of Sealed's tp_new */

/* A Sealed's memo (borrowed), or NULL when unset. No attribute lookup, and no exception
 * raised and cleared for an unset one: a new item has none. */
#define MEMO_SLOT(r) (*(PyObject **)((char *)(r) + memo_offset))

typedef struct {
    char *data;
    Py_ssize_t len, cap;
    char small[512];
} Buf;

static int buf_grow(Buf *b, Py_ssize_t need) {
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + need) cap *= 2;
    char *data;
    if (b->data == b->small) {
        data = PyMem_Malloc(cap);
        if (data) memcpy(data, b->small, b->len);
    } else {
        data = PyMem_Realloc(b->data, cap);
    }
    if (!data) { PyErr_NoMemory(); return -1; }
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const char *s, Py_ssize_t n) {
    if (b->len + n > b->cap && buf_grow(b, n) < 0) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

static inline int buf_byte(Buf *b, unsigned char c) {
    if (b->len + 1 > b->cap && buf_grow(b, 1) < 0) return -1;
    b->data[b->len++] = (char)c;
    return 0;
}

static inline int buf_varint(Buf *b, int64_t n) {
    uint64_t u = ((uint64_t)n << 1) ^ (uint64_t)(n >> 63);
    if (b->len + 10 > b->cap && buf_grow(b, 10) < 0) return -1;
    unsigned char *p = (unsigned char *)b->data + b->len;
    while (u >= 0x80) {
        *p++ = (unsigned char)((u & 0x7F) | 0x80);
        u >>= 7;
    }
    *p++ = (unsigned char)u;
    b->len = (char *)p - b->data;
    return 0;
}

static int refuse(const char *what, PyObject *value) {
    PyErr_Format(Refused, "%s, got %.100s", what, value ? Py_TYPE(value)->tp_name : "nothing");
    return -1;
}

/* An error raised by a lookup or a conversion becomes a refusal: the Python writer decides. */
static int refuse_error(const char *what) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_Format(Refused, "%s: %S", what, value ? value : Py_None);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return -1;
}

/* days from 1970-01-01 to y-m-d, proleptic Gregorian (as date.toordinal()). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int write_long(Buf *b, PyObject *v) {
    if (!PyLong_CheckExact(v)) return refuse("expected an int", v);
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) return refuse("an int beyond 64 bits", v);
    if (n == -1 && PyErr_Occurred()) return refuse_error("an int");
    return buf_varint(b, (int64_t)n);
}

static int write_date(Buf *b, PyObject *v) {
    if (PyDate_CheckExact(v)) {
        return buf_varint(b, days_from_civil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v),
                                             PyDateTime_GET_DAY(v)));
    }
    if (PyLong_CheckExact(v)) return write_long(b, v);
    return refuse("expected a date", v);
}

static int write_timestamp_millis(Buf *b, PyObject *v) {
    if (PyDateTime_CheckExact(v)) {
        PyObject *tz = PyDateTime_DATE_GET_TZINFO(v);
        if (tz != PyDateTime_TimeZone_UTC) return refuse("expected a datetime in UTC", v);
        int64_t days = days_from_civil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v));
        int64_t seconds = days * 86400 + PyDateTime_DATE_GET_HOUR(v) * 3600
                          + PyDateTime_DATE_GET_MINUTE(v) * 60 + PyDateTime_DATE_GET_SECOND(v);
        return buf_varint(b, seconds * 1000 + PyDateTime_DATE_GET_MICROSECOND(v) / 1000);
    }
    if (PyLong_CheckExact(v)) return write_long(b, v);
    return refuse("expected a datetime", v);
}

static int write_utf8(Buf *b, PyObject *v) {
    if (!PyUnicode_Check(v)) return refuse("expected a str", v);
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s == NULL) return refuse_error("a str that is not UTF-8");
    if (buf_varint(b, n) < 0) return -1;
    return buf_put(b, s, n);
}

/* untrack(value): take the containers of a store's value (a payee's account, rule state or
 * citizen view) out of the cyclic collector's lists. Such a value lives long, and the
 * collector walks each container it tracks at every collection of the generation it is
 * in: with ~1 million of them after 200,000 events over 100,000 payees, ~4 % of the stage
 * pass, and ~0.9 s for a full collection (docs/performance.md, "c429641 -> 505a0ec").
 *
 * A store's value is written to its changelog as Avro: a tree, in which no container
 * refers to one that holds it, so none of them can be in a reference cycle. From the
 * leaves up, each plain dict, Sealed item, list and tuple whose values are all untracked
 * (or not containers) is untracked; anything else (another class, e.g. rules._State with
 * its slots) stays tracked, and so does what holds it. Depth is bounded (8): a cycle, were
 * one ever put in, is not untracked. A dict tracks itself again when a container is put in
 * it (as CPython does); a store's lists are never changed in place once written (rules and
 * review copy on write), and the next flush walks the value again.
 * Returns whether `v` is now untracked or not a container. */
static int untrack_tree(PyObject *v, int depth) {
    if (!PyObject_IS_GC(v)) return 1;
    int tracked = PyObject_GC_IsTracked(v);
    PyTypeObject *type = Py_TYPE(v);
    if (depth <= 0) return !tracked;
    if (type == &PyTuple_Type) {
        if (!tracked) return 1;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(v); i++) {
            if (!untrack_tree(PyTuple_GET_ITEM(v, i), depth - 1)) return 0;
        }
        PyObject_GC_UnTrack(v);
        return 1;
    }
    if (type == &PyList_Type) {
        int all = 1;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
            if (!untrack_tree(PyList_GET_ITEM(v, i), depth - 1)) all = 0;
        }
        if (all && tracked) PyObject_GC_UnTrack(v);
        return all || !tracked;
    }
    int sealed = sealed_type != NULL && type == sealed_type;
    if (sealed && !tracked) return 1;  /* never changed since it was untracked */
    if (!PyDict_Check(v)) return !tracked;
    int all = 1;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(v, &pos, &key, &value)) {
        if (!untrack_tree(value, depth - 1)) all = 0;
    }
    if (sealed && MEMO_SLOT(v) != NULL && !untrack_tree(MEMO_SLOT(v), depth - 1)) all = 0;
    if (!(sealed || type == &PyDict_Type)) return !tracked;
    if (all && tracked) PyObject_GC_UnTrack(v);
    return all || !tracked;
}

static PyObject *py_untrack(PyObject *self, PyObject *v) {
    return PyBool_FromLong(untrack_tree(v, 8));
}

static int write_value(Buf *b, PyObject *node, PyObject *v);

/* node: (OP_RECORD, fields, sealed name or None); fields: a list of (name, mode, default, node) */
static int write_record(Buf *b, PyObject *node, PyObject *r) {
    PyObject *sealed_name = PyTuple_GET_ITEM(node, 2);
    Py_ssize_t start = -1;
    if (sealed_name != Py_None) {
        if (sealed_type != NULL && Py_TYPE(r) == sealed_type) {
            PyObject *memo = MEMO_SLOT(r);
            if (memo != NULL && PyTuple_CheckExact(memo) && PyTuple_GET_SIZE(memo) == 2) {
                PyObject *name = PyTuple_GET_ITEM(memo, 0), *data = PyTuple_GET_ITEM(memo, 1);
                if (PyBytes_CheckExact(data) && PyUnicode_Check(name)
                    && (name == sealed_name || PyUnicode_Compare(name, sealed_name) == 0)) {
                    return buf_put(b, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
                }
                if (PyErr_Occurred()) return refuse_error("a memo");
            }
            start = b->len;
        } else if (!PyDict_CheckExact(r)) {
            return refuse("expected a dict", r);
        }
    } else if (!PyDict_Check(r)) {
        return refuse("expected a dict", r);
    }
    PyObject *fields = PyTuple_GET_ITEM(node, 1);
    Py_ssize_t count = PyList_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *field = PyList_GET_ITEM(fields, i);
        PyObject *name = PyTuple_GET_ITEM(field, 0);
        PyObject *v = PyDict_GetItemWithError(r, name);  /* borrowed */
        if (v == NULL) {
            if (PyErr_Occurred()) return refuse_error("a field");
            long mode = PyLong_AsLong(PyTuple_GET_ITEM(field, 1));
            if (mode == F_REQUIRED) {
                PyErr_Format(Refused, "field %S missing", name);
                return -1;
            }
            v = mode == F_DEFAULT ? PyTuple_GET_ITEM(field, 2) : Py_None;
        }
        if (write_value(b, PyTuple_GET_ITEM(field, 3), v) < 0) return -1;
    }
    if (start >= 0) {  /* a Sealed item keeps the bytes it was written as */
        PyObject *data = PyBytes_FromStringAndSize(b->data + start, b->len - start);
        if (data == NULL) return -1;
        PyObject *memo = PyTuple_Pack(2, sealed_name, data);
        Py_DECREF(data);
        if (memo == NULL) return -1;
        Py_XSETREF(MEMO_SLOT(r), memo);
    }
    return 0;
}

static int union_test(long test, PyObject *v) {
    switch (test) {
    case IS_NONE: return v == Py_None;
    case IS_STR: return PyUnicode_CheckExact(v);
    case IS_INT: return PyLong_CheckExact(v);
    case IS_BOOL: return PyBool_Check(v);
    case IS_BYTES: return PyBytes_CheckExact(v);
    case IS_RECORD: return PyDict_CheckExact(v) || (sealed_type != NULL && Py_TYPE(v) == sealed_type);
    case IS_MAP: return PyDict_CheckExact(v);
    case IS_LIST: return PyList_CheckExact(v);
    case IS_DATE: return PyDate_CheckExact(v);
    case IS_DATETIME: return PyDateTime_CheckExact(v);
    }
    return 0;
}

static int write_value(Buf *b, PyObject *node, PyObject *v) {
    long op = PyLong_AsLong(PyTuple_GET_ITEM(node, 0));
    switch (op) {
    case OP_NULL:
        return v == Py_None ? 0 : refuse("expected None", v);
    case OP_BOOLEAN:
        if (v == Py_True) return buf_byte(b, 1);
        if (v == Py_False) return buf_byte(b, 0);
        return refuse("expected a bool", v);
    case OP_LONG:
        return write_long(b, v);
    case OP_DATE:
        return write_date(b, v);
    case OP_TIMESTAMP_MILLIS:
        return write_timestamp_millis(b, v);
    case OP_STRING:
        return write_utf8(b, v);
    case OP_BYTES: {
        if (PyBytes_CheckExact(v)) {
            if (buf_varint(b, PyBytes_GET_SIZE(v)) < 0) return -1;
            return buf_put(b, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
        }
        if (PyByteArray_CheckExact(v)) {
            if (buf_varint(b, PyByteArray_GET_SIZE(v)) < 0) return -1;
            return buf_put(b, PyByteArray_AS_STRING(v), PyByteArray_GET_SIZE(v));
        }
        return refuse("expected bytes", v);
    }
    case OP_ENUM: {
        PyObject *index = PyDict_GetItemWithError(PyTuple_GET_ITEM(node, 1), v);
        if (index == NULL) {
            if (PyErr_Occurred()) return refuse_error("an enum symbol");
            return refuse("not a symbol of the enum", v);
        }
        return buf_varint(b, PyLong_AsLongLong(index));
    }
    case OP_RECORD:
        return write_record(b, node, v);
    case OP_ARRAY: {
        if (!PyList_CheckExact(v)) return refuse("expected a list", v);
        Py_ssize_t n = PyList_GET_SIZE(v);
        if (n) {
            PyObject *items = PyTuple_GET_ITEM(node, 1);
            if (buf_varint(b, n) < 0) return -1;
            for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
                if (i >= n) return refuse("a list that grew while written", v);
                PyObject *item = PyList_GET_ITEM(v, i);
                Py_INCREF(item);
                int rc = write_value(b, items, item);
                Py_DECREF(item);
                if (rc < 0) return -1;
            }
            if (PyList_GET_SIZE(v) != n) return refuse("a list that changed while written", v);
        }
        return buf_byte(b, 0);
    }
    case OP_MAP: {
        if (!PyDict_CheckExact(v)) return refuse("expected a dict", v);
        Py_ssize_t n = PyDict_GET_SIZE(v);
        if (n) {
            PyObject *values = PyTuple_GET_ITEM(node, 1), *key, *item;
            Py_ssize_t pos = 0;
            if (buf_varint(b, n) < 0) return -1;
            while (PyDict_Next(v, &pos, &key, &item)) {
                Py_INCREF(key);
                Py_INCREF(item);
                int rc = write_utf8(b, key);
                if (rc == 0) rc = write_value(b, values, item);
                Py_DECREF(key);
                Py_DECREF(item);
                if (rc < 0) return -1;
            }
            if (PyDict_GET_SIZE(v) != n) return refuse("a dict that changed while written", v);
        }
        return buf_byte(b, 0);
    }
    case OP_UNION: {
        PyObject *branches = PyTuple_GET_ITEM(node, 1);  /* ((test, index, node), ...) */
        Py_ssize_t count = PyTuple_GET_SIZE(branches);
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *branch = PyTuple_GET_ITEM(branches, i);
            if (union_test(PyLong_AsLong(PyTuple_GET_ITEM(branch, 0)), v)) {
                if (buf_varint(b, PyLong_AsLongLong(PyTuple_GET_ITEM(branch, 1))) < 0) return -1;
                return write_value(b, PyTuple_GET_ITEM(branch, 2), v);
            }
        }
        return refuse("no union branch fits", v);
    }
    }
    PyErr_Format(PyExc_ValueError, "not a program node: opcode %ld", op);
    return -1;
}

/* -- reading ------------------------------------------------------------------------ */

static PyObject *dates = NULL;  /* days since 1970 -> date, shared with avro_reader (_DATES) */
#define DATES_MAX 100000

typedef struct {
    const unsigned char *data;
    Py_ssize_t pos, len;
} In;

static int bad(const char *what) {
    PyErr_Format(Refused, "%s at this position", what);
    return -1;
}

static int in_long(In *in, int64_t *out) {
    uint64_t n = 0;
    int shift = 0;
    while (1) {
        if (in->pos >= in->len) return bad("truncated");
        unsigned char x = in->data[in->pos++];
        if (shift == 63 && (x & 0x7E)) return bad("a varint beyond 64 bits");
        n |= (uint64_t)(x & 0x7F) << shift;
        if (!(x & 0x80)) break;
        shift += 7;
        if (shift > 63) return bad("a varint longer than 10 bytes");
    }
    *out = (int64_t)(n >> 1) ^ -(int64_t)(n & 1);
    return 0;
}

static int in_size(In *in, Py_ssize_t *out) {
    int64_t n;
    if (in_long(in, &n) < 0) return -1;
    if (n < 0) return bad("a negative length");
    if (n > in->len - in->pos) return bad("truncated");
    *out = (Py_ssize_t)n;
    return 0;
}

/* y-m-d of a day count since 1970-01-01 (inverse of days_from_civil) */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static PyObject *date_of(int64_t days) {
    PyObject *key = PyLong_FromLongLong(days);
    if (key == NULL) return NULL;
    PyObject *day = dates ? PyDict_GetItemWithError(dates, key) : NULL;
    if (day != NULL) {
        Py_DECREF(key);
        Py_INCREF(day);
        return day;
    }
    if (PyErr_Occurred()) { Py_DECREF(key); return NULL; }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 1 || y > 9999) { Py_DECREF(key); bad("a date out of range"); return NULL; }
    day = PyDate_FromDate((int)y, (int)m, (int)d);
    if (day != NULL && dates != NULL && PyDict_GET_SIZE(dates) < DATES_MAX && PyDict_SetItem(dates, key, day) < 0) {
        Py_CLEAR(day);
    }
    Py_DECREF(key);
    return day;
}

static PyObject *timestamp_of(int64_t millis) {
    int64_t ms = millis % 86400000, days = millis / 86400000;
    if (ms < 0) { ms += 86400000; days -= 1; }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 1 || y > 9999) { bad("a timestamp out of range"); return NULL; }
    int secs = (int)(ms / 1000);
    return PyDateTimeAPI->DateTime_FromDateAndTime((int)y, (int)m, (int)d, secs / 3600, secs / 60 % 60, secs % 60,
                                                   (int)(ms % 1000) * 1000, PyDateTime_TimeZone_UTC,
                                                   PyDateTimeAPI->DateTimeType);
}

static PyObject *read_value(In *in, PyObject *node);

/* node: (OP_RECORD, [(name, node), ...], sealed name or None) */
static PyObject *read_record(In *in, PyObject *node) {
    PyObject *sealed_name = PyTuple_GET_ITEM(node, 2);
    int sealed = sealed_name != Py_None && sealed_type != NULL;
    Py_ssize_t start = in->pos;
    PyObject *r = sealed ? sealed_type->tp_new(sealed_type, empty_tuple, NULL) : PyDict_New();
    if (r == NULL) return NULL;
    PyObject *fields = PyTuple_GET_ITEM(node, 1);
    Py_ssize_t count = PyList_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *field = PyList_GET_ITEM(fields, i);
        PyObject *v = read_value(in, PyTuple_GET_ITEM(field, 1));
        if (v == NULL || PyDict_SetItem(r, PyTuple_GET_ITEM(field, 0), v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(r);
            return NULL;
        }
        Py_DECREF(v);
    }
    if (sealed) {  /* with the bytes it was read from: written from them while it is unchanged */
        PyObject *data = PyBytes_FromStringAndSize((const char *)in->data + start, in->pos - start);
        PyObject *memo = data ? PyTuple_Pack(2, sealed_name, data) : NULL;
        Py_XDECREF(data);
        if (memo == NULL) { Py_DECREF(r); return NULL; }
        Py_XSETREF(MEMO_SLOT(r), memo);
    }
    return r;
}

/* arrays and maps: blocks of items; a block with a negative count has its size in bytes first */
static PyObject *read_blocks(In *in, PyObject *node, int is_map) {
    PyObject *items = is_map ? PyDict_New() : PyList_New(0), *inner = PyTuple_GET_ITEM(node, 1);
    if (items == NULL) return NULL;
    while (1) {
        int64_t count, skip;
        if (in_long(in, &count) < 0) goto fail;
        if (count == 0) break;
        if (count < 0) {
            count = -count;
            if (in_long(in, &skip) < 0) goto fail;
        }
        if (count > in->len - in->pos + 1) { bad("a block count beyond the record"); goto fail; }
        for (int64_t i = 0; i < count; i++) {
            PyObject *key = NULL;
            if (is_map) {
                Py_ssize_t n;
                if (in_size(in, &n) < 0) goto fail;
                key = PyUnicode_DecodeUTF8((const char *)in->data + in->pos, n, NULL);
                if (key == NULL) goto fail;
                in->pos += n;
            }
            PyObject *v = read_value(in, inner);
            int rc = v == NULL ? -1 : is_map ? PyDict_SetItem(items, key, v) : PyList_Append(items, v);
            Py_XDECREF(key);
            Py_XDECREF(v);
            if (rc < 0) goto fail;
        }
    }
    return items;
fail:
    Py_DECREF(items);
    return NULL;
}

static PyObject *read_value(In *in, PyObject *node) {
    long op = PyLong_AsLong(PyTuple_GET_ITEM(node, 0));
    int64_t n;
    Py_ssize_t size;
    switch (op) {
    case OP_NULL:
        Py_RETURN_NONE;
    case OP_BOOLEAN:
        if (in->pos >= in->len) { bad("truncated"); return NULL; }
        return PyBool_FromLong(in->data[in->pos++] != 0);
    case OP_LONG:
        if (in_long(in, &n) < 0) return NULL;
        return PyLong_FromLongLong(n);
    case OP_DATE:
        if (in_long(in, &n) < 0) return NULL;
        return date_of(n);
    case OP_TIMESTAMP_MILLIS:
        if (in_long(in, &n) < 0) return NULL;
        return timestamp_of(n);
    case OP_STRING: {
        if (in_size(in, &size) < 0) return NULL;
        PyObject *s = PyUnicode_DecodeUTF8((const char *)in->data + in->pos, size, NULL);
        in->pos += size;
        return s;
    }
    case OP_BYTES: {
        if (in_size(in, &size) < 0) return NULL;
        PyObject *s = PyBytes_FromStringAndSize((const char *)in->data + in->pos, size);
        in->pos += size;
        return s;
    }
    case OP_ENUM: {
        PyObject *symbols = PyTuple_GET_ITEM(node, 1);
        if (in_long(in, &n) < 0) return NULL;
        if (n < 0 || n >= PyTuple_GET_SIZE(symbols)) { bad("an enum index out of range"); return NULL; }
        PyObject *symbol = PyTuple_GET_ITEM(symbols, n);
        Py_INCREF(symbol);
        return symbol;
    }
    case OP_RECORD:
        return read_record(in, node);
    case OP_ARRAY:
        return read_blocks(in, node, 0);
    case OP_MAP:
        return read_blocks(in, node, 1);
    case OP_UNION: {  /* the index as one byte (zig-zag 2i, i < 64), as the Python reader reads it */
        PyObject *branches = PyTuple_GET_ITEM(node, 1);
        if (in->pos >= in->len) { bad("truncated"); return NULL; }
        unsigned char i = in->data[in->pos++];
        if (i & 1 || (Py_ssize_t)(i >> 1) >= PyTuple_GET_SIZE(branches)) { bad("a union index out of range"); return NULL; }
        return read_value(in, PyTuple_GET_ITEM(branches, i >> 1));
    }
    }
    PyErr_Format(PyExc_ValueError, "not a program node: opcode %ld", op);
    return NULL;
}

/* read(program, data, pos) -> the record at data[pos:] */
static PyObject *py_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyTuple_CheckExact(args[0]) || !PyLong_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "read(program: tuple, data: bytes, pos: int)");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[1])) {
        refuse("expected bytes", args[1]);
        return NULL;
    }
    In in;
    in.data = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    in.len = PyBytes_GET_SIZE(args[1]);
    in.pos = PyLong_AsSsize_t(args[2]);
    if (in.pos < 0 || in.pos > in.len) {
        if (!PyErr_Occurred()) bad("a start beyond the data");
        return NULL;
    }
    PyObject *record = read_value(&in, args[0]);
    if (record == NULL && !PyErr_ExceptionMatches(Refused)) {  /* e.g. UTF-8 that does not decode */
        refuse_error("bytes that do not read");
    }
    return record;
}

static PyObject *py_use_dates(PyObject *self, PyObject *arg) {
    if (!PyDict_CheckExact(arg)) {
        PyErr_SetString(PyExc_TypeError, "use_dates takes a dict");
        return NULL;
    }
    Py_XDECREF(dates);
    Py_INCREF(arg);
    dates = arg;
    Py_RETURN_NONE;
}

/* write(header, program, record) -> bytes: header + the record's Avro binary encoding */
static PyObject *py_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "write(header: bytes, program: tuple, record)");
        return NULL;
    }
    Buf b;
    b.data = b.small;
    b.len = 0;
    b.cap = sizeof(b.small);
    PyObject *result = NULL;
    if (buf_put(&b, PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0])) == 0
        && write_value(&b, args[1], args[2]) == 0) {
        result = PyBytes_FromStringAndSize(b.data, b.len);
    }
    if (b.data != b.small) PyMem_Free(b.data);
    return result;
}

/* murmur2(key) -> Kafka's murmur2 hash of the key, unsigned 32 bits */
static PyObject *py_murmur2(PyObject *self, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "murmur2 takes bytes");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t length = PyBytes_GET_SIZE(arg);
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28c ^ (uint32_t)length;
    Py_ssize_t whole = length & ~(Py_ssize_t)3;
    for (Py_ssize_t i = 0; i < whole; i += 4) {
        uint32_t k = (uint32_t)data[i] | ((uint32_t)data[i + 1] << 8) | ((uint32_t)data[i + 2] << 16)
                     | ((uint32_t)data[i + 3] << 24);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (length & 3) {
    case 3: h ^= (uint32_t)data[whole + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)data[whole + 1] << 8; /* fall through */
    case 1: h ^= data[whole]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return PyLong_FromUnsignedLong(h);
}

/* use_sealed(type): the class whose instances keep their encoding (streams.sealed.Sealed) */
static PyObject *py_use_sealed(PyObject *self, PyObject *arg) {
    if (!PyType_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "use_sealed takes a class");
        return NULL;
    }
    PyObject *descr = PyObject_GetAttrString(arg, "memo");
    if (descr == NULL) return NULL;
    int is_slot = Py_IS_TYPE(descr, &PyMemberDescr_Type)
                  && ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX;
    Py_ssize_t offset = is_slot ? ((PyMemberDescrObject *)descr)->d_member->offset : 0;
    Py_DECREF(descr);
    if (!is_slot) {
        PyErr_SetString(PyExc_TypeError, "use_sealed takes a class whose 'memo' is a slot");
        return NULL;
    }
    memo_offset = offset;
    Py_XDECREF(sealed_type);
    Py_INCREF(arg);
    sealed_type = (PyTypeObject *)arg;
    Py_RETURN_NONE;
}

/* utc_text(value) -> 'YYYY-MM-DDTHH:MM:SS.mmmZ' for a datetime in UTC (tzinfo the UTC
 * singleton, as the reader makes them), else None: the citizen view writes two of these
 * for every item it shows, which took ~7,900 instructions a call in Python. */
static char *put_digits(char *at, int value, int width) {  /* zero-padded; value < 10^width */
    for (int i = width - 1; i >= 0; i--, value /= 10) at[i] = (char)('0' + value % 10);
    return at + width;
}

static PyObject *py_utc_text(PyObject *self, PyObject *v) {
    if (!PyDateTime_CheckExact(v) || PyDateTime_DATE_GET_TZINFO(v) != PyDateTime_TimeZone_UTC) Py_RETURN_NONE;
    char text[24], *at = text;  /* by hand: snprintf took ~3,500 instructions a call */
    at = put_digits(at, PyDateTime_GET_YEAR(v), 4);  /* 1..9999 */
    *at++ = '-';
    at = put_digits(at, PyDateTime_GET_MONTH(v), 2);
    *at++ = '-';
    at = put_digits(at, PyDateTime_GET_DAY(v), 2);
    *at++ = 'T';
    at = put_digits(at, PyDateTime_DATE_GET_HOUR(v), 2);
    *at++ = ':';
    at = put_digits(at, PyDateTime_DATE_GET_MINUTE(v), 2);
    *at++ = ':';
    at = put_digits(at, PyDateTime_DATE_GET_SECOND(v), 2);
    *at++ = '.';
    at = put_digits(at, PyDateTime_DATE_GET_MICROSECOND(v) / 1000, 3);
    *at++ = 'Z';
    return PyUnicode_FromStringAndSize(text, at - text);
}

/* dict_lookup(cls): give a subclass of dict dict's own item lookup. A class made by a class
 * statement finds dict's __getitem__ as a method (dict defines it beside the slot), so its
 * slot calls that method through a generic dispatcher: ~300 instructions a lookup where dict
 * takes ~60. Same behaviour (dict's lookup also calls __missing__ for a subclass that has
 * one); only for a class that does not define __getitem__ itself. Assigning __getitem__ to
 * the class afterwards resets the slot, as it should. True if it changed the slot. */
static PyObject *py_dict_lookup(PyObject *self, PyObject *arg) {
    if (!PyType_Check(arg) || !PyType_IsSubtype((PyTypeObject *)arg, &PyDict_Type)
            || !(((PyTypeObject *)arg)->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        PyErr_SetString(PyExc_TypeError, "dict_lookup takes a subclass of dict made by a class statement");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)arg;
    PyObject *own = PyObject_GetAttrString(arg, "__getitem__");
    PyObject *dicts = PyObject_GetAttrString((PyObject *)&PyDict_Type, "__getitem__");
    int inherited = own != NULL && own == dicts;
    Py_XDECREF(own);
    Py_XDECREF(dicts);
    if (PyErr_Occurred()) return NULL;
    if (!inherited) {
        PyErr_SetString(PyExc_TypeError, "dict_lookup: the class defines __getitem__ of its own");
        return NULL;
    }
    binaryfunc dicts_lookup = PyDict_Type.tp_as_mapping->mp_subscript;
    if (type->tp_as_mapping->mp_subscript == dicts_lookup) Py_RETURN_FALSE;  /* already */
    ((PyHeapTypeObject *)type)->as_mapping.mp_subscript = dicts_lookup;
    PyType_Modified(type);
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"utc_text", py_utc_text, METH_O, "utc_text(value) -> 'YYYY-MM-DDTHH:MM:SS.mmmZ' for a datetime in UTC, else None"},
    {"dict_lookup", py_dict_lookup, METH_O, "dict_lookup(cls) -> bool: a subclass of dict looks items up as fast as dict (True: it did not before)"},
    {"write", (PyCFunction)(void (*)(void))py_write, METH_FASTCALL,
     "write(header, program, record) -> bytes: the header, then the record's Avro binary encoding"},
    {"read", (PyCFunction)(void (*)(void))py_read, METH_FASTCALL,
     "read(program, data, pos) -> the record whose Avro binary encoding starts at data[pos]"},
    {"use_dates", py_use_dates, METH_O, "use_dates(cache): days since 1970 -> date, shared (bounded here)"},
    {"murmur2", py_murmur2, METH_O, "murmur2(key) -> Kafka's murmur2 hash of the key (unsigned 32 bits)"},
    {"untrack", py_untrack, METH_O,
     "untrack(value) -> bool: the containers in a store's value that cannot be in a cycle leave the cyclic collector"},
    {"use_sealed", py_use_sealed, METH_O, "use_sealed(cls): the class of records that keep their encoding"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_avro_native",
    "The Avro binary writer and reader in C for the programs of streams.avro_native, and murmur2.", -1, methods,
};

PyMODINIT_FUNC PyInit__avro_native(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Refused = PyErr_NewExceptionWithDoc("_avro_native.Refused",
                                        "A value the C writer does not write exactly as the Python writer: "
                                        "the Python writer decides.", PyExc_ValueError, NULL);
    empty_tuple = PyTuple_New(0);
    if (Refused == NULL || empty_tuple == NULL || PyModule_AddObject(m, "Refused", Refused) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(Refused);
#ifdef SOURCE_SHA256
    if (PyModule_AddStringConstant(m, "SOURCE_SHA256", SOURCE_SHA256) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
