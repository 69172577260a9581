/*
 * _l1.c - pgvalet._l1: the in-process result cache under the Python
 * package's L1 (pgvalet/l1.py), built on the proxy's own store
 * (src/cache/store.c: byte cap, S3-FIFO, tag version stamps) and tag
 * hashing (src/cache/tags.h).
 *
 * Contract (what l1.py relies on):
 *  - Cache(max_bytes, max_entry=0, ttl_ms=0).  Every method runs with the
 *    GIL held and never releases it, so each call is atomic with respect
 *    to the others: that is what makes put()'s stale check sound.
 *  - Keys are (token, sql, params): token is the proxy's session-state
 *    token (int, from the "pgvalet-l1 fill" notice), sql a str, params
 *    None, or a tuple/list/dict of None, bool, int, float, str, bytes,
 *    Decimal, date/time/datetime/timedelta, UUID, or tuples/lists of
 *    those.  Anything else raises TypeError: the caller bypasses the
 *    cache (a repr() could name an object's address, and two different
 *    values could then share a key).
 *  - Values: any picklable object; stored by marshal when it can (faster
 *    to load), else by pickle.  get() returns a new copy each time, so a
 *    caller may mutate what it got.
 *  - Staleness: snapshot() before sending a query; put(..., snap) refuses
 *    the value when any of its tags was invalidated after the snapshot,
 *    or when the record of invalidations since then was overwritten
 *    (RING_SIZE of them), or after a clear().  invalidate() bumps tags
 *    (entries carrying them are never served again); invalidate_db()
 *    bumps the database tag every entry of that database carries.
 *  - db_tag(), table_tag(), rows_tag(), row_tag(): the proxy's tag ids
 *    (src/cache/tags.h), so Python code can read push-channel events that
 *    carry only tags (writes the proxy saw name no table).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <marshal.h>

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "cache/store.h"
#include "cache/tags.h"

enum {
	RING_SIZE = 16384,	/* invalidations remembered for put()'s check */
	KEY_MAX = 1 << 20,	/* longer keys are not cached */
};

struct ring_slot {
	uint64_t seq;
	uint64_t tag;
};

typedef struct {
	PyObject_HEAD
	struct cache_store *store;
	uint64_t seq;		/* invalidations recorded so far */
	uint64_t floor;		/* put() with a snapshot below: refused */
	struct ring_slot ring[RING_SIZE];
	uint64_t hits, misses, fills, fills_refused, bypassed;
	char *key;		/* scratch: the key being built */
	size_t key_len, key_cap;
} Cache;

static PyObject *pickle_dumps, *pickle_loads;
/* Types whose str() is their value, so it may be part of a key. */
static PyObject *exact_str_types;

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- keys ------------------------------------------------------------------ */

static int
key_put(Cache *c, const void *p, size_t n)
{
	if (c->key_len + n > KEY_MAX) {
		PyErr_SetString(PyExc_OverflowError, "key too long to cache");
		return -1;
	}
	if (c->key_len + n > c->key_cap) {
		size_t cap = c->key_cap ? c->key_cap : 256;
		char *k;

		while (cap < c->key_len + n)
			cap *= 2;
		if (!(k = PyMem_Realloc(c->key, cap))) {
			PyErr_NoMemory();
			return -1;
		}
		c->key = k;
		c->key_cap = cap;
	}
	memcpy(c->key + c->key_len, p, n);
	c->key_len += n;
	return 0;
}

static int
key_put_tagged(Cache *c, char type, const void *p, size_t n)
{
	uint32_t len = (uint32_t)n;

	if (n > KEY_MAX) {
		PyErr_SetString(PyExc_OverflowError, "value too long to cache");
		return -1;
	}
	if (key_put(c, &type, 1) || key_put(c, &len, sizeof(len)))
		return -1;
	return key_put(c, p, n);
}

static int key_put_value(Cache *c, PyObject *v, int depth);

