package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// tileHeight is C2SP tlog-tiles' fixed height: 2^8 = 256 hashes per full tile.
const tileHeight = 8

// maxLeaves is the size of the largest tree in the known-answer file.
const maxLeaves = 1000

// leafData is the record (leaf input) i of every tree in the file. It is the same definition
// as the Rust generator's leaf_inputs, so the roots of trees up to 70 leaves can be compared
// with the generated inclusion and consistency vectors directly.
func leafData(i int64) []byte {
	return []byte(fmt.Sprintf("countersign test leaf %d", i))
}

type rootVec struct {
	TreeSize int64  `json:"tree_size"`
	Root     string `json:"root"`
}

type inclusionVec struct {
	Index    int64    `json:"index"`
	TreeSize int64    `json:"tree_size"`
	LeafHash string   `json:"leaf_hash"`
	Root     string   `json:"root"`
	Proof    []string `json:"proof"`
}

type consistencyVec struct {
	OldSize int64    `json:"old_size"`
	NewSize int64    `json:"new_size"`
	OldRoot string   `json:"old_root"`
	NewRoot string   `json:"new_root"`
	Proof   []string `json:"proof"`
}

type tileVec struct {
	Level    int    `json:"level"`
	Index    int64  `json:"index"`
	Width    int    `json:"width"`
	GoPath   string `json:"go_path"`
	C2SPPath string `json:"c2sp_path"`
	Data     string `json:"data"`
}

type tileSet struct {
	TreeSize int64     `json:"tree_size"`
	Root     string    `json:"root"`
	Tiles    []tileVec `json:"tiles"`
}

// genFile is go-tlog.json. About and Source describe the toolchain that computed it; check-gen
// compares everything else.
type genFile struct {
	About       string           `json:"_about"`
	Source      string           `json:"source"`
	Leaves      string           `json:"leaves"`
	LeafCount   int64            `json:"leaf_count"`
	Hashes      string           `json:"hashes"`
	Roots       []rootVec        `json:"roots"`
	Inclusion   []inclusionVec   `json:"inclusion"`
	Consistency []consistencyVec `json:"consistency"`
	Tiles       []tileSet        `json:"tiles"`
}

func hexHash(h tlog.Hash) string { return hex.EncodeToString(h[:]) }

func hexProof(p []tlog.Hash) []string {
	out := make([]string, len(p))
	for i, h := range p {
		out[i] = hexHash(h)
	}
	return out
}

// memTree is a tree held in memory as tlog's stored hashes, built only with tlog.StoredHashes.
type memTree struct {
	n      int64
	stored []tlog.Hash
}

func (t *memTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(t.stored)) {
			return nil, fmt.Errorf("stored hash %d not in a tree of %d records", x, t.n)
		}
		out[i] = t.stored[x]
	}
	return out, nil
}

func buildTree(n int64) (*memTree, error) {
	t := &memTree{}
	for i := int64(0); i < n; i++ {
		hs, err := tlog.StoredHashes(i, leafData(i), t)
		if err != nil {
			return nil, err
		}
		t.stored = append(t.stored, hs...)
		t.n = i + 1
	}
	return t, nil
}

// inclusionSizes and the index and old-size choices below are a spread around the powers of
// two and tile boundaries (256), where proof shapes change.
var inclusionSizes = []int64{1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 32, 33, 63, 64, 65, 69, 70,
	127, 128, 129, 255, 256, 257, 513, 1000}

var extraRootSizes = []int64{127, 128, 129, 255, 256, 257, 511, 512, 513, 767, 768, 769, 1000}

var tileSizes = []int64{70, 257, 1000}

func sortedUnique(xs []int64, lo, hi int64) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for _, x := range xs {
		if x >= lo && x <= hi && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// goToC2SP turns tlog's tile path (tile/H/L/N[.p/W], data tiles as L = "data") into the C2SP
// tlog-tiles path, where the height is fixed at 8 and left out.
func goToC2SP(p string) (string, error) {
	prefix := fmt.Sprintf("tile/%d/", tileHeight)
	if !strings.HasPrefix(p, prefix) {
		return "", fmt.Errorf("tile path %q is not of height %d", p, tileHeight)
	}
	rest := strings.TrimPrefix(p, prefix)
	if strings.HasPrefix(rest, "data/") {
		rest = "entries/" + strings.TrimPrefix(rest, "data/")
	}
	return "tile/" + rest, nil
}

// toolchain names what computed the file: the Go release and Debian's x/mod package.
func toolchain() string {
	deb := "unknown"
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "golang-golang-x-mod-dev").Output(); err == nil {
		deb = string(out)
	}
	return fmt.Sprintf("golang.org/x/mod/sumdb/tlog from Debian package golang-golang-x-mod-dev %s (x/mod v0.7.0 sources in /usr/share/gocode), built with %s", deb, runtime.Version())
}

