-- an order transaction, stock by hotstock.deduct
\set n :n + 1
\set oid :base + :client_id * 1000000000 + :n
BEGIN;
SELECT hotstock.deduct(:sku, 1, :oid);
INSERT INTO orders (order_id, sku, qty) VALUES (:oid, :sku, 1);
END;
