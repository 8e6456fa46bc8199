/*
 * jsonproto.core._speedups: the fast path (jsonproto/core/fastpath.py) in C, the
 * line cutter of jsonproto/wire/framing.py, and the reactor's event loop
 * (jsonproto/daemon/epoll.py).
 *
 * FastPath.answer() is answerFrames in fastpath.py, step for step, with
 * the protocol's _reply/_writeReply (which answerFrames calls) written out
 * here: read those first.  FastPath.read(data) does what decoder.feed(data) and the
 * protocol's _processFrames() would, cutting frames from the read itself;
 * calling a FastPath is the TCP transport's doRead, with dataReceived's
 * accounting; spliceReply writes the common reply without the reply dict.
 * The tests run every conversation through the general path, the Python
 * fast path and this, and compare every byte and counter.
 *
 * What C saves is the interpreter's work between the calls that do the real
 * work (recv and send, orjson's loads and dumps, the handler): attribute
 * loads, temporary ints and dicts, the loops themselves.  Everything rare is
 * handed back to the same Python methods the general path uses.
 */

#define _GNU_SOURCE /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>
#include <sys/socket.h>
#include <errno.h>
#include <sys/epoll.h>

#include "_flatjson.h"

static PyObject *orjson_loads, *orjson_dumps, *orjson_decode_error;
static PyObject *codec_all_finite;
static PyObject *perf_counter;
static PyObject *connectionDone, *connectionLost;
static PyObject *zero, *zeroSeconds;

/*
 * Attribute names, dict keys and strings, interned once at import: each
 * variable and its text, for the declarations here and PyInit__speedups.
 */
#define NAMES(X) \
    X(s_OK, "OK") X(s_ERROR, "ERROR") X(n_frames, "_frames") X(n_next, "_next") \
    X(n_info, "info") X(n_factory, "factory") X(n_dispatcher, "dispatcher") \
    X(n_handlers, "_handlers") X(n_latency, "latency") X(n_tallies, "_tallies") \
    X(n_countCall, "countCall") X(n_SAMPLE, "SAMPLE") X(n_batch, "_batch") \
    X(n_waiting, "_waiting") X(n_lengthPrefixed, "lengthPrefixed") \
    X(n_messagesIn, "messagesIn") X(n_messagesOut, "messagesOut") X(n_calls, "_calls") \
    X(n_reply, "_reply") X(n_raised, "raised") X(n_returned, "returned") \
    X(n_replyLater, "replyLater") X(n_observe, "observe") X(n_encodeReply, "encodeReply") \
    X(n_batchBytes, "_batchBytes") X(n_n, "n") X(n_batchLimit, "batchLimit") \
    X(n_errorReplied, "errorReplied") X(n_errorsInRow, "_errorsInRow") \
    X(n_flushBatch, "_flushBatch") X(n_paused, "_paused") X(n_partialLength, "_partialLength") \
    X(n_discarding, "_discarding") X(n_processing, "_processing") \
    X(n_processQueued, "_processQueued") X(n_feed, "feed") X(n_maxLength, "maxLength") \
    X(n_bytesOut, "bytesOut") X(n_socket, "_socket") X(n_dataBuffer, "dataBuffer") \
    X(n_tempDataBuffer, "_tempDataBuffer") X(n_fileno, "fileno") X(n_write, "write") \
    X(n_bytesIn, "bytesIn") X(n_lastActivity, "lastActivity") X(n_clock, "clock") \
    X(n_seconds, "seconds") X(n_limits, "limits") X(n_messageTimeout, "messageTimeout") \
    X(n_bufferSize, "bufferSize") X(n_proxied, "proxied") X(n_drainStage, "_drainStage") \
    X(n_logMessages, "logMessages") X(n_processFrames, "_processFrames") \
    X(n_partialMessage, "_partialMessage") X(n_midMessage, "midMessage") \
    X(n_partialSince, "_partialSince") X(n_dataReceived, "dataReceived") \
    X(n_partial, "_partial") X(n_failed, "_failed") X(n_doRead, "doRead") \
    X(n_transport, "transport") X(n_disconnecting, "disconnecting") X(k_type, "type") \
    X(k_id, "id") X(k_status, "status")

#define DECLARE_NAME(variable, text) static PyObject *variable;
NAMES(DECLARE_NAME)

/* codec.NULL_SCAN_LIMIT: see suspectNull. */
static Py_ssize_t nullScanLimit;

/* Call obj.name(args...), dropping the result; -1 on error. */
static int
callMethod(PyObject *obj, PyObject *name, PyObject *const *args, size_t nargs)
{
    PyObject *stack[4];
    stack[0] = obj;
    for (size_t i = 0; i < nargs; i++)
        stack[i + 1] = args[i];
    PyObject *result = PyObject_VectorcallMethod(name, stack, (nargs + 1), NULL);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

/*
 * Whether a run of 20 digits appears: an integer orjson may read as a
 * float.  Any such run covers a multiple of 20, so only those bytes are
 * looked at first: a 200 KiB message without long numbers costs 10,000
 * probes, not 200,000.
 */
static int
hasLongNumber(const char *data, Py_ssize_t size)
{
    for (Py_ssize_t i = 0; i < size; i += 20) {
        if (!IS_DIGIT(data[i]))
            continue;
        Py_ssize_t left = i, right = i + 1;
        while (left > 0 && IS_DIGIT(data[left - 1]))
            left--;
        while (right < size && IS_DIGIT(data[right]))
            right++;
        if (right - left >= 20)
            return 1;
    }
    return 0;
}

static PyObject *
now(void)
{
    return PyObject_CallNoArgs(perf_counter);
}

/*
 * Whether orjson's output `data` for `value` may hold a NaN written as
 * null (1), or not (0); -1 on error.  A short output is searched for
 * "null"; a long one costs less to check by walking the value
 * (codec.allFinite), as the codec does.
 */
static int
suspectNull(const char *data, Py_ssize_t size, PyObject *value)
{
    if (size <= nullScanLimit)
        return memmem(data, size, "null", 4) != NULL;
    PyObject *finite = PyObject_Vectorcall(codec_all_finite, &value, 1, NULL);
    if (finite == NULL)
        return -1;
    int suspect = !PyObject_IsTrue(finite);
    Py_DECREF(finite);
    return suspect;
}

/*
 * The reply's bytes: orjson's, unless orjson cannot write it or may have
 * written a NaN as null, in which case the protocol's encodeReply decides.
 */
static PyObject *
encode(PyObject *protocol, PyObject *reply)
{
    PyObject *payload = PyObject_Vectorcall(orjson_dumps, &reply, 1, NULL);
    if (payload == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return NULL;
        PyErr_Clear();
        return PyObject_CallMethodOneArg(protocol, n_encodeReply, reply);
    }
    int suspect = suspectNull(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), reply);
    if (suspect == 0)
        return payload;
    Py_DECREF(payload);
    return suspect < 0 ? NULL : PyObject_CallMethodOneArg(protocol, n_encodeReply, reply);
}

/*
 * A new frame for a message of `size` bytes: with its newline after, or its
 * 4-byte big-endian length before, already written; *body is where the
 * message goes.
 */
static PyObject *
newFrame(Py_ssize_t size, int lengthPrefixed, char **body)
{
    if (lengthPrefixed && (unsigned long long)size > 0xFFFFFFFFULL) {
        PyErr_SetString(PyExc_OverflowError, "a message longer than 4 GiB cannot be framed");
        return NULL;
    }
    PyObject *frame = PyBytes_FromStringAndSize(NULL, size + (lengthPrefixed ? 4 : 1));
    if (frame == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(frame);
    if (lengthPrefixed) {
        unsigned long n = (unsigned long)size;
        out[0] = (char)(n >> 24);
        out[1] = (char)(n >> 16);
        out[2] = (char)(n >> 8);
        out[3] = (char)n;
        out += 4;
    }
    else {
        out[size] = '\n';
    }
    *body = out;
    return frame;
}

/* The framed message. */
static PyObject *
frameMessage(PyObject *payload, int lengthPrefixed)
{
    char *body;
    PyObject *frame = newFrame(PyBytes_GET_SIZE(payload), lengthPrefixed, &body);
    if (frame != NULL)
        memcpy(body, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload));
    return frame;
}

