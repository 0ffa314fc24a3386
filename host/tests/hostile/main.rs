//! The hostile corpus, one test per case (the cases and what each must come
//! to are in `cases.rs`). After every case the host still runs a good step.
//!
//! The Python and JavaScript cases need `scripts/build-polyglot`'s
//! components: these tests fail, never skip, without them.

mod cases;

use cases::{CASES, check, echo_works, sandbox};

async fn case(name: &str) {
    let case = CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    if let Err(e) = check(case, sandbox()).await {
        panic!("{name}: {e}");
    }
    if let Err(e) = echo_works(sandbox()).await {
        panic!("after {name}: {e}");
    }
}

macro_rules! corpus {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                case(stringify!($name)).await;
            }
        )*

        /// Every case of the corpus has its test above, and there are at
        /// least 30 of them.
        #[test]
        fn every_case_has_a_test() {
            let tested = [$(stringify!($name)),*];
            let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
            names.sort_unstable();
            let mut sorted = tested.to_vec();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "the corpus and its tests differ");
            assert!(CASES.len() >= 30, "{} cases", CASES.len());
        }
    };
}

corpus!(
    rust_loop_by_fuel,
    rust_loop_by_time,
    rust_sleep_in_a_host_call,
    rust_spin_on_the_clocks,
    rust_random_in_a_loop,
    rust_random_in_a_loop_by_fuel,
    rust_loop_cancelled,
    rust_sleep_cancelled,
    rust_memory_bomb,
    rust_creeps_under_the_limit_then_spikes,
    rust_returns_50_mib,
    wat_table_grows_without_bound,
    wat_initial_memory_over_the_step_limit,
    rust_deep_recursion,
    python_deep_recursion,
    javascript_deep_recursion,
    rust_panic,
    rust_unreachable,
    wat_start_function_traps,
    wat_realloc_traps,
    wat_returns_a_pointer_out_of_bounds,
    wat_returns_invalid_utf8,
    python_exception,
    python_loop,
    javascript_loop,
    rust_output_that_is_not_json,
    input_over_the_limit,
    rust_stdout_flood,
    rust_log_interface_flood_of_10_mib,
    rust_config_a_million_times,
    rust_reads_host_files,
    rust_environment_arguments_and_stdin,
    rust_sockets,
    wat_imports_an_interface_the_host_lacks,
    rust_wrong_world,
    wat_more_functions_than_the_bound,
    wat_function_body_over_the_bound,
    wat_initial_memory_over_the_ceiling,
    wat_ten_thousand_functions,
    wat_data_segment_of_48_mib,
);
