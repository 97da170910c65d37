--
-- hotstock: baskets, every line or none.  deduct_basket takes every line
-- or nothing (stock of every SKU checked after each call), answers a retry
-- without taking more, follows the caller's transaction line by line;
-- refund and order_status act on the basket; the argument errors carry
-- their SQLSTATEs; order ids holding 0x1f (basket lines) are refused.
-- Baskets of holds: reserve_basket holds every line or none; confirm and
-- cancel settle the basket whole, in and out of transaction blocks; the
-- daemon expires it whole at its deadline (polled, at most 30 s); retake
-- of an ended basket is refused (0A000).  Then what the drain makes of it
-- all (polled, at most 60 s).
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hotstock;
RESET client_min_messages;
SELECT 'bsk' || left(md5(clock_timestamp()::text || pg_backend_pid()::text), 12) AS run \gset
\set a :run'-a'
\set b :run'-b'
\set c :run'-c'
\set d :run'-d'
\set e :run'-e'
\set f :run'-f'
\set g :run'-g'
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

-- wait (at most 30 s) until the units available of a, b and c are s
CREATE FUNCTION pg_temp.stock_becomes(a text, b text, c text, s text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        IF pg_temp.stock(a, b, c) = s THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
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

-- baskets of holds: every line held, or none
SELECT hotstock.put_sku(:'d', 10), hotstock.put_sku(:'e', 10), hotstock.put_sku(:'f', 3), hotstock.put_sku(:'g', 5);
SELECT hotstock.reserve_basket(:'run' || '-H1', ARRAY[:'d', :'e', :'f'], ARRAY[1, 2, 1], '10 minutes')
    AS "basket hold H1 (d 1, e 2, f 1)";
SELECT pg_temp.stock(:'d', :'e', :'f') = '9/8/2' AS "H1: every line held (9/8/2)";
SELECT hotstock.order_status(:'run' || '-H1') = 'reserved' AS "H1: status reserved";
SELECT hotstock.reserve_basket(:'run' || '-H1', ARRAY[:'d', :'e', :'f'], ARRAY[1, 2, 1], '10 minutes')
    AS "retry of H1: true";
SELECT pg_temp.stock(:'d', :'e', :'f') = '9/8/2' AS "retry of H1: nothing more held";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L, %L, %L], ARRAY[1, 3, 1], %L)',
       :'run' || '-H1', :'d', :'e', :'f', '10 minutes')) = 'HS004' AS "H1 with another qty: HS004";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L, %L], ARRAY[1, 2, 1])',
       :'run' || '-H1', :'d', :'e', :'f')) = 'HS004' AS "deduct_basket of hold H1's id: HS004";
SELECT pg_temp.sqlstate(format('SELECT hotstock.refund(%L)', :'run' || '-H1')) = 'HS011'
   AND hotstock.order_status(:'run' || '-H1') = 'reserved' AS "refund of live H1: HS011, still reserved";
SELECT pg_temp.stock(:'d', :'e', :'f') = '9/8/2' AS "refused calls: nothing taken or given back";

-- confirm: every line a sale; retries answer true
SELECT hotstock.confirm(:'run' || '-H1') AS "confirm H1";
SELECT hotstock.order_status(:'run' || '-H1') = 'deducted' AS "H1: status deducted";
SELECT pg_temp.stock(:'d', :'e', :'f') = '9/8/2' AS "confirm: available unchanged";
SELECT hotstock.confirm(:'run' || '-H1') AS "confirm H1 again: true (a retry)";
SELECT hotstock.confirm(:'run' || '-H1', retake => true) AS "confirm H1 with retake: true (confirmed, a retry)";
SELECT hotstock.reserve_basket(:'run' || '-H1', ARRAY[:'d', :'e', :'f'], ARRAY[1, 2, 1], '10 minutes')
    AS "reserve_basket H1 after confirm: true (a retry)";
SELECT pg_temp.stock(:'d', :'e', :'f') = '9/8/2' AS "retries took nothing";
SELECT pg_temp.sqlstate(format('SELECT hotstock.cancel(%L)', :'run' || '-H1')) = 'HS010' AS "cancel of confirmed H1: HS010";

-- a deducted basket is no hold
SELECT hotstock.deduct_basket(:'run' || '-D1', ARRAY[:'g'], ARRAY[1]) AS "deducted basket D1 (g 1)";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L], ARRAY[1], %L)',
       :'run' || '-D1', :'g', '10 minutes')) = 'HS004' AS "reserve_basket of D1's id: HS004";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'run' || '-D1')) = 'HS010' AS "confirm of D1: HS010";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L, retake => true)', :'run' || '-D1')) = 'HS010' AS "confirm of D1 with retake: HS010";
