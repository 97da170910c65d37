/*-------------------------------------------------------------------------
 *
 * stats_count.c
 *      Counting per-SKU statistics and feeding the hot-SKU sketch: the
 *      hook every counted path calls (hs_stats_note) and the count of
 *      every record a client appends (hs_stats_records, from ring.c).
 *      On the fast path of every take: it calls nothing but atomics.
 *
 * What it shares: the statistics regions of the segment (segment_stats.h
 * gives the protocol): per-SKU lines of relaxed counters, and the
 * HeavyKeeper sketch (CAS on one word per row).  Nothing here orders
 * anything else: a statistic is never read to decide a take.
 *
 * Cost.  Counted where the work already is: a deduction adds one relaxed
 * fetch_add and one store to its SKU's statistics line (the buyers of a
 * hot SKU share that line as they share the counter's), and one in
 * HS_HK_SAMPLE attempts two CASes on the sketch.  The sampling is a
 * thread-local xorshift, no system call.  Measured: shmd/README.md,
 * "Statistics and hot SKUs".
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <unistd.h>

#include "client_internal.h"

/* 2^32 * 1.08^-c (c >= 1): HeavyKeeper's decay probability of a bucket
 * whose count is c (b = 1.08), as a 32-bit threshold; counts from 256 on
 * never decay (1.08^-256 < 3e-9). */
static const uint32_t hk_decay[256] = {
    4294967295, 3976821570, 3682242194, 3409483513, 3156929179, 2923082573, 2706557938, 2506072165,
    2320437189, 2148552953, 1989400883, 1842037854, 1705590606, 1579250561, 1462269038, 1353952813,
    1253660012, 1160796307, 1074811395, 995195736,  921477534,  853219939,  790018462,  731498576,
    677313496,  627142126,  580687153,  537673290,  497845639,  460968184,  426822393,  395205919,
    365931407,  338825376,  313727200,  290488148,  268970508,  249046766,  230598858,  213517461,
    197701353,  183056808,  169497044,  156941708,  145316396,  134552218,  124585387,  115356840,
    106811889,  98899897,   91573979,   84790721,   78509927,   72694377,   67309608,   62323711,
    57707140,   53432537,   49474571,   45809788,   42416470,   39274510,   36365287,   33671562,
    31177372,   28867937,   26729571,   24749603,   22916299,   21218795,   19647033,   18191697,
    16844164,   15596448,   14441155,   13371440,   12380963,   11463855,   10614680,   9828408,
    9100377,    8426275,    7802107,    7224173,    6689049,    6193564,    5734781,    5309983,
    4916650,    4552454,    4215235,    3902996,    3613885,    3346190,    3098324,    2868818,
    2656313,    2459549,    2277360,    2108667,    1952469,    1807842,    1673928,    1549933,
    1435123,    1328818,    1230387,    1139247,    1054858,    976720,     904371,     837380,
    775352,     717919,     664739,     615499,     569907,     527691,     488603,     452410,
    418898,     387869,     359138,     332535,     307903,     285095,     263977,     244423,
    226318,     209553,     194031,     179658,     166350,     154028,     142618,     132054,
    122272,     113215,     104829,     97063,      89874,      83216,      77052,      71344,
    66060,      61166,      56635,      52440,      48556,      44959,      41629,      38545,
    35690,      33046,      30598,      28332,      26233,      24290,      22490,      20824,
    19282,      17853,      16531,      15306,      14173,      13123,      12151,      11251,
    10417,      9645,       8931,       8269,       7657,       7090,       6564,       6078,
    5628,       5211,       4825,       4467,       4136,       3830,       3546,       3284,
    3040,       2815,       2607,       2413,       2235,       2069,       1916,       1774,
    1642,       1521,       1408,       1304,       1207,       1118,       1035,       958,
    887,        821,        760,        704,        652,        604,        559,        517,
    479,        444,        411,        380,        352,        326,        302,        279,
    259,        239,        222,        205,        190,        176,        163,        151,
    139,        129,        120,        111,        102,        95,         88,         81,
    75,         70,         64,         60,         55,         51,         47,         44,
    40,         37,         35,         32,         30,         27,         25,         23,
    22,         20,         18,         17,         16,         15,         13,         12,
};