/*
 * Counters: a connection's message and byte counts as C integers, the base
 * of jsonproto.server.connection.ConnectionInfo.  The fast path adds to them at
 * every message and every read; as int attributes each addition would make
 * an int object and drop another.  Python reads and writes them as ints.
 */
typedef struct {
    PyObject_HEAD
    long long messagesIn, messagesOut, bytesIn, bytesOut;
} Counters;

static PyMemberDef Counters_members[] = {
    {"messagesIn", T_LONGLONG, offsetof(Counters, messagesIn), 0, "Messages received whole."},
    {"messagesOut", T_LONGLONG, offsetof(Counters, messagesOut), 0, "Messages sent."},
    {"bytesIn", T_LONGLONG, offsetof(Counters, bytesIn), 0, "Bytes received."},
    {"bytesOut", T_LONGLONG, offsetof(Counters, bytesOut), 0, "Bytes sent."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject CountersType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "jsonproto.core._speedups.Counters",
    .tp_basicsize = sizeof(Counters),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A connection's message and byte counts, all 0 at first.",
    .tp_members = Counters_members,
    .tp_new = PyType_GenericNew,
};

/*
 * Tally: one count as a C integer, in n: HandlerLatency's calls, and its
 * messages of each type (jsonproto/core/counters.py says why).
 */
typedef struct {
    PyObject_HEAD
    long long n;
} Tally;

static PyMemberDef Tally_members[] = {
    {"n", T_LONGLONG, offsetof(Tally, n), 0, "The count."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "jsonproto.core._speedups.Tally",
    .tp_basicsize = sizeof(Tally),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One count, 0 at first, in n.",
    .tp_members = Tally_members,
    .tp_new = PyType_GenericNew,
};

/*
 * One connection's fast path: what answerFrames needs of the protocol,
 * gathered once, when the connection is made.  None of these objects is
 * replaced while a connection lasts; the protocol's per-read state
 * (_batch, _paused, ...) is read afresh.  Calling it is the transport's
 * doRead.
 *
 * The objects it holds are named once, for the struct, the garbage
 * collector's traverse and clear.  socket is the protocol's _socket: the
 * plain TCP socket written to directly when the transport has nothing
 * queued, or NULL.  factory and seconds (the clock's) are for doRead.
 * lastType and lastTally are the message type last counted and its Tally.
 */
#define FASTPATH_OBJECTS(X) \
    X(protocol) X(queue) X(frames) X(info) X(dispatcher) X(handlers) X(latency) X(tallies) \
    X(waiting) X(transport) X(socket) X(factory) X(seconds) X(callTally) X(lastType) X(lastTally) \
    X(batchBytes)

#define DECLARE(name) PyObject *name;

typedef struct {
    PyObject_HEAD
    FASTPATH_OBJECTS(DECLARE)
    /* Whether the limits time unfinished messages. */
    int messageTimeout;
    Py_ssize_t bufferSize;
    /* The decoder's maxLength, fixed when it was made. */
    Py_ssize_t maxLength;
    /* Where ConnectionInfo's lastActivity and counters (these when info is
     * not a Counters), and the protocol's state read at every message, sit
     * in their objects (they have __slots__), or -1 to go through getattr. */
    Py_ssize_t messagesInAt, messagesOutAt, bytesOutAt, bytesInAt, lastActivityAt;
    Py_ssize_t pausedAt, errorsInRowAt;
    /* Whether info is a Counters: its counts are then its C fields. */
    int counted;
    long sample;
    long batchLimit;
    int lengthPrefixed;
} FastPath;

static PyTypeObject FastPathType;

/*
 * Where a __slots__ attribute lives in obj, given what the class has under
 * its name; NULL if that is not a writable object slot.
 */
static PyObject **
slotOf(PyObject *obj, PyObject *inClass)
{
    if (inClass == NULL || !Py_IS_TYPE(inClass, &PyMemberDescr_Type))
        return NULL;
    PyMemberDef *member = ((PyMemberDescrObject *)inClass)->d_member;
    if (member->type != T_OBJECT_EX || (member->flags & READONLY))
        return NULL;
    return (PyObject **)((char *)obj + member->offset);
}

/* The offset of an object slot named `name` in `obj`'s type, or -1. */
static Py_ssize_t
slotOffset(PyObject *obj, PyObject *name)
{
    PyObject **slot = slotOf(obj, _PyType_Lookup(Py_TYPE(obj), name));
    return slot == NULL ? -1 : (char *)slot - (char *)obj;
}

/* obj.name, in the slot itself where there is one (offset >= 0). */
static PyObject *
getAt(PyObject *obj, Py_ssize_t offset, PyObject *name)
{
    if (offset < 0)
        return PyObject_GetAttr(obj, name);
    PyObject *value = *(PyObject **)((char *)obj + offset);
    if (value == NULL) {
        PyErr_SetObject(PyExc_AttributeError, name);
        return NULL;
    }
    return Py_NewRef(value);
}

/* The slot's value (borrowed, maybe NULL), or NULL if there is no slot. */
static PyObject *
getSlot(PyObject *obj, Py_ssize_t offset)
{
    return offset < 0 ? NULL : *(PyObject **)((char *)obj + offset);
}

/* obj.name = value, in the slot itself where there is one. */
static int
setAt(PyObject *obj, Py_ssize_t offset, PyObject *name, PyObject *value)
{
    if (offset < 0)
        return PyObject_SetAttr(obj, name, value);
    PyObject **slot = (PyObject **)((char *)obj + offset);
    PyObject *old = *slot;
    *slot = Py_NewRef(value);
    Py_XDECREF(old);
    return 0;
}

/*
 * getattr and setattr for the attributes read and written several times a
 * read: the protocol's, the decoder's and the factory's are object slots
 * (__slots__), read and written in place.  Anything else is getattr and
 * setattr.
 */
static PyObject *
getAttr(PyObject *obj, PyObject *name)
{
    return getAt(obj, slotOffset(obj, name), name);
}

static int
setAttr(PyObject *obj, PyObject *name, PyObject *value)
{
    return setAt(obj, slotOffset(obj, name), name, value);
}

/* value + amount: in C when both fit a long, as most counters do. */
static PyObject *
plus(PyObject *value, long amount)
{
    if (PyLong_CheckExact(value)) {
        int overflow;
        long before = PyLong_AsLongAndOverflow(value, &overflow), sum;
        if (!overflow && !__builtin_add_overflow(before, amount, &sum))
            return PyLong_FromLong(sum);
    }
    PyObject *addend = PyLong_FromLong(amount);
    if (addend == NULL)
        return NULL;
    PyObject *sum = PyNumber_Add(value, addend);
    Py_DECREF(addend);
    return sum;
}

/*
 * obj.name += amount, in the slot itself where there is one; *after, if
 * asked for, is the new value.
 */
static int
addAt(PyObject *obj, Py_ssize_t offset, PyObject *name, long amount, long long *after)
{
    PyObject *value = getAt(obj, offset, name);
    if (value == NULL)
        return -1;
    PyObject *bigger = plus(value, amount);
    Py_DECREF(value);
    if (bigger == NULL)
        return -1;
    if (after != NULL) {
        *after = PyLong_AsLongLong(bigger);
        if (*after == -1 && PyErr_Occurred()) {
            Py_DECREF(bigger);
            return -1;
        }
    }
    int rc = setAt(obj, offset, name, bigger);
    Py_DECREF(bigger);
    return rc;
}

/* obj.name as a long long; -1 with an error set when it is not an int. */
static long long
attrAsLongLong(PyObject *obj, Py_ssize_t offset, PyObject *name)
{
    PyObject *value = getAt(obj, offset, name);
    if (value == NULL)
        return -1;
    long long n = PyLong_AsLongLong(value);
    Py_DECREF(value);
    return n;
}


/*
 * tally.n += amount, *after the new count: in C for a Tally, through the
 * attribute otherwise.
 */
static int
addTally(PyObject *tally, long amount, long long *after)
{
    if (Py_IS_TYPE(tally, &TallyType)) {
        *after = ((Tally *)tally)->n += amount;
        return 0;
    }
    return addAt(tally, -1, n_n, amount, after);
}

/* tally.n = 0 */
static int
clearTally(PyObject *tally)
{
    if (Py_IS_TYPE(tally, &TallyType)) {
        ((Tally *)tally)->n = 0;
        return 0;
    }
    return PyObject_SetAttr(tally, n_n, zero);
}

/*
 * info.member += amount, and info.member, for ConnectionInfo's counters:
 * C fields where info is a Counters, attributes otherwise.
 */
#define COUNT(st, member, amount)                                                  \
    ((st)->counted ? (((Counters *)(st)->info)->member += (amount), 0)            \
                   : addAt((st)->info, (st)->member##At, n_##member, (amount), NULL))
#define READ_COUNT(st, member)                                                     \
    ((st)->counted ? ((Counters *)(st)->info)->member                              \
                   : attrAsLongLong((st)->info, (st)->member##At, n_##member))

#define VISIT(name) Py_VISIT(self->name);
#define CLEAR(name) Py_CLEAR(self->name);

static int
FastPath_traverse(FastPath *self, visitproc visit, void *arg)
{
    FASTPATH_OBJECTS(VISIT)
    return 0;
}

static int
FastPath_clear(FastPath *self)
{
    FASTPATH_OBJECTS(CLEAR)
    return 0;
}

static void
FastPath_dealloc(FastPath *self)
{
    PyObject_GC_UnTrack(self);
    FastPath_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
getAttrOfType(PyObject *obj, PyObject *name, PyTypeObject *type, const char *what)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value != NULL && !PyObject_TypeCheck(value, type)) {
        PyErr_Format(PyExc_TypeError, "%s must be a %s", what, type->tp_name);
        Py_CLEAR(value);
    }
    return value;
}

enum { AS_LONG, AS_TRUTH, AS_LENGTH };

/*
 * obj.name as a C long: its value, its truth (0 or 1) or its len(); -1
 * with an error set when it cannot be had.
 */
static long
attrAs(PyObject *obj, PyObject *name, int how)
{
    PyObject *value = getAttr(obj, name);
    if (value == NULL)
        return -1;
    long result = how == AS_LONG ? PyLong_AsLong(value)
                  : how == AS_TRUTH ? (long)PyObject_IsTrue(value)
                                    : (long)PyObject_Length(value);
    Py_DECREF(value);
    return result;
}

#define getLong(obj, name) attrAs((obj), (name), AS_LONG)
#define attrIsTrue(obj, name) ((int)attrAs((obj), (name), AS_TRUTH))
#define lengthOf(obj, name) attrAs((obj), (name), AS_LENGTH)


/*
 * Whether the factory still has the dispatcher this fast path was bound
 * with (1), another one (0: the fast path then declines, and every message
 * takes the general path, which reads the factory's), or -1 on error.
 */
static int
sameDispatcher(FastPath *st)
{
    PyObject *dispatcher = getAttr(st->factory, n_dispatcher);
    if (dispatcher == NULL)
        return -1;
    Py_DECREF(dispatcher);
    return dispatcher == st->dispatcher;
}

/* bind(protocol, queue) -> FastPath */
static PyObject *
bindFastPath(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "bind(protocol, queue)");
        return NULL;
    }
    FastPath *self = PyObject_GC_New(FastPath, &FastPathType);
    if (self == NULL)
        return NULL;
#define SET_NULL(name) self->name = NULL;
    FASTPATH_OBJECTS(SET_NULL)
    self->protocol = Py_NewRef(args[0]);
    self->queue = Py_NewRef(args[1]);
    PyObject_GC_Track((PyObject *)self);
    if (!(self->frames = getAttrOfType(self->queue, n_frames, &PyList_Type, "the decoder's _frames")))
        goto fail;
    if (!(self->info = PyObject_GetAttr(self->protocol, n_info)))
        goto fail;
    if (!(self->factory = PyObject_GetAttr(self->protocol, n_factory)))
        goto fail;
    if (!(self->dispatcher = PyObject_GetAttr(self->factory, n_dispatcher)))
        goto fail;
    if (!(self->handlers = getAttrOfType(self->dispatcher, n_handlers, &PyDict_Type, "the dispatcher's _handlers")))
        goto fail;
    if (!(self->latency = PyObject_GetAttr(self->dispatcher, n_latency)))
        goto fail;
    if (!(self->tallies = getAttrOfType(self->latency, n_tallies, &PyDict_Type, "the latency tallies")))
        goto fail;
    if (!(self->callTally = PyObject_GetAttr(self->latency, n_calls)))
        goto fail;
    if (!Py_IS_TYPE(self->callTally, &TallyType))
        /* Python's: HandlerLatency.countCall counts. */
        Py_CLEAR(self->callTally);
    if (!(self->waiting = PyObject_GetAttr(self->protocol, n_waiting)))
        goto fail;
    if (!(self->transport = PyObject_GetAttr(self->protocol, n_transport)))
        goto fail;
    self->sample = getLong(self->latency, n_SAMPLE);
    if (self->sample <= 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "SAMPLE must be positive");
        goto fail;
    }
    self->batchLimit = getLong(self->protocol, n_batchLimit);
    if (self->batchLimit == -1 && PyErr_Occurred())
        goto fail;
    PyObject *value = PyObject_GetAttr(self->protocol, n_lengthPrefixed);
    if (value == NULL)
        goto fail;
    self->lengthPrefixed = PyObject_IsTrue(value);
    Py_DECREF(value);
    if (self->lengthPrefixed < 0)
        goto fail;
    self->messagesInAt = slotOffset(self->info, n_messagesIn);
    self->messagesOutAt = slotOffset(self->info, n_messagesOut);
    self->bytesOutAt = slotOffset(self->info, n_bytesOut);
    self->bytesInAt = slotOffset(self->info, n_bytesIn);
    self->lastActivityAt = slotOffset(self->info, n_lastActivity);
    self->counted = PyObject_TypeCheck(self->info, &CountersType);
    PyObject *clock = PyObject_GetAttr(self->protocol, n_clock);
    if (clock == NULL)
        goto fail;
    self->seconds = PyObject_GetAttr(clock, n_seconds);
    Py_DECREF(clock);
    if (self->seconds == NULL)
        goto fail;
    PyObject *limits = PyObject_GetAttr(self->protocol, n_limits);
    if (limits == NULL)
        goto fail;
    self->messageTimeout = attrIsTrue(limits, n_messageTimeout);
    Py_DECREF(limits);
    if (self->messageTimeout < 0)
        goto fail;
    self->maxLength = getLong(self->queue, n_maxLength);
    if (self->maxLength == -1 && PyErr_Occurred())
        goto fail;
    self->bufferSize = getLong(self->transport, n_bufferSize);
    if (self->bufferSize == -1 && PyErr_Occurred()) {
        /* Not a Twisted TCP transport: doRead is never installed. */
        PyErr_Clear();
        self->bufferSize = 0;
    }
    if (!(self->socket = PyObject_GetAttr(self->protocol, n_socket)))
        goto fail;
    if (self->socket == Py_None)
        Py_CLEAR(self->socket);
    self->pausedAt = slotOffset(self->protocol, n_paused);
    if (!(self->batchBytes = PyObject_GetAttr(self->protocol, n_batchBytes)))
        goto fail;
    self->errorsInRowAt = slotOffset(self->protocol, n_errorsInRow);
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

/* protocol._paused or transport.disconnecting; -1 on error. */
static int
isStopped(FastPath *st)
{
    PyObject *value = getAt(st->protocol, st->pausedAt, n_paused);
    if (value == NULL)
        return -1;
    int stopped = PyObject_IsTrue(value);
    Py_DECREF(value);
    if (stopped != 0)
        return stopped;
    value = PyObject_GetAttr(st->transport, n_disconnecting);
    if (value == NULL)
        return -1;
    stopped = PyObject_IsTrue(value);
    Py_DECREF(value);
    return stopped;
}

#define OK_PREFIX "{\"status\":\"OK\""
#define ID_KEY ",\"id\":"

/* Replies up to this long are written in one pass when they are flat. */
#define FLAT_REPLY_ROOM 512

/* Whether the JSON string at key[:size] is "status" or "id". */
static int
isReservedKey(const char *key, Py_ssize_t size)
{
    return (size == 8 && memcmp(key, "\"status\"", 8) == 0) || (size == 4 && memcmp(key, "\"id\"", 4) == 0);
}

/*
 * The framed reply for a handler's dict `result`, written without building
 * the reply dict or calling orjson: {"status":"OK", the result's members,
 * "id": the message's id}, byte for byte what encoding {"status": "OK",
 * **result, "id": id} would give.  Only for a short reply whose keys and
 * values, and id, are flat JSON (see _flatjson.c), and a result with no
 * status or id of its own; NULL, with no error set, for any other: the
 * caller then builds the reply dict.
 */
static PyObject *
spliceReply(FastPath *st, PyObject *result, PyObject *messageId)
{
    char buffer[FLAT_REPLY_ROOM];
    char *out = buffer;
    const char *end = buffer + sizeof(buffer);
    memcpy(out, OK_PREFIX, sizeof(OK_PREFIX) - 1);
    out += sizeof(OK_PREFIX) - 1;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(result, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || end - out < 1)
            return NULL;
        *out++ = ',';
        char *keyAt = out;
        if (!(out = writeFlatValue(key, out, end)) || isReservedKey(keyAt, out - keyAt) || end - out < 1)
            return NULL;
        *out++ = ':';
        if (!(out = writeFlatValue(value, out, end)))
            return NULL;
    }
    if (messageId != NULL) {
        if (end - out < (Py_ssize_t)sizeof(ID_KEY) - 1)
            return NULL;
        memcpy(out, ID_KEY, sizeof(ID_KEY) - 1);
        out += sizeof(ID_KEY) - 1;
        if (!(out = writeFlatValue(messageId, out, end)))
            return NULL;
    }
    if (end - out < 1)
        return NULL;
    *out++ = '}';
    char *body;
    PyObject *frame = newFrame(out - buffer, st->lengthPrefixed, &body);
    if (frame != NULL)
        memcpy(body, buffer, out - buffer);
    return frame;
}

/*
 * The exception being raised, cleared, as an object carrying its traceback
 * (what an except clause would bind), for a Python method to handle.
 */
static PyObject *
takeException(void)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
}

/* Whether a message's id (NULL: it has none) is one jsonproto accepts. */
static int
validId(PyObject *messageId)
{
    if (messageId == NULL)
        return 1;
    return PyUnicode_CheckExact(messageId) || PyLong_CheckExact(messageId) ||
           PyFloat_CheckExact(messageId) || messageId == Py_None;
}

/* {"status": "OK", **result, "id": messageId}, as the dispatcher builds it. */
static PyObject *
okReply(PyObject *result, PyObject *messageId)
{
    PyObject *reply = PyDict_New();
    if (reply == NULL)
        return NULL;
    if (PyDict_SetItem(reply, k_status, s_OK) < 0 || PyDict_Update(reply, result) < 0 ||
        (messageId != NULL && PyDict_SetItem(reply, k_id, messageId) < 0)) {
        Py_DECREF(reply);
        return NULL;
    }
    return reply;
}

/*
 * HandlerLatency.countCall(messageType): count the message and the call,
 * and return the call's start if it is one to time, else 0.0.  The Tally
 * of the type last counted is kept: a run of one type looks up none.
 */
static PyObject *
countCall(FastPath *st, PyObject *messageType)
{
    if (st->callTally == NULL)
        return PyObject_CallMethodOneArg(st->latency, n_countCall, messageType);
    if (messageType != st->lastType) {
        PyObject *tally = PyDict_GetItemWithError(st->tallies, messageType);
        if (tally == NULL || !Py_IS_TYPE(tally, &TallyType)) {
            /* Its first message (which makes its Tally), or an error. */
            return PyErr_Occurred() ? NULL : PyObject_CallMethodOneArg(st->latency, n_countCall, messageType);
        }
        Py_XSETREF(st->lastType, Py_NewRef(messageType));
        Py_XSETREF(st->lastTally, Py_NewRef(tally));
    }
    ((Tally *)st->lastTally)->n++;
    long long calls = ++((Tally *)st->callTally)->n;
    return calls % st->sample == 0 ? now() : Py_NewRef(zeroSeconds);
}

/*
 * Answer one committed frame.  Returns 1 to go on to the next frame, 0 to
 * stop (something may have paused or closed the connection), -1 on error.
 */
static int
answerOne(FastPath *st, PyObject *protocol, PyObject *batch, PyObject *message, PyObject *messageType, PyObject *handler)
{
    PyObject *started = NULL, *result = NULL, *reply = NULL, *payload = NULL, *frame = NULL;
    int outcome = -1;

    if (COUNT(st, messagesIn, 1) < 0)
        return -1;
    if (!(started = countCall(st, messageType)))
        return -1;
    int rc;

    PyObject *args[2] = {message, st->info};
    result = PyObject_Vectorcall(handler, args, 2, NULL);
    if (result == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            goto done;
        PyObject *value = takeException();
        PyObject *raisedArgs[5] = {st->dispatcher, value, message, messageType, started};
        reply = PyObject_VectorcallMethod(n_raised, raisedArgs, 5, NULL);
        Py_DECREF(value);
        if (reply == NULL)
            goto done;
        if (callMethod(protocol, n_reply, &reply, 1) < 0)
            goto done;
        outcome = 0;
        goto done;
    }
    if (!PyDict_CheckExact(result)) {
        PyObject *returnedArgs[5] = {st->dispatcher, result, message, messageType, started};
        reply = PyObject_VectorcallMethod(n_returned, returnedArgs, 5, NULL);
        if (reply == NULL)
            goto done;
        if (PyDict_CheckExact(reply)) {
            rc = callMethod(protocol, n_reply, &reply, 1);
        }
        else {
            PyObject *laterArgs[2] = {reply, message};
            rc = callMethod(protocol, n_replyLater, laterArgs, 2);
        }
        outcome = rc < 0 ? -1 : 0;
        goto done;
    }
    if (PyFloat_AS_DOUBLE(started) != 0.0) {
        PyObject *finished = now();
        if (finished == NULL)
            goto done;
        PyObject *elapsed = PyNumber_Subtract(finished, started);
        Py_DECREF(finished);
        if (elapsed == NULL)
            goto done;
        PyObject *observeArgs[3] = {st->latency, messageType, elapsed};
        PyObject *ignored = PyObject_VectorcallMethod(n_observe, observeArgs, 3, NULL);
        Py_DECREF(elapsed);
        if (ignored == NULL)
            goto done;
        Py_DECREF(ignored);
    }
    PyObject *messageId = PyDict_GetItemWithError(message, k_id);
    if (messageId == NULL && PyErr_Occurred())
        goto done;
    Py_ssize_t queued = PyObject_Length(st->waiting);
    if (queued < 0)
        goto done;
    if (queued) {
        /* Behind a reply still being computed. */
        if (!(reply = okReply(result, messageId)))
            goto done;
        outcome = callMethod(protocol, n_reply, &reply, 1) < 0 ? -1 : 0;
        goto done;
    }
    if (COUNT(st, messagesOut, 1) < 0)
        goto done;
    /* The common reply is written without building it. */
    frame = spliceReply(st, result, messageId);
    if (frame == NULL) {
        if (PyErr_Occurred() || !(reply = okReply(result, messageId)))
            goto done;
        if (!(payload = encode(protocol, reply)))
            goto done;
        if (!PyBytes_Check(payload)) {
            PyErr_SetString(PyExc_TypeError, "encodeReply must return bytes");
            goto done;
        }
        if (!(frame = frameMessage(payload, st->lengthPrefixed)))
            goto done;
    }
    if (PyList_Append(batch, frame) < 0)
        goto done;
    long long batchBytes;
    if (addTally(st->batchBytes, (long)PyBytes_GET_SIZE(frame), &batchBytes) < 0)
        goto done;
    if (reply == NULL) {
        /* A spliced reply's status is OK. */
        rc = 0;
    }
    else {
        PyObject *status = PyDict_GetItemWithError(reply, k_status);
        if (status == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_KeyError, "status");
            goto done;
        }
        rc = PyObject_RichCompareBool(status, s_ERROR, Py_EQ);
        if (rc < 0)
            goto done;
    }
    if (rc) {
        outcome = callMethod(protocol, n_errorReplied, &reply, 1) < 0 ? -1 : 0;
        goto done;
    }
    if (getSlot(protocol, st->errorsInRowAt) != zero && setAt(protocol, st->errorsInRowAt, n_errorsInRow, zero) < 0)
        goto done;
    if (batchBytes >= st->batchLimit) {
        outcome = callMethod(protocol, n_flushBatch, NULL, 0) < 0 ? -1 : 0;
        goto done;
    }
    outcome = 1;
done:
    Py_XDECREF(started);
    Py_XDECREF(result);
    Py_XDECREF(reply);
    Py_XDECREF(payload);
    Py_XDECREF(frame);
    return outcome;
}