SELECT pg_temp.sqlstate(format('SELECT hotstock.cancel(%L)', :'run' || '-D1')) = 'HS010' AS "cancel of D1: HS010";
SELECT hotstock.refund(:'run' || '-D1') AS "refund D1";
SELECT hotstock.available(:'g') = 5 AS "refund D1: g back to 5";

-- cancel: every line back; once
SELECT hotstock.reserve_basket(:'run' || '-H2', ARRAY[:'d', :'f'], ARRAY[2, 2], '10 minutes') AS "basket hold H2 (d 2, f 2)";
SELECT pg_temp.stock(:'d', :'e', :'f') = '7/8/0' AS "H2 held (7/8/0)";
SELECT hotstock.cancel(:'run' || '-H2') AS "cancel H2: true";
SELECT pg_temp.stock(:'d', :'e', :'f') = '9/8/2' AS "cancel: every line back at once";
SELECT hotstock.order_status(:'run' || '-H2') = 'cancelled' AS "H2: status cancelled";
SELECT NOT hotstock.cancel(:'run' || '-H2') AS "cancel H2 again: false";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'run' || '-H2')) = 'HS009' AS "confirm of cancelled H2: HS009";
SELECT pg_temp.message(format('SELECT hotstock.confirm(%L)', :'run' || '-H2')) = 'reservation cancelled' AS "confirm of cancelled H2: message";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L, retake => true)', :'run' || '-H2')) = '0A000' AS "retake of cancelled H2: 0A000";
SELECT pg_temp.message(format('SELECT hotstock.confirm(%L, retake => true)', :'run' || '-H2')) = 'confirm with retake is not supported for a basket' AS "retake of cancelled H2: message";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L, %L], ARRAY[2, 2], %L)',
       :'run' || '-H2', :'d', :'f', '10 minutes')) = 'HS009' AS "reserve_basket H2 again: HS009";
SELECT pg_temp.stock(:'d', :'e', :'f') = '9/8/2' AS "refused calls took nothing";

-- a short line: false, and no line held
SELECT NOT hotstock.reserve_basket(:'run' || '-H3', ARRAY[:'d', :'f'], ARRAY[1, 3], '10 minutes')
    AS "basket hold H3 (f 3 of 2 left): false";
SELECT pg_temp.stock(:'d', :'e', :'f') = '9/8/2' AS "H3: no line held (still 9/8/2)";
SELECT hotstock.order_status(:'run' || '-H3') = 'unknown' AS "H3: status unknown";
SELECT NOT hotstock.confirm(:'run' || '-H3') AND NOT hotstock.cancel(:'run' || '-H3')
    AS "confirm and cancel of H3: false (unknown)";

-- ttl: as reserve's
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L], ARRAY[1], NULL)',
       :'run' || '-E', :'d')) = '22023' AS "ttl null: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L], ARRAY[1], %L)',
       :'run' || '-E', :'d', '0')) = '22023' AS "ttl 0: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L], ARRAY[1], %L)',
       :'run' || '-E', :'d', '-1 second')) = '22023' AS "ttl -1 second: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L], ARRAY[1], %L)',
       :'run' || '-E', :'d', '30 days 1 second')) = '22023' AS "ttl over 30 days: 22023";
SELECT pg_temp.message(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L], ARRAY[1], %L)',
       :'run' || '-E', :'d', '31 days')) = 'ttl must be greater than 0 and at most 30 days' AS "ttl: message";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L, %L], ARRAY[1, 1], %L)',
       :'run' || '-E', :'d', :'d', '1 minute')) = '22023' AS "sku twice: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, (SELECT array_agg(%L || g) FROM generate_series(1, 65) g), array_fill(1, ARRAY[65]), %L)',
       :'run' || '-E', :'run', '1 minute')) = 'HS012' AS "65 lines: HS012";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L], ARRAY[1], %L)',
       :'line', :'d', '1 minute')) = '22023' AS "a 0x1f id: 22023";
SELECT pg_temp.stock(:'d', :'e', :'f') = '9/8/2' AS "argument errors: nothing held";

-- transactions: a rolled-back reserve_basket is cancelled, every line
BEGIN;
SELECT hotstock.reserve_basket(:'run' || '-H4', ARRAY[:'d', :'e'], ARRAY[1, 1], '10 minutes') AS "in block: basket hold H4";
SELECT pg_temp.stock(:'d', :'e', :'f') = '8/7/2' AS "in block: H4 held at once";
ROLLBACK;
SELECT pg_temp.stock(:'d', :'e', :'f') = '9/8/2' AS "rollback: every line of H4 back";
SELECT hotstock.order_status(:'run' || '-H4') = 'cancelled' AS "rollback: H4 cancelled";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L, %L], ARRAY[1, 1], %L)',
       :'run' || '-H4', :'d', :'e', '10 minutes')) = 'HS009' AS "retry of rolled-back H4: HS009";

