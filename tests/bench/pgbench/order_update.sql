-- an order transaction, stock by hot-row UPDATE
\set n :n + 1
\set oid :base + :client_id * 1000000000 + :n
BEGIN;
UPDATE stock_plain SET qty = qty - 1 WHERE sku = :sku AND qty >= 1;
INSERT INTO orders (order_id, sku, qty) VALUES (:oid, :sku, 1);
END;
