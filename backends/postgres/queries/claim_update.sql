-- A fragment, not a statement: the update every claim statement ends with (claim.sql,
-- claim_one_queue.sql, claim_limited.sql), spliced as `{claim_update}` after their
-- CTEs. It claims the rows of the CTE `picked` (their ctids, locked by it) for the
-- worker $5 with a lease of $4 µs from `ctx.now`: running, attempt + 1, a fresh lease
-- token each, and returns them whole, each with `statement_us`: how long the statement
-- had run on the server's clock when the row was returned. `picked` is an InitPlan of
-- the update, walked to its end before the first row is updated, so every row's
-- `statement_us` includes the whole walk (src/claim_start.rs reads it).
-- `{claim_commit}` is empty, or, with PostgresConfig::async_claim_commit, a one-time
-- condition that sets `synchronous_commit` off for the claim's own transaction (see
-- src/queries.rs).
UPDATE {schema}.jobs AS j
SET state            = 'running',
    attempt          = j.attempt + 1,
    attempted_at     = ctx.now,
    lease_token      = gen_random_uuid(),
    lease_expires_at = ctx.now + $4::bigint * interval '1 microsecond',
    claimed_by       = $5::text
FROM ctx
WHERE j.ctid = ANY (ARRAY(SELECT ctid FROM picked)){claim_commit}
RETURNING j.*,
    (extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000000)::bigint AS statement_us
