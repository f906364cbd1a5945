package main

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// logClient reads a Countersign log over HTTP (spec/api.md).
type logClient struct {
	base  string
	http  *http.Client
	tiles int
}

func (c *logClient) get(path string) ([]byte, error) {
	resp, err := c.http.Get(c.base + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return body, nil
}

func (c *logClient) getJSON(path string, v any) error {
	body, err := c.get(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %v", path, err)
	}
	return nil
}

// Height, ReadTiles and SaveTiles make the log a tlog.TileReader: tlog asks for tiles by its own
// coordinates and checks every tile it reads against the tree's signed root.
func (c *logClient) Height() int { return tileHeight }

func (c *logClient) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p, err := goToC2SP(t.Path())
		if err != nil {
			return nil, err
		}
		if out[i], err = c.get("/" + p); err != nil {
			return nil, err
		}
		c.tiles++
	}
	return out, nil
}

func (c *logClient) SaveTiles([]tlog.Tile, [][]byte) {}

type proofAnswer struct {
	Index          int64    `json:"index"`
	TreeSize       int64    `json:"tree_size"`
	LeafHash       string   `json:"leaf_hash"`
	InclusionProof []string `json:"inclusion_proof"`
}

type consistencyAnswer struct {
	First            int64    `json:"first"`
	Second           int64    `json:"second"`
	ConsistencyProof []string `json:"consistency_proof"`
}

type entryAnswer struct {
	Index    int64  `json:"index"`
	LeafHash string `json:"leaf_hash"`
	Entry    string `json:"entry"`
}

// spread is a few values around the ends, the middle and the tile boundary, within [lo, hi].
func spread(lo, hi int64, extra ...int64) []int64 {
	return sortedUnique(append([]int64{lo, lo + 1, hi / 3, hi / 2, hi - 1, hi, 255, 256, 257}, extra...), lo, hi)
}

