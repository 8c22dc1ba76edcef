//! `sandbox`: the local demo of the rotator (`sandbox demo`).

fn main() {
    eprintln!("usage: sandbox demo");
    std::process::exit(2);
}
