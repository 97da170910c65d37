/* pg_ext/hotstock--1.5.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION hotstock" to load this file. \quit

--
-- Tables.  The drain ("hotstock drain" background worker) is their only
-- writer: a statement-level guard trigger refuses everyone else (the
-- database-first refund of an evicted order may also update ledger rows).
--

-- Per-SKU mirror of the daemon's counters, as of drain_state.applied_lsn.
-- available + reserved + sold = the stock put in (put_sku, add_stock).
-- (reserved comes last, as ALTER TABLE added it to a 1.1 install.)
CREATE TABLE hotstock.stock (
    sku         text PRIMARY KEY,
    available   bigint NOT NULL DEFAULT 0,   -- units left to sell
    sold        bigint NOT NULL DEFAULT 0,   -- units deducted or confirmed, minus units refunded
    last_lsn    bigint NOT NULL DEFAULT 0,   -- queue record last applied to this row
    updated_at  timestamptz NOT NULL DEFAULT now(),  -- time of that record
    reserved    bigint NOT NULL DEFAULT 0    -- units held by live reservations
) WITH (fillfactor = 50);
-- fillfactor 50: the drain updates each SKU's row once per batch; room on
-- the row's page makes that a HOT update (no new index entry, the old
-- version pruned in place), where a full page would add a stock_pkey
-- entry per batch and bloat the index the next batch searches.

-- One row per order and SKU: a deduction, or a reservation (hold is set).
-- A hold's row is written by its RESERVE record and settled by its
-- CONFIRM, CANCEL or EXPIRE record; a hold that ended and was taken again
-- (hotstock.confirm(..., retake => true)) has its DEDUCT in lsn.
CREATE TABLE hotstock.ledger (
    order_id    text NOT NULL,
    sku         text NOT NULL,
    qty         integer NOT NULL,
    lsn         bigint NOT NULL,              -- the DEDUCT (or RESERVE) record
    deducted_at timestamptz NOT NULL,         -- its time
    refunded_at timestamptz,                  -- set by the REFUND record, or first by a
                                              -- database-first refund (refund_lsn still null)
    refund_lsn  bigint,                       -- the REFUND record, once drained
    xid         bigint,                       -- the deduction's (or reservation's, or
                                              -- confirm's) transaction (full xid) while the
                                              -- drain does not know it committed; null once
                                              -- settled (committed, or compensated)
    expires_at  timestamptz,                  -- a hold's deadline; null for a deduction
    hold        text CONSTRAINT ledger_hold_check
                CHECK (hold IN ('reserved', 'confirmed', 'cancelled', 'expired')),
                                              -- null for a deduction
    settled_at  timestamptz,                  -- time of the record that settled the hold
    settle_lsn  bigint,                       -- that CONFIRM, CANCEL or EXPIRE record
    PRIMARY KEY (order_id, sku)
);

-- Deductions whose transaction is not settled yet: small.
CREATE INDEX ledger_unsettled ON hotstock.ledger (lsn) WHERE xid IS NOT NULL;

-- Database-first refunds whose REFUND record is not drained yet: small.
CREATE INDEX ledger_refund_pending ON hotstock.ledger (refunded_at)
    WHERE refunded_at IS NOT NULL AND refund_lsn IS NULL;

-- Live holds (as of the drain): small.
CREATE INDEX ledger_reserved ON hotstock.ledger (expires_at) WHERE hold = 'reserved';

-- Refunds committed in their caller's transaction whose REFUND record the
-- drain has not applied yet.  Written by hotstock.refund() in the caller's
-- transaction, deleted by the drain with the REFUND record's effects; a
-- row the queue never got (the daemon was down or its disk full at the
-- caller's COMMIT, or a crash came in between) is applied by the drain,
-- exactly once, as soon as the daemon can take it.
CREATE TABLE hotstock.refund_requests (
    order_id     text PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);

-- The drain's position: every record with LSN <= applied_lsn is applied
-- to stock and ledger, none after.  Exactly one row.
CREATE TABLE hotstock.drain_state (
    applied_lsn bigint NOT NULL CHECK (applied_lsn >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    one_row     boolean PRIMARY KEY DEFAULT true CHECK (one_row)
);
INSERT INTO hotstock.drain_state (applied_lsn) VALUES (0);

CREATE FUNCTION hotstock.guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'hotstock_guard'
LANGUAGE C;

CREATE TRIGGER stock_guard
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON hotstock.stock
    FOR EACH STATEMENT EXECUTE FUNCTION hotstock.guard();
CREATE TRIGGER drain_state_guard
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON hotstock.drain_state
    FOR EACH STATEMENT EXECUTE FUNCTION hotstock.guard();
CREATE TRIGGER refund_requests_guard
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON hotstock.refund_requests
    FOR EACH STATEMENT EXECUTE FUNCTION hotstock.guard('request');
CREATE TRIGGER ledger_guard
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON hotstock.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION hotstock.guard('refund');

--
-- Functions.  Not STRICT: a NULL argument is an error (22023), not a NULL
-- answer.  PARALLEL UNSAFE (they change shared state and the transaction's
-- compensation list).
--

-- Admin: create a SKU or reset its stock.  Takes effect at once.
CREATE FUNCTION hotstock.put_sku(sku text, stock bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'hotstock_put_sku'
LANGUAGE C VOLATILE;

-- Admin: restock (delta > 0) or withdraw (delta < 0, never below zero);
-- returns the units available right after.  Takes effect at once.
CREATE FUNCTION hotstock.add_stock(sku text, delta bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'hotstock_add_stock'
LANGUAGE C VOLATILE;

-- True when deducted now or before for this order id (a retry); false when
-- not enough stock.  Undone if the calling transaction rolls back.
CREATE FUNCTION hotstock.deduct(sku text, qty integer, order_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_deduct'
LANGUAGE C VOLATILE;

-- Every line or none: qtys[i] units of skus[i] for each line of basket
-- order_id (1..64 lines, no SKU twice).  True when taken now or before (a
-- retry with the same lines); false when some line is short: then nothing
-- is taken.  Undone line by line if the calling transaction rolls back.
-- Line i of an n-line basket is the order order_id || chr(31) || "iinn"
-- (see the view hotstock.basket_lines); refund(order_id) and
-- order_status(order_id) act on the basket.  A basket id names one basket:
-- taken by deduct_basket or reserve_basket, not both.
CREATE FUNCTION hotstock.deduct_basket(order_id text, skus text[], qtys integer[])
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_deduct_basket'
LANGUAGE C VOLATILE;

-- Every line or none, held: qtys[i] units of skus[i] for each line of
-- basket order_id, held until one deadline, now + ttl (more than 0, at
-- most 30 days).  True when held now or before (a retry with the same
-- lines, also once confirmed); false when some line is short: then nothing
-- is held.  confirm(order_id) and cancel(order_id) settle the basket whole;
-- at the deadline every line expires.  Cancelled line by line if the
-- calling transaction rolls back.
CREATE FUNCTION hotstock.reserve_basket(order_id text, skus text[], qtys integer[], ttl interval)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_reserve_basket'
LANGUAGE C VOLATILE;

-- True when this call refunded the order (or every line of a basket);
-- false when there was nothing to refund (unknown order id, or refunded
-- already).  Follows the caller's transaction inside a transaction block.
CREATE FUNCTION hotstock.refund(order_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_refund'
LANGUAGE C VOLATILE;

-- Hold qty units of sku for order_id for ttl (more than 0, at most 30
-- days): true when held now or before for this order id (a retry); false
-- when not enough stock.  The units come back by themselves at the deadline
-- unless confirm() or cancel() came first; undone (cancelled) if the
-- calling transaction rolls back.
CREATE FUNCTION hotstock.reserve(sku text, qty integer, order_id text, ttl interval)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_reserve'
LANGUAGE C VOLATILE;

-- Make order_id's hold a sale: true when confirmed (now or before).  An
-- expired or cancelled hold raises HS008 / HS009, or with retake takes its
-- units anew (false when they are sold out).  In a transaction block it
-- takes effect at commit.
CREATE FUNCTION hotstock.confirm(order_id text, retake boolean DEFAULT false)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_confirm'
LANGUAGE C VOLATILE;

-- Give order_id's hold back: true when this call cancelled it; false when
-- there was nothing to cancel (unknown, cancelled or expired already).  In
-- a transaction block it takes effect after the commit.
CREATE FUNCTION hotstock.cancel(order_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_cancel'
LANGUAGE C VOLATILE;

-- Admin: sku's sale.  deduct, reserve, deduct_basket and reserve_basket
-- take its units only from starts_at (NULL: from now on) until before
-- ends_at (NULL: without end), and never while it is paused; outside the
-- window they raise HS013 (sale not open) or HS014 (sale closed), paused
-- HS015, and take nothing.  Times are the host's realtime clock at the
-- call, one clock for every backend.  per_buyer_limit (NULL: none): each
-- buyer's units (deduct, reserve and the baskets name the buyer) never
-- pass it, HS016 refuses.  Keeps the pause switch.  Takes effect at once.
CREATE FUNCTION hotstock.configure_sale(sku text, starts_at timestamptz DEFAULT NULL,
                                        ends_at timestamptz DEFAULT NULL,
                                        per_buyer_limit integer DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'hotstock_configure_sale'
LANGUAGE C VOLATILE;

-- Admin: stop sku's sale now (HS015 for every take until resume());
-- refunds, confirms and cancels of orders taken before go on.
CREATE FUNCTION hotstock.pause(sku text)
RETURNS void
AS 'MODULE_PATHNAME', 'hotstock_pause'
LANGUAGE C VOLATILE;

-- Admin: lift pause(): sku sells again, within its window.
CREATE FUNCTION hotstock.resume(sku text)
RETURNS void
AS 'MODULE_PATHNAME', 'hotstock_resume'
LANGUAGE C VOLATILE;

-- sku's sale as the daemon holds it now; behind hotstock.sales.  NULL for
-- a SKU the daemon does not know.
CREATE FUNCTION hotstock.sale_info(
    sku text,
    OUT starts_at timestamptz,
    OUT ends_at timestamptz,
    OUT per_buyer_limit integer,
    OUT paused boolean,
    OUT state text,
    OUT configured boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'hotstock_sale_info'
LANGUAGE C VOLATILE;

-- Units available right now (the daemon's shared memory, not the table).
CREATE FUNCTION hotstock.available(sku text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'hotstock_available'
LANGUAGE C VOLATILE;

-- 'deducted', 'refunded', 'reserved', 'expired', 'cancelled' or 'unknown'.
CREATE FUNCTION hotstock.order_status(order_id text)
RETURNS text
AS 'MODULE_PATHNAME', 'hotstock_order_status'
LANGUAGE C VOLATILE;

-- The daemon's segment and the drain's report; behind hotstock.status.
CREATE FUNCTION hotstock.status_info(
    OUT daemon_up boolean,
    OUT daemon_pid integer,
    OUT generation bigint,
    OUT last_lsn bigint,
    OUT durable_lsn bigint,
    OUT checkpoint_lsn bigint,
    OUT evicted_lsn bigint,
    OUT ring_fill double precision,
    OUT order_index_fill double precision,
    OUT sku_count integer,
    OUT order_count integer,
    OUT heartbeat_age_ms bigint,
    OUT drain_pid integer,
    OUT drain_applied_lsn bigint,
    OUT drain_caught_up_at timestamptz,
    OUT drain_last_batch_at timestamptz,
    OUT drain_records bigint,
    OUT drain_rate double precision,
    OUT drain_last_error text)
RETURNS record
AS 'MODULE_PATHNAME', 'hotstock_status_info'
LANGUAGE C VOLATILE;

-- One row: is the daemon up, how far is the queue written, synced and
-- drained, how full are the ring and the order index.
--   drain_lag_records  records written to the queue and not yet applied
--   drain_lag_seconds  0 when caught up, else how long since the drain
--                      last was (an upper bound of the oldest record's wait)
--   unsettled_orders   drained deductions whose transaction the drain has
--                      not yet seen commit (or compensated)
--   pending_refunds    committed refunds whose REFUND record is not drained
--                      yet (the drain applies those the queue never got):
--                      refund requests, and ledger rows refunded
--                      database-first whose REFUND the drain still owes
CREATE VIEW hotstock.status AS
SELECT s.daemon_up,
       s.daemon_pid,
       s.generation,
       s.last_lsn,
       s.durable_lsn,
       d.applied_lsn,
       greatest(s.last_lsn - d.applied_lsn, 0) AS drain_lag_records,
       CASE WHEN s.last_lsn IS NULL THEN NULL
            WHEN s.last_lsn <= d.applied_lsn THEN 0
            ELSE extract(epoch FROM clock_timestamp()
                         - coalesce(s.drain_caught_up_at, d.updated_at))::double precision
       END AS drain_lag_seconds,
       s.ring_fill,
       s.order_index_fill,
       s.sku_count,
       s.order_count,
       s.checkpoint_lsn,
       s.evicted_lsn,
       s.heartbeat_age_ms,
       s.drain_pid,
       s.drain_records,
       s.drain_rate,
       s.drain_last_error,
       (SELECT count(*) FROM hotstock.ledger WHERE xid IS NOT NULL) AS unsettled_orders,
       (SELECT count(*) FROM hotstock.refund_requests)
       + (SELECT count(*) FROM hotstock.ledger
          WHERE refunded_at IS NOT NULL AND refund_lsn IS NULL) AS pending_refunds
FROM hotstock.status_info() AS s, hotstock.drain_state AS d;

-- Live holds as of the drain (drain_state.applied_lsn): a hold the daemon
-- has confirmed, cancelled or expired since is listed until the drain
-- applies that record; one taken since is not listed yet.  For the real
-- time answer ask hotstock.order_status().  A basket of holds
-- (hotstock.reserve_basket()) is listed line by line: basket_id and line
-- (from 0) split the line's order_id; both are null for a plain hold.
CREATE VIEW hotstock.reservations AS
SELECT order_id, sku, qty, deducted_at AS reserved_at, expires_at,
       CASE WHEN order_id ~ (chr(31) || '[0-9]{4}$') THEN left(order_id, -5) END AS basket_id,
       CASE WHEN order_id ~ (chr(31) || '[0-9]{4}$')
            THEN substr(order_id, length(order_id) - 3, 2)::integer END AS line
FROM hotstock.ledger
WHERE hold = 'reserved';

-- The lines of baskets (deduct_basket(), reserve_basket()) in the ledger,
-- as of the drain: each line is an order of its own there, its order_id
-- the basket's id, the byte 0x1f, then the line (from 0) and the line
-- count as two digits each.  This view splits it.  A basket of holds
-- (hotstock.reserve_basket()): hold and expires_at as in the ledger.
CREATE VIEW hotstock.basket_lines AS
SELECT left(order_id, -5) AS basket_id,
       substr(order_id, length(order_id) - 3, 2)::integer AS line,
       right(order_id, 2)::integer AS lines,
       order_id, sku, qty, lsn, deducted_at, refunded_at, refund_lsn, xid, expires_at, hold
FROM hotstock.ledger
WHERE order_id ~ (chr(31) || '[0-9]{4}$');

-- The sales: one row per SKU of hotstock.stock (as of the drain) whose
-- sale is configured (a window, a limit or the pause switch set), read
-- from the daemon now: state is 'paused', 'not open', 'closed' or 'open'
-- at the host's clock (paused first, as deduct answers).
CREATE VIEW hotstock.sales AS
SELECT s.sku, i.starts_at, i.ends_at, i.per_buyer_limit, i.paused, i.state
FROM hotstock.stock AS s, LATERAL hotstock.sale_info(s.sku) AS i
WHERE i.configured;

--
-- Roles: hotstock_app buys and refunds, hotstock_admin also manages stock.
-- Roles are cluster-wide: create them only if missing.
--
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'hotstock_app') THEN
        CREATE ROLE hotstock_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'hotstock_admin') THEN
        CREATE ROLE hotstock_admin NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('hotstock_admin', 'hotstock_app', 'MEMBER') THEN
        GRANT hotstock_app TO hotstock_admin;
    END IF;
END
$$;

REVOKE ALL ON FUNCTION hotstock.guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.put_sku(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.add_stock(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.deduct(text, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.deduct_basket(text, text[], integer[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.reserve_basket(text, text[], integer[], interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.reserve(text, integer, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.confirm(text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.cancel(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.refund(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.available(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.order_status(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.status_info() FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.configure_sale(text, timestamptz, timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.pause(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.resume(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.sale_info(text) FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA hotstock FROM PUBLIC;

GRANT USAGE ON SCHEMA hotstock TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.deduct(text, integer, text) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.deduct_basket(text, text[], integer[]) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.reserve_basket(text, text[], integer[], interval) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.refund(text) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.reserve(text, integer, text, interval) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.confirm(text, boolean) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.cancel(text) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.available(text) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.order_status(text) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.status_info() TO hotstock_app;
GRANT SELECT ON hotstock.status TO hotstock_app;
GRANT SELECT ON hotstock.reservations TO hotstock_app;

GRANT EXECUTE ON FUNCTION hotstock.put_sku(text, bigint) TO hotstock_admin;
GRANT EXECUTE ON FUNCTION hotstock.add_stock(text, bigint) TO hotstock_admin;
GRANT EXECUTE ON FUNCTION hotstock.configure_sale(text, timestamptz, timestamptz, integer)
    TO hotstock_admin;
GRANT EXECUTE ON FUNCTION hotstock.pause(text) TO hotstock_admin;
GRANT EXECUTE ON FUNCTION hotstock.resume(text) TO hotstock_admin;
GRANT EXECUTE ON FUNCTION hotstock.sale_info(text) TO hotstock_admin;
GRANT SELECT ON hotstock.stock, hotstock.ledger, hotstock.drain_state, hotstock.refund_requests,
    hotstock.basket_lines, hotstock.sales TO hotstock_admin;

-- Per-buyer limits (1.4).
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

-- Statistics (1.4).

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
