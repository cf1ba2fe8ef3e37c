/* read_canonical(text): the fast path of parse_completion(text, "xml") for completions whose one call
 * is already in its canonical text (actions.render's output, which SFT teaches and most rollouts copy);
 * canonical_action(text): only that text, for the paper reward, which needs nothing else.
 *
 * It returns (thought, name, arguments, action) exactly as the general parser would give them
 * (thought stripped, the normalised arguments, render(call)) or None, and None means only "not
 * this simple case": the caller then runs the general parser, which decides everything, format
 * errors included. So each check below may be stricter than the general parser, never looser:
 *
 *   - text = whitespace, "<think>", a thought that is not blank, "</think>", then anything; the
 *     text holds "<think>" and "</think>" once each;
 *   - after "</think>", "<function=" occurs once, and the call runs from it to the first
 *     "</function>" after it (what the general parser's non-greedy regex takes);
 *   - that call is render()'s text of a call: "<function=NAME>\n", then for each argument in
 *     render's order "<parameter=KEY>VALUE</parameter>\n", then "</function>", where NAME is
 *     bash, submit or str_replace_editor, and each VALUE reads back to itself: no
 *     "</parameter>" inside, a string with a newline wrapped in newlines (render's wrapping),
 *     integers as json.dumps writes them, view_range as "[a, b]".
 *
 * The tables mirror actions._EDITOR_ARG_ORDER and schema.EDITOR_COMMANDS (a test compares them),
 * and tests check the result against the general parser on every benchmark completion and on
 * random, bent ones (tests/test_similarity_kernel.py, tests/test_rewards_properties.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum kind { STR, NONBLANK, INT, RANGE, COMMAND };

typedef struct {
    const char *key;
    enum kind kind;
    PyObject *key_str; /* key as a str, made at import */
} Param;

typedef struct {
    const char *head; /* "<function=NAME>\n" */
    const char *name;
    Param *params; /* in render's order, NULL-terminated */
    int required;  /* the first `required` params must be present */
    PyObject *name_str;
} Tool;

static Param BASH_PARAMS[] = {{"command", NONBLANK}, {NULL, STR}};
static Param NO_PARAMS[] = {{NULL, STR}};
static Param EDITOR_PARAMS[] = {
    {"command", COMMAND}, {"path", STR},        {"file_text", STR},   {"old_str", STR},
    {"new_str", STR},     {"insert_line", INT}, {"view_range", RANGE}, {NULL, STR},
};
static const char *const EDITOR_COMMANDS[] = {"view", "create", "str_replace", "insert", "undo_edit", NULL};
static Tool TOOLS[] = {
    {"<function=bash>\n", "bash", BASH_PARAMS, 1},
    {"<function=submit>\n", "submit", NO_PARAMS, 0},
    {"<function=str_replace_editor>\n", "str_replace_editor", EDITOR_PARAMS, 2},
};

/* A ready str (text_of), so PyUnicode_FindChar on it cannot fail: it gives an index or -1. */
typedef struct {
    PyObject *text;
    int kind;
    const void *data;
    Py_ssize_t len;
} Text;

static Py_UCS4 char_at(const Text *t, Py_ssize_t i)
{
    return PyUnicode_READ(t->kind, t->data, i);
}

/* text[pos:] starts with the ASCII string s, within [pos, end). */
static int starts(const Text *t, Py_ssize_t pos, Py_ssize_t end, const char *s)
{
    for (; *s; s++, pos++)
        if (pos >= end || char_at(t, pos) != (Py_UCS4)(unsigned char)*s)
            return 0;
    return 1;
}

/* First index of the ASCII tag in [lo, end), -1 if none. Found by its '<', which
 * PyUnicode_FindChar seeks at memchr speed: tags are rare, and so is '<' in prose and most code,
 * and this beats a substring search over long texts several times. */
