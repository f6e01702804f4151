/*
 * storekit._chitpath: the hit path of LRUCache.get and TTLCache.get in C.
 *
 * A HitPath object is the callable that storekit/cache/lru.py installs as a
 * cache's ``get``. It performs the same steps, in the same order and with
 * the same results, as the Python closures _make_plain_get and
 * _make_paired_get in that file:
 *
 *   0. a key that is not a str, bytes, int or float, or a tuple of those
 *      and None, goes to ``slow_path(key, default)`` (see
 *      is_lock_free_key);
 *   1. ``data[key]`` on the cache's OrderedDict (in paired mode the stored
 *      value is a ``(value, deadline)`` tuple and is unpacked);
 *   2. ``move_to_end(key)``; a KeyError from step 1 or 2 counts a miss and
 *      returns ``default``;
 *   3. if the entry has a deadline and ``deadline <= clock()``, the call
 *      returns ``slow_path(key, default)``, the cache's locked get;
 *   4. otherwise it counts a hit and returns the value.
 *
 * Hits are counted in the object's ``hits`` field, which the cache adds to
 * its own count, and misses by advancing an itertools.count.
 * For those keys no lock is taken: every step is a call into C code that
 * runs no Python code and is atomic under the GIL, as in the Python version. The module does not declare support
 * for running without the GIL, so a free-threaded CPython enables the GIL
 * when it imports this module, unless PYTHON_GIL=0 keeps it disabled.
 * storekit imports the module only when the GIL is enabled.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <structmember.h>

#include <stddef.h>
#include <time.h>

/*
 * The clock is read in C, without calling the clock object, only when the
 * clock is time.monotonic itself and the C code computes the same float as
 * time.monotonic does. From CPython 3.13 that is the public
 * PyTime_MonotonicRaw and PyTime_AsSecondsDouble pair. On Linux, CPython's
 * Python/pytime.c (py_get_monotonic_clock) reads
 * clock_gettime(CLOCK_MONOTONIC), converts it to int64 nanoseconds and then
 * to seconds as monotonic_seconds() below does. tests/test_cache_hitpath.py checks the result against
 * time.monotonic() on the running interpreter.
 */
#if PY_VERSION_HEX >= 0x030D0000
#define SK_C_MONOTONIC 1
#elif defined(__linux__) && defined(CLOCK_MONOTONIC)
#define SK_C_MONOTONIC 1
#else
#define SK_C_MONOTONIC 0
#endif

#define SK_NS_PER_SECOND 1000000000LL

/* time.monotonic, for the identity check in HitPath.__new__. */
static PyObject *monotonic_function = NULL;
/* True when monotonic_function is the time module's own C function, and
 * not a replacement (a mock or freezegun) installed before this import. */
static int monotonic_is_builtin = 0;

#if SK_C_MONOTONIC
/*
 * Store time.monotonic() in *seconds and return 0, or return -1 when the
 * clock cannot be read here. The caller then calls the clock object, which
 * raises the same error time.monotonic would.
 */
static int
monotonic_seconds(double *seconds)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t ns;
    if (PyTime_MonotonicRaw(&ns) < 0) {
        return -1;
    }
    *seconds = PyTime_AsSecondsDouble(ns);
    return 0;
#else
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return -1;
    }
    /* CPython raises OverflowError past INT64_MAX nanoseconds (292 years
     * of uptime); leave such a value to the clock object. */
    if (ts.tv_sec < 0 || ts.tv_sec >= INT64_MAX / SK_NS_PER_SECOND) {
        return -1;
    }
    long long ns = (long long)ts.tv_sec * SK_NS_PER_SECOND + ts.tv_nsec;
    /* volatile keeps the compiler from changing the rounding, as in
     * CPython's PyTime_AsSecondsDouble. */
    volatile double d;
    if (ns % SK_NS_PER_SECOND == 0) {
        d = (double)(ns / SK_NS_PER_SECOND);
    }
    else {
        d = (double)ns;
        d /= 1e9;
    }
    *seconds = d;
    return 0;
