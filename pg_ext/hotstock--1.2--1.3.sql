/* pg_ext/hotstock--1.2--1.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hotstock UPDATE TO '1.3'" to load this file. \quit

-- Baskets: every line or none, deducted or held (see hotstock--1.3.sql).
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