func checkLog(args []string) error {
	fs := flag.NewFlagSet("check-log", flag.ExitOnError)
	url := fs.String("url", "", "the log's base URL")
	vkeyFile := fs.String("vkey", "", "file holding the log's verifier key (the data directory's log.vkey)")
	evidence := fs.String("evidence", "", "directory of evidence bundles (*.json), each optionally with NAME.tlog-proof")
	mirror := fs.String("tiles", "", "read the checkpoint, hash tiles and entry bundles from this base URL (the log's tile mirror, serve --tiles) instead of the server, anonymously; its checkpoint must be the server's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *vkeyFile == "" {
		return fmt.Errorf("-url and -vkey are required")
	}
	vkeyText, err := os.ReadFile(*vkeyFile)
	if err != nil {
		return err
	}
	vkey := strings.TrimSpace(string(vkeyText))
	c := &logClient{base: strings.TrimRight(*url, "/"), http: &http.Client{Timeout: 30 * time.Second}}

	var served struct {
		Vkey   string `json:"vkey"`
		Origin string `json:"origin"`
	}
	if err := c.getJSON("/v1/log/vkey", &served); err != nil {
		return err
	}
	if served.Vkey != vkey {
		failf("/v1/log/vkey serves %q, the data directory holds %q", served.Vkey, vkey)
	}
	cpText, err := c.get("/checkpoint")
	if err != nil {
		return err
	}
	// Tiles and the checkpoint from the mirror, when given: the tree checks below then hold
	// for what the bucket serves.
	tc := c
	if *mirror != "" {
		tc = &logClient{base: strings.TrimRight(*mirror, "/"), http: c.http}
		mirrored, err := tc.get("/checkpoint")
		if err != nil {
			return err
		}
		if string(mirrored) != string(cpText) {
			failf("the mirror's checkpoint is not the server's:\n%s\nserver:\n%s", mirrored, cpText)
		}
		cpText = mirrored
	}
	cp, err := openCheckpoint(string(cpText), vkey)
	if err != nil {
		failf("note.Open refuses the log's checkpoint: %v", err)
		return nil
	}
	if cp.origin != served.Origin {
		failf("checkpoint origin %q, /v1/log/vkey says %q", cp.origin, served.Origin)
	}
	n := cp.size
	if n < 2 {
		return fmt.Errorf("the log holds %d entries; append some first", n)
	}
	thr := tlog.TileHashReader(tlog.Tree{N: n, Hash: cp.root}, tc)
	if th, err := tlog.TreeHash(n, thr); err != nil || th != cp.root {
		failf("tree hash from the tiles: %v %v, checkpoint root %v", th, err, cp.root)
		return nil
	}
	roots := map[int64]tlog.Hash{n: cp.root}
	root := func(s int64) tlog.Hash {
		if h, ok := roots[s]; ok {
			return h
		}
		h, err := tlog.TreeHash(s, thr)
		if err != nil {
			failf("tlog.TreeHash(%d) over the log's tiles: %v", s, err)
		}
		roots[s] = h
		return h
	}

	// Entry bundles: every entry's tlog.RecordHash must be the level-0 hash tlog read from the
	// (root-checked) hash tiles.
	var leafHashes []tlog.Hash
	var entries [][]byte
	for k := int64(0); k*256 < n; k++ {
		w := n - k*256
		if w > 256 {
			w = 256
		}
		p, err := goToC2SP(tlog.Tile{H: tileHeight, L: -1, N: k, W: int(w)}.Path())
		if err != nil {
			return err
		}
		data, err := tc.get("/" + p)
		if err != nil {
			return err
		}
		for len(data) > 0 {
			if len(data) < 2 || len(data) < 2+int(binary.BigEndian.Uint16(data)) {
				failf("%s: truncated entry", p)
				return nil
			}
			l := int(binary.BigEndian.Uint16(data))
			entries = append(entries, data[2:2+l])
			leafHashes = append(leafHashes, tlog.RecordHash(data[2:2+l]))
			data = data[2+l:]
		}
		if int64(len(entries)) != k*256+w {
			failf("%s holds %d entries in all so far, want %d", p, len(entries), k*256+w)
			return nil
		}
	}
	idx := make([]int64, n)
	for i := range idx {
		idx[i] = tlog.StoredHashIndex(0, int64(i))
	}
	level0, err := thr.ReadHashes(idx)
	if err != nil {
		failf("reading level-0 hashes through tlog.TileHashReader: %v", err)
		return nil
	}
	for i := range level0 {
		if level0[i] != leafHashes[i] {
			failf("entry %d: tlog.RecordHash(entry) %v, hash tile %v", i, leafHashes[i], level0[i])
		}
	}
	for _, i := range []int64{0, n / 2, n - 1} {
		var e entryAnswer
		if err := c.getJSON(fmt.Sprintf("/v1/log/entries/%d", i), &e); err != nil {
			return err
		}
		if e.LeafHash != hexHash(leafHashes[i]) || e.Entry != hex.EncodeToString(entries[i]) {
			failf("/v1/log/entries/%d differs from the entry bundle", i)
		}
	}

	inclusions, consistencies := 0, 0
	sizes := spread(1, n, 70)
	for _, s := range sizes {
		for _, i := range spread(0, s-1) {
			var a proofAnswer
			if err := c.getJSON(fmt.Sprintf("/v1/log/proof/inclusion?index=%d&tree_size=%d", i, s), &a); err != nil {
				return err
			}
			p, err := parseHexProof(a.InclusionProof)
			if err != nil {
				failf("inclusion %d in %d: %v", i, s, err)
				continue
			}
			if a.LeafHash != hexHash(leafHashes[i]) {
				failf("inclusion %d in %d: leaf_hash %s, entry hashes to %v", i, s, a.LeafHash, leafHashes[i])
			}
			if err := tlog.CheckRecord(p, s, root(s), i, leafHashes[i]); err != nil {
				failf("tlog.CheckRecord refuses the log's proof of %d in %d: %v", i, s, err)
			}
			if want, err := tlog.ProveRecord(s, i, thr); err != nil || !equalProofs(p, want) {
				failf("the log's proof of %d in %d is not tlog.ProveRecord's (%v)", i, s, err)
			}
			if len(p) > 0 {
				p[len(p)-1][0] ^= 1
				if tlog.CheckRecord(p, s, root(s), i, leafHashes[i]) == nil {
					failf("tlog.CheckRecord accepts a flipped proof of %d in %d", i, s)
				}
			}
			inclusions++
		}
		for _, m := range spread(1, s, 7, 8) {
			var a consistencyAnswer
			if err := c.getJSON(fmt.Sprintf("/v1/log/proof/consistency?first=%d&second=%d", m, s), &a); err != nil {
				return err
			}
			p, err := parseHexProof(a.ConsistencyProof)
			if err != nil {
				failf("consistency %d to %d: %v", m, s, err)
				continue
			}
			if err := tlog.CheckTree(p, s, root(s), m, root(m)); err != nil {
				failf("tlog.CheckTree refuses the log's proof from %d to %d: %v", m, s, err)
			}
			if want, err := tlog.ProveTree(s, m, thr); err != nil || !equalProofs(p, want) {
				failf("the log's proof from %d to %d is not tlog.ProveTree's (%v)", m, s, err)
			}
			if len(p) > 0 {
				p[0][31] ^= 0x80
				if tlog.CheckTree(p, s, root(s), m, root(m)) == nil {
					failf("tlog.CheckTree accepts a flipped proof from %d to %d", m, s)
				}
			}
			consistencies++
		}
	}
	fmt.Printf("log %s: checkpoint of %d entries verified by note.Open; tree hash recomputed by tlog from %d tiles of %s; "+
		"%d entries match the hash tiles; %d inclusion and %d consistency proofs equal tlog's and pass its checks\n",
		c.base, n, tc.tiles, tc.base, n, inclusions, consistencies)
	if *evidence != "" {
		return checkEvidence(*evidence, vkey, n, root, leafHashes)
	}
	return nil
}