#endif
}
#endif

typedef struct {
    PyObject_HEAD
    PyObject *data;         /* the cache's OrderedDict */
    PyObject *move_to_end;  /* data.move_to_end, bound */
    PyObject *clock;        /* callable returning the current time */
    PyObject *miss_counter; /* itertools.count advanced once per miss */
    PyObject *slow_path;    /* the locked get(key, default) */
    PyObject *deadlines;    /* plain mode: dict key -> deadline; else None */
    PyObject *qualname;     /* str, for error messages and repr */
    int paired;             /* stored values are (value, deadline) tuples */
    int c_clock;            /* clock is time.monotonic, read in C */
    Py_ssize_t hits;        /* hits served here; the cache adds them up */
    vectorcallfunc vectorcall;
} HitPathObject;

static PyTypeObject HitPath_Type;

/* Advance an itertools.count, as next(counter) does. */
static int
advance(PyObject *counter)
{
    PyObject *number = Py_TYPE(counter)->tp_iternext(counter);
    if (number == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetNone(PyExc_StopIteration);
        }
        return -1;
    }
    Py_DECREF(number);
    return 0;
}

/* Count a miss and return a new reference to default_value. */
static PyObject *
miss(HitPathObject *self, PyObject *default_value)
{
    if (advance(self->miss_counter) < 0) {
        return NULL;
    }
    return Py_NewRef(default_value);
}

/*
 * Unpack ``value, deadline = stored`` for an object that is not an exact
 * 2-tuple, with the errors of Python's sequence unpacking. Return 0 and two
 * new references, or -1 with an exception set.
 */
static int
unpack_pair(PyObject *stored, PyObject **value, PyObject **deadline)
{
    PyObject *items[2] = {NULL, NULL};
    PyObject *iterator = PyObject_GetIter(stored);
    if (iterator == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError) &&
            Py_TYPE(stored)->tp_iter == NULL && !PySequence_Check(stored)) {
            PyErr_Format(PyExc_TypeError,
                         "cannot unpack non-iterable %.200s object",
                         Py_TYPE(stored)->tp_name);
        }
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        items[i] = PyIter_Next(iterator);
        if (items[i] == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_ValueError,
                             "not enough values to unpack (expected 2, got %d)",
                             i);
            }
            goto error;
        }
    }
    PyObject *extra = PyIter_Next(iterator);
    if (extra != NULL) {
        Py_DECREF(extra);
        PyErr_SetString(PyExc_ValueError,
                        "too many values to unpack (expected 2)");
        goto error;
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(iterator);
    *value = items[0];
    *deadline = items[1];
    return 0;

error:
    Py_XDECREF(items[0]);
    Py_XDECREF(items[1]);
    Py_DECREF(iterator);
    return -1;
}

/*
 * Evaluate ``deadline <= clock()``. Return 1 if the entry has expired, 0 if
 * not, -1 with an exception set if the clock or the comparison raised.
 */
static int
is_expired(HitPathObject *self, PyObject *deadline)
{
#if SK_C_MONOTONIC
    if (self->c_clock) {
        double now;
        if (monotonic_seconds(&now) == 0) {
            if (PyFloat_CheckExact(deadline)) {
                /* float <= float in Python is this C comparison, also for
                 * infinities and NaN. */
                return PyFloat_AS_DOUBLE(deadline) <= now;
            }
            PyObject *now_object = PyFloat_FromDouble(now);
            if (now_object == NULL) {
                return -1;
            }
            int result = PyObject_RichCompareBool(deadline, now_object, Py_LE);
            Py_DECREF(now_object);
            return result;
        }
    }
#endif
    PyObject *now_object = PyObject_CallNoArgs(self->clock);
    if (now_object == NULL) {
        return -1;
    }
    int result;
    if (PyFloat_CheckExact(deadline) && PyFloat_CheckExact(now_object)) {
        result = PyFloat_AS_DOUBLE(deadline) <= PyFloat_AS_DOUBLE(now_object);
    }
    else {
        result = PyObject_RichCompareBool(deadline, now_object, Py_LE);
    }
    Py_DECREF(now_object);
    return result;
}

