/* difflib.SequenceMatcher(None, a, b).ratio() for two str: CPython's algorithm (difflib as of 3.11;
 * the tests compare with the stdlib that runs them), so the value is the same double, without dicts.
 *
 * What the stdlib does, and what this file keeps exactly:
 *   - b2j: the positions of each character of b. With len(b) >= 200 (autojunk), characters seen
 *     more than len(b) // 100 + 1 times are "popular" and have no positions; isjunk is None, so
 *     nothing else is junk.
 *   - find_longest_match(alo, ahi, blo, bhi): for i ascending and each position j of a[i] in
 *     [blo, bhi) ascending, k = run ending at (i-1, j-1) + 1; a strictly longer k becomes the best,
 *     so ties keep the earliest. Then the best is grown by equal characters on both sides (popular
 *     ones included: they are not junk).
 *   - get_matching_blocks: recurse on the two sides of each match. ratio = 2.0 * M / (la + lb)
 *     with M the matched total, 1.0 when both are empty. The order the sides are visited in does
 *     not change M, so an explicit stack replaces the queue.
 *
 * Why not cydifflib: it zero-fills a j2len array over the whole b range for every character of a,
 * O(len(a) * len(b)) per match search, which on edited files of thousands of characters costs as
 * much as CPython's dicts. Here the run lengths live in two arrays indexed by j (one for the row
 * being read, one for the row being written, since a row must not see its own writes), and only
 * the entries a row wrote are cleared afterwards, so a search costs what the dict version visits.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    Py_ssize_t alo, ahi, blo, bhi;
} Range;

typedef struct {
    const Py_UCS4 *a, *b;
    const int32_t *aslot; /* per i: the slot of a[i] among b's characters, -1 if absent or popular */
    const int32_t *start; /* per slot s: its positions are pos[start[s] .. start[s + 1]) */
    const int32_t *pos;   /* positions of b, grouped by slot, ascending within a slot */
    int32_t *rows[2];     /* run lengths, entry j + 1 for position j (entry 0 stands for j = -1) */
} Index;

