/*
 * fairwatch.streaming._fastpath: a run of raw decision/v1 or outcome/v1 events -> columns,
 * for events in the forms producers usually write, or None.
 *
 * This is an accelerator, never a judge. It accepts an event only when it is certain the
 * per-event validator (fairwatch.streaming.schema) accepts it with the same values; for
 * anything else (an escape in a field it reads, a name that is not printable ASCII, a
 * timestamp form it does not parse, a duplicate field, a deep nesting, invalid JSON, ...)
 * it gives up on the whole run and returns None, and the run takes the msgspec path, whose
 * own failure sends it on to the validator, which alone names reasons. So the set of
 * events this code accepts can only be smaller than the validator's (a tested property,
 * tests/test_fastpath.py), and a bug here can make a run slower or, at worst, refuse what
 * the validator would accept -- never count what it would refuse.
 *
 * Memory safety: every read goes through a cursor checked against the end of its bytes
 * object; nothing is written outside buffers sized by n before the parse starts; nesting
 * in skipped values is limited to MAX_DEPTH (recursion bounded).
 *
 * Rules mirrored (schema.py): whole event valid JSON (RFC 8259; UTF-8 checked in every
 * string; a surrogate escape only as a pair, in what it skips or keeps raw); size limit;
 * schema exact; decision_id 1..max_id characters; model and model_version 1..max_name
 * printable ASCII; ts RFC 3339 "YYYY-MM-DD[Tt ]HH:MM:SS[.f{1,9}](Z|z|+HH:MM|-HH:MM)" (the
 * fraction truncated to the microsecond, then one microsecond added when its 7th digit is
 * 5 or more, as parse_timestamp does) or a non-negative JSON number; score a non-negative
 * JSON number <= 1 (parsed by Python's own correctly rounded strtod); decision 0 or 1;
 * attributes an object (returned as its raw bytes, checked by the caller's registry);
 * features an object or null; label 0, 1 or null (required for outcomes). Range and
 * clock-skew checks of ts are the caller's (numpy, over the column).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_NUMBER_CHARS 63

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Cur;

static inline void
skip_ws(Cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static inline int
is_digit(unsigned char ch)
{
    return ch >= '0' && ch <= '9';
}

static inline int
is_hex(unsigned char ch)
{
    return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* One UTF-8 character at c->p (lead byte >= 0x80), strict RFC 3629: no overlong form, no
 * surrogate, nothing above U+10FFFF. Advances past it; 0 if invalid. */
static int
utf8_char(Cur *c)
{
    const unsigned char *p = c->p;
    Py_ssize_t left = c->end - p;
    unsigned char b0 = p[0];
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        if (left < 2 || (p[1] & 0xC0) != 0x80)
            return 0;
        c->p += 2;
        return 1;
    }
    if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if ((b0 == 0xE0 && p[1] < 0xA0) || (b0 == 0xED && p[1] >= 0xA0))
            return 0;
        c->p += 3;
        return 1;
    }
    if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if ((b0 == 0xF0 && p[1] < 0x90) || (b0 == 0xF4 && p[1] >= 0x90))
            return 0;
        c->p += 4;
        return 1;
    }
    return 0;
}

/* What a string held, besides printable ASCII */
#define S_ESCAPE 1
#define S_NON_ASCII 2
#define S_DEL 4

/* 1 for the bytes a string scan passes over as they are: printable ASCII but '"' and '\\' */
static unsigned char plain[256];

static void
init_plain(void)
{
    for (int ch = 0x20; ch < 0x7F; ch++)
        plain[ch] = ch != '"' && ch != '\\';
}

/* "\\uD800".."\\uDBFF" at p (6 bytes, hex already checked for the first escape) */
static inline int
is_high_escape(const unsigned char *p)
{
    return (p[2] == 'd' || p[2] == 'D') && (p[3] == '8' || p[3] == '9' || p[3] == 'a' || p[3] == 'A' || p[3] == 'b' ||
                                            p[3] == 'B');
}

