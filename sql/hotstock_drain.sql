--
-- hotstock: the drain applies the queue to hotstock.stock and
-- hotstock.ledger.  Polls (bounded, 60 s) until the drain has applied
-- every record written so far, then checks the tables.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hotstock;
RESET client_min_messages;
SELECT 'drn' || left(md5(clock_timestamp()::text || pg_backend_pid()::text), 12) AS run \gset
\set sku :run'-sku'
\set VERBOSITY terse

SELECT hotstock.put_sku(:'sku', 100);
SELECT bool_and(hotstock.deduct(:'sku', g, :'run' || '-o' || g)) AS "deduct o1..o10 (55 units)"
FROM generate_series(1, 10) AS g;
SELECT bool_and(hotstock.refund(:'run' || '-o' || g)) AS "refund o2, o4, o6 (12 units)"
FROM generate_series(2, 6, 2) AS g;
BEGIN;
SELECT hotstock.deduct(:'sku', 7, :'run' || '-rolled-back') AS "deduct in a rolled-back block";
ROLLBACK;
SELECT hotstock.add_stock(:'sku', 5) = 62 AS "add_stock +5: 62";
SELECT hotstock.put_sku(:'sku' || '-b', 3);
SELECT hotstock.add_stock(:'sku' || '-b', -1) = 2 AS "second sku: 2";

-- wait until the drain has applied everything written so far
SELECT last_lsn AS target FROM hotstock.status \gset
SET x.target = :'target';
DO $$
DECLARE
    target bigint := current_setting('x.target')::bigint;
BEGIN
    FOR i IN 1 .. 600 LOOP
        EXIT WHEN (SELECT applied_lsn FROM hotstock.drain_state) >= target;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT applied_lsn >= :'target' AS "drain caught up (within 60 s)" FROM hotstock.drain_state;

-- stock mirrors the counters
SELECT available = 62 AS "stock: available 62",
       available = hotstock.available(:'sku') AS "stock: equals hotstock.available()",
       sold = 43 AS "stock: sold 43 (55 - 12; the rolled-back 7 net 0)",
       last_lsn <= (SELECT applied_lsn FROM hotstock.drain_state) AS "stock: last_lsn <= applied_lsn"
FROM hotstock.stock WHERE sku = :'sku';
SELECT available = 2 AND sold = 0 AS "stock: second sku 2 available, 0 sold"
FROM hotstock.stock WHERE sku = :'sku' || '-b';

-- the ledger: one row per order
SELECT count(*) = 11 AS "ledger: 11 orders",
       count(DISTINCT order_id) = 11 AS "ledger: each order once",
       count(*) FILTER (WHERE refunded_at IS NOT NULL) = 4 AS "ledger: 4 refunded (o2, o4, o6, rolled-back)",
       count(*) FILTER (WHERE refunded_at IS NOT NULL AND refund_lsn > lsn) = 4 AS "ledger: refund_lsn after lsn",
       sum(qty) FILTER (WHERE refunded_at IS NULL) = 43 AS "ledger: 43 units held by orders",
       bool_and(deducted_at IS NOT NULL) AS "ledger: deducted_at set",
       count(DISTINCT lsn) = 11 AS "ledger: distinct LSNs"
FROM hotstock.ledger WHERE sku = :'sku';
SELECT refunded_at IS NOT NULL AS "ledger: the rolled-back deduction is refunded"
FROM hotstock.ledger WHERE order_id = :'run' || '-rolled-back';
SELECT (SELECT sold FROM hotstock.stock WHERE sku = :'sku') =
       (SELECT sum(qty) FROM hotstock.ledger WHERE sku = :'sku' AND refunded_at IS NULL)
       AS "invariant: sold = units of unrefunded ledger rows";

-- each refund was recorded in its caller's transaction, and its request
-- went with its drained REFUND record
SELECT count(*) = 0 AS "refund requests of drained refunds are gone"
FROM hotstock.refund_requests WHERE order_id LIKE :'run' || '-o%';

-- the status view agrees
SELECT applied_lsn >= :'target' AS "status: applied_lsn caught up",
       drain_records >= 0 AS "status: drain records counted"
FROM hotstock.status;

-- the drain's activity is visible
SELECT count(*) = 1 AS "pg_stat_activity shows one hotstock drain"
FROM pg_stat_activity WHERE backend_type = 'hotstock drain';
