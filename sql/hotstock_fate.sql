--
-- hotstock: a deduction belongs to the buyer only if its transaction
-- commits.  Deductions made in a transaction block, a subtransaction or a
-- writing statement carry their xid; the drain settles each by what became
-- of that transaction, and compensates those that did not commit --
-- prepared transactions rolled back later included.  A retry of an order
-- whose transaction is still open waits for it.  Polls the drain (bounded,
-- 60 s per wait).
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hotstock;
RESET client_min_messages;
SELECT 'fat' || left(md5(clock_timestamp()::text || pg_backend_pid()::text), 12) AS run \gset
\set sku :run'-sku'
\set VERBOSITY terse

CREATE FUNCTION pg_temp.sqlstate(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
-- wait (at most 60 s) until the ledger holds order o settled, refunded or not
CREATE FUNCTION pg_temp.settled(o text, want_refunded boolean) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 600 LOOP
        IF EXISTS (SELECT 1 FROM hotstock.ledger WHERE order_id = o AND xid IS NULL
                   AND (refunded_at IS NOT NULL) = want_refunded
                   AND (NOT want_refunded OR refund_lsn IS NOT NULL)) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;

SELECT hotstock.put_sku(:'sku', 10);

-- deductions of committed transactions settle as sold (with or without an xid)
SELECT hotstock.deduct(:'sku', 1, :'run' || '-plain') AS "autocommit select";
CREATE TEMP TABLE orders (order_id text);
INSERT INTO orders SELECT :'run' || '-ins' WHERE hotstock.deduct(:'sku', 1, :'run' || '-ins');
BEGIN;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-blk') AS "in a block";
COMMIT;
SELECT pg_temp.settled(:'run' || '-plain', false)
   AND pg_temp.settled(:'run' || '-ins', false)
   AND pg_temp.settled(:'run' || '-blk', false) AS "committed deductions settle as sold";
SELECT hotstock.available(:'sku') = 7 AS "three units sold";

-- a prepared transaction keeps its units out until it is decided
BEGIN;
SELECT hotstock.deduct(:'sku', 2, :'run' || '-p1') AS "deduct p1 (2)";
PREPARE TRANSACTION 'hotstock_fate_p1';
SELECT hotstock.available(:'sku') = 5 AS "prepared: units out";
SET lock_timeout = '300ms';
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 2, %L)', :'sku', :'run' || '-p1')) = '55P03'
    AS "retry of p1 waits for the prepared transaction (lock_timeout)";
RESET lock_timeout;
ROLLBACK PREPARED 'hotstock_fate_p1';
SELECT pg_temp.settled(:'run' || '-p1', true) AS "rollback prepared: the drain compensates p1";
SELECT hotstock.available(:'sku') = 7 AS "rollback prepared: units back";
SELECT hotstock.order_status(:'run' || '-p1') = 'refunded' AS "rollback prepared: p1 refunded";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 2, %L)', :'sku', :'run' || '-p1')) = 'HS005'
    AS "retry of rolled-back p1: HS005";

BEGIN;
SELECT hotstock.deduct(:'sku', 3, :'run' || '-p2') AS "deduct p2 (3)";
PREPARE TRANSACTION 'hotstock_fate_p2';
COMMIT PREPARED 'hotstock_fate_p2';
SELECT pg_temp.settled(:'run' || '-p2', false) AS "commit prepared: p2 settles as sold";
SELECT hotstock.available(:'sku') = 4 AS "commit prepared: units stay out";
SELECT hotstock.deduct(:'sku', 3, :'run' || '-p2') AS "retry of committed p2: true";
SELECT hotstock.available(:'sku') = 4 AS "retry of p2 took nothing";

-- a released savepoint follows its parent, a rolled back one is returned
BEGIN;
SAVEPOINT a;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-s1') AS "deduct s1 in savepoint a";
RELEASE SAVEPOINT a;
SAVEPOINT b;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-s2') AS "deduct s2 in savepoint b";
ROLLBACK TO SAVEPOINT b;
PREPARE TRANSACTION 'hotstock_fate_s';
SELECT hotstock.available(:'sku') = 3 AS "prepared: s1 out, s2 back";
ROLLBACK PREPARED 'hotstock_fate_s';
SELECT pg_temp.settled(:'run' || '-s1', true) AS "s1 follows its rolled back parent";
SELECT hotstock.available(:'sku') = 4 AS "both savepoints' units back";

SELECT pg_temp.settled(:'run' || '-s2', true) AS "s2 settled, refunded by its savepoint's undo";
SELECT count(*) = 0 AS "nothing of this run left unsettled"
FROM hotstock.ledger WHERE order_id LIKE :'run' || '%' AND xid IS NOT NULL;