/* Call the locked get after the entry was found expired. */
static PyObject *
call_slow_path(HitPathObject *self, PyObject *key, PyObject *default_value)
{
    PyObject *args[2] = {key, default_value};
    return PyObject_Vectorcall(self->slow_path, args, 2, NULL);
}

/*
 * Call move_to_end(key). Return 0 on success, or 1 after clearing a
 * KeyError, which means a concurrent change removed the key and counts as a
 * miss. Return -1 on any other exception.
 */
static int
move_key_to_end(HitPathObject *self, PyObject *key)
{
    PyObject *args[1] = {key};
    PyObject *result = PyObject_Vectorcall(self->move_to_end, args, 1, NULL);
    if (result == NULL) {
        if (PyErr_ExceptionMatches(PyExc_KeyError)) {
            PyErr_Clear();
            return 1;
        }
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/*
 * Look up ``data[key]`` and return a new reference. Return NULL with
 * *missing set to 1 when the key is absent or the lookup raised KeyError,
 * which is cleared. Return NULL with *missing set to 0 on other exceptions.
 */
static PyObject *
lookup(HitPathObject *self, PyObject *key, int *missing)
{
    /* OrderedDict inherits dict's subscript, and OrderedDict has no
     * __missing__, so data[key] is this lookup plus a KeyError. */
    PyObject *stored = PyDict_GetItemWithError(self->data, key);
    if (stored != NULL) {
        *missing = 0;
        return Py_NewRef(stored);
    }
    if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
        *missing = 1;
        return NULL;
    }
    *missing = 0;
    return NULL;
}

static PyObject *
get_paired(HitPathObject *self, PyObject *key, PyObject *default_value)
{
    int missing;
    PyObject *stored = lookup(self, key, &missing);
    if (stored == NULL) {
        return missing ? miss(self, default_value) : NULL;
    }
    PyObject *value;
    PyObject *deadline;
    if (PyTuple_CheckExact(stored) && PyTuple_GET_SIZE(stored) == 2) {
        value = Py_NewRef(PyTuple_GET_ITEM(stored, 0));
        deadline = Py_NewRef(PyTuple_GET_ITEM(stored, 1));
        Py_DECREF(stored);
    }
    else {
        int unpacked = unpack_pair(stored, &value, &deadline);
        Py_DECREF(stored);
        if (unpacked < 0) {
            if (PyErr_ExceptionMatches(PyExc_KeyError)) {
                PyErr_Clear();
                return miss(self, default_value);
            }
            return NULL;
        }
    }

    int moved = move_key_to_end(self, key);
    if (moved != 0) {
        Py_DECREF(value);
        Py_DECREF(deadline);
        return moved > 0 ? miss(self, default_value) : NULL;
    }

    int expired = is_expired(self, deadline);
    Py_DECREF(deadline);
    if (expired != 0) {
        Py_DECREF(value);
        return expired > 0 ? call_slow_path(self, key, default_value) : NULL;
    }
    self->hits++;
    return value;
}

static PyObject *
get_plain(HitPathObject *self, PyObject *key, PyObject *default_value)
{
    int missing;
    PyObject *value = lookup(self, key, &missing);
    if (value == NULL) {
        return missing ? miss(self, default_value) : NULL;
    }

    int moved = move_key_to_end(self, key);
    if (moved != 0) {
        Py_DECREF(value);
        return moved > 0 ? miss(self, default_value) : NULL;
    }

    /* Only entries put with their own ttl have a deadline. Errors of
     * deadlines.get(key) propagate, KeyError included, as in Python. */
    if (PyDict_GET_SIZE(self->deadlines) > 0) {
        PyObject *deadline = PyDict_GetItemWithError(self->deadlines, key);
        if (deadline == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(value);
                return NULL;
            }
        }
        else if (deadline != Py_None) {
            Py_INCREF(deadline);
            int expired = is_expired(self, deadline);
            Py_DECREF(deadline);
            if (expired != 0) {
                Py_DECREF(value);
                return expired > 0 ? call_slow_path(self, key, default_value)
                                   : NULL;
            }
        }
    }
    self->hits++;
    return value;
}

