fn main() {
    eprintln!("hyperdex: the cluster commands are not built yet");
    std::process::exit(2);
}