/*
 * The next line of data[*pos:size] that is not blank: 1 with the line in
 * [*start, *stop) (its \n, and a \r before it, left out) and *pos just
 * past its \n; 0 when no complete line is left, *pos past the blank lines
 * skipped.  Blank is what bytes.isspace() says, or empty.
 */
static int
nextLine(const char *base, Py_ssize_t size, Py_ssize_t *pos, Py_ssize_t *start, Py_ssize_t *stop)
{
    for (;;) {
        const char *newline = memchr(base + *pos, '\n', size - *pos);
        if (newline == NULL)
            return 0;
        Py_ssize_t end = newline - base, last = end;
        if (last > *pos && base[last - 1] == '\r')
            last--;
        for (Py_ssize_t i = *pos; i < last; i++) {
            char c = base[i];
            if (!(c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f')) {
                *start = *pos;
                *stop = last;
                *pos = end + 1;
                return 1;
            }
        }
        *pos = end + 1;
    }
}

/*
 * The next length-prefixed frame of data[pos:size]: 1 with its body in
 * [*start, *stop), 0 when its length is over maxLength or it is not all
 * here (for the decoder to refuse or wait for).
 */
static int
nextPrefixed(const char *base, Py_ssize_t size, Py_ssize_t pos, Py_ssize_t maxLength, Py_ssize_t *start, Py_ssize_t *stop)
{
    if (size - pos < 4)
        return 0;
    const unsigned char *p = (const unsigned char *)base + pos;
    unsigned long length = ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) |
                           ((unsigned long)p[2] << 8) | (unsigned long)p[3];
    if (length > (unsigned long)maxLength || (Py_ssize_t)length > size - pos - 4)
        return 0;
    *start = pos + 4;
    *stop = *start + (Py_ssize_t)length;
    return 1;
}

