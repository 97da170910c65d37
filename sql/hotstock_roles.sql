--
-- hotstock: roles.  hotstock_app buys and refunds, hotstock_admin also
-- manages stock, PUBLIC gets nothing.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hotstock;
RESET client_min_messages;
SELECT 'rol' || left(md5(clock_timestamp()::text || pg_backend_pid()::text), 12) AS run \gset
\set sku :run'-sku'

CREATE FUNCTION pg_temp.sqlstate(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hotstock_regress_nobody') THEN
        CREATE ROLE hotstock_regress_nobody NOLOGIN;
    END IF;
END
$$;

SELECT hotstock.put_sku(:'sku', 10);

-- the catalog: no hotstock function is executable by PUBLIC
SELECT count(*) = 0 AS "no function runs with default (PUBLIC) privileges"
FROM pg_proc WHERE pronamespace = 'hotstock'::regnamespace AND proacl IS NULL;
SELECT count(*) = 0 AS "no function granted to PUBLIC"
FROM pg_proc p, aclexplode(p.proacl) a
WHERE p.pronamespace = 'hotstock'::regnamespace AND a.grantee = 0;
SELECT pg_has_role('hotstock_admin', 'hotstock_app', 'MEMBER') AS "hotstock_admin is a member of hotstock_app";
SELECT NOT has_schema_privilege('hotstock_regress_nobody', 'hotstock', 'USAGE') AS "PUBLIC has no usage on the schema";

-- hotstock_app
SET ROLE hotstock_app;
SELECT hotstock.deduct(:'sku', 1, :'run' || '-app') AS "app: deduct true";
SELECT hotstock.available(:'sku') = 9 AS "app: available";
SELECT hotstock.order_status(:'run' || '-app') = 'deducted' AS "app: order_status";
SELECT hotstock.refund(:'run' || '-app') AS "app: refund true";
SELECT daemon_up AS "app: reads hotstock.status" FROM hotstock.status;
SELECT pg_temp.sqlstate(format('SELECT hotstock.put_sku(%L, 1)', :'sku')) = '42501' AS "app: put_sku refused 42501";
SELECT pg_temp.sqlstate(format('SELECT hotstock.add_stock(%L, 1)', :'sku')) = '42501' AS "app: add_stock refused 42501";
SELECT pg_temp.sqlstate(format('SELECT hotstock.configure_sale(%L)', :'sku')) = '42501' AS "app: configure_sale refused 42501";
SELECT pg_temp.sqlstate(format('SELECT hotstock.pause(%L)', :'sku')) = '42501' AS "app: pause refused 42501";
SELECT pg_temp.sqlstate(format('SELECT hotstock.resume(%L)', :'sku')) = '42501' AS "app: resume refused 42501";
SELECT pg_temp.sqlstate('SELECT * FROM hotstock.sales') = '42501' AS "app: no select on sales";
SELECT pg_temp.sqlstate('SELECT * FROM hotstock.stock') = '42501' AS "app: no select on stock";
SELECT pg_temp.sqlstate('SELECT * FROM hotstock.ledger') = '42501' AS "app: no select on ledger";
SELECT pg_temp.sqlstate('UPDATE hotstock.stock SET available = 0') = '42501' AS "app: no update on stock";
RESET ROLE;

-- hotstock_admin
SET ROLE hotstock_admin;
SELECT hotstock.put_sku(:'sku', 20);
SELECT hotstock.add_stock(:'sku', 5) = 25 AS "admin: add_stock";
SELECT hotstock.deduct(:'sku', 1, :'run' || '-admin') AS "admin: deduct (member of app)";
SELECT hotstock.pause(:'sku');
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'sku', :'run' || '-paused')) = 'HS015' AS "admin: pause (deduct raises HS015)";
SELECT hotstock.resume(:'sku');
SELECT hotstock.configure_sale(:'sku', per_buyer_limit => 3);
SELECT count(*) >= 0 AS "admin: reads sales" FROM hotstock.sales;
SELECT hotstock.configure_sale(:'sku');
SELECT count(*) >= 0 AS "admin: reads stock" FROM hotstock.stock;
SELECT count(*) >= 0 AS "admin: reads ledger" FROM hotstock.ledger;
SELECT pg_temp.sqlstate('UPDATE hotstock.stock SET available = 0 WHERE false') = '42501' AS "admin: no update on stock";
RESET ROLE;

-- PUBLIC: nothing
SET ROLE hotstock_regress_nobody;
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'sku', :'run' || '-nobody')) = '42501' AS "public: deduct refused 42501";
SELECT pg_temp.sqlstate(format('SELECT hotstock.refund(%L)', :'run' || '-admin')) = '42501' AS "public: refund refused 42501";
SELECT pg_temp.sqlstate(format('SELECT hotstock.available(%L)', :'sku')) = '42501' AS "public: available refused 42501";
SELECT pg_temp.sqlstate(format('SELECT hotstock.pause(%L)', :'sku')) = '42501' AS "public: pause refused 42501";
SELECT pg_temp.sqlstate('SELECT * FROM hotstock.sales') = '42501' AS "public: sales refused 42501";
SELECT pg_temp.sqlstate('SELECT * FROM hotstock.status') = '42501' AS "public: status refused 42501";
RESET ROLE;

SELECT hotstock.available(:'sku') = 24 AS "only the allowed calls changed stock";
SELECT hotstock.order_status(:'run' || '-nobody') = 'unknown' AS "refused deduct left no order";
DROP ROLE hotstock_regress_nobody;
