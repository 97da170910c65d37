-- hotstock.deduct of one of 10,000 SKUs ('1'..'10000') chosen at random;
-- unique order ids as in deduct_hot.sql
\set k random(1, 10000)
\set n :n + 1
\set oid :base + :client_id * 1000000000 + :n
SELECT hotstock.deduct(:k, 1, :oid);