/*
 * Bind the arguments of get(key, default=None) with the errors CPython 3.11
 * raises for a Python function of that signature. Later versions may word
 * some of them differently.
 */
static int
bind_arguments(HitPathObject *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames, PyObject **key, PyObject **default_value)
{
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "%U() takes from 1 to 2 positional arguments but "
                     "%zd were given",
                     self->qualname, nargs);
        return -1;
    }
    *key = nargs >= 1 ? args[0] : NULL;
    *default_value = nargs >= 2 ? args[1] : NULL;
    Py_ssize_t nkwargs = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkwargs; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        PyObject **slot;
        const char *parameter;
        if (PyUnicode_Check(name) &&
            PyUnicode_CompareWithASCIIString(name, "key") == 0) {
            slot = key;
            parameter = "key";
        }
        else if (PyUnicode_Check(name) &&
                 PyUnicode_CompareWithASCIIString(name, "default") == 0) {
            slot = default_value;
            parameter = "default";
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "%U() got an unexpected keyword argument '%S'",
                         self->qualname, name);
            return -1;
        }
        if (*slot != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%U() got multiple values for argument '%s'",
                         self->qualname, parameter);
            return -1;
        }
        *slot = args[nargs + i];
    }
    if (*key == NULL) {
        PyErr_Format(PyExc_TypeError,
                     "%U() missing 1 required positional argument: 'key'",
                     self->qualname);
        return -1;
    }
    if (*default_value == NULL) {
        *default_value = Py_None;
    }
    return 0;
}

/*
 * Return 1 if hashing and comparing key runs no Python code: an exact str,
 * bytes, int or float, or a tuple of those and None. Only such keys take
 * the lock-free path. A key with a Python __eq__ or __hash__ could let
 * another thread change the OrderedDict in the middle of move_to_end, and
 * CPython's OrderedDict then reads freed memory (python/cpython issue 142637), so
 * every other key goes to the locked slow path.
 */
static int
is_lock_free_key(PyObject *key)
{
    PyTypeObject *type = Py_TYPE(key);
    if (type == &PyUnicode_Type || type == &PyBytes_Type ||
        type == &PyLong_Type || type == &PyFloat_Type) {
        return 1;
    }
    if (type != &PyTuple_Type) {
        return 0;
    }
    Py_ssize_t size = PyTuple_GET_SIZE(key);
    for (Py_ssize_t i = 0; i < size; i++) {
        PyTypeObject *item = Py_TYPE(PyTuple_GET_ITEM(key, i));
        if (item != &PyUnicode_Type && item != &PyBytes_Type &&
            item != &PyLong_Type && item != &PyFloat_Type &&
            item != Py_TYPE(Py_None)) {
            return 0;
        }
    }
    return 1;
}

