--
-- hotstock: baskets, every line or none.  deduct_basket takes every line
-- or nothing (stock of every SKU checked after each call), answers a retry
-- without taking more, follows the caller's transaction line by line;
-- refund and order_status act on the basket; the argument errors carry
-- their SQLSTATEs; order ids holding 0x1f (basket lines) are refused.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hotstock;
RESET client_min_messages;
SELECT 'bsk' || left(md5(clock_timestamp()::text || pg_backend_pid()::text), 12) AS run \gset
\set a :run'-a'
\set b :run'-b'
\set c :run'-c'
\set VERBOSITY terse

CREATE FUNCTION pg_temp.sqlstate(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
CREATE FUNCTION pg_temp.message(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLERRM;
END
$$;
-- the units available of a, b and c, as one text
CREATE FUNCTION pg_temp.stock(a text, b text, c text) RETURNS text LANGUAGE sql AS $$
    SELECT hotstock.available(a) || '/' || hotstock.available(b) || '/' || hotstock.available(c)
$$;

SELECT hotstock.put_sku(:'a', 10), hotstock.put_sku(:'b', 10), hotstock.put_sku(:'c', 2);

-- taken whole
SELECT hotstock.deduct_basket(:'run' || '-B1', ARRAY[:'a', :'b', :'c'], ARRAY[1, 2, 1])
    AS "basket B1 (a 1, b 2, c 1) taken";
SELECT pg_temp.stock(:'a', :'b', :'c') = '9/8/1' AS "B1: every line taken (9/8/1)";
SELECT hotstock.order_status(:'run' || '-B1') = 'deducted' AS "B1: status deducted";

-- a retry answers true and takes nothing
SELECT hotstock.deduct_basket(:'run' || '-B1', ARRAY[:'a', :'b', :'c'], ARRAY[1, 2, 1])
    AS "retry of B1: true";
SELECT pg_temp.stock(:'a', :'b', :'c') = '9/8/1' AS "retry of B1: nothing more taken";

-- scarce stock: false, and no line taken
SELECT NOT hotstock.deduct_basket(:'run' || '-B2', ARRAY[:'a', :'b', :'c'], ARRAY[1, 1, 2])
    AS "basket B2 (c 2 of 1 left): false";
SELECT pg_temp.stock(:'a', :'b', :'c') = '9/8/1' AS "B2: no line taken (still 9/8/1)";
SELECT hotstock.order_status(:'run' || '-B2') = 'unknown' AS "B2: status unknown";
SELECT NOT hotstock.deduct_basket(:'run' || '-B2b', ARRAY[:'c', :'a'], ARRAY[2, 1])
    AS "basket B2b (short line first): false";
SELECT pg_temp.stock(:'a', :'b', :'c') = '9/8/1' AS "B2b: no line taken (still 9/8/1)";

-- a retry with other lines: HS004, nothing taken
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L, %L], ARRAY[1, 3, 1])',
       :'run' || '-B1', :'a', :'b', :'c')) = 'HS004' AS "B1 with another qty: HS004";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1, 2])',
       :'run' || '-B1', :'a', :'b')) = 'HS004' AS "B1 with a line less: HS004";
SELECT hotstock.deduct(:'c', 1, :'run' || '-O1') AS "order O1 (c 1)";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L], ARRAY[1])',
       :'run' || '-O1', :'a')) = 'HS004' AS "basket of order O1's id: HS004";
SELECT hotstock.refund(:'run' || '-O1') AS "refund O1";
SELECT pg_temp.stock(:'a', :'b', :'c') = '9/8/1' AS "mismatches: nothing taken";

-- argument errors
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, (SELECT array_agg(%L || g) FROM generate_series(1, 65) g), array_fill(1, ARRAY[65]))',
       :'run' || '-E', :'run')) = 'HS012' AS "65 lines: HS012";
SELECT pg_temp.message(format('SELECT hotstock.deduct_basket(%L, (SELECT array_agg(%L || g) FROM generate_series(1, 65) g), array_fill(1, ARRAY[65]))',
       :'run' || '-E', :'run')) = 'basket has 65 lines, the limit is 64' AS "65 lines: message";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1, 1])',
       :'run' || '-E', :'a', :'a')) = '22023' AS "sku twice: 22023";
SELECT pg_temp.message(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1, 1])',
       :'run' || '-E', :'a', :'a')) = format('sku "%s" is in the basket twice', :'a') AS "sku twice: message";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, NULL], ARRAY[1, 1])',
       :'run' || '-E', :'a')) = '22023' AS "NULL sku: 22023";
