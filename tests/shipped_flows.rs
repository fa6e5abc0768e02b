use std::path::Path;

use ivr::flow::Library;

#[test]
fn the_shipped_flows_and_prompts_are_valid() {
    let (lib, diags) = Library::load_dirs(Path::new("call-flows"), Path::new("prompts"))
        .unwrap_or_else(|d| panic!("{d}"));
    assert!(diags.items.is_empty(), "{diags}");
    assert!(lib.flow("daily-health-check").is_some());
}