/* "\\uDC00".."\\uDFFF" at p (6 bytes) */
static inline int
is_low_escape(const unsigned char *p)
{
    return (p[2] == 'd' || p[2] == 'D') && ((p[3] >= 'c' && p[3] <= 'f') || (p[3] >= 'C' && p[3] <= 'F')) &&
           is_hex(p[4]) && is_hex(p[5]);
}

/* A JSON string at c->p (which is '"'): advances past its closing quote and sets *flags;
 * its content is [*start, c->p - 1). 0 if invalid, or if it escapes a lone UTF-16 surrogate. */
static int
scan_string(Cur *c, const unsigned char **start, int *flags)
{
    int f = 0;
    c->p++;
    *start = c->p;
    while (c->p < c->end) {
        const unsigned char *p = c->p, *e = c->end;
        while (e - p >= 4 && plain[p[0]] && plain[p[1]] && plain[p[2]] && plain[p[3]])
            p += 4;
        while (p < e && plain[*p])
            p++;
        c->p = p;
        if (p >= e)
            break;
        unsigned char ch = *c->p;
        if (ch == '"') {
            c->p++;
            *flags = f;
            return 1;
        }
        if (ch < 0x20)
            return 0;
        if (ch == '\\') {
            f |= S_ESCAPE;
            if (c->end - c->p < 2)
                return 0;
            unsigned char esc = c->p[1];
            if (esc == '"' || esc == '\\' || esc == '/' || esc == 'b' || esc == 'f' || esc == 'n' || esc == 'r' ||
                esc == 't') {
                c->p += 2;
                continue;
            }
            if (esc != 'u' || c->end - c->p < 6)
                return 0;
            for (int k = 2; k < 6; k++)
                if (!is_hex(c->p[k]))
                    return 0;
            if ((c->p[2] == 'd' || c->p[2] == 'D') && !(c->p[3] >= '0' && c->p[3] <= '7')) {
                /* \uD800-\uDFFF: only a high surrogate followed at once by a low one (an emoji
                 * as json.dumps writes it) is text; a lone one is left to the validator */
                if (!is_high_escape(c->p) || c->end - c->p < 12 || c->p[6] != '\\' || c->p[7] != 'u' ||
                    !is_low_escape(c->p + 6))
                    return 0;
                c->p += 12;
                continue;
            }
            c->p += 6;
            continue;
        }
        if (ch >= 0x80) {
            f |= S_NON_ASCII;
            if (!utf8_char(c))
                return 0;
            continue;
        }
        if (ch == 0x7F)
            f |= S_DEL;
        c->p++;
    }
    return 0;
}

/* A JSON number at c->p, strict grammar; advances past it. 0 if not one. */
static int
scan_number(Cur *c)
{
    const unsigned char *p = c->p, *e = c->end;
    if (p < e && *p == '-')
        p++;
    if (p >= e)
        return 0;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < e && is_digit(*p))
            p++;
    else
        return 0;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || !is_digit(*p))
            return 0;
        while (p < e && is_digit(*p))
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || !is_digit(*p))
            return 0;
        while (p < e && is_digit(*p))
            p++;
    }
    c->p = p;
    return 1;
}

static int
scan_literal(Cur *c, const char *word, Py_ssize_t len)
{
    if (c->end - c->p < len || memcmp(c->p, word, (size_t)len) != 0)
        return 0;
    c->p += len;
    return 1;
}

/* An object member's key and its ':' (after whitespace): the key's content is *len bytes
 * from *start, what it held in *flags. 0 if not one. */
static int
read_key(Cur *c, const unsigned char **start, Py_ssize_t *len, int *flags)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p != '"' || !scan_string(c, start, flags))
        return 0;
    *len = c->p - 1 - *start;
    skip_ws(c);
    if (c->p >= c->end || *c->p != ':')
        return 0;
    c->p++;
    return 1;
}

/* After a member or an element: 1 at ',' (another follows), 2 at `close` (the container
 * ends), 0 at anything else; advances past what it read. */
