//! Reads the schema version this build needs off the migration file names (`V<n>__*.sql`), so
//! that the functions check it without linking the migrations themselves.

fn main() {
    // At run time, not `env!`: a build script binary reused from another checkout of the same
    // target directory must read this checkout's migrations.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&manifest).join("../../migrations");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut latest = 0u32;
    for entry in std::fs::read_dir(&dir).expect("the migrations folder") {
        let name = entry.expect("a migration file").file_name();
        let name = name.to_string_lossy();
        if let Some(rest) = name.strip_prefix('V')
            && let Some((version, _)) = rest.split_once("__")
        {
            let version: u32 = version
                .parse()
                .unwrap_or_else(|_| panic!("migration {name}: version is not a number"));
            latest = latest.max(version);
        }
    }
    assert!(latest > 0, "no migrations in {}", dir.display());
    println!("cargo::rustc-env=COLLAB_SCHEMA_VERSION={latest}");
}