SELECT pg_temp.message(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, NULL], ARRAY[1, 1])',
       :'run' || '-E', :'a')) = 'skus[2] must not be null' AS "NULL sku: message";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1, NULL])',
       :'run' || '-E', :'a', :'b')) = '22023' AS "NULL qty: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, NULL, ARRAY[1])',
       :'run' || '-E')) = '22023' AS "NULL skus: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L], NULL)',
       :'run' || '-E', :'a')) = '22023' AS "NULL qtys: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(NULL, ARRAY[%L], ARRAY[1])',
       :'a')) = '22023' AS "NULL basket id: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1])',
       :'run' || '-E', :'a', :'b')) = '22023' AS "lengths 2 and 1: 22023";
SELECT pg_temp.message(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1])',
       :'run' || '-E', :'a', :'b')) = 'skus and qtys must have the same length' AS "lengths 2 and 1: message";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[[%L], [%L]], ARRAY[[1], [1]])',
       :'run' || '-E', :'a', :'b')) = '22023' AS "two dimensions: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, %L::text[], %L::integer[])',
       :'run' || '-E', '{}', '{}')) = '22023' AS "no line: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L], ARRAY[0])',
       :'run' || '-E', :'a')) = '22023' AS "qty 0: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L], ARRAY[1000001])',
       :'run' || '-E', :'a')) = '22023' AS "qty 1000001: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L], ARRAY[1])',
       :'run' || '-E', repeat('s', 64))) = '22001' AS "sku of 64 bytes: 22001";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L], ARRAY[1])',
       repeat('x', 59), :'a')) = '22001' AS "basket id of 59 bytes: 22001";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1, 1])',
       :'run' || '-E', :'a', :'run' || '-nosuch')) = '42704' AS "unknown sku: 42704";
SELECT pg_temp.message(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1, 1])',
       :'run' || '-E', :'a', :'run' || '-nosuch')) = format('sku "%s" does not exist', :'run' || '-nosuch')
    AS "unknown sku: message names it";
SELECT pg_temp.stock(:'a', :'b', :'c') = '9/8/1' AS "argument errors: nothing taken";
SELECT hotstock.order_status(:'run' || '-E') = 'unknown' AS "argument errors: basket unknown";

-- the byte 0x1f names basket lines: refused in every order id
SELECT :'run' || chr(31) || '0002' AS line \gset
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'a', :'line')) = '22023' AS "deduct of a 0x1f id: 22023";
SELECT pg_temp.message(format('SELECT hotstock.deduct(%L, 1, %L)', :'a', :'line')) = 'order_id must not contain the byte 0x1f' AS "deduct of a 0x1f id: message";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'a', :'line', '1 min')) = '22023' AS "reserve of a 0x1f id: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L], ARRAY[1])', :'line', :'a')) = '22023' AS "deduct_basket of a 0x1f id: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.refund(%L)', :'run' || '-B1' || chr(31) || '0003')) = '22023' AS "refund of B1's line 0: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'line')) = '22023' AS "confirm of a 0x1f id: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.cancel(%L)', :'line')) = '22023' AS "cancel of a 0x1f id: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.order_status(%L)', :'line')) = '22023' AS "order_status of a 0x1f id: 22023";
SELECT pg_temp.stock(:'a', :'b', :'c') = '9/8/1' AS "0x1f ids: nothing taken or given back";

-- a basket in a rolled-back block is undone, every line
BEGIN;
SELECT hotstock.deduct_basket(:'run' || '-R1', ARRAY[:'a', :'b'], ARRAY[2, 3]) AS "in block: basket R1";
SELECT pg_temp.stock(:'a', :'b', :'c') = '7/5/1' AS "in block: R1 taken at once";
ROLLBACK;
SELECT pg_temp.stock(:'a', :'b', :'c') = '9/8/1' AS "rollback: every line of R1 back";
SELECT hotstock.order_status(:'run' || '-R1') = 'refunded' AS "rollback: R1 refunded";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[2, 3])',
       :'run' || '-R1', :'a', :'b')) = 'HS005' AS "retry of rolled-back R1: HS005";

-- savepoints: the basket of the aborted subtransaction only
BEGIN;
SELECT hotstock.deduct_basket(:'run' || '-S1', ARRAY[:'a', :'b'], ARRAY[1, 1]) AS "basket S1";
SAVEPOINT s;
SELECT hotstock.deduct_basket(:'run' || '-S2', ARRAY[:'a', :'c'], ARRAY[1, 1]) AS "basket S2 after savepoint";
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT pg_temp.stock(:'a', :'b', :'c') = '8/7/1' AS "savepoint: S2 undone, S1 kept";
SELECT hotstock.order_status(:'run' || '-S1') = 'deducted'
   AND hotstock.order_status(:'run' || '-S2') = 'refunded' AS "savepoint: S1 deducted, S2 refunded";

