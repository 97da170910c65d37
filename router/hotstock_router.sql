-- router/hotstock_router.sql — the PL/Proxy router of a sharded hotstock.
--
-- Loaded by scripts/sharded.sh into the router database (any PostgreSQL 15
-- with postgresql-15-plproxy; ours is the database `router` in shard 0's
-- cluster), after it has defined the PL/Proxy cluster `stock`:
--
--   CREATE SERVER stock FOREIGN DATA WRAPPER plproxy
--       OPTIONS (p0 'host=... port=... dbname=hotstock', p1 '...', ...);
--   CREATE USER MAPPING FOR PUBLIC SERVER stock;
--
-- Each partition p<i> is one shard: an ordinary hotstock node (its own
-- PostgreSQL cluster and its own hotstockd).  The partition count is a
-- power of two; PL/Proxy maps a hash h to partition h & (count - 1).
--
-- Schema `hotstock` here holds functions of the same names and arguments
-- as the extension's, so an application moves from one node to the router
-- by changing its connection only.  Each runs the extension's function of
-- the same name on one shard (or on every shard, for the order-keyed ones),
-- in autocommit there: the router's own transaction does not undo it.
--
-- Routing (README.md, "Sharding", says why):
--   - SKU-keyed calls go to the shard of hashtext(partition key of the
--     SKU): the key is the SKU's group, the text before its first '/'
--     ("shoes/red-42" -> "shoes"), or the whole SKU when it has none.  SKUs
--     of one group live on one shard, so a basket of one group is bought
--     whole or not at all by that shard's deduct_basket.
--   - A basket whose SKUs are of more than one group raises HSR01 at the
--     router, before any shard is called.
--   - Order-keyed calls (refund, confirm, cancel, order_status) run on
--     every shard (RUN ON ALL) and exactly one shard knows the order: on
--     the others the extension's function answers false (or 'unknown') and
--     writes nothing (pg_ext/api.c refund_order(), pg_ext/hold.c).  An
--     order id known on more than one shard (the application reused it for
--     SKUs of two groups) makes order_status raise HSR02.
--
-- Helpers live in schema hotstock_router; nothing here holds data.

SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS plproxy;
DROP SCHEMA IF EXISTS hotstock CASCADE;
DROP SCHEMA IF EXISTS hotstock_router CASCADE;
CREATE SCHEMA hotstock;
CREATE SCHEMA hotstock_router;

-- ---- routing keys ----

