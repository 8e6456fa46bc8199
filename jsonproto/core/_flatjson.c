/*
 * Flat JSON, read and written in one pass.
 *
 * Most messages a service gets are short, one object of a few members:
 * {"type":"SUM","a":10,"b":20}.  orjson reads them correctly, but for such a
 * message most of its cost is its generality: its call, its document tree,
 * its checks.  decodeFlat reads exactly this subset and declines everything
 * else, so that orjson, and the codec's rules after it, decide every message
 * that is not plainly flat:
 *
 *   - at most MAX_FLAT_SIZE bytes;
 *   - one object, its keys and string values printable ASCII with no
 *     escape (bytes 0x20 to 0x7E but " and \);
 *   - integers of at most 18 digits (no fraction, no exponent);
 *   - true, false and null;
 *   - JSON whitespace around any of these, and no key twice.
 *
 * Within it the result is what orjson.loads gives, member for member, in
 * the same order; tests/test_flatjson.py holds the two to that.  Short
 * strings, keys above all, come from a small cache of str objects with their
 * hash computed, as orjson caches keys: a dict lookup by them costs no
 * hashing.
 *
 * While reading, it notes the message's type and id (the Envelope), which
 * saves the caller looking them up.
 *
 * writeFlatValue is the other direction, for a reply's members: what
 * orjson.dumps writes for the same subset, byte for byte.
 */

#include "_flatjson.h"

#include <string.h>

/*
 * The bytes that may stand for themselves inside a flat string: 0x20 to
 * 0x7E but " and \ (a table: one load a byte).
 */
static const unsigned char plain[256] = {[0x20 ... '"' - 1] = 1, ['"' + 1 ... '\\' - 1] = 1, ['\\' + 1 ... 0x7E] = 1};
#define PLAIN(c) (plain[(unsigned char)(c)])

/*
 * Messages longer than this go to orjson: reading byte by byte, flat JSON
 * saves a call's and a tree's cost, which long messages amortise, while
 * orjson scans long strings many bytes at a time.
 */
#define MAX_FLAT_SIZE 1024

/* Integers of up to this many digits fit a long long whatever they are. */
#define MAX_DIGITS 18

/* Strings up to CACHED_LENGTH long are cached, in CACHE_SIZE places. */
#define CACHED_LENGTH 24
#define CACHE_SIZE 1024

static PyObject *cache[CACHE_SIZE];

/* A new str of n ASCII bytes. */
static PyObject *
asciiString(const char *s, Py_ssize_t n)
{
    PyObject *text = PyUnicode_New(n, 127);
    if (text != NULL)
        memcpy(PyUnicode_1BYTE_DATA(text), s, n);
    return text;
}

/*
 * The str of n plain bytes at s, whose FNV-1a hash is h: from the cache
 * when it is short, where it is left, hashed, for the next message to find.
 */
static PyObject *
flatString(const char *s, Py_ssize_t n, unsigned int h)
{
    if (n > CACHED_LENGTH)
        return asciiString(s, n);
    PyObject **place = &cache[(h ^ (h >> 16)) & (CACHE_SIZE - 1)];
    PyObject *cached = *place;
    if (cached != NULL && PyUnicode_GET_LENGTH(cached) == n && memcmp(PyUnicode_1BYTE_DATA(cached), s, n) == 0)
        return Py_NewRef(cached);
    PyObject *text = asciiString(s, n);
    if (text == NULL)
        return NULL;
    if (PyObject_Hash(text) == -1) {
        Py_DECREF(text);
        return NULL;
    }
    Py_XSETREF(*place, Py_NewRef(text));
    return text;
}