/* First entry of the sorted [lo, hi) that is >= v. */
static const int32_t *lower_bound(const int32_t *lo, const int32_t *hi, Py_ssize_t v)
{
    while (lo < hi) {
        const int32_t *mid = lo + (hi - lo) / 2;
        if (*mid < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static Py_ssize_t longest_match(const Index *x, Range r, Py_ssize_t *pi, Py_ssize_t *pj)
{
    int32_t *prev = x->rows[0], *cur = x->rows[1];
    const int32_t *prev_lo = NULL, *prev_hi = NULL; /* the positions the previous row wrote */
    Py_ssize_t besti = r.alo, bestj = r.blo, bestsize = 0;

    for (Py_ssize_t i = r.alo; i < r.ahi; i++) {
        const int32_t *lo = NULL, *hi = NULL;
        int32_t s = x->aslot[i];
        if (s >= 0) {
            const int32_t *end = x->pos + x->start[s + 1];
            lo = hi = lower_bound(x->pos + x->start[s], end, r.blo);
            for (; hi < end && *hi < r.bhi; hi++) {
                int32_t j = *hi, k = prev[j] + 1;
                cur[j + 1] = k;
                if (k > bestsize) {
                    besti = i - k + 1;
                    bestj = j - k + 1;
                    bestsize = k;
                }
            }
        }
        for (const int32_t *p = prev_lo; p < prev_hi; p++)
            prev[*p + 1] = 0;
        prev_lo = lo;
        prev_hi = hi;
        int32_t *t = prev;
        prev = cur;
        cur = t;
    }
    for (const int32_t *p = prev_lo; p < prev_hi; p++) /* leave both rows zero for the next search */
        prev[*p + 1] = 0;

    const Py_UCS4 *a = x->a, *b = x->b;
    while (besti > r.alo && bestj > r.blo && a[besti - 1] == b[bestj - 1]) {
        besti--;
        bestj--;
        bestsize++;
    }
    while (besti + bestsize < r.ahi && bestj + bestsize < r.bhi && a[besti + bestsize] == b[bestj + bestsize])
        bestsize++;
    *pi = besti;
    *pj = bestj;
    return bestsize;
}

/* Slots of the characters of b: a table for Latin-1, open addressing for the rest. */
typedef struct {
    int32_t latin1[256];
    Py_UCS4 *keys; /* EMPTY where free; NULL when b is all Latin-1 */
    int32_t *slots;
    size_t mask;
} CharMap;

#define EMPTY ((Py_UCS4)0xFFFFFFFF) /* above every code point */

static int32_t *charmap_find(CharMap *m, Py_UCS4 c, int insert)
{
    if (c < 256)
        return &m->latin1[c];
    if (m->keys == NULL) /* b has no character past Latin-1 */
        return NULL;
    size_t h = ((size_t)c * 2654435761u) & m->mask;
    while (m->keys[h] != c) {
        if (m->keys[h] == EMPTY) {
            if (!insert)
                return NULL;
            m->keys[h] = c;
            m->slots[h] = -1;
            break;
        }
        h = (h + 1) & m->mask;
    }
    return &m->slots[h];
}

/* The matched total M of SequenceMatcher(None, a, b); -1 with an exception set on failure. */
static Py_ssize_t matched(PyObject *sa, PyObject *sb)
{
    Py_ssize_t la = PyUnicode_GET_LENGTH(sa), lb = PyUnicode_GET_LENGTH(sb);
    if (la == 0 || lb == 0)
        return 0;
    if (la >= INT32_MAX || lb >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "strings too long for the difflib kernel");
        return -1;
    }
    Py_ssize_t nstack = (la < lb ? la : lb) + 1; /* pending ranges are disjoint and non-empty */
    /* One block: a, b, aslot, bslot, start, fill, pos, two rows (int32 each), then the stack. */
    size_t ints = (size_t)la + lb + la + lb + (lb + 1) + lb + lb + 2 * ((size_t)lb + 1);
    ints += ints & 1; /* keep the stack 8-byte aligned */
    char *block = PyMem_Malloc(ints * 4 + (size_t)nstack * sizeof(Range));
    CharMap map = {.keys = NULL};
    if (block == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_UCS4 *a = (Py_UCS4 *)block, *b = a + la;
    int32_t *aslot = (int32_t *)(b + lb), *bslot = aslot + la, *start = bslot + lb, *fill = start + lb + 1;
    int32_t *pos = fill + lb, *row0 = pos + lb, *row1 = row0 + lb + 1;
    Range *stack = (Range *)(block + ints * 4);
    Py_ssize_t M = -1;
    if (!PyUnicode_AsUCS4(sa, a, la, 0) || !PyUnicode_AsUCS4(sb, b, lb, 0))
        goto done;
    memset(row0, 0, 2 * ((size_t)lb + 1) * sizeof(int32_t));
    memset(map.latin1, 0xff, sizeof map.latin1);
    size_t nwide = 0, cap = 8;
    for (Py_ssize_t j = 0; j < lb; j++)
        nwide += b[j] >= 256;
    if (nwide) {
        while (cap < 2 * nwide)
            cap *= 2;
        map.mask = cap - 1;
        map.keys = PyMem_Malloc(cap * (sizeof(Py_UCS4) + sizeof(int32_t)));
        if (map.keys == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        map.slots = (int32_t *)(map.keys + cap);
        memset(map.keys, 0xff, cap * sizeof(Py_UCS4));
    }

    /* b2j: slots in order of first appearance, then each slot's positions, ascending. */
    int32_t nslots = 0;
    for (Py_ssize_t j = 0; j < lb; j++) {
        int32_t *slot = charmap_find(&map, b[j], 1);
        if (*slot < 0) {
            *slot = nslots;
            start[nslots++] = 0;
        }
        bslot[j] = *slot;
        start[*slot]++;
    }
    if (lb >= 200) { /* autojunk: popular characters keep no positions */
        int32_t ntest = (int32_t)(lb / 100 + 1);
        for (int32_t s = 0; s < nslots; s++)
            if (start[s] > ntest)
                start[s] = 0;
    }
    int32_t total = 0;
    for (int32_t s = 0; s < nslots; s++) {
        int32_t n = start[s];
        fill[s] = start[s] = total;
        total += n;
    }
    start[nslots] = total;
    for (Py_ssize_t j = 0; j < lb; j++) {
        int32_t s = bslot[j];
        if (fill[s] < start[s + 1])
            pos[fill[s]++] = (int32_t)j;
    }
    for (Py_ssize_t i = 0; i < la; i++) {
        int32_t *slot = charmap_find(&map, a[i], 0);
        int32_t s = slot ? *slot : -1;
        aslot[i] = (s >= 0 && start[s + 1] > start[s]) ? s : -1;
    }

    Index x = {a, b, aslot, start, pos, {row0, row1}};
    Py_ssize_t top = 0, total_matched = 0;
    stack[top++] = (Range){0, la, 0, lb};
    while (top > 0) {
        Range r = stack[--top];
        Py_ssize_t i, j, k = longest_match(&x, r, &i, &j);
        if (k == 0)
            continue;
        total_matched += k;
        if (r.alo < i && r.blo < j)
            stack[top++] = (Range){r.alo, i, r.blo, j};
        if (i + k < r.ahi && j + k < r.bhi)
            stack[top++] = (Range){i + k, r.ahi, j + k, r.bhi};
    }
    M = total_matched;
done:
    PyMem_Free(block);
    PyMem_Free(map.keys);
    return M;
}

static int check_args(PyObject *const *args, Py_ssize_t nargs, const char *name)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (%zd given)", name, nargs);
        return -1;
    }
    if (!PyUnicode_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "%s() compares two str", name);
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(args[0]) < 0 || PyUnicode_READY(args[1]) < 0)
        return -1;
#endif
    return 0;
}

static PyObject *ratio(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_args(args, nargs, "ratio") < 0)
        return NULL;
    Py_ssize_t total = PyUnicode_GET_LENGTH(args[0]) + PyUnicode_GET_LENGTH(args[1]);
    if (total == 0)
        return PyFloat_FromDouble(1.0);
    Py_ssize_t m = matched(args[0], args[1]);
    if (m < 0)
        return NULL;
    return PyFloat_FromDouble(2.0 * (double)m / (double)total);
}

static PyObject *matched_total(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_args(args, nargs, "matched") < 0)
        return NULL;
    Py_ssize_t m = matched(args[0], args[1]);
    return m < 0 ? NULL : PyLong_FromSsize_t(m);
}

static PyMethodDef methods[] = {
    {"ratio", (PyCFunction)(void (*)(void))ratio, METH_FASTCALL,
     "ratio(a, b) -> difflib.SequenceMatcher(None, a, b).ratio(), the same float."},
    {"matched", (PyCFunction)(void (*)(void))matched_total, METH_FASTCALL,
     "matched(a, b) -> the sum of the sizes of SequenceMatcher(None, a, b).get_matching_blocks()."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_ratcliff", .m_methods = methods};

PyMODINIT_FUNC PyInit__ratcliff(void)
{
    return PyModule_Create(&module);
}
