/*-------------------------------------------------------------------------
 *
 * config.c
 *      hotstockd's command line and settings: flags and DIR/hotstockd.conf.
 *
 * Settings come from three places, later ones winning: the defaults below,
 * DIR/hotstockd.conf (`key = value` lines, `#` comments), and flags
 * (`--sku-capacity 4096` or `--sku_capacity=4096`).  Every value is checked
 * against its range before anything else happens; a bad one stops the
 * command with one line naming the setting (and the conf file line) and
 * exit code 2.  Nothing here is shared between threads: it all runs before
 * the daemon starts any.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "daemon.h"

#define KiB UINT64_C(1024)
#define MiB (KiB * 1024)
#define GiB (MiB * 1024)

/* One setting: its name in the conf file (flags use the same with '-' or
 * '_'), range, and where it lives in hsd_settings. */
typedef struct hsd_setting_def {
    const char *name;
    uint64_t min, max, def;
    bool bytes; /* accepts a K/M/G suffix (binary units) */
    size_t offset;
    size_t width; /* 4 or 8 */
    const char *help;
} hsd_setting_def;

#define FIELD(f) offsetof(hsd_settings, f), sizeof(((hsd_settings *)0)->f)

static const hsd_setting_def hsd_setting_defs[] = {
    {"sku_capacity", 1, UINT64_C(1) << 24, 65536, false, FIELD(sku_capacity),
     "SKU table slots (rounded up to a power of 2)"},
    {"order_capacity", 1, UINT64_C(1) << 27, 1048576, false, FIELD(order_capacity),
     "order index slots (rounded up to a power of 2)"},
    {"buyer_capacity", 4, UINT64_C(1) << 26, 65536, false, FIELD(buyer_capacity),
     "(SKU, buyer) entries of the per-buyer limits (rounded up to a power of 2)"},
    {"buyer_retention", 0, 30 * 86400, 60, false, FIELD(buyer_retention_s),
     "seconds after a sale's end before its buyers' counts are forgotten"},
    {"ring_capacity", 2, UINT64_C(1) << 24, 65536, false, FIELD(ring_capacity),
     "write-ahead ring slots (rounded up to a power of 2)"},
    {"flush_interval_ms", 1, 10000, 10, false, FIELD(flush_interval_ms),
     "fdatasync at least this often while records wait"},
    {"queue_file_size", 64 * KiB, UINT64_C(1) << 40, 64 * MiB, true, FIELD(queue_file_size),
     "bytes per queue file before the next one starts (K/M/G suffix)"},
    {"checkpoint_interval_s", 0, 86400, 60, false, FIELD(checkpoint_interval_s),
     "seconds between checkpoints (0: on request and at stop only)"},
    {"order_retention", 0, 86400, 60, false, FIELD(order_retention_s),
     "seconds a drained order stays in the order index before it is evicted"},
    {"evicted_filter_size", 64 * KiB, 4 * GiB, 32 * MiB, true, FIELD(evicted_filter_size),
     "bytes of the evicted-order filter of a new data directory (K/M/G suffix; rounded up "
     "to a power of 2)"},
    {"hot_k", 0, HS_HOT_K_MAX, HS_HOT_K_DEFAULT, false, FIELD(hot_k),
     "SKUs in the hot-SKU table (hotstock.hot_skus; 0: no hot-SKU tracking)"},
    {"spiller_poll_us", 0, 10000, 200, false, FIELD(spiller_poll_us),
     "microseconds the spiller polls for the next record after a flush someone waited for, "
     "before it sleeps (0: sleeps at once)"},
    {"waiter_spin_us", 0, 10000, 300, false, FIELD(waiter_spin_us),
     "microseconds a lone synchronous client spins for its flush before it sleeps "
     "(0: sleeps at once)"},
};
#define HSD_NSETTINGS (sizeof(hsd_setting_defs) / sizeof(hsd_setting_defs[0]))

/* Old names still accepted, with a warning naming the new one.
 * segment_size sized queue FILES, not the shared-memory segment. */
static const struct {
    const char *old_name;
    const char *name;
} hsd_setting_aliases[] = {
    {"segment_size", "queue_file_size"},
};
#define HSD_NALIASES (sizeof(hsd_setting_aliases) / sizeof(hsd_setting_aliases[0]))

