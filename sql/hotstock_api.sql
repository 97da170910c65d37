--
-- hotstock: the SQL functions on their happy paths.
-- Runs in hotstock.drain_database with a running hotstockd.  Every SKU and
-- order id carries a per-run prefix (:run), so the suite can run again on
-- the same daemon; outputs are booleans.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hotstock;
RESET client_min_messages;
SELECT 'api' || left(md5(clock_timestamp()::text || pg_backend_pid()::text), 12) AS run \gset
\set sku :run'-sku'

-- put_sku creates a SKU; available reads it back
SELECT hotstock.put_sku(:'sku', 100);
SELECT hotstock.available(:'sku') = 100 AS "put_sku: 100 available";

-- deduct and its retry
SELECT hotstock.deduct(:'sku', 1, :'run' || '-o1') AS "deduct o1: true";
SELECT hotstock.available(:'sku') = 99 AS "deduct o1: 99 available";
SELECT hotstock.deduct(:'sku', 1, :'run' || '-o1') AS "retry o1: true";
SELECT hotstock.available(:'sku') = 99 AS "retry o1: nothing more deducted";
SELECT hotstock.order_status(:'run' || '-o1') = 'deducted' AS "status o1: deducted";

-- selling out
SELECT hotstock.deduct(:'sku', 99, :'run' || '-o2') AS "deduct o2 qty 99: true";
SELECT hotstock.available(:'sku') = 0 AS "sold out: 0 available";
SELECT NOT hotstock.deduct(:'sku', 1, :'run' || '-o3') AS "deduct o3 when sold out: false";
SELECT hotstock.available(:'sku') = 0 AS "sold out: still 0";
SELECT hotstock.order_status(:'run' || '-o3') = 'unknown' AS "status of a sold-out order: unknown";
SELECT hotstock.order_status(:'run' || '-never') = 'unknown' AS "status of an unknown order: unknown";

-- refund, twice
SELECT hotstock.refund(:'run' || '-o1') AS "refund o1: true";
SELECT hotstock.available(:'sku') = 1 AS "refund o1: 1 available";
SELECT NOT hotstock.refund(:'run' || '-o1') AS "refund o1 again: false";
SELECT hotstock.available(:'sku') = 1 AS "refund o1 again: still 1";
SELECT hotstock.order_status(:'run' || '-o1') = 'refunded' AS "status o1: refunded";
SELECT NOT hotstock.refund(:'run' || '-never') AS "refund of an unknown order: false";
SELECT NOT hotstock.refund(:'run' || '-o3') AS "refund of a sold-out order: false";

-- the sold-out order may be retried once stock is back
SELECT hotstock.deduct(:'sku', 1, :'run' || '-o3') AS "retry o3 after refund: true";
SELECT hotstock.available(:'sku') = 0 AS "retry o3: 0 available";

-- add_stock and put_sku
SELECT hotstock.add_stock(:'sku', 10) = 10 AS "add_stock +10: returns 10";
SELECT hotstock.add_stock(:'sku', -3) = 7 AS "add_stock -3: returns 7";
SELECT hotstock.add_stock(:'sku', -100) = 0 AS "add_stock -100: clamped at 0";
SELECT hotstock.add_stock(:'sku', 0) = 0 AS "add_stock 0: returns 0";
SELECT hotstock.put_sku(:'sku', 5);
SELECT hotstock.available(:'sku') = 5 AS "put_sku resets to 5";
SELECT hotstock.put_sku(:'sku', 0);
SELECT hotstock.available(:'sku') = 0 AS "put_sku resets to 0";

-- qty > 1 and the largest qty
SELECT hotstock.put_sku(:'sku', 2000000);
SELECT hotstock.deduct(:'sku', 1000000, :'run' || '-big') AS "deduct qty 1000000: true";
SELECT hotstock.available(:'sku') = 1000000 AS "deduct qty 1000000: 1000000 left";
SELECT hotstock.refund(:'run' || '-big') AS "refund qty 1000000: true";
SELECT hotstock.available(:'sku') = 2000000 AS "refund qty 1000000: all back";

-- the longest SKU and order id (63 bytes)
SELECT hotstock.put_sku(left(:'run' || repeat('s', 63), 63), 3);
SELECT hotstock.deduct(left(:'run' || repeat('s', 63), 63), 2,
                       left(:'run' || repeat('o', 63), 63)) AS "63-byte sku and order id: true";
SELECT hotstock.available(left(:'run' || repeat('s', 63), 63)) = 1 AS "63-byte sku: 1 left";

-- asynchronous mode answers the same
SET hotstock.synchronous = off;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-async') AS "deduct, synchronous off: true";
SELECT hotstock.refund(:'run' || '-async') AS "refund, synchronous off: true";
RESET hotstock.synchronous;
SELECT hotstock.available(:'sku') = 2000000 AS "synchronous off: all back";
SELECT current_setting('hotstock.synchronous') = 'on' AS "hotstock.synchronous defaults to on";

-- the status view
SELECT daemon_up AS "status: daemon up",
       daemon_pid > 0 AS "status: daemon pid",
       durable_lsn <= last_lsn AS "status: durable <= last",
       applied_lsn <= last_lsn AS "status: applied <= last",
       drain_lag_records >= 0 AS "status: lag records >= 0",
       drain_lag_seconds >= 0 AS "status: lag seconds >= 0",
       ring_fill BETWEEN 0 AND 1 AS "status: ring fill in [0,1]",
       order_index_fill > 0 AND order_index_fill <= 1 AS "status: order index fill in (0,1]",
       sku_count >= 2 AS "status: sku count",
       drain_pid > 0 AS "status: drain running"
FROM hotstock.status;
SELECT count(*) = 1 AS "status: one row" FROM hotstock.status;
