--
-- hotstock: statistics.  The views hotstock.sku_stats and hotstock.hot_skus
-- and hotstock.sku_stats_reset(): a new SKU counts nothing; deductions,
-- sold-out attempts, a retry (not counted again), a refund, a deduction
-- rolled back (compensated: a deduct and a refund), a hold and its cancel
-- (a reserve); a reset of one SKU and of all; the errors; who may read
-- and who may reset; and a SKU hammered with sold-out attempts shows at
-- the top of hot_skus within seconds (polled, at most 10 s).
-- Statistics are counted at the daemon, not by transactions: a reset or
-- a count is not undone by a ROLLBACK.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hotstock;
RESET client_min_messages;
SELECT 'sts' || left(md5(clock_timestamp()::text || pg_backend_pid()::text), 12) AS run \gset
\set a :run'-a'
\set b :run'-b'
\set h :run'-h'
\set VERBOSITY terse

CREATE FUNCTION pg_temp.sqlstate(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

-- the columns
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = 'hotstock' AND table_name = 'sku_stats' ORDER BY ordinal_position;
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = 'hotstock' AND table_name = 'hot_skus' ORDER BY ordinal_position;

-- a new SKU counts nothing; stats_reset is the daemon's start
SELECT hotstock.put_sku(:'a', 3);
SELECT hotstock.put_sku(:'b', 10);
SELECT deducts = 0 AND sold_out_attempts = 0 AND refunds = 0 AND reserves = 0 AND expiries = 0
       AND limit_refusals = 0 AND last_deduct_at IS NULL AND stats_reset <= now() AS "new: zeros"
FROM hotstock.sku_stats WHERE sku = :'a';

-- five attempts on three units: three deducts, two sold out
SELECT count(*) FILTER (WHERE ok) AS sold, count(*) FILTER (WHERE NOT ok) AS sold_out
FROM (SELECT hotstock.deduct(:'a', 1, :'run' || '-o' || g) AS ok FROM generate_series(1, 5) g) s;
-- a retry of a done order is not a new deduction
SELECT hotstock.deduct(:'a', 1, :'run' || '-o1') AS "retry: true";
SELECT deducts = 3 AND sold_out_attempts = 2 AS "deducts 3, sold out 2",
       last_deduct_at BETWEEN stats_reset AND clock_timestamp() AS "last_deduct_at"
FROM hotstock.sku_stats WHERE sku = :'a';

-- a refund; a deduction rolled back (taken, then compensated: a deduct
-- and a refund); a hold, cancelled (a reserve, no refund)
SELECT hotstock.refund(:'run' || '-o1') AS "refund: true";
BEGIN;
SELECT hotstock.deduct(:'b', 2, :'run' || '-x1') AS "in a transaction: true";
ROLLBACK;
SELECT hotstock.reserve(:'b', 1, :'run' || '-r1', '1 hour') AS "reserve: true";
SELECT hotstock.cancel(:'run' || '-r1') AS "cancel: true";
SELECT sku = :'a' AS is_a, deducts, sold_out_attempts, refunds, reserves, expiries, limit_refusals
FROM hotstock.sku_stats WHERE sku IN (:'a', :'b') ORDER BY sku;

-- reset one SKU: the other keeps its counts
SELECT hotstock.sku_stats_reset(:'a') AS "reset a: 1 sku";
SELECT deducts = 0 AND sold_out_attempts = 0 AND refunds = 0 AND last_deduct_at IS NULL
       AND stats_reset > now() - interval '1 minute' AS "a: zeros, reset now"
FROM hotstock.sku_stats WHERE sku = :'a';
SELECT deducts = 1 AND reserves = 1 AS "b: kept" FROM hotstock.sku_stats WHERE sku = :'b';
SELECT hotstock.deduct(:'a', 1, :'run' || '-o9') AS "after the reset: true";
SELECT deducts = 1 AS "a: counts again" FROM hotstock.sku_stats WHERE sku = :'a';

-- errors
SELECT pg_temp.sqlstate(format('SELECT hotstock.sku_stats_reset(%L)', :'run' || '-none')) AS "unknown sku";
SELECT pg_temp.sqlstate('SELECT hotstock.sku_stats_reset('''')') AS "empty sku";

-- reset all: every SKU the daemon knows
SELECT hotstock.sku_stats_reset() = (SELECT count(*) FROM hotstock.sku_stats) AS "reset all: every sku";
SELECT count(*) = 0 AS "all zeros" FROM hotstock.sku_stats
WHERE deducts + sold_out_attempts + refunds + reserves + expiries + limit_refusals > 0
      AND sku IN (:'a', :'b');

-- who: hotstock_app reads, only hotstock_admin resets
SET ROLE hotstock_app;
SELECT count(*) >= 2 AS "app: reads sku_stats" FROM hotstock.sku_stats;
SELECT count(*) >= 0 AS "app: reads hot_skus" FROM hotstock.hot_skus;
SELECT pg_temp.sqlstate('SELECT hotstock.sku_stats_reset()') AS "app: reset refused";
RESET ROLE;
SET ROLE hotstock_admin;
SELECT hotstock.sku_stats_reset(:'b') AS "admin: reset";
RESET ROLE;

-- hot SKUs: 5,000 sold-out attempts make :h the hottest within seconds
SELECT hotstock.put_sku(:'h', 0);
SELECT count(*) FILTER (WHERE NOT ok) AS "sold out attempts"
FROM (SELECT hotstock.deduct(:'h', 1, :'run' || '-h' || g) AS ok FROM generate_series(1, 5000) g) s;
CREATE FUNCTION pg_temp.wait_hottest(want text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '10 seconds';
BEGIN
    WHILE clock_timestamp() < deadline LOOP
        IF EXISTS (SELECT 1 FROM hotstock.hot_skus
                   WHERE sku = want AND rank = 1 AND est_attempts_per_s > 0) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;
-- (ranked by the sketch, which ages: rank 1 stays while nothing else is
-- hotter; its rate is that of the last second, 0 once the load stopped)
SELECT pg_temp.wait_hottest(:'h') AS "h: the hottest, attempts/s > 0, within 10 s";
SELECT rank = 1 AS "h: rank 1", est_sold_per_s = 0 AS "h: sold/s 0"
FROM hotstock.hot_skus WHERE sku = :'h';
SELECT count(*) BETWEEN 1 AND 32 AS "at most hot_k rows",
       bool_and(rank BETWEEN 1 AND 32) AS "ranks", count(DISTINCT rank) = count(*) AS "distinct ranks"
FROM hotstock.hot_skus;
