//! The conformance suite every haul storage backend must pass.
//!
//! Modelled on River's `riverdrivertest`: the cases are plain `async fn`s in
//! [`cases`], one behaviour each, written once against the [`haul::Storage`] trait.
//! [`conformance_suite!`] lists every case once and expands to one `#[tokio::test]`
//! per case, so a backend joins the suite with one test file and a [`Harness`]:
//!
//! ```
//! // tests/memory.rs
//! mod memory {
//!     haul_integration_tests::conformance_suite!(haul_integration_tests::MemoryHarness::new());
//! }
//! ```
//!
//! Test names then read `memory::claim::orders_by_priority_then_run_at_then_id`, and
//! `cargo test -p haul-integration-tests -- memory::` runs the whole suite on one backend.
//!
//! Each case gets its own storage from the harness (a new instance, a schema or a key
//! prefix of its own), so cases run in parallel and leave nothing behind. Storage cases
//! pass an explicit `now` to every time-dependent call and move the clock instead of
//! sleeping; worker cases run the real runtime and wait for storage states with a
//! generous deadline.

pub mod cases;
pub mod faults;
pub mod harness;
pub mod services;

pub use harness::{
    Capabilities, Capability, Harness, HarnessError, MemoryHarness, PostgresHarness, RedisHarness, TestStorage,
    run_case,
};

