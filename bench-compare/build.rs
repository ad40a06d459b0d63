//! Records the versions of the engines this binary links (from the
//! workspace's Cargo.lock), so every results file says what it measured.

use std::path::Path;

const PACKAGES: [&str; 7] = [
    "mailvault",
    "rusqlite",
    "libsqlite3-sys",
    "redb",
    "fjall",
    "rocksdb",
    "librocksdb-sys",
];

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock = Path::new(&manifest_dir).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let mut lines = text.lines();
    let mut found = Vec::new();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("name = \"").and_then(|r| r.strip_suffix('"')) else {
            continue;
        };
        let version = lines
            .next()
            .and_then(|l| l.strip_prefix("version = \"").and_then(|r| r.strip_suffix('"')));
        if let (true, Some(version)) = (PACKAGES.contains(&name), version) {
            found.push((name.to_string(), version.to_string()));
        }
    }
    for package in PACKAGES {
        let version = found
            .iter()
            .find(|(name, _)| name == package)
            .map(|(_, v)| v.as_str())
            .unwrap_or("unknown");
        let var = package.to_uppercase().replace('-', "_");
        println!("cargo:rustc-env=BENCH_VERSION_{var}={version}");
    }
}
