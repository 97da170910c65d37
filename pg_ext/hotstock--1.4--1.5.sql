/* pg_ext/hotstock--1.4--1.5.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hotstock UPDATE TO '1.5'" to load this file. \quit

-- The drain updates each SKU's row of hotstock.stock once per batch.  With
-- room left on the row's page that update is HOT: no new stock_pkey entry,
-- the old version pruned in place.  On full pages every batch adds an index
-- entry per SKU, and over many SKUs the index bloats faster than vacuum
-- empties it (pg_ext/README.md, "The drain, exactly once").  New pages are
-- filled to half from now on; `VACUUM FULL hotstock.stock` (a short ACCESS
-- EXCLUSIVE lock: the drain waits) rewrites the existing ones at once.
ALTER TABLE hotstock.stock SET (fillfactor = 50);