static int
key_put_str(Cache *c, char type, PyObject *s)
{
	Py_ssize_t n;
	const char *u = PyUnicode_AsUTF8AndSize(s, &n);

	return u ? key_put_tagged(c, type, u, (size_t)n) : -1;
}

static int
key_put_value(Cache *c, PyObject *v, int depth)
{
	PyObject *type = (PyObject *)Py_TYPE(v);

	if (depth > 8) {
		PyErr_SetString(PyExc_TypeError, "parameters nested too deep");
		return -1;
	}
	if (v == Py_None)
		return key_put(c, "n", 1);
	if (v == Py_True)
		return key_put(c, "t", 1);
	if (v == Py_False)
		return key_put(c, "f", 1);
	if (PyLong_CheckExact(v)) {
		int overflow = 0;
		long long x = PyLong_AsLongLongAndOverflow(v, &overflow);

		if (!overflow)
			return (x == -1 && PyErr_Occurred()) ? -1 :
			       key_put_tagged(c, 'i', &x, sizeof(x));
		PyObject *s = PyObject_Str(v);
		int rc = s ? key_put_str(c, 'I', s) : -1;

		Py_XDECREF(s);
		return rc;
	}
	if (PyFloat_CheckExact(v)) {
		double d = PyFloat_AS_DOUBLE(v);

		return key_put_tagged(c, 'd', &d, sizeof(d));
	}
	if (PyUnicode_CheckExact(v))
		return key_put_str(c, 's', v);
	if (PyBytes_CheckExact(v))
		return key_put_tagged(c, 'b', PyBytes_AS_STRING(v),
				      (size_t)PyBytes_GET_SIZE(v));
	if (PyTuple_CheckExact(v) || PyList_CheckExact(v)) {
		Py_ssize_t i, n = PySequence_Fast_GET_SIZE(v);
		uint32_t len = (uint32_t)n;

		if (key_put(c, PyTuple_CheckExact(v) ? "(" : "[", 1) ||
		    key_put(c, &len, sizeof(len)))
			return -1;
		for (i = 0; i < n; i++)
			if (key_put_value(c, PySequence_Fast_GET_ITEM(v, i),
					  depth + 1))
				return -1;
		return 0;
	}
	if (PyDict_Check(v)) {
		PyObject *k, *val;
		Py_ssize_t pos = 0;
		uint32_t len = (uint32_t)PyDict_GET_SIZE(v);

		if (key_put(c, "{", 1) || key_put(c, &len, sizeof(len)))
			return -1;
		while (PyDict_Next(v, &pos, &k, &val))
			if (key_put_value(c, k, depth + 1) ||
			    key_put_value(c, val, depth + 1))
				return -1;
		return 0;
	}
	switch (PySequence_Contains(exact_str_types, type)) {
	case 1: {
		/* The type's qualified name, then its str(): Decimal('1.0')
		 * and Decimal('1.00') differ, as their SQL literals do. */
		PyObject *s = PyObject_Str(v);
		int rc = s ? key_put_str(c, 'o', s) : -1;

		if (!rc)
			rc = key_put_tagged(c, 'T', &type, sizeof(type));
		Py_XDECREF(s);
		return rc;
	}
	case 0:
		PyErr_Format(PyExc_TypeError, "a %.100s parameter is not cacheable",
			     Py_TYPE(v)->tp_name);
		return -1;
	default:
		return -1;
	}
}

/* Builds the key of (token, sql, params) into c->key; -1 with an error. */
static int
build_key(Cache *c, PyObject *token, PyObject *sql, PyObject *params)
{
	unsigned long long t = PyLong_AsUnsignedLongLong(token);

	if (t == (unsigned long long)-1 && PyErr_Occurred())
		return -1;
	if (!PyUnicode_Check(sql)) {
		PyErr_SetString(PyExc_TypeError, "sql must be a str");
		return -1;
	}
	c->key_len = 0;
	if (key_put(c, &t, sizeof(t)) || key_put_str(c, 'q', sql))
		return -1;
	return key_put_value(c, params, 0);
}

