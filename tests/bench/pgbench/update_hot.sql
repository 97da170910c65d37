-- hot-row UPDATE: every client on one row (:sku, given with -D)
UPDATE stock_plain SET qty = qty - 1 WHERE sku = :sku AND qty >= 1;
