/* pg_ext/hotstock--1.3--1.4.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hotstock UPDATE TO '1.4'" to load this file. \quit

-- Per-buyer limits: deduct, reserve, deduct_basket and reserve_basket take
-- a buyer (see hotstock--1.4.sql).  No table changes: a buyer's count
-- lives in the daemon (BUYER records change no counter and no order).
-- The calls without a buyer stay as they were.

-- As deduct(sku, qty, order_id), for buyer: while sku's sale has a
-- per_buyer_limit, the buyer's units of sku (taken, less what refunds,
-- cancels and expiries gave back) never pass it: HS016 (buyer limit
-- reached) and nothing taken.  A SKU with a limit refuses a take without a
-- buyer (NULL) with HS016 too.
CREATE FUNCTION hotstock.deduct(sku text, qty integer, order_id text, buyer text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_deduct'
LANGUAGE C VOLATILE;

-- As reserve(sku, qty, order_id, ttl), for buyer (as deduct's).
CREATE FUNCTION hotstock.reserve(sku text, qty integer, order_id text, ttl interval, buyer text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_reserve'
LANGUAGE C VOLATILE;

-- As deduct_basket and reserve_basket, for buyer: the lines of SKUs with a
-- per_buyer_limit count for the buyer; one over its limit raises HS016 and
-- the basket takes nothing.
CREATE FUNCTION hotstock.deduct_basket(order_id text, skus text[], qtys integer[], buyer text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_deduct_basket'
LANGUAGE C VOLATILE;

CREATE FUNCTION hotstock.reserve_basket(order_id text, skus text[], qtys integer[], ttl interval,
                                        buyer text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_reserve_basket'
LANGUAGE C VOLATILE;

-- Admin: the units buyer holds of sku under its per_buyer_limit, as the
-- daemon counts them now (0: none counted, or forgotten buyer_retention
-- after the sale ended).
CREATE FUNCTION hotstock.buyer_units(sku text, buyer text)
RETURNS integer
AS 'MODULE_PATHNAME', 'hotstock_buyer_units'
LANGUAGE C STABLE STRICT;

REVOKE ALL ON FUNCTION hotstock.deduct(text, integer, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.reserve(text, integer, text, interval, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.deduct_basket(text, text[], integer[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.reserve_basket(text, text[], integer[], interval, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.buyer_units(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotstock.deduct(text, integer, text, text) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.reserve(text, integer, text, interval, text) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.deduct_basket(text, text[], integer[], text) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.reserve_basket(text, text[], integer[], interval, text)
    TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.buyer_units(text, text) TO hotstock_admin;