static int
after_item(Cur *c, unsigned char close)
{
    skip_ws(c);
    if (c->p >= c->end)
        return 0;
    if (*c->p == close) {
        c->p++;
        return 2;
    }
    if (*c->p != ',')
        return 0;
    c->p++;
    return 1;
}

static int skip_value(Cur *c, int depth);

/* An object ('{', close '}': keyed members) or an array ('[', close ']') at c->p, checked
 * and skipped. */
static int
skip_container(Cur *c, int depth, unsigned char close)
{
    const unsigned char *s;
    Py_ssize_t n;
    int f;
    if (depth >= MAX_DEPTH)
        return 0;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 1;
    }
    for (;;) {
        if (close == '}' && !read_key(c, &s, &n, &f))
            return 0;
        if (!skip_value(c, depth + 1))
            return 0;
        int next = after_item(c, close);
        if (next != 1)
            return next == 2;
    }
}

/* Any JSON value at c->p (after whitespace), checked and skipped. */
static int
skip_value(Cur *c, int depth)
{
    const unsigned char *s;
    int f;
    skip_ws(c);
    if (c->p >= c->end)
        return 0;
    switch (*c->p) {
    case '"':
        return scan_string(c, &s, &f);
    case '{':
        return skip_container(c, depth, '}');
    case '[':
        return skip_container(c, depth, ']');
    case 't':
        return scan_literal(c, "true", 4);
    case 'f':
        return scan_literal(c, "false", 5);
    case 'n':
        return scan_literal(c, "null", 4);
    default:
        return scan_number(c);
    }
}

/* A non-negative JSON number at c->p as a double (Python's correctly rounded strtod). */
static int
read_number(Cur *c, double *out)
{
    const unsigned char *s = c->p;
    char buf[MAX_NUMBER_CHARS + 1];
    if (c->p >= c->end || *c->p == '-' || !scan_number(c))
        return 0;
    Py_ssize_t len = c->p - s;
    if (len > MAX_NUMBER_CHARS)
        return 0;
    memcpy(buf, s, (size_t)len);
    buf[len] = '\0';
    char *stop = NULL;
    double v = PyOS_string_to_double(buf, &stop, NULL);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (stop != buf + len)
        return 0;
    *out = v;
    return 1;
}

/* 0 or 1 (a JSON integer of one digit); with allow_null, null as -1. */
static int
read_flag(Cur *c, int allow_null, int8_t *out)
{
    if (c->p < c->end && (*c->p == '0' || *c->p == '1')) {
        *out = (int8_t)(*c->p - '0');
        c->p++;
        /* "01", "1.0", "1e0": the next character must end the value */
        if (c->p < c->end && (is_digit(*c->p) || *c->p == '.' || *c->p == 'e' || *c->p == 'E'))
            return 0;
        return 1;
    }
    if (allow_null && scan_literal(c, "null", 4)) {
        *out = -1;
        return 1;
    }
    return 0;
}