static PyObject *
hitpath_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                   PyObject *kwnames)
{
    HitPathObject *self = (HitPathObject *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *key;
    PyObject *default_value;
    if (kwnames == NULL && nargs == 1) {
        key = args[0];
        default_value = Py_None;
    }
    else if (kwnames == NULL && nargs == 2) {
        key = args[0];
        default_value = args[1];
    }
    else if (bind_arguments(self, args, nargs, kwnames, &key,
                            &default_value) < 0) {
        return NULL;
    }
    if (self->data == NULL) {
        /* Only the garbage collector's tp_clear empties the fields. */
        PyErr_SetString(PyExc_ReferenceError,
                        "the cache of this get method no longer exists");
        return NULL;
    }
    if (!is_lock_free_key(key)) {
        return call_slow_path(self, key, default_value);
    }
    if (self->paired) {
        return get_paired(self, key, default_value);
    }
    return get_plain(self, key, default_value);
}

static int
check_callable(PyObject *object, const char *name)
{
    if (!PyCallable_Check(object)) {
        PyErr_Format(PyExc_TypeError, "%s must be callable, not %.200s", name,
                     Py_TYPE(object)->tp_name);
        return -1;
    }
    return 0;
}

static int
check_iterator(PyObject *object, const char *name)
{
    if (!PyIter_Check(object)) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be an iterator such as itertools.count(), "
                     "not %.200s",
                     name, Py_TYPE(object)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *
hitpath_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"data",         "move_to_end", "clock",
                               "miss_counter", "slow_path",
                               "deadlines",    "paired",       "qualname",
                               NULL};
    PyObject *data, *move_to_end, *clock, *miss_counter;
    PyObject *slow_path, *deadlines, *qualname;
    int paired;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOpU:HitPath",
                                     keywords, &data, &move_to_end, &clock,
                                     &miss_counter, &slow_path,
                                     &deadlines, &paired, &qualname)) {
        return NULL;
    }
    if (!PyODict_CheckExact(data)) {
        PyErr_Format(PyExc_TypeError,
                     "data must be a collections.OrderedDict, not %.200s",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    if (check_callable(move_to_end, "move_to_end") < 0 ||
        check_callable(clock, "clock") < 0 ||
        check_callable(slow_path, "slow_path") < 0 ||
        check_iterator(miss_counter, "miss_counter") < 0) {
        return NULL;
    }
    if (paired && deadlines != Py_None) {
        PyErr_Format(PyExc_ValueError,
                     "deadlines must be None when paired is true, not %.200s",
                     Py_TYPE(deadlines)->tp_name);
        return NULL;
    }
    if (!paired && !PyDict_CheckExact(deadlines)) {
        PyErr_Format(PyExc_TypeError,
                     "deadlines must be a dict when paired is false, not %.200s",
                     Py_TYPE(deadlines)->tp_name);
        return NULL;
    }

    HitPathObject *self = (HitPathObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->data = Py_NewRef(data);
    self->move_to_end = Py_NewRef(move_to_end);
    self->clock = Py_NewRef(clock);
    self->miss_counter = Py_NewRef(miss_counter);
    self->slow_path = Py_NewRef(slow_path);
    self->deadlines = Py_NewRef(deadlines);
    self->qualname = Py_NewRef(qualname);
    self->paired = paired;
    self->c_clock =
        SK_C_MONOTONIC && monotonic_is_builtin && clock == monotonic_function;
    self->vectorcall = hitpath_vectorcall;
    return (PyObject *)self;
}

static int
hitpath_traverse(HitPathObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->data);
    Py_VISIT(self->move_to_end);
    Py_VISIT(self->clock);
    Py_VISIT(self->miss_counter);
    Py_VISIT(self->slow_path);
    Py_VISIT(self->deadlines);
    Py_VISIT(self->qualname);
    return 0;
}

static int
hitpath_clear(HitPathObject *self)
{
    Py_CLEAR(self->data);
    Py_CLEAR(self->move_to_end);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->miss_counter);
    Py_CLEAR(self->slow_path);
    Py_CLEAR(self->deadlines);
    Py_CLEAR(self->qualname);
    return 0;
}