void
hsd_usage(FILE *out)
{
    fprintf(out,
            "hotstockd: the hotstock daemon (shared-memory stock counters, write-ahead queue)\n"
            "\n"
            "usage:\n"
            "  hotstockd start -D DIR [--foreground] [settings]\n"
            "  hotstockd stop -D DIR [--mode smart|immediate] [--timeout SECONDS]\n"
            "  hotstockd status -D DIR [--json]\n"
            "  hotstockd checkpoint -D DIR [--timeout SECONDS]\n"
            "\n"
            "start is idempotent: on a DIR whose daemon runs it says so and exits 0.\n"
            "Exit codes: 0 ok, 1 failed, 2 bad usage/setting/DIR, 3 not running.\n"
            "\n"
            "settings (flags win over DIR/" HSD_CONF_FILE " `key = value` lines):\n");
    for (size_t i = 0; i < HSD_NSETTINGS; i++) {
        const hsd_setting_def *s = &hsd_setting_defs[i];
        fprintf(out, "  --%-24s %s; default %" PRIu64 ", %" PRIu64 "..%" PRIu64 "\n", s->name,
                s->help, s->def, s->min, s->max);
    }
}

/* Is name[0..len) the setting name n?  '-' and '_' are the same. */
static bool
hsd_name_is(const char *name, size_t len, const char *n)
{
    if (strlen(n) != len)
        return false;
    for (size_t j = 0; j < len; j++) {
        char a = name[j] == '-' ? '_' : name[j];
        if (a != n[j])
            return false;
    }
    return true;
}

/* The current name of a deprecated setting name, or NULL if name is not
 * one. */
static const char *
hsd_setting_renamed(const char *name, size_t len)
{
    for (size_t i = 0; i < HSD_NALIASES; i++)
        if (hsd_name_is(name, len, hsd_setting_aliases[i].old_name))
            return hsd_setting_aliases[i].name;
    return NULL;
}

/* Find a setting by name, or by a deprecated name; '-' and '_' are the
 * same.  NULL if unknown. */
static const hsd_setting_def *
hsd_setting_find(const char *name, size_t len)
{
    const char *renamed = hsd_setting_renamed(name, len);

    if (renamed != NULL) {
        name = renamed;
        len = strlen(renamed);
    }
    for (size_t i = 0; i < HSD_NSETTINGS; i++)
        if (hsd_name_is(name, len, hsd_setting_defs[i].name))
            return &hsd_setting_defs[i];
    return NULL;
}

/*
 * Parse value for setting s into *out.  Digits only (no sign, no spaces),
 * with an optional K/M/G (or KiB, KB...) suffix where s->bytes.  Returns
 * true, or false with why[] saying what is wrong.
 */
static bool
hsd_setting_parse(const hsd_setting_def *s, const char *value, uint64_t *out, char *why,
                  size_t whylen)
{
    const char *p = value;
    uint64_t v = 0, mult = 1;

    if (!isdigit((unsigned char)*p)) {
        snprintf(why, whylen, "not a number");
        return false;
    }
    while (isdigit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            snprintf(why, whylen, "out of range (%" PRIu64 "..%" PRIu64 ")", s->min, s->max);
            return false;
        }
        v = v * 10 + d;
        p++;
    }
    if (*p != '\0') {
        const char *unit = p;

        if (!s->bytes) {
            snprintf(why, whylen, "not a number");
            return false;
        }
        switch (toupper((unsigned char)*p)) {
        case 'K':
            mult = KiB;
            break;
        case 'M':
            mult = MiB;
            break;
        case 'G':
            mult = GiB;
            break;
        default:
            snprintf(why, whylen, "unknown unit \"%s\" (K, M or G)", unit);
            return false;
        }
        p++;
        if (strcasecmp(p, "") != 0 && strcasecmp(p, "B") != 0 && strcasecmp(p, "iB") != 0) {
            snprintf(why, whylen, "unknown unit \"%s\" (K, M or G)", unit);
            return false;
        }
        if (v > UINT64_MAX / mult) {
            snprintf(why, whylen, "out of range (%" PRIu64 "..%" PRIu64 ")", s->min, s->max);
            return false;
        }
        v *= mult;
    }
    if (v < s->min || v > s->max) {
        snprintf(why, whylen, "out of range (%" PRIu64 "..%" PRIu64 ")", s->min, s->max);
        return false;
    }
    *out = v;
    return true;
}

static void
hsd_setting_store(hsd_settings *st, const hsd_setting_def *s, uint64_t v)
{
    char *p = (char *)st + s->offset;

    if (s->width == sizeof(uint32_t))
        *(uint32_t *)p = (uint32_t)v;
    else
        *(uint64_t *)p = v;
}

uint32_t
hsd_pow2_ceil(uint32_t v)
{
    uint32_t p = 1;

    while (p < v)
        p <<= 1;
    return p;
}

