// Command wsproof-bench measures wsproof's server and client against their
// baselines (BENCHMARKS.md). The harness is package internal/bench; this
// command only hands it the command line, including the invocations in
// which the harness re-executes this binary as its server or attacker child.
//
// Usage:
//
//	go run ./cmd/wsproof-bench [-quick] [-out DIR] [-md FILE] [-only LIST] [-skip LIST] [-merge FILE]
//
// Run it from the repository; -h lists every flag.
package main

import (
	"os"

	"github.com/wsproof/wsproof/internal/bench"
)

func main() {
	os.Exit(bench.Main(os.Args[1:], os.Stdout, os.Stderr))
}