/* ---- values ---------------------------------------------------------------- */

static PyObject *
encode_value(PyObject *value)
{
	PyObject *m = PyMarshal_WriteObjectToString(value, Py_MARSHAL_VERSION);
	PyObject *out;
	char tag = 'm';

	if (!m) {	/* a type marshal does not know: pickle it */
		PyErr_Clear();
		if (!(m = PyObject_CallFunction(pickle_dumps, "Oi", value, 5)))
			return NULL;
		tag = 'p';
	}
	out = PyBytes_FromStringAndSize(NULL, PyBytes_GET_SIZE(m) + 1);
	if (out) {
		PyBytes_AS_STRING(out)[0] = tag;
		memcpy(PyBytes_AS_STRING(out) + 1, PyBytes_AS_STRING(m),
		       (size_t)PyBytes_GET_SIZE(m));
	}
	Py_DECREF(m);
	return out;
}

static PyObject *
decode_value(const uint8_t *data, size_t len)
{
	if (len < 1)
		return NULL;
	if (data[0] == 'm')
		return PyMarshal_ReadObjectFromString((const char *)data + 1,
						      (Py_ssize_t)len - 1);
	return PyObject_CallFunction(pickle_loads, "y#", data + 1,
				     (Py_ssize_t)len - 1);
}

/* ---- the type ---------------------------------------------------------------- */

static int
Cache_init(Cache *self, PyObject *args, PyObject *kw)
{
	static char k_bytes[] = "max_bytes", k_entry[] = "max_entry",
		    k_ttl[] = "ttl_ms";
	static char *names[] = {k_bytes, k_entry, k_ttl, NULL};
	unsigned long long max_bytes, max_entry = 0, ttl_ms = 0;
	struct cache_store_config cfg;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "K|KK", names, &max_bytes,
					 &max_entry, &ttl_ms))
		return -1;
	if (self->store) {
		PyErr_SetString(PyExc_RuntimeError, "Cache already initialised");
		return -1;
	}
	cfg.max_bytes = (size_t)max_bytes;
	cfg.max_entry = (size_t)max_entry;
	cfg.ttl_ms = ttl_ms;
	if (!(self->store = cache_store_new(&cfg))) {
		PyErr_NoMemory();
		return -1;
	}
	return 0;
}