/* Strip leading and trailing blanks in place; returns the new start. */
static char *
hsd_trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* Read real_dir/hotstockd.conf into st.  A missing file is no error. */
static int
hsd_conf_load(const char *real_dir, hsd_settings *st)
{
    char path[PATH_MAX + 32], line[1024], why[256];
    unsigned lineno = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", real_dir, HSD_CONF_FILE);
    f = fopen(path, "re");
    if (f == NULL) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "hotstockd: cannot read %s: %s\n", path, strerror(errno));
        return HSD_EXIT_USAGE;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        const hsd_setting_def *s;
        char *key, *value, *eq, *hash;
        uint64_t v;

        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            fprintf(stderr, "hotstockd: %s:%u: line longer than %zu bytes\n", path, lineno,
                    sizeof(line) - 2);
            fclose(f);
            return HSD_EXIT_USAGE;
        }
        hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        key = hsd_trim(line);
        if (*key == '\0')
            continue;
        eq = strchr(key, '=');
        if (eq == NULL) {
            fprintf(stderr, "hotstockd: %s:%u: expected \"key = value\", found \"%s\"\n", path,
                    lineno, key);
            fclose(f);
            return HSD_EXIT_USAGE;
        }
        *eq = '\0';
        key = hsd_trim(key);
        value = hsd_trim(eq + 1);
        s = hsd_setting_find(key, strlen(key));
        if (s == NULL || strchr(key, '-') != NULL) {
            fprintf(stderr, "hotstockd: %s:%u: unknown setting \"%s\"\n", path, lineno, key);
            fclose(f);
            return HSD_EXIT_USAGE;
        }
        if (hsd_setting_renamed(key, strlen(key)) != NULL)
            fprintf(stderr, "hotstockd: %s:%u: setting \"%s\" is deprecated; use \"%s\"\n", path,
                    lineno, key, s->name);
        if (!hsd_setting_parse(s, value, &v, why, sizeof(why))) {
            fprintf(stderr, "hotstockd: %s:%u: %s = \"%s\": %s\n", path, lineno, s->name, value,
                    why);
            fclose(f);
            return HSD_EXIT_USAGE;
        }
        hsd_setting_store(st, s, v);
    }
    if (ferror(f)) {
        fprintf(stderr, "hotstockd: cannot read %s: %s\n", path, strerror(errno));
        fclose(f);
        return HSD_EXIT_USAGE;
    }
    fclose(f);
    return 0;
}

int
hsd_settings_load(const hsd_cli *cli, const char *real_dir, hsd_settings *out)
{
    char why[256];
    int rc;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < HSD_NSETTINGS; i++)
        hsd_setting_store(out, &hsd_setting_defs[i], hsd_setting_defs[i].def);
    rc = hsd_conf_load(real_dir, out);
    if (rc != 0)
        return rc;
    for (int i = 0; i < cli->nsettings; i++) {
        const hsd_setting_def *s =
            hsd_setting_find(cli->settings[i].key, strlen(cli->settings[i].key));
        uint64_t v;

        /* flags were checked by hsd_cli_parse(); parse again to store */
        if (s == NULL || !hsd_setting_parse(s, cli->settings[i].value, &v, why, sizeof(why))) {
            fprintf(stderr, "hotstockd: --%s \"%s\": invalid\n", cli->settings[i].key,
                    cli->settings[i].value);
            return HSD_EXIT_USAGE;
        }
        hsd_setting_store(out, s, v);
    }
    return 0;
}

/*-------------------------------------------------------------------------
 * Command line
 *-------------------------------------------------------------------------
 */

/* One line on stderr; returns HSD_EXIT_USAGE. */
static int __attribute__((format(printf, 1, 2))) hsd_usage_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "hotstockd: %s (see hotstockd --help)\n", msg);
    return HSD_EXIT_USAGE;
}

/* Does option `opt` apply to command cmd? */
static bool
hsd_option_applies(hsd_command cmd, const char *opt)
{
    if (strcmp(opt, "foreground") == 0)
        return cmd == HSD_CMD_START;
    if (strcmp(opt, "json") == 0)
        return cmd == HSD_CMD_STATUS;
    if (strcmp(opt, "mode") == 0)
        return cmd == HSD_CMD_STOP;
    if (strcmp(opt, "timeout") == 0)
        return cmd == HSD_CMD_STOP || cmd == HSD_CMD_CHECKPOINT;
    return true;
}

/*
 * hotstockd COMMAND [options].  Options may come in any order after the
 * command; "--name=value" and "--name value" are both accepted, as are
 * "-D DIR" and "-DDIR".
 */
