package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/mod/sumdb/tlog"
)

type vectorHead struct {
	Description string   `json:"description"`
	Expected    string   `json:"expected"`
	Flags       []string `json:"flags"`
}

type inclusionFile struct {
	vectorHead
	Leaf     string   `json:"leaf"`
	LeafHash string   `json:"leaf_hash"`
	Index    int64    `json:"index"`
	TreeSize int64    `json:"tree_size"`
	Root     string   `json:"root"`
	Proof    []string `json:"proof"`
}

type consistencyFile struct {
	vectorHead
	OldSize int64    `json:"old_size"`
	NewSize int64    `json:"new_size"`
	OldRoot string   `json:"old_root"`
	NewRoot string   `json:"new_root"`
	Proof   []string `json:"proof"`
}

type checkpointFile struct {
	vectorHead
	Note string   `json:"note"`
	Keys []string `json:"keys"`
}

type loggedEntry struct {
	Entry          string   `json:"entry"`
	Index          int64    `json:"index"`
	InclusionProof []string `json:"inclusion_proof"`
}

type bundle struct {
	Checkpoint *string      `json:"checkpoint"`
	Decision   *loggedEntry `json:"decision"`
	Enrolment  *loggedEntry `json:"enrolment"`
}

type bundleFile struct {
	vectorHead
	LogKey string `json:"log_key"`
	Bundle bundle `json:"bundle"`
}

// tally counts what Go judged: agreed with the vector's expected result, or left to our own
// verifier because tlog/note has no such check.
type tally struct{ valid, invalid, skipped int }

func (t tally) String() string {
	return fmt.Sprintf("%d valid accepted, %d invalid refused, %d not judged", t.valid, t.invalid, t.skipped)
}

// judge records Go's verdict err (nil = accepted) against the vector's expectation.
func (t *tally) judge(path, expected string, err error) {
	switch {
	case expected == "valid" && err == nil:
		t.valid++
	case expected == "invalid" && err != nil:
		t.invalid++
	case expected == "valid":
		failf("%s: valid vector refused by Go: %v", path, err)
	default:
		failf("%s: invalid vector accepted by Go", path)
	}
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func glob(dir, pattern string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	sort.Strings(m)
	if err == nil && len(m) == 0 {
		err = fmt.Errorf("no files match %s", filepath.Join(dir, pattern))
	}
	return m, err
}

// checkInclusion is the inclusion check with tlog only: the leaf hashes to leaf_hash and the
// proof leads to the root.
func checkInclusion(v *inclusionFile) error {
	leaf, err := hex.DecodeString(v.Leaf)
	if err != nil {
		return err
	}
	lh, err := parseHexHash(v.LeafHash)
	if err != nil {
		return err
	}
	if tlog.RecordHash(leaf) != lh {
		return fmt.Errorf("leaf_hash is not tlog.RecordHash(leaf)")
	}
	root, err := parseHexHash(v.Root)
	if err != nil {
		return err
	}
	p, err := parseHexProof(v.Proof)
	if err != nil {
		return err
	}
	return tlog.CheckRecord(p, v.TreeSize, root, v.Index, lh)
}

func checkConsistency(v *consistencyFile) error {
	oldRoot, err := parseHexHash(v.OldRoot)
	if err != nil {
		return err
	}
	newRoot, err := parseHexHash(v.NewRoot)
	if err != nil {
		return err
	}
	p, err := parseHexProof(v.Proof)
	if err != nil {
		return err
	}
	return tlog.CheckTree(p, v.NewSize, newRoot, v.OldSize, oldRoot)
}

func checkLogged(e *loggedEntry, cp *checkpoint) error {
	if e == nil {
		return fmt.Errorf("missing entry")
	}
	entry, err := hex.DecodeString(e.Entry)
	if err != nil {
		return err
	}
	p, err := parseHexProof(e.InclusionProof)
	if err != nil {
		return err
	}
	return tlog.CheckRecord(p, cp.size, cp.root, e.Index, tlog.RecordHash(entry))
}

// checkBundleLog is the part of a bundle Go can judge: the checkpoint's signature and both
// entries' inclusion in it. Statements, passkey assertions and entry contents are ours only.
func checkBundleLog(b *bundle, logKey string) error {
	if b.Checkpoint == nil {
		return fmt.Errorf("missing checkpoint")
	}
	cp, err := openCheckpoint(*b.Checkpoint, logKey)
	if err != nil {
		return err
	}
	if err := checkLogged(b.Decision, cp); err != nil {
		return fmt.Errorf("decision: %v", err)
	}
	if err := checkLogged(b.Enrolment, cp); err != nil {
		return fmt.Errorf("enrolment: %v", err)
	}
	return nil
}

// bundleFlagsGoJudges are the bundle mutations that break the log part of a bundle.
var bundleFlagsGoJudges = map[string]bool{
	"decision-bit-flip-proof":  true,
	"decision-entry-bit-flip":  true,
	"decision-wrong-index":     true,
	"enrolment-bit-flip-proof": true,
	"tampered-checkpoint":      true,
	"missing-checkpoint":       true,
}

func checkVectors(dir string) error {
	var inc, con, cps, bun tally
	files, err := glob(dir, "inclusion/*.json")
	if err != nil {
		return err
	}
	for _, path := range files {
		var v inclusionFile
		if err := readJSON(path, &v); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		inc.judge(path, v.Expected, checkInclusion(&v))
	}
	if files, err = glob(dir, "consistency/*.json"); err != nil {
		return err
	}
	for _, path := range files {
		var v consistencyFile
		if err := readJSON(path, &v); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		if v.OldSize == 0 && v.Expected == "valid" {
			// tlog defines no proof from the empty tree (and gives it an all-zero hash, not
			// RFC 6962's SHA-256 of nothing); only our verifier judges this one.
			con.skipped++
			continue
		}
		con.judge(path, v.Expected, checkConsistency(&v))
	}
	if files, err = glob(dir, "checkpoints/*.json"); err != nil {
		return err
	}
	for _, path := range files {
		var v checkpointFile
		if err := readJSON(path, &v); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		if len(v.Keys) == 0 {
			return fmt.Errorf("%s: no keys", path)
		}
		if contains(v.Flags, "bad-cosignature") {
			// x/mod 0.7.0's note knows Ed25519 keys only; cosignature/v1 is ours to check.
			cps.skipped++
			continue
		}
		_, err := openCheckpoint(v.Note, v.Keys[0], v.Keys[1:]...)
		cps.judge(path, v.Expected, err)
	}
	if files, err = glob(dir, "bundles/*.json"); err != nil {
		return err
	}
	for _, path := range files {
		var v bundleFile
		if err := readJSON(path, &v); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		judged := v.Expected == "valid"
		for _, f := range v.Flags {
			judged = judged || bundleFlagsGoJudges[f]
		}
		if !judged {
			bun.skipped++
			continue
		}
		bun.judge(path, v.Expected, checkBundleLog(&v.Bundle, v.LogKey))
	}
	fmt.Printf("inclusion vectors: %v\nconsistency vectors: %v\ncheckpoint vectors: %v\nbundle vectors (log part): %v\n",
		inc, con, cps, bun)
	if inc.valid == 0 || con.valid == 0 || cps.valid == 0 || bun.valid == 0 {
		failf("a kind of vector had no valid case checked")
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
