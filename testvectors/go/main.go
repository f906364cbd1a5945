// Command govec checks Countersign's Merkle log, proofs, checkpoints and test vectors with Go's
// golang.org/x/mod/sumdb/tlog and golang.org/x/mod/sumdb/note: an implementation this project
// did not write. It is built in GOPATH mode against Debian's golang-golang-x-mod-dev (see
// scripts/go-check.sh), so it needs no module proxy.
//
//	govec gen OUT.json                  compute the known-answer file with tlog only
//	govec check-gen FILE.json           fail unless FILE.json is exactly what gen writes
//	govec check-vectors DIR             re-verify DIR's inclusion, consistency, checkpoint and
//	                                    bundle vectors (valid ones accepted, invalid ones refused)
//	govec check-log -url URL -vkey FILE [-evidence DIR]
//	                                    verify a running log: checkpoint signature, tiles against
//	                                    the signed root, entries, proofs, evidence and tlog-proofs
//
// Every failure is printed and makes the exit status 1.
package main

import (
	"fmt"
	"os"
)

// failures counts the checks that failed; main exits 1 if any did.
var failures int

func failf(format string, args ...any) {
	failures++
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: govec gen OUT | check-gen FILE | check-vectors DIR | check-log -url URL -vkey FILE [-evidence DIR]")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "gen":
		if len(os.Args) != 3 {
			usage()
		}
		err = writeGen(os.Args[2])
	case "check-gen":
		if len(os.Args) != 3 {
			usage()
		}
		err = checkGen(os.Args[2])
	case "check-vectors":
		if len(os.Args) != 3 {
			usage()
		}
		err = checkVectors(os.Args[2])
	case "check-log":
		err = checkLog(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "govec %s: %v\n", os.Args[1], err)
		os.Exit(2)
	}
	if failures > 0 {
		fmt.Fprintf(os.Stderr, "govec %s: %d checks failed\n", os.Args[1], failures)
		os.Exit(1)
	}
}
