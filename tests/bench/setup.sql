-- Schema of the benchmark (run once on a fresh private cluster).
-- stock_plain: the plain-table way, one row per SKU; qty never runs out.
-- orders: what an order transaction inserts.
-- hotstock: the same SKUs ('hot' and '1'..'10000') with stock that outlasts
-- the run.
\set ON_ERROR_STOP 1
CREATE EXTENSION IF NOT EXISTS hotstock;
DROP TABLE IF EXISTS stock_plain, orders;
CREATE TABLE stock_plain (sku text PRIMARY KEY, qty bigint NOT NULL);
INSERT INTO stock_plain VALUES ('hot', 1000000000000000);
INSERT INTO stock_plain SELECT g::text, 1000000000000000 FROM generate_series(1, 10000) g;
CREATE TABLE orders (
    order_id text PRIMARY KEY,
    sku text NOT NULL,
    qty int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
SELECT hotstock.put_sku('hot', 100000000000);
SELECT count(*) AS skus_put
FROM (SELECT hotstock.put_sku(g::text, 10000000000) FROM generate_series(1, 10000) g) s;
VACUUM ANALYZE stock_plain;
