-- hotstock.deduct of one hot SKU (:sku).  Order ids are unique across the
-- whole run: :base is unique per cell (-D), :n counts per client (-D n=0;
-- pgbench keeps a client's variables from one transaction to the next).
\set n :n + 1
\set oid :base + :client_id * 1000000000 + :n
SELECT hotstock.deduct(:sku, 1, :oid);