/// Expands to the whole conformance suite for one backend: a module per area, a
/// `#[tokio::test]` per case.
///
/// The argument is an expression building a [`Harness`]; it is evaluated once per
/// test. Invoke it inside a module named after the backend so test names start with
/// it. Cases that need a [`Capability`] the harness lacks print why and skip.
///
/// Adding a case: write the `pub async fn` in `src/cases/<area>.rs` and add its name
/// below; every backend's suite then runs it.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:expr $(,)?) => {
        $crate::conformance_suite! { @areas $harness;
            enqueue [current] {
                round_trip_keeps_payload_and_options_exactly,
                a_job_without_timeout_has_none,
                returns_the_ids_in_input_order,
                a_future_run_at_makes_the_job_scheduled,
                a_past_or_present_run_at_makes_the_job_available,
                a_batch_that_fails_stores_none_of_its_jobs,
                a_large_batch_is_stored_whole_or_not_at_all,
                an_empty_batch_stores_nothing,
            }
            claim [current] {
                orders_by_priority_then_run_at_then_id,
                claims_at_most_the_limit_taking_the_first_in_order,
                a_job_is_passed_over_for_at_most_the_order_lag,
                a_claim_that_finds_nothing_else_takes_a_passed_over_job,
                a_limit_of_zero_claims_nothing,
                claims_only_from_the_requested_queues,
                records_attempt_lease_and_holder,
                every_claim_gets_a_fresh_lease_token,
                never_claims_running_or_finished_jobs,
                skips_paused_queues,
            }
            schedule [current] {
                never_claims_a_scheduled_job_before_it_is_due,
                promotes_only_scheduled_jobs_that_are_due,
                claims_a_scheduled_job_once_it_is_due,
                promotes_retryable_jobs_when_their_backoff_ends,
                promoted_jobs_are_claimed_in_run_at_order,
                promotion_touches_no_other_state,
            }
            concurrency [multi_thread] {
                racing_claimers_claim_each_job_exactly_once,
                racing_claimers_run_each_attempt_exactly_once,
                concurrent_enqueues_lose_no_job,
            }
            lease [current] {
                completing_with_the_current_claim_finishes_the_job,
                rescues_an_expired_lease_and_counts_the_attempt,
                rescue_discards_a_job_with_no_attempt_left,
                rescue_cancels_a_job_whose_cancel_was_requested,
                heartbeat_keeps_a_lease_alive,
                heartbeat_reports_a_rescued_claim_as_lost,
                heartbeat_reports_a_finished_job_as_lost,
                heartbeat_sorts_a_batch_into_extended_and_lost,
                a_large_heartbeat_sorts_every_claim,
                a_stale_holder_cannot_complete_a_job_someone_else_holds,
                a_stale_holder_cannot_fail_a_job,
                an_outcome_with_a_foreign_token_is_rejected,
                an_outcome_reported_twice_is_applied_once,
                a_report_batch_applies_held_outcomes_and_rejects_the_rest,
                a_large_report_batch_applies_every_outcome,
                each_claim_of_one_job_is_judged_by_its_own_token,
            }
            failure [current] {
                a_failed_attempt_is_retried_at_the_backoff_time,
                exhausting_max_attempts_discards_the_job_with_its_error_history,
                a_discarded_outcome_ends_the_job_with_its_reason,
                manual_retry_of_a_discarded_job_gives_it_one_more_attempt,
                manual_retry_keeps_max_attempts_when_attempts_are_left,
                manual_retry_of_a_waiting_job_makes_it_available_now,
                manual_retry_of_a_running_job_is_an_invalid_state,
                manual_retry_of_a_missing_job_is_not_found,
                a_snooze_keeps_the_attempt,
                a_snooze_of_zero_makes_the_job_available_at_once,
                a_cancel_request_wins_over_a_failure,
                a_cancel_request_wins_over_a_snooze,
            }
            cancel [current] {
                an_available_job_cancelled_never_runs,
                a_scheduled_job_cancelled_never_runs,
                a_retryable_job_cancelled_never_runs_again,
                a_running_job_cancelled_is_learned_through_heartbeat,
                heartbeat_tells_only_the_cancelled_jobs,
                a_running_job_that_completes_despite_a_cancel_request_is_completed,
                cancelling_a_finished_job_is_an_invalid_state,
                cancelling_a_missing_job_is_not_found,
                a_cancelled_job_can_be_retried_by_hand,
            }
            admin [current] {
                pausing_a_queue_holds_its_jobs_until_it_is_resumed,
                pause_and_resume_are_idempotent,
                counts_jobs_per_queue_and_state,
                counts_give_the_run_at_of_the_next_job_to_claim,
                get_of_an_unknown_id_is_none,
                list_filters_by_queue_state_and_kind,
                list_pages_with_the_after_cursor,
                list_returns_the_same_records_as_get,
            }
            admin_actions [multi_thread] {
                deleting_a_job_that_is_not_running_removes_it_everywhere,
                deleting_a_running_job_is_an_invalid_state_and_keeps_it,
                deleting_a_unique_job_frees_its_key requires(UniqueJobs),
                list_honours_every_filter_field,
                list_pages_through_the_matches_of_a_filter,
                listing_a_rare_state_finds_exactly_its_jobs,
                retry_jobs_retries_the_idle_matches_and_skips_running_ones,
                cancel_jobs_cancels_the_waiting_matches_and_asks_running_ones,
                delete_jobs_deletes_the_idle_matches_and_keeps_running_ones,
                delete_jobs_racing_with_claims_never_deletes_a_claimed_job,
                retry_jobs_racing_with_claims_never_resets_a_claimed_job,
                cancel_jobs_racing_with_claims_cancels_or_asks_every_job,
                a_storage_is_usable_as_a_shared_admin,
            }
            throughput [multi_thread] {
                samples_of_a_queue_and_minute_add_up_and_others_stay_apart,
                a_samples_minute_is_truncated_to_the_start_of_its_minute,
                throughput_since_returns_the_minutes_from_the_minute_of_since,
                samples_within_the_retention_are_kept_at_a_later_now,
                a_worker_records_its_completed_and_failed_attempts_when_it_stops,
                a_running_worker_records_its_counts_every_interval,
            }
            metadata [current] {
                metadata_round_trips_exactly_through_get_list_and_claim,
                a_job_without_metadata_has_an_empty_map,
                a_batch_keeps_each_jobs_own_metadata,
                metadata_survives_failed_attempts_snoozes_and_manual_retries,
                metadata_survives_the_rescue_of_an_expired_lease,
                metadata_over_the_limit_or_with_a_nul_is_refused,
                a_handler_reads_the_metadata_it_was_enqueued_with,
            }
            retention [current] {
                prunes_each_finished_state_after_its_own_retention,
                prune_never_removes_unfinished_jobs,
                prune_removes_at_most_its_limit,
                retention_counts_from_the_finish_time,
                a_completion_that_deletes_its_job_leaves_nothing_of_it,
                an_outcome_repeated_in_a_deleting_batch_is_applied_once,
                a_deleting_batch_deletes_a_job_only_under_its_current_claim,
                a_deleted_job_gives_back_its_limit_key_slot,
                a_worker_that_keeps_no_completed_jobs_deletes_them,
            }
            bad_input [multi_thread] {
                invalid_queue_names_are_rejected,
                invalid_kind_names_are_rejected,
                arguments_that_are_not_an_object_are_rejected,
                zero_max_attempts_is_rejected,
                a_batch_with_one_invalid_job_stores_nothing,
                oversized_arguments_are_rejected,
                a_job_of_an_unknown_kind_is_a_recorded_failure,
                a_job_with_a_corrupt_payload_is_a_recorded_failure,
                arguments_that_cannot_be_read_back_are_refused,
                text_with_nul_characters_is_stored_with_replacement_characters,
                throughput_samples_with_an_invalid_queue_are_refused_and_record_nothing,
            }
            unique [current] {
                a_unique_job_is_skipped_while_an_unfinished_one_has_its_key requires(UniqueJobs),
                different_keys_do_not_block_each_other requires(UniqueJobs),
                the_unique_key_is_recorded_on_the_job requires(UniqueJobs),
                a_finished_job_does_not_block_its_key requires(UniqueJobs),
                the_blocking_states_can_include_finished_ones requires(UniqueJobs),
                the_window_limits_how_far_back_a_key_blocks requires(UniqueJobs),
                a_batch_keeps_only_the_first_job_of_a_key requires(UniqueJobs),
                a_unique_key_of_any_size_is_accepted requires(UniqueJobs),
                a_large_batch_of_unique_jobs_is_stored_once_each requires(UniqueJobs),
            }
            wakeup [multi_thread] {
                a_subscriber_is_woken_after_an_available_job_is_enqueued requires(Wakeups),
                every_subscriber_is_woken requires(Wakeups),
                an_idle_worker_is_woken_by_new_work requires(Wakeups),
            }
            setup [multi_thread] {
                migrate_is_idempotent_and_the_storage_is_ready_after_it,
                concurrent_migrations_all_succeed,
            }
            testing [current] {
                a_drain_runs_due_jobs_and_the_jobs_they_enqueue,
                a_failed_job_runs_again_once_the_test_clock_passes_its_backoff,
                a_scheduled_job_runs_once_the_test_clock_reaches_it,
                the_assertions_read_the_enqueued_jobs,
                an_inline_enqueue_runs_the_job_before_it_returns,
            }
            cluster [multi_thread] {
                a_beat_is_listed_with_every_field_as_sent,
                a_beat_keeps_the_whole_range_of_its_fields,
                a_second_beat_refreshes_the_record_without_duplicating_it,
                a_record_is_not_listed_once_it_expires,
                removing_a_worker_unlists_it,
                removing_an_unknown_worker_is_ok,
                several_workers_are_listed_in_id_order,
                the_first_worker_to_ask_leads_until_its_lead_lapses,
                another_worker_is_refused_while_the_lead_is_live,
                a_renewal_keeps_the_term_and_moves_the_end,
                a_lapsed_lead_goes_to_another_worker_under_the_next_term,
                the_old_holder_is_refused_after_another_took_its_lapsed_lead,
                a_release_by_the_holder_frees_the_lead_at_once,
                the_holder_retaking_its_released_lead_gets_the_next_term,
                a_release_under_a_stale_term_does_nothing,
                a_release_by_another_worker_does_nothing,
                the_same_worker_retaking_its_lapsed_lead_gets_the_next_term,
                exactly_one_of_racing_workers_takes_the_lead,
                exactly_one_of_racing_workers_takes_a_lapsed_lead,
            }
            worker [multi_thread] {
                runs_a_batch_of_jobs_to_completion,
                graceful_shutdown_lets_jobs_in_flight_finish_and_loses_none,
                shutdown_after_the_grace_period_hands_running_jobs_back,
                a_prefetching_worker_claims_ahead_but_runs_only_its_concurrency,
                shutdown_hands_prefetched_jobs_back_without_running_them,
                a_prefetching_worker_runs_every_job_once,
                a_default_worker_claims_ahead_for_short_jobs,
                a_default_worker_does_not_claim_ahead_for_long_jobs,
                long_jobs_claimed_ahead_behind_short_ones_are_handed_back,
                a_queue_with_slots_of_its_own_runs_while_slow_jobs_hold_the_shared_ones,
                a_queue_with_slots_of_its_own_never_takes_the_shared_ones,
                a_worker_whose_every_queue_has_slots_of_its_own_keeps_each_limit,
                a_panicking_claim_loop_stops_the_worker_and_hands_its_jobs_back,
                a_panicking_background_task_stops_the_worker_and_hands_its_jobs_back,
                a_panicking_handler_is_recorded_as_a_failed_attempt,
                a_timed_out_handler_is_retried,
                a_failing_handler_is_retried_until_it_succeeds,
                a_handler_failing_every_attempt_ends_discarded,
                a_snoozing_handler_runs_again_without_spending_an_attempt,
                a_discarding_handler_ends_the_job_discarded,
                a_cancelled_running_job_stops_its_handler,
                a_worker_that_reclaims_a_job_it_lost_completes_it_once,
                a_claim_whose_lease_ended_before_its_start_never_starts,
                a_failure_with_an_unbounded_backoff_ends_in_a_visible_state,
                an_outcome_storage_refuses_does_not_hold_back_the_others,
            }
            limits [multi_thread] {
                limits_are_stored_listed_replaced_and_removed,
                a_bad_queue_name_or_a_zero_limit_is_refused,
                a_claim_takes_no_more_than_the_limit_minus_the_running_jobs,
                every_ending_of_a_running_job_frees_its_slot,
                the_other_queues_of_a_claim_fill_what_a_limit_leaves,
                a_limit_applies_to_its_own_queue_only,
                a_changed_limit_applies_to_the_next_claim,
                an_expired_lease_holds_its_slot_until_it_is_rescued,
                racing_claimers_never_exceed_a_limit_together,
                workers_together_run_no_more_than_the_limit,
                a_queue_named_twice_in_a_claim_gives_no_more_than_its_limit,
                a_waiting_worker_is_woken_when_a_report_frees_the_slot,
                a_waiting_worker_is_woken_when_a_rescue_frees_the_slot,
                a_paused_limited_queue_gives_nothing,
                a_claim_of_a_limited_queue_sets_each_jobs_claim_fields,
                key_limits_are_stored_listed_replaced_and_removed,
                a_bad_limit_key_is_refused_at_enqueue,
                the_limit_key_round_trips_through_get_list_and_claim,
                a_claim_takes_at_most_the_key_limit_of_each_key,
                a_key_limit_of_one_runs_each_keys_jobs_in_order,
                racing_claimers_never_exceed_a_key_limit_together,
                every_ending_of_a_running_job_frees_its_keys_slot,
                an_expired_lease_holds_its_keys_slot_until_it_is_rescued,
                a_job_running_before_the_key_limit_was_set_counts_against_it,
                the_concurrency_limit_and_the_key_limit_apply_together,
                a_claim_looks_at_no_more_than_the_scan_bound,
                a_waiting_worker_is_woken_when_a_report_frees_the_keys_slot,
                a_waiting_worker_is_woken_when_a_rescue_frees_the_keys_slot,
            }
            rate_limits [multi_thread] {
                rate_limits_are_stored_listed_replaced_and_removed,
                bad_rate_limits_are_refused_and_change_nothing,
                a_rate_limit_allows_exactly_its_starts_per_period,
                the_window_slides_with_each_start,
                held_back_jobs_stay_available_and_keep_their_attempts_and_order,
                a_key_rate_limit_allows_each_key_its_starts_per_period,
                a_rate_limit_and_a_concurrency_limit_apply_together,
                a_key_rate_limit_and_a_key_concurrency_limit_apply_together,
                every_limit_applies_together,
                racing_claimers_never_exceed_a_rate_limit_together,
                racing_claimers_never_exceed_a_key_rate_limit_together,
                each_attempt_of_a_retried_job_counts_as_a_start,
                rate_limits_hold_across_a_rescued_lease,
                rate_limited_for_tells_when_the_queues_next_start_is_allowed,
                rate_limited_for_tells_when_a_keys_next_start_is_allowed,
                rate_limited_for_is_none_when_no_rate_limit_held_a_job_back,
                rate_limited_for_is_the_soonest_of_the_claims_queues,
                the_other_queues_of_a_claim_fill_what_a_rate_leaves,
                a_changed_rate_limit_applies_to_the_next_claim,
                the_largest_rate_limit_is_honoured,
                a_claim_looks_at_no_more_than_the_scan_bound_with_a_key_rate,
                a_worker_claims_again_when_the_rate_lets_the_next_job_start,
            }
            events [multi_thread] {
                a_successful_job_gives_started_then_completed,
                a_failed_attempt_with_attempts_left_gives_failed_with_its_retry_time,
                a_failure_on_the_last_attempt_gives_discarded_not_failed,
                a_discarding_handler_gives_discarded_with_its_reason,
                a_snoozing_handler_gives_snoozed_until_its_due_time,
                a_timeout_gives_timed_out_with_attempts_left_and_discarded_on_the_last,
                a_cancelled_running_job_gives_cancelled,
                a_cancel_reaches_the_running_handler_within_a_second,
                shutdown_after_the_grace_period_gives_handed_back,
                a_panicking_handler_gives_failed_with_the_panic_message,
                every_subscriber_receives_every_event_until_the_worker_stops,
                a_lost_lease_gives_lease_lost_and_no_other_ending,
                a_job_cancelled_before_its_handler_starts_gives_only_cancelled,
                retry_after_on_the_last_attempt_gives_discarded_not_failed,
            }
            middleware [multi_thread] {
                middleware_run_in_the_order_added_the_first_outermost,
                a_middleware_can_replace_the_handlers_result,
                a_middleware_that_does_not_call_next_skips_the_handler,
                a_middleware_sees_the_jobs_metadata_and_context,
                a_panic_in_a_middleware_is_a_failed_attempt,
                the_jobs_timeout_covers_its_middleware,
                an_enqueue_middleware_adds_metadata_to_every_job_of_a_batch,
                an_enqueue_middleware_that_fails_stores_nothing,
                arguments_an_enqueue_middleware_grows_past_the_limit_are_refused,
                test_jobs_drains_run_jobs_through_the_middleware,
            }
            periodic [multi_thread] {
                a_saved_record_is_listed_with_every_field_as_given,
                an_update_with_an_earlier_tick_changes_nothing,
                an_update_of_another_spec_takes_the_record_whatever_its_tick,
                an_update_without_a_tick_keeps_the_stored_one_and_a_later_tick_replaces_it,
                an_update_at_the_stored_tick_takes_the_new_spec_and_next_tick,
                a_deleted_record_is_gone_until_saved_again,
                racing_saves_keep_the_latest_tick,
                the_first_pass_records_the_schedule_and_the_next_tick_enqueues_once requires(UniqueJobs),
                racing_schedulers_store_one_job_per_tick requires(UniqueJobs),
                a_late_scheduler_does_nothing_for_a_recorded_tick requires(UniqueJobs),
                a_tick_whose_job_completed_is_not_stored_again requires(UniqueJobs),
                missed_ticks_run_once_for_the_latest requires(UniqueJobs),
                missed_ticks_are_skipped_when_the_schedule_says_so requires(UniqueJobs),
                a_tick_exactly_late_after_old_is_on_time requires(UniqueJobs),
                a_cron_schedule_in_a_zone_follows_daylight_saving_time requires(UniqueJobs),
                upcoming_runs_and_the_recorded_next_tick_follow_the_schedule requires(UniqueJobs),
                a_schedule_whose_record_was_deleted_starts_again_without_a_job requires(UniqueJobs),
                a_schedule_changed_under_the_same_name_starts_afresh requires(UniqueJobs),
                a_schedule_changed_to_sparser_ticks_starts_at_its_next_tick requires(UniqueJobs),
                workers_sharing_a_schedule_store_each_tick_once requires(UniqueJobs),
                periodic_jobs_sharing_a_name_fail_the_worker_at_start,
                an_invalid_cron_expression_is_refused_with_its_reason,
            }
        }
    };

    (@areas $harness:expr;
        $(
            $area:ident [$flavor:ident] {
                $( $case:ident $( requires( $($capability:ident),+ ) )? ),* $(,)?
            }
        )*
    ) => {
        $(
            mod $area {
                #[allow(unused_imports)]
                use super::*;
                $(
                    $crate::conformance_suite! { @test $flavor; $harness; $area; $case;
                        [$($($capability),+)?] }
                )*
            }
        )*
    };

    (@test current; $harness:expr; $area:ident; $case:ident; [$($capability:ident),*]) => {
        #[::tokio::test]
        async fn $case() {
            $crate::conformance_suite! { @run $harness; $area; $case; [$($capability),*] }
        }
    };

    (@test multi_thread; $harness:expr; $area:ident; $case:ident; [$($capability:ident),*]) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            $crate::conformance_suite! { @run $harness; $area; $case; [$($capability),*] }
        }
    };

    (@run $harness:expr; $area:ident; $case:ident; [$($capability:ident),*]) => {
        $crate::harness::run_case(
            $harness,
            ::core::concat!(::core::stringify!($area), "::", ::core::stringify!($case)),
            &[$($crate::harness::Capability::$capability),*],
            $crate::cases::$area::$case,
        )
        .await
    };
}
