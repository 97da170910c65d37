/* pg_ext/hotstock--1.1.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION hotstock" to load this file. \quit

--
-- Tables.  The drain ("hotstock drain" background worker) is their only
-- writer: a statement-level guard trigger refuses everyone else (the
-- database-first refund of an evicted order may also update ledger rows).
--

-- Per-SKU mirror of the daemon's counters, as of drain_state.applied_lsn.
CREATE TABLE hotstock.stock (
    sku         text PRIMARY KEY,
    available   bigint NOT NULL DEFAULT 0,   -- units left to sell
    sold        bigint NOT NULL DEFAULT 0,   -- units deducted minus units refunded
    last_lsn    bigint NOT NULL DEFAULT 0,   -- queue record last applied to this row
    updated_at  timestamptz NOT NULL DEFAULT now()  -- time of that record
);

-- One row per order and SKU.
CREATE TABLE hotstock.ledger (
    order_id    text NOT NULL,
    sku         text NOT NULL,
    qty         integer NOT NULL,
    lsn         bigint NOT NULL,              -- the DEDUCT record
    deducted_at timestamptz NOT NULL,
    refunded_at timestamptz,                  -- set by the REFUND record, or first by a
                                              -- database-first refund (refund_lsn still null)
    refund_lsn  bigint,                       -- the REFUND record, once drained
    xid         bigint,                       -- the deduction's transaction (full xid) while
                                              -- the drain does not know it committed; null
                                              -- once settled (committed, or compensated)
    PRIMARY KEY (order_id, sku)
);

-- Deductions whose transaction is not settled yet: small.
CREATE INDEX ledger_unsettled ON hotstock.ledger (lsn) WHERE xid IS NOT NULL;

-- Database-first refunds whose REFUND record is not drained yet: small.
CREATE INDEX ledger_refund_pending ON hotstock.ledger (refunded_at)
    WHERE refunded_at IS NOT NULL AND refund_lsn IS NULL;

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

-- True when this call refunded the order; false when there was nothing to
-- refund (unknown order id, or refunded already).  Follows the caller's
-- transaction inside a transaction block.
CREATE FUNCTION hotstock.refund(order_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_refund'
LANGUAGE C VOLATILE;

-- Units available right now (the daemon's shared memory, not the table).
CREATE FUNCTION hotstock.available(sku text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'hotstock_available'
LANGUAGE C VOLATILE;

-- 'deducted', 'refunded' or 'unknown'.
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
--                      yet (the drain applies those the queue never got)
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
       (SELECT count(*) FROM hotstock.refund_requests) AS pending_refunds
FROM hotstock.status_info() AS s, hotstock.drain_state AS d;

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
REVOKE ALL ON FUNCTION hotstock.refund(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.available(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.order_status(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.status_info() FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA hotstock FROM PUBLIC;

GRANT USAGE ON SCHEMA hotstock TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.deduct(text, integer, text) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.refund(text) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.available(text) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.order_status(text) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.status_info() TO hotstock_app;
GRANT SELECT ON hotstock.status TO hotstock_app;

GRANT EXECUTE ON FUNCTION hotstock.put_sku(text, bigint) TO hotstock_admin;
GRANT EXECUTE ON FUNCTION hotstock.add_stock(text, bigint) TO hotstock_admin;
GRANT SELECT ON hotstock.stock, hotstock.ledger, hotstock.drain_state, hotstock.refund_requests
    TO hotstock_admin;