static int
digits(const unsigned char *p, int n, int *out)
{
    int v = 0;
    for (int k = 0; k < n; k++) {
        if (!is_digit(p[k]))
            return 0;
        v = v * 10 + (p[k] - '0');
    }
    *out = v;
    return 1;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int
days_in_month(int y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return 29;
    return dm[m - 1];
}

/* RFC 3339 text (no escape) -> epoch seconds, as parse_timestamp computes them. */
static int
parse_stamp(const unsigned char *p, Py_ssize_t len, double *out)
{
    int y, mo, d, h, mi, s, us = 0, off = 0;
    if (len < 20)
        return 0;
    if (!digits(p, 4, &y) || p[4] != '-' || !digits(p + 5, 2, &mo) || p[7] != '-' || !digits(p + 8, 2, &d))
        return 0;
    if (!(p[10] == 'T' || p[10] == 't' || p[10] == ' '))
        return 0;
    if (!digits(p + 11, 2, &h) || p[13] != ':' || !digits(p + 14, 2, &mi) || p[16] != ':' || !digits(p + 17, 2, &s))
        return 0;
    if (y < 1900 || y > 2200 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        s > 59)
        return 0;
    Py_ssize_t i = 19;
    if (p[i] == '.') {
        Py_ssize_t f0 = ++i;
        while (i < len && is_digit(p[i]))
            i++;
        Py_ssize_t nf = i - f0;
        if (nf < 1 || nf > 9)
            return 0;
        for (Py_ssize_t k = 0; k < 6; k++)
            us = us * 10 + (k < nf ? p[f0 + k] - '0' : 0);
        if (nf > 6 && p[f0 + 6] >= '5')
            us += 1; /* nanosecond stamps: to the microsecond, half up */
    }
    if (i >= len)
        return 0;
    if (p[i] == 'Z' || p[i] == 'z') {
        i++;
    }
    else if (p[i] == '+' || p[i] == '-') {
        int oh, om;
        if (len - i < 6 || !digits(p + i + 1, 2, &oh) || p[i + 3] != ':' || !digits(p + i + 4, 2, &om) ||
            oh > 23 || om > 59)
            return 0;
        off = (oh * 3600 + om * 60) * (p[i] == '-' ? -1 : 1);
        i += 6;
    }
    else
        return 0;
    if (i != len)
        return 0;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - off;
    int64_t micros = secs * 1000000 + us;
    /* exact in a double (|micros| < 2**53 for these years), then one correctly rounded
     * division: datetime.timestamp's timedelta.total_seconds() */
    *out = (double)micros / 1e6;
    return 1;
}

/* CRC-32C (Castagnoli) of a whole event: its fingerprint, as the crc32c package computes it
 * (initial value and final xor 0xFFFFFFFF). SSE 4.2's crc32 instruction where the CPU has it,
 * else a table (the same function, slower). */
static uint32_t crc_table[256];
static int crc_hardware;

static void
init_crc(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t r = i;
        for (int k = 0; k < 8; k++)
            r = (r >> 1) ^ (0x82F63B78u & (0u - (r & 1u)));
        crc_table[i] = r;
    }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    crc_hardware = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t
crc_sse42(const unsigned char *p, Py_ssize_t n)
{
    uint64_t r = 0xFFFFFFFFu;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        r = __builtin_ia32_crc32di(r, v);
        p += 8;
        n -= 8;
    }
    uint32_t r32 = (uint32_t)r;
    while (n-- > 0)
        r32 = __builtin_ia32_crc32qi(r32, *p++);
    return r32 ^ 0xFFFFFFFFu;
}
#endif

static uint32_t
crc32c(const unsigned char *p, Py_ssize_t n)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (crc_hardware)
        return crc_sse42(p, n);
#endif
    uint32_t r = 0xFFFFFFFFu;
    while (n-- > 0)
        r = (r >> 8) ^ crc_table[(r ^ *p++) & 0xFFu];
    return r ^ 0xFFFFFFFFu;
}

enum { F_SCHEMA, F_ID, F_MODEL, F_VERSION, F_TS, F_SCORE, F_DECISION, F_ATTRS, F_FEATURES, F_LABEL, F_OTHER };

static int
field_of(const unsigned char *k, Py_ssize_t n)
{
#define IS(word) (n == (Py_ssize_t)sizeof(word) - 1 && memcmp(k, word, sizeof(word) - 1) == 0)
    if (IS("schema"))
        return F_SCHEMA;
    if (IS("decision_id"))
        return F_ID;
    if (IS("model"))
        return F_MODEL;
    if (IS("model_version"))
        return F_VERSION;
    if (IS("ts"))
        return F_TS;
    if (IS("score"))
        return F_SCORE;
    if (IS("decision"))
        return F_DECISION;
    if (IS("attributes"))
        return F_ATTRS;
    if (IS("features"))
        return F_FEATURES;
    if (IS("label"))
        return F_LABEL;
    return F_OTHER;
#undef IS
}

