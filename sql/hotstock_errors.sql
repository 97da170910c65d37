--
-- hotstock: every argument error and refused write carries its SQLSTATE.
-- pg_temp.sqlstate(q) runs q and returns the SQLSTATE it raised ('ok' if
-- none), so each case is one labelled boolean.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hotstock;
RESET client_min_messages;
SELECT 'err' || left(md5(clock_timestamp()::text || pg_backend_pid()::text), 12) AS run \gset
\set sku :run'-sku'
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

SELECT hotstock.put_sku(:'sku', 10);

-- qty
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, NULL, %L)', :'sku', :'run' || '-q')) = '22023' AS "deduct qty null: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 0, %L)', :'sku', :'run' || '-q')) = '22023' AS "deduct qty 0: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, -1, %L)', :'sku', :'run' || '-q')) = '22023' AS "deduct qty -1: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1000001, %L)', :'sku', :'run' || '-q')) = '22023' AS "deduct qty 1000001: 22023";
SELECT pg_temp.message(format('SELECT hotstock.deduct(%L, 0, %L)', :'sku', :'run' || '-q')) = 'qty must be between 1 and 1000000' AS "deduct qty 0: message";

-- sku
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(NULL, 1, %L)', :'run' || '-q')) = '22023' AS "deduct sku null: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', '', :'run' || '-q')) = '22023' AS "deduct sku empty: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'long', :'run' || '-q')) = '22001' AS "deduct sku 64 bytes: 22001";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'run' || '-nosuch', :'run' || '-q')) = '42704' AS "deduct unknown sku: 42704";
SELECT pg_temp.message(format('SELECT hotstock.deduct(%L, 1, %L)', '', :'run' || '-q')) = 'sku must not be empty' AS "deduct sku empty: message";
SELECT pg_temp.message(format('SELECT hotstock.deduct(%L, 1, %L)', :'long', :'run' || '-q')) = 'sku is too long' AS "deduct sku 64 bytes: message";

-- order_id
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, NULL)', :'sku')) = '22023' AS "deduct order_id null: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'sku', '')) = '22023' AS "deduct order_id empty: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'sku', :'long')) = '22001' AS "deduct order_id 64 bytes: 22001";
SELECT pg_temp.sqlstate('SELECT hotstock.refund(NULL)') = '22023' AS "refund null: 22023";
SELECT pg_temp.sqlstate('SELECT hotstock.refund('''')') = '22023' AS "refund empty: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.refund(%L)', :'long')) = '22001' AS "refund 64 bytes: 22001";
SELECT pg_temp.sqlstate('SELECT hotstock.order_status(NULL)') = '22023' AS "order_status null: 22023";
SELECT pg_temp.sqlstate('SELECT hotstock.order_status('''')') = '22023' AS "order_status empty: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.order_status(%L)', :'long')) = '22001' AS "order_status 64 bytes: 22001";

-- nothing was deducted by the failed calls
SELECT hotstock.available(:'sku') = 10 AS "failed calls deducted nothing";