/* A thread's xorshift64 state, seeded on first use. */
static __thread uint64_t hk_rng;

static inline uint64_t
hk_random(void)
{
    uint64_t x = hk_rng;

    if (__builtin_expect(x == 0, 0)) {
        /* per thread (the variable's address), process and moment */
        uint64_t seed =
            (uint64_t)(uintptr_t)&hk_rng ^ ((uint64_t)getpid() << 32) ^ hs_now_unix_us();

        x = hs_hash((const char *)&seed, sizeof(seed)) | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    hk_rng = x;
    return x;
}

/* One sampled attempt on SKU slot si into each row: the same SKU adds
 * one; an empty bucket becomes ours; another SKU's count decays by one
 * with probability 1.08^-count, and the bucket is ours once it reaches
 * zero.  Relaxed CAS: the word is the whole state.  A CAS lost twice is
 * given up (an estimate a little low under contention, never a wait). */
static void
hk_add(hs_header *h, uint32_t si, uint64_t rnd)
{
    _Atomic uint64_t *sketch = hs_sketch(h);
    const uint64_t fp = (uint64_t)si + 1;

    for (int row = 0; row < HS_HK_ROWS; row++) {
        _Atomic uint64_t *b = &sketch[hs_sketch_bucket(h, si, row)];
        uint64_t w = atomic_load_explicit(b, memory_order_relaxed);

        for (int tries = 0; tries < 2; tries++) {
            uint64_t cnt = HS_HK_COUNT(w), next;

            if (HS_HK_FP(w) == fp || cnt == 0)
                next = HS_HK_WORD(fp, cnt < HS_HK_COUNT_MASK ? cnt + 1 : cnt);
            else if (cnt < 256 && (uint32_t)(rnd >> (32 * row)) < hk_decay[cnt])
                next = cnt == 1 ? HS_HK_WORD(fp, 1) : w - 1;
            else
                break;
            if (atomic_compare_exchange_weak_explicit(b, &w, next, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        }
    }
}

/* See client_internal.h. */
void
hs_stats_note(hs_header *h, uint32_t si, hs_stat_kind kind, int64_t n)
{
    if (si >= h->sku_capacity || (unsigned)kind >= HS_STAT_KINDS)
        return;
    /* Relaxed: a statistic (segment_stats.h). */
    atomic_fetch_add_explicit(&hs_sku_stats_table(h)[si].count[kind], (uint64_t)n,
                              memory_order_relaxed);
    if (kind != HS_STAT_REFUND && kind != HS_STAT_EXPIRY && h->hot_k != 0) {
        uint64_t rnd = hk_random();

        if ((rnd & (HS_HK_SAMPLE - 1)) == 0)
            hk_add(h, si, rnd);
    }
}

/* See client_internal.h: called once n records are published. */
void
hs_stats_records(hs_header *h, const hs_ring_record *recs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        const hs_ring_record *rec = &recs[i];

        switch (rec->type) {
        case HS_REC_DEDUCT:
            hs_stats_note(h, rec->sku_index, HS_STAT_DEDUCT, 1);
            if (rec->sku_index < h->sku_capacity)
                atomic_store_explicit(&hs_sku_stats_table(h)[rec->sku_index].last_deduct_us,
                                      rec->timestamp_us, memory_order_relaxed);
            break;
        case HS_REC_REFUND:
            hs_stats_note(h, rec->sku_index, HS_STAT_REFUND, 1);
            break;
        case HS_REC_RESERVE:
            hs_stats_note(h, rec->sku_index, HS_STAT_RESERVE, 1);
            break;
        case HS_REC_EXPIRE:
            hs_stats_note(h, rec->sku_index, HS_STAT_EXPIRY, 1);
            break;
        default:
            break;
        }
    }
}