static Py_ssize_t find_tag(const Text *t, const char *tag, Py_ssize_t lo, Py_ssize_t end)
{
    Py_ssize_t p = lo;
    while ((p = PyUnicode_FindChar(t->text, '<', p, end, 1)) >= 0 && !starts(t, p, end, tag))
        p++;
    return p;
}

static int all_space(const Text *t, Py_ssize_t lo, Py_ssize_t hi)
{
    for (; lo < hi; lo++)
        if (!Py_UNICODE_ISSPACE(char_at(t, lo)))
            return 0;
    return 1;
}

/* An integer as json.dumps writes one: 0 or -?[1-9][0-9]*, in ASCII digits, and at most 9 of them,
 * so within actions.MAX_LINE_NUMBER (10**9), past which the general parser says bad_arguments. */
static int is_int(const Text *t, Py_ssize_t lo, Py_ssize_t hi)
{
    int negative = lo < hi && char_at(t, lo) == '-';
    lo += negative;
    if (lo >= hi || hi - lo > 9)
        return 0;
    if (char_at(t, lo) == '0')
        return hi - lo == 1 && !negative;
    for (; lo < hi; lo++)
        if (char_at(t, lo) < '0' || char_at(t, lo) > '9')
            return 0;
    return 1;
}

static PyObject *int_at(const Text *t, Py_ssize_t lo, Py_ssize_t hi)
{
    PyObject *s = PyUnicode_Substring(t->text, lo, hi);
    if (s == NULL)
        return NULL;
    PyObject *v = PyLong_FromUnicodeObject(s, 10);
    Py_DECREF(s);
    return v;
}

/* "[a, b]" as render writes a view_range: the comma's index, or -1. */
static Py_ssize_t range_comma(const Text *t, Py_ssize_t lo, Py_ssize_t hi)
{
    if (hi - lo < 6 || char_at(t, lo) != '[' || char_at(t, hi - 1) != ']')
        return -1;
    Py_ssize_t comma = PyUnicode_FindChar(t->text, ',', lo + 1, hi - 1, 1);
    if (comma < 0 || char_at(t, comma + 1) != ' ' || !is_int(t, lo + 1, comma) || !is_int(t, comma + 2, hi - 1))
        return -1;
    return comma;
}

/* Whether render writes an argument of this kind whose text is text[lo:hi] as exactly that text.
 * For a string, *lo and *hi then bound the value itself, without the newlines render wraps it in. */
static int canonical_value(const Text *t, enum kind kind, Py_ssize_t *lo, Py_ssize_t *hi)
{
    if (kind == INT)
        return is_int(t, *lo, *hi);
    if (kind == RANGE)
        return range_comma(t, *lo, *hi) >= 0;
    /* render writes a string holding a newline as "\n" + value + "\n", any other as it is */
    if (PyUnicode_FindChar(t->text, '\n', *lo, *hi, 1) >= 0) {
        if (*hi - *lo < 3 || char_at(t, *lo) != '\n' || char_at(t, *hi - 1) != '\n' ||
            PyUnicode_FindChar(t->text, '\n', *lo + 1, *hi - 1, 1) < 0)
            return 0;
        ++*lo;
        --*hi;
    }
    if (kind == NONBLANK)
        return !all_space(t, *lo, *hi);
    if (kind == COMMAND) {
        for (const char *const *c = EDITOR_COMMANDS; *c; c++)
            if (*hi - *lo == (Py_ssize_t)strlen(*c) && starts(t, *lo, *hi, *c))
                return 1;
        return 0;
    }
    return 1;
}

/* The value of an argument canonical_value accepted (NULL on error). */
static PyObject *make_value(const Text *t, enum kind kind, Py_ssize_t lo, Py_ssize_t hi)
{
    if (kind == INT)
        return int_at(t, lo, hi);
    if (kind != RANGE)
        return PyUnicode_Substring(t->text, lo, hi);
    Py_ssize_t comma = range_comma(t, lo, hi);
    PyObject *a = int_at(t, lo + 1, comma), *b = a ? int_at(t, comma + 2, hi - 1) : NULL;
    PyObject *pair = b ? PyList_New(2) : NULL;
    if (pair == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return NULL;
    }
    PyList_SET_ITEM(pair, 0, a);
    PyList_SET_ITEM(pair, 1, b);
    return pair;
}

