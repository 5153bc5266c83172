// `sqlx::migrate!` embeds migrations/ at compile time; a new migration file must rebuild the crate (sqlx's
// documented advice: stable Rust cannot track the directory from inside the macro).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
