--
-- hotstock: sales.  A sale configured to open an hour from now: before it,
-- deduct, reserve, deduct_basket and reserve_basket raise HS013 (sale not
-- open), take nothing and leave no order; moved to 2 s from now, from
-- its start (waited for with pg_sleep) they sell.  pause() makes the next
-- take raise HS015, resume()
-- sells again; refund, confirm and cancel of orders taken before go on
-- while paused.  A window that ended raises HS014 (paused first when both).
-- configure_sale's argument errors; the view hotstock.sales; the drain
-- passes over the SALE records (polled, at most 60 s).
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hotstock;
RESET client_min_messages;
SELECT 'sal' || left(md5(clock_timestamp()::text || pg_backend_pid()::text), 12) AS run \gset
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
-- the SQLSTATE, the message and the detail of q's error, as one text
CREATE FUNCTION pg_temp.error(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ' ' || SQLERRM || ': ' || detail;
END
$$;
-- the units available of a, b and c, as one text
CREATE FUNCTION pg_temp.stock(a text, b text, c text) RETURNS text LANGUAGE sql AS $$
    SELECT hotstock.available(a) || '/' || hotstock.available(b) || '/' || hotstock.available(c)
$$;
-- wait (at most 60 s) until the drain has applied every record written so far
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

SELECT hotstock.put_sku(:'a', 10), hotstock.put_sku(:'b', 10), hotstock.put_sku(:'c', 10);
-- the view lists SKUs of hotstock.stock: wait for these three to be drained
SELECT pg_temp.drained() AS "put_sku drained";
SELECT count(*) = 0 AS "no sale configured: none listed"
FROM hotstock.sales WHERE sku IN (:'a', :'b', :'c');

--
-- A sale that opens later: first an hour from now (the checks before the
-- start do not depend on how fast this machine runs them), then 2 s from
-- now, waited for
--
SELECT clock_timestamp() + interval '1 hour' AS opens \gset
SELECT hotstock.configure_sale(:'a', starts_at => :'opens');
SELECT state = 'not open' AND starts_at >= :'opens'
       AND starts_at < :'opens'::timestamptz + interval '1 ms'
       AND ends_at IS NULL AND per_buyer_limit IS NULL AND NOT paused
    AS "sales: a is not open, opens at starts_at (to the ms)"
FROM hotstock.sales WHERE sku = :'a';

SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'a', :'run' || '-early1'))
    = 'HS013' AS "before the start: deduct raises HS013";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'a',
                               :'run' || '-early2', '1 minute'))
    = 'HS013' AS "before the start: reserve raises HS013";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1, 1])',
                               :'run' || '-early3', :'b', :'a'))
    = 'HS013' AS "before the start: deduct_basket (b, a) raises HS013";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L, %L], ARRAY[1, 1], %L)',
                               :'run' || '-early4', :'a', :'b', '1 minute'))
    = 'HS013' AS "before the start: reserve_basket raises HS013";
SELECT pg_temp.error(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1, 1])',
                            :'run' || '-early3', :'b', :'a'))
    LIKE format('HS013 sale not open: The sale of sku "%s" opens at %%', :'a')
    AS "the basket's error names a, the line whose sale is not open";
SELECT clock_timestamp() < :'opens' AS "(those calls ran before the start)";
SELECT pg_temp.stock(:'a', :'b', :'c') = '10/10/10' AS "before the start: nothing taken";
SELECT hotstock.order_status(:'run' || '-early1') = 'unknown'
       AND hotstock.order_status(:'run' || '-early2') = 'unknown'
       AND hotstock.order_status(:'run' || '-early3') = 'unknown'
       AND hotstock.order_status(:'run' || '-early4') = 'unknown'
    AS "before the start: no order recorded (order_status unknown)";
SELECT hotstock.deduct(:'b', 1, :'run' || '-b1') AS "b has no sale configured: it sells";