static void
Cache_dealloc(Cache *self)
{
	if (self->store)
		cache_store_free(self->store);
	PyMem_Free(self->key);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Cache_get(Cache *self, PyObject *const *args, Py_ssize_t nargs)
{
	struct cache_entry *e;
	const uint8_t *data;
	PyObject *value;
	size_t len;

	if (nargs != 3) {
		PyErr_SetString(PyExc_TypeError, "get(token, sql, params)");
		return NULL;
	}
	if (build_key(self, args[0], args[1], args[2])) {
		if (!PyErr_ExceptionMatches(PyExc_TypeError) &&
		    !PyErr_ExceptionMatches(PyExc_OverflowError))
			return NULL;
		PyErr_Clear();
		self->bypassed++;
		Py_RETURN_NONE;
	}
	e = cache_get(self->store, XXH3_64bits(self->key, self->key_len),
		      self->key, self->key_len, now_ms());
	if (!e) {
		self->misses++;
		Py_RETURN_NONE;
	}
	data = cache_entry_data(e, &len);
	value = decode_value(data, len);
	cache_entry_release(e);
	if (value)
		self->hits++;
	return value;
}

/* Was any of tags invalidated after snapshot snap? */
static bool
moved_since(const Cache *self, uint64_t snap, const uint64_t *tags, size_t n)
{
	uint64_t s;
	size_t i;

	if (snap < self->floor || snap > self->seq)
		return true;
	for (s = self->seq; s > snap; s--) {
		const struct ring_slot *r = &self->ring[(s - 1) % RING_SIZE];

		for (i = 0; i < n; i++)
			if (r->tag == tags[i])
				return true;
	}
	return false;
}

static int
read_tags(PyObject *seq, uint64_t *tags, size_t *n)
{
	PyObject *fast = PySequence_Fast(seq, "tags must be a sequence of int");
	Py_ssize_t i, len;

	if (!fast)
		return -1;
	len = PySequence_Fast_GET_SIZE(fast);
	if (len > CACHE_MAX_TAGS) {
		Py_DECREF(fast);
		*n = (size_t)len;
		return 0;
	}
	for (i = 0; i < len; i++) {
		tags[i] = PyLong_AsUnsignedLongLong(
			PySequence_Fast_GET_ITEM(fast, i));
		if (tags[i] == (uint64_t)-1 && PyErr_Occurred()) {
			Py_DECREF(fast);
			return -1;
		}
	}
	*n = (size_t)len;
	Py_DECREF(fast);
	return 0;
}

static PyObject *
Cache_put(Cache *self, PyObject *const *args, Py_ssize_t nargs)
{
	uint64_t tags[CACHE_MAX_TAGS], snap;
	struct cache_stamp stamp;
	PyObject *data;
	size_t ntags;
	enum cache_put_result r;

	if (nargs != 6) {
		PyErr_SetString(PyExc_TypeError,
				"put(token, sql, params, value, tags, snapshot)");
		return NULL;
	}
	snap = PyLong_AsUnsignedLongLong(args[5]);
	if (snap == (uint64_t)-1 && PyErr_Occurred())
		return NULL;
	if (read_tags(args[4], tags, &ntags))
		return NULL;
	if (ntags == 0 || ntags > CACHE_MAX_TAGS ||
	    moved_since(self, snap, tags, ntags)) {
		self->fills_refused++;
		Py_RETURN_FALSE;
	}
	if (build_key(self, args[0], args[1], args[2])) {
		if (!PyErr_ExceptionMatches(PyExc_TypeError) &&
		    !PyErr_ExceptionMatches(PyExc_OverflowError))
			return NULL;
		PyErr_Clear();
		self->bypassed++;
		Py_RETURN_FALSE;
	}
	if (!(data = encode_value(args[3])))
		return NULL;
	/* The GIL is held since the check above: no bump in between. */
	if (cache_stamp_take(self->store, &stamp, tags, ntags)) {
		Py_DECREF(data);
		Py_RETURN_FALSE;
	}
	r = cache_put(self->store, XXH3_64bits(self->key, self->key_len),
		      self->key, self->key_len, PyBytes_AS_STRING(data),
		      (size_t)PyBytes_GET_SIZE(data), &stamp, now_ms());
	Py_DECREF(data);
	if (r == CACHE_STORED) {
		self->fills++;
		Py_RETURN_TRUE;
	}
	self->fills_refused++;
	Py_RETURN_FALSE;
}

static void
record(Cache *self, const uint64_t *tags, size_t n)
{
	size_t i;

	cache_tag_bump(self->store, tags, n);
	for (i = 0; i < n; i++) {
		struct ring_slot *r = &self->ring[self->seq % RING_SIZE];

		r->seq = ++self->seq;
		r->tag = tags[i];
	}
	if (self->seq > RING_SIZE && self->floor < self->seq - RING_SIZE)
		self->floor = self->seq - RING_SIZE;
}

static PyObject *
Cache_invalidate(Cache *self, PyObject *seq)
{
	uint64_t tags[CACHE_MAX_TAGS];
	PyObject *fast = PySequence_Fast(seq, "tags must be a sequence of int");
	Py_ssize_t i, len, done = 0;

	if (!fast)
		return NULL;
	len = PySequence_Fast_GET_SIZE(fast);
	while (done < len) {
		size_t n = 0;

		for (i = done; i < len && n < CACHE_MAX_TAGS; i++, n++) {
			tags[n] = PyLong_AsUnsignedLongLong(
				PySequence_Fast_GET_ITEM(fast, i));
			if (tags[n] == (uint64_t)-1 && PyErr_Occurred()) {
				Py_DECREF(fast);
				return NULL;
			}
		}
		record(self, tags, n);
		done += (Py_ssize_t)n;
	}
	Py_DECREF(fast);
	Py_RETURN_NONE;
}

static PyObject *
Cache_invalidate_db(Cache *self, PyObject *db)
{
	const char *name = PyUnicode_AsUTF8(db);
	uint64_t tag;

	if (!name)
		return NULL;
	tag = cache_tag_db(name);
	record(self, &tag, 1);
	Py_RETURN_NONE;
}

static PyObject *
Cache_clear(Cache *self, PyObject *unused)
{
	(void)unused;
	cache_clear(self->store);
	self->floor = ++self->seq;	/* every snapshot taken before: refused */
	Py_RETURN_NONE;
}

static PyObject *
Cache_snapshot(Cache *self, PyObject *unused)
{
	(void)unused;
	return PyLong_FromUnsignedLongLong(self->seq);
}

static PyObject *
Cache_stats(Cache *self, PyObject *unused)
{
	struct cache_stats st;

	(void)unused;
	cache_store_stats(self->store, &st);
	return Py_BuildValue(
		"{sKsKsKsKsKsKsKsKsKsK}", "hits", (unsigned long long)self->hits,
		"misses", (unsigned long long)self->misses,
		"fills", (unsigned long long)self->fills,
		"fills_refused", (unsigned long long)self->fills_refused,
		"bypassed", (unsigned long long)self->bypassed,
		"invalidations", (unsigned long long)self->seq,
		"entries", (unsigned long long)st.entries,
		"bytes", (unsigned long long)st.bytes,
		"budget_bytes", (unsigned long long)st.budget_bytes,
		"evicted_capacity", (unsigned long long)st.evicted_capacity);
}

static PyObject *
l1_db_tag(PyObject *mod, PyObject *db)
{
	const char *name = PyUnicode_AsUTF8(db);

	(void)mod;
	return name ? PyLong_FromUnsignedLongLong(cache_tag_db(name)) : NULL;
}

static PyObject *
l1_table_tag(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
	const char *db, *rel;

	(void)mod;
	if (nargs != 2) {
		PyErr_SetString(PyExc_TypeError, "table_tag(db, relation)");
		return NULL;
	}
	if (!(db = PyUnicode_AsUTF8(args[0])) || !(rel = PyUnicode_AsUTF8(args[1])))
		return NULL;
	return PyLong_FromUnsignedLongLong(cache_tag_table(db, rel));
}

static PyObject *
l1_rows_tag(PyObject *mod, PyObject *table_tag)
{
	uint64_t t = PyLong_AsUnsignedLongLong(table_tag);

	(void)mod;
	if (t == (uint64_t)-1 && PyErr_Occurred())
		return NULL;
	return PyLong_FromUnsignedLongLong(cache_tag_rows(t));
}

static PyObject *
l1_row_tag(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
	uint64_t t;
	long long key;

	(void)mod;
	if (nargs != 2) {
		PyErr_SetString(PyExc_TypeError, "row_tag(table_tag, key)");
		return NULL;
	}
	t = PyLong_AsUnsignedLongLong(args[0]);
	if (t == (uint64_t)-1 && PyErr_Occurred())
		return NULL;
	key = PyLong_AsLongLong(args[1]);
	if (key == -1 && PyErr_Occurred())
		return NULL;
	return PyLong_FromUnsignedLongLong(cache_tag_row(t, (int64_t)key));
}

static PyMethodDef Cache_methods[] = {
	{"get", (PyCFunction)(void (*)(void))Cache_get, METH_FASTCALL,
	 "get(token, sql, params) -> the cached value (a fresh copy) or None"},
	{"put", (PyCFunction)(void (*)(void))Cache_put, METH_FASTCALL,
	 "put(token, sql, params, value, tags, snapshot) -> stored?"},
	{"invalidate", (PyCFunction)Cache_invalidate, METH_O,
	 "invalidate(tags): entries carrying any of them are dropped"},
	{"invalidate_db", (PyCFunction)Cache_invalidate_db, METH_O,
	 "invalidate_db(name): every entry of that database is dropped"},
	{"clear", (PyCFunction)Cache_clear, METH_NOARGS,
	 "drop everything; fills begun before are refused"},
	{"snapshot", (PyCFunction)Cache_snapshot, METH_NOARGS,
	 "the invalidation counter, to pass to put()"},
	{"stats", (PyCFunction)Cache_stats, METH_NOARGS, "counters (a dict)"},
	{NULL, NULL, 0, NULL},
};

static PyTypeObject CacheType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pgvalet._l1.Cache",
	.tp_basicsize = sizeof(Cache),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "In-process result cache: byte-capped, tag-invalidated.",
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)Cache_init,
	.tp_dealloc = (destructor)Cache_dealloc,
	.tp_methods = Cache_methods,
};

