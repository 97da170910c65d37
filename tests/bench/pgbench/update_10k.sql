-- UPDATE of one of 10,000 rows ('1'..'10000') chosen at random
\set k random(1, 10000)
UPDATE stock_plain SET qty = qty - 1 WHERE sku = :k AND qty >= 1;