/* Whether the call text[f:end] is `tool`'s canonical text: 1 yes, 0 no, -1 on error. With `args`,
 * its arguments are stored there; without, nothing is built. */
static int read_arguments(const Text *t, const Tool *tool, Py_ssize_t f, Py_ssize_t end, PyObject *args)
{
    Py_ssize_t pos = f + (Py_ssize_t)strlen(tool->head), close_call = end - 11; /* len("</function>") */
    int next = 0, seen = 0;
    while (pos < close_call) {
        if (!starts(t, pos, close_call, "<parameter="))
            return 0;
        pos += 11;
        const Param *p = tool->params + next;
        while (p->key && !(starts(t, pos, close_call, p->key) && starts(t, pos + strlen(p->key), close_call, ">")))
            p++;
        if (p->key == NULL) /* unknown, repeated or out of render's order */
            return 0;
        Py_ssize_t lo = pos + strlen(p->key) + 1, hi = find_tag(t, "</parameter>", lo, close_call);
        pos = hi + 13; /* past "</parameter>\n" */
        if (hi < 0 || !starts(t, hi, close_call, "</parameter>\n") || !canonical_value(t, p->kind, &lo, &hi))
            return 0;
        if (args != NULL) {
            PyObject *v = make_value(t, p->kind, lo, hi);
            int failed = v == NULL || PyDict_SetItem(args, p->key_str, v) < 0;
            Py_XDECREF(v);
            if (failed)
                return -1;
        }
        next = (int)(p - tool->params) + 1;
        seen += next <= tool->required;
    }
    return pos == close_call && seen == tool->required;
}

/* The shape around the call: 0 if the text does not have it, else 1 with the call's tool and
 * bounds [*f, *end) and the stripped thought's bounds [*lo, *hi). */
static int locate(const Text *t, const Tool **tool, Py_ssize_t *f, Py_ssize_t *end, Py_ssize_t *lo, Py_ssize_t *hi)
{
    /* One pass over the text's '<' finds the tags that decide the shape. The four tags cannot
     * overlap, so each '<' starts at most one. Calls before "</think>" do not count; after it the
     * first "<function=" starts the call and a second one is one call too many. */
    Py_ssize_t n = t->len, open = -1, close = -1, p = 0;
    *f = *end = -1;
    while ((p = PyUnicode_FindChar(t->text, '<', p, n, 1)) >= 0) {
        if (starts(t, p, n, "<think>")) {
            if (open >= 0)
                return 0;
            open = p;
        }
        else if (starts(t, p, n, "</think>")) {
            if (close >= 0)
                return 0;
            close = p;
        }
        else if (close >= 0 && starts(t, p, n, "<function=")) {
            if (*f >= 0)
                return 0;
            *f = p;
        }
        else if (*f >= 0 && *end < 0 && starts(t, p, n, "</function>"))
            *end = p + 11;
        p++;
    }
    if (open < 0 || close < open || *f < 0 || *end < 0 || !all_space(t, 0, open))
        return 0;
    *lo = open + 7; /* the thought, stripped as str.strip() does; a blank one is no_think */
    *hi = close;
    while (*lo < *hi && Py_UNICODE_ISSPACE(char_at(t, *lo)))
        ++*lo;
    while (*hi > *lo && Py_UNICODE_ISSPACE(char_at(t, *hi - 1)))
        --*hi;
    if (*lo == *hi)
        return 0;
    for (size_t i = 0; i < sizeof TOOLS / sizeof TOOLS[0]; i++)
        if (starts(t, *f, *end, TOOLS[i].head)) {
            *tool = &TOOLS[i];
            return 1;
        }
    return 0;
}

