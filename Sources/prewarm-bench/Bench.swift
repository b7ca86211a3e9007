@main struct Bench { static func main() { print("bench: see scripts/bench.sh") } }
