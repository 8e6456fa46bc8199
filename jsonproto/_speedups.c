/*
 * jsonproto._speedups: jsonproto.fastpath.answerFrames in C.
 *
 * This is a translation of the Python function in jsonproto/fastpath.py,
 * step for step, and that function is its specification: read it first.
 * The tests run both on the same inputs and compare every byte and counter.
 *
 * What C saves is the interpreter's work between the calls that do the real
 * work (orjson's loads and dumps, the handler): attribute loads, temporary
 * ints, the loop itself.  Everything rare is handed back to the same Python
 * methods the Python version calls.
 */

#define _GNU_SOURCE /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *orjson_loads, *orjson_dumps, *orjson_decode_error;
static PyObject *codec_all_finite;
static PyObject *perf_counter;
static PyObject *one, *zero;
static PyObject *s_OK, *s_ERROR;

/* Attribute and key names, interned once. */
static PyObject *n_frames, *n_next, *n_info, *n_factory, *n_dispatcher,
    *n_handlers, *n_latency, *n_counts, *n_SAMPLE, *n_batch, *n_waiting,
    *n_lengthPrefixed, *n_messagesIn, *n_messagesOut, *n_calls, *n_reply,
    *n_raised, *n_returned, *n_replyLater, *n_observe, *n_encodeReply,
    *n_batchBytes, *n_batchLimit, *n_errorReplied, *n_errorsInRow,
    *n_flushBatch, *n_paused, *n_transport, *n_disconnecting, *k_type, *k_id, *k_status;

#define NULL_SCAN_LIMIT 4096

/* obj.name += 1 */
static int
increment(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL)
        return -1;
    PyObject *bigger = PyNumber_Add(value, one);
    Py_DECREF(value);
    if (bigger == NULL)
        return -1;
    int rc = PyObject_SetAttr(obj, name, bigger);
    Py_DECREF(bigger);
    return rc;
}

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

/* Whether a run of 20 digits appears: an integer orjson may read as a float. */
static int
hasLongNumber(const char *data, Py_ssize_t size)
{
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        if (data[i] >= '0' && data[i] <= '9') {
            if (++run >= 20)
                return 1;
        }
        else {
            run = 0;
        }
    }
    return 0;
}

static PyObject *
now(void)
{
    return PyObject_CallNoArgs(perf_counter);
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
    int suspect;
    Py_ssize_t size = PyBytes_GET_SIZE(payload);
    if (size <= NULL_SCAN_LIMIT) {
        suspect = memmem(PyBytes_AS_STRING(payload), size, "null", 4) != NULL;
    }
    else {
        PyObject *finite = PyObject_Vectorcall(codec_all_finite, &reply, 1, NULL);
        if (finite == NULL) {
            Py_DECREF(payload);
            return NULL;
        }
        suspect = !PyObject_IsTrue(finite);
        Py_DECREF(finite);
    }
    if (suspect) {
        Py_DECREF(payload);
        return PyObject_CallMethodOneArg(protocol, n_encodeReply, reply);
    }
    return payload;
}

/* The framed message: a newline after, or a 4-byte big-endian length before. */
static PyObject *
frameMessage(PyObject *payload, int lengthPrefixed)
{
    Py_ssize_t size = PyBytes_GET_SIZE(payload);
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
        memcpy(out + 4, PyBytes_AS_STRING(payload), size);
    }
    else {
        memcpy(out, PyBytes_AS_STRING(payload), size);
        out[size] = '\n';
    }
    return frame;
}

/* What the loop's state holds, gathered once per call. */
typedef struct {
    PyObject *frames, *info, *dispatcher, *handlers, *latency, *counts,
        *batch, *waiting, *transport;
    long sample;
    int lengthPrefixed;
    long batchLimit;
} State;

static void
clearState(State *st)
{
    Py_CLEAR(st->frames);
    Py_CLEAR(st->info);
    Py_CLEAR(st->dispatcher);
    Py_CLEAR(st->handlers);
    Py_CLEAR(st->latency);
    Py_CLEAR(st->counts);
    Py_CLEAR(st->batch);
    Py_CLEAR(st->waiting);
    Py_CLEAR(st->transport);
}

