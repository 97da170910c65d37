-- the protocol floor: one round trip, nothing touched
SELECT 1;
