/* pg_ext/hotstock--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hotstock UPDATE TO '1.2'" to load this file. \quit

-- Holds: reservations with a time-to-live (see hotstock--1.2.sql).  The
-- drain of this version applies RESERVE, CONFIRM, CANCEL and EXPIRE
-- records; it waits (and says so in hotstock.status) until this update ran.

-- Units held by live reservations, beside available and sold.
ALTER TABLE hotstock.stock ADD COLUMN reserved bigint NOT NULL DEFAULT 0;

-- A hold's deadline and state, and the record that settled it.
ALTER TABLE hotstock.ledger
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN hold text CONSTRAINT ledger_hold_check
        CHECK (hold IN ('reserved', 'confirmed', 'cancelled', 'expired')),
    ADD COLUMN settled_at timestamptz,
    ADD COLUMN settle_lsn bigint;
CREATE INDEX ledger_reserved ON hotstock.ledger (expires_at) WHERE hold = 'reserved';

CREATE FUNCTION hotstock.reserve(sku text, qty integer, order_id text, ttl interval)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_reserve'
LANGUAGE C VOLATILE;

CREATE FUNCTION hotstock.confirm(order_id text, retake boolean DEFAULT false)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_confirm'
LANGUAGE C VOLATILE;

CREATE FUNCTION hotstock.cancel(order_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_cancel'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION hotstock.reserve(text, integer, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.confirm(text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.cancel(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotstock.reserve(text, integer, text, interval) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.confirm(text, boolean) TO hotstock_app;
GRANT EXECUTE ON FUNCTION hotstock.cancel(text) TO hotstock_app;

-- pending_refunds also counts database-first refunds the drain still owes.
CREATE OR REPLACE VIEW hotstock.status AS
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

-- Live holds as of the drain (see hotstock--1.2.sql).
CREATE VIEW hotstock.reservations AS
SELECT order_id, sku, qty, deducted_at AS reserved_at, expires_at
FROM hotstock.ledger
WHERE hold = 'reserved';
REVOKE ALL ON hotstock.reservations FROM PUBLIC;
GRANT SELECT ON hotstock.reservations TO hotstock_app;