/*
 * Answer one frame if it is the fast path's to answer.  Returns
 *   ANSWERED: answered; go on,
 *   ANSWERED_STOP: answered; stop and let the general path look,
 *   LEFT: not the fast path's, left alone,
 *   FAILED_LEFT: an error is set, the frame was left alone,
 *   FAILED: an error is set, the frame was taken (its handler may have run).
 */
enum { FAILED = -1, FAILED_LEFT = -2, ANSWERED_STOP = 0, ANSWERED = 1, LEFT = 2 };

/*
 * The message data[:size] holds, or NULL: with an error set on failure,
 * with none when it is not the fast path's (not JSON, or holding an
 * integer orjson may have read as a float; the general path says what).
 * `frame` is data as bytes, or NULL to make them if orjson needs them.
 */
static PyObject *
decodeMessage(const char *data, Py_ssize_t size, PyObject *frame, Envelope *envelope)
{
    PyObject *message = decodeFlat(data, size, envelope);
    if (message != NULL || PyErr_Occurred())
        return message;
    PyObject *made = NULL;
    if (frame == NULL && !(frame = made = PyBytes_FromStringAndSize(data, size)))
        return NULL;
    message = PyObject_Vectorcall(orjson_loads, &frame, 1, NULL);
    Py_XDECREF(made);
    if (message == NULL) {
        if (PyErr_ExceptionMatches(orjson_decode_error))
            PyErr_Clear();
        return NULL;
    }
    if (hasLongNumber(data, size))
        Py_CLEAR(message);
    else if (PyDict_CheckExact(message)) {
        if (!(envelope->type = PyDict_GetItemWithError(message, k_type)) && PyErr_Occurred())
            Py_CLEAR(message);
        else if (!(envelope->id = PyDict_GetItemWithError(message, k_id)) && PyErr_Occurred())
            Py_CLEAR(message);
    }
    return message;
}