-- a failing autocommit statement undoes its basket
SELECT CASE WHEN hotstock.deduct_basket(:'run' || '-F1', ARRAY[:'a'], ARRAY[1]) THEN 1 / (random() * 0)::int END;
SELECT hotstock.order_status(:'run' || '-F1') = 'refunded' AS "failed statement: F1 taken, then refunded";
SELECT pg_temp.stock(:'a', :'b', :'c') = '8/7/1' AS "failed statement: F1 undone";

-- refund of a basket: every line once
SELECT hotstock.refund(:'run' || '-B1') AS "refund B1: true";
SELECT pg_temp.stock(:'a', :'b', :'c') = '9/9/2' AS "refund B1: every line back (9/9/2)";
SELECT hotstock.order_status(:'run' || '-B1') = 'refunded' AS "refund B1: status refunded";
SELECT NOT hotstock.refund(:'run' || '-B1') AS "second refund of B1: false";
SELECT pg_temp.stock(:'a', :'b', :'c') = '9/9/2' AS "second refund: nothing more back";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L, %L], ARRAY[1, 2, 1])',
       :'run' || '-B1', :'a', :'b', :'c')) = 'HS005' AS "retry of refunded B1: HS005";

-- refund of a basket in a block: at commit; a rollback keeps it sold
BEGIN;
SELECT hotstock.refund(:'run' || '-S1') AS "in block: refund S1";
SELECT NOT hotstock.refund(:'run' || '-S1') AS "in block: refund S1 again: false";
SELECT pg_temp.stock(:'a', :'b', :'c') = '9/9/2' AS "in block: nothing back before commit";
ROLLBACK;
SELECT hotstock.order_status(:'run' || '-S1') = 'deducted' AS "rollback: S1 still deducted";
SELECT pg_temp.stock(:'a', :'b', :'c') = '9/9/2' AS "rollback: S1's units stay sold";
BEGIN;
SELECT hotstock.refund(:'run' || '-S1') AS "in block: refund S1";
COMMIT;
SELECT pg_temp.stock(:'a', :'b', :'c') = '10/10/2' AS "commit: S1's lines back";
SELECT hotstock.order_status(:'run' || '-S1') = 'refunded' AS "commit: S1 refunded";

-- an id that is neither order nor basket
SELECT NOT hotstock.refund(:'run' || '-nobasket') AS "refund of an unknown basket: false";
SELECT hotstock.order_status(:'run' || '-nobasket') = 'unknown' AS "status of an unknown basket: unknown";

-- a basket of 64 lines
SELECT count(hotstock.put_sku(:'run' || '-m' || g, 1)::text) = 64 AS "64 skus of 1 unit"
FROM generate_series(1, 64) AS g;
SELECT hotstock.deduct_basket(:'run' || '-M', (SELECT array_agg(:'run' || '-m' || g ORDER BY g) FROM generate_series(1, 64) AS g),
       array_fill(1, ARRAY[64])) AS "basket of 64 lines taken";
SELECT bool_and(hotstock.available(:'run' || '-m' || g) = 0) AS "64 lines: every sku sold out"
FROM generate_series(1, 64) AS g;
SELECT hotstock.refund(:'run' || '-M') AS "refund of the 64-line basket";
SELECT bool_and(hotstock.available(:'run' || '-m' || g) = 1) AS "64 lines: every unit back"
FROM generate_series(1, 64) AS g;

-- the drain: each line an order of the ledger, split by hotstock.basket_lines
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
SELECT line, lines, sku = :'run' || '-' || chr(97 + line) AS sku_of_line, qty, refunded_at IS NOT NULL AS refunded
FROM hotstock.basket_lines WHERE basket_id = :'run' || '-B1' ORDER BY line;
SELECT count(*) = 64 AND count(DISTINCT sku) = 64 AND bool_and(lines = 64) AND min(line) = 0 AND max(line) = 63
    AS "basket_lines: the 64-line basket"
FROM hotstock.basket_lines WHERE basket_id = :'run' || '-M';
SELECT count(*) = 0 AS "basket_lines: B2 (sold out) has no line"
FROM hotstock.basket_lines WHERE basket_id = :'run' || '-B2';
SELECT bool_and(refunded_at IS NOT NULL) AS "ledger: R1's lines refunded (rolled back)"
FROM hotstock.basket_lines WHERE basket_id = :'run' || '-R1';
