--
-- hotstock: holds (reservations with a time-to-live).  reserve takes units
-- out of available at once; confirm makes the hold a sale, cancel gives it
-- back, and the daemon expires it at its deadline.  Retries, errors and
-- their SQLSTATEs, retake, transactions (rollback, savepoints, prepared
-- transactions settled by the drain), then what the drain makes of it all:
-- hotstock.ledger, hotstock.stock, hotstock.reservations.  Polls (bounded:
-- 30 s for an expiry, 60 s for the drain), never sleeps a fixed time.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hotstock;
RESET client_min_messages;
SELECT 'hld' || left(md5(clock_timestamp()::text || pg_backend_pid()::text), 12) AS run \gset
\set sku :run'-sku'
\set VERBOSITY terse
SELECT repeat('x', 64) AS long \gset

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
-- wait (at most 30 s) until hotstock.order_status(o) says s
CREATE FUNCTION pg_temp.status_becomes(o text, s text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        IF hotstock.order_status(o) = s THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;
-- wait (at most 60 s) until the ledger holds order o settled (xid null),
-- with hold h (null: a deduction), refunded or not
CREATE FUNCTION pg_temp.drained(o text, h text, want_refunded boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 600 LOOP
        IF EXISTS (SELECT 1 FROM hotstock.ledger WHERE order_id = o AND xid IS NULL
                   AND hold IS NOT DISTINCT FROM h
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

-- reserve: the units leave available at once; a retry holds nothing more
SELECT hotstock.reserve(:'sku', 2, :'run' || '-r1', '10 minutes') AS "reserve r1 (2 units)";
SELECT hotstock.available(:'sku') = 8 AS "reserve: units out of available at once";
SELECT hotstock.order_status(:'run' || '-r1') = 'reserved' AS "status r1: reserved";
SELECT hotstock.reserve(:'sku', 2, :'run' || '-r1', '10 minutes') AS "reserve r1 again: true (a retry)";
SELECT hotstock.available(:'sku') = 8 AS "retry held nothing more";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 3, %L, %L)', :'sku', :'run' || '-r1', '10 minutes')) = 'HS004' AS "r1 with another qty: HS004";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 2, %L)', :'sku', :'run' || '-r1')) = 'HS004' AS "deduct of a reserved order id: HS004";
SELECT pg_temp.sqlstate(format('SELECT hotstock.refund(%L)', :'run' || '-r1')) = 'HS011'
   AND hotstock.order_status(:'run' || '-r1') = 'reserved' AS "refund of a live hold: HS011, still reserved";

-- confirm: a sale; retries answer true
SELECT hotstock.confirm(:'run' || '-r1') AS "confirm r1";
SELECT hotstock.order_status(:'run' || '-r1') = 'deducted' AS "status r1: deducted";
SELECT hotstock.available(:'sku') = 8 AS "confirm: available unchanged";
SELECT hotstock.confirm(:'run' || '-r1') AS "confirm r1 again: true (a retry)";
SELECT hotstock.reserve(:'sku', 2, :'run' || '-r1', '10 minutes') AS "reserve r1 after confirm: true (a retry)";
SELECT hotstock.available(:'sku') = 8 AS "retries took nothing";
SELECT pg_temp.sqlstate(format('SELECT hotstock.cancel(%L)', :'run' || '-r1')) = 'HS010' AS "cancel of confirmed r1: HS010";
SELECT hotstock.refund(:'run' || '-r1') AS "refund of confirmed r1: true";
SELECT hotstock.available(:'sku') = 10 AS "refund: units back";
SELECT hotstock.order_status(:'run' || '-r1') = 'refunded' AS "status r1: refunded";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'run' || '-r1')) = 'HS005' AS "confirm of refunded r1: HS005";