static int
answerFrame(FastPath *st, PyObject *protocol, PyObject *batch, const char *data, Py_ssize_t size, PyObject *frame)
{
    Envelope envelope;
    PyObject *message = decodeMessage(data, size, frame, &envelope);
    if (message == NULL)
        return PyErr_Occurred() ? FAILED_LEFT : LEFT;
    int usable = 0;
    PyObject *messageType = envelope.type, *handler = NULL;
    if (PyDict_CheckExact(message) && messageType != NULL && PyUnicode_CheckExact(messageType)) {
        handler = PyDict_GetItemWithError(st->handlers, messageType);
        if (handler != NULL)
            usable = validId(envelope.id);
        else if (PyErr_Occurred())
            usable = -1;
    }
    if (usable != 1) {
        Py_DECREF(message);
        return usable < 0 ? FAILED_LEFT : LEFT;
    }
    Py_INCREF(messageType);
    Py_INCREF(handler);
    int outcome = answerOne(st, protocol, batch, message, messageType, handler);
    Py_DECREF(handler);
    Py_DECREF(messageType);
    Py_DECREF(message);
    return outcome;
}

/*
 * After answerFrame: whether the frame was taken (the caller moves past
 * it) and whether to go on to the next; sets *failed on an error.
 */
static int
goOn(int outcome, int *taken, int *failed)
{
    *taken = outcome != LEFT && outcome != FAILED_LEFT;
    *failed = outcome == FAILED || outcome == FAILED_LEFT;
    return outcome == ANSWERED;
}

/*
 * FastPath.answer(): answer the frames the decoder holds; see
 * jsonproto.core.fastpath.answerFrames.  Returns whether frames remain.
 */
static PyObject *
FastPath_answer(FastPath *st, PyObject *unused)
{
    if (st->protocol == NULL) {
        PyErr_SetString(PyExc_ValueError, "this FastPath was cleared");
        return NULL;
    }
    int same = sameDispatcher(st);
    if (same < 0)
        return NULL;
    if (!same)
        /* The general path looks at whatever remains. */
        Py_RETURN_TRUE;
    PyObject *protocol = st->protocol, *queue = st->queue;
    Py_INCREF(protocol);
    Py_INCREF(queue);
    PyObject *batch = getAttr(protocol, n_batch);
    if (batch == NULL || !PyList_Check(batch)) {
        if (batch != NULL)
            PyErr_SetString(PyExc_TypeError, "the fast path runs only while a read is handled");
        Py_XDECREF(batch);
        Py_DECREF(protocol);
        Py_DECREF(queue);
        return NULL;
    }
    PyObject *value = getAttr(queue, n_next);
    Py_ssize_t index = value ? PyLong_AsSsize_t(value) : -1;
    Py_XDECREF(value);
    if (index == -1 && PyErr_Occurred()) {
        Py_DECREF(batch);
        Py_DECREF(protocol);
        Py_DECREF(queue);
        return NULL;
    }
    PyObject *frames = st->frames;
    int failed = 0;

    while (index < PyList_GET_SIZE(frames)) {
        /* A handler closed the connection, or filled its buffer. */
        int stopped = isStopped(st);
        if (stopped) {
            failed = stopped < 0;
            break;
        }
        PyObject *frame = PyList_GET_ITEM(frames, index);
        if (!PyBytes_CheckExact(frame))
            break;
        Py_INCREF(frame);
        int outcome = answerFrame(st, protocol, batch, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), frame);
        Py_DECREF(frame);
        int taken, more = goOn(outcome, &taken, &failed);
        index += taken;
        if (!more)
            break;
    }

    /* queue._next = index, keeping any error already raised. */
    PyObject *type, *err, *traceback;
    PyErr_Fetch(&type, &err, &traceback);
    value = PyLong_FromSsize_t(index);
    int rc = value ? setAttr(queue, n_next, value) : -1;
    Py_XDECREF(value);
    int remain = index < PyList_GET_SIZE(frames);
    Py_DECREF(batch);
    Py_DECREF(protocol);
    Py_DECREF(queue);
    if (failed || rc < 0) {
        if (type != NULL) {
            PyErr_Clear();
            PyErr_Restore(type, err, traceback);
        }
        return NULL;
    }
    return PyBool_FromLong(remain);
}