-- available, put_sku, add_stock
SELECT pg_temp.sqlstate('SELECT hotstock.available(NULL)') = '22023' AS "available null: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.available(%L)', :'run' || '-nosuch')) = '42704' AS "available unknown sku: 42704";
SELECT pg_temp.sqlstate(format('SELECT hotstock.available(%L)', :'long')) = '22001' AS "available 64 bytes: 22001";
SELECT pg_temp.sqlstate(format('SELECT hotstock.put_sku(%L, -1)', :'sku')) = '22023' AS "put_sku stock -1: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.put_sku(%L, 1000000000001)', :'sku')) = '22023' AS "put_sku stock above the maximum: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.put_sku(%L, NULL)', :'sku')) = '22023' AS "put_sku stock null: 22023";
SELECT pg_temp.sqlstate('SELECT hotstock.put_sku('''', 1)') = '22023' AS "put_sku sku empty: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.add_stock(%L, 1)', :'run' || '-nosuch')) = '42704' AS "add_stock unknown sku: 42704";
SELECT pg_temp.sqlstate(format('SELECT hotstock.add_stock(%L, NULL)', :'sku')) = '22023' AS "add_stock delta null: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.add_stock(%L, 1000000000001)', :'sku')) = '22023' AS "add_stock delta above the maximum: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.add_stock(%L, -1000000000001)', :'sku')) = '22023' AS "add_stock delta below the minimum: 22023";
SELECT hotstock.available(:'sku') = 10 AS "failed admin calls changed nothing";

-- an order id is one deduction: another sku or qty is refused, so is a refunded one
SELECT hotstock.put_sku(:'sku' || '2', 10);
SELECT hotstock.deduct(:'sku', 2, :'run' || '-m') AS "deduct m qty 2: true";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 3, %L)', :'sku', :'run' || '-m')) = 'HS004' AS "order m with another qty: HS004";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 2, %L)', :'sku' || '2', :'run' || '-m')) = 'HS004' AS "order m with another sku: HS004";
SELECT hotstock.available(:'sku') = 8 AND hotstock.available(:'sku' || '2') = 10 AS "mismatches deducted nothing";
SELECT hotstock.refund(:'run' || '-m') AS "refund m: true";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 2, %L)', :'sku', :'run' || '-m')) = 'HS005' AS "deduct of refunded order m: HS005";
SELECT hotstock.available(:'sku') = 10 AS "refunded order deducted nothing";

-- the tables are written by the drain only
SELECT pg_temp.sqlstate(format('UPDATE hotstock.stock SET available = 0 WHERE sku = %L', :'sku')) = '42501' AS "update stock: 42501";
SELECT pg_temp.sqlstate('INSERT INTO hotstock.stock (sku) VALUES (''x'')') = '42501' AS "insert stock: 42501";
SELECT pg_temp.sqlstate('DELETE FROM hotstock.stock WHERE false') = '42501' AS "delete stock (no rows): 42501";
SELECT pg_temp.sqlstate('TRUNCATE hotstock.stock') = '42501' AS "truncate stock: 42501";
SELECT pg_temp.sqlstate('UPDATE hotstock.ledger SET qty = 0 WHERE false') = '42501' AS "update ledger: 42501";
SELECT pg_temp.sqlstate('DELETE FROM hotstock.ledger WHERE false') = '42501' AS "delete ledger: 42501";
SELECT pg_temp.sqlstate('TRUNCATE hotstock.ledger') = '42501' AS "truncate ledger: 42501";
SELECT pg_temp.sqlstate('UPDATE hotstock.drain_state SET applied_lsn = 0') = '42501' AS "update drain_state: 42501";
SELECT pg_temp.sqlstate('DELETE FROM hotstock.drain_state') = '42501' AS "delete drain_state: 42501";
SELECT pg_temp.sqlstate('SELECT hotstock.guard()') = '0A000' OR pg_temp.sqlstate('SELECT hotstock.guard()') = '39P01' AS "guard called directly: refused";
-- the full message, once
\set VERBOSITY default
UPDATE hotstock.stock SET available = 0 WHERE false;
\set VERBOSITY terse

-- a transaction that refunded cannot be prepared (0A000); its deduction
-- (in the same transaction) is undone with it
BEGIN;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-2pc') AS "deduct before prepare: true";
SELECT hotstock.refund(:'run' || '-2pc') AS "refund before prepare: true";
PREPARE TRANSACTION 'hotstock_regress';
SELECT count(*) = 0 AS "nothing prepared" FROM pg_prepared_xacts WHERE gid = 'hotstock_regress';
SELECT hotstock.available(:'sku') = 10 AS "failed prepare gave the unit back";
SELECT hotstock.order_status(:'run' || '-2pc') = 'refunded' AS "failed prepare: order refunded";

-- GUCs: the prefix is reserved, the settings are there
SELECT pg_temp.sqlstate('SET hotstock.no_such_setting = 1') <> 'ok' AS "unknown hotstock.* setting refused";
SELECT current_setting('hotstock.drain_batch_size')::int > 0 AS "drain_batch_size set";
SELECT current_setting('hotstock.drain_naptime') <> '' AS "drain_naptime set";
SELECT current_setting('hotstock.drain_database') = current_database() AS "drain_database is this database";
SELECT current_setting('hotstock.data_directory') <> '' AS "data_directory set";
SELECT pg_temp.sqlstate('SET hotstock.data_directory = ''/tmp''') = '55P02' AS "data_directory is fixed at server start: 55P02";