-- from the start, a sells (the daemon keeps starts_at to the ms, rounded up)
SELECT clock_timestamp() + interval '2 s' AS opens \gset
SELECT hotstock.configure_sale(:'a', starts_at => :'opens');
SELECT pg_sleep(extract(epoch FROM :'opens'::timestamptz - clock_timestamp()) + 0.002);
SELECT hotstock.deduct(:'a', 1, :'run' || '-d1') AS "after the start: deduct true";
SELECT hotstock.deduct(:'a', 1, :'run' || '-d2') AS "after the start: another deduct true";
SELECT hotstock.reserve(:'a', 1, :'run' || '-h1', '1 minute') AS "after the start: reserve true";
SELECT hotstock.reserve(:'a', 1, :'run' || '-h2', '1 minute') AS "after the start: reserve true";
SELECT hotstock.deduct_basket(:'run' || '-B1', ARRAY[:'a', :'b'], ARRAY[1, 1])
    AS "after the start: deduct_basket true";
SELECT hotstock.deduct(:'a', 1, :'run' || '-early1') AS "a refused order id is a new order now";
SELECT pg_temp.stock(:'a', :'b', :'c') = '4/8/10' AS "after the start: 6 of a taken, 2 of b";
SELECT state = 'open' AND NOT paused AS "sales: a is open" FROM hotstock.sales WHERE sku = :'a';

--
-- Paused
--
SELECT hotstock.pause(:'a');
SELECT state = 'paused' AND paused AS "sales: a is paused" FROM hotstock.sales WHERE sku = :'a';
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'a', :'run' || '-p1'))
    = 'HS015' AS "paused: deduct raises HS015";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'a',
                               :'run' || '-p2', '1 minute'))
    = 'HS015' AS "paused: reserve raises HS015";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1, 1])',
                               :'run' || '-p3', :'b', :'a'))
    = 'HS015' AS "paused: deduct_basket raises HS015";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L, %L], ARRAY[1, 1], %L)',
                               :'run' || '-p4', :'a', :'b', '1 minute'))
    = 'HS015' AS "paused: reserve_basket raises HS015";
SELECT pg_temp.stock(:'a', :'b', :'c') = '4/8/10' AS "paused: nothing taken";
SELECT hotstock.order_status(:'run' || '-p1') = 'unknown'
       AND hotstock.order_status(:'run' || '-p2') = 'unknown'
       AND hotstock.order_status(:'run' || '-p3') = 'unknown'
       AND hotstock.order_status(:'run' || '-p4') = 'unknown'
    AS "paused: no order recorded";
SELECT hotstock.pause(:'a');
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'a', :'run' || '-p1'))
    = 'HS015' AS "paused twice: still paused";

-- orders taken before are settled while paused
SELECT hotstock.deduct(:'a', 1, :'run' || '-d1') AS "paused: a retry of an order taken before answers true";
SELECT hotstock.refund(:'run' || '-d2') AS "paused: refund true";
SELECT hotstock.confirm(:'run' || '-h1') AS "paused: confirm true";
SELECT hotstock.cancel(:'run' || '-h2') AS "paused: cancel true";
SELECT hotstock.refund(:'run' || '-B1') AS "paused: refund of a basket true";
SELECT pg_temp.stock(:'a', :'b', :'c') = '7/9/10'
    AS "paused: the refunds and the cancel gave 3 of a and 1 of b back";
SELECT hotstock.order_status(:'run' || '-d2') = 'refunded'
       AND hotstock.order_status(:'run' || '-h1') = 'deducted'
       AND hotstock.order_status(:'run' || '-h2') = 'cancelled'
       AND hotstock.order_status(:'run' || '-B1') = 'refunded'
    AS "paused: the settled orders' status";
SELECT hotstock.add_stock(:'a', 1) = 8 AS "paused: add_stock works";

-- configure_sale keeps the pause switch
SELECT hotstock.configure_sale(:'a', per_buyer_limit => 2);
SELECT paused AND state = 'paused' AND starts_at IS NULL AND ends_at IS NULL
       AND per_buyer_limit = 2
    AS "configure_sale: new window, limit stored, still paused"