/*
 * The protocol's _write(data): count the bytes, send them at once if the
 * transport has nothing queued (a plain TCP socket), hand the rest to the
 * transport.  Sending goes straight to the descriptor, as socket.send
 * would, with no exception to raise: a failed send writes through the
 * transport, which meets the error itself.
 */
/*
 * A socket descriptor not known yet: socketFd asks.  A read passes the one
 * it received from down to the write of its replies, for it cannot change
 * in between (Twisted closes a socket only after the read returns).
 */
#define UNKNOWN_FD (-2)

/* The descriptor of the FastPath's socket, -1 if it is closed; -1 with an
 * error set on failure. */
static long
socketFd(FastPath *st)
{
    PyObject *fileno = PyObject_CallMethodNoArgs(st->socket, n_fileno);
    long fd = fileno ? PyLong_AsLong(fileno) : -1;
    Py_XDECREF(fileno);
    return fd;
}

static int
writeData(FastPath *st, PyObject *data, long fd)
{
    if (COUNT(st, bytesOut, (long)PyBytes_GET_SIZE(data)) < 0)
        return -1;
    Py_INCREF(data);
    if (st->socket != NULL) {
        long queued = lengthOf(st->transport, n_dataBuffer);
        if (queued == 0)
            queued = lengthOf(st->transport, n_tempDataBuffer);
        int empty = queued == 0;
        if (queued < 0) {
            Py_DECREF(data);
            return -1;
        }
        if (empty) {
            if (fd == UNKNOWN_FD)
                fd = socketFd(st);
            if (fd == -1 && PyErr_Occurred()) {
                Py_DECREF(data);
                return -1;
            }
            Py_ssize_t total = PyBytes_GET_SIZE(data), sent = 0;
            if (fd >= 0) {
                sent = send((int)fd, PyBytes_AS_STRING(data), total, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (sent < 0)
                    sent = 0;
            }
            if (sent == total) {
                Py_DECREF(data);
                return 0;
            }
            if (sent > 0) {
                PyObject *rest = PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + sent, total - sent);
                Py_DECREF(data);
                if (rest == NULL)
                    return -1;
                data = rest;
            }
        }
    }
    PyObject *result = PyObject_CallMethodOneArg(st->transport, n_write, data);
    Py_DECREF(data);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* The protocol's _flushBatch(), for the batch `batch`; fd as for writeData. */
static int
flushBatch(FastPath *st, PyObject *batch, long fd)
{
    Py_ssize_t count = PyList_GET_SIZE(batch);
    if (count == 0)
        return 0;
    PyObject *data;
    if (count == 1 && PyBytes_CheckExact(PyList_GET_ITEM(batch, 0))) {
        data = Py_NewRef(PyList_GET_ITEM(batch, 0));
    }
    else {
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        data = empty ? _PyBytes_Join(empty, batch) : NULL;
        Py_XDECREF(empty);
        if (data == NULL)
            return -1;
    }
    if (PyList_SetSlice(batch, 0, count, NULL) < 0 || clearTally(st->batchBytes) < 0) {
        Py_DECREF(data);
        return -1;
    }
    int rc = writeData(st, data, fd);
    Py_DECREF(data);
    return rc;
}

/*
 * FastPath.read(data) -> bool: what the protocol's decoder.feed(data) and
 * _processFrames() would do, without either, for a read arriving when
 * nothing is buffered.  Returns False, having done nothing, in any other
 * case (part of a message or unanswered messages already buffered, a read
 * already being handled): the caller then goes the usual way.
 *
 * Frames (lines, or length-prefixed messages) are cut and answered
 * straight from the read.  At the first frame that is too long, or that
 * the fast path cannot answer, or that a step of its leaves for the general
 * path, or once the connection pauses or closes, the rest of the read is
 * fed to the decoder, and the general loop (_processQueued) takes over, as
 * it would have for those frames.  The batch of replies is set up and
 * flushed as _processFrames does.
 */
static int
answerRead(FastPath *st, PyObject *data, int *fed, long fd)
{
    *fed = 0;
    if (st->protocol == NULL) {
        PyErr_SetString(PyExc_ValueError, "this FastPath was cleared");
        return -1;
    }
    if (!PyBytes_CheckExact(data))
        return 0;
    int same = sameDispatcher(st);
    if (same <= 0)
        return same;
    PyObject *protocol = st->protocol, *queue = st->queue;
    int prefixed = st->lengthPrefixed;
    /* Part of a message buffered: for lines, its length; for int32, the
     * bytes themselves.  And whether the decoder is skipping (lines) or has
     * given up (int32). */
    long buffered = prefixed ? lengthOf(queue, n_partial) : getLong(queue, n_partialLength);
    if (buffered == -1 && PyErr_Occurred())
        return -1;
    long next = getLong(queue, n_next);
    if (next == -1 && PyErr_Occurred())
        return -1;
    int discarding = attrIsTrue(queue, prefixed ? n_failed : n_discarding);
    int processing = discarding < 0 ? -1 : attrIsTrue(protocol, n_processing);
    if (processing < 0)
        return -1;
    if (buffered || discarding || processing || next != PyList_GET_SIZE(st->frames))
        return 0;

    Py_INCREF(protocol);
    Py_INCREF(queue);
    Py_INCREF(data);
    PyObject *batch = PyList_New(0);
    int failed = 0;
    if (batch == NULL) {
        failed = 1;
        goto out;
    }
    if (setAttr(protocol, n_processing, Py_True) < 0 || setAttr(protocol, n_batch, batch) < 0) {
        failed = 1;
        goto finish;
    }

    const char *base = PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data), pos = 0;
    Py_ssize_t maxLength = st->maxLength;
    while (pos < size) {
        int stopped = isStopped(st);
        if (stopped) {
            failed = stopped < 0;
            break;
        }
        Py_ssize_t start, stop, after = pos;
        if (prefixed) {
            if (!nextPrefixed(base, size, pos, maxLength, &start, &stop))
                break;
            after = stop;
        }
        else {
            int found = nextLine(base, size, &after, &start, &stop);
            if (!found)
                pos = after; /* past the blank lines */
            /* Too long: the decoder says so, in its place. */
            if (!found || stop - start > maxLength)
                break;
        }
        int outcome = answerFrame(st, protocol, batch, base + start, stop - start, NULL);
        int taken, more = goOn(outcome, &taken, &failed);
        if (taken)
            pos = after;
        if (!more)
            break;
    }
    if (!failed && pos < size) {
        /* The rest goes the usual way. */
        *fed = 1;
        PyObject *rest = PyBytes_FromStringAndSize(base + pos, size - pos);
        PyObject *result = rest ? PyObject_CallMethodOneArg(queue, n_feed, rest) : NULL;
        Py_XDECREF(rest);
        if (result != NULL) {
            Py_DECREF(result);
            result = PyObject_CallMethodNoArgs(protocol, n_processQueued);
        }
        if (result == NULL)
            failed = 1;
        Py_XDECREF(result);
    }

finish:;
    /* As _processFrames's finally: whatever happened, flush. */
    PyObject *type, *err, *traceback;
    PyErr_Fetch(&type, &err, &traceback);
    int rc = setAttr(protocol, n_processing, Py_False);
    if (rc == 0)
        rc = flushBatch(st, batch, fd);
    if (rc == 0)
        rc = setAttr(protocol, n_batch, Py_None);
    if (type != NULL) {
        PyErr_Clear();
        PyErr_Restore(type, err, traceback);
    }
    if (rc < 0)
        failed = 1;
out:
    Py_XDECREF(batch);
    Py_DECREF(data);
    Py_DECREF(queue);
    Py_DECREF(protocol);
    return failed ? -1 : 1;
}

