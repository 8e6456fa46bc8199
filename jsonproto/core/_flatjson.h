/*
 * Flat JSON: the messages and replies most services exchange, one object
 * of short ASCII strings, integers, booleans and nulls, read and written
 * without orjson's general machinery.  See _flatjson.c.
 */

#ifndef JSONPROTO_FLATJSON_H
#define JSONPROTO_FLATJSON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/*
 * The two members of a message jsonproto reads before its handler runs,
 * found while reading it: borrowed from the dict decodeFlat returns, NULL
 * when absent.
 */
typedef struct {
    PyObject *type;
    PyObject *id;
} Envelope;

/*
 * The object data[:size] holds, as a new dict, when it is flat JSON, with
 * *envelope filled in; NULL with no error set when it is anything else
 * (orjson then decides), NULL with an error set on failure (no memory).
 */
PyObject *decodeFlat(const char *data, Py_ssize_t size, Envelope *envelope);

/*
 * Write the JSON for `value`, a str, int, bool or None that flat JSON can
 * carry, at out (no further than end); returns the position after it, or
 * NULL, with no error set, for any other value or when it does not fit.
 */
char *writeFlatValue(PyObject *value, char *out, const char *end);

#endif