/* One event's fields (spans into its bytes; numbers parsed) */
typedef struct {
    const unsigned char *id, *model, *version, *attrs;
    Py_ssize_t id_len, model_len, version_len, attrs_len;
    int id_flags;
    double ts, score;
    int8_t decision, label;
} Event;

/* A name field (model, model_version): printable ASCII, 1..max_name bytes. */
static int
read_name(Cur *c, Py_ssize_t max_name, const unsigned char **s, Py_ssize_t *n)
{
    int f;
    if (c->p >= c->end || *c->p != '"' || !scan_string(c, s, &f) || f != 0)
        return 0;
    *n = c->p - 1 - *s;
    return *n >= 1 && *n <= max_name;
}

/* Parse one event. outcome: outcome/v1 (label required; no version/score/decision/attrs). */
static int
parse_event(const unsigned char *buf, Py_ssize_t len, int outcome, Py_ssize_t max_name, Event *ev)
{
    Cur c = {buf, buf + len};
    unsigned int seen = 0;
    const unsigned char *s;
    int f;
    ev->label = -1;
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return 0;
    c.p++;
    for (;;) {
        Py_ssize_t key_len;
        if (!read_key(&c, &s, &key_len, &f) || (f & S_ESCAPE))
            return 0; /* an escaped key could spell a field's name */
        int field = field_of(s, key_len);
        skip_ws(&c);
        if (field != F_OTHER) {
            if (seen & (1u << field))
                return 0; /* a repeated field: the validator takes the last; leave it to it */
            seen |= 1u << field;
        }
        if (outcome && (field == F_VERSION || field == F_SCORE || field == F_DECISION || field == F_ATTRS ||
                        field == F_FEATURES))
            field = F_OTHER; /* not read from an outcome */
        switch (field) {
        case F_SCHEMA: {
            const char *want = outcome ? "outcome/v1" : "decision/v1";
            Py_ssize_t wn = (Py_ssize_t)strlen(want);
            if (c.p >= c.end || *c.p != '"' || !scan_string(&c, &s, &f) || f != 0 || c.p - 1 - s != wn ||
                memcmp(s, want, (size_t)wn) != 0)
                return 0;
            break;
        }
        case F_ID:
            if (c.p >= c.end || *c.p != '"' || !scan_string(&c, &ev->id, &ev->id_flags) ||
                (ev->id_flags & S_ESCAPE))
                return 0;
            ev->id_len = c.p - 1 - ev->id;
            if (ev->id_len < 1)
                return 0;
            break;
        case F_MODEL:
            if (!read_name(&c, max_name, &ev->model, &ev->model_len))
                return 0;
            break;
        case F_VERSION:
            if (!read_name(&c, max_name, &ev->version, &ev->version_len))
                return 0;
            break;
        case F_TS:
            if (c.p < c.end && *c.p == '"') {
                if (!scan_string(&c, &s, &f) || f != 0 || !parse_stamp(s, c.p - 1 - s, &ev->ts))
                    return 0;
            }
            else if (!read_number(&c, &ev->ts))
                return 0;
            break;
        case F_SCORE:
            if (!read_number(&c, &ev->score) || !(ev->score >= 0.0 && ev->score <= 1.0))
                return 0;
            break;
        case F_DECISION:
            if (!read_flag(&c, 0, &ev->decision))
                return 0;
            break;
        case F_ATTRS:
            ev->attrs = c.p;
            if (c.p >= c.end || *c.p != '{' || !skip_value(&c, 1))
                return 0;
            ev->attrs_len = c.p - ev->attrs;
            break;
        case F_FEATURES:
            if (c.p < c.end && *c.p == 'n') {
                if (!scan_literal(&c, "null", 4))
                    return 0;
            }
            else if (c.p >= c.end || *c.p != '{' || !skip_value(&c, 1))
                return 0;
            break;
        case F_LABEL:
            if (!read_flag(&c, !outcome, &ev->label))
                return 0;
            break;
        default:
            if (!skip_value(&c, 1))
                return 0;
        }
        int next = after_item(&c, '}');
        if (next == 0)
            return 0;
        if (next == 2)
            break;
    }
    skip_ws(&c);
    if (c.p != c.end)
        return 0;
    unsigned int need = (1u << F_SCHEMA) | (1u << F_ID) | (1u << F_MODEL) | (1u << F_TS);
    need |= outcome ? (1u << F_LABEL)
                    : (1u << F_VERSION) | (1u << F_SCORE) | (1u << F_DECISION) | (1u << F_ATTRS);
    return (seen & need) == need;
}

