//! Compile-time behaviour of `#[job]`: what compiles, and the errors misuse gets.

#[test]
fn valid_handlers_compile_and_each_misuse_gets_a_spanned_error() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