-- cancel: the units come back; once
SELECT hotstock.reserve(:'sku', 3, :'run' || '-c1', '10 minutes') AS "reserve c1 (3 units)";
SELECT hotstock.available(:'sku') = 7 AS "c1 holds 3";
SELECT hotstock.cancel(:'run' || '-c1') AS "cancel c1: true";
SELECT hotstock.available(:'sku') = 10 AS "cancel: units back at once";
SELECT hotstock.order_status(:'run' || '-c1') = 'cancelled' AS "status c1: cancelled";
SELECT NOT hotstock.cancel(:'run' || '-c1') AS "cancel c1 again: false";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'run' || '-c1')) = 'HS009' AS "confirm of cancelled c1: HS009";
SELECT pg_temp.message(format('SELECT hotstock.confirm(%L)', :'run' || '-c1')) = 'reservation cancelled' AS "confirm of cancelled c1: message";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 3, %L, %L)', :'sku', :'run' || '-c1', '10 minutes')) = 'HS009' AS "reserve c1 again: HS009";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 3, %L)', :'sku', :'run' || '-c1')) = 'HS009' AS "deduct c1: HS009";
SELECT hotstock.available(:'sku') = 10 AS "refused calls took nothing";

-- retake: a late confirm takes the units anew
SELECT hotstock.confirm(:'run' || '-c1', retake => true) AS "confirm c1 with retake: true";
SELECT hotstock.available(:'sku') = 7 AS "retake: 3 units taken";
SELECT hotstock.order_status(:'run' || '-c1') = 'deducted' AS "status c1: deducted";
SELECT hotstock.confirm(:'run' || '-c1', retake => true) AS "retake c1 again: true (a retry)";
SELECT hotstock.confirm(:'run' || '-c1') AS "confirm c1: true (retaken)";
SELECT hotstock.available(:'sku') = 7 AS "retries took nothing";

-- what is not a hold
SELECT hotstock.deduct(:'sku', 1, :'run' || '-d1') AS "deduct d1";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'run' || '-d1')) = 'HS010' AS "confirm of deduction d1: HS010";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L, true)', :'run' || '-d1')) = 'HS010' AS "confirm d1 with retake: HS010";
SELECT pg_temp.sqlstate(format('SELECT hotstock.cancel(%L)', :'run' || '-d1')) = 'HS010' AS "cancel of deduction d1: HS010";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'sku', :'run' || '-d1', '1 minute')) = 'HS004' AS "reserve of deduction d1: HS004";
SELECT NOT hotstock.confirm(:'run' || '-never') AS "confirm of an unknown order: false";
SELECT NOT hotstock.cancel(:'run' || '-never') AS "cancel of an unknown order: false";
SELECT hotstock.order_status(:'run' || '-never') = 'unknown' AS "status of an unknown order: unknown";
SELECT hotstock.available(:'sku') = 6 AS "only d1 took a unit";

-- sold out
SELECT hotstock.put_sku(:'sku' || '-1', 1);
SELECT NOT hotstock.reserve(:'sku' || '-1', 2, :'run' || '-so1', '1 minute') AS "reserve 2 of 1: false";
SELECT hotstock.order_status(:'run' || '-so1') = 'unknown' AS "status of a sold-out reserve: unknown";
SELECT hotstock.reserve(:'sku' || '-1', 1, :'run' || '-so2', '10 minutes') AS "reserve the last unit: true";
SELECT NOT hotstock.reserve(:'sku' || '-1', 1, :'run' || '-so3', '1 minute') AS "reserve after it: false";
SELECT NOT hotstock.deduct(:'sku' || '-1', 1, :'run' || '-so4') AS "deduct while it is held: false";
SELECT hotstock.cancel(:'run' || '-so2') AS "cancel so2";
SELECT hotstock.deduct(:'sku' || '-1', 1, :'run' || '-so4') AS "deduct after the cancel: true";
SELECT NOT hotstock.confirm(:'run' || '-so2', retake => true) AS "retake of so2, sold out: false";
SELECT hotstock.order_status(:'run' || '-so2') = 'cancelled' AS "status so2: still cancelled";
SELECT hotstock.available(:'sku' || '-1') = 0 AS "nothing left, nothing oversold";