/* The same text as the previous event's: its str again (a run is mostly one model). */
static PyObject *
name_str(const unsigned char *s, Py_ssize_t n, const unsigned char **last, Py_ssize_t *last_n, PyObject **last_obj)
{
    if (*last_obj != NULL && n == *last_n && memcmp(s, *last, (size_t)n) == 0) {
        Py_INCREF(*last_obj);
        return *last_obj;
    }
    PyObject *o = PyUnicode_FromStringAndSize((const char *)s, n); /* ASCII, checked */
    if (o != NULL) {
        *last = s;
        *last_n = n;
        *last_obj = o;
    }
    return o;
}

static PyObject *
decode_run(PyObject *raws, int outcome, Py_ssize_t max_bytes, Py_ssize_t max_id, Py_ssize_t max_name)
{
    if (!PyList_Check(raws))
        Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(raws);
    PyObject *ids = PyList_New(n), *models = PyList_New(n), *versions = NULL, *attrs = NULL;
    PyObject *ts = PyByteArray_FromStringAndSize(NULL, n * 8), *label = PyByteArray_FromStringAndSize(NULL, n);
    PyObject *score = NULL, *decision = NULL, *fingerprint = NULL, *result = NULL;
    if (!outcome) {
        versions = PyList_New(n);
        attrs = PyList_New(n);
        score = PyByteArray_FromStringAndSize(NULL, n * 8);
        decision = PyByteArray_FromStringAndSize(NULL, n);
        fingerprint = PyByteArray_FromStringAndSize(NULL, n * 4);
    }
    if (ids == NULL || models == NULL || ts == NULL || label == NULL ||
        (!outcome && (versions == NULL || attrs == NULL || score == NULL || decision == NULL || fingerprint == NULL)))
        goto done;
    double *ts_out = (double *)PyByteArray_AS_STRING(ts);
    int8_t *label_out = (int8_t *)PyByteArray_AS_STRING(label);
    double *score_out = outcome ? NULL : (double *)PyByteArray_AS_STRING(score);
    int8_t *decision_out = outcome ? NULL : (int8_t *)PyByteArray_AS_STRING(decision);
    uint32_t *fingerprint_out = outcome ? NULL : (uint32_t *)PyByteArray_AS_STRING(fingerprint);
    const unsigned char *lm = NULL, *lv = NULL;
    Py_ssize_t lm_n = 0, lv_n = 0;
    PyObject *lm_obj = NULL, *lv_obj = NULL; /* borrowed: each is held by its list */
    Py_ssize_t filled = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *raw = PyList_GET_ITEM(raws, j);
        Event ev;
        if (!PyBytes_Check(raw) || PyBytes_GET_SIZE(raw) > max_bytes ||
            !parse_event((const unsigned char *)PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), outcome, max_name,
                         &ev))
            break;
        PyObject *id;
        if (ev.id_flags & S_NON_ASCII) {
            id = PyUnicode_DecodeUTF8((const char *)ev.id, ev.id_len, "strict");
            if (id == NULL) { /* not expected: scan_string checked the UTF-8 */
                PyErr_Clear();
                break;
            }
            if (PyUnicode_GET_LENGTH(id) > max_id) {
                Py_DECREF(id);
                break;
            }
        }
        else {
            if (ev.id_len > max_id)
                break;
            id = PyUnicode_FromStringAndSize((const char *)ev.id, ev.id_len);
        }
        if (id == NULL)
            goto done;
        PyList_SET_ITEM(ids, j, id);
        PyObject *m = name_str(ev.model, ev.model_len, &lm, &lm_n, &lm_obj);
        if (m == NULL)
            goto done;
        PyList_SET_ITEM(models, j, m);
        ts_out[j] = ev.ts;
        label_out[j] = ev.label;
        if (!outcome) {
            PyObject *v = name_str(ev.version, ev.version_len, &lv, &lv_n, &lv_obj);
            if (v == NULL)
                goto done;
            PyList_SET_ITEM(versions, j, v);
            PyObject *a = PyBytes_FromStringAndSize((const char *)ev.attrs, ev.attrs_len);
            if (a == NULL)
                goto done;
            PyList_SET_ITEM(attrs, j, a);
            score_out[j] = ev.score;
            decision_out[j] = ev.decision;
            fingerprint_out[j] = crc32c((const unsigned char *)PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw));
        }
        filled = j + 1;
    }
    if (filled != n) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    result = outcome ? PyTuple_Pack(4, ids, models, ts, label)
                     : PyTuple_Pack(9, ids, models, versions, ts, score, decision, attrs, label, fingerprint);