int
hsd_cli_parse(int argc, char **argv, hsd_cli *cli)
{
    static const struct {
        const char *name;
        hsd_command cmd;
    } commands[] = {{"start", HSD_CMD_START},
                    {"stop", HSD_CMD_STOP},
                    {"status", HSD_CMD_STATUS},
                    {"checkpoint", HSD_CMD_CHECKPOINT},
                    {"help", HSD_CMD_HELP}};
    char why[256];

    memset(cli, 0, sizeof(*cli));
    cli->stop_mode = HSD_STOP_SMART;
    cli->timeout_s = HSD_DEFAULT_TIMEOUT_S;

    if (argc < 2) {
        hsd_usage(stderr);
        return HSD_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        hsd_usage(stdout);
        return HSD_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            cli->command = commands[i].cmd;
    if (cli->command == HSD_CMD_NONE)
        return hsd_usage_error("unknown command \"%s\"", argv[1]);
    if (cli->command == HSD_CMD_HELP) {
        hsd_usage(stdout);
        return HSD_EXIT_OK;
    }

    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        char name[64];
        const char *value = NULL;
        const char *eq;
        size_t len;

        if (strcmp(arg, "-D") == 0 || strcmp(arg, "--data-dir") == 0) {
            if (i + 1 >= argc)
                return hsd_usage_error("%s needs a directory", arg);
            cli->dir = argv[++i];
            continue;
        }
        if (strncmp(arg, "-D", 2) == 0 && arg[2] != '\0') {
            cli->dir = arg + 2;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            hsd_usage(stdout);
            return HSD_EXIT_OK;
        }
        if (strncmp(arg, "--", 2) != 0)
            return hsd_usage_error("unexpected argument \"%s\"", arg);

        /* --name[=value] */
        eq = strchr(arg + 2, '=');
        len = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
        if (len == 0 || len >= sizeof(name))
            return hsd_usage_error("unknown option \"%s\"", arg);
        memcpy(name, arg + 2, len);
        name[len] = '\0';
        for (char *p = name; *p; p++)
            if (*p == '_')
                *p = '-';
        if (eq != NULL)
            value = eq + 1;

        if (strcmp(name, "data-dir") == 0) {
            cli->dir = value;
            continue;
        }
        if (!hsd_option_applies(cli->command, name))
            return hsd_usage_error("option --%s does not apply to \"%s\"", name, argv[1]);

        if (strcmp(name, "foreground") == 0 || strcmp(name, "json") == 0) {
            if (value != NULL)
                return hsd_usage_error("option --%s takes no value", name);
            if (name[0] == 'f')
                cli->foreground = true;
            else
                cli->json = true;
            continue;
        }

        /* the rest take a value */
        if (strcmp(name, "mode") != 0 && strcmp(name, "timeout") != 0 &&
            hsd_setting_find(name, strlen(name)) == NULL)
            return hsd_usage_error("unknown option \"--%s\"", name);
        if (value == NULL) {
            if (i + 1 >= argc)
                return hsd_usage_error("option --%s needs a value", name);
            value = argv[++i];
        }
        if (strcmp(name, "mode") == 0) {
            if (strcmp(value, "smart") == 0)
                cli->stop_mode = HSD_STOP_SMART;
            else if (strcmp(value, "immediate") == 0)
                cli->stop_mode = HSD_STOP_IMMEDIATE;
            else
                return hsd_usage_error("--mode \"%s\": expected smart or immediate", value);
            continue;
        }
        if (strcmp(name, "timeout") == 0) {
            char *end;
            long t;

            errno = 0;
            t = strtol(value, &end, 10);
            if (errno != 0 || *end != '\0' || end == value || t < 1 || t > 86400)
                return hsd_usage_error("--timeout \"%s\": expected seconds, 1..86400", value);
            cli->timeout_s = (int)t;
            continue;
        }

        /* a setting */
        {
            const hsd_setting_def *s = hsd_setting_find(name, strlen(name));
            uint64_t v;

            if (s == NULL)
                return hsd_usage_error("unknown option \"--%s\"", name);
            if (cli->command != HSD_CMD_START)
                return hsd_usage_error("option --%s does not apply to \"%s\"", name, argv[1]);
            if (hsd_setting_renamed(name, strlen(name)) != NULL) {
                char flag[64];

                snprintf(flag, sizeof(flag), "%s", s->name);
                for (char *p = flag; *p; p++)
                    if (*p == '_')
                        *p = '-';
                fprintf(stderr, "hotstockd: option --%s is deprecated; use --%s\n", name, flag);
            }
            if (!hsd_setting_parse(s, value, &v, why, sizeof(why))) {
                fprintf(stderr, "hotstockd: --%s \"%s\": %s\n", name, value, why);
                return HSD_EXIT_USAGE;
            }
            if (cli->nsettings >= HSD_MAX_FLAG_SETTINGS)
                return hsd_usage_error("too many settings on the command line");
            cli->settings[cli->nsettings].key = s->name;
            cli->settings[cli->nsettings].value = value;
            cli->nsettings++;
        }
    }

    if (cli->dir == NULL || cli->dir[0] == '\0')
        return hsd_usage_error("no data directory: use -D DIR");
    return -1;
}