static int text_of(PyObject *arg, Text *t, const char *name)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "%s() reads a str", name);
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(arg) < 0)
        return -1;
#endif
    *t = (Text){arg, PyUnicode_KIND(arg), PyUnicode_DATA(arg), PyUnicode_GET_LENGTH(arg)};
    return 0;
}

static PyObject *read_canonical(PyObject *module, PyObject *arg)
{
    Text t;
    const Tool *tool;
    Py_ssize_t f, end, lo, hi;
    if (text_of(arg, &t, "read_canonical") < 0)
        return NULL;
    if (!locate(&t, &tool, &f, &end, &lo, &hi))
        Py_RETURN_NONE;
    PyObject *args = PyDict_New();
    int ok = args ? read_arguments(&t, tool, f, end, args) : -1;
    if (ok <= 0) {
        Py_XDECREF(args);
        return ok < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *thought = PyUnicode_Substring(arg, lo, hi), *action = PyUnicode_Substring(arg, f, end);
    PyObject *out = thought && action ? PyTuple_Pack(4, thought, tool->name_str, args, action) : NULL;
    Py_XDECREF(thought);
    Py_XDECREF(action);
    Py_DECREF(args);
    return out;
}

static PyObject *canonical_action(PyObject *module, PyObject *arg)
{
    Text t;
    const Tool *tool;
    Py_ssize_t f, end, lo, hi;
    if (text_of(arg, &t, "canonical_action") < 0)
        return NULL;
    if (!locate(&t, &tool, &f, &end, &lo, &hi) || !read_arguments(&t, tool, f, end, NULL))
        Py_RETURN_NONE;
    return PyUnicode_Substring(arg, f, end);
}

/* The tables, for the test that keeps them equal to the Python constants they mirror. */
static PyObject *tables(PyObject *module, PyObject *unused)
{
    PyObject *keys = PyList_New(0), *commands = PyList_New(0);
    if (keys == NULL || commands == NULL)
        goto error;
    for (const Param *p = EDITOR_PARAMS; p->key; p++) {
        PyObject *s = PyUnicode_FromString(p->key);
        if (s == NULL || PyList_Append(keys, s) < 0) {
            Py_XDECREF(s);
            goto error;
        }
        Py_DECREF(s);
    }
    for (const char *const *c = EDITOR_COMMANDS; *c; c++) {
        PyObject *s = PyUnicode_FromString(*c);
        if (s == NULL || PyList_Append(commands, s) < 0) {
            Py_XDECREF(s);
            goto error;
        }
        Py_DECREF(s);
    }
    return Py_BuildValue("{sNsN}", "editor_arguments", keys, "editor_commands", commands);
error:
    Py_XDECREF(keys);
    Py_XDECREF(commands);
    return NULL;
}

static PyMethodDef methods[] = {
    {"read_canonical", read_canonical, METH_O,
     "read_canonical(text) -> (thought, name, arguments, action) for a completion whose one xml call is "
     "already canonical, else None (then the general parser decides)."},
    {"canonical_action", canonical_action, METH_O,
     "canonical_action(text) -> read_canonical(text)[3] or None, building nothing else."},
    {"tables", tables, METH_NOARGS, "The editor's argument order and commands this module knows."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_xmlcall", .m_methods = methods};

PyMODINIT_FUNC PyInit__xmlcall(void)
{
    for (size_t i = 0; i < sizeof TOOLS / sizeof TOOLS[0]; i++) {
        if (TOOLS[i].name_str == NULL && !(TOOLS[i].name_str = PyUnicode_InternFromString(TOOLS[i].name)))
            return NULL;
        for (Param *p = TOOLS[i].params; p->key; p++)
            if (p->key_str == NULL && !(p->key_str = PyUnicode_InternFromString(p->key)))
                return NULL;
    }
    return PyModule_Create(&module);
}
