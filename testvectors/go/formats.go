package main

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// checkpoint is a C2SP tlog-checkpoint body. tlog.ParseTree only reads the go.sum database's
// own "go.sum database tree" header, so the three lines are split here; the signature check is
// note.Open's.
type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// openCheckpoint verifies a signed checkpoint with note.Open against the given verifier keys
// (C2SP vkey form, which is the note package's own) and parses its body. Keys note cannot use
// (a cosignature/v1 witness key) are skipped; logName is the key whose signature must be present.
func openCheckpoint(text string, logVkey string, others ...string) (*checkpoint, error) {
	logV, err := note.NewVerifier(logVkey)
	if err != nil {
		return nil, fmt.Errorf("log key %q: %v", logVkey, err)
	}
	vs := []note.Verifier{logV}
	for _, k := range others {
		if v, err := note.NewVerifier(k); err == nil {
			vs = append(vs, v)
		}
	}
	n, err := note.Open([]byte(text), note.VerifierList(vs...))
	if err != nil {
		return nil, err
	}
	signed := false
	for _, s := range n.Sigs {
		if s.Name == logV.Name() && s.Hash == logV.KeyHash() {
			signed = true
		}
	}
	if !signed {
		return nil, errors.New("no signature by the log key")
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		return nil, errors.New("checkpoint body has fewer than three lines")
	}
	if lines[0] != logV.Name() {
		return nil, fmt.Errorf("checkpoint origin %q is not the key name %q", lines[0], logV.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return nil, fmt.Errorf("checkpoint size %q", lines[1])
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		return nil, fmt.Errorf("checkpoint root %q: %v", lines[2], err)
	}
	return &checkpoint{lines[0], size, root}, nil
}

func parseHexHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		return h, fmt.Errorf("%q is not a 32-byte hex hash", s)
	}
	copy(h[:], b)
	return h, nil
}

func parseHexProof(ss []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		h, err := parseHexHash(s)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

func equalProofs(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// tlogProof is the C2SP tlog-proof text: "c2sp.org/tlog-proof@v1", an optional "extra" line,
// "index N", base64 hashes, a blank line, and the signed checkpoint.
type tlogProof struct {
	index      int64
	proof      []tlog.Hash
	checkpoint string
}

func parseTlogProof(text string) (*tlogProof, error) {
	head, cp, ok := strings.Cut(text, "\n\n")
	if !ok {
		return nil, errors.New("tlog-proof without a blank line")
	}
	lines := strings.Split(head, "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" {
		return nil, fmt.Errorf("tlog-proof header %q", lines[0])
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return nil, errors.New("tlog-proof without an index line")
	}
	idx := strings.TrimPrefix(lines[0], "index ")
	index, err := strconv.ParseInt(idx, 10, 64)
	if err != nil || index < 0 || strconv.FormatInt(index, 10) != idx {
		return nil, fmt.Errorf("tlog-proof index %q", idx)
	}
	p := &tlogProof{index: index, checkpoint: cp}
	for _, l := range lines[1:] {
		b, err := base64.StdEncoding.DecodeString(l)
		if err != nil || len(b) != tlog.HashSize {
			return nil, fmt.Errorf("tlog-proof hash line %q", l)
		}
		var h tlog.Hash
		copy(h[:], b)
		p.proof = append(p.proof, h)
	}
	return p, nil
}
