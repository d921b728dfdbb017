//! Compile-fail cases for `#[network]`: each is a minimal misuse, and its
//! `.stderr` is the exact error the user sees (regenerate with
//! `TRYBUILD=overwrite cargo test -p nn-tests --test ui`, then read every diff).

use std::path::{Path, PathBuf};

/// trybuild compiles the cases in its own crate, `<target>/tests/trybuild/nn-tests`,
/// and the macro resolves `file = "nets/..."` against that crate's directory:
/// the definition files of `tests/nets/` are copied there, so the cases name
/// them exactly as a user would.
fn copy_definition_files() {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp");
    let to: PathBuf = [
        target,
        "tests".as_ref(),
        "trybuild".as_ref(),
        "nn-tests".as_ref(),
        "nets".as_ref(),
    ]
    .iter()
    .collect();
    std::fs::create_dir_all(&to).unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("nets");
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "nn") {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn ui() {
    copy_definition_files();
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}