FROM hotstock.sales WHERE sku = :'a';
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'a', :'run' || '-p1'))
    = 'HS015' AS "configure_sale kept the pause: deduct raises HS015";

-- resumed
SELECT hotstock.resume(:'a');
SELECT state = 'open' AND NOT paused AS "sales: a is open again" FROM hotstock.sales WHERE sku = :'a';
-- (a has a per-buyer limit now: each take names a buyer, hotstock_buyer)
SELECT hotstock.deduct(:'a', 1, :'run' || '-p1', 'u1') AS "resumed: deduct true";
SELECT hotstock.reserve(:'a', 1, :'run' || '-p2', '1 minute', 'u2') AS "resumed: reserve true";
SELECT hotstock.deduct_basket(:'run' || '-p3', ARRAY[:'b', :'a'], ARRAY[1, 1], 'u3')
    AS "resumed: deduct_basket true";
SELECT pg_temp.stock(:'a', :'b', :'c') = '5/8/10' AS "resumed: 3 of a taken, 1 of b";
SELECT hotstock.resume(:'a');
SELECT hotstock.deduct(:'a', 1, :'run' || '-p5', 'u5') AS "resumed twice: still open";

--
-- Closed: ends_at in the past
--
SELECT hotstock.configure_sale(:'c', clock_timestamp() - interval '1 hour',
                               clock_timestamp() - interval '1 minute');
SELECT state = 'closed' AND NOT paused AS "sales: c is closed" FROM hotstock.sales WHERE sku = :'c';
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'c', :'run' || '-c1'))
    = 'HS014' AS "closed: deduct raises HS014";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve(%L, 1, %L, %L)', :'c',
                               :'run' || '-c2', '1 minute'))
    = 'HS014' AS "closed: reserve raises HS014";
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct_basket(%L, ARRAY[%L, %L], ARRAY[1, 1])',
                               :'run' || '-c3', :'b', :'c'))
    = 'HS014' AS "closed: deduct_basket raises HS014";
SELECT pg_temp.sqlstate(format('SELECT hotstock.reserve_basket(%L, ARRAY[%L, %L], ARRAY[1, 1], %L)',
                               :'run' || '-c4', :'c', :'b', '1 minute'))
    = 'HS014' AS "closed: reserve_basket raises HS014";
SELECT pg_temp.error(format('SELECT hotstock.deduct(%L, 1, %L)', :'c', :'run' || '-c1'))
    LIKE format('HS014 sale closed: The sale of sku "%s" ended at %%', :'c')
    AS "closed: the error names c and when it ended";
SELECT pg_temp.stock(:'a', :'b', :'c') = '4/8/10' AS "closed: nothing taken";
SELECT hotstock.order_status(:'run' || '-c1') = 'unknown'
       AND hotstock.order_status(:'run' || '-c3') = 'unknown'
    AS "closed: no order recorded";
-- paused first
SELECT hotstock.pause(:'c');
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'c', :'run' || '-c1'))
    = 'HS015' AS "closed and paused: HS015 (paused first)";
SELECT state = 'paused' AS "sales: closed and paused says paused" FROM hotstock.sales WHERE sku = :'c';
SELECT hotstock.resume(:'c');
SELECT pg_temp.sqlstate(format('SELECT hotstock.deduct(%L, 1, %L)', :'c', :'run' || '-c1'))
    = 'HS014' AS "resumed, still closed: HS014";
-- a window still to close
SELECT hotstock.configure_sale(:'c', ends_at => clock_timestamp() + interval '1 hour');
SELECT state = 'open' AND starts_at IS NULL AND ends_at IS NOT NULL
    AS "sales: c open until ends_at" FROM hotstock.sales WHERE sku = :'c';