func generate() (*genFile, error) {
	tree, err := buildTree(maxLeaves)
	if err != nil {
		return nil, err
	}
	root := func(n int64) (tlog.Hash, error) { return tlog.TreeHash(n, tree) }
	f := &genFile{
		About: "Known answers computed by Go's golang.org/x/mod/sumdb/tlog, an implementation this project did not write, " +
			"by testvectors/go (`govec gen`; scripts/go-check.sh checks the file is exactly what it computes). " +
			"Roots with tlog.TreeHash, proofs with tlog.ProveRecord and tlog.ProveTree (each also checked with " +
			"tlog.CheckRecord / tlog.CheckTree), tiles with tlog.NewTiles, tlog.ReadTileData and Tile.Path.",
		Source:    toolchain(),
		Leaves:    "leaf i (0-based) is the ASCII string \"countersign test leaf <i>\" (i in decimal, no newline); leaf hash = tlog.RecordHash = SHA-256(0x00 || leaf)",
		LeafCount: maxLeaves,
		Hashes: "lowercase hex; proofs in RFC 6962 order (inclusion: leaf's sibling first); tiles: height 8, the " +
			"widest tile of each (level, index) for the tree, data = the hashes concatenated; c2sp_path = go_path " +
			"without the height segment",
	}
	var sizes []int64
	for n := int64(1); n <= 70; n++ {
		sizes = append(sizes, n)
	}
	for _, n := range sortedUnique(append(sizes, extraRootSizes...), 1, maxLeaves) {
		h, err := root(n)
		if err != nil {
			return nil, err
		}
		f.Roots = append(f.Roots, rootVec{n, hexHash(h)})
	}
	for _, n := range inclusionSizes {
		th, err := root(n)
		if err != nil {
			return nil, err
		}
		for _, i := range sortedUnique([]int64{0, 1, n / 3, n / 2, n - 2, n - 1, 255, 256}, 0, n-1) {
			p, err := tlog.ProveRecord(n, i, tree)
			if err != nil {
				return nil, err
			}
			lh := tlog.RecordHash(leafData(i))
			if err := tlog.CheckRecord(p, n, th, i, lh); err != nil {
				return nil, fmt.Errorf("tlog refuses its own proof of %d in %d: %v", i, n, err)
			}
			f.Inclusion = append(f.Inclusion, inclusionVec{i, n, hexHash(lh), hexHash(th), hexProof(p)})
		}
		for _, m := range sortedUnique([]int64{1, 2, 3, 7, 8, 9, 13, 64, 70, 256, 257, n / 2, n - 1, n}, 1, n) {
			oh, err := root(m)
			if err != nil {
				return nil, err
			}
			p, err := tlog.ProveTree(n, m, tree)
			if err != nil {
				return nil, err
			}
			if err := tlog.CheckTree(p, n, th, m, oh); err != nil {
				return nil, fmt.Errorf("tlog refuses its own proof from %d to %d: %v", m, n, err)
			}
			f.Consistency = append(f.Consistency, consistencyVec{m, n, hexHash(oh), hexHash(th), hexProof(p)})
		}
	}
	for _, n := range tileSizes {
		th, err := root(n)
		if err != nil {
			return nil, err
		}
		set := tileSet{TreeSize: n, Root: hexHash(th)}
		// NewTiles lists every width a partial tile passed through; a reader of the tree of
		// size n needs only the widest.
		widest := map[[2]int64]tlog.Tile{}
		var order [][2]int64
		for _, t := range tlog.NewTiles(tileHeight, 0, n) {
			k := [2]int64{int64(t.L), t.N}
			if old, ok := widest[k]; !ok {
				order = append(order, k)
				widest[k] = t
			} else if t.W > old.W {
				widest[k] = t
			}
		}
		for _, k := range order {
			t := widest[k]
			data, err := tlog.ReadTileData(t, tree)
			if err != nil {
				return nil, err
			}
			c2sp, err := goToC2SP(t.Path())
			if err != nil {
				return nil, err
			}
			set.Tiles = append(set.Tiles, tileVec{t.L, t.N, t.W, t.Path(), c2sp, hex.EncodeToString(data)})
		}
		f.Tiles = append(f.Tiles, set)
	}
	return f, nil
}

func encode(f *genFile) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeGen(path string) error {
	f, err := generate()
	if err != nil {
		return err
	}
	text, err := encode(f)
	if err != nil {
		return err
	}
	return os.WriteFile(path, text, 0o644)
}

// checkGen recomputes the file and compares it byte for byte, except the toolchain line: the
// committed values must be what tlog computes here, whichever Debian build computed them first.
func checkGen(path string) error {
	onDisk, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var committed genFile
	if err := json.Unmarshal(onDisk, &committed); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	f, err := generate()
	if err != nil {
		return err
	}
	if f.Source != committed.Source {
		fmt.Fprintf(os.Stderr, "note: %s was computed by %q; this run uses %q\n", path, committed.Source, f.Source)
		f.Source = committed.Source
	}
	text, err := encode(f)
	if err != nil {
		return err
	}
	if !bytes.Equal(text, onDisk) {
		failf("%s differs from what tlog computes; run scripts/go-check.sh --regenerate and review the diff", path)
		return nil
	}
	fmt.Printf("%s: %d roots, %d inclusion proofs, %d consistency proofs, %d tile sets match tlog\n",
		path, len(f.Roots), len(f.Inclusion), len(f.Consistency), len(f.Tiles))
	return nil
}
