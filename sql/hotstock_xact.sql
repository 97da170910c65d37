--
-- hotstock: deductions and refunds follow the caller's transaction.
-- A deduction in a transaction (or subtransaction) that rolls back is
-- undone and its order ends refunded; a refund in a transaction block is
-- claimed at once and done at commit.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hotstock;
RESET client_min_messages;
SELECT 'xac' || left(md5(clock_timestamp()::text || pg_backend_pid()::text), 12) AS run \gset
\set sku :run'-sku'
\set VERBOSITY terse

SELECT hotstock.put_sku(:'sku', 10);

-- rollback
BEGIN;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-r1') AS "in block: deduct r1";
SELECT hotstock.available(:'sku') = 9 AS "in block: deducted at once";
ROLLBACK;
SELECT hotstock.available(:'sku') = 10 AS "rollback: unit back";
SELECT hotstock.order_status(:'run' || '-r1') = 'refunded' AS "rollback: r1 refunded";

-- commit
BEGIN;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-c1') AS "in block: deduct c1";
COMMIT;
SELECT hotstock.available(:'sku') = 9 AS "commit: deduction kept";
SELECT hotstock.order_status(:'run' || '-c1') = 'deducted' AS "commit: c1 deducted";

-- a retry in the same transaction is undone once, not twice
BEGIN;
SELECT hotstock.deduct(:'sku', 2, :'run' || '-d1') AS "deduct d1";
SELECT hotstock.deduct(:'sku', 2, :'run' || '-d1') AS "retry d1";
ROLLBACK;
SELECT hotstock.available(:'sku') = 9 AS "rollback of deduct + retry: 2 units back, not 4";

-- a retry of a committed deduction is not undone by a rollback
BEGIN;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-c1') AS "retry c1 in a block";
ROLLBACK;
SELECT hotstock.order_status(:'run' || '-c1') = 'deducted' AS "rollback of a retry: c1 still deducted";
SELECT hotstock.available(:'sku') = 9 AS "rollback of a retry: nothing given back";

-- savepoints
BEGIN;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-s1') AS "deduct s1";
SAVEPOINT a;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-s2') AS "deduct s2 after savepoint a";
ROLLBACK TO SAVEPOINT a;
SELECT hotstock.available(:'sku') = 8 AS "rollback to a: s2 undone, s1 kept";
SAVEPOINT b;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-s3') AS "deduct s3 after savepoint b";
SAVEPOINT c;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-s4') AS "deduct s4 after savepoint c";
RELEASE SAVEPOINT c;
ROLLBACK TO SAVEPOINT b;
SELECT hotstock.available(:'sku') = 8 AS "rollback to b: s3 and released s4 undone";
SAVEPOINT d;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-s5') AS "deduct s5 after savepoint d";
RELEASE SAVEPOINT d;
COMMIT;
SELECT hotstock.available(:'sku') = 7 AS "commit: s1 and s5 kept";
SELECT hotstock.order_status(:'run' || '-s1') = 'deducted'
   AND hotstock.order_status(:'run' || '-s2') = 'refunded'
   AND hotstock.order_status(:'run' || '-s3') = 'refunded'
   AND hotstock.order_status(:'run' || '-s4') = 'refunded'
   AND hotstock.order_status(:'run' || '-s5') = 'deducted' AS "savepoints: each order's state";

-- an error aborts the block: the deduction is undone
BEGIN;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-e1') AS "deduct e1";
SELECT 1 / (SELECT count(*) - count(*) FROM pg_class);
ROLLBACK;
SELECT hotstock.available(:'sku') = 7 AS "error in block: e1 undone";

-- a failing autocommit statement undoes its own deductions
SELECT CASE WHEN hotstock.deduct(:'sku', 1, :'run' || '-a' || g) THEN 1 / (g - 2) END
FROM generate_series(1, 2) AS g;
SELECT hotstock.available(:'sku') = 7 AS "failed statement: both deductions undone";
SELECT hotstock.order_status(:'run' || '-a1') = 'refunded' AS "failed statement: a1 refunded";

-- a plpgsql exception block is a subtransaction
SET x.sku = :'sku';
SET x.run = :'run';
DO $$
BEGIN
    BEGIN
        PERFORM hotstock.deduct(current_setting('x.sku'), 1, current_setting('x.run') || '-p1');
        RAISE EXCEPTION 'undo';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    PERFORM hotstock.deduct(current_setting('x.sku'), 1, current_setting('x.run') || '-p2');
