-- the order transaction's floor: the INSERT alone
\set n :n + 1
\set oid :base + :client_id * 1000000000 + :n
BEGIN;
INSERT INTO orders (order_id, sku, qty) VALUES (:oid, :sku, 1);
END;