-- The partition key of a SKU: its group (the text before the first '/'),
-- or the SKU itself.  The one place that says which SKUs live together.
CREATE FUNCTION hotstock_router.partition_key(sku text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN strpos(sku, '/') > 1 THEN left(sku, strpos(sku, '/') - 1) ELSE sku END $$;

-- The hash PL/Proxy routes a SKU by.  A NULL SKU goes to partition 0,
-- whose extension refuses it (22023) as a single node does.
CREATE FUNCTION hotstock_router.sku_hash(sku text)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(hashtext(hotstock_router.partition_key(sku)), 0) $$;

-- The hash of a basket: its one group's.  Lines of two groups or more
-- raise HSR01 (the lines could live on different shards, and no shard
-- could take them all or none).  NULL or empty arrays and NULL SKUs go
-- to the shard of the first group found (or 0), which raises 22023.
CREATE FUNCTION hotstock_router.basket_hash(order_id text, skus text[])
RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    groups text[];
BEGIN
    SELECT array_agg(DISTINCT hotstock_router.partition_key(s) ORDER BY hotstock_router.partition_key(s))
      INTO groups
      FROM unnest(skus) AS s
     WHERE s IS NOT NULL;
    IF coalesce(array_length(groups, 1), 0) > 1 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'HSR01',
            MESSAGE = format('basket "%s" spans %s partition keys', order_id, array_length(groups, 1)),
            DETAIL = format('Its SKUs belong to the groups %s; a basket is all-or-nothing only on one shard.',
                            array_to_string(groups, ', ')),
            HINT = 'Name the SKUs sold together "group/item" with one group, or take the lines as separate orders.';
    END IF;
    RETURN coalesce(hashtext(groups[1]), 0);
END
$$;

-- ---- SKU-keyed calls: one shard, hashtext(partition key) ----

CREATE FUNCTION hotstock.put_sku(sku text, stock bigint)
RETURNS void
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.sku_hash(sku);
$$;

CREATE FUNCTION hotstock.add_stock(sku text, delta bigint)
RETURNS bigint
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.sku_hash(sku);
$$;

CREATE FUNCTION hotstock.available(sku text)
RETURNS bigint
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.sku_hash(sku);
$$;

CREATE FUNCTION hotstock.deduct(sku text, qty integer, order_id text)
RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.sku_hash(sku);
$$;

CREATE FUNCTION hotstock.deduct(sku text, qty integer, order_id text, buyer text)
RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.sku_hash(sku);
$$;

CREATE FUNCTION hotstock.reserve(sku text, qty integer, order_id text, ttl interval)
RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.sku_hash(sku);
$$;

CREATE FUNCTION hotstock.reserve(sku text, qty integer, order_id text, ttl interval, buyer text)
RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.sku_hash(sku);
$$;

CREATE FUNCTION hotstock.configure_sale(sku text, starts_at timestamptz DEFAULT NULL,
                                        ends_at timestamptz DEFAULT NULL,
                                        per_buyer_limit integer DEFAULT NULL)
RETURNS void
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.sku_hash(sku);
$$;

CREATE FUNCTION hotstock.pause(sku text)
RETURNS void
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.sku_hash(sku);
$$;

CREATE FUNCTION hotstock.resume(sku text)
RETURNS void
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.sku_hash(sku);
$$;

CREATE FUNCTION hotstock.buyer_units(sku text, buyer text)
RETURNS integer
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.sku_hash(sku);
$$;

-- ---- baskets: one shard, the group of every line (else HSR01) ----

CREATE FUNCTION hotstock.deduct_basket(order_id text, skus text[], qtys integer[])
RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.basket_hash(order_id, skus);
$$;

CREATE FUNCTION hotstock.deduct_basket(order_id text, skus text[], qtys integer[], buyer text)
RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.basket_hash(order_id, skus);
$$;

CREATE FUNCTION hotstock.reserve_basket(order_id text, skus text[], qtys integer[], ttl interval)
RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.basket_hash(order_id, skus);
$$;

CREATE FUNCTION hotstock.reserve_basket(order_id text, skus text[], qtys integer[], ttl interval,
                                        buyer text)
RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON hotstock_router.basket_hash(order_id, skus);
$$;

-- ---- order-keyed calls: every shard, one knows the order ----
-- Each *_all function returns one row per shard; the function of the
-- extension's name folds them into its one answer.

CREATE FUNCTION hotstock_router.refund_all(order_id text)
RETURNS SETOF boolean
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON ALL;
    TARGET hotstock.refund;
$$;

CREATE FUNCTION hotstock_router.confirm_all(order_id text, retake boolean)
RETURNS SETOF boolean
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON ALL;
    TARGET hotstock.confirm;
$$;

CREATE FUNCTION hotstock_router.cancel_all(order_id text)
RETURNS SETOF boolean
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON ALL;
    TARGET hotstock.cancel;
$$;

CREATE FUNCTION hotstock_router.order_status_all(order_id text)
RETURNS SETOF text
LANGUAGE plproxy AS $$
    CLUSTER 'stock';
    RUN ON ALL;
    TARGET hotstock.order_status;
$$;

-- True when the shard that knows the order refunded it (false: unknown
-- everywhere, or refunded already).
CREATE FUNCTION hotstock.refund(order_id text)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$ SELECT coalesce(bool_or(r), false) FROM hotstock_router.refund_all(order_id) AS r $$;

CREATE FUNCTION hotstock.confirm(order_id text, retake boolean DEFAULT false)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$ SELECT coalesce(bool_or(r), false) FROM hotstock_router.confirm_all(order_id, retake) AS r $$;

CREATE FUNCTION hotstock.cancel(order_id text)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$ SELECT coalesce(bool_or(r), false) FROM hotstock_router.cancel_all(order_id) AS r $$;

-- The status on the one shard that knows the order; 'unknown' when none
-- does; HSR02 when more than one does.
CREATE FUNCTION hotstock.order_status(order_id text)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    known text[];
BEGIN
    SELECT array_agg(s) INTO known
      FROM hotstock_router.order_status_all(order_id) AS s
     WHERE s IS DISTINCT FROM 'unknown';
    IF known IS NULL THEN
        RETURN 'unknown';
    END IF;
    IF array_length(known, 1) > 1 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'HSR02',
            MESSAGE = format('order "%s" is known on %s shards', order_id, array_length(known, 1)),
            DETAIL = format('Their statuses: %s.', array_to_string(known, ', ')),
            HINT = 'Order ids must be unique across every SKU of the sharded system.';
    END IF;
    RETURN known[1];
END
$$;

-- ---- the shards, as PL/Proxy sees them ----

-- One row per partition: its number and connect string (the options of
-- the server `stock`).
CREATE VIEW hotstock_router.shards AS
SELECT substr(o.option_name, 2)::integer AS partition, o.option_value AS connstr
  FROM pg_foreign_server s,
       pg_options_to_table(s.srvoptions) AS o
 WHERE s.srvname = 'stock' AND o.option_name ~ '^p[0-9]+$'
 ORDER BY 1;

-- The partition a SKU lives on (with `count` partitions; default: the
-- server's).
CREATE FUNCTION hotstock_router.sku_partition(sku text, count integer DEFAULT NULL)
RETURNS integer
LANGUAGE sql STABLE
AS $$
    SELECT hotstock_router.sku_hash(sku)
           & (coalesce(count, (SELECT count(*)::integer FROM hotstock_router.shards)) - 1)
$$;