END
$$;
SELECT hotstock.order_status(:'run' || '-p1') = 'refunded'
   AND hotstock.order_status(:'run' || '-p2') = 'deducted' AS "exception block: p1 undone, p2 kept";
SELECT hotstock.available(:'sku') = 6 AS "exception block: one unit taken";

-- refund in a block: claimed now, done at commit
BEGIN;
SELECT hotstock.refund(:'run' || '-c1') AS "in block: refund c1 true";
SELECT hotstock.available(:'sku') = 6 AS "in block: units not back before commit";
SELECT hotstock.order_status(:'run' || '-c1') = 'deducted' AS "in block: c1 still deducted";
SELECT NOT hotstock.refund(:'run' || '-c1') AS "in block: refund c1 again false";
SELECT count(*) = 1 AS "in block: the refund is recorded in the transaction"
FROM hotstock.refund_requests WHERE order_id = :'run' || '-c1';
ROLLBACK;
SELECT count(*) = 0 AS "rollback: the refund's record rolled back with it"
FROM hotstock.refund_requests WHERE order_id = :'run' || '-c1';
SELECT hotstock.order_status(:'run' || '-c1') = 'deducted' AS "rollback: refund of c1 released";
SELECT hotstock.available(:'sku') = 6 AS "rollback: nothing given back";
BEGIN;
SELECT hotstock.refund(:'run' || '-c1') AS "in block: refund c1 true";
COMMIT;
SELECT hotstock.available(:'sku') = 7 AS "commit: c1's unit back";
SELECT hotstock.order_status(:'run' || '-c1') = 'refunded' AS "commit: c1 refunded";
SELECT NOT hotstock.refund(:'run' || '-c1') AS "refund c1 after commit: false";

-- refund in a savepoint that rolls back
BEGIN;
SAVEPOINT a;
SELECT hotstock.refund(:'run' || '-s1') AS "refund s1 in savepoint";
ROLLBACK TO SAVEPOINT a;
SELECT hotstock.refund(:'run' || '-s5') AS "refund s5 after it";
COMMIT;
SELECT hotstock.order_status(:'run' || '-s1') = 'deducted'
   AND hotstock.order_status(:'run' || '-s5') = 'refunded' AS "savepoint refund: s1 kept, s5 refunded";
SELECT hotstock.available(:'sku') = 8 AS "savepoint refund: one unit back";

-- deduct and refund in one block
BEGIN;
SELECT hotstock.deduct(:'sku', 3, :'run' || '-dr1') AS "deduct dr1";
SELECT hotstock.refund(:'run' || '-dr1') AS "refund dr1";
COMMIT;
SELECT hotstock.available(:'sku') = 8 AS "deduct + refund committed: stock unchanged";
SELECT hotstock.order_status(:'run' || '-dr1') = 'refunded' AS "deduct + refund committed: refunded";
BEGIN;
SELECT hotstock.deduct(:'sku', 3, :'run' || '-dr2') AS "deduct dr2";
SELECT hotstock.refund(:'run' || '-dr2') AS "refund dr2";
ROLLBACK;
SELECT hotstock.available(:'sku') = 8 AS "deduct + refund rolled back: stock unchanged";
SELECT hotstock.order_status(:'run' || '-dr2') = 'refunded' AS "deduct + refund rolled back: refunded once";

-- an autocommit refund gives the units back when its statement commits
SELECT hotstock.refund(:'run' || '-s1') AS "autocommit refund s1";
SELECT hotstock.available(:'sku') = 9 AS "autocommit refund: unit back";
SELECT hotstock.refund(:'run' || '-p2') AS "refund p2 in a statement",
       hotstock.available(:'sku') = 9 AS "units not back before the statement commits";
SELECT hotstock.available(:'sku') = 10 AS "units back after it committed";

-- a failing autocommit statement refunds nothing
SELECT hotstock.deduct(:'sku', 1, :'run' || '-f1') AS "deduct f1";
SELECT CASE WHEN hotstock.refund(:'run' || '-f1') THEN 1 / (g - 1) END
FROM generate_series(1, 1) AS g;
SELECT hotstock.order_status(:'run' || '-f1') = 'deducted' AS "failed statement: f1 still deducted";
SELECT hotstock.available(:'sku') = 9 AS "failed statement: no unit back";
SELECT hotstock.refund(:'run' || '-f1') AS "refund f1";

-- a rolled-back order id cannot be deducted again
CREATE FUNCTION pg_temp.sqlstate(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'sku', :'run' || '-r1')) = 'HS005' AS "deduct of a rolled-back order: HS005";
SELECT hotstock.available(:'sku') = 10 AS "deduct of a rolled-back order: nothing taken";