-- confirm and cancel in a block: claimed at the call, settled at commit
SELECT hotstock.reserve_basket(:'run' || '-H5', ARRAY[:'d', :'e'], ARRAY[1, 1], '10 minutes') AS "basket hold H5 (d 1, e 1)";
BEGIN;
SELECT hotstock.confirm(:'run' || '-H5') AS "in block: confirm H5 (claimed)";
SELECT hotstock.order_status(:'run' || '-H5') = 'reserved' AS "in block: H5 reserved until commit";
SELECT hotstock.confirm(:'run' || '-H5') AS "in block: confirm H5 again: true";
SELECT hotstock.reserve_basket(:'run' || '-H5', ARRAY[:'d', :'e'], ARRAY[1, 1], '10 minutes') AS "in block: reserve_basket H5 again: true";
SELECT pg_temp.sqlstate(format('SELECT hotstock.cancel(%L)', :'run' || '-H5')) = 'HS010' AS "in block: cancel after confirm: HS010";
ROLLBACK;
SELECT hotstock.order_status(:'run' || '-H5') = 'reserved' AS "rollback: H5 still reserved (claim released)";
BEGIN;
SELECT hotstock.cancel(:'run' || '-H5') AS "in block: cancel H5 (claimed)";
SELECT pg_temp.stock(:'d', :'e', :'f') = '8/7/2' AS "in block: no line back before commit";
SELECT NOT hotstock.cancel(:'run' || '-H5') AS "in block: cancel H5 again: false";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'run' || '-H5')) = 'HS009' AS "in block: confirm after cancel: HS009";
ROLLBACK;
SELECT hotstock.order_status(:'run' || '-H5') = 'reserved' AS "rollback: cancel of H5 released";
SELECT pg_temp.stock(:'d', :'e', :'f') = '8/7/2' AS "rollback: nothing given back";
BEGIN;
SELECT hotstock.confirm(:'run' || '-H5') AS "in block: confirm H5";
COMMIT;
SELECT hotstock.order_status(:'run' || '-H5') = 'deducted' AS "commit: H5 confirmed";
SELECT pg_temp.stock(:'d', :'e', :'f') = '8/7/2' AS "commit: H5's lines sold";
SELECT hotstock.reserve_basket(:'run' || '-H6', ARRAY[:'e', :'f'], ARRAY[2, 1], '10 minutes') AS "basket hold H6 (e 2, f 1)";
BEGIN;
SELECT hotstock.cancel(:'run' || '-H6') AS "in block: cancel H6";
COMMIT;
SELECT hotstock.order_status(:'run' || '-H6') = 'cancelled' AS "commit: H6 cancelled";
SELECT pg_temp.stock(:'d', :'e', :'f') = '8/7/2' AS "commit: H6's lines back";

-- reserve_basket and confirm in one block; a savepoint
BEGIN;
SELECT hotstock.reserve_basket(:'run' || '-H7', ARRAY[:'d', :'f'], ARRAY[1, 1], '10 minutes') AS "in block: basket hold H7";
SELECT hotstock.confirm(:'run' || '-H7') AS "in block: confirm H7";
ROLLBACK;
SELECT hotstock.order_status(:'run' || '-H7') = 'cancelled' AS "rollback of reserve_basket + confirm: H7 cancelled";
BEGIN;
SELECT hotstock.reserve_basket(:'run' || '-H8', ARRAY[:'d', :'f'], ARRAY[1, 1], '10 minutes') AS "basket hold H8";
SAVEPOINT s;
SELECT hotstock.confirm(:'run' || '-H8') AS "confirm H8 after savepoint";
ROLLBACK TO SAVEPOINT s;
SAVEPOINT t;
SELECT hotstock.reserve_basket(:'run' || '-H9', ARRAY[:'e'], ARRAY[1], '10 minutes') AS "basket hold H9 after savepoint";
ROLLBACK TO SAVEPOINT t;
SELECT hotstock.confirm(:'run' || '-H8') AS "confirm H8 again";
COMMIT;
SELECT hotstock.order_status(:'run' || '-H8') = 'deducted'
   AND hotstock.order_status(:'run' || '-H9') = 'cancelled' AS "savepoints: H8 confirmed, H9 cancelled";
SELECT pg_temp.stock(:'d', :'e', :'f') = '7/7/1' AS "savepoints: H8's lines sold, H7 and H9 back";