static int
loadState(State *st, PyObject *protocol, PyObject *queue)
{
    PyObject *factory = NULL, *value = NULL;
    memset(st, 0, sizeof(*st));
    if (!(st->frames = PyObject_GetAttr(queue, n_frames)))
        goto fail;
    if (!PyList_CheckExact(st->frames)) {
        PyErr_SetString(PyExc_TypeError, "the decoder's _frames must be a list");
        goto fail;
    }
    if (!(st->info = PyObject_GetAttr(protocol, n_info)))
        goto fail;
    if (!(factory = PyObject_GetAttr(protocol, n_factory)))
        goto fail;
    if (!(st->dispatcher = PyObject_GetAttr(factory, n_dispatcher)))
        goto fail;
    if (!(st->handlers = PyObject_GetAttr(st->dispatcher, n_handlers)))
        goto fail;
    if (!PyDict_Check(st->handlers)) {
        PyErr_SetString(PyExc_TypeError, "the dispatcher's _handlers must be a dict");
        goto fail;
    }
    if (!(st->latency = PyObject_GetAttr(st->dispatcher, n_latency)))
        goto fail;
    if (!(st->counts = PyObject_GetAttr(st->latency, n_counts)))
        goto fail;
    if (!PyDict_Check(st->counts)) {
        PyErr_SetString(PyExc_TypeError, "the latency counts must be a dict");
        goto fail;
    }
    if (!(value = PyObject_GetAttr(st->latency, n_SAMPLE)))
        goto fail;
    st->sample = PyLong_AsLong(value);
    Py_CLEAR(value);
    if (st->sample <= 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "SAMPLE must be positive");
        goto fail;
    }
    if (!(st->batch = PyObject_GetAttr(protocol, n_batch)))
        goto fail;
    if (!PyList_Check(st->batch)) {
        PyErr_SetString(PyExc_TypeError, "answerFrames runs only while a read is handled");
        goto fail;
    }
    if (!(st->waiting = PyObject_GetAttr(protocol, n_waiting)))
        goto fail;
    if (!(st->transport = PyObject_GetAttr(protocol, n_transport)))
        goto fail;
    if (!(value = PyObject_GetAttr(protocol, n_lengthPrefixed)))
        goto fail;
    st->lengthPrefixed = PyObject_IsTrue(value);
    Py_CLEAR(value);
    if (st->lengthPrefixed < 0)
        goto fail;
    if (!(value = PyObject_GetAttr(protocol, n_batchLimit)))
        goto fail;
    st->batchLimit = PyLong_AsLong(value);
    Py_CLEAR(value);
    if (st->batchLimit == -1 && PyErr_Occurred())
        goto fail;
    Py_DECREF(factory);
    return 0;
fail:
    Py_XDECREF(factory);
    clearState(st);
    return -1;
}

/* protocol._paused or transport.disconnecting; -1 on error. */
static int
isStopped(PyObject *protocol, PyObject *transport)
{
    PyObject *value = PyObject_GetAttr(protocol, n_paused);
    if (value == NULL)
        return -1;
    int stopped = PyObject_IsTrue(value);
    Py_DECREF(value);
    if (stopped != 0)
        return stopped;
    value = PyObject_GetAttr(transport, n_disconnecting);
    if (value == NULL)
        return -1;
    stopped = PyObject_IsTrue(value);
    Py_DECREF(value);
    return stopped;
}

/* Whether a message's id is absent or one jsonproto accepts. */
static int
validId(PyObject *message)
{
    PyObject *messageId = PyDict_GetItemWithError(message, k_id);
    if (messageId == NULL)
        return PyErr_Occurred() ? -1 : 1;
    return PyUnicode_CheckExact(messageId) || PyLong_CheckExact(messageId) ||
           PyFloat_CheckExact(messageId) || messageId == Py_None;
}

/* protocol._batchBytes += size */
static int
addBatchBytes(PyObject *protocol, Py_ssize_t size, long *total)
{
    PyObject *value = PyObject_GetAttr(protocol, n_batchBytes);
    if (value == NULL)
        return -1;
    long before = PyLong_AsLong(value);
    Py_DECREF(value);
    if (before == -1 && PyErr_Occurred())
        return -1;
    *total = before + (long)size;
    value = PyLong_FromLong(*total);
    if (value == NULL)
        return -1;
    int rc = PyObject_SetAttr(protocol, n_batchBytes, value);
    Py_DECREF(value);
    return rc;
}

/*
 * Answer one committed frame.  Returns 1 to go on to the next frame, 0 to
 * stop (something may have paused or closed the connection), -1 on error.
 */