static const char *
skipSpace(const char *p, const char *end)
{
    /* Most often there is none. */
    if (p < end && (unsigned char)*p > ' ')
        return p;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/*
 * The string whose opening quote is at *p, moving *p past its closing one;
 * NULL (no error set) when it is not a flat string.
 */
static PyObject *
readString(const char **p, const char *end)
{
    const char *start = *p + 1, *q = start;
    /* FNV-1a, for the cache, on the way: cheap, and spreads short strings
     * well enough. */
    unsigned int h = 2166136261u;
    while (q < end && PLAIN(*q))
        h = (h ^ (unsigned char)*q++) * 16777619u;
    if (q == end || *q != '"')
        return NULL;
    *p = q + 1;
    return flatString(start, q - start, h);
}

/* The integer at *p, moving *p past it; NULL (no error) if not flat. */
static PyObject *
readInteger(const char **p, const char *end)
{
    const char *q = *p;
    int negative = *q == '-';
    if (negative)
        q++;
    const char *digits = q;
    long long value = 0;
    while (q < end && *q >= '0' && *q <= '9') {
        if (q - digits == MAX_DIGITS)
            return NULL;
        value = value * 10 + (*q++ - '0');
    }
    Py_ssize_t count = q - digits;
    /* No digit, or a leading zero.  A fraction or an exponent after the
     * digits is declined by the caller, which expects , or } there. */
    if (count == 0 || (digits[0] == '0' && count > 1))
        return NULL;
    *p = q;
    return PyLong_FromLongLong(negative ? -value : value);
}

/* The literal `word` at *p, moving *p past it; 0 if it is not there. */
static int
readWord(const char **p, const char *end, const char *word, size_t length)
{
    if ((size_t)(end - *p) < length || memcmp(*p, word, length) != 0)
        return 0;
    *p += length;
    return 1;
}

/* The value at *p, moving *p past it; NULL (no error) if not flat. */
static PyObject *
readValue(const char **p, const char *end)
{
    if (*p == end)
        return NULL;
    switch (**p) {
    case '"':
        return readString(p, end);
    case 't':
        return readWord(p, end, "true", 4) ? Py_NewRef(Py_True) : NULL;
    case 'f':
        return readWord(p, end, "false", 5) ? Py_NewRef(Py_False) : NULL;
    case 'n':
        return readWord(p, end, "null", 4) ? Py_NewRef(Py_None) : NULL;
    default:
        if (**p == '-' || (**p >= '0' && **p <= '9'))
            return readInteger(p, end);
        return NULL;
    }
}

/* Whether the str `key` (ASCII) is `name`, of `length` bytes. */
static int
isKey(PyObject *key, const char *name, Py_ssize_t length)
{
    return PyUnicode_GET_LENGTH(key) == length && memcmp(PyUnicode_1BYTE_DATA(key), name, length) == 0;
}

PyObject *
decodeFlat(const char *data, Py_ssize_t size, Envelope *envelope)
{
    envelope->type = envelope->id = NULL;
    if (size > MAX_FLAT_SIZE)
        return NULL;
    const char *end = data + size;
    const char *p = skipSpace(data, end);
    if (p == end || *p != '{')
        return NULL;
    PyObject *object = PyDict_New();
    if (object == NULL)
        return NULL;
    p = skipSpace(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    }
    else {
        for (;;) {
            if (p == end || *p != '"')
                goto decline;
            PyObject *key = readString(&p, end);
            if (key == NULL)
                goto decline;
            p = skipSpace(p, end);
            if (p == end || *p != ':') {
                Py_DECREF(key);
                goto decline;
            }
            p = skipSpace(p + 1, end);
            PyObject *value = readValue(&p, end);
            if (value == NULL) {
                Py_DECREF(key);
                goto decline;
            }
            Py_ssize_t before = PyDict_GET_SIZE(object);
            int rc = PyDict_SetItem(object, key, value);
            /* The dict holds them now: value stays as long as it does (a
             * second member of the same name is declined below). */
            if (isKey(key, "type", 4))
                envelope->type = value;
            else if (isKey(key, "id", 2))
                envelope->id = value;
            Py_DECREF(key);
            Py_DECREF(value);
            if (rc < 0)
                goto decline;
            /* A key seen before: orjson decides what that means. */
            if (PyDict_GET_SIZE(object) == before)
                goto decline;
            p = skipSpace(p, end);
            if (p < end && *p == ',') {
                p = skipSpace(p + 1, end);
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            goto decline;
        }
    }
    if (skipSpace(p, end) == end)
        return object;
decline:
    /* An error set on the way (no memory) stays set for the caller. */
    Py_DECREF(object);
    return NULL;
}

/* The decimal digits of v at out; the position after them. */
static char *
writeInteger(long long v, char *out)
{
    char digits[24];
    int n = 0;
    unsigned long long magnitude = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        digits[n++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (v < 0)
        *out++ = '-';
    while (n)
        *out++ = digits[--n];
    return out;
}

char *
writeFlatValue(PyObject *value, char *out, const char *end)
{
    if (PyUnicode_CheckExact(value)) {
        if (!PyUnicode_IS_READY(value) || !PyUnicode_IS_ASCII(value))
            return NULL;
        Py_ssize_t n = PyUnicode_GET_LENGTH(value);
        const char *s = (const char *)PyUnicode_1BYTE_DATA(value);
        if (end - out < n + 2)
            return NULL;
        for (Py_ssize_t i = 0; i < n; i++)
            if (!PLAIN(s[i]))
                return NULL;
        *out++ = '"';
        memcpy(out, s, n);
        out += n;
        *out++ = '"';
        return out;
    }
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || end - out < 21)
            return NULL;
        return writeInteger(v, out);
    }
    const char *word = value == Py_True ? "true" : value == Py_False ? "false" : value == Py_None ? "null" : NULL;
    if (word == NULL)
        return NULL;
    size_t length = strlen(word);
    if ((size_t)(end - out) < length)
        return NULL;
    memcpy(out, word, length);
    return out + length;
}