-- arguments
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(NULL, 1, %L, %L)', :'run' || '-q', '1 minute')) = '22023' AS "reserve sku null: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', '', :'run' || '-q', '1 minute')) = '22023' AS "reserve sku empty: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'long', :'run' || '-q', '1 minute')) = '22001' AS "reserve sku 64 bytes: 22001";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'run' || '-nosuch', :'run' || '-q', '1 minute')) = '42704' AS "reserve unknown sku: 42704";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, NULL, %L, %L)', :'sku', :'run' || '-q', '1 minute')) = '22023' AS "reserve qty null: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 0, %L, %L)', :'sku', :'run' || '-q', '1 minute')) = '22023' AS "reserve qty 0: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1000001, %L, %L)', :'sku', :'run' || '-q', '1 minute')) = '22023' AS "reserve qty 1000001: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, NULL, %L)', :'sku', '1 minute')) = '22023' AS "reserve order_id null: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'sku', '', '1 minute')) = '22023' AS "reserve order_id empty: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'sku', :'long', '1 minute')) = '22001' AS "reserve order_id 64 bytes: 22001";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, NULL)', :'sku', :'run' || '-q')) = '22023' AS "reserve ttl null: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'sku', :'run' || '-q', '0')) = '22023' AS "reserve ttl 0: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'sku', :'run' || '-q', '-1 second')) = '22023' AS "reserve ttl -1 second: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'sku', :'run' || '-q', '30 days 1 second')) = '22023' AS "reserve ttl over 30 days: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'sku', :'run' || '-q', '1 year')) = '22023' AS "reserve ttl 1 year: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'sku', :'run' || '-q', '1 month -1 day')) = 'ok' AS "reserve ttl 29 days: ok";
SELECT pg_temp.message(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'sku', :'run' || '-q2', '31 days')) = 'ttl must be greater than 0 and at most 30 days' AS "reserve ttl: message";
SELECT hotstock.cancel(:'run' || '-q') AS "cancel the 29-day hold";
SELECT pg_temp.sqlstate('SELECT hotstock.confirm(NULL)') = '22023' AS "confirm order_id null: 22023";
SELECT pg_temp.sqlstate('SELECT hotstock.confirm('''')') = '22023' AS "confirm order_id empty: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'long')) = '22001' AS "confirm order_id 64 bytes: 22001";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L, NULL)', :'run' || '-q')) = '22023' AS "confirm retake null: 22023";
SELECT pg_temp.sqlstate('SELECT hotstock.cancel(NULL)') = '22023' AS "cancel order_id null: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.cancel(%L)', :'long')) = '22001' AS "cancel order_id 64 bytes: 22001";
SELECT hotstock.available(:'sku') = 6 AS "failed calls took nothing";

-- expiry: the daemon gives the units back at the deadline
SELECT hotstock.put_sku(:'sku' || '-x', 5);
SELECT hotstock.reserve(:'sku' || '-x', 2, :'run' || '-e1', '1 second') AS "reserve e1 for 1 second";
SELECT hotstock.available(:'sku' || '-x') = 3 AS "e1 holds 2";
SELECT pg_temp.status_becomes(:'run' || '-e1', 'expired') AS "e1 expires (within 30 s)";
SELECT hotstock.available(:'sku' || '-x') = 5 AS "expiry: units back";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'run' || '-e1')) = 'HS008' AS "confirm of expired e1: HS008";
SELECT pg_temp.message(format('SELECT hotstock.confirm(%L)', :'run' || '-e1')) = 'reservation expired' AS "confirm of expired e1: message";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 2, %L, %L)', :'sku' || '-x', :'run' || '-e1', '1 minute')) = 'HS008' AS "reserve e1 again: HS008";
SELECT NOT hotstock.cancel(:'run' || '-e1') AS "cancel of expired e1: false";
SELECT hotstock.available(:'sku' || '-x') = 5 AS "refused calls took nothing";
SELECT hotstock.confirm(:'run' || '-e1', retake => true) AS "confirm e1 with retake: true";
SELECT hotstock.available(:'sku' || '-x') = 3 AS "retake: 2 units taken";
SELECT hotstock.order_status(:'run' || '-e1') = 'deducted' AS "status e1: deducted";

-- transactions
SELECT hotstock.put_sku(:'sku' || '-t', 10);
BEGIN;
SELECT hotstock.reserve(:'sku' || '-t', 1, :'run' || '-t1', '10 minutes') AS "in block: reserve t1";
SELECT hotstock.available(:'sku' || '-t') = 9 AS "in block: held at once";
ROLLBACK;
SELECT hotstock.available(:'sku' || '-t') = 10 AS "rollback: unit back";
SELECT hotstock.order_status(:'run' || '-t1') = 'cancelled' AS "rollback: t1 cancelled";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'sku' || '-t', :'run' || '-t1', '1 minute')) = 'HS009' AS "reserve of rolled-back t1: HS009";

BEGIN;
SELECT hotstock.reserve(:'sku' || '-t', 2, :'run' || '-t2', '10 minutes') AS "in block: reserve t2";
COMMIT;
SELECT hotstock.order_status(:'run' || '-t2') = 'reserved' AS "commit: t2 reserved";
BEGIN;
SELECT hotstock.confirm(:'run' || '-t2') AS "in block: confirm t2 (claimed)";
SELECT hotstock.order_status(:'run' || '-t2') = 'reserved' AS "in block: t2 reserved until commit";
SELECT hotstock.confirm(:'run' || '-t2') AS "in block: confirm t2 again: true";
SELECT pg_temp.sqlstate(format('SELECT hotstock.cancel(%L)', :'run' || '-t2')) = 'HS010' AS "in block: cancel after confirm: HS010";
ROLLBACK;
SELECT hotstock.order_status(:'run' || '-t2') = 'reserved' AS "rollback: t2 still reserved";
BEGIN;
SELECT hotstock.confirm(:'run' || '-t2') AS "in block: confirm t2";
COMMIT;
SELECT hotstock.order_status(:'run' || '-t2') = 'deducted' AS "commit: t2 confirmed";
SELECT hotstock.available(:'sku' || '-t') = 8 AS "t2's 2 units sold";

SELECT hotstock.reserve(:'sku' || '-t', 3, :'run' || '-t3', '10 minutes') AS "reserve t3 (3)";
BEGIN;
SELECT hotstock.cancel(:'run' || '-t3') AS "in block: cancel t3 (claimed)";
SELECT hotstock.available(:'sku' || '-t') = 5 AS "in block: units not back before commit";
SELECT hotstock.order_status(:'run' || '-t3') = 'reserved' AS "in block: t3 still reserved";
SELECT NOT hotstock.cancel(:'run' || '-t3') AS "in block: cancel t3 again: false";
SELECT pg_temp.sqlstate(format('SELECT hotstock.confirm(%L)', :'run' || '-t3')) = 'HS009' AS "in block: confirm after cancel: HS009";
ROLLBACK;
SELECT hotstock.order_status(:'run' || '-t3') = 'reserved' AS "rollback: cancel of t3 released";
SELECT hotstock.available(:'sku' || '-t') = 5 AS "rollback: nothing given back";
BEGIN;
SELECT hotstock.cancel(:'run' || '-t3') AS "in block: cancel t3";
COMMIT;
SELECT hotstock.available(:'sku' || '-t') = 8 AS "commit: t3's units back";
SELECT hotstock.order_status(:'run' || '-t3') = 'cancelled' AS "commit: t3 cancelled";

BEGIN;
SELECT hotstock.reserve(:'sku' || '-t', 1, :'run' || '-t4', '10 minutes') AS "in block: reserve t4";
SELECT hotstock.confirm(:'run' || '-t4') AS "in block: confirm t4";
ROLLBACK;
SELECT hotstock.order_status(:'run' || '-t4') = 'cancelled' AS "rollback of reserve + confirm: t4 cancelled";
SELECT hotstock.available(:'sku' || '-t') = 8 AS "rollback of reserve + confirm: unit back";
BEGIN;
SELECT hotstock.reserve(:'sku' || '-t', 1, :'run' || '-t5', '10 minutes') AS "in block: reserve t5";
SELECT hotstock.confirm(:'run' || '-t5') AS "in block: confirm t5";
COMMIT;
SELECT hotstock.order_status(:'run' || '-t5') = 'deducted' AS "commit of reserve + confirm: t5 sold";
SELECT hotstock.available(:'sku' || '-t') = 7 AS "t5's unit sold";

-- savepoints
BEGIN;
SELECT hotstock.reserve(:'sku' || '-t', 1, :'run' || '-s1', '10 minutes') AS "reserve s1";
SAVEPOINT a;
SELECT hotstock.reserve(:'sku' || '-t', 1, :'run' || '-s2', '10 minutes') AS "reserve s2 after savepoint a";
ROLLBACK TO SAVEPOINT a;
SELECT hotstock.available(:'sku' || '-t') = 6 AS "rollback to a: s2 undone, s1 kept";
SAVEPOINT b;
SELECT hotstock.confirm(:'run' || '-s1') AS "confirm s1 after savepoint b";
ROLLBACK TO SAVEPOINT b;
SAVEPOINT c;
SELECT hotstock.cancel(:'run' || '-s1') AS "cancel s1 after savepoint c";
ROLLBACK TO SAVEPOINT c;
SELECT hotstock.confirm(:'run' || '-s1') AS "confirm s1 again";
COMMIT;
SELECT hotstock.order_status(:'run' || '-s1') = 'deducted'
   AND hotstock.order_status(:'run' || '-s2') = 'cancelled' AS "savepoints: s1 confirmed, s2 cancelled";
SELECT hotstock.available(:'sku' || '-t') = 6 AS "savepoints: s1's unit sold";

-- a failing autocommit statement undoes its reserve, and its confirm
SELECT CASE WHEN hotstock.reserve(:'sku' || '-t', 1, :'run' || '-a1', '10 minutes') THEN 1 / (random() * 0)::int END;
SELECT hotstock.order_status(:'run' || '-a1') = 'cancelled' AS "failed statement: a1 cancelled";
SELECT hotstock.reserve(:'sku' || '-t', 1, :'run' || '-a2', '10 minutes') AS "reserve a2";
SELECT CASE WHEN hotstock.confirm(:'run' || '-a2') THEN 1 / (random() * 0)::int END;
SELECT hotstock.order_status(:'run' || '-a2') = 'refunded' AS "failed statement: a2's sale refunded";
SELECT hotstock.available(:'sku' || '-t') = 6 AS "failed statements: units back";

-- a transaction that cancels cannot be prepared (0A000)
SELECT hotstock.reserve(:'sku' || '-t', 1, :'run' || '-q1', '10 minutes') AS "reserve q1";
BEGIN;
SELECT hotstock.cancel(:'run' || '-q1') AS "cancel q1 before prepare";
PREPARE TRANSACTION 'hotstock_hold_q1';
SELECT count(*) = 0 AS "nothing prepared" FROM pg_prepared_xacts WHERE gid = 'hotstock_hold_q1';
SELECT hotstock.order_status(:'run' || '-q1') = 'reserved' AS "failed prepare: q1 still reserved";
SELECT hotstock.cancel(:'run' || '-q1') AS "cancel q1";
SELECT hotstock.available(:'sku' || '-t') = 6 AS "q1's unit back";

-- prepared transactions: the drain settles holds by the transaction's fate
SELECT hotstock.put_sku(:'sku' || '-p', 10);
BEGIN;
SELECT hotstock.reserve(:'sku' || '-p', 2, :'run' || '-p1', '10 minutes') AS "reserve p1 (2)";
PREPARE TRANSACTION 'hotstock_hold_p1';
SELECT hotstock.available(:'sku' || '-p') = 8 AS "prepared: p1's units out";
ROLLBACK PREPARED 'hotstock_hold_p1';
SELECT pg_temp.drained(:'run' || '-p1', 'cancelled', false) AS "rollback prepared: the drain cancels p1";
SELECT hotstock.order_status(:'run' || '-p1') = 'cancelled' AS "rollback prepared: p1 cancelled";
SELECT hotstock.available(:'sku' || '-p') = 10 AS "rollback prepared: units back";

BEGIN;
SELECT hotstock.reserve(:'sku' || '-p', 1, :'run' || '-p2', '10 minutes') AS "reserve p2";
PREPARE TRANSACTION 'hotstock_hold_p2';
SET lock_timeout = '300ms';
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'sku' || '-p', :'run' || '-p2', '10 minutes')) = '55P03'
    AS "retry of p2 waits for the prepared transaction (lock_timeout)";
RESET lock_timeout;
COMMIT PREPARED 'hotstock_hold_p2';
SELECT pg_temp.drained(:'run' || '-p2', 'reserved', false) AS "commit prepared: p2 settles reserved";
BEGIN;
SELECT hotstock.confirm(:'run' || '-p2') AS "confirm p2";
PREPARE TRANSACTION 'hotstock_hold_p2c';
SELECT hotstock.order_status(:'run' || '-p2') = 'deducted' AS "prepared: p2 confirmed at prepare";
ROLLBACK PREPARED 'hotstock_hold_p2c';
SELECT pg_temp.drained(:'run' || '-p2', 'confirmed', true) AS "rollback prepared: the drain refunds p2's sale";
SELECT hotstock.order_status(:'run' || '-p2') = 'refunded' AS "rollback prepared: p2 refunded";

BEGIN;
SELECT hotstock.reserve(:'sku' || '-p', 3, :'run' || '-p3', '10 minutes') AS "reserve p3 (3)";
SELECT hotstock.confirm(:'run' || '-p3') AS "confirm p3";
PREPARE TRANSACTION 'hotstock_hold_p3';
COMMIT PREPARED 'hotstock_hold_p3';
SELECT pg_temp.drained(:'run' || '-p3', 'confirmed', false) AS "commit prepared: p3 settles sold";
SELECT hotstock.available(:'sku' || '-p') = 7 AS "p3's units sold, the rest back";

-- one live hold for the view
SELECT hotstock.reserve(:'sku', 1, :'run' || '-live', '10 minutes') AS "reserve live (1)";

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

-- the ledger: each order once, holds with their state and deadline
SELECT count(*) = count(DISTINCT order_id) AS "ledger: each order once"
FROM hotstock.ledger WHERE order_id LIKE :'run' || '-%';
SELECT hold = 'confirmed' AND refunded_at IS NOT NULL AND settle_lsn > lsn AND settled_at IS NOT NULL
       AND expires_at > deducted_at AS "ledger r1: confirmed, then refunded"
FROM hotstock.ledger WHERE order_id = :'run' || '-r1';
SELECT hold = 'confirmed' AND lsn > settle_lsn AND refunded_at IS NULL AND expires_at IS NOT NULL
       AS "ledger c1: cancelled, then retaken (its DEDUCT after the CANCEL)"
FROM hotstock.ledger WHERE order_id = :'run' || '-c1';
SELECT hold = 'confirmed' AND lsn > settle_lsn
       AND settled_at >= expires_at AND settled_at < expires_at + interval '30 seconds'
       AS "ledger e1: expired at its deadline, then retaken"
FROM hotstock.ledger WHERE order_id = :'run' || '-e1';
SELECT hold IS NULL AND expires_at IS NULL AND settle_lsn IS NULL AS "ledger d1: a plain deduction"
FROM hotstock.ledger WHERE order_id = :'run' || '-d1';
SELECT count(*) = 5 AS "ledger: t1, t4, s2, a1, p1 cancelled by their transactions, settled"
FROM hotstock.ledger
WHERE order_id IN (:'run' || '-t1', :'run' || '-t4', :'run' || '-s2', :'run' || '-a1', :'run' || '-p1')
  AND hold = 'cancelled' AND settle_lsn > lsn AND xid IS NULL;
SELECT hold = 'cancelled' AND settle_lsn > lsn AS "ledger t3: cancelled at commit"
FROM hotstock.ledger WHERE order_id = :'run' || '-t3';
SELECT count(*) = 0 AS "ledger: sold-out attempts left no row"
FROM hotstock.ledger WHERE order_id IN (:'run' || '-so1', :'run' || '-so3');
SELECT pg_temp.drained(:'run' || '-live', 'reserved', false) AS "ledger live: reserved";

-- the reservations view: live holds as of the drain
SELECT count(*) = 1 AS "reservations: only the live hold of this run"
FROM hotstock.reservations WHERE order_id LIKE :'run' || '-%';
SELECT sku = :'sku' AND qty = 1
       AND expires_at - reserved_at BETWEEN interval '9 minutes 59 seconds' AND interval '10 minutes 1 second'
       AS "reservations: live, its sku, qty and deadline"
FROM hotstock.reservations WHERE order_id = :'run' || '-live';

-- stock mirrors the counters: available, reserved, sold; nothing lost
SELECT bool_and(s.available = hotstock.available(s.sku)) AS "stock: available = hotstock.available()"
FROM hotstock.stock s WHERE s.sku LIKE :'run' || '-%';
SELECT s.reserved = 1 AS "stock: 1 unit reserved (live)" FROM hotstock.stock s WHERE s.sku = :'sku';
SELECT bool_and(s.reserved = coalesce((SELECT sum(l.qty) FROM hotstock.ledger l
                                       WHERE l.sku = s.sku AND l.hold = 'reserved'), 0))
       AS "stock: reserved = units of the live holds in the ledger"
FROM hotstock.stock s WHERE s.sku LIKE :'run' || '-%';
SELECT bool_and(s.sold = coalesce((SELECT sum(l.qty) FROM hotstock.ledger l
                                   WHERE l.sku = s.sku AND l.refunded_at IS NULL
                                     AND (l.hold IS NULL OR l.hold = 'confirmed')), 0))
       AS "stock: sold = units of unrefunded deductions and confirmed holds"
FROM hotstock.stock s WHERE s.sku LIKE :'run' || '-%';
SELECT bool_and(s.available + s.reserved + s.sold = p.put_in)
       AS "invariant: available + reserved + sold = stock put in"
FROM hotstock.stock s
JOIN (VALUES (:'sku', 10), (:'sku' || '-1', 1), (:'sku' || '-x', 5), (:'sku' || '-t', 10),
             (:'sku' || '-p', 10)) AS p(sku, put_in) ON p.sku = s.sku;
SELECT count(*) = 5 AS "stock: every sku of this run" FROM hotstock.stock WHERE sku LIKE :'run' || '-%';

-- settled, and the status view agrees
SELECT pg_temp.drained(:'run' || '-t5', 'confirmed', false) AS "t5 settled as sold";
SELECT count(*) = 0 AS "nothing of this run left unsettled"
FROM hotstock.ledger WHERE order_id LIKE :'run' || '-%' AND xid IS NOT NULL;
SELECT applied_lsn >= :'target' AND pending_refunds >= 0 AS "status: caught up" FROM hotstock.status;

-- hotstock_app may reserve, confirm, cancel and read the view
SET ROLE hotstock_app;
SELECT hotstock.reserve(:'sku', 1, :'run' || '-app', '10 minutes') AS "app: reserve";
SELECT hotstock.confirm(:'run' || '-app') AS "app: confirm";
SELECT NOT hotstock.cancel(:'run' || '-app2') AS "app: cancel";
SELECT count(*) >= 0 AS "app: reads hotstock.reservations" FROM hotstock.reservations;
RESET ROLE;
SELECT hotstock.refund(:'run' || '-app') AS "refund app's order";
SELECT hotstock.cancel(:'run' || '-live') AS "cancel the live hold";