static int
answerOne(State *st, PyObject *protocol, PyObject *message, PyObject *messageType, PyObject *handler)
{
    PyObject *started = NULL, *result = NULL, *reply = NULL, *payload = NULL, *frame = NULL;
    int outcome = -1;

    if (increment(st->info, n_messagesIn) < 0)
        return -1;
    PyObject *seen = PyDict_GetItemWithError(st->counts, messageType);
    if (seen == NULL && PyErr_Occurred())
        return -1;
    PyObject *counted = seen ? PyNumber_Add(seen, one) : (Py_INCREF(one), one);
    if (counted == NULL)
        return -1;
    int rc = PyDict_SetItem(st->counts, messageType, counted);
    Py_DECREF(counted);
    if (rc < 0)
        return -1;
    PyObject *calls = PyObject_GetAttr(st->latency, n_calls);
    if (calls == NULL)
        return -1;
    long callCount = PyLong_AsLong(calls);
    Py_DECREF(calls);
    if (callCount == -1 && PyErr_Occurred())
        return -1;
    callCount += 1;
    calls = PyLong_FromLong(callCount);
    if (calls == NULL)
        return -1;
    rc = PyObject_SetAttr(st->latency, n_calls, calls);
    Py_DECREF(calls);
    if (rc < 0)
        return -1;
    if (callCount % st->sample == 0) {
        if (!(started = now()))
            return -1;
    }
    else {
        started = PyFloat_FromDouble(0.0);
        if (started == NULL)
            return -1;
    }

    PyObject *args[2] = {message, st->info};
    result = PyObject_Vectorcall(handler, args, 2, NULL);
    if (result == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            goto done;
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_NormalizeException(&type, &value, &traceback);
        if (traceback != NULL)
            PyException_SetTraceback(value, traceback);
        Py_XDECREF(type);
        Py_XDECREF(traceback);
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
    if (!(reply = PyDict_New()))
        goto done;
    if (PyDict_SetItem(reply, k_status, s_OK) < 0 || PyDict_Update(reply, result) < 0)
        goto done;
    PyObject *messageId = PyDict_GetItemWithError(message, k_id);
    if (messageId == NULL && PyErr_Occurred())
        goto done;
    if (messageId != NULL && PyDict_SetItem(reply, k_id, messageId) < 0)
        goto done;
    Py_ssize_t queued = PyObject_Length(st->waiting);
    if (queued < 0)
        goto done;
    if (queued) {
        /* Behind a reply still being computed. */
        outcome = callMethod(protocol, n_reply, &reply, 1) < 0 ? -1 : 0;
        goto done;
    }

    if (increment(st->info, n_messagesOut) < 0)
        goto done;
    if (!(payload = encode(protocol, reply)))
        goto done;
    if (!PyBytes_Check(payload)) {
        PyErr_SetString(PyExc_TypeError, "encodeReply must return bytes");
        goto done;
    }
    if (!(frame = frameMessage(payload, st->lengthPrefixed)))
        goto done;
    if (PyList_Append(st->batch, frame) < 0)
        goto done;
    long batchBytes;
    if (addBatchBytes(protocol, PyBytes_GET_SIZE(frame), &batchBytes) < 0)
        goto done;
    PyObject *status = PyDict_GetItemWithError(reply, k_status);
    if (status == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_KeyError, "status");
        goto done;
    }
    rc = PyObject_RichCompareBool(status, s_ERROR, Py_EQ);
    if (rc < 0)
        goto done;
    if (rc) {
        outcome = callMethod(protocol, n_errorReplied, &reply, 1) < 0 ? -1 : 0;
        goto done;
    }
    if (PyObject_SetAttr(protocol, n_errorsInRow, zero) < 0)
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

static PyObject *
answerFrames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "answerFrames(protocol, queue)");
        return NULL;
    }
    PyObject *protocol = args[0], *queue = args[1];
    State st;
    if (loadState(&st, protocol, queue) < 0)
        return NULL;
    PyObject *value = PyObject_GetAttr(queue, n_next);
    if (value == NULL) {
        clearState(&st);
        return NULL;
    }
    Py_ssize_t index = PyLong_AsSsize_t(value), start;
    Py_DECREF(value);
    if (index == -1 && PyErr_Occurred()) {
        clearState(&st);
        return NULL;
    }
    start = index;
    int failed = 0;

    while (index < PyList_GET_SIZE(st.frames)) {
        /* A handler closed the connection, or filled its buffer. */
        int stopped = isStopped(protocol, st.transport);
        if (stopped) {
            failed = stopped < 0;
            break;
        }
        PyObject *frame = PyList_GET_ITEM(st.frames, index);
        if (!PyBytes_CheckExact(frame))
            break;
        Py_INCREF(frame);
        PyObject *message = PyObject_Vectorcall(orjson_loads, &frame, 1, NULL);
        if (message == NULL) {
            Py_DECREF(frame);
            if (PyErr_ExceptionMatches(orjson_decode_error)) {
                PyErr_Clear();
                break;
            }
            failed = 1;
            break;
        }
        int usable = 0;
        PyObject *messageType = NULL, *handler = NULL;
        if (PyDict_CheckExact(message)) {
            messageType = PyDict_GetItemWithError(message, k_type);
            if (messageType != NULL && PyUnicode_CheckExact(messageType)) {
                handler = PyDict_GetItemWithError(st.handlers, messageType);
                if (handler != NULL) {
                    usable = validId(message);
                    if (usable == 1 && hasLongNumber(PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame)))
                        usable = 0;
                }
            }
            if (PyErr_Occurred())
                usable = -1;
        }
        Py_DECREF(frame);
        if (usable != 1) {
            Py_DECREF(message);
            failed = usable < 0;
            break;
        }
        /* From here on the frame is this loop's to answer. */
        index += 1;
        Py_INCREF(messageType);
        Py_INCREF(handler);
        int outcome = answerOne(&st, protocol, message, messageType, handler);
        Py_DECREF(handler);
        Py_DECREF(messageType);
        Py_DECREF(message);
        if (outcome <= 0) {
            failed = outcome < 0;
            break;
        }
    }

    clearState(&st);
    /* queue._next = index, keeping any error already raised. */
    PyObject *type, *err, *traceback;
    PyErr_Fetch(&type, &err, &traceback);
    value = PyLong_FromSsize_t(index);
    int rc = value ? PyObject_SetAttr(queue, n_next, value) : -1;
    Py_XDECREF(value);
    if (failed || rc < 0) {
        if (type != NULL) {
            PyErr_Clear();
            PyErr_Restore(type, err, traceback);
        }
        return NULL;
    }
    return PyBool_FromLong(index > start);
}