static PyObject *
FastPath_read(FastPath *st, PyObject *data)
{
    int fed;
    int handled = answerRead(st, data, &fed, UNKNOWN_FD);
    if (handled < 0)
        return NULL;
    return PyBool_FromLong(handled);
}

/* Read into this, then copy what arrived: a read is mostly far shorter. */
static char readBuffer[65536];

/*
 * The protocol's dataReceived(data), for a connection in the common state:
 * open, past its first read, not behind a PROXY header, not draining, not
 * logging messages.  Returns 0, having done nothing, in any other state.
 */
static int
fastDataReceived(FastPath *st, PyObject *data, long fd)
{
    PyObject *protocol = st->protocol;
    if (st->lastActivityAt < 0)
        return 0;
    /* The protocol's info is set once, before the fast path is bound. */
    PyObject *info = st->info;
    /* Closing, behind a PROXY header not yet read, draining, logging. */
    PyObject *const unusual[][2] = {
        {st->transport, n_disconnecting},
        {protocol, n_proxied},
        {protocol, n_drainStage},
        {st->factory, n_logMessages},
    };
    for (size_t i = 0; i < sizeof(unusual) / sizeof(unusual[0]); i++) {
        int set = attrIsTrue(unusual[i][0], unusual[i][1]);
        if (set)
            return set < 0 ? -1 : 0;
    }
    long long bytesIn = READ_COUNT(st, bytesIn);
    if (bytesIn == -1 && PyErr_Occurred())
        return -1;
    if (bytesIn == 0)
        /* The first read, which may be a TLS ClientHello. */
        return 0;

    if (COUNT(st, bytesIn, (long)PyBytes_GET_SIZE(data)) < 0)
        return -1;
    long long before = READ_COUNT(st, messagesIn);
    if (before == -1 && PyErr_Occurred())
        return -1;
    int fed;
    int handled = answerRead(st, data, &fed, fd);
    if (handled < 0)
        return -1;
    if (handled == 0) {
        fed = 1;
        PyObject *result = PyObject_CallMethodOneArg(st->queue, n_feed, data);
        if (result != NULL) {
            Py_DECREF(result);
            result = PyObject_CallMethodNoArgs(protocol, n_processFrames);
        }
        if (result == NULL)
            return -1;
        Py_DECREF(result);
    }
    long long after = READ_COUNT(st, messagesIn);
    if (after == -1 && PyErr_Occurred())
        return -1;
    int completed = after != before;
    if (completed) {
        /* Activity, for the idle timer. */
        PyObject *now = PyObject_CallNoArgs(st->seconds);
        if (now == NULL)
            return -1;
        PyObject **slot = (PyObject **)((char *)info + st->lastActivityAt);
        PyObject *old = *slot;
        *slot = now;
        Py_XDECREF(old);
    }
    /* Only what was fed to the decoder can leave part of a message in it. */
    int mid = st->messageTimeout && fed ? attrIsTrue(st->queue, n_midMessage) : 0;
    if (mid < 0)
        return -1;
    if (mid) {
        PyObject *flag = PyBool_FromLong(completed);
        PyObject *result = PyObject_CallMethodOneArg(protocol, n_partialMessage, flag);
        Py_DECREF(flag);
        if (result == NULL)
            return -1;
        Py_DECREF(result);
    }
    else {
        PyObject *since = getAttr(protocol, n_partialSince);
        if (since == NULL)
            return -1;
        Py_DECREF(since);
        if (since != Py_None && setAttr(protocol, n_partialSince, Py_None) < 0)
            return -1;
    }
    return 1;
}

/*
 * Calling a FastPath (readFrom its socket, whose descriptor is fd or
 * UNKNOWN_FD): Twisted's tcp.Connection.doRead and _dataReceived
 * for this connection, installed in their place on plain TCP connections
 * (the FastPath object itself is the transport's doRead).  Receives as
 * socket.recv(bufferSize) would, returns
 * what they would (None, or CONNECTION_DONE / CONNECTION_LOST for the
 * reactor to close with), and answers the read with fastDataReceived, or
 * with the protocol's own dataReceived when the connection is in any
 * other state.
 */
static PyObject *
readFrom(FastPath *st, long fd)
{
    if (st->protocol == NULL || st->socket == NULL || st->bufferSize <= 0) {
        PyErr_SetString(PyExc_ValueError, "this FastPath cannot read");
        return NULL;
    }
    if (fd == UNKNOWN_FD)
        fd = socketFd(st);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0)
        return Py_NewRef(connectionLost);
    Py_ssize_t want = st->bufferSize < (Py_ssize_t)sizeof(readBuffer) ? st->bufferSize : (Py_ssize_t)sizeof(readBuffer);
    Py_ssize_t got;
    for (;;) {
        got = recv((int)fd, readBuffer, want, MSG_DONTWAIT);
        if (got >= 0 || errno != EINTR)
            break;
        if (PyErr_CheckSignals() < 0)
            return NULL;
    }
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            Py_RETURN_NONE;
        return Py_NewRef(connectionLost);
    }
    if (got == 0)
        return Py_NewRef(connectionDone);
    PyObject *data = PyBytes_FromStringAndSize(readBuffer, got);
    if (data == NULL)
        return NULL;
    PyObject *protocol = Py_NewRef(st->protocol);
    int rc = fastDataReceived(st, data, fd);
    PyObject *result;
    if (rc < 0)
        result = NULL;
    else if (rc > 0)
        result = Py_NewRef(Py_None);
    else
        result = PyObject_CallMethodOneArg(protocol, n_dataReceived, data);
    Py_DECREF(protocol);
    Py_DECREF(data);
    return result;
}

/*
 * FastPath(): the transport's doRead.  The object itself, not a bound
 * method, is put in the transport's place: one object less per connection.
 */
static PyObject *
FastPath_call(FastPath *st, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "a FastPath, as doRead, takes no arguments");
        return NULL;
    }
    return readFrom(st, UNKNOWN_FD);
}

static PyMethodDef FastPath_methods[] = {
    {"answer", (PyCFunction)FastPath_answer, METH_NOARGS,
     "answer() -> bool: answer the frames the decoder holds; whether any remain."},
    {"read", (PyCFunction)FastPath_read, METH_O,
     "read(data) -> bool: feed and answer one read, when it is the simple case."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FastPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "jsonproto.core._speedups.FastPath",
    .tp_basicsize = sizeof(FastPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One connection's fast path (see jsonproto.core.fastpath.FastPath); calling it is doRead.",
    .tp_call = (ternaryfunc)FastPath_call,
    .tp_methods = FastPath_methods,
    .tp_traverse = (traverseproc)FastPath_traverse,
    .tp_clear = (inquiry)FastPath_clear,
    .tp_dealloc = (destructor)FastPath_dealloc,
};

/*
 * cutLines(frames, data, start, maxLength, tooLong) -> int: see
 * jsonproto.wire.framing.cutLines, which this mirrors.
 */
static PyObject *
cutLines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyList_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "cutLines(frames: list, data: bytes, start: int, maxLength: int, tooLong)");
        return NULL;
    }
    PyObject *frames = args[0], *data = args[1], *tooLong = args[4];
    Py_ssize_t start = PyLong_AsSsize_t(args[2]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t maxLength = PyLong_AsSsize_t(args[3]);
    if (maxLength == -1 && PyErr_Occurred())
        return NULL;
    const char *base = PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (start < 0 || start > size) {
        PyErr_SetString(PyExc_ValueError, "start is outside data");
        return NULL;
    }
    Py_ssize_t pos = start, first, stop;
    while (nextLine(base, size, &pos, &first, &stop)) {
        int rc;
        if (stop - first > maxLength) {
            rc = PyList_Append(frames, tooLong);
        }
        else {
            PyObject *line = PyBytes_FromStringAndSize(base + first, stop - first);
            if (line == NULL)
                return NULL;
            rc = PyList_Append(frames, line);
            Py_DECREF(line);
        }
        if (rc < 0)
            return NULL;
    }
    return PyLong_FromSsize_t(pos);
}