static void
hitpath_dealloc(HitPathObject *self)
{
    PyObject_GC_UnTrack(self);
    hitpath_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
hitpath_repr(HitPathObject *self)
{
    if (self->qualname == NULL) {
        return PyUnicode_FromFormat("<storekit C get method at %p>", self);
    }
    return PyUnicode_FromFormat("<storekit C get method %U at %p>",
                                self->qualname, self);
}

static PyObject *
hitpath_get_qualname(HitPathObject *self, void *closure)
{
    if (self->qualname == NULL) {
        return PyUnicode_FromString("get");
    }
    return Py_NewRef(self->qualname);
}

static PyObject *
hitpath_get_name(HitPathObject *self, void *closure)
{
    return PyUnicode_FromString("get");
}

static PyObject *
hitpath_get_paired(HitPathObject *self, void *closure)
{
    return PyBool_FromLong(self->paired);
}

static PyObject *
hitpath_get_c_clock(HitPathObject *self, void *closure)
{
    return PyBool_FromLong(self->c_clock);
}

static PyMemberDef hitpath_members[] = {
    {"hits", T_PYSSIZET, offsetof(HitPathObject, hits), READONLY,
     "Hits this get has served."},
    {NULL},
};

static PyGetSetDef hitpath_getset[] = {
    {"__name__", (getter)hitpath_get_name, NULL, "The name, 'get'.", NULL},
    {"__qualname__", (getter)hitpath_get_qualname, NULL,
     "The qualified name, such as 'LRUCache.get'.", NULL},
    {"paired", (getter)hitpath_get_paired, NULL,
     "Whether stored values are (value, deadline) tuples.", NULL},
    {"c_clock", (getter)hitpath_get_c_clock, NULL,
     "Whether the clock is time.monotonic, read in C without a call.", NULL},
    {NULL},
};

PyDoc_STRVAR(hitpath_doc,
"HitPath(data, move_to_end, clock, miss_counter, slow_path,\n"
"        deadlines, paired, qualname)\n"
"--\n"
"\n"
"The get(key, default=None) method of an LRUCache, in C.\n"
"\n"
"Return the live value of key and mark it most recent, or default.\n"
"data is the cache's OrderedDict and move_to_end its bound method.\n"
"Hits add 1 to the read-only hits attribute, and misses advance\n"
"miss_counter, an itertools.count. An entry\n"
"whose deadline <= clock() is left to slow_path(key, default). With\n"
"paired true the stored values are (value, deadline) tuples and\n"
"deadlines is None; otherwise deadlines is the dict of per-entry\n"
"deadlines.");

static PyTypeObject HitPath_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "storekit._chitpath.HitPath",
    .tp_basicsize = sizeof(HitPathObject),
    .tp_dealloc = (destructor)hitpath_dealloc,
    .tp_vectorcall_offset = offsetof(HitPathObject, vectorcall),
    .tp_repr = (reprfunc)hitpath_repr,
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
                Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = hitpath_doc,
    .tp_traverse = (traverseproc)hitpath_traverse,
    .tp_clear = (inquiry)hitpath_clear,
    .tp_getset = hitpath_getset,
    .tp_members = hitpath_members,
    .tp_new = hitpath_new,
};

#if SK_C_MONOTONIC
static PyObject *
module_monotonic(PyObject *module, PyObject *unused)
{
    double now;
    if (monotonic_seconds(&now) < 0) {
        return PyObject_CallNoArgs(monotonic_function);
    }
    return PyFloat_FromDouble(now);
}
#endif

static PyMethodDef module_methods[] = {
#if SK_C_MONOTONIC
    {"monotonic", module_monotonic, METH_NOARGS,
     "monotonic()\n--\n\n"
     "Return time.monotonic() as HitPath reads it, without calling it.\n"
     "Defined only where C_MONOTONIC is true."},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hitpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "storekit._chitpath",
    .m_doc = "The hit path of storekit's LRUCache.get and TTLCache.get in C.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__chitpath(void)
{
    if (PyType_Ready(&HitPath_Type) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&hitpath_module);
    if (module == NULL) {
        return NULL;
    }
    if (monotonic_function == NULL) {
        PyObject *time_module = PyImport_ImportModule("time");
        if (time_module == NULL) {
            goto error;
        }
        monotonic_function = PyObject_GetAttrString(time_module, "monotonic");
        if (monotonic_function == NULL) {
            Py_DECREF(time_module);
            goto error;
        }
        monotonic_is_builtin = PyCFunction_Check(monotonic_function) &&
                               PyCFunction_GET_SELF(monotonic_function) ==
                                   time_module;
        Py_DECREF(time_module);
    }
    if (PyModule_AddObjectRef(module, "HitPath", (PyObject *)&HitPath_Type) <
        0) {
        goto error;
    }
    if (PyModule_AddIntConstant(module, "C_MONOTONIC", SK_C_MONOTONIC) < 0) {
        goto error;
    }
    return module;

error:
    Py_DECREF(module);
    return NULL;
}
