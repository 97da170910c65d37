/* pg_ext/hotstock--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hotstock UPDATE TO '1.1'" to load this file. \quit

-- A deduction's transaction, until the drain has seen it commit or has
-- compensated it (see hotstock--1.1.sql).
ALTER TABLE hotstock.ledger ADD COLUMN xid bigint;
CREATE INDEX ledger_unsettled ON hotstock.ledger (lsn) WHERE xid IS NOT NULL;

-- Committed refunds whose REFUND record is not drained yet.
CREATE TABLE hotstock.refund_requests (
    order_id     text PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE TRIGGER refund_requests_guard
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON hotstock.refund_requests
    FOR EACH STATEMENT EXECUTE FUNCTION hotstock.guard('request');
REVOKE ALL ON hotstock.refund_requests FROM PUBLIC;
GRANT SELECT ON hotstock.refund_requests TO hotstock_admin;

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
       (SELECT count(*) FROM hotstock.refund_requests) AS pending_refunds
FROM hotstock.status_info() AS s, hotstock.drain_state AS d;