-- a failing autocommit statement undoes its confirm: every line refunded
SELECT hotstock.reserve_basket(:'run' || '-H10', ARRAY[:'d', :'e'], ARRAY[1, 1], '10 minutes') AS "basket hold H10";
SELECT CASE WHEN hotstock.confirm(:'run' || '-H10') THEN 1 / (random() * 0)::int END;
SELECT hotstock.order_status(:'run' || '-H10') = 'refunded' AS "failed statement: H10's sale refunded";
SELECT pg_temp.stock(:'d', :'e', :'f') = '7/7/1' AS "failed statement: H10's lines back";

-- refund of a confirmed basket: every line
SELECT hotstock.refund(:'run' || '-H1') AS "refund of confirmed H1: true";
SELECT pg_temp.stock(:'d', :'e', :'f') = '8/9/2' AS "refund: H1's lines back (8/9/2)";
SELECT hotstock.order_status(:'run' || '-H1') = 'refunded' AS "H1: status refunded";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'run' || '-H1')) = 'HS005' AS "confirm of refunded H1: HS005";

-- expiry: the daemon expires every line at the one deadline; a confirm
-- at or past it never succeeds, and the basket then expires whole
SELECT hotstock.reserve_basket(:'run' || '-X1', ARRAY[:'d', :'e', :'f'], ARRAY[1, 1, 1], '200 ms') AS "basket hold X1 for 200 ms";
SELECT pg_temp.stock(:'d', :'e', :'f') = '7/8/1' AS "X1 held (7/8/1)";
SELECT pg_temp.stock_becomes(:'d', :'e', :'f', '8/9/2') AS "X1 expires: every line back (within 30 s)";
SELECT hotstock.order_status(:'run' || '-X1') = 'expired' AS "X1: status expired";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'run' || '-X1')) = 'HS008' AS "confirm of expired X1: HS008";
SELECT pg_temp.message(format('SELECT hotstock.confirm(%L)', :'run' || '-X1')) = 'reservation expired' AS "confirm of expired X1: message";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L, retake => true)', :'run' || '-X1')) = '0A000' AS "retake of expired X1: 0A000";
SELECT NOT hotstock.cancel(:'run' || '-X1') AS "cancel of expired X1: false";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L, %L, %L], ARRAY[1, 1, 1], %L)',
       :'run' || '-X1', :'d', :'e', :'f', '10 minutes')) = 'HS008' AS "reserve_basket X1 again: HS008";
SELECT hotstock.reserve_basket(:'run' || '-X2', ARRAY[:'d', :'e'], ARRAY[1, 1], '200 ms') AS "basket hold X2 for 200 ms";
SELECT pg_sleep(0.3);
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'run' || '-X2')) = 'HS008' AS "confirm of X2 past its deadline: HS008";
SELECT pg_temp.stock_becomes(:'d', :'e', :'f', '8/9/2') AS "X2 expires whole: every line back";
SELECT hotstock.order_status(:'run' || '-X2') = 'expired' AS "X2: status expired";
SELECT pg_temp.stock(:'d', :'e', :'f') = '8/9/2' AS "expiries: nothing sold, nothing lost";

-- a basket held while the drain catches up: hotstock.reservations,
-- hotstock.stock.reserved
SELECT hotstock.reserve_basket(:'run' || '-L1', ARRAY[:'g', :'d'], ARRAY[2, 1], '10 minutes') AS "basket hold L1 (g 2, d 1)";

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
SELECT basket_id = :'run' || '-H1' AS basket, line, sku = :'run' || '-' || chr(100 + line) AS sku_of_line, qty, hold,
       refunded_at IS NOT NULL AS refunded
FROM hotstock.basket_lines WHERE basket_id = :'run' || '-H1' ORDER BY line;
SELECT bool_and(hold = 'cancelled') AND count(*) = 2 AS "ledger: H4's lines cancelled (rolled back)"
FROM hotstock.basket_lines WHERE basket_id = :'run' || '-H4';
SELECT bool_and(hold = 'expired') AND count(*) = 3 AS "ledger: X1's lines expired"
FROM hotstock.basket_lines WHERE basket_id = :'run' || '-X1';
SELECT line, sku = :'g' AS sku_is_g, qty, order_id = :'run' || '-L1' || chr(31) || lpad(line::text, 2, '0') || '02' AS order_id_is_line,
       expires_at > now() AS live
FROM hotstock.reservations WHERE basket_id = :'run' || '-L1' ORDER BY line;
SELECT reserved = 2 AS "stock: g's reserved is L1's 2 units" FROM hotstock.stock WHERE sku = :'g';
SELECT reserved = 1 AS "stock: d's reserved is L1's 1 unit" FROM hotstock.stock WHERE sku = :'d';
SELECT hotstock.cancel(:'run' || '-L1') AS "cancel L1";
