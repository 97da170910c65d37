/* pg_ext/hotstock--1.2--1.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hotstock UPDATE TO '1.3'" to load this file. \quit

-- Baskets: every line or none, deducted or held; sales: a window and a
-- pause switch per SKU (see hotstock--1.3.sql).
-- No table changes: a basket's lines are orders of their own in the
-- ledger.  From this version on, order ids holding the byte 0x1f are
-- refused by every function (they name basket lines).

CREATE FUNCTION hotstock.deduct_basket(order_id text, skus text[], qtys integer[])
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_deduct_basket'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION hotstock.deduct_basket(text, text[], integer[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotstock.deduct_basket(text, text[], integer[]) TO hotstock_app;

CREATE FUNCTION hotstock.reserve_basket(order_id text, skus text[], qtys integer[], ttl interval)
RETURNS boolean
AS 'MODULE_PATHNAME', 'hotstock_reserve_basket'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION hotstock.reserve_basket(text, text[], integer[], interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotstock.reserve_basket(text, text[], integer[], interval) TO hotstock_app;

-- The lines of a basket of holds in hotstock.reservations: basket_id and
-- line, appended (CREATE OR REPLACE VIEW keeps the columns before them and
-- the grants).
CREATE OR REPLACE VIEW hotstock.reservations AS
SELECT order_id, sku, qty, deducted_at AS reserved_at, expires_at,
       CASE WHEN order_id ~ (chr(31) || '[0-9]{4}$') THEN left(order_id, -5) END AS basket_id,
       CASE WHEN order_id ~ (chr(31) || '[0-9]{4}$')
            THEN substr(order_id, length(order_id) - 3, 2)::integer END AS line
FROM hotstock.ledger
WHERE hold = 'reserved';

-- The lines of baskets in the ledger (see hotstock--1.3.sql).
CREATE VIEW hotstock.basket_lines AS
SELECT left(order_id, -5) AS basket_id,
       substr(order_id, length(order_id) - 3, 2)::integer AS line,
       right(order_id, 2)::integer AS lines,
       order_id, sku, qty, lsn, deducted_at, refunded_at, refund_lsn, xid, expires_at, hold
FROM hotstock.ledger
WHERE order_id ~ (chr(31) || '[0-9]{4}$');
REVOKE ALL ON hotstock.basket_lines FROM PUBLIC;
GRANT SELECT ON hotstock.basket_lines TO hotstock_admin;

-- Sales (see hotstock--1.3.sql).  No table changes: a sale lives in the
-- daemon (its SALE records change no counter).
-- Admin: sku's sale.  deduct, reserve, deduct_basket and reserve_basket
-- take its units only from starts_at (NULL: from now on) until before
-- ends_at (NULL: without end), and never while it is paused; outside the
-- window they raise HS013 (sale not open) or HS014 (sale closed), paused
-- HS015, and take nothing.  Times are the host's realtime clock at the
-- call, one clock for every backend.  per_buyer_limit (NULL: none) is
-- recorded, not yet enforced.  Keeps the pause switch.  Takes effect at
-- once.
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

REVOKE ALL ON FUNCTION hotstock.configure_sale(text, timestamptz, timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.pause(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.resume(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotstock.sale_info(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotstock.configure_sale(text, timestamptz, timestamptz, integer)
    TO hotstock_admin;
GRANT EXECUTE ON FUNCTION hotstock.pause(text) TO hotstock_admin;
GRANT EXECUTE ON FUNCTION hotstock.resume(text) TO hotstock_admin;
GRANT EXECUTE ON FUNCTION hotstock.sale_info(text) TO hotstock_admin;

-- The sales: one row per SKU of hotstock.stock (as of the drain) whose
-- sale is configured (a window, a limit or the pause switch set), read
-- from the daemon now: state is 'paused', 'not open', 'closed' or 'open'
-- at the host's clock (paused first, as deduct answers).
CREATE VIEW hotstock.sales AS
SELECT s.sku, i.starts_at, i.ends_at, i.per_buyer_limit, i.paused, i.state
FROM hotstock.stock AS s, LATERAL hotstock.sale_info(s.sku) AS i
WHERE i.configured;
REVOKE ALL ON hotstock.sales FROM PUBLIC;
GRANT SELECT ON hotstock.sales TO hotstock_admin;
