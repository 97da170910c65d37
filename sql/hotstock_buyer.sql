--
-- hotstock: per-buyer limits.  With per_buyer_limit 2, deduct without a
-- buyer and a buyer's third unit raise HS016 (buyer limit reached) and
-- take nothing; a retry counts nothing; a refund, a rollback and a cancel
-- give the buyer's units back; reserve and the baskets count the same
-- way (a basket over the limit takes no line at all); buyer_units shows
-- the count; the buyer argument's errors; the drain passes over the
-- BUYER records.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hotstock;
RESET client_min_messages;
SELECT 'buy' || left(md5(clock_timestamp()::text || pg_backend_pid()::text), 12) AS run \gset
\set a :run'-a'
\set b :run'-b'
\set VERBOSITY terse

CREATE FUNCTION pg_temp.sqlstate(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
-- the SQLSTATE, message, detail and hint of q's error, with the run's
-- prefix taken out
CREATE FUNCTION pg_temp.error(q text, run text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
    hint text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RETURN replace(SQLSTATE || ' ' || SQLERRM || ': ' || detail || ' (' || hint || ')', run, 'R');
END
$$;
CREATE FUNCTION pg_temp.drained() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    target bigint := (SELECT last_lsn FROM hotstock.status);
BEGIN
    FOR i IN 1 .. 600 LOOP
        IF (SELECT applied_lsn FROM hotstock.drain_state) >= target THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;

SELECT hotstock.put_sku(:'a', 20), hotstock.put_sku(:'b', 20);
SELECT hotstock.configure_sale(:'a', per_buyer_limit => 2);
SELECT per_buyer_limit FROM hotstock.sale_info(:'a');

-- no buyer named: refused
SELECT pg_temp.error(format('SELECT hotstock.deduct(%L, 1, %L)', :'a', :'run' || '-o0'), :'run');
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L, NULL)', :'a', :'run' || '-o0'))
    AS "a NULL buyer";
SELECT hotstock.available(:'a') AS "nothing taken";

-- the buyer's units never pass the limit
SELECT hotstock.deduct(:'a', 1, :'run' || '-o1', 'ann') AS "ann's first";
SELECT pg_temp.error(format('SELECT hotstock.deduct(%L, 2, %L, %L)', :'a', :'run' || '-o2', 'ann'),
                     :'run');
SELECT hotstock.deduct(:'a', 1, :'run' || '-o3', 'ann') AS "ann's second";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L, %L)', :'a', :'run' || '-o4',
                               'ann')) AS "ann's third";
SELECT hotstock.deduct(:'a', 1, :'run' || '-o1', 'ann') AS "a retry of the first";
SELECT hotstock.buyer_units(:'a', 'ann') AS "ann holds", hotstock.available(:'a') AS available;
SELECT hotstock.deduct(:'a', 2, :'run' || '-o5', 'bob') AS "bob has a count of his own";
SELECT hotstock.buyer_units(:'a', 'nobody') AS "a buyer never counted";

-- give-backs: a refund, a rollback
SELECT hotstock.refund(:'run' || '-o1') AS "refund ann's first";
SELECT hotstock.buyer_units(:'a', 'ann') AS "ann holds";
BEGIN;
SELECT hotstock.deduct(:'a', 1, :'run' || '-o6', 'ann') AS "in a transaction";
SELECT hotstock.buyer_units(:'a', 'ann') AS "ann holds, uncommitted";
ROLLBACK;
SELECT hotstock.buyer_units(:'a', 'ann') AS "ann holds after the rollback";

-- holds count, a cancel gives back
SELECT hotstock.reserve(:'a', 1, :'run' || '-h1', '1 minute', 'cy') AS "cy holds 1";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 2, %L, %L, %L)', :'a',
                               :'run' || '-h2', '1 minute', 'cy')) AS "cy's second hold";
SELECT hotstock.cancel(:'run' || '-h1') AS "cancel";
SELECT hotstock.buyer_units(:'a', 'cy') AS "cy holds";

-- baskets: a's line counts; over the limit, no line is taken
SELECT hotstock.deduct_basket(:'run' || '-k1', ARRAY[:'a', :'b'], ARRAY[2, 5], 'dee')
    AS "dee's basket";
SELECT hotstock.buyer_units(:'a', 'dee') AS "dee holds of a",
       hotstock.buyer_units(:'b', 'dee') AS "of b (no limit)";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1, 1], %L)',
                               :'run' || '-k2', :'a', :'b', 'dee')) AS "dee's second basket";
SELECT hotstock.available(:'b') AS "b: only the first basket's 5 taken";
SELECT hotstock.reserve_basket(:'run' || '-k3', ARRAY[:'a', :'b'], ARRAY[1, 1], '1 minute', 'eve')
    AS "eve's held basket";
SELECT hotstock.cancel(:'run' || '-k3') AS "cancelled";
SELECT hotstock.buyer_units(:'a', 'eve') AS "eve holds";

-- the buyer argument
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L, %L)', :'a', :'run' || '-e1', ''))
    AS "an empty buyer";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L, %L)', :'a', :'run' || '-e2',
                               repeat('x', 64))) AS "a 64-byte buyer";
SELECT hotstock.buyer_units(:'a', NULL) IS NULL AS "buyer_units is strict";

-- every refusal counted in the SKU's statistics: no buyer twice, ann's
-- second and third, cy's second hold, dee's second basket
SELECT limit_refusals FROM hotstock.sku_stats WHERE sku = :'a';

-- without a limit, nothing is counted
SELECT hotstock.configure_sale(:'a');
SELECT hotstock.deduct(:'a', 3, :'run' || '-o7', 'ann') AS "no limit: ann takes 3";
SELECT hotstock.buyer_units(:'a', 'ann') AS "ann's count is unchanged";

SELECT pg_temp.drained() AS "the drain applied every record, the BUYER records too";
SELECT s.available = hotstock.available(:'a') AS "stock table agrees with the daemon"
FROM hotstock.stock s WHERE s.sku = :'a';