SELECT hotstock.deduct(:'c', 1, :'run' || '-c1') AS "open until ends_at: deduct true";
-- no window, no limit, not paused: an unconfigured sale, not listed
SELECT hotstock.configure_sale(:'c');
SELECT count(*) = 0 AS "configure_sale(c) with nothing: c no longer listed"
FROM hotstock.sales WHERE sku = :'c';
SELECT hotstock.deduct(:'c', 1, :'run' || '-c5') AS "c sells";

--
-- Argument errors: nothing changes
--
SELECT pg_temp.sqlstate(format('SELECT hotstock.configure_sale(%L, now() + %L, now())', :'a', '1 hour'))
    = '22023' AS "starts_at after ends_at: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.configure_sale(%L, now(), now())', :'a'))
    = '22023' AS "starts_at = ends_at: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.configure_sale(%L, per_buyer_limit => 0)', :'a'))
    = '22023' AS "per_buyer_limit 0: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.configure_sale(%L, per_buyer_limit => -1)', :'a'))
    = '22023' AS "per_buyer_limit -1: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.configure_sale(%L, %L)', :'a', 'infinity'))
    = '22023' AS "starts_at infinity: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.configure_sale(%L, %L)', :'a', '-infinity'))
    = '22023' AS "starts_at -infinity: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.configure_sale(%L, ends_at => %L)', :'a', 'infinity'))
    = '22023' AS "ends_at infinity: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.configure_sale(%L, %L)', :'a', '1969-12-31 00:00+00'))
    = '22023' AS "starts_at before 1970: 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.configure_sale(%L)', :'run' || '-nosuch'))
    = '42704' AS "configure_sale of an unknown sku: 42704";
SELECT pg_temp.sqlstate(format('SELECT hotstock.pause(%L)', :'run' || '-nosuch'))
    = '42704' AS "pause of an unknown sku: 42704";
SELECT pg_temp.sqlstate(format('SELECT hotstock.resume(%L)', :'run' || '-nosuch'))
    = '42704' AS "resume of an unknown sku: 42704";
SELECT pg_temp.sqlstate('SELECT hotstock.configure_sale(NULL)') = '22023' AS "configure_sale(NULL): 22023";
SELECT pg_temp.sqlstate('SELECT hotstock.configure_sale('''')') = '22023' AS "configure_sale(''): 22023";
SELECT pg_temp.sqlstate(format('SELECT hotstock.configure_sale(%L)', repeat('x', 64)))
    = '22001' AS "configure_sale of a 64-byte sku: 22001";
SELECT pg_temp.sqlstate('SELECT hotstock.pause(NULL)') = '22023' AS "pause(NULL): 22023";
SELECT pg_temp.sqlstate('SELECT hotstock.resume(NULL)') = '22023' AS "resume(NULL): 22023";
SELECT starts_at IS NULL AND ends_at IS NULL AND per_buyer_limit = 2 AND state = 'open'
    AS "after the errors a's sale is unchanged" FROM hotstock.sales WHERE sku = :'a';

--
-- The drain passes over the SALE records
--
SELECT pg_temp.drained() AS "the drain applied every record, the SALE records too";
SELECT drain_last_error IS NULL AS "no drain problem" FROM hotstock.status;
SELECT s.available = hotstock.available(s.sku) AS "stock of a drained = available()"
FROM hotstock.stock s WHERE s.sku = :'a';
SELECT s.available + s.reserved + s.sold = 11 AS "a: available + reserved + sold = 10 + 1"
FROM hotstock.stock s WHERE s.sku = :'a';
SELECT count(*) = 0 AS "no ledger row of a refused take"
FROM hotstock.ledger
WHERE (order_id LIKE :'run' || '-early%' AND order_id <> :'run' || '-early1')
   OR (order_id LIKE :'run' || '-c%' AND order_id NOT IN (:'run' || '-c1', :'run' || '-c5'))
   OR order_id LIKE :'run' || '-p4%';
SELECT array_agg(sku ORDER BY sku) = ARRAY[:'a'] AS "sales lists a only (b and c have no configuration)"
FROM hotstock.sales WHERE sku IN (:'a', :'b', :'c');