/*
 * dispatchEvents(events, selectables, doReadOrWrite, disconnectSelectable,
 * readFailed, noFileDescriptor): jsonproto.daemon.epoll.EPollReactor.doPoll's
 * loop over what epoll returned.  A descriptor that is readable and nothing
 * else is read here: doRead(), unless its fileno() is -1 (the reason is then
 * noFileDescriptor); a true result is the reason to
 * disconnectSelectable(selectable, reason, True); an exception goes to
 * readFailed(selectable, error).  Any other event goes to
 * doReadOrWrite(selectable, fd, event).
 */
static PyObject *
dispatchEvents(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyList_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "dispatchEvents(events: list, selectables: dict, doReadOrWrite, "
                                         "disconnectSelectable, readFailed, noFileDescriptor)");
        return NULL;
    }
    PyObject *events = args[0], *selectables = args[1], *doReadOrWrite = args[2];
    PyObject *disconnectSelectable = args[3], *readFailed = args[4], *noFileDescriptor = args[5];
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(events); i++) {
        PyObject *item = PyList_GET_ITEM(events, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "an event is a (fd, mask) pair");
            return NULL;
        }
        PyObject *fd = PyTuple_GET_ITEM(item, 0), *mask = PyTuple_GET_ITEM(item, 1);
        PyObject *selectable = PyDict_GetItemWithError(selectables, fd);
        if (selectable == NULL) {
            if (PyErr_Occurred())
                return NULL;
            continue;
        }
        Py_INCREF(selectable);
        long event = PyLong_AsLong(mask);
        if (event == -1 && PyErr_Occurred()) {
            Py_DECREF(selectable);
            return NULL;
        }
        PyObject *result;
        if (event != EPOLLIN) {
            PyObject *callArgs[3] = {selectable, fd, mask};
            result = PyObject_Vectorcall(doReadOrWrite, callArgs, 3, NULL);
            Py_DECREF(selectable);
            if (result == NULL)
                return NULL;
            Py_DECREF(result);
            continue;
        }
        /* Readable and nothing else: _doReadOrWrite's read branch. */
        PyObject *why = PyObject_CallMethodNoArgs(selectable, n_fileno);
        if (why != NULL) {
            long number = PyLong_AsLong(why);
            Py_DECREF(why);
            if (number == -1 && PyErr_Occurred())
                why = NULL;
            else if (number == -1)
                why = Py_NewRef(noFileDescriptor);
            else if ((why = PyObject_GetAttr(selectable, n_doRead)) != NULL) {
                PyObject *doRead = why;
                /* Our own doRead is told the descriptor just asked for. */
                why = Py_IS_TYPE(doRead, &FastPathType) ? readFrom((FastPath *)doRead, number)
                                                        : PyObject_CallNoArgs(doRead);
                Py_DECREF(doRead);
            }
        }
        if (why == NULL) {
            PyObject *value = takeException();
            PyObject *failedArgs[2] = {selectable, value};
            result = PyObject_Vectorcall(readFailed, failedArgs, 2, NULL);
            Py_DECREF(value);
        }
        else {
            int disconnect = PyObject_IsTrue(why);
            if (disconnect < 0) {
                result = NULL;
            }
            else if (disconnect) {
                PyObject *disconnectArgs[3] = {selectable, why, Py_True};
                result = PyObject_Vectorcall(disconnectSelectable, disconnectArgs, 3, NULL);
            }
            else {
                result = Py_NewRef(Py_None);
            }
            Py_DECREF(why);
        }
        Py_DECREF(selectable);
        if (result == NULL)
            return NULL;
        Py_DECREF(result);
    }
    Py_RETURN_NONE;
}

/*
 * decodeFlat(data) -> (dict, type, id) | None: see _flatjson.c; for the
 * tests.  type and id are None when absent.
 */
static PyObject *
decodeFlatBytes(PyObject *module, PyObject *data)
{
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "decodeFlat(data: bytes)");
        return NULL;
    }
    Envelope envelope;
    PyObject *message = decodeFlat(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), &envelope);
    if (message == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    PyObject *result = Py_BuildValue("(NOO)", message, envelope.type ? envelope.type : Py_None,
                                     envelope.id ? envelope.id : Py_None);
    return result;
}

/* encodeFlat(value) -> bytes | None: see _flatjson.c; for the tests. */
static PyObject *
encodeFlatValue(PyObject *module, PyObject *value)
{
    char buffer[FLAT_REPLY_ROOM];
    char *end = writeFlatValue(value, buffer, buffer + sizeof(buffer));
    if (end == NULL)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(buffer, end - buffer);
}

static PyMethodDef methods[] = {
    {"decodeFlat", (PyCFunction)decodeFlatBytes, METH_O,
     "decodeFlat(data) -> (dict, type, id) | None: the object and its envelope, when data is flat JSON."},
    {"encodeFlat", (PyCFunction)encodeFlatValue, METH_O,
     "encodeFlat(value) -> bytes | None: the JSON for a value flat JSON can carry."},
    {"cutLines", (PyCFunction)(void (*)(void))cutLines, METH_FASTCALL,
     "cutLines(frames, data, start, maxLength, tooLong) -> int: see jsonproto.wire.framing.cutLines."},
    {"dispatchEvents", (PyCFunction)(void (*)(void))dispatchEvents, METH_FASTCALL,
     "dispatchEvents(events, selectables, doReadOrWrite, disconnectSelectable, readFailed, noFileDescriptor): see jsonproto.daemon.epoll."},
    {"bind", (PyCFunction)(void (*)(void))bindFastPath, METH_FASTCALL,
     "bind(protocol, queue) -> FastPath: see jsonproto.core.fastpath.bind."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "jsonproto.core._speedups",
    "jsonproto.core.fastpath.answerFrames in C.", -1, methods,
};

static int
intern(PyObject **slot, const char *text)
{
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

static PyObject *
attribute(const char *moduleName, const char *name)
{
    PyObject *module = PyImport_ImportModule(moduleName);
    if (module == NULL)
        return NULL;
    PyObject *value = PyObject_GetAttrString(module, name);
    Py_DECREF(module);
    return value;
}

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (!(orjson_loads = attribute("orjson", "loads")) ||
        !(orjson_dumps = attribute("orjson", "dumps")) ||
        !(orjson_decode_error = attribute("orjson", "JSONDecodeError")) ||
        !(codec_all_finite = attribute("jsonproto.wire.codec", "allFinite")) ||
        !(perf_counter = attribute("time", "perf_counter")) ||
        !(connectionDone = attribute("twisted.internet.main", "CONNECTION_DONE")) ||
        !(connectionLost = attribute("twisted.internet.main", "CONNECTION_LOST")))
        return NULL;
    PyObject *limit = attribute("jsonproto.wire.codec", "NULL_SCAN_LIMIT");
    if (limit == NULL)
        return NULL;
    nullScanLimit = PyLong_AsSsize_t(limit);
    Py_DECREF(limit);
    if (nullScanLimit == -1 && PyErr_Occurred())
        return NULL;
    if (!(zero = PyLong_FromLong(0)) || !(zeroSeconds = PyFloat_FromDouble(0.0)))
        return NULL;
#define INTERN_NAME(variable, text) \
    if (intern(&variable, text) < 0)    \
        return NULL;
    NAMES(INTERN_NAME)
    if (PyType_Ready(&FastPathType) < 0)
        return NULL;
    if (PyDict_SetItemString(FastPathType.tp_dict, "readsSocket", Py_True) < 0)
        return NULL;
    PyType_Modified(&FastPathType);
    if (PyType_Ready(&CountersType) < 0)
        return NULL;
    if (PyType_Ready(&TallyType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&moduledef);
    if (module != NULL && (PyModule_AddType(module, &CountersType) < 0 || PyModule_AddType(module, &TallyType) < 0))
        Py_CLEAR(module);
    return module;
}
