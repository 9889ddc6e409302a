-- A fragment, not a statement: the ids of the first $7 jobs matching a filter whose id
-- is greater than $6, in id order. Spliced as `{matching_ids}` into list.sql and the
-- bulk statements (retry_jobs.sql, cancel_jobs.sql, delete_jobs.sql), which take these
-- parameters in these positions. A NULL filter, or an empty $2, matches everything.
--
-- With states named, one branch per state, each naming its state as a constant: the
-- planner reads that state's statistics and walks jobs_state_id_idx (state, id), or
-- jobs_queue_state_idx (queue, state, id) for one queue, in id order, stopping after
-- $7 rows; the branches are merged by id. (A single `state = ANY ($2)` scan would read
-- a rare state's jobs whole and sort them, and walk the primary key for a common one:
-- through every completed job before the first available one.) With none named, one
-- branch walks every job in id order, whatever its state says. The statement must be
-- planned with its parameters' values, so run it unprepared: the NULL filters and the
-- branches $2 leaves out then drop out of the plan, which a generic plan keeps.
--
-- $1 queue          text
-- $2 states         text[]
-- $3 kind           text
-- $4 created_from   timestamptz  inclusive
-- $5 created_until  timestamptz  exclusive
-- $6 after          uuid         cursor: only ids greater than this
-- $7 limit          bigint
--
-- Yields a column `id`.
--
-- This file holds one branch; queries.rs writes the fragment from it: the branch once
-- with `{state_condition}` = `cardinality($2::text[]) = 0` (no state named) and once
-- per state with `j.state = '<state>' AND '<state>' = ANY ($2::text[])`, joined by
-- UNION ALL, of whose merge the first $7 ids in id order are kept.
(SELECT j.id
 FROM {schema}.jobs AS j
 WHERE {state_condition}
   AND ($1::text IS NULL OR j.queue = $1::text)
   AND ($3::text IS NULL OR j.kind = $3::text)
   AND ($4::timestamptz IS NULL OR j.created_at >= $4::timestamptz)
   AND ($5::timestamptz IS NULL OR j.created_at < $5::timestamptz)
   AND ($6::uuid IS NULL OR j.id > $6::uuid)
 ORDER BY j.id
 LIMIT $7)