done:
    /* lists hold NULL in the slots not filled: PyList's dealloc skips them (Py_XDECREF) */
    Py_XDECREF(ids);
    Py_XDECREF(models);
    Py_XDECREF(versions);
    Py_XDECREF(attrs);
    Py_XDECREF(ts);
    Py_XDECREF(label);
    Py_XDECREF(score);
    Py_XDECREF(decision);
    Py_XDECREF(fingerprint);
    return result;
}

static PyObject *
fp_decisions(PyObject *self, PyObject *args)
{
    PyObject *raws;
    Py_ssize_t max_bytes, max_id, max_name;
    if (!PyArg_ParseTuple(args, "Onnn", &raws, &max_bytes, &max_id, &max_name))
        return NULL;
    return decode_run(raws, 0, max_bytes, max_id, max_name);
}

static PyObject *
fp_outcomes(PyObject *self, PyObject *args)
{
    PyObject *raws;
    Py_ssize_t max_bytes, max_id, max_name;
    if (!PyArg_ParseTuple(args, "Onnn", &raws, &max_bytes, &max_id, &max_name))
        return NULL;
    return decode_run(raws, 1, max_bytes, max_id, max_name);
}

static PyObject *
fp_stamp(PyObject *self, PyObject *arg)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    double v;
    if (s == NULL)
        return NULL;
    if (!parse_stamp((const unsigned char *)s, n, &v))
        Py_RETURN_NONE;
    return PyFloat_FromDouble(v);
}

static PyObject *
fp_crc32c(PyObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "crc32c() takes bytes");
        return NULL;
    }
    return PyLong_FromUnsignedLong(crc32c((const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg)));
}

static PyMethodDef methods[] = {
    {"decisions", fp_decisions, METH_VARARGS,
     "decisions(raws: list[bytes], max_bytes, max_id, max_name) -> (ids, models, versions, ts, score, decision, "
     "attributes, label, fingerprint) or None.\n\nts and score: float64 bytearrays; decision and label: int8 "
     "bytearrays (label -1: null or absent); attributes: each event's raw JSON object; fingerprint: uint32 "
     "bytearray, the CRC-32C of each event. None: some event is not in a form this reads."},
    {"outcomes", fp_outcomes, METH_VARARGS,
     "outcomes(raws: list[bytes], max_bytes, max_id, max_name) -> (ids, models, ts, label) or None."},
    {"crc32c", fp_crc32c, METH_O, "crc32c(data: bytes) -> the CRC-32C of data (the fingerprint's function)."},
    {"stamp", fp_stamp, METH_O,
     "stamp(text) -> epoch seconds of an RFC 3339 time in the forms the fast path reads, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath",
    "The decision/outcome fast path in C: certain acceptances only, None for anything else.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    init_plain();
    init_crc();
    return PyModule_Create(&module);
}
