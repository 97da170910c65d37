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

-- Statistics: per-SKU counters and the hot SKUs, read from the daemon's
-- segment (see hotstock--1.4.sql).  No table changes: statistics live in
-- memory only, and a daemon restart starts them from zero (as a crash
-- resets pg_stat counters).

-- Per-SKU counters since the SKU's last reset; behind hotstock.sku_stats.
--   deducts            DEDUCT records: deductions, basket lines, late
--                      confirms that took anew (retakes)
--   sold_out_attempts  takes (deduct, reserve; a basket: its first short line)
--                      answered "sold out"
--   refunds            REFUND records: refunds, and compensations of
--                      deductions whose transaction did not commit
--   reserves           RESERVE records: holds and lines of basket holds
--   expiries           EXPIRE records: holds the daemon expired
--   limit_refusals     takes refused by the per-buyer limit
--   last_deduct_at     the latest DEDUCT (NULL: none since the reset)
--   stats_reset        the SKU's last reset, or the daemon's start
CREATE FUNCTION hotstock.sku_stats_info(
    OUT sku text,
    OUT deducts bigint,
    OUT sold_out_attempts bigint,
    OUT refunds bigint,
    OUT reserves bigint,
    OUT expiries bigint,
    OUT limit_refusals bigint,
    OUT last_deduct_at timestamptz,
    OUT stats_reset timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'hotstock_sku_stats_info'
LANGUAGE C VOLATILE;

CREATE VIEW hotstock.sku_stats AS
SELECT sku, deducts, sold_out_attempts, refunds, reserves, expiries, limit_refusals,
       last_deduct_at, stats_reset
FROM hotstock.sku_stats_info();

-- Admin: zero the statistics of sku (NULL: of every SKU) and stamp
-- stats_reset; returns how many SKUs were reset.  42704 for an unknown sku.
CREATE FUNCTION hotstock.sku_stats_reset(sku text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'hotstock_sku_stats_reset'
LANGUAGE C VOLATILE;

-- The daemon's top hot_k SKUs by recent take attempts (a HeavyKeeper
-- sketch, aged every second), hottest first; behind hotstock.hot_skus.
--   est_attempts_per_s  take attempts (deduct, reserve, basket lines,
--                       sold out or not) per second over the last second
--   est_sold_per_s      deductions per second over the last second
CREATE FUNCTION hotstock.hot_skus_info(
    OUT sku text,
    OUT rank integer,
    OUT est_attempts_per_s double precision,
    OUT est_sold_per_s double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'hotstock_hot_skus_info'
LANGUAGE C VOLATILE;

CREATE VIEW hotstock.hot_skus AS
SELECT sku, rank, est_attempts_per_s, est_sold_per_s
FROM hotstock.hot_skus_info();

REVOKE ALL ON FUNCTION hotstock.sku_stats_info() FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.sku_stats_reset(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.hot_skus_info() FROM PUBLIC;
REVOKE ALL ON hotstock.sku_stats, hotstock.hot_skus FROM PUBLIC;
-- read like hotstock.status; reset by admins only
GRANT EXECUTE ON FUNCTION hotstock.sku_stats_info() TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.hot_skus_info() TO hotstock_app;
GRANT SELECT ON hotstock.sku_stats, hotstock.hot_skus TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.sku_stats_reset(text) TO hotstock_admin;