// checkEvidence checks the evidence bundles the log's front end served, and their tlog-proof
// form, against the live log.
func checkEvidence(dir, vkey string, n int64, root func(int64) tlog.Hash, leafHashes []tlog.Hash) error {
	files, err := glob(dir, "*.json")
	if err != nil {
		return err
	}
	proofs := 0
	for _, path := range files {
		var b bundle
		if err := readJSON(path, &b); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		if err := checkBundleLog(&b, vkey); err != nil {
			failf("%s: %v", path, err)
			continue
		}
		cp, _ := openCheckpoint(*b.Checkpoint, vkey)
		if cp.size > n || root(cp.size) != cp.root {
			failf("%s: its checkpoint (%d, %v) is not a prefix of the live log", path, cp.size, cp.root)
		}
		entry, _ := hex.DecodeString(b.Decision.Entry)
		lh := tlog.RecordHash(entry)
		if b.Decision.Index >= n || leafHashes[b.Decision.Index] != lh {
			failf("%s: the decision is not entry %d of the live log", path, b.Decision.Index)
		}
		tpPath := strings.TrimSuffix(path, ".json") + ".tlog-proof"
		text, err := os.ReadFile(tpPath)
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			return err
		}
		tp, err := parseTlogProof(string(text))
		if err != nil {
			failf("%s: %v", tpPath, err)
			continue
		}
		tcp, err := openCheckpoint(tp.checkpoint, vkey)
		if err != nil {
			failf("%s: note.Open: %v", tpPath, err)
			continue
		}
		if err := tlog.CheckRecord(tp.proof, tcp.size, tcp.root, tp.index, lh); err != nil {
			failf("%s: tlog.CheckRecord: %v", tpPath, err)
		}
		if tp.index != b.Decision.Index || tp.checkpoint != *b.Checkpoint {
			failf("%s: index or checkpoint differs from the bundle's", tpPath)
		}
		proofs++
	}
	sort.Strings(files)
	fmt.Printf("evidence %s: %d bundles' checkpoints and inclusion proofs verified; %d tlog-proofs parsed and verified\n",
		filepath.Clean(dir), len(files), proofs)
	if proofs == 0 {
		failf("no tlog-proof files in %s", dir)
	}
	return nil
}