static PyMethodDef methods[] = {
    {"answerFrames", (PyCFunction)(void (*)(void))answerFrames, METH_FASTCALL,
     "answerFrames(protocol, queue) -> bool: see jsonproto.fastpath.answerFrames."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "jsonproto._speedups",
    "jsonproto.fastpath.answerFrames in C.", -1, methods,
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
        !(codec_all_finite = attribute("jsonproto.codec", "allFinite")) ||
        !(perf_counter = attribute("time", "perf_counter")))
        return NULL;
    if (!(one = PyLong_FromLong(1)) || !(zero = PyLong_FromLong(0)))
        return NULL;
    if (intern(&s_OK, "OK") || intern(&s_ERROR, "ERROR") || intern(&n_frames, "_frames") ||
        intern(&n_next, "_next") || intern(&n_info, "info") || intern(&n_factory, "factory") ||
        intern(&n_dispatcher, "dispatcher") || intern(&n_handlers, "_handlers") ||
        intern(&n_latency, "latency") || intern(&n_counts, "counts") || intern(&n_SAMPLE, "SAMPLE") ||
        intern(&n_batch, "_batch") || intern(&n_waiting, "_waiting") ||
        intern(&n_lengthPrefixed, "lengthPrefixed") || intern(&n_messagesIn, "messagesIn") ||
        intern(&n_messagesOut, "messagesOut") || intern(&n_calls, "calls") || intern(&n_reply, "_reply") ||
        intern(&n_raised, "raised") || intern(&n_returned, "returned") ||
        intern(&n_replyLater, "replyLater") || intern(&n_observe, "observe") ||
        intern(&n_encodeReply, "encodeReply") || intern(&n_batchBytes, "_batchBytes") ||
        intern(&n_batchLimit, "batchLimit") || intern(&n_errorReplied, "errorReplied") ||
        intern(&n_errorsInRow, "_errorsInRow") || intern(&n_flushBatch, "_flushBatch") ||
        intern(&n_paused, "_paused") || intern(&n_transport, "transport") ||
        intern(&n_disconnecting, "disconnecting") ||
        intern(&k_type, "type") || intern(&k_id, "id") || intern(&k_status, "status"))
        return NULL;
    return PyModule_Create(&moduledef);
}