static PyMethodDef module_methods[] = {
	{"db_tag", (PyCFunction)l1_db_tag, METH_O,
	 "db_tag(name): the tag every result of that database carries"},
	{"table_tag", (PyCFunction)(void (*)(void))l1_table_tag, METH_FASTCALL,
	 "table_tag(db, relation): bumped by every write to that relation "
	 "(any schema: tags name relations by database and name)"},
	{"rows_tag", (PyCFunction)l1_rows_tag, METH_O,
	 "rows_tag(table_tag): bumped by writes whose changed rows are unknown"},
	{"row_tag", (PyCFunction)(void (*)(void))l1_row_tag, METH_FASTCALL,
	 "row_tag(table_tag, key): bumped by writes to the row whose integer "
	 "key column equals key"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "_l1",
	"pgvalet's in-process result cache (see pgvalet/l1.py).", -1,
	module_methods, NULL, NULL, NULL, NULL,
};

static PyObject *
import_attr(const char *mod, const char *name)
{
	PyObject *m = PyImport_ImportModule(mod), *a;

	if (!m)
		return NULL;
	a = PyObject_GetAttrString(m, name);
	Py_DECREF(m);
	return a;
}

PyMODINIT_FUNC PyInit__l1(void);

PyMODINIT_FUNC
PyInit__l1(void)
{
	static const char *const str_types[][2] = {
		{"decimal", "Decimal"}, {"datetime", "date"},
		{"datetime", "datetime"}, {"datetime", "time"},
		{"datetime", "timedelta"}, {"uuid", "UUID"},
	};
	PyObject *m;
	size_t i;

	if (PyType_Ready(&CacheType) < 0)
		return NULL;
	if (!(pickle_dumps = import_attr("pickle", "dumps")) ||
	    !(pickle_loads = import_attr("pickle", "loads")))
		return NULL;
	if (!(exact_str_types = PyTuple_New((Py_ssize_t)(sizeof(str_types) /
							 sizeof(str_types[0])))))
		return NULL;
	for (i = 0; i < sizeof(str_types) / sizeof(str_types[0]); i++) {
		PyObject *t = import_attr(str_types[i][0], str_types[i][1]);

		if (!t)
			return NULL;
		PyTuple_SET_ITEM(exact_str_types, (Py_ssize_t)i, t);
	}
	if (!(m = PyModule_Create(&module)))
		return NULL;
	Py_INCREF(&CacheType);
	if (PyModule_AddObject(m, "Cache", (PyObject *)&CacheType) < 0) {
		Py_DECREF(&CacheType);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
